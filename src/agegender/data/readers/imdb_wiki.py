"""IMDB-WIKI reader: the DEX metadata (``imdb.mat`` / ``wiki.mat``) turned into samples with age from
date of birth and photo year, gender, face box and celebrity identity; noisy entries filtered."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from agegender.data.readers._base import (
    DATASETS,
    SkipLog,
    bad_layout,
    image_problem,
    mat_text,
    require_root,
)
from agegender.errors import AgeGenderError
from agegender.labels import MAX_AGE, Sample, SampleSet

LAYOUT = (
    "the DEX release: a folder holding imdb_crop/ (with imdb.mat and the 00..99 image folders) "
    "and/or wiki_crop/ (with wiki.mat), or one of those folders itself; the full-image variants "
    "imdb/ and wiki/ work the same. The .mat holds a 1x1 struct named imdb or wiki with fields "
    "dob (Matlab datenum), photo_taken (year), full_path (relative to the .mat's folder), gender "
    "(1 male, 0 female, NaN), face_location, face_score, second_face_score and name."
)

_MAT_NAMES = ("imdb", "wiki")


@DATASETS.register("imdb_wiki", layout=LAYOUT, default_detector="none", age_scheme="adience8",
                   tasks=("age", "age_group", "gender"))
def read_imdb_wiki(
    root: str | Path,
    subset: str | None = None,
    min_face_score: float = 1.0,
    skip_second_face: bool = True,
    verify_images: bool = True,
    crops: bool | None = None,
    allow_outside_root: bool = False,
) -> SampleSet:
    """Read IMDB-WIKI: age in years, gender (converted to 0 male / 1 female) and identity (the name).

    Age follows the DEX convention: ``photo_taken - birth_year``, one less when born after June
    (photos are assumed taken mid-year), with the birth date from the Matlab datenum
    (``date.fromordinal(dob - 366)``). Entries are skipped (each with a reason) for: missing or
    invalid date of birth, age outside 0–100, NaN gender, ``face_score < min_face_score`` (no face
    is ``-inf``), a second face (``second_face_score`` not NaN, when ``skip_second_face``), a
    missing or unreadable image.

    ``subset`` picks ``"imdb"`` or ``"wiki"`` when both are present (default: all found).
    ``face_location`` is a box in the *original* photo (1-based Matlab pixels, converted here to
    0-based x1, y1, x2, y2): it is stored in ``Sample.box`` only for the full-image release; for the
    ``*_crop`` folders (``crops`` auto-detected from the folder name) it goes to
    ``extra["face_location"]`` because it does not refer to the crop. Reading all 460k IMDB entries
    with ``verify_images=True`` takes minutes; pass False to only check that files exist.
    """
    path = require_root(root, "imdb_wiki")
    if subset is not None and subset not in _MAT_NAMES:
        raise AgeGenderError(f"imdb_wiki: subset {subset!r} must be 'imdb' or 'wiki'", code="bad_config")
    mats = _find_mats(path, subset)
    if not mats:
        raise bad_layout("imdb_wiki", path, "found no imdb.mat or wiki.mat")
    skip = SkipLog()
    samples: list[Sample] = []
    for kind, mat in mats:
        is_crop = mat.parent.name.endswith("_crop") if crops is None else bool(crops)
        samples.extend(_read_mat(kind, mat, is_crop, min_face_score, skip_second_face, verify_images, skip))
    result = SampleSet("imdb_wiki", samples, age_scheme="adience8", root=str(path))
    return skip.finish(result, allow_outside_root=allow_outside_root)


def _find_mats(path: Path, subset: str | None) -> list[tuple[str, Path]]:
    if path.is_file() and path.suffix == ".mat":
        kind = path.stem if path.stem in _MAT_NAMES else (subset or "imdb")
        return [(kind, path)]
    found = []
    for kind in _MAT_NAMES:
        if subset is not None and kind != subset:
            continue
        for folder in (path, path / f"{kind}_crop", path / kind):
            if (folder / f"{kind}.mat").is_file():
                found.append((kind, folder / f"{kind}.mat"))
                break
    return found


def dex_age(dob: float, photo_taken: float) -> int:
    """Age at mid-year of ``photo_taken`` for a Matlab datenum birth date (DEX convention)."""
    born = date.fromordinal(int(dob) - 366)  # Matlab day 1 is 1 Jan year 0; Python's is 1 Jan year 1
    return int(photo_taken) - born.year - (1 if born.month > 6 else 0)


def _field(struct: Any, name: str, n: int) -> np.ndarray | None:
    """A 1xN field of the loaded struct (numbers or cells) as a flat length-N array; None if absent."""
    if name not in (struct.dtype.names or ()):
        return None
    arr = np.asarray(struct[name])
    if arr.size != n:
        raise AgeGenderError(f"imdb_wiki: field {name!r} has {arr.size} entries, expected {n}", code="bad_labels")
    return arr.reshape(-1)


def _read_mat(kind: str, mat: Path, is_crop: bool, min_face_score: float, skip_second_face: bool,
              verify: bool, skip: SkipLog) -> list[Sample]:
    from scipy.io import loadmat

    try:
        data = loadmat(str(mat))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:  # v7.3 (HDF5) files, truncated downloads
        raise AgeGenderError(f"imdb_wiki: cannot read {mat}: {exc}", code="bad_labels") from None
    if kind not in data:
        keys = [k for k in data if not k.startswith("__")]
        raise AgeGenderError(f"imdb_wiki: {mat} has no struct {kind!r} (found {keys})", code="bad_labels")
    struct = data[kind].reshape(-1)[0]
    full_path = np.asarray(struct["full_path"]).reshape(-1)
    n = full_path.size
    dob = _field(struct, "dob", n)
    taken = _field(struct, "photo_taken", n)
    gender = _field(struct, "gender", n)
    if dob is None or taken is None or gender is None:
        raise AgeGenderError(f"imdb_wiki: {mat} lacks dob, photo_taken or gender", code="bad_labels")
    face_score = _field(struct, "face_score", n)
    second = _field(struct, "second_face_score", n)
    location = _field(struct, "face_location", n)
    names = _field(struct, "name", n)
    celeb_id = _field(struct, "celeb_id", n)
    samples = []
    for i in range(n):
        rel = mat_text(full_path[i])
        entry = f"{kind}:{rel or i}"
        try:
            age = dex_age(float(dob[i]), float(taken[i]))
        except (ValueError, OverflowError):
            skip.add(entry, "bad_dob", f"dob {dob[i]!r}")
            continue
        if not 0 <= age <= MAX_AGE:
            skip.add(entry, "bad_age", f"age {age} outside 0-{MAX_AGE}")
            continue
        g = float(gender[i])
        if math.isnan(g) or g not in (0.0, 1.0):
            skip.add(entry, "missing_gender", f"gender {gender[i]!r}")
            continue
        if face_score is not None and not float(face_score[i]) >= min_face_score:
            skip.add(entry, "low_face_score", f"{float(face_score[i]):.2f} < {min_face_score:g}")
            continue
        if skip_second_face and second is not None and not math.isnan(float(second[i])):
            skip.add(entry, "second_face", f"second_face_score {float(second[i]):.2f}")
            continue
        file = mat.parent / rel
        problem = image_problem(file, verify)
        if problem:
            skip.add(entry, *problem)
            continue
        box = None
        extra: dict[str, Any] = {"source": kind}
        if location is not None:
            loc = np.asarray(location[i], dtype=np.float64).reshape(-1)
            if loc.size == 4 and np.all(np.isfinite(loc)):
                # Matlab's img(y1:y2, x1:x2) is 1-based and inclusive → 0-based, end-exclusive
                box = (float(loc[0] - 1), float(loc[1] - 1), float(loc[2]), float(loc[3]))
        name = mat_text(names[i]) if names is not None else ""
        cid = int(celeb_id[i]) if celeb_id is not None else None
        if cid is not None:
            extra["celeb_id"] = cid
        if is_crop and box is not None:
            extra["face_location"] = box
            box = None
        samples.append(
            Sample(
                path=str(file),
                age=float(age),
                gender=1 - int(g),  # DEX: 1 male, 0 female → ours: 0 male, 1 female
                identity=name or (f"{kind}:{cid}" if cid is not None else None),
                box=box,
                extra=extra,
            )
        )
    return samples
