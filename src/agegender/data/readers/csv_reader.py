"""Generic CSV reader: bring your own data as one CSV with a file/path column and any of the label
columns age, age_group, gender, ethnicity, identity."""

from __future__ import annotations

from pathlib import Path

from agegender.data.readers._base import (
    DATASETS,
    SkipLog,
    bad_layout,
    image_problem,
    is_missing,
    parse_age,
    parse_ethnicity,
    parse_gender,
    read_csv_rows,
    reason_code,
    require_root,
)
from agegender.errors import AgeGenderError
from agegender.labels import AgeScheme, Sample, SampleSet, get_scheme

LABEL_COLUMNS: tuple[str, ...] = ("age", "age_group", "gender", "ethnicity", "identity")

LAYOUT = (
    "a CSV file (or a folder holding labels.csv, or exactly one *.csv) with a 'file' or 'path' column "
    "and any of the columns age (years), age_group (index or label of the scheme given by "
    "age_scheme=), gender (0/1, m/f, male/female), ethnicity (0-4 or white, black, asian, indian, "
    "other) and identity; empty cells mean unknown. Image paths are relative to the CSV's folder (or "
    "its images/ subfolder); absolute paths and '..' must stay inside that folder unless "
    "allow_outside_root=true."
)


@DATASETS.register("csv", layout=LAYOUT, default_detector="none", age_scheme=None,
                   tasks=("age", "age_group", "gender", "ethnicity"))
def read_csv(
    root: str | Path,
    age_scheme: str | AgeScheme | None = None,
    delimiter: str = ",",
    verify_images: bool = True,
    allow_outside_root: bool = False,
) -> SampleSet:
    """Read a generic labelled CSV into samples; other columns are ignored, except the optional ``young`` (0/1 →
    ``Sample.extra["young"]``) and ``source_fingerprint`` (the fingerprint of the image a cached crop was cut
    from, as ``agegender crops`` writes it → ``Sample.extra["fingerprint"]``).

    ``age_group`` needs ``age_scheme=`` (e.g. ``"adience8"``); without it an ``age_group`` column is
    ignored when an ``age`` column exists (the group is derived from the age) and is an error
    otherwise. A CSV without a file/path column, or without any label column, raises
    AgeGenderError(code="bad_labels"); a malformed row is skipped with a reason.

    >>> read_csv("my_faces.csv", age_scheme="adience8")   # doctest: +SKIP
    """
    path = require_root(root, "csv")
    csv_path = _find_csv(path)
    header, rows = read_csv_rows(csv_path, delimiter=delimiter)
    file_col = next((c for c in ("file", "path") if c in header), None)
    labels = [c for c in LABEL_COLUMNS if c in header]
    if file_col is None or not labels:
        need = "a 'file' or 'path' column" if file_col is None else f"at least one of {list(LABEL_COLUMNS)}"
        raise AgeGenderError(
            f"csv: {csv_path} needs {need}; found columns {header}. Expected layout: {LAYOUT}", code="bad_labels"
        )
    scheme = get_scheme(age_scheme) if age_scheme is not None else None
    use_group = "age_group" in header and scheme is not None
    if "age_group" in header and scheme is None and "age" not in header:
        raise AgeGenderError(
            f"csv: {csv_path} has an age_group column; say which scheme its labels use with "
            f"age_scheme= (one of adience8, kang4, peta5, fairface9)",
            code="bad_config",
        )
    base = csv_path.parent
    skip = SkipLog()
    samples: list[Sample] = []
    for line_no, row in enumerate(rows, start=2):
        name = row[file_col]
        entry = name or f"{csv_path.name}:{line_no}"
        if not name:
            skip.add(entry, "missing_file", f"empty {file_col!r}")
            continue
        try:
            age = parse_age(row.get("age"))
            group = _parse_group(row["age_group"], scheme) if use_group else None
            gender = parse_gender(row.get("gender"))
            eth = parse_ethnicity(row.get("ethnicity"))
        except ValueError as exc:
            skip.add(entry, reason_code(str(exc)), str(exc))
            continue
        file = Path(name)
        if not file.is_absolute():
            file = base / name
            if not file.exists() and (base / "images" / name).exists():
                file = base / "images" / name
        problem = image_problem(file, verify_images)
        if problem:
            skip.add(entry, *problem)
            continue
        ident = row.get("identity")
        extra = {}
        young = row.get("young")
        if not is_missing(young):
            if young.strip() not in ("0", "1"):
                skip.add(entry, "bad_label", f"young {young!r} is not 0 or 1")
                continue
            extra["young"] = int(young.strip())
        fp = row.get("source_fingerprint")
        if not is_missing(fp):
            try:
                extra["fingerprint"] = int(fp)
            except ValueError:
                skip.add(entry, "bad_label", f"source_fingerprint {fp!r} is not an integer")
                continue
        samples.append(
            Sample(
                path=str(file),
                age=age,
                age_group=group,
                age_scheme=scheme.name if group is not None and scheme is not None else None,
                gender=gender,
                ethnicity=eth,
                identity=None if is_missing(ident) else str(ident),
                extra=extra,
            )
        )
    result = SampleSet("csv", samples, age_scheme=scheme.name if scheme else None, root=str(base))
    return skip.finish(result, allow_outside_root=allow_outside_root)


def _find_csv(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / "labels.csv").is_file():
        return path / "labels.csv"
    found = sorted(path.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    what = "found no *.csv" if not found else f"found {len(found)} CSV files and no labels.csv; pass one file"
    raise bad_layout("csv", path, what)


def _parse_group(value: str, scheme: AgeScheme | None) -> int | None:
    if is_missing(value) or scheme is None:
        return None
    text = value.strip()
    if text.isdigit():
        idx = int(text)
        if idx >= scheme.num_groups:
            raise ValueError(f"age_group {idx} outside 0-{scheme.num_groups - 1} of {scheme.name}")
        return idx
    try:
        return scheme.parse(text)
    except AgeGenderError:
        raise ValueError(f"age_group {value!r} is not a {scheme.name} group") from None
