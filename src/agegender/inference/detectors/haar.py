"""The "haar" detector (the default): OpenCV's Viola–Jones cascade, the face detector of kang2019.

Grayscale + histogram equalisation, ``detectMultiScale3`` with reject levels to obtain a confidence,
and an optional downscale of large photos for speed.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.detectors.base import DETECTORS, Detection, Detector, downscale, margin_score

#: Cascades shipped with OpenCV 4.x, by short name.
CASCADES: dict[str, str] = {
    "default": "haarcascade_frontalface_default.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
}

#: Median last-stage margin of true faces, per cascade (maps the margin to a score; see ``HaarDetector``).
#: Measured with scaleFactor 1.1, minNeighbors 5 on 600 random UTKFace development crops, each pasted at
#: the centre of a 400×400 grey canvas: medians 8.63 (default), 2.46 (alt), 2.58 (alt2).
TYPICAL_FACE_MARGIN: dict[str, float] = {"default": 8.63, "alt": 2.46, "alt2": 2.58}


@DETECTORS.register("haar", description="OpenCV Haar cascade (Viola–Jones), the kang2019 detector; default",
                     framing=(-0.017, 0.082))  # benchmarks/face_framing.py; see detectors.base.detector_framing
class HaarDetector(Detector):
    """OpenCV ``CascadeClassifier`` face detector.

    Args:
        cascade: ``"default"`` (``haarcascade_frontalface_default.xml``), ``"alt"``, ``"alt2"``, or a path
            to a cascade XML file.
        scale_factor: image pyramid step of ``detectMultiScale`` (smaller is slower and finds more).
        min_neighbors: overlapping raw hits a face needs (higher gives fewer false positives).
        max_side: search a copy whose longer side is at most this many pixels (``None``: full size) and
            scale boxes back. Speed grows with the pixel count (about 0.15 s at 512 px and 8 s at 3000 px
            on one core here), and full-size phone photos give extra false positives at tiny scales. The
            cost: faces smaller than about ``24 / factor`` pixels of the original are missed, where
            ``factor = max_side / longer side`` (e.g. about 150 px in a 4000 px photo with the default 640).
        min_face_size, score_threshold, max_faces: see :class:`Detector`. Haar's default is 40 px (not the
            interface's 30): the pyramid levels for 30–40 px faces are the largest images searched, and on
            640×480 scenes (``benchmarks/detector_recall.py``) skipping them cut the CPU time by 20–28 % with the
            same recall; a 30-px face also carries little age detail at the model's 96-px input.

    Score: a Haar cascade only says yes or no, but ``detectMultiScale3(outputRejectLevels=True)``
    also reports each face's sum in the last cascade stage ("levelWeight"). Its margin over that
    stage's threshold is mapped by :func:`~agegender.inference.detectors.base.margin_score` so that the
    threshold gives 0.5 and a typical face (``TYPICAL_FACE_MARGIN``) gives 0.9. Every returned face has
    passed all stages, so scores are ≥ 0.5; the score ranks faces, it does not separate faces from
    false positives well (on upside-down faces, the false positives' median margin was 6.0 vs. 8.6 for
    true faces with the default cascade).
    """

    name = "haar"

    def __init__(
        self,
        *,
        cascade: str = "default",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        max_side: int | None = 640,
        min_face_size: float = 40,
        score_threshold: float = 0.0,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        if scale_factor <= 1.0:
            raise AgeGenderError(f"scale_factor must be > 1, not {scale_factor}", code="bad_config")
        self.cascade_path = _cascade_path(cascade)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.max_side = max_side
        try:
            self._classifier = cv2.CascadeClassifier(self.cascade_path)
            loaded = not self._classifier.empty()
        except (cv2.error, SystemError):  # OpenCV reports some malformed files as exceptions
            loaded = False
        if not loaded:
            raise AgeGenderError(
                f"{self.cascade_path} is not a valid OpenCV cascade XML file", code="bad_model"
            )
        self._window = min(self._classifier.getOriginalWindowSize())
        self._threshold, self._typical = _last_stage(self.cascade_path)
        if cascade in TYPICAL_FACE_MARGIN:
            self._typical = TYPICAL_FACE_MARGIN[cascade]

    def _detect(self, image: np.ndarray) -> list[Detection]:
        small, factor = downscale(image, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(self._window, round(self.min_face_size * factor))
        if min_side > min(gray.shape):
            return []
        rects, _levels, weights = self._classifier.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        detections = []
        for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = (x / factor, y / factor, (x + w) / factor, (y + h) / factor)
            score = margin_score(float(weight) - self._threshold, self._typical)
            detections.append(Detection(box=tuple(float(v) for v in box), score=score))  # type: ignore[arg-type]
        return detections


def _cascade_path(cascade: str) -> str:
    if cascade in CASCADES:
        return os.path.join(cv2.data.haarcascades, CASCADES[cascade])
    if os.path.isfile(cascade):
        return cascade
    raise AgeGenderError(
        f"unknown Haar cascade {cascade!r}: use one of {', '.join(CASCADES)} "
        "or the path of a cascade XML file",
        code="missing_file",
    )


@functools.lru_cache(maxsize=8)
def _last_stage(path: str) -> tuple[float, float]:
    """(threshold, fallback typical margin) of the cascade's last stage, read from its XML.

    OpenCV does not expose stage thresholds. For cascades we have not measured, the typical face margin
    is guessed as 1/20 of the stage's range (from threshold to its largest possible sum), which is
    close to the measured value for the default cascade.
    """
    try:
        stages = ET.parse(path).getroot().find("cascade/stages")
        last = list(stages)[-1]  # type: ignore[arg-type]
        threshold = float(last.findtext("stageThreshold"))  # type: ignore[arg-type]
        best = sum(
            max(float(v) for v in wc.findtext("leafValues").split()) for wc in last.find("weakClassifiers")
        )  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - old-format cascades load in OpenCV but lack this layout
        return 0.0, 1.0
    return threshold, max((best - threshold) / 20.0, 1e-6)
