"""Detector backends behind one interface: face detectors "haar" (default), "centerface" (the bundled face
models' own), "blazeface", "yunet", "dlib" and
user-supplied "onnx"; person detectors "nanodet" (the default of body mode) and "hog"; and "none" (ready crops).

>>> from agegender.inference.detectors import build_detector
>>> detector = build_detector("none")
>>> detector.detect(np.zeros((4, 6, 3), dtype=np.uint8))[0].box
(0.0, 0.0, 6.0, 4.0)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np  # noqa: F401 - used by the doctest above

from agegender.errors import AgeGenderError
from agegender.inference.detectors import (  # noqa: F401 - registers the backends
    blazeface,
    centerface,
    dlib_hog,
    haar,
    hog,
    nanodet,
    none,
    onnx,
    yunet,
)
from agegender.inference.detectors.base import (
    DETECTORS,
    Detection,
    Detector,
    check_rgb,
    crop,
    downscale,
    expand_box,
    margin_score,
    nms,
)
from agegender.inference.detectors.blazeface import BlazeFaceDetector
from agegender.inference.detectors.centerface import CenterFaceDetector
from agegender.inference.detectors.dlib_hog import DlibHogDetector
from agegender.inference.detectors.haar import HaarDetector
from agegender.inference.detectors.hog import HogPersonDetector
from agegender.inference.detectors.nanodet import NanoDetPersonDetector
from agegender.inference.detectors.none import NoneDetector
from agegender.inference.detectors.onnx import OnnxDetector
from agegender.inference.detectors.yunet import YuNetDetector

#: The detector used when none is named (kang2019's Viola–Jones cascade).
DEFAULT_DETECTOR = "haar"
#: The person detector of body mode (``default_person_detector`` falls back to "hog" where it cannot run).
DEFAULT_PERSON_DETECTOR = "nanodet"

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_PERSON_DETECTOR",
    "DETECTORS",
    "BlazeFaceDetector",
    "CenterFaceDetector",
    "Detection",
    "Detector",
    "DlibHogDetector",
    "HaarDetector",
    "HogPersonDetector",
    "NanoDetPersonDetector",
    "NoneDetector",
    "OnnxDetector",
    "YuNetDetector",
    "build_detector",
    "check_rgb",
    "crop",
    "default_person_detector",
    "downscale",
    "expand_box",
    "margin_score",
    "nms",
]


def build_detector(name_or_path: str | os.PathLike | Detector = DEFAULT_DETECTOR, **opts: Any) -> Detector:
    """Build a detector by registered name (``DETECTORS.names()``), or from a ``.onnx`` file path.

    ``opts`` go to the backend's constructor (e.g. ``min_face_size=40``, ``score_threshold=0.6``).
    A :class:`Detector` instance is returned unchanged, so callers can accept either.

    Raises:
        AgeGenderError: ``unknown_detector`` (message lists the known names), ``bad_config`` (an option
            the backend does not take), or the backend's own errors (``missing_file``, ``bad_model``,
            ``missing_dependency``).
    """
    if isinstance(name_or_path, Detector):
        if opts:
            raise AgeGenderError("options cannot be applied to an already built detector", code="bad_config")
        return name_or_path
    name = os.fspath(name_or_path)
    if name.lower().endswith(".onnx"):
        opts = {"model_path": name, **opts}
        name = "onnx"
    DETECTORS.get(name)  # unknown names: the error lists the registered ones
    if name == "onnx" and "model_path" not in opts:
        raise AgeGenderError(
            "the 'onnx' detector needs a model file: build_detector('path/to/detector.onnx') "
            "or build_detector('onnx', model_path=...)",
            code="bad_config",
        )
    # a misspelt option is the user's configuration error (bad_config), checked against the signature
    return DETECTORS.build(name, **opts)


def default_person_detector() -> str:
    """The best person detector this installation can run: "nanodet" (its bundled ONNX file and onnxruntime
    present), else "hog" (OpenCV only)."""
    from importlib.util import find_spec

    from agegender.inference.detectors.nanodet import weights_path

    return DEFAULT_PERSON_DETECTOR if weights_path().is_file() and find_spec("onnxruntime") else "hog"
