"""PETA reader: pedestrian gender, peta5 age group and appearance attributes, from the project's
``labels.csv`` layout or from the official release (``PETA dataset/<SUBSET>/archive/Label.txt``)."""

from __future__ import annotations

from pathlib import Path

from agegender.data.readers._base import (
    DATASETS,
    IMAGE_SUFFIXES,
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

GENDER_TAGS: dict[str, int] = {"personalMale": 0, "personalFemale": 1}
#: PETA's age tags in peta5 order ("Less30" means 16-30 once "Less15" is its own tag)
AGE_TAGS: dict[str, str] = {
    "personalLess15": "0-15",
    "personalLess30": "16-30",
    "personalLess45": "31-45",
    "personalLess60": "46-60",
    "personalLarger60": "61+",
}
#: tags that are labels of their own task, never attribute inputs (chatzitzisi's autoencoder input)
LABEL_TAGS: frozenset[str] = frozenset(GENDER_TAGS) | frozenset(AGE_TAGS)

LAYOUT = (
    "either a folder holding labels.csv (columns file,subset,person_id,gender,age_group,attributes; "
    "gender 0 male / 1 female, age_group one of 0-15, 16-30, 31-45, 46-60, 61+ or empty, attributes "
    "the space-separated PETA tags) and images/ with the files it names; or the official release: "
    "'PETA dataset/<SUBSET>/archive/' folders (3DPeS, CAVIAR4REID, CUHK, GRID, i-LID, MIT, PRID, "
    "SARC3D, TownCentre, VIPeR), each with images named <personid>_<rest>.<ext> and a Label.txt whose "
    "lines read '<personid> tag1 tag2 ...' (CUHK lists each image's file name as its id)."
)


@DATASETS.register("peta", layout=LAYOUT, default_detector="none", age_scheme="peta5",
                   tasks=("age_group", "gender", "attributes"))
def read_peta(root: str | Path, verify_images: bool = True, allow_outside_root: bool = False) -> SampleSet:
    """Read PETA: gender, peta5 age group, attribute multi-hot vector and pedestrian identity.

    Labels in PETA belong to identities; ``Sample.identity`` is ``"<subset>/<person_id>"`` (for
    CUHK the id is the image's file name, so each CUHK image is its own identity). The attribute
    vocabulary (``SampleSet.attribute_names``) is the sorted set of all tags seen, without the
    gender and age tags. An empty or conflicting age gives ``age_group=None`` (the sample is kept
    for gender); a missing gender tag gives ``gender=None``.

    >>> ss = read_peta("data/peta")                 # doctest: +SKIP
    >>> len(ss), len(ss.attribute_names)            # doctest: +SKIP
    """
    path = require_root(root, "peta")
    skip = SkipLog()
    if path.is_file() and path.suffix.lower() == ".csv":
        rows = _rows_from_csv(path, path.parent, skip)
        base = path.parent
    elif (path / "labels.csv").is_file():
        rows = _rows_from_csv(path / "labels.csv", path, skip)
        base = path
    else:
        rows = _rows_from_release(path, skip)
        base = path
    vocab = tuple(sorted({t for r in rows for t in r["tags"]} - LABEL_TAGS))
    index = {t: i for i, t in enumerate(vocab)}
    samples: list[Sample] = []
    for r in rows:
        problem = image_problem(r["path"], verify_images)
        if problem:
            skip.add(r["entry"], *problem)
            continue
        hot = [0] * len(vocab)
        for t in r["tags"]:
            if t in index:
                hot[index[t]] = 1
        samples.append(
            Sample(
                path=str(r["path"]),
                age_group=r["age_group"],
                age_scheme="peta5",
                gender=r["gender"],
                attributes=tuple(hot),
                identity=f"{r['subset']}/{r['person_id']}",
                extra={"subset": r["subset"]},
            )
        )
    result = SampleSet("peta", samples, attribute_names=vocab, age_scheme="peta5", root=str(base))
    return skip.finish(result, allow_outside_root=allow_outside_root)


def age_group_from_tags(tags: set[str] | list[str]) -> int | None:
    """peta5 index when exactly one age tag is present; none or conflicting tags → None."""
    groups = {AGE_TAGS[t] for t in tags if t in AGE_TAGS}
    if len(groups) != 1:
        return None
    return get_scheme("peta5").parse(groups.pop())


def gender_from_tags(tags: set[str] | list[str]) -> int | None:
    found = {GENDER_TAGS[t] for t in tags if t in GENDER_TAGS}
    return found.pop() if len(found) == 1 else None


def _rows_from_csv(csv_path: Path, base: Path, skip: SkipLog) -> list[dict]:
    header, table = read_csv_rows(csv_path)
    require_columns(csv_path, header, ("file", "subset", "person_id", "gender", "age_group", "attributes"), "peta")
    image_dir = base / "images" if (base / "images").is_dir() else base
    scheme = get_scheme("peta5")
    rows = []
    for row in table:
        name = row["file"]
        gender_text = row["gender"].strip()
        if is_missing(gender_text):
            gender = None
        elif gender_text in ("0", "1"):
            gender = int(gender_text)
        else:
            skip.add(name, "bad_gender", f"gender {gender_text!r} is not 0 or 1")
            continue
        if is_missing(row["age_group"]):
            age_group = None
        else:
            try:
                age_group = scheme.parse(row["age_group"])
            except AgeGenderError:
                skip.add(name, "bad_age_group", f"{row['age_group']!r} is not a peta5 group")
                continue
        rows.append(
            {
                "entry": name,
                "path": image_dir / name,
                "subset": row["subset"],
                "person_id": row["person_id"],
                "gender": gender,
                "age_group": age_group,
                "tags": row["attributes"].split(),
            }
        )
    return rows


def _find_release_subsets(path: Path) -> list[Path]:
    for base in (path, path / "PETA dataset", path / "PETA_dataset", path / "PETA"):
        if (base / "archive" / "Label.txt").is_file():  # root is one subset folder
            return [base]
        found = sorted(p.parent.parent for p in base.glob("*/archive/Label.txt"))
        if found:
            return found
    return []


def _norm_id(text: str) -> str:
    # "0006" in a file name vs "6" in Label.txt (or the reverse) name the same person
    return str(int(text)) if text.isdigit() else text


def _rows_from_release(path: Path, skip: SkipLog) -> list[dict]:
    subsets = _find_release_subsets(path)
    if not subsets:
        raise bad_layout("peta", path, "found neither labels.csv nor <SUBSET>/archive/Label.txt folders")
    rows = []
    for sub_dir in subsets:
        subset = sub_dir.name
        archive = sub_dir / "archive"
        labels: dict[str, tuple[str, list[str]]] = {}
        with open(archive / "Label.txt", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if parts:
                    labels.setdefault(parts[0], (parts[0], parts[1:]))
                    labels.setdefault(_norm_id(parts[0]), (parts[0], parts[1:]))
        for file in sorted(archive.iterdir()):
            if file.name == "Label.txt" or not file.is_file():
                continue
            entry = f"{subset}/{file.name}"
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                skip.add(entry, "not_an_image", "unexpected file in archive/")
                continue
            prefix = file.name.split("_", 1)[0]
            # CUHK keys are whole file names; the others are the person id before the first "_"
            for key in (file.name, prefix, _norm_id(prefix), file.stem, _norm_id(file.stem)):
                if key in labels:
                    person_id, tags = labels[key]
                    break
            else:
                skip.add(entry, "no_label", f"no line for {prefix!r} in {subset}/archive/Label.txt")
                continue
            rows.append(
                {
                    "entry": entry,
                    "path": file,
                    "subset": subset,
                    "person_id": person_id,
                    "gender": gender_from_tags(tags),
                    "age_group": age_group_from_tags(tags),
                    "tags": tags,
                }
            )
    return rows
