"""A teacher's targets for knowledge distillation (``data.teacher`` in a config, one mapping or a list of them):
for some of the training images, one probability per class of one task, or an embedding (a feature vector the
student learns to point along), read from a CSV file.

The file has a ``path`` column (the image path as the dataset reader gives it; compared after making both
absolute) and, for a task, one ``p_<class>`` column per class, e.g. ``p_male,p_female`` for gender (rows are
normalised to sum to 1); for ``task: embedding``, the columns ``e_0 ... e_<D-1>``. Images without a row get NaN (no
distillation term for them). The file is untrusted input: a missing column, a value that is not a probability (or
not a finite number) or a duplicated path is a one-line error.

    path,p_male,p_female
    ../faces-extra/crops/aaf/images/images/00000A02.jpg,0.08,0.92
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError
from agegender.labels import ETHNICITIES, GENDERS, Sample

#: tasks a teacher may give soft labels for, and their class names (the p_<class> columns)
TEACHER_CLASSES: dict[str, tuple[str, ...]] = {"gender": GENDERS, "ethnicity": ETHNICITIES}
#: the pseudo-task of an embedding teacher (columns e_0 ... e_<D-1>; ``model.distill_embedding`` learns it)
EMBEDDING = "embedding"


def embedding_columns(fieldnames: Sequence[str] | None) -> list[str]:
    """``e_0 ... e_<D-1>``: the embedding columns of a teacher file's header (none, or a gap, is an error)."""
    n = sum(1 for f in fieldnames or [] if f.startswith("e_"))
    cols = [f"e_{k}" for k in range(n)]
    if n == 0 or not set(cols) <= set(fieldnames or []):
        raise AgeGenderError("an embedding teacher file needs the columns e_0, e_1, ... e_<D-1> after path",
                             code="bad_labels")
    return cols


def _key(path: str | os.PathLike) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def read_soft_labels(spec: Mapping[str, Any], samples: Sequence[Sample]) -> tuple[str, np.ndarray, int]:
    """``(target name, (N, C) float32 array, rows matched)`` for ``spec = {task, file}``: the name is
    ``<task>_teacher``, row ``i`` the teacher's probabilities (or embedding, ``C = D``) for ``samples[i]`` (NaN when
    the file has none)."""
    task = str(spec.get("task") or "")
    if task not in TEACHER_CLASSES and task != EMBEDDING:
        raise AgeGenderError(f"data.teacher.task must be one of {[*sorted(TEACHER_CLASSES), EMBEDDING]}, not "
                             f"{task!r}", code="bad_config")
    if not spec.get("file"):
        raise AgeGenderError("data.teacher needs a file: a CSV with path and p_<class> (or e_<k>) columns",
                             code="bad_config")
    path = Path(str(spec["file"])).expanduser()
    if not path.is_file():
        raise AgeGenderError(f"data.teacher.file {path} does not exist; check the path", code="missing_file")
    index = {_key(s.path): i for i, s in enumerate(samples)}
    seen: set[str] = set()
    matched = 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if task == EMBEDDING:
                cols = embedding_columns(reader.fieldnames)
            else:
                cols = [f"p_{c}" for c in TEACHER_CLASSES[task]]
            out = np.full((len(samples), len(cols)), np.nan, dtype=np.float32)
            missing = [c for c in ["path", *cols] if c not in (reader.fieldnames or [])]
            if missing:
                raise AgeGenderError(f"{path}: missing column(s) {missing}; a teacher file for {task} has path,"
                                     f"{','.join(cols)}", code="bad_labels")
            for line, row in enumerate(reader, start=2):
                key = _key(row["path"])
                if key in seen:
                    raise AgeGenderError(f"{path}:{line}: the path {row['path']!r} is listed twice", code="bad_labels")
                seen.add(key)
                try:
                    values = np.asarray([float(row[c]) for c in cols], dtype=np.float64)
                except (TypeError, ValueError):
                    raise AgeGenderError(f"{path}:{line}: {cols[0]}...{cols[-1]} must be numbers",
                                         code="bad_labels") from None
                if task == EMBEDDING:
                    if not np.all(np.isfinite(values)) or not np.any(values):
                        raise AgeGenderError(f"{path}:{line}: an embedding must be finite and not all 0",
                                             code="bad_labels")
                elif not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values > 1) or values.sum() <= 0:
                    raise AgeGenderError(f"{path}:{line}: probabilities must be in [0, 1] and not all 0",
                                         code="bad_labels")
                else:
                    values = values / values.sum()
                i = index.get(key)
                if i is not None:
                    out[i] = values
                    matched += 1
    except UnicodeDecodeError:
        raise AgeGenderError(f"{path} is not a UTF-8 CSV file", code="bad_labels") from None
    if matched == 0:
        raise AgeGenderError(f"{path}: none of its paths is an image of the configured data; the paths must be the "
                             "ones the dataset reader gives (e.g. ROOT/images/x.jpg)", code="bad_labels")
    return f"{task}_teacher", out, matched
