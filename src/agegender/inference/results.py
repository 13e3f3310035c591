"""The one result schema (pydantic): one :class:`ImageResult` per image, with its status and a list of
:class:`PersonResult`, each with nested age, gender and ethnicity and their probabilities.

The Python API returns these objects, ``agegender predict --format json|jsonl`` prints them (``to_dict()``), the
HTTP service answers with them and documents them in its OpenAPI schema, and video writes them per frame
(:class:`TrackedPerson` in a :class:`FrameResult`) with a :class:`VideoSummary` of the run and of every track; flat
rows (:mod:`agegender.inference.records`) are only for CSV and Parquet.
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
    """Age in years (a quantile of the predicted distribution, fitted on validation) with an interval and the
    probability of an age under 18 where the model gives a distribution, and the age group in ``scheme`` with the
    probability of every group."""

    years: float | None = Field(description="estimated age in years (None for a model of age groups only); the "
                                "bundled face models hold it below 18 where `p_under_18` reaches their under-age guard")
    interval: tuple[float, float] | None = Field(description="central `interval_mass` range in years")
    interval_mass: float | None = Field(description="probability mass of `interval`, e.g. 0.8")
    p_under_18: float | None = Field(None, description="probability that the person is under 18, from the "
                                     "temperature-scaled age distribution (None for a model of age groups only); "
                                     "threshold it to choose your own trade-off for age checks")
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
    views: dict[str, PersonResult] | None = Field(
        None, description="person mode only: the estimate of each view used, `face` and/or `body`, each with its "
        "own box; the fields above are their fusion (agegender.inference.person)")

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude={"views"})
        d["box"] = [round(float(v), 1) for v in self.box]
        d["detector_score"] = round(float(self.detector_score), 4)  # as in the flat records
        if self.views is not None:
            d["views"] = {k: v.to_dict() for k, v in self.views.items()}
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


class TrackedPerson(PersonResult):
    """A person in one video frame: the track they belong to, with the track's outputs averaged so far."""

    track_id: int = Field(description="the person's id through the video (1, 2, ... in order of appearance)")

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, **{k: v for k, v in super().to_dict().items() if k != "track_id"}}


class FrameResult(BaseModel):
    """Everyone shown in one video frame."""

    frame: int = Field(description="frame index from 0")
    time_s: float = Field(description="frame index / the video's frame rate")
    people: list[TrackedPerson] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "time_s": self.time_s, "people": [p.to_dict() for p in self.people]}


class TrackSummary(BaseModel):
    """One person followed through a video: when they were seen and what their whole track says."""

    track_id: int
    first_frame: int = Field(description="first frame the track is shown in")
    last_frame: int = Field(description="last frame the track is shown in")
    first_time_s: float
    last_time_s: float
    frames: int = Field(description="frames the track is shown in (detected, or carried between detection frames)")
    detections: int = Field(description="detection frames in which the detector found this person")
    age_years: float | None = Field(description="median of the per-detection age estimates (years)")
    age_group: str | None = Field(description="most probable age group of the track's mean age distribution")
    age_p_under_18: float | None = Field(None, description="probability of an age under 18 from the track's mean age "
                                         "distribution (None for a model of age groups only)")
    gender: str | None = Field(description="gender of the track's mean probabilities ('uncertain' below "
                                           "min_confidence)")
    gender_confidence: float | None = Field(description="the track's mean probability of its most probable gender")
    ethnicity: str | None = None
    ethnicity_confidence: float | None = None


class VideoSummary(BaseModel):
    """One run over a video or camera stream: speed, output, and every track."""

    source: str
    model: str
    frames: int = Field(description="frames processed")
    every: int = Field(description="detection + model ran on every `every`-th frame")
    seconds: float = Field(description="wall-clock time of the run")
    fps: float | None = Field(description="frames processed per second of wall-clock time")
    detect_model_seconds: float = Field(description="time spent detecting faces and running the model")
    video_fps: float = Field(description="the video's frame rate (25 when it does not say)")
    tracks: int = Field(description="number of tracks (people)")
    output: str | None = Field(None, description="the annotated video written, if any")
    codec: str | None = Field(None, description="its encoder: libx264 (H.264), libopenh264, libvpx-vp9 (VP9), ...")
    interrupted: bool = Field(False, description="stopped by Ctrl-C")
    people: list[TrackSummary] = Field(default_factory=list, description="one summary per track")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class VideoResult(BaseModel):
    """What ``agegender video --json`` writes: the run's summary and every frame's people."""

    summary: VideoSummary
    frames: list[FrameResult] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(),
            "model": self.summary.model,
            "frames": [f.to_dict() for f in self.frames],
        }
