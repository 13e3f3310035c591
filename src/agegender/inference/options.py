"""The predictor's options, declared and documented once: :func:`agegender.load`, the CLI's ``predict`` and
``video``, the HTTP service and the Ray job all build a :class:`PredictorOptions`, so a misspelt or out-of-range
option is the same one-line error everywhere."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agegender.data.images import DEFAULT_MAX_PIXELS
from agegender.errors import AgeGenderError


class PredictorOptions(BaseModel):
    """Everything :func:`agegender.load` takes besides the model."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=True)

    device: str = Field("cpu", description="`cpu` or `cuda[:N]`")
    backend: Literal["torch", "onnx", "openvino", "auto"] | None = Field(
        None, description="model runtime. Default: a bundled model on a CPU runs its bundled ONNX twin (no torch "
        "imported): with OpenVINO in bfloat16 on a CPU with bfloat16 matrix units (Intel AMX), with OpenVINO on its int8 twin "
        "or in bfloat16 where a one-time speed check finds that faster (CPUs without AMX), else with ONNX "
        "Runtime in float32; an `.onnx` file ONNX Runtime, any other package or checkpoint PyTorch. `onnx`/`openvino` with a "
        "package exports it on the fly; `auto` times PyTorch and ONNX Runtime on this machine once (cached) "
        "and keeps the faster (agegender.inference.backend_choice)")
    precision: Literal["fp32", "bf16", "int8", "auto"] | None = Field(
        None, description="`fp32`: float32 throughout (a bundled model then runs on ONNX Runtime, outputs equal to "
        "`agegender evaluate`'s). `bf16`: bfloat16 (OpenVINO for a bundled model or an `.onnx` file, else the "
        "PyTorch trace after 64 crops; outputs move slightly). `int8`: a bundled model's int8 twin (or an int8 "
        "`.onnx` file) on OpenVINO. `auto`: PyTorch times both; OpenVINO takes bfloat16 on AMX CPUs. Unset: the "
        "runtime's default (for a bundled model on a CPU: bfloat16 with AMX, int8 where a one-time speed check finds "
        "it faster, as on CPUs with AVX-512 VNNI, else float32)")
    threads: int | None = Field(None, ge=1, description="intra-op threads of torch / ONNX Runtime. Unset, ONNX "
                                "Runtime on a CPU runs one single-threaded model call per CPU at once, each worker "
                                "thread taking a few images from decoding to results (docs/performance.md); set, "
                                "one call at a time on that many threads")
    detector: Any = Field(
        None, description="face or person detector: `centerface`, `blazeface`, `yunet`, `haar`, `dlib`, a path to an ONNX face "
        "detector; `nanodet`, `hog` (people, for body models); `none` (inputs are crops); or a built Detector; "
        "default: the model's own (CenterFace for the bundled face models, nanodet for body models, where a ready "
        "pedestrian crop stays one person)")
    detector_options: dict[str, Any] = Field(
        default_factory=dict, description="detector settings (e.g. min_face_size, score_threshold) and the crop "
        "framing: `margin` (fraction of the box added per side), `shift` (downward, fraction of the box height), "
        "`align` (on: a face rolled 5° or more is turned upright by its eye landmarks before it is cut; off; or the "
        "smallest roll in degrees)")
    mode: Literal["face", "body", "person"] | None = Field(
        None, description="default: the model's (PETA/RAP models: body). `person`: each person found by the body "
        "model's person detector, with the face model's estimate when the face is seen and the two fused "
        "(agegender.inference.person; the model named is the face or the body half, the other the bundled default)")
    scheme: str | None = Field(None, description="age-group scheme of the results: adience8, kang4, peta5, "
                                                 "fairface9; default: the model's")
    interval: float = Field(0.8, gt=0.0, lt=1.0, description="probability mass of the reported age interval")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="below this top probability, gender, "
                                                                   "ethnicity and age group are `uncertain`")
    tta_flip: bool | None = Field(None, description="average with the mirrored crops; default: the model's "
                                                    "setting (docs/performance.md has its gain and cost)")
    batch_size: int = Field(64, ge=1, description="crops per model call")
    workers: int | None = Field(None, ge=1, description="decode and detection threads (default min(4, CPUs)); when "
                                "ONNX Runtime runs single-threaded calls side by side (`threads` unset), these threads "
                                "run the model too, at least one per call")
    max_pixels: int | None = Field(DEFAULT_MAX_PIXELS, ge=1, description="larger images get status too_large")

    @classmethod
    def of(cls, options: PredictorOptions | None = None, **overrides: Any) -> PredictorOptions:
        """``options`` (or the defaults) with ``overrides`` applied; any bad option is a one-line
        :class:`AgeGenderError` (``bad_option``) naming it."""
        base = options.model_dump() if options is not None else {}
        base.update({k: v for k, v in overrides.items()})
        try:
            return cls(**base)
        except ValidationError as e:
            raise AgeGenderError(_one_line(e), code="bad_option") from None


def _one_line(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        name = ".".join(str(x) for x in err["loc"]) or "options"
        if err["type"] == "extra_forbidden":
            valid = ", ".join(PredictorOptions.model_fields)
            parts.append(f"unknown predictor option {name!r}; valid: {valid}")
        else:
            parts.append(f"predictor option {name}={err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)
