"""The cropper: a face (or person) detector plus the framing that turns its boxes into model-ready crops the
way the model's training crops were framed. One part of the :class:`~agegender.inference.predictor.Predictor`."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from agegender.data.preprocess import Preprocessing

Box = tuple[float, float, float, float]


class Cropper:
    """Finds everyone in an RGB image and cuts their crops at the model's resize size.

    ``detector``: a registered name (``blazeface``, ``haar``, ``dlib``, ``none``, an ONNX path) or a built
    :class:`~agegender.inference.detectors.Detector`. ``options`` go to the detector, except the framing:
    ``margin`` (fraction of the box added per side) and ``shift`` (downward, fraction of the box height), which
    default to the detector's registered framing, or to the model's ``crop_margin`` when it was trained on
    dataset boxes grown by one (then the crops are not squared either).
    """

    def __init__(self, detector: Any, pre: Preprocessing, options: dict[str, Any] | None = None) -> None:
        from agegender.inference.detectors import Detector, build_detector
        from agegender.inference.detectors.base import detector_framing

        opts = dict(options or {})
        margin = opts.pop("margin", None)  # crop framing options are ours, not the detector's
        shift = opts.pop("shift", None)
        self.pre = pre
        if isinstance(detector, Detector):  # a ready instance cannot be cloned per thread: serialise its use
            self.name, self._lock = detector.name, threading.Lock()
            self.detector = detector
        else:
            self.name, self._lock = str(detector), None
            self.detector = build_detector(self.name, **opts)
        self._options = opts
        # OpenCV's CascadeClassifier (and dlib's detector) are not thread-safe: each concurrent detection
        # borrows its own instance from this pool (built on demand, kept for reuse).
        self._idle = [self.detector]
        self._pool_lock = threading.Lock()
        frame_margin, frame_shift = detector_framing(self.name)
        if pre.crop_margin:  # trained on dataset boxes grown by crop_margin, as datamodule.read_resized cuts them
            frame_margin, frame_shift = pre.crop_margin, 0.0
        self.margin = float(margin if margin is not None else frame_margin)
        self.shift = float(shift if shift is not None else frame_shift)

    def __call__(self, rgb: np.ndarray) -> tuple[list[Box], list[float], list[np.ndarray]]:
        """Boxes, detector scores and model-ready crops (uint8, resized) of everyone in ``rgb``."""
        from agegender.inference.detectors import crop

        h, w = rgb.shape[:2]
        if self.name == "none":  # the input is the crop: keep its aspect (pedestrians), no padding
            return [(0.0, 0.0, float(w), float(h))], [1.0], [self.pre.resize(rgb)]
        boxes, scores, crops = [], [], []
        for det in self.detect(rgb):
            x1, y1, x2, y2 = (float(v) for v in det.box)
            boxes.append((x1, y1, x2, y2))
            scores.append(float(det.score))
            dy = self.shift * (y2 - y1)
            crops.append(self.pre.resize(crop(rgb, (x1, y1 + dy, x2, y2 + dy), self.margin,
                                              square=self.pre.crop_square)))
        return boxes, scores, crops

    def detect(self, rgb: np.ndarray) -> list[Any]:
        """The detector's raw detections, safe to call from several threads."""
        if self._lock is not None:
            with self._lock:
                return self.detector.detect(rgb)
        with self._pool_lock:
            det = self._idle.pop() if self._idle else None
        if det is None:
            from agegender.inference.detectors import build_detector

            det = build_detector(self.name, **self._options)
        try:
            return det.detect(rgb)
        finally:
            with self._pool_lock:
                self._idle.append(det)
