"""Typed prediction results: one :class:`PersonResult` per person, one :class:`ImageResult` per image.

``to_dict()`` gives the JSON-ready form shared by the CLI, the Ray job and the HTTP service.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: status of an image that was processed and had at least one person
STATUS_OK = "ok"
#: the image decoded but the detector found nobody
STATUS_NO_FACE = "no_face"
#: the prediction was below the user's confidence threshold
UNCERTAIN = "uncertain"


@dataclass
class AgeEstimate:
    """Age in years (expected value) with an interval where the model gives a distribution,
    and the age group in ``scheme`` with the probability of every group."""

    years: float | None
    interval: tuple[float, float] | None  # central ``interval_mass`` (e.g. 80 %) range in years
    interval_mass: float | None
    group: str
    group_probs: dict[str, float]
    scheme: str


@dataclass
class PersonResult:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input image
    detector_score: float
    age: AgeEstimate | None = None
    gender: str | None = None  # "male" / "female", or "uncertain" below the confidence threshold
    gender_probs: dict[str, float] | None = None
    ethnicity: str | None = None
    ethnicity_probs: dict[str, float] | None = None
    attributes: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = [round(float(v), 1) for v in self.box]
        return d


@dataclass
class ImageResult:
    source: str
    status: str  # "ok", "no_face", or an error code (unreadable, not_an_image, too_large, missing_file, ...)
    message: str | None = None
    width: int | None = None
    height: int | None = None
    people: list[PersonResult] = field(default_factory=list)

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
