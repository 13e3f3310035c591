"""Flat machine-readable records: one row per person plus one status row per image, with a fixed column
list per predictor, shared by the CLI (JSON/JSONL/CSV) and the Ray job (Parquet)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agegender.inference.results import ImageResult

RECORD_IMAGE = "image"
RECORD_PERSON = "person"

#: leading columns of every record and their types ("str", "int", "float")
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("record", "str"),  # "image" or "person"
    ("source", "str"),
    ("status", "str"),  # image status (ok, no_face, or an error code); repeated on person rows
    ("message", "str"),
    ("width", "int"),
    ("height", "int"),
    ("num_people", "int"),
    ("person", "int"),  # index of the person in the image (person rows)
    ("x1", "float"),
    ("y1", "float"),
    ("x2", "float"),
    ("y2", "float"),
    ("detector_score", "float"),
    ("crop", "str"),  # detected or whole_image
    ("age", "float"),
    ("age_low", "float"),
    ("age_high", "float"),
    ("age_p_under_18", "float"),
    ("age_group", "str"),
    ("gender", "str"),
    ("ethnicity", "str"),
)


def record_schema(
    gender_names: Sequence[str],
    age_groups: Sequence[str],
    ethnicity_names: Sequence[str] = (),
    attribute_names: Sequence[str] = (),
    views: bool = False,
) -> list[tuple[str, str]]:
    """Ordered (column, type) list: the base columns (with ``views``, person mode's: which views were used,
    ``face+body``, ``body`` or ``face``) then one probability column per label."""
    cols = list(BASE_COLUMNS) + ([("views", "str")] if views else [])
    cols += [(f"gender_prob_{n}", "float") for n in gender_names]
    cols += [(f"age_group_prob_{g}", "float") for g in age_groups]
    cols += [(f"ethnicity_prob_{n}", "float") for n in ethnicity_names]
    cols += [(f"attr_{n}", "float") for n in attribute_names]
    return cols


def to_records(result: ImageResult, columns: Iterable[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """The image's status row followed by one row per person; with ``columns`` every row has exactly
    those keys (missing values ``None``), so rows stack into one table."""
    rows: list[dict[str, Any]] = [
        {
            "record": RECORD_IMAGE,
            "source": result.source,
            "status": result.status,
            "message": result.message,
            "width": result.width,
            "height": result.height,
            "num_people": len(result.people),
        }
    ]
    for i, p in enumerate(result.people):
        row: dict[str, Any] = {
            "record": RECORD_PERSON,
            "source": result.source,
            "status": result.status,
            "person": i,
            "x1": round(p.box[0], 1),
            "y1": round(p.box[1], 1),
            "x2": round(p.box[2], 1),
            "y2": round(p.box[3], 1),
            "detector_score": round(p.detector_score, 4),
            "crop": p.crop,
            "gender": p.gender,
            "ethnicity": p.ethnicity,
        }
        if p.views is not None:
            row["views"] = "+".join(sorted(p.views, key=["face", "body"].index))
        if p.age is not None:
            row["age"] = p.age.years
            if p.age.interval is not None:
                row["age_low"], row["age_high"] = p.age.interval
            row["age_p_under_18"] = p.age.p_under_18
            row["age_group"] = p.age.group or None
            row.update({f"age_group_prob_{k}": v for k, v in p.age.group_probs.items()})
        row.update({f"gender_prob_{k}": v for k, v in (p.gender_probs or {}).items()})
        row.update({f"ethnicity_prob_{k}": v for k, v in (p.ethnicity_probs or {}).items()})
        row.update({f"attr_{k}": v for k, v in (p.attributes or {}).items()})
        rows.append(row)
    if columns is not None:
        names = [c for c, _ in columns]
        rows = [{c: r.get(c) for c in names} for r in rows]
    return rows


def arrow_schema(columns: Iterable[tuple[str, str]]) -> Any:
    """The pyarrow schema of :func:`record_schema` columns (for Parquet)."""
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[kind]) for name, kind in columns])
