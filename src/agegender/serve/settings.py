"""Limits and options of the HTTP service: one dataclass, filled from defaults, ``AGEGENDER_*`` environment
variables and (in ``agegender serve``) command-line flags, in that order of increasing precedence."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from agegender.data.images import DEFAULT_DECODE_SIDE, DEFAULT_MAX_PIXELS
from agegender.errors import AgeGenderError

#: image formats the service can accept, by the name :func:`agegender.serve.uploads.sniff_image_type` gives
KNOWN_IMAGE_TYPES: tuple[str, ...] = ("jpeg", "png", "webp", "bmp", "gif", "tiff")

#: prefix of every environment variable the service reads (AGEGENDER_MAX_UPLOAD_BYTES, ...)
ENV_PREFIX = "AGEGENDER_"

MIB = 1024 * 1024


@dataclass
class ServeSettings:
    """Everything the service enforces or passes on to the predictor.

    Each field can be set by the environment variable ``AGEGENDER_<FIELD NAME IN CAPITALS>``
    (for example ``AGEGENDER_MAX_UPLOAD_BYTES=5242880``); lists are comma-separated.
    """

    #: bytes of one uploaded image (413 ``upload_too_large`` above it)
    max_upload_bytes: int = 10 * MIB
    #: bytes of a whole batch request body (413 ``upload_too_large`` above it)
    max_batch_bytes: int = 32 * MIB
    #: width × height of one image, read from its header before decoding (413 ``too_large`` above it)
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: longer side images are decoded at for prediction: larger JPEGs decode at 1/2, 1/4 or 1/8 scale (never
    #: below it), any image still larger is downscaled right after decoding; boxes come back in full-size pixels
    decode_side: int = DEFAULT_DECODE_SIDE
    #: pixels one request decodes (summed over a batch; JPEGs after the reduction), read from the headers
    #: before decoding (413 ``too_many_pixels`` above it)
    max_request_pixels: int = 48_000_000
    #: pixels decoded by all requests admitted to the model at once; a request that does not fit waits, and
    #: waiters go smallest first (503 ``pixel_budget_full`` when max_pending already wait, 504
    #: ``pixel_budget_timeout`` after timeout_s); at least max_request_pixels
    pixel_budget: int = 96_000_000
    #: images in one batch request (413 ``too_many_images`` above it)
    max_batch_images: int = 16
    #: accepted formats, checked on the file's magic bytes (415 ``unsupported_media_type`` otherwise)
    accepted_types: tuple[str, ...] = KNOWN_IMAGE_TYPES
    #: seconds one request may wait for and spend in the model (504 ``timeout`` after it)
    timeout_s: float = 30.0
    #: model worker threads, each with its own predictor (the HTTP loop itself is one async thread)
    workers: int = 1
    #: torch/onnxruntime threads per predictor (default: CPU cores / workers)
    threads: int | None = None
    #: requests admitted to the model queue at once, running or waiting (503 ``busy`` beyond it)
    max_pending: int = 32
    #: face detector (``centerface``, ``blazeface``, ``haar``, ``yunet``, ``dlib``, ``none``, a .onnx path); default: the model's own choice
    detector: str | None = None
    #: device of the model (``cpu``, ``cuda:0``)
    device: str = "cpu"
    #: model runtime: ``torch``, ``onnx``, ``openvino`` or ``auto`` (time torch and onnx once, keep the faster; see
    #: :mod:`agegender.inference.backend_choice`); default: a bundled model runs its ONNX twin (OpenVINO in
    #: bfloat16 on CPUs with AMX, OpenVINO on its int8 twin where a one-time speed check finds that faster, else
    #: ONNX Runtime), another file by its extension
    backend: str | None = None
    #: folder with Swagger UI 5 files (swagger-ui-bundle.js, swagger-ui.css) for ``/docs``; default: found in
    #: an installed package (swagger-ui-py), else ``/docs`` is a small built-in offline reference page
    docs_assets: str | None = None
    #: further :class:`~agegender.inference.options.PredictorOptions` for the model (not read from the environment)
    predictor_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.accepted_types = tuple(str(t).strip().lower() for t in self.accepted_types if str(t).strip())
        unknown = [t for t in self.accepted_types if t not in KNOWN_IMAGE_TYPES]
        if unknown:
            raise AgeGenderError(f"accepted_types: unknown image type(s) {', '.join(unknown)}; "
                                 f"choose among {', '.join(KNOWN_IMAGE_TYPES)}", code="bad_option")
        for name in ("max_upload_bytes", "max_batch_bytes", "max_pixels", "max_batch_images", "workers",
                     "max_pending", "decode_side", "max_request_pixels", "pixel_budget"):
            if int(getattr(self, name)) < 1:
                raise AgeGenderError(f"{name} must be at least 1, not {getattr(self, name)}", code="bad_option")
        if int(self.max_request_pixels) > int(self.pixel_budget):
            raise AgeGenderError(f"max_request_pixels ({self.max_request_pixels}) must not exceed pixel_budget "
                                 f"({self.pixel_budget}): such a request could never be admitted", code="bad_option")
        if self.backend is not None and self.backend not in ("torch", "onnx", "openvino", "auto"):
            raise AgeGenderError(f"backend must be torch, onnx, openvino or auto, not {self.backend!r}",
                                 code="bad_option")
        if not float(self.timeout_s) > 0:
            raise AgeGenderError(f"timeout_s must be positive, not {self.timeout_s}", code="bad_option")
        if self.predictor_options:  # checked now, by the one declaration of the predictor's options
            from agegender.inference.options import PredictorOptions

            PredictorOptions.of(**self.predictor_options)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServeSettings:
        """Defaults, then ``AGEGENDER_*`` variables from ``env`` (default ``os.environ``), then ``overrides``
        (keyword arguments whose value is ``None`` are ignored, so unset CLI flags fall through)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "predictor_options":
                continue
            raw = env.get(env_name(f.name))
            if raw is not None and raw.strip() != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The public limits, as ``GET /v1/models`` reports them."""
        d = dataclasses.asdict(self)
        d.pop("predictor_options", None)
        d["accepted_types"] = list(self.accepted_types)
        return d


def env_name(field_name: str) -> str:
    """``max_upload_bytes`` → ``AGEGENDER_MAX_UPLOAD_BYTES``."""
    return ENV_PREFIX + field_name.upper()


def _parse(f: dataclasses.Field, raw: str) -> Any:
    name, text = env_name(f.name), raw.strip()
    kind = str(f.type)
    try:
        if "tuple" in kind:
            return tuple(t.strip() for t in text.split(",") if t.strip())
        if kind.startswith("int"):
            return int(float(text)) if text.lower() not in ("none", "") else None
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise AgeGenderError(f"environment variable {name}={raw!r} is not a number", code="bad_option") from None
    return text
