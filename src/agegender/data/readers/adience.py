"""Adience reader: the five subject-exclusive folds (``fold_<k>_data.txt``) and their aligned faces;
age labels mapped onto the adience8 groups, the fold number kept for the 5-fold protocol."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from agegender.data.readers._base import (
    DATASETS,
    SkipLog,
    bad_layout,
    image_problem,
    is_missing,
    read_csv_rows,
    require_columns,
    require_root,
)
from agegender.errors import AgeGenderError
from agegender.labels import Sample, SampleSet, get_scheme

FOLD_RE = re.compile(r"^fold_(\d+)_data\.txt$")
COLUMNS = ("user_id", "original_image", "face_id", "age", "gender")
#: (folder, file prefix) of the two face crops the release ships, in order of preference
IMAGE_STYLES: dict[str, tuple[str, str]] = {
    "aligned": ("aligned", "landmark_aligned_face"),
    "faces": ("faces", "coarse_tilt_aligned_face"),
}

LAYOUT = (
    "a folder holding fold_0_data.txt ... fold_4_data.txt (tab-separated, header user_id, "
    "original_image, face_id, age, gender, x, y, dx, dy, tilt_ang, fiducial_yaw_angle, "
    "fiducial_score; age like '(25, 32)', gender m/f/u) and the face crops at "
    "aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image> or "
    "faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>."
)


@DATASETS.register("adience", layout=LAYOUT, default_detector="none", age_scheme="adience8",
                   tasks=("age_group", "gender"))
def read_adience(
    root: str | Path,
    folds: Iterable[int] | None = None,
    image_style: str = "auto",
    verify_images: bool = True,
    allow_outside_root: bool = False,
) -> SampleSet:
    """Read Adience: adience8 age group, gender (m → 0, f → 1, u/empty → None) and user identity.

    Age labels are mapped onto adience8: a canonical group such as ``(25, 32)`` directly, a stray
    range such as ``(8, 23)`` or ``(27, 32)`` by its midpoint, an exact age such as ``35`` through
    :meth:`AgeScheme.group_of`; ``None`` is skipped. The raw label stays in ``extra["age_raw"]``.
    ``Sample.age`` stays None: Adience is group-labelled, and its scattered exact ages are treated
    like groups so that every Adience sample is labelled the same way.

    ``folds`` restricts to some fold numbers; ``extra["fold"]`` holds each sample's fold, which
    :func:`agegender.data.splits.kfold_subject_exclusive` uses for the standard 5-fold protocol.
    ``image_style`` is ``"aligned"``, ``"faces"`` or ``"auto"`` (aligned when present, else faces).
    """
    path = require_root(root, "adience")
    if image_style not in ("auto", *IMAGE_STYLES):
        raise AgeGenderError(
            f"adience: image_style {image_style!r} must be 'auto', 'aligned' or 'faces'", code="bad_config"
        )
    fold_files = sorted(
        (int(m.group(1)), p) for p in path.iterdir() if (m := FOLD_RE.match(p.name))
    )
    if not fold_files:
        raise bad_layout("adience", path, "found no fold_<k>_data.txt files")
    wanted = None if folds is None else {int(f) for f in folds}
    styles = list(IMAGE_STYLES) if image_style == "auto" else [image_style]
    skip = SkipLog()
    samples: list[Sample] = []
    for fold, fold_file in fold_files:
        if wanted is not None and fold not in wanted:
            continue
        header, rows = read_csv_rows(fold_file, delimiter="\t")
        require_columns(fold_file, header, COLUMNS, "adience")
        for line_no, row in enumerate(rows, start=2):
            entry = f"{fold_file.name}:{line_no}"
            try:
                group = age_group_of(row["age"])
            except ValueError as exc:
                skip.add(entry, "bad_age", str(exc))
                continue
            try:
                gender = gender_of(row["gender"])
            except ValueError as exc:
                skip.add(entry, "bad_gender", str(exc))
                continue
            if group is None:
                skip.add(entry, "missing_age", f"age {row['age']!r}")
                continue
            file = _find_image(path, row, styles)
            problem = image_problem(file, verify_images)
            if problem:
                skip.add(entry, *problem)
                continue
            samples.append(
                Sample(
                    path=str(file),
                    age_group=group,
                    age_scheme="adience8",
                    gender=gender,
                    identity=row["user_id"],
                    extra={"fold": fold, "age_raw": row["age"], "face_id": row["face_id"]},
                )
            )
    result = SampleSet("adience", samples, age_scheme="adience8", root=str(path))
    return skip.finish(result, allow_outside_root=allow_outside_root)


def age_group_of(label: str) -> int | None:
    """adience8 index of an Adience age label; None for an empty/``None`` label."""
    if is_missing(label):
        return None
    scheme = get_scheme("adience8")
    try:
        return scheme.parse(label)
    except AgeGenderError:
        pass  # not one of the 8 canonical groups: map a stray range or an exact age below
    nums = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", label)]
    if len(nums) == 1:
        return scheme.group_of(nums[0])
    if len(nums) == 2:
        return scheme.group_of((nums[0] + nums[1]) / 2.0)
    raise ValueError(f"age label {label!r} is neither a range nor a number")


def gender_of(label: str) -> int | None:
    text = label.strip().lower()
    if text in ("m", "male"):
        return 0
    if text in ("f", "female"):
        return 1
    if text in ("", "u", "none", "nan"):
        return None
    raise ValueError(f"gender {label!r} is not m, f or u")


def _find_image(root: Path, row: dict[str, str], styles: list[str]) -> Path:
    first = None
    for style in styles:
        folder, prefix = IMAGE_STYLES[style]
        file = root / folder / row["user_id"] / f"{prefix}.{row['face_id']}.{row['original_image']}"
        if file.is_file():
            return file
        first = first or file
    assert first is not None
    return first  # missing: reported under the preferred style's path
