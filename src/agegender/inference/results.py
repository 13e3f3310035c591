"""The one result schema (pydantic): one :class:`ImageResult` per image, with its status and a list of
:class:`PersonResult`, each with nested age, gender and ethnicity and their probabilities.

The Python API returns these objects, ``agegender predict --format json|jsonl`` prints them (``to_dict()``), the
HTTP service answers with them and documents them in its OpenAPI schema, and video writes them per frame; flat rows
(:mod:`agegender.inference.records`) are only for CSV and Parquet.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

#: status of an image that was processed and had at least one person
STATUS_OK = "ok"
#: the image decoded but the detector found nobody
STATUS_NO_FACE = "no_face"
#: the prediction was below the user's confidence threshold
UNCERTAIN = "uncertain"


class AgeEstimate(BaseModel):
    """Age in years (expected value) with an interval where the model gives a distribution, and the age group
    in ``scheme`` with the probability of every group."""

    years: float | None = Field(description="estimated age in years (None for a model of age groups only)")
    interval: tuple[float, float] | None = Field(description="central `interval_mass` range in years")
    interval_mass: float | None = Field(description="probability mass of `interval`, e.g. 0.8")
    group: str = Field(description="most probable age group of `scheme`, or 'uncertain'")
    group_probs: dict[str, float] = Field(description="probability of every group of `scheme`")
    scheme: str = Field(description="age-group scheme: adience8, kang4, peta5 or fairface9")


class PersonResult(BaseModel):
    """One person (a face, or a whole body for body models)."""

    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in pixels of the input image")
    detector_score: float
    crop: str = Field("detected", description="how the crop was taken: `detected` (a detector's box, framed like "
                      "the training crops) or `whole_image` (the image is itself the crop: --detector none, a body "
                      "crop, or a tight face crop recognised as one)")
    age: AgeEstimate | None = None
    gender: str | None = Field(None, description="'male' / 'female', or 'uncertain' below min_confidence")
    gender_probs: dict[str, float] | None = None
    ethnicity: str | None = None
    ethnicity_probs: dict[str, float] | None = None
    attributes: dict[str, float] | None = Field(None, description="probability of each appearance attribute")

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d["box"] = [round(float(v), 1) for v in self.box]
        d["detector_score"] = round(float(self.detector_score), 4)  # as in the flat records
        return d


class ImageResult(BaseModel):
    """One image: its status and everyone in it."""

    source: str = Field(description="the input's path, or a placeholder for in-memory images")
    status: str = Field(description="ok, no_face, or an error code (unreadable, not_an_image, too_large, "
                                    "missing_file, unsupported, ...)")
    message: str | None = Field(None, description="what went wrong and what to do, for every status but ok")
    width: int | None = None
    height: int | None = None
    people: list[PersonResult] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (STATUS_OK, STATUS_NO_FACE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "message": self.message,
            "width": self.width,
            "height": self.height,
            "people": [p.to_dict() for p in self.people],
        }
