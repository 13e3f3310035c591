"""The "none" detector: the input already is a face (or person) crop, so the whole frame is the detection.

Used for aligned face datasets such as UTKFace and for the pedestrian/body mode.
"""

from __future__ import annotations

import numpy as np

from agegender.inference.detectors.base import DETECTORS, Detection, Detector


@DETECTORS.register("none", kind="any",
                     description="whole image as one detection (input is already a face or person crop)")
class NoneDetector(Detector):
    """Returns one detection covering the whole image with score 1.0.

    ``min_face_size`` defaults to 0 here: a ready crop is kept however small it is (UTKFace crops are
    200 px, but pedestrian crops can be 30 px wide), since dropping it would silently lose the input.
    """

    name = "none"

    def __init__(
        self, *, min_face_size: float = 0, score_threshold: float = 0.0, max_faces: int | None = None
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)

    def _detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        return [Detection(box=(0.0, 0.0, float(width), float(height)), score=1.0)]
