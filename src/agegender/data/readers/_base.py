"""Shared machinery of the dataset readers: the ``DATASETS`` registry, the skip log that turns bad
entries into one summary warning, label parsing helpers and the cheap image check.

:meth:`SkipLog.finish`, the last step of every reader, also applies the two rules every dataset gets:
images outside the dataset folder are refused (unless ``allow_outside_root``) and an image listed
several times is kept once (identical labels) or dropped (conflicting labels); see :data:`READING_RULES`."""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agegender.errors import AgeGenderError
from agegender.labels import ETHNICITIES, MAX_VALID_AGE, Sample, SampleSet
from agegender.registry import Registry

log = logging.getLogger("agegender.data")

#: name → ``read_x(root, **options) -> SampleSet``; meta: layout, default_detector, age_scheme, tasks
DATASETS: Registry = Registry("dataset")

#: file endings treated as images when a reader scans a folder
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


#: the reader option (every built-in reader takes it; ``data.allow_outside_root`` in configs) that lets
#: label files name images outside the dataset folder
OUTSIDE_ROOT_OPTION = "allow_outside_root"

#: the two rules :meth:`SkipLog.finish` applies to every reader's samples (shown by ``agegender datasets``)
READING_RULES = (
    "An image listed more than once (the same file, also through another name or a symlink) is read once: "
    "with identical labels the extra entries are skipped as 'duplicate', with different labels every copy "
    "is dropped as 'conflicting_labels', so no image can land in two splits. Label-file paths that lead "
    "outside the dataset folder (absolute paths elsewhere, '..') are skipped as 'outside_root' unless "
    "the reader option allow_outside_root=true is given (data.allow_outside_root in a config, "
    "--allow-outside-root for evaluate); symlinks stored inside the folder are followed, but not "
    "after a '..'."
)


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

    def finish(self, result: SampleSet, examples: int = 3, allow_outside_root: bool = False) -> SampleSet:
        """Apply the shared rules (:func:`check_samples`: images outside ``result.root`` unless
        ``allow_outside_root``, duplicates), attach the skipped entries to ``result``, log its summary
        and warn once if anything was skipped."""
        check_samples(result, self, allow_outside_root=allow_outside_root)
        result.skipped.extend(self.items)
        summary = result.summary()
        log.info(summary)
        if self.items:
            shown = "; ".join(f"{e} ({why})" for e, why in self.items[:examples])
            more = f"; ... see SampleSet.skipped for all {len(self.items)}" if len(self.items) > examples else ""
            # stacklevel 3: point at the caller of the reader, not at this helper
            warnings.warn(f"{summary}. Skipped e.g.: {shown}{more}", SkippedEntriesWarning, stacklevel=3)
        return result


# -- the shared rules: images inside the dataset folder, each image once

#: the labels compared to tell a harmless duplicate from a conflicting one (not ``extra``: folds,
#: splits and raw strings are bookkeeping, the first entry's are kept)
_LABEL_FIELDS: tuple[str, ...] = ("age", "age_group", "age_scheme", "gender", "ethnicity", "attributes", "identity")


def dataset_folder(root: str | Path) -> Path:
    """The folder a reader's images must stay in: ``SampleSet.root``, or its parent when that is a
    label file (a CSV or .mat given directly)."""
    path = Path(os.path.abspath(Path(root).expanduser()))
    return path.parent if path.is_file() else path


def _absolute(path: str | Path) -> str:
    """``path`` made absolute without collapsing ``..`` (``a/link/../b`` is not ``a/b`` once ``link`` is a
    symlink, and the image loader opens the path as written)."""
    text = str(path)
    return text if os.path.isabs(text) else os.path.join(os.getcwd(), text)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _RealPaths:
    """``os.path.realpath`` with the folders cached: one ``lstat`` per file instead of one per path part
    (460k IMDB entries)."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        folder, name = os.path.split(path)
        real_dir = self._dirs.get(folder)
        if real_dir is None:
            real_dir = self._dirs[folder] = os.path.realpath(folder)
        full = os.path.normpath(os.path.join(real_dir, name))
        return os.path.realpath(full) if os.path.islink(full) else full


def outside_folder(path: str | Path, folder: str | Path) -> bool:
    """Whether image ``path`` leads outside dataset ``folder``.

    Inside means: the file, symlinks followed, is in the folder; or the path names it inside the folder
    without any ``..`` and reaches elsewhere only through a symlink stored in the folder (a subset
    folder of links, ``images/`` linked to another disk: the folder's own layout, made by its owner).
    An absolute path elsewhere, a ``..`` that climbs out, or a ``..`` after a symlink is outside.
    """
    text = _absolute(path)
    folder_text = os.path.abspath(str(folder))
    return _outside(text, os.path.realpath(text), folder_text, os.path.realpath(folder_text))


def _outside(text: str, real: str, folder: str, real_folder: str) -> bool:
    if _within(real, real_folder):
        return False
    return f"{os.sep}..{os.sep}" in f"{text}{os.sep}" or not _within(os.path.normpath(text), folder)


def _entry_name(path: str, folder: str) -> str:
    text = os.path.normpath(_absolute(path))
    return os.path.relpath(text, folder) if folder and _within(text, folder) else path


def check_samples(result: SampleSet, skip: SkipLog, allow_outside_root: bool = False) -> SampleSet:
    """The rules every reader shares, applied to ``result.samples`` in place (skips go to ``skip``).

    1. Unless ``allow_outside_root``, a sample whose image lies outside :func:`dataset_folder`
       (see :func:`outside_folder`) is skipped as ``outside_root``; the reason names the option.
    2. Samples of the same resolved file (and the same ``box``: one photo may hold several labelled
       faces) are one image: with identical labels the first is kept and the others skipped as
       ``duplicate``; with different labels all are skipped as ``conflicting_labels``. So a file listed
       twice can never be trained on and tested on.
    """
    if not result.samples:
        return result
    folder = str(dataset_folder(result.root)) if result.root else ""
    real_folder = os.path.realpath(folder) if folder else ""
    realpath = _RealPaths()
    kept: list[Sample] = []
    reals: list[str] = []
    for s in result.samples:
        text = _absolute(s.path)
        real = realpath(text)
        if folder and not allow_outside_root and _outside(text, real, folder, real_folder):
            skip.add(s.path, "outside_root",
                     f"outside the dataset folder {folder}; reading it needs the reader option "
                     f"{OUTSIDE_ROOT_OPTION}=true (data.{OUTSIDE_ROOT_OPTION}: true in a config)")
            continue
        kept.append(s)
        reals.append(real)
    first_of: dict[tuple[str, Any], int] = {}
    repeats: dict[int, list[int]] = {}  # first index → all indices of that image (only when listed twice)
    for i, (s, real) in enumerate(zip(kept, reals)):
        j = first_of.setdefault((real, s.box), i)
        if j != i:
            repeats.setdefault(j, [j]).append(i)
    drop: set[int] = set()
    for idx in repeats.values():
        first = kept[idx[0]]
        differ = [f for f in _LABEL_FIELDS if any(getattr(kept[i], f) != getattr(first, f) for i in idx[1:])]
        names = ", ".join(_entry_name(kept[i].path, folder) for i in idx[:4]) + (", ..." if len(idx) > 4 else "")
        if differ:
            for i in idx:
                skip.add(_entry_name(kept[i].path, folder), "conflicting_labels",
                         f"one image listed {len(idx)} times ({names}) with different {', '.join(differ)}; "
                         f"every copy is left out")
            drop.update(idx)
        else:
            for k, i in enumerate(idx[1:], start=2):
                skip.add(_entry_name(kept[i].path, folder), "duplicate",
                         f"entry {k} of {len(idx)} for one image ({names}), same labels; the first is kept")
            drop.update(idx[1:])
    result.samples[:] = [s for i, s in enumerate(kept) if i not in drop] if drop else kept
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
