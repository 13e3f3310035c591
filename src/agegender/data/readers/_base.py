"""Shared machinery of the dataset readers: the ``DATASETS`` registry, the skip log that turns bad
entries into one summary warning, label parsing helpers and the cheap image check."""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agegender.errors import AgeGenderError
from agegender.labels import ETHNICITIES, MAX_VALID_AGE, SampleSet
from agegender.registry import Registry

log = logging.getLogger("agegender.data")

#: name → ``read_x(root, **options) -> SampleSet``; meta: layout, default_detector, age_scheme, tasks
DATASETS: Registry = Registry("dataset")

#: file endings treated as images when a reader scans a folder
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SkippedEntriesWarning(UserWarning):
    """Issued once per read when entries were skipped; the details are in ``SampleSet.skipped``."""


def require_root(root: str | Path, dataset: str) -> Path:
    """The root folder (or file) as an absolute path; a missing one is a user error that names the layout."""
    path = Path(root).expanduser()
    if not path.exists():
        raise AgeGenderError(
            f"{dataset}: {str(path)!r} does not exist. Expected layout: {layout_of(dataset)}", code="missing_path"
        )
    return path.resolve()


def bad_layout(dataset: str, root: Path, what: str) -> AgeGenderError:
    return AgeGenderError(
        f"{dataset}: {what} in {str(root)!r}. Expected layout: {layout_of(dataset)}", code="bad_layout"
    )


def layout_of(dataset: str) -> str:
    try:
        return str(DATASETS.meta(dataset).get("layout", ""))
    except AgeGenderError:
        return "(unknown dataset)"


class SkipLog:
    """Collects skipped entries as (entry, "reason_code: detail") and reports them once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, entry: object, code: str, detail: str = "") -> None:
        self.items.append((str(entry), f"{code}: {detail}" if detail else code))

    def finish(self, result: SampleSet, examples: int = 3) -> SampleSet:
        """Attach the skipped entries to ``result``, log its summary and warn once if anything was skipped."""
        result.skipped.extend(self.items)
        summary = result.summary()
        log.info(summary)
        if self.items:
            shown = "; ".join(f"{e} ({why})" for e, why in self.items[:examples])
            more = f"; ... see SampleSet.skipped for all {len(self.items)}" if len(self.items) > examples else ""
            # stacklevel 3: point at the caller of the reader, not at this helper
            warnings.warn(f"{summary}. Skipped e.g.: {shown}{more}", SkippedEntriesWarning, stacklevel=3)
        return result


def image_problem(path: Path, verify: bool) -> tuple[str, str] | None:
    """``(code, detail)`` when ``path`` is missing or not a readable image, else None.

    Only the header is parsed (``Image.open`` + ``verify``): cheap enough for 18k files in a few
    seconds, and it catches empty, truncated-header and non-image files. Full decoding is left to
    the image loader, which skips what still fails.
    """
    try:
        if not path.is_file():
            return ("missing_file", str(path))
        if not verify:
            return None
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, struct.error, ... on bad files
        return ("unreadable_image", f"{path.name}: {type(exc).__name__}")
    return None


# -- label parsing: each returns the value or raises ValueError with a short reason


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip().lower() in ("", "nan", "none", "null", "na", "n/a")


def parse_age(value: Any, max_age: float = MAX_VALID_AGE) -> float | None:
    if is_missing(value):
        return None
    try:
        age = float(str(value).strip())
    except ValueError:
        raise ValueError(f"age {value!r} is not a number") from None
    if not (0 <= age <= max_age):
        raise ValueError(f"age {age:g} outside 0-{max_age:g}")
    return age


_GENDER_WORDS = {"0": 0, "1": 1, "m": 0, "f": 1, "male": 0, "female": 1, "man": 0, "woman": 1}


def parse_gender(value: Any) -> int | None:
    """0/1, m/f or male/female (any case) → 0 male / 1 female; empty → None."""
    if is_missing(value):
        return None
    text = str(value).strip().lower()
    text = text.removesuffix(".0")  # "1.0" from spreadsheets
    if text not in _GENDER_WORDS:
        raise ValueError(f"gender {value!r} is not 0/1, m/f or male/female")
    return _GENDER_WORDS[text]


def parse_ethnicity(value: Any) -> int | None:
    """An index 0..4 or a name from ``ETHNICITIES``; empty → None."""
    if is_missing(value):
        return None
    text = str(value).strip().lower()
    if text in ETHNICITIES:
        return ETHNICITIES.index(text)
    try:
        idx = int(float(text))
    except ValueError:
        raise ValueError(f"ethnicity {value!r} is not an index or one of {list(ETHNICITIES)}") from None
    if not 0 <= idx < len(ETHNICITIES) or idx != float(text):
        raise ValueError(f"ethnicity {value!r} outside 0-{len(ETHNICITIES) - 1}")
    return idx


def mat_text(cell: Any) -> str:
    """Text of one Matlab cell from ``scipy.io.loadmat``: strings come nested in 1-element arrays,
    an empty cell is an empty array."""
    while isinstance(cell, np.ndarray):
        if cell.size == 0:
            return ""
        cell = cell.reshape(-1)[0]
    return str(cell).strip()


def reason_code(msg: str) -> str:
    """Skip code for a parse error: the helpers' messages start with the field name
    ("age 130 outside 0-120" → ``bad_age``)."""
    word = msg.split()[0] if msg else ""
    known = ("name", "age", "age_group", "gender", "ethnicity", "race")
    return f"bad_{word}" if word in known else "bad_label"


def read_csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[dict[str, str]]]:
    """Header (stripped) and rows of a CSV/TSV file; a BOM and stray spaces around names are tolerated."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return [], []
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank line, not an entry
            rows.append({h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)})
    return header, rows


def require_columns(path: Path, header: Iterable[str], needed: Iterable[str], dataset: str) -> None:
    found = list(header)
    missing = [c for c in needed if c not in found]
    if missing:
        raise AgeGenderError(
            f"{dataset}: {path} lacks the column(s) {missing}; found {found}. Expected layout: {layout_of(dataset)}",
            code="bad_labels",
        )
