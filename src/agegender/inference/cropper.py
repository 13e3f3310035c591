"""The cropper: a face (or person) detector plus the framing that turns its boxes into model-ready crops the
way the model's training crops were framed. One part of the :class:`~agegender.inference.predictor.Predictor`."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
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
#: the roll (degrees) from which ``sideways`` looks for a face again in the photo turned a quarter towards upright.
#: Detectors understate large rolls (CenterFace measures a face turned 90° at 29-81°), so a face of a photo on its
#: side is turned only part of the way by its own landmarks; in the photo turned a quarter it is nearly level and
#: measured well.
SIDEWAYS_MIN_ROLL = 30.0
#: the lean (degrees) of the eyes-to-nose line from which a face whose eyes measure less than SIDEWAYS_MIN_ROLL is
#: looked for again too (:func:`sideways_roll`)
NOSE_MIN_ROLL = 45.0
#: width/height of a face's box from which the face may lie on its side (:func:`sideways_turns`). CenterFace's
#: boxes are 0.69-0.86 times as wide as tall on level photos, 0.76-0.96 on photos turned 30° and 1.25-1.96 on
#: photos turned 90° (5th-95th percentile of 300 All-Age-Faces and 300 CelebA photos each); a baby's round face
#: turned 30° reached 1.15.
WIDE_BOX = 1.2
#: the eye roll (degrees) under which a face found only in a turned photo, or found there for a face whose roll could
#: not be read as it lies, counts as level there
LEVEL_ROLL = 15.0
#: the turns of a photo in which no face is found that ``search_turned`` searches, in this order, stopping at the
#: first that shows a level face: a quarter clockwise, a quarter anticlockwise, upside down (:func:`quarter_turn`)
SEARCH_TURNS = (-1, 1, 2)


def switch(value: Any) -> bool | None:
    """A switch option's value: ``True``/``"on"``/``"true"``/``"yes"`` and ``False``/``"off"``/``"false"``/``"no"``;
    None for anything else."""
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    return True if word in ("on", "true", "yes") else False if word in ("off", "false", "no") else None


def align_setting(value: Any) -> float | None:
    """The ``align`` option as the smallest roll (degrees) to turn upright, None for off: unset, ``True`` or
    ``"on"`` give :data:`ALIGN_MIN_ROLL`; ``False`` or ``"off"`` turn it off; a number from 0 to 90 sets the roll."""
    on = True if value is None else switch(value)
    if on is not None:
        return ALIGN_MIN_ROLL if on else None
    try:
        roll = float(value)
    except (TypeError, ValueError):
        roll = math.nan
    if not 0.0 <= roll <= 90.0:  # NaN fails too
        raise AgeGenderError(f"align must be on, off or the smallest roll in degrees (0-90) to turn a face upright, "
                             f"not {value!r}", code="bad_option")
    return roll


def on_off(name: str, value: Any, default: bool = True) -> bool:
    """A switch option (:func:`switch`); unset gives ``default``."""
    on = default if value is None else switch(value)
    if on is None:
        raise AgeGenderError(f"{name} must be on or off, not {value!r}", code="bad_option")
    return on


def quarter_turn(rgb: np.ndarray, k: int) -> np.ndarray:
    """``rgb`` turned a quarter anticlockwise on screen (``k=1``), clockwise (``k=-1``) or upside down (``k=2``),
    losslessly."""
    return np.ascontiguousarray(np.rot90(rgb, k))


def box_from_quarter_turn(box: Box, k: int, hw: tuple[int, int]) -> Box:
    """A box found in ``quarter_turn(rgb, k)`` (``k`` 1, -1 or 2: upside down) in the coordinates of ``rgb``
    (height, width ``hw``)."""
    h, w = hw
    x1, y1, x2, y2 = box
    if k == 1:  # (x, y) -> (y, w - x) turned; back: x = w - y', y = x'
        return (w - y2, x1, w - y1, x2)
    if k == 2:  # (x, y) -> (w - x, h - y), its own inverse
        return (w - x2, h - y2, w - x1, h - y1)
    return (y1, h - x2, y2, h - x1)  # (x, y) -> (h - y, x) turned; back: x = y', y = h - x'


def sideways_roll(landmarks: Any) -> float | None:
    """A face's eye roll (:func:`~agegender.inference.detectors.base.eye_roll`), or, when that is under
    :data:`SIDEWAYS_MIN_ROLL` but the line from between the eyes to the nose (the third landmark) leans
    :data:`NOSE_MIN_ROLL` or more from the image's vertical, the nose's lean: at a 90° roll CenterFace puts the eyes
    under 30° in 7 % of faces, and the nose leans 45° or more in half of those; on level and 30° photos it never
    does."""
    from agegender.inference.detectors.base import eye_roll

    roll = eye_roll(landmarks)
    if roll is None or abs(roll) >= SIDEWAYS_MIN_ROLL or len(landmarks) < 3:
        return roll
    (xa, ya), (xb, yb), (xn, yn) = (p[:2] for p in landmarks[:3])
    vx, vy = float(xn) - (xa + xb) / 2.0, float(yn) - (ya + yb) / 2.0
    lean = math.degrees(math.atan2(-vx, vy))  # 0 when the nose is straight below the eyes; + turned clockwise
    return lean if math.isfinite(lean) and NOSE_MIN_ROLL <= abs(lean) <= 135.0 else roll


def is_wide(det: Any) -> bool:
    """Whether a face's box is :data:`WIDE_BOX` times as wide as tall or more: the face may lie on its side."""
    x1, y1, x2, y2 = (float(v) for v in det.box)
    return x2 - x1 >= WIDE_BOX * max(y2 - y1, 1e-6)


def is_level(det: Any, roll: float) -> bool:
    """Whether a face counts as level where it was found: eye roll under :data:`LEVEL_ROLL`, in a box of a level
    face's shape (not :func:`is_wide`)."""
    return abs(roll) < LEVEL_ROLL and not is_wide(det)


def trusted(det: Any, roll: float) -> bool:
    """Whether a face's eye roll can be believed: not a small one in a wide box (a face on its side whose
    landmarks read it level; a face rolled 30° or more has a wide box too)."""
    return abs(roll) >= SIDEWAYS_MIN_ROLL or not is_wide(det)


def sideways_turns(det: Any) -> tuple[int, ...]:
    """The quarter turns of the photo (1: anticlockwise, -1: clockwise, :func:`quarter_turn`) in which to look
    again for a face: none for a face rolled less than :data:`SIDEWAYS_MIN_ROLL` in a box of a level face's shape;
    the one towards upright for a face rolled more (:func:`sideways_roll`); both for a face measured less rolled in
    a wide box, which may lie on its side, where the landmarks' roll can be anything (a face turned 90° may measure
    9°)."""
    if det.landmarks is None:
        return ()
    roll = sideways_roll(det.landmarks)
    if roll is not None and abs(roll) >= SIDEWAYS_MIN_ROLL:
        return (1,) if roll > 0 else (-1,)
    return (-1, 1) if is_wide(det) else ()


def blend_rolls(views: Sequence[tuple[int, float, bool]]) -> tuple[int, float] | None:
    """From one face's eye rolls in several views of a photo, each ``(k, roll, trusted)`` (``k``: the quarter
    turns of the view, 0 for the photo as given), the view to cut it from and its roll in the photo as given; None
    when no view shows it within 90° of level.

    Eye landmarks understate large rolls, more the larger the roll (CenterFace by a median 4° at 30°, 7° at 45°,
    13° at 60° and 29° at 90° on All-Age-Faces photos), so two views 90° apart understate in opposite directions.
    Each trusted view's estimate (``roll + 90 k``) is weighted by cos² of the roll it measured, and the views that
    agree within 45° with the most level one are averaged: a face level in one view is read from it alone, and a
    face rolled 45° in both from their mean, which cancels the understatement. The face is cut from the most level
    view.
    """
    weighted = [(max(0.0, math.cos(math.radians(r))) ** 2 if ok else 0.0, k, r + 90.0 * k) for k, r, ok in views]
    best = max(weighted, key=lambda v: v[0])
    if best[0] <= 0.0:
        return None
    near = [(w, t) for w, _, t in weighted if w > 0.0 and abs(t - best[2]) <= 45.0]
    return best[1], sum(w * t for w, t in near) / sum(w for w, _ in near)


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

    ``sideways`` (with ``align``, on by default for detectors whose landmarks read large rolls, i.e. CenterFace:
    ``Detector.reads_large_rolls``; see :func:`sideways_turns`): a face rolled
    :data:`SIDEWAYS_MIN_ROLL` degrees or more, or in a box wide as a face on its side, is looked for again in the
    photo turned a quarter towards upright and cut from the view that shows it most level, turned by the roll the
    views measure together (:func:`blend_rolls`); faces found level there and not in the photo as it lies are added
    (a photo on its side). It costs a detector run per quarter turn, only on photos with such a face.

    ``search_turned`` (off by default): a photo in which the detector finds no face at all is searched again turned
    a quarter each way and upside down (:data:`SEARCH_TURNS`), and the faces found level in the first turn that shows
    any are cut from it: a photo on its side whose faces the detector misses as it lies. It costs up to three more
    detector runs on every photo without a face.
    """

    def __init__(self, detector: Any, pre: Preprocessing, options: dict[str, Any] | None = None) -> None:
        from agegender.inference.detectors import Detector, build_detector
        from agegender.inference.detectors.base import PERSON_MARGIN, detector_framing

        opts = dict(options or {})
        margin = opts.pop("margin", None)  # crop framing options are ours, not the detector's
        shift = opts.pop("shift", None)
        align = opts.pop("align", None)
        sideways = opts.pop("sideways", None)
        search_turned = opts.pop("search_turned", None)
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
        #: whether a photo with no face found is searched turned a quarter each way and upside down
        self.search_turned = on_off("search_turned", search_turned, default=False)
        #: the smallest roll (degrees) turned upright before cutting; None: faces are cut as they lie
        self.align = align_setting(align)
        #: whether faces rolled by SIDEWAYS_MIN_ROLL or more are looked for again in the photo turned a quarter
        self.sideways = (on_off("sideways", sideways, default=bool(getattr(self.detector, "reads_large_rolls", False)))
                         and self.align is not None)

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
        pixels repeated); but with ``align`` on, a face that may be rolled :data:`SIDEWAYS_MIN_ROLL` degrees or more
        (:meth:`_rolled`) is cut upright instead (a tight crop on its side).
        With a person detector, the image is checked for being a ready pedestrian crop instead (see
        :meth:`_whole_person_score`).
        """
        h, w = rgb.shape[:2]
        if self.name == "none":  # the input is the crop: keep its aspect (pedestrians), no padding
            return [(0.0, 0.0, float(w), float(h))], [1.0], [self.pre.resize(rgb)], ["whole_image"]
        detections = self.detect(rgb)
        if whole_image_crops:
            if self.person:
                score = self._whole_person_score(rgb, detections)
            elif detections:
                score = self._filling_face_score(rgb, detections)
            else:
                score, found = self._whole_image_score(rgb)
                if found is not None:  # a rolled face filling the image: cut upright from the image instead
                    detections = [found]
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

        if len(detections) != 1 or self._rolled(detections[0]):
            return None
        x1, y1, x2, y2 = (float(v) for v in detections[0].box)
        dy = self.shift * (y2 - y1)
        framed = expand_box((x1, y1 + dy, x2, y2 + dy), self.margin, square=self.pre.crop_square)
        h, w = rgb.shape[:2]
        iou = float(iou_one_to_many(np.array([0.0, 0.0, w, h]), np.array([framed]))[0])
        return float(detections[0].score) if iou >= FACE_FILL else None

    def _whole_image_score(self, rgb: np.ndarray) -> tuple[float | None, Any]:
        """The detector's score for the face that fills ``rgb``, found on a bordered copy (None if none does),
        and, when that face is rolled (:meth:`_rolled`), instead of a score its detection moved into ``rgb``'s
        coordinates, to be cut upright."""
        from agegender.inference.detectors.base import Detection

        h, w = rgb.shape[:2]
        pad = round(CROP_BORDER * max(h, w))
        framed = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        found = []
        for det in self.detect(framed):
            x1, y1, x2, y2 = (float(v) for v in det.box)
            inter = max(0.0, min(x2 - pad, w) - max(x1 - pad, 0.0)) * max(0.0, min(y2 - pad, h) - max(y1 - pad, 0.0))
            if inter >= CROP_COVER * w * h:
                found.append(det)
        if len(found) != 1:
            return None, None
        (det,) = found
        if self._rolled(det):
            moved = Detection(tuple(float(v) - pad for v in det.box), float(det.score),
                              None if det.landmarks is None else tuple((x - pad, y - pad) for x, y in det.landmarks))
            return None, moved
        return float(det.score), None

    def _rolled(self, det: Any) -> bool:
        """Whether a face may be rolled :data:`SIDEWAYS_MIN_ROLL` degrees or more (:func:`sideways_turns`), with
        ``align`` on: such an image is not taken whole as a ready face crop, as ready crops are cut upright (a
        tight crop on its side is not)."""
        return self.align is not None and bool(sideways_turns(det))

    def _detected(self, rgb: np.ndarray, detections: list[Any]) -> tuple[list[Box], list[float], list[np.ndarray]]:
        from agegender.inference.detectors import crop
        from agegender.inference.detectors.base import frame_person

        if self.person:
            boxes = [tuple(float(v) for v in det.box) for det in detections]
            crops = [self.pre.resize(crop(rgb, frame_person(b, self.margin, self.pre.input_hw), square=False))
                     for b in boxes]
            return boxes, [float(det.score) for det in detections], crops
        boxes, scores, crops = [], [], []
        for box, score, image, det, roll in self._face_views(rgb, detections):
            boxes.append(box)
            scores.append(score)
            crops.append(self._cut_face(image, det, roll))
        return boxes, scores, crops

    def _face_views(self, rgb: np.ndarray, detections: list[Any]
                    ) -> list[tuple[Box, float, np.ndarray, Any, float | None]]:
        """Each face as (its box in ``rgb``, its score, the image to cut it from, its detection there, its roll
        there or None for the detection's own): ``rgb`` itself, or with ``sideways``, for a face that may be rolled
        :data:`SIDEWAYS_MIN_ROLL` degrees or more (:func:`sideways_turns`), whichever of ``rgb`` and the photo
        turned a quarter shows it most level, with the roll the views measure together (:func:`blend_rolls`).
        Faces found level in a turned photo and not in ``rgb`` are added."""
        from agegender.inference.detectors.base import eye_roll, iou_one_to_many

        if not detections and self.search_turned:
            return self._turned_search(rgb)
        views: list[tuple[Box, float, np.ndarray, Any, float | None]] = [
            (tuple(float(v) for v in det.box), float(det.score), rgb, det, None) for det in detections]
        plans = [sideways_turns(det) for det in detections] if self.sideways else []
        turns = sorted({k for plan in plans for k in plan})
        if not turns:
            return views
        # each face's views: (k, roll there, trusted, the view's entry)
        seen: list[list[tuple[int, float, bool, Any]]] = [
            [(0, r, trusted(det, r), views[j])] if (r := eye_roll(det.landmarks)) is not None else []
            for j, det in enumerate(detections)]
        hw = rgb.shape[:2]
        for k in turns:
            turned = quarter_turn(rgb, k)
            for det in self.detect(turned):
                roll = eye_roll(det.landmarks)
                if roll is None:
                    continue
                back = box_from_quarter_turn(tuple(float(v) for v in det.box), k, hw)
                ious = iou_one_to_many(np.array(back), np.array([v[0] for v in views]).reshape(-1, 4))
                j = int(np.argmax(ious)) if len(views) else -1
                if j >= 0 and ious[j] >= 0.3:  # a face already found
                    if j < len(plans) and k in plans[j]:
                        # a face whose roll could not be read as it lies is taken only from a view showing it level
                        ok = trusted(det, roll) and (bool(seen[j] and seen[j][0][2]) or is_level(det, roll))
                        seen[j].append((k, roll, ok, (back, float(det.score), turned, det, None)))
                elif is_level(det, roll):  # missed as it lies, level here
                    views.append((back, float(det.score), turned, det, None))
        for j, plan in enumerate(plans):
            picked = blend_rolls([(k, r, ok) for k, r, ok, _ in seen[j]]) if plan else None
            if picked is not None:
                k, total = picked
                entry = next(view for kk, _, _, view in seen[j] if kk == k)
                views[j] = entry[:4] + (total - 90.0 * k,)
        return views

    def _turned_search(self, rgb: np.ndarray) -> list[tuple[Box, float, np.ndarray, Any, float | None]]:
        """The faces of a photo in which none was found as it lies, as :meth:`_face_views` gives them: those found
        in the first of :data:`SEARCH_TURNS` that shows any face level (:func:`is_level`; any face for a detector
        without landmarks), cut from that turn."""
        from agegender.inference.detectors.base import eye_roll

        hw = rgb.shape[:2]
        for k in SEARCH_TURNS:
            turned = quarter_turn(rgb, k)
            found = [det for det in self.detect(turned) if det.landmarks is None
                     or ((roll := eye_roll(det.landmarks)) is not None and is_level(det, roll))]
            if found:
                return [(box_from_quarter_turn(tuple(float(v) for v in det.box), k, hw), float(det.score), turned, det,
                         None) for det in found]
        return []

    def _cut_face(self, image: np.ndarray, det: Any, roll: float | None = None) -> np.ndarray:
        """The model-ready crop of the face ``det`` found in ``image``, turned upright with ``align`` by ``roll``
        (default: as its eye landmarks measure it)."""
        from agegender.inference.detectors import crop
        from agegender.inference.detectors.base import eye_roll

        x1, y1, x2, y2 = (float(v) for v in det.box)
        if self.align is None:
            roll = None
        elif roll is None:
            roll = eye_roll(det.landmarks)
        if roll is None or abs(roll) < self.align:
            roll = 0.0
        # the framing's downward shift follows the face's own down, turned by its roll
        down = self.shift * (y2 - y1)
        dx, dy = -down * math.sin(math.radians(roll)), down * math.cos(math.radians(roll))
        return self.pre.resize(crop(image, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), self.margin,
                                    square=self.pre.crop_square, roll=roll))

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
