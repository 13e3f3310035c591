"""The "hog" person detector: OpenCV's built-in HOG + linear SVM pedestrian detector (Dalal & Triggs 2005,
``cv2.HOGDescriptor_getDefaultPeopleDetector``). Needs no model file, so it is always available: the fallback of
body mode when the bundled NanoDet network cannot run.
"""

from __future__ import annotations

import cv2
import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.detectors.base import DETECTORS, Detection, Detector, downscale, margin_score, nms

WINDOW = (64, 128)  # the detector's window (width, height)
#: the person's box as a share of the window's width and height, about its centre: the window keeps a margin
#: around the person. Over the detections centred in a pasted person on 40 street scenes of PETA's validation split
#: (``street_scenes.make_scene``, seed 1), the median pasted crop was 0.616 × the window's width and 0.785 × its
#: height, and 1.10 × / 1.05 × the box of the NanoDet detector, whose boxes hug the person; so HOG's boxes are
#: shrunk to match NanoDet's.
PERSON_IN_WINDOW = (0.56, 0.75)
#: median SVM margin of the 146 people found (IoU >= 0.4) on those 40 scenes, mapped to a score of 0.9
TYPICAL_PERSON_MARGIN = 1.85


@DETECTORS.register("hog", kind="person",
                     description="OpenCV HOG + SVM pedestrian detector (no model file); body-mode fallback")
# (person boxes are framed by detectors.base.frame_person with PERSON_MARGIN, not by a per-detector framing)
class HogPersonDetector(Detector):
    """Finds upright people with OpenCV's HOG people detector.

    Args:
        scale: step of the image pyramid (smaller finds more, slower).
        win_stride: step of the sliding window in pixels.
        hit_threshold: SVM margin a window needs (OpenCV's ``hitThreshold``).
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.
        max_side: search a copy whose longer side is at most this many pixels (boxes are scaled back). 960: on 40
            street scenes of PETA's validation split (1280×720, people 120–400 px tall; ``benchmarks/street_scenes.py
            --split val --seed 1 --scenes 40 --detectors hog,hog:max_side=1280,hog:max_side=800``) it found 91.2 % of
            the people with 0.12 false persons per scene; the full size 88.1 % with 0.28 at 1.2× the time; 800:
            85.0 % at half the time.
        min_height: images shorter than this are enlarged to it first: the window is 128 px tall, so a person
            in a small pedestrian crop (PETA's are 128–370 px tall) would otherwise not fit it.
        min_face_size, score_threshold, max_faces: see :class:`Detector` (min_face_size is the shorter side of a
            *person* box). Scores map the SVM margin by :func:`margin_score` (0 → 0.5, a typical person → 0.9); the
            margin is already filtered by ``hit_threshold``, and on those scenes the false persons scored as high
            as the people found, so no score threshold is set.
    """

    name = "hog"
    kind = "person"

    def __init__(
        self,
        *,
        scale: float = 1.05,
        win_stride: int = 8,
        hit_threshold: float = 0.0,
        nms_threshold: float = 0.3,
        max_side: int | None = 960,
        min_height: int = 256,
        min_face_size: float = 16,
        score_threshold: float = 0.0,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        if scale <= 1.0 or int(win_stride) < 1:
            raise AgeGenderError(f"scale must be > 1 and win_stride >= 1, not {scale}, {win_stride}",
                                 code="bad_config")
        self.scale = float(scale)
        self.win_stride = int(win_stride)
        self.hit_threshold = float(hit_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side
        self.min_height = int(min_height)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def _detect(self, image: np.ndarray) -> list[Detection]:
        if image.shape[0] < self.min_height:
            factor = self.min_height / image.shape[0]
            size = (max(1, round(image.shape[1] * factor)), self.min_height)
            small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        else:
            small, factor = downscale(image, self.max_side)
        if small.shape[0] < WINDOW[1] or small.shape[1] < WINDOW[0]:
            return []
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, weights = self._hog.detectMultiScale(
            gray, hitThreshold=self.hit_threshold, winStride=(self.win_stride, self.win_stride), padding=(8, 8),
            scale=self.scale)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if not len(rects):
            return []
        centres = rects[:, :2] + rects[:, 2:] / 2
        half = rects[:, 2:] * np.asarray(PERSON_IN_WINDOW) / 2
        boxes = np.concatenate([centres - half, centres + half], axis=1) / factor
        keep = nms(boxes, weights, self.nms_threshold)
        return [Detection(box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                          score=margin_score(float(weights[i]), TYPICAL_PERSON_MARGIN)) for i in keep]

    def __repr__(self) -> str:
        return (f"HogPersonDetector(scale={self.scale:g}, win_stride={self.win_stride}, "
                f"score_threshold={self.score_threshold:g}, min_face_size={self.min_face_size:g})")
