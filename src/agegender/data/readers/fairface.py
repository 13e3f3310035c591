"""FairFace reader: ``fairface_label_{train,val}.csv`` → fairface9 age group, gender and race, the
7 FairFace races folded onto our 5 ethnicities (the raw race kept in ``extra["race7"]``)."""

from __future__ import annotations

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
from agegender.labels import ETHNICITIES, AgeScheme, Sample, SampleSet, get_scheme

#: FairFace's 7 races → our 5 ETHNICITIES (UTKFace's "others" covers Hispanic, Latino, Middle Eastern)
RACE7_TO_ETHNICITY: dict[str, str] = {
    "White": "white",
    "Black": "black",
    "East Asian": "asian",
    "Southeast Asian": "asian",
    "Indian": "indian",
    "Middle Eastern": "other",
    "Latino_Hispanic": "other",
}
_RACE_KEYS = {k.lower().replace("_", " "): k for k in RACE7_TO_ETHNICITY}

LAYOUT = (
    "a folder holding FairFace's label files fairface_label_train.csv and/or fairface_label_val.csv "
    "(columns file,age,gender,race[,service_test]; age one of 0-2, 3-9, 10-19, ..., 60-69, "
    "'more than 70'; gender Male/Female; race White, Black, East Asian, Southeast Asian, Indian, "
    "Middle Eastern or Latino_Hispanic) with the images at the paths the 'file' column gives "
    "relative to the CSV's folder (train/1.jpg, val/1.jpg); or the path of one such CSV."
)


@DATASETS.register("fairface", layout=LAYOUT, default_detector="haar", age_scheme="fairface9",
                   tasks=("age_group", "gender", "ethnicity"))
def read_fairface(root: str | Path, verify_images: bool = True, allow_outside_root: bool = False) -> SampleSet:
    """Read FairFace: fairface9 age group, gender and ethnicity; any label may be empty (None).

    Races map to ETHNICITIES as White→white, Black→black, East/Southeast Asian→asian,
    Indian→indian, Middle Eastern/Latino_Hispanic→other; ``extra["race7"]`` keeps the original and
    ``extra["split"]`` the CSV's part ("train"/"val"). FairFace crops are loose (padding 0.25 or
    1.25 around the face), hence ``default_detector="haar"``.
    """
    path = require_root(root, "fairface")
    if path.is_file():
        csvs = [path]
    else:
        csvs = sorted(path.glob("fairface_label_*.csv")) or sorted(path.glob("*.csv"))
    if not csvs:
        raise bad_layout("fairface", path, "found no fairface_label_*.csv")
    scheme = get_scheme("fairface9")
    skip = SkipLog()
    samples: list[Sample] = []
    for csv_path in csvs:
        header, rows = read_csv_rows(csv_path)
        require_columns(csv_path, header, ("file", "age", "gender", "race"), "fairface")
        part = csv_path.stem.rsplit("_", 1)[-1] if csv_path.stem.startswith("fairface_label_") else csv_path.stem
        for line_no, row in enumerate(rows, start=2):
            entry = row["file"] or f"{csv_path.name}:{line_no}"
            try:
                group = parse_fairface_age(row["age"], scheme)
                gender = _gender(row["gender"])
                race7, eth = _race(row["race"])
            except ValueError as exc:
                skip.add(entry, f"bad_{str(exc).split()[0]}", str(exc))
                continue
            if not row["file"]:
                skip.add(entry, "missing_file", "empty 'file' column")
                continue
            file = csv_path.parent / row["file"]
            problem = image_problem(file, verify_images)
            if problem:
                skip.add(entry, *problem)
                continue
            extra: dict = {"race7": race7, "split": part}
            if "service_test" in row and not is_missing(row["service_test"]):
                extra["service_test"] = row["service_test"].strip().lower() == "true"
            samples.append(
                Sample(path=str(file), age_group=group, age_scheme="fairface9", gender=gender, ethnicity=eth,
                       extra=extra)
            )
    result = SampleSet("fairface", samples, age_scheme="fairface9", root=str(path.parent if path.is_file() else path))
    return skip.finish(result, allow_outside_root=allow_outside_root)


def parse_fairface_age(label: str, scheme: AgeScheme | None = None) -> int | None:
    """fairface9 index of a FairFace age label (``20-29``, ``more than 70``); empty → None."""
    if is_missing(label):
        return None
    scheme = scheme or get_scheme("fairface9")
    text = label.strip()
    if text.lower().replace(" ", "") in ("morethan70", "70+", "70-100"):
        text = "70+"
    try:
        return scheme.parse(text)
    except AgeGenderError:
        raise ValueError(f"age {label!r} is not a FairFace age group") from None


def _gender(label: str) -> int | None:
    if is_missing(label):
        return None
    text = label.strip().lower()
    if text not in ("male", "female"):
        raise ValueError(f"gender {label!r} is not Male or Female")
    return 0 if text == "male" else 1


def _race(label: str) -> tuple[str | None, int | None]:
    if is_missing(label):
        return None, None
    key = _RACE_KEYS.get(label.strip().lower().replace("_", " "))
    if key is None:
        raise ValueError(f"race {label!r} is not one of {list(RACE7_TO_ETHNICITY)}")
    return key, ETHNICITIES.index(RACE7_TO_ETHNICITY[key])
