"""RAP v2 reader: ``RAP_annotation.mat`` → gender ('Femal'), age group (mapped onto peta5) and the
other attribute columns as a multi-hot vector, with person identities and the official partition."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from agegender.data.readers._base import DATASETS, SkipLog, bad_layout, image_problem, mat_text, require_root
from agegender.errors import AgeGenderError
from agegender.labels import Sample, SampleSet, get_scheme

#: gender columns: RAP v2 spells it 'Femal', RAP v1 'Female'
GENDER_COLUMNS: tuple[str, ...] = ("Femal", "Female")
#: RAP age columns → peta5 group. RAP's 16/17 and 60/61 edges differ by one year from peta5's;
#: close enough to train and score one age-group head across PETA and RAP.
AGE_COLUMNS: dict[str, str] = {
    "AgeLess16": "0-15",
    "Age17-30": "16-30",
    "Age31-45": "31-45",
    "Age46-60": "46-60",
    "AgeBiger60": "61+",
}
#: field names of RAP v2 first, then RAP v1's equivalents
_NAME_FIELDS = ("name", "imagesname")
_ATTR_FIELDS = ("attribute", "attribute_eng")
_DATA_FIELDS = ("data", "label")

LAYOUT = (
    "the RAP v2 release: a folder holding RAP_annotation/RAP_annotation.mat (or RAP_annotation.mat "
    "directly) and RAP_dataset/ with the images. The .mat holds a 1x1 struct RAP_annotation with "
    "fields name (image file names), attribute (column names; 'Femal' is gender, AgeLess16, "
    "Age17-30, Age31-45, Age46-60 the age groups), data (N x K 0/1 labels), person_identity and "
    "partition_attribute (optional)."
)


@DATASETS.register("rap", layout=LAYOUT, default_detector="none", age_scheme="peta5",
                   tasks=("age_group", "gender", "attributes"))
def read_rap(root: str | Path, partition: int | None = 0, verify_images: bool = True,
             allow_outside_root: bool = False) -> SampleSet:
    """Read RAP v2: gender, age group as a peta5 index, attributes and identity.

    Gender is column 'Femal' (1 → female, 0 → male, anything else → None). The age group is the one
    age column set to 1 (none or several → None), mapped AgeLess16→0-15, Age17-30→16-30,
    Age31-45→31-45, Age46-60→46-60 (AgeBiger60→61+ when present). All other columns form
    ``attributes`` (values other than 1 count as 0). ``person_identity`` gives ``identity``
    (negative ids, RAP's "unknown", give None). With ``partition=k`` the k-th official partition
    is recorded as ``extra["split"]`` ("train", "val" or "test"); ``None`` skips it.
    """
    path = require_root(root, "rap")
    mat = _find_mat(path)
    if mat is None:
        raise bad_layout("rap", path, "found no RAP_annotation.mat")
    image_dir = next((d for d in (mat.parent / "RAP_dataset", mat.parent.parent / "RAP_dataset") if d.is_dir()),
                     mat.parent / "RAP_dataset")
    ann = _load(mat)
    names = [mat_text(c) for c in _get(ann, _NAME_FIELDS, mat).reshape(-1)]
    columns = [mat_text(c) for c in _get(ann, _ATTR_FIELDS, mat).reshape(-1)]
    data = np.asarray(_get(ann, _DATA_FIELDS, mat))
    if data.shape != (len(names), len(columns)):
        raise AgeGenderError(
            f"rap: {mat}: data is {data.shape}, expected ({len(names)}, {len(columns)})", code="bad_labels"
        )
    gender_col = next((columns.index(c) for c in GENDER_COLUMNS if c in columns), None)
    scheme = get_scheme("peta5")
    age_cols = [(columns.index(c), scheme.parse(g)) for c, g in AGE_COLUMNS.items() if c in columns]
    label_cols = {gender_col, *(i for i, _ in age_cols)} - {None}
    attr_idx = [i for i in range(len(columns)) if i not in label_cols]
    attr_names = tuple(columns[i] for i in attr_idx)
    identities = _identities(ann, len(names))
    splits = _partition(ann, partition, len(names)) if partition is not None else {}

    skip = SkipLog()
    samples: list[Sample] = []
    for i, name in enumerate(names):
        file = image_dir / name
        problem = image_problem(file, verify_images)
        if problem:
            skip.add(name, *problem)
            continue
        row = data[i]
        gender = int(row[gender_col]) if gender_col is not None and row[gender_col] in (0, 1) else None
        hits = [g for j, g in age_cols if row[j] == 1]
        extra: dict[str, Any] = {}
        if i in splits:
            extra["split"] = splits[i]
        samples.append(
            Sample(
                path=str(file),
                age_group=hits[0] if len(hits) == 1 else None,
                age_scheme="peta5",
                gender=gender,
                attributes=tuple(int(row[j] == 1) for j in attr_idx),
                identity=identities[i],
                extra=extra,
            )
        )
    # the dataset folder holds both the annotation and RAP_dataset/ (also when the .mat was given directly)
    folder = os.path.commonpath([str(mat.parent), str(image_dir)])
    result = SampleSet("rap", samples, attribute_names=attr_names, age_scheme="peta5", root=folder)
    return skip.finish(result, allow_outside_root=allow_outside_root)


def _find_mat(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".mat":
        return path
    for cand in (path / "RAP_annotation" / "RAP_annotation.mat", path / "RAP_annotation.mat"):
        if cand.is_file():
            return cand
    return None


def _load(mat: Path) -> Any:
    from scipy.io import loadmat

    try:
        data = loadmat(str(mat))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:  # v7.3 (HDF5) files, truncated downloads
        raise AgeGenderError(f"rap: cannot read {mat}: {exc}", code="bad_labels") from None
    if "RAP_annotation" not in data:
        keys = [k for k in data if not k.startswith("__")]
        raise AgeGenderError(f"rap: {mat} has no struct 'RAP_annotation' (found {keys})", code="bad_labels")
    return data["RAP_annotation"].reshape(-1)[0]


def _get(ann: Any, fields: tuple[str, ...], mat: Path) -> np.ndarray:
    for f in fields:
        if f in (ann.dtype.names or ()):
            return np.asarray(ann[f])
    raise AgeGenderError(
        f"rap: {mat} lacks a field {' / '.join(fields)} (found {list(ann.dtype.names or ())})", code="bad_labels"
    )


def _identities(ann: Any, n: int) -> list[str | None]:
    if "person_identity" not in (ann.dtype.names or ()):
        return [None] * n
    ids = np.asarray(ann["person_identity"]).reshape(-1)
    if ids.size != n:
        return [None] * n
    return [str(int(v)) if np.isfinite(v) and v >= 0 else None for v in ids.astype(np.float64)]


def _partition(ann: Any, k: int, n: int) -> dict[int, str]:
    """Sample index → "train"/"val"/"test" of the k-th official partition (1-based indices in the file)."""
    if "partition_attribute" not in (ann.dtype.names or ()):
        return {}
    parts = np.asarray(ann["partition_attribute"]).reshape(-1)
    if not 0 <= k < parts.size:
        raise AgeGenderError(f"rap: partition {k} not in 0-{parts.size - 1}", code="bad_config")
    # a cell of 1x1 structs whose *_index fields are 1xM arrays of 1-based sample numbers
    cell = parts[k]
    rec = cell.reshape(-1)[0] if isinstance(cell, np.ndarray) else cell
    out: dict[int, str] = {}
    for split in ("train", "val", "test"):
        key = f"{split}_index"
        if key not in (rec.dtype.names or ()):
            continue
        idx = np.asarray(rec[key]).reshape(-1)
        if idx.dtype == object:
            idx = np.concatenate([np.asarray(x).reshape(-1) for x in idx]) if idx.size else idx
        for v in idx.astype(np.int64):
            if 1 <= v <= n:
                out[int(v) - 1] = split
    return out
