"""UTKFace reader: labels from the official ``[age]_[gender]_[race]_[date].jpg.chip.jpg`` file names,
or from a ``labels.csv`` beside an ``images/`` folder (the project's development copy)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from agegender.data.readers._base import (
    DATASETS,
    SkipLog,
    bad_layout,
    image_problem,
    parse_age,
    parse_ethnicity,
    parse_gender,
    read_csv_rows,
    reason_code,
    require_columns,
    require_root,
)
from agegender.labels import Sample, SampleSet

# Strict on purpose: the five malformed names of the full release (race missing, a space before
# ".jpg", "jpg" without its dot) must fail here rather than be guessed at.
NAME_RE = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(?:\.chip\.jpg)?$", re.IGNORECASE)

LAYOUT = (
    "either a folder (searched recursively, e.g. UTKFace/ or crop_part1/) of images named "
    "[age]_[gender]_[race]_[yyyymmddHHMMSSFFF].jpg.chip.jpg (aligned crops) or "
    "[age]_[gender]_[race]_[date].jpg (the in-the-wild variant), with age 0-120, gender 0 male / "
    "1 female, race 0 white, 1 black, 2 asian, 3 indian, 4 other; or a folder holding labels.csv "
    "(columns file,age,gender,race, more allowed) and images/ with the files it names."
)


@DATASETS.register("utkface", layout=LAYOUT, default_detector="none", age_scheme="adience8",
                   tasks=("age", "age_group", "gender", "ethnicity"))
def read_utkface(root: str | Path, verify_images: bool = True, allow_outside_root: bool = False) -> SampleSet:
    """Read UTKFace: exact age, gender and race (as ``ethnicity``) per face; no identities.

    ``root`` holds ``labels.csv`` + ``images/``, or the image files themselves. Entries with a
    malformed name, out-of-range labels, or (with ``verify_images``) an unreadable header are
    skipped and listed in ``SampleSet.skipped``. Age groups default to ``adience8`` (the 8 groups
    used by jamoliddin_yoo2022); they are derived from the exact age.

    >>> ss = read_utkface("data/utkface")            # doctest: +SKIP
    >>> ss.summary()                                 # doctest: +SKIP
    'utkface: loaded 18443 samples, skipped 0'
    """
    path = require_root(root, "utkface")
    skip = SkipLog()
    if path.is_file() and path.suffix.lower() == ".csv":
        samples = _from_csv(path, path.parent, skip, verify_images)
        base = path.parent
    elif (path / "labels.csv").is_file():
        samples = _from_csv(path / "labels.csv", path, skip, verify_images)
        base = path
    else:
        samples = _from_names(path, skip, verify_images)
        base = path
    result = SampleSet("utkface", samples, age_scheme="adience8", root=str(base))
    return skip.finish(result, allow_outside_root=allow_outside_root)


def parse_name(name: str) -> tuple[float, int, int]:
    """(age, gender, race) from a UTKFace file name; ValueError says why a name is unusable."""
    m = NAME_RE.match(name)
    if not m:
        raise ValueError("name is not [age]_[gender]_[race]_[date].jpg[.chip.jpg]")
    age = parse_age(m.group(1))
    assert age is not None
    gender = parse_gender(m.group(2))
    race = parse_ethnicity(m.group(3))
    assert gender is not None and race is not None
    return age, gender, race


def _from_names(path: Path, skip: SkipLog, verify: bool) -> list[Sample]:
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        # every *.jpg is an entry (even a malformed one, so that it is reported, not dropped)
        entries.extend(Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith("jpg"))
    if not entries:
        raise bad_layout("utkface", path, "found neither labels.csv nor *.jpg files")
    samples: list[Sample] = []
    for file in entries:
        try:
            age, gender, race = parse_name(file.name)
        except ValueError as exc:
            skip.add(file.name, reason_code(str(exc)), str(exc))
            continue
        problem = image_problem(file, verify)
        if problem:
            skip.add(file.name, *problem)
            continue
        samples.append(Sample(path=str(file), age=age, gender=gender, ethnicity=race))
    return samples


def _from_csv(csv_path: Path, base: Path, skip: SkipLog, verify: bool) -> list[Sample]:
    header, rows = read_csv_rows(csv_path)
    require_columns(csv_path, header, ("file", "age", "gender", "race"), "utkface")
    image_dir = base / "images" if (base / "images").is_dir() else base
    samples: list[Sample] = []
    for row in rows:
        name = row["file"]
        try:
            age = parse_age(row["age"])
            gender = parse_gender(row["gender"])
            race = parse_ethnicity(row["race"])
        except ValueError as exc:
            skip.add(name, reason_code(str(exc)), str(exc))
            continue
        if age is None or gender is None or race is None:
            skip.add(name, "missing_label", "age, gender and race are all required")
            continue
        file = image_dir / name
        problem = image_problem(file, verify)
        if problem:
            skip.add(name, *problem)
            continue
        samples.append(Sample(path=str(file), age=age, gender=gender, ethnicity=race))
    return samples
