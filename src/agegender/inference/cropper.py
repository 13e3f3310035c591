"""The cropper: a face (or person) detector plus the framing that turns its boxes into model-ready crops the
way the model's training crops were framed. One part of the :class:`~agegender.inference.predictor.Predictor`."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from agegender.data.preprocess import Preprocessing

Box = tuple[float, float, float, float]

#: border added around an image, as a fraction of its longer side, to check whether it is a face crop itself
CROP_BORDER = 0.5
#: share of the image a face found on the bordered copy must cover for the image to count as a face crop
CROP_COVER = 0.25


class Cropper:
    """Finds everyone in an RGB image and cuts their crops at the model's resize size.

    ``detector``: a registered name (``blazeface``, ``yunet``, ``haar``, ``dlib``, ``none``, an ONNX path) or a built
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
        boxes, scores, crops, _ = self.find(rgb)
        return boxes, scores, crops

    def find(self, rgb: np.ndarray, whole_image_crops: bool = False
             ) -> tuple[list[Box], list[float], list[np.ndarray], list[str]]:
        """:meth:`__call__` plus how each crop was taken: ``detected``, or ``whole_image``.

        With ``whole_image_crops``, an image in which the detector finds nobody is checked for being a face crop
        itself (a tight crop leaves the detector no face-sized window): the detector runs again on the image with
        a border of :data:`CROP_BORDER` times its longer side (edge pixels repeated), and if it finds one face
        covering at least :data:`CROP_COVER` of the image, the whole image is the crop, as for ``--detector none``.
        """
        h, w = rgb.shape[:2]
        if self.name == "none":  # the input is the crop: keep its aspect (pedestrians), no padding
            return [(0.0, 0.0, float(w), float(h))], [1.0], [self.pre.resize(rgb)], ["whole_image"]
        boxes, scores, crops = self._detected(rgb, self.detect(rgb))
        if not boxes and whole_image_crops:
            score = self._whole_image_score(rgb)
            if score is not None:
                return [(0.0, 0.0, float(w), float(h))], [score], [self.pre.resize(rgb)], ["whole_image"]
        return boxes, scores, crops, ["detected"] * len(boxes)

    def _whole_image_score(self, rgb: np.ndarray) -> float | None:
        """The detector's score for the face that fills ``rgb``, found on a bordered copy; None if none does."""
        h, w = rgb.shape[:2]
        pad = round(CROP_BORDER * max(h, w))
        framed = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        found = []
        for det in self.detect(framed):
            x1, y1, x2, y2 = (float(v) for v in det.box)
            inter = max(0.0, min(x2 - pad, w) - max(x1 - pad, 0.0)) * max(0.0, min(y2 - pad, h) - max(y1 - pad, 0.0))
            if inter >= CROP_COVER * w * h:
                found.append(float(det.score))
        return max(found) if len(found) == 1 else None

    def _detected(self, rgb: np.ndarray, detections: list[Any]) -> tuple[list[Box], list[float], list[np.ndarray]]:
        from agegender.inference.detectors import crop

        boxes, scores, crops = [], [], []
        for det in detections:
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
