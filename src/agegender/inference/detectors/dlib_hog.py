"""The "dlib" detector: dlib's HOG + linear SVM frontal face detector (needs ``pip install agegender[dlib]``).

The detector is built into dlib (no model file). dlib is imported lazily so the package works without it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.detectors.base import DETECTORS, Detection, Detector, downscale, margin_score

#: Median SVM score of true faces (upsample 0, adjust_threshold -0.5) on 600 random UTKFace development
#: crops pasted on a 400×400 grey canvas (the same set as the Haar measurement): 1.23.
TYPICAL_FACE_MARGIN = 1.23


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise AgeGenderError(
            f"the 'dlib' detector needs dlib ({exc}); install it with: pip install agegender[dlib]",
            code="missing_dependency",
        ) from None
    return dlib


@functools.lru_cache(maxsize=1)
def _frontal_face_detector() -> Any:
    # Building it deserialises the model (about 1 s); detection only reads it, so one is shared.
    return _import_dlib().get_frontal_face_detector()


@DETECTORS.register("dlib", description="dlib HOG + SVM frontal face detector (pip install agegender[dlib])",
                     framing=(0.035, 0.035))  # benchmarks/face_framing.py; see detectors.base.detector_framing
class DlibHogDetector(Detector):
    """dlib's ``get_frontal_face_detector()``.

    Args:
        upsample: times to double the image before searching. The HOG window is 80×80 pixels, so
            ``upsample=1`` (the default, as in dlib's examples) finds faces down to about 40 px, at about
            4× the cost.
        adjust_threshold: added to the SVM threshold (negative finds more faces, with more false positives).
        max_side: search a copy whose longer side is at most this many pixels (``None``: full size), then
            scale boxes back, as in the Haar detector.
        min_face_size, score_threshold, max_faces: see :class:`Detector`.

    Score: dlib's SVM score (0 = its decision threshold) mapped by
    :func:`~agegender.inference.detectors.base.margin_score`: 0 → 0.5, a typical face (score 1.23) → 0.9.
    """

    name = "dlib"

    def __init__(
        self,
        *,
        upsample: int = 1,
        adjust_threshold: float = 0.0,
        max_side: int | None = 640,
        min_face_size: float = 30,
        score_threshold: float = 0.0,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        self.upsample = int(upsample)
        self.adjust_threshold = float(adjust_threshold)
        self.max_side = max_side
        _import_dlib()  # a clear missing_dependency error even when a detector is already cached
        self._detector = _frontal_face_detector()

    def _detect(self, image: np.ndarray) -> list[Detection]:
        small, factor = downscale(image, self.max_side)
        rects, scores, _sub_detectors = self._detector.run(
            np.ascontiguousarray(small), self.upsample, self.adjust_threshold
        )
        detections = []
        for rect, raw in zip(rects, scores):
            # dlib rectangles are inclusive (right/bottom are the last pixel), our boxes exclusive.
            box = (
                rect.left() / factor,
                rect.top() / factor,
                (rect.right() + 1) / factor,
                (rect.bottom() + 1) / factor,
            )
            detections.append(
                Detection(
                    box=tuple(float(v) for v in box), score=margin_score(float(raw), TYPICAL_FACE_MARGIN)
                )  # type: ignore[arg-type]
            )
        return detections
