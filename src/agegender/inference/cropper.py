"""The cropper: a face (or person) detector plus the framing that turns its boxes into model-ready crops the
way the model's training crops were framed. One part of the :class:`~agegender.inference.predictor.Predictor`."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from agegender.data.preprocess import Preprocessing
from agegender.errors import AgeGenderError

Box = tuple[float, float, float, float]

#: border added around an image, as a fraction of its longer side, to check whether it is a face crop itself
CROP_BORDER = 0.5
#: share of the image a face found on the bordered copy must cover for the image to count as a face crop
CROP_COVER = 0.25
#: IoU with the image that the crop framed for a person found (``frame_person``) needs for the image to count as
#: that person's crop itself
PERSON_FILL = 0.5
#: IoU with the image that the crop framed for the one face found needs for the image to count as that face's crop
#: itself. With CenterFace, 98 % of 300 UTKFace chips reach 0.6 (median 0.76), against 0.7 % of 289 All-Age-Faces
#: photos (median 0.38) and none of 300 CelebA photos (median 0.29). The model then sees the chip's own framing:
#: on UTKFace's 1,844 test chips, gender 93.7 % whole against 92.4 % from CenterFace's crop of them.
FACE_FILL = 0.6
#: height/width from which an image may be a ready person crop although no person is found filling it
CROP_ASPECT = 1.5
#: longer side (px) up to which such a tall image may be a ready person crop (pedestrian crops are small: PETA's
#: are 48-400 px tall; a tall phone photo is larger)
CROP_MAX_SIDE = 1024
#: a small image (longer side up to this many px) in which one person is found spanning :data:`SPAN` of its
#: height is that person's crop, whatever its shape (PETA has near-square and wide crops of one walking person)
SMALL_CROP_SIDE = 512
SPAN = 0.6
#: the smallest roll of a face (degrees, :func:`~agegender.inference.detectors.base.eye_roll`) that ``align``
#: turns upright before cutting. Every training source ships its faces with the eyes level, and the bundled
#: models read rolled faces badly: `default` on the All-Age-Faces test photos turned 30° reads MAE 8.44 and gender
#: 87.0 % cut as they lie, 5.27 and 93.2 % turned upright (level: 5.17, 94.0 %; docs/results.md, "Rolled heads",
#: ``benchmarks/detector_photos.py --rolls``). Level faces show a few degrees of roll from the landmarks' scatter:
#: turning by it from 0° cost a point of All-Age-Faces validation gender, from 5° nothing.
ALIGN_MIN_ROLL = 5.0


def align_setting(value: Any) -> float | None:
    """The ``align`` option as the smallest roll (degrees) to turn upright, None for off: unset, ``True`` or
    ``"on"`` give :data:`ALIGN_MIN_ROLL`; ``False`` or ``"off"`` turn it off; a number from 0 to 90 sets the roll."""
    if value is None or value is True or (isinstance(value, str) and value.strip().lower() in ("on", "true", "yes")):
        return ALIGN_MIN_ROLL
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false", "no")):
        return None
    try:
        roll = float(value)
    except (TypeError, ValueError):
        roll = math.nan
    if not 0.0 <= roll <= 90.0:  # NaN fails too
        raise AgeGenderError(f"align must be on, off or the smallest roll in degrees (0-90) to turn a face upright, "
                             f"not {value!r}", code="bad_option")
    return roll


class Cropper:
    """Finds everyone in an RGB image (faces, or whole people for body models) and cuts their crops at the model's
    resize size.

    ``detector``: a registered name (face: ``centerface``, ``blazeface``, ``yunet``, ``haar``, ``dlib``, an ONNX path; person:
    ``nanodet``, ``hog``; ``none``) or a built :class:`~agegender.inference.detectors.Detector`. ``options`` go to the
    detector, except the framing: ``margin`` (fraction of the box added per side) and ``shift`` (downward, fraction
    of the box height), which default to the detector's registered framing, or to the model's ``crop_margin`` when
    it was trained on dataset boxes grown by one (then the crops are not squared either). Person boxes are framed
    by :func:`~agegender.inference.detectors.base.frame_person` (``margin``: one number or a (width, height) pair,
    default ``PERSON_MARGIN``) at the model's aspect, not squared.

    ``align`` (on by default; see :func:`align_setting`): a face whose detector gives eye landmarks (CenterFace,
    BlazeFace, YuNet) and whose eye line is rolled by :data:`ALIGN_MIN_ROLL` degrees or more is turned upright
    about its box's centre before it is cut, as the faces of the training sources were.
    """

    def __init__(self, detector: Any, pre: Preprocessing, options: dict[str, Any] | None = None) -> None:
        from agegender.inference.detectors import Detector, build_detector
        from agegender.inference.detectors.base import PERSON_MARGIN, detector_framing

        opts = dict(options or {})
        margin = opts.pop("margin", None)  # crop framing options are ours, not the detector's
        shift = opts.pop("shift", None)
        align = opts.pop("align", None)
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
        #: whether the detector finds whole people (framed for body models by ``frame_person``) rather than faces
        self.person = self.detector.kind == "person"
        self.margin: Any
        if self.person:  # margin: per side, a fraction of the box's width and of its height (one number: both)
            m = PERSON_MARGIN if margin is None else margin
            self.margin = (float(m),) * 2 if isinstance(m, (int, float)) else tuple(float(v) for v in m)
            self.shift = 0.0
            return
        frame_margin, frame_shift = detector_framing(self.name)
        if pre.crop_margin:  # trained on dataset boxes grown by crop_margin, as datamodule.read_resized cuts them
            frame_margin, frame_shift = pre.crop_margin, 0.0
        self.margin = float(margin if margin is not None else frame_margin)
        self.shift = float(shift if shift is not None else frame_shift)
        #: the smallest roll (degrees) turned upright before cutting; None: faces are cut as they lie
        self.align = align_setting(align)

    def __call__(self, rgb: np.ndarray) -> tuple[list[Box], list[float], list[np.ndarray]]:
        """Boxes, detector scores and model-ready crops (uint8, resized) of everyone in ``rgb``."""
        boxes, scores, crops, _ = self.find(rgb)
        return boxes, scores, crops

    def find(self, rgb: np.ndarray, whole_image_crops: bool = False
             ) -> tuple[list[Box], list[float], list[np.ndarray], list[str]]:
        """:meth:`__call__` plus how each crop was taken: ``detected``, or ``whole_image``.

        With ``whole_image_crops``, an image is taken whole as a ready face crop, as for ``--detector none``, when
        the detector finds one face whose framed crop overlaps the image with IoU ≥ :data:`FACE_FILL`, or when it
        finds nobody (a tight crop may leave the detector no face-sized window) but finds one face covering at least
        :data:`CROP_COVER` of the image on a copy with a border of :data:`CROP_BORDER` times its longer side (edge
        pixels repeated).
        With a person detector, the image is checked for being a ready pedestrian crop instead (see
        :meth:`_whole_person_score`).
        """
        h, w = rgb.shape[:2]
        if self.name == "none":  # the input is the crop: keep its aspect (pedestrians), no padding
            return [(0.0, 0.0, float(w), float(h))], [1.0], [self.pre.resize(rgb)], ["whole_image"]
        detections = self.detect(rgb)
        if whole_image_crops:
            score = (self._whole_person_score(rgb, detections) if self.person
                     else self._filling_face_score(rgb, detections) if detections else self._whole_image_score(rgb))
            if score is not None:
                return [(0.0, 0.0, float(w), float(h))], [score], [self.pre.resize(rgb)], ["whole_image"]
        boxes, scores, crops = self._detected(rgb, detections)
        return boxes, scores, crops, ["detected"] * len(boxes)

    def _whole_person_score(self, rgb: np.ndarray, detections: list[Any]) -> float | None:
        """For a person detector: a score for the person filling ``rgb`` when it is a ready person crop (a
        pedestrian image), else None.

        It is one when the crop the predictor would cut for a person found (:func:`frame_person`) overlaps the
        image with IoU ≥ :data:`PERSON_FILL`, or when a small image (longer side ≤ :data:`SMALL_CROP_SIDE`) shows
        one person, spanning at least :data:`SPAN` of its height. Failing that, a tall image (height ≥ :data:`CROP_ASPECT` × width,
        longer side ≤ :data:`CROP_MAX_SIDE`) is one when the detector finds no whole person in it (a box at least
        1.5 × as tall as wide and clear of the image's border), since in a tight, small crop it often finds only
        parts of the person or nothing (score: the best part's, else 0), or when a copy with a border of
        :data:`CROP_BORDER` × its longer side (context for the detector) shows one person filling it.
        """
        from agegender.inference.detectors.base import frame_person, iou_one_to_many

        h, w = rgb.shape[:2]

        def fills(det: Any, pad: float = 0.0) -> bool:
            x1, y1, x2, y2 = frame_person([float(v) - pad for v in det.box], self.margin, self.pre.input_hw)
            return float(iou_one_to_many(np.array([0.0, 0.0, w, h]), np.array([[x1, y1, x2, y2]]))[0]) >= PERSON_FILL

        filling = [float(d.score) for d in detections if fills(d)]
        if filling:
            return max(filling)
        if max(h, w) <= SMALL_CROP_SIDE and len(detections) == 1 and detections[0].height >= SPAN * h:
            return float(detections[0].score)
        if h < CROP_ASPECT * w or max(h, w) > CROP_MAX_SIDE:
            return None
        edge = 0.01 * max(h, w)

        def whole(det: Any) -> bool:
            x1, y1, x2, y2 = det.box
            return (y2 - y1 >= 1.5 * (x2 - x1) and x1 > edge and y1 > edge and x2 < w - edge and y2 < h - edge)

        if not any(whole(d) for d in detections):
            return max((float(d.score) for d in detections), default=0.0)
        pad = round(CROP_BORDER * max(h, w))
        framed = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        found = [float(d.score) for d in self.detect(framed) if fills(d, pad)]
        return max(found) if len(found) == 1 else None

    def _filling_face_score(self, rgb: np.ndarray, detections: list[Any]) -> float | None:
        """The score of the one face found when the crop framed for it overlaps the whole image with IoU ≥
        :data:`FACE_FILL` (``rgb`` is a ready face crop), else None."""
        from agegender.inference.detectors import expand_box
        from agegender.inference.detectors.base import iou_one_to_many

        if len(detections) != 1:
            return None
        x1, y1, x2, y2 = (float(v) for v in detections[0].box)
        dy = self.shift * (y2 - y1)
        framed = expand_box((x1, y1 + dy, x2, y2 + dy), self.margin, square=self.pre.crop_square)
        h, w = rgb.shape[:2]
        iou = float(iou_one_to_many(np.array([0.0, 0.0, w, h]), np.array([framed]))[0])
        return float(detections[0].score) if iou >= FACE_FILL else None

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
        from agegender.inference.detectors.base import eye_roll, frame_person

        boxes, scores, crops = [], [], []
        for det in detections:
            x1, y1, x2, y2 = (float(v) for v in det.box)
            boxes.append((x1, y1, x2, y2))
            scores.append(float(det.score))
            if self.person:
                crops.append(self.pre.resize(crop(rgb, frame_person((x1, y1, x2, y2), self.margin,
                                                                   self.pre.input_hw), square=False)))
                continue
            roll = eye_roll(det.landmarks) if self.align is not None else None
            if roll is None or abs(roll) < self.align:
                roll = 0.0
            # the framing's downward shift follows the face's own down, turned by its roll
            down = self.shift * (y2 - y1)
            dx, dy = -down * math.sin(math.radians(roll)), down * math.cos(math.radians(roll))
            crops.append(self.pre.resize(crop(rgb, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), self.margin,
                                              square=self.pre.crop_square, roll=roll)))
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
