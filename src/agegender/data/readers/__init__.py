"""Dataset readers: each turns one dataset's official folder layout into a :class:`SampleSet`.

Readers are registered by name in ``DATASETS``; ``read_dataset(name, root, **options)`` is the one
door in, ``describe_datasets()`` lists what each expects (shown by ``agegender datasets``). Adding a
dataset is one new file with a ``@DATASETS.register(...)`` reader and one import line below.

Every reader ends in ``SkipLog.finish``, which applies :data:`READING_RULES` to all of them: an image
listed twice is read once (or, with conflicting labels, not at all) and label-file paths that leave the
dataset folder are refused unless the reader option ``allow_outside_root=true`` is given.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from agegender.data.readers._base import DATASETS, OUTSIDE_ROOT_OPTION, READING_RULES, SkippedEntriesWarning

# Importing each reader module registers it in DATASETS.
from agegender.data.readers.adience import read_adience
from agegender.data.readers.csv_reader import read_csv
from agegender.data.readers.fairface import read_fairface
from agegender.data.readers.imdb_wiki import read_imdb_wiki
from agegender.data.readers.peta import read_peta
from agegender.data.readers.rap import read_rap
from agegender.data.readers.utkface import read_utkface
from agegender.errors import AgeGenderError
from agegender.labels import SampleSet

__all__ = [
    "DATASETS",
    "OUTSIDE_ROOT_OPTION",
    "READING_RULES",
    "SkippedEntriesWarning",
    "describe_datasets",
    "read_adience",
    "read_csv",
    "read_dataset",
    "read_fairface",
    "read_imdb_wiki",
    "read_peta",
    "read_rap",
    "read_utkface",
]


def read_dataset(name: str, root: str | Path, **options: Any) -> SampleSet:
    """Read dataset ``name`` from ``root`` with reader-specific ``options``.

    Unknown names raise AgeGenderError(code="unknown_dataset"), unknown options code="bad_config".

    >>> ss = read_dataset("utkface", "data/utkface", verify_images=False)   # doctest: +SKIP
    >>> print(ss.summary())                                                  # doctest: +SKIP
    """
    reader = DATASETS.get(name)
    params = inspect.signature(reader).parameters
    accepted = [p for p in params if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise AgeGenderError(
            f"dataset {name!r} has no option(s) {unknown}; its options are: {', '.join(accepted) or '(none)'}",
            code="bad_config",
        )
    return reader(root, **options)


def describe_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset: name, layout, tasks, default_detector, age_scheme, options."""
    out = []
    for name in DATASETS.names():
        meta = DATASETS.meta(name)
        params = inspect.signature(DATASETS.get(name)).parameters
        out.append(
            {
                "name": name,
                "layout": meta.get("layout", ""),
                "tasks": tuple(meta.get("tasks", ())),
                "default_detector": meta.get("default_detector", "none"),
                "age_scheme": meta.get("age_scheme"),
                "options": {p: params[p].default for p in params if p != "root"},
                "doc": (inspect.getdoc(DATASETS.get(name)) or "").split("\n\n")[0],
            }
        )
    return out
