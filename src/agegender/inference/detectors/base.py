"""The face-detector interface shared by every backend: ``Detection``, ``Detector``, box and crop helpers.

A backend implements ``_detect`` on an RGB uint8 array; :meth:`Detector.detect` validates the input and
applies the common options (``min_face_size``, ``score_threshold``, ``max_faces``) in one place, so
every backend filters, clips and orders its results the same way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agegender.errors import AgeGenderError
from agegender.registry import Registry

Box = tuple[float, float, float, float]

#: name → builder(**options) -> Detector. ``build_detector`` in the package ``__init__`` is the door in.
#: Registration metadata: ``description`` (shown by ``agegender models``) and ``framing`` (see
#: :func:`detector_framing`).
DETECTORS: Registry = Registry("detector")


#: How a person box becomes a body-model crop (:func:`frame_person`): margin per side as a fraction of the box's
#: width and of its height. PETA's pedestrian crops are 1.10 × the width and 1.05 × the height of the NanoDet box
#: of their person (medians, street scenes of PETA's validation split, ``benchmarks/street_scenes.py``), so this
#: margin cuts what the body model was trained on. The body model's gender accuracy (default-body of 2026-11-23)
#: on the 554 people found in 150 such scenes (``--split val --seed 2 --framing ...``): 79.4 % with the bare box
#: and with this margin, 79.8 % with twice it, 77.8 % with (0.2, 0.1), 80.5 % on the pasted crops themselves;
#: growing the crops to the model's 2:1 aspect instead of stretching them: 78.7-80.1 %. Margins up to 0.1 are not
#: told apart there (docs/performance.md, "Person detection").
PERSON_MARGIN: tuple[float, float] = (0.05, 0.025)


def detector_framing(name: str) -> tuple[float, float]:
    """How a detector's face box becomes the framing of UTKFace's aligned 200×200 crops (what face models
    trained on such crops saw): (margin per side as a fraction of the box, downward shift as a fraction
    of the box height), from the detector's ``framing=`` registration; (0, 0) when it has none.

    Measured on 300 UTKFace crops pasted on a 400×400 grey canvas (``benchmarks/face_framing.py``): the
    median Haar box is 1.035 × the crop's size, centred at 41.5 % of its height; dlib's 0.935 ×, at
    46.8 %; BlazeFace's 0.980 ×, at 47.7 %; YuNet's 1.095 ×, at 43.8 % (1,000 crops). On 400 such images a
    UTKFace-trained small CNN scored, on Haar crops, 0.847 gender / 0.552 age-group accuracy with this
    framing, 0.803 / 0.445 with the bare box and 0.584 / 0.142 with a 0.3 margin (0.867 / 0.566 on the
    original crops); for dlib the framing made no measurable difference.
    """
    if name not in DETECTORS:
        return 0.0, 0.0
    margin, shift = DETECTORS.meta(name).get("framing", (0.0, 0.0))
    return float(margin), float(shift)


@dataclass(frozen=True)
class Detection:
    """One detected face (or person) in pixel coordinates of the image passed to ``detect``.

    Attributes:
        box: ``(x1, y1, x2, y2)``, corners in pixels, ``x2``/``y2`` exclusive (a box covering a whole
            ``W×H`` image is ``(0, 0, W, H)``). A face cut off by the border may have a box reaching past
            it: boxes are not clipped, so the box keeps the face's true centre and size and
            :func:`crop` pads the missing part.
        score: confidence mapped to [0, 1] by the backend (higher is more certain). It orders and filters
            detections; it is not a calibrated probability (see each backend for its mapping).
        landmarks: optional ``((x, y), ...)`` facial points (five for YuNet: right eye, left eye,
            nose tip, right and left mouth corners), else ``None``.
    """

    box: Box
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (for batch records and the HTTP service)."""
        out: dict[str, Any] = {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4)}
        if self.landmarks is not None:
            out["landmarks"] = [[round(x, 2), round(y, 2)] for x, y in self.landmarks]
        return out


class Detector(ABC):
    """Finds faces in an RGB image. Subclasses implement :meth:`_detect`.

    Args:
        min_face_size: drop detections whose shorter side is under this many pixels (of the input image).
        score_threshold: drop detections scoring below this (scores are in [0, 1]).
        max_faces: keep at most this many (the highest-scoring); ``None`` keeps all.

    Results are filtered (boxes must overlap the image) and sorted by score (highest first), ties by
    larger area.
    """

    name: ClassVar[str] = "detector"
    #: what it finds: ``face``, or ``person`` (whole bodies, for body models; see :func:`frame_person`)
    kind: ClassVar[str] = "face"
    #: whether its eye landmarks keep measuring a face's roll past 45°, so that the cropper's ``sideways`` second
    #: look in the photo turned a quarter is on by default. CenterFace's do (understating it: a median 13° short at
    #: 60°); BlazeFace's stop near 35° (36° for faces turned 60°, and 36° for the same faces turned to -60°), so a
    #: second look would take a 30° face for a 60° one.
    reads_large_rolls: ClassVar[bool] = False

    def __init__(
        self, *, min_face_size: float = 30, score_threshold: float = 0.0, max_faces: int | None = None
    ) -> None:
        if min_face_size < 0:
            raise AgeGenderError(f"min_face_size must be >= 0, not {min_face_size}", code="bad_config")
        if max_faces is not None and max_faces < 1:
            raise AgeGenderError(f"max_faces must be >= 1 or None, not {max_faces}", code="bad_config")
        self.min_face_size = float(min_face_size)
        self.score_threshold = float(score_threshold)
        self.max_faces = max_faces

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an ``H×W×3`` ``uint8`` RGB array (use ``agegender.data.images.load_image``)."""
        image = check_rgb(image_rgb)
        height, width = image.shape[:2]
        kept = []
        for det in self._detect(image):
            x1, y1, x2, y2 = det.box
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height or x2 <= x1 or y2 <= y1:
                continue
            if min(det.width, det.height) < self.min_face_size or det.score < self.score_threshold:
                continue
            kept.append(det)
        kept.sort(key=lambda d: (-d.score, -d.area))
        return kept[: self.max_faces] if self.max_faces is not None else kept

    __call__ = detect

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Detection]:
        """Return raw detections for a validated RGB uint8 image (filtering happens in ``detect``)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(min_face_size={self.min_face_size:g}, "
            f"score_threshold={self.score_threshold:g}, max_faces={self.max_faces})"
        )


def detections_at(keep: Sequence[int], boxes: np.ndarray, scores: np.ndarray,
                  points: np.ndarray | None = None) -> list[Detection]:
    """:class:`Detection` objects for rows ``keep`` of a detector's decoded arrays: ``boxes`` ``(N, 4)``, ``scores``
    ``(N,)`` and optional key ``points`` ``(N, K, 2)``, all in pixels of the input image."""
    return [
        Detection(
            box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
            score=float(scores[i]),
            landmarks=None if points is None else tuple((float(x), float(y)) for x, y in points[i]),
        )
        for i in keep
    ]


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``H×W×3`` uint8 array, or raise ``unsupported``."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise AgeGenderError(
            f"detectors take an H×W×3 uint8 RGB array, not a {got}; load it with "
            "agegender.data.images.load_image",
            code="unsupported",
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise AgeGenderError(f"the image is empty (shape {image.shape})", code="unsupported")
    return np.ascontiguousarray(image)


def expand_box(box: Sequence[float], margin: float = 0.0, square: bool = True) -> Box:
    """Grow ``box`` by ``margin`` × its width (height) on the left and right (top and bottom) sides.

    With ``square`` the shorter side is then grown to the longer one about the same centre. The result
    may extend past the image; :func:`crop` pads it. ``margin`` may be negative to shrink the box.

    >>> expand_box((10, 10, 30, 50), margin=0.5, square=False)  # 20×40 box → 40×80
    (0.0, -10.0, 40.0, 70.0)
    >>> expand_box((10, 10, 30, 50), margin=0.5)  # then squared about its centre (20, 30)
    (-20.0, -10.0, 60.0, 70.0)
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        raise AgeGenderError(f"cannot expand an empty box {tuple(box)}", code="unsupported")
    if margin <= -0.5:
        raise AgeGenderError(
            f"margin must be > -0.5 (it is a fraction per side), not {margin}", code="bad_config"
        )
    x1, x2 = x1 - margin * w, x2 + margin * w
    y1, y2 = y1 - margin * h, y2 + margin * h
    if square:
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        half = max(x2 - x1, y2 - y1) / 2.0
        x1, y1, x2, y2 = cx - half, cy - half, cx + half, cy + half
    return (x1, y1, x2, y2)


def frame_person(box: Sequence[float], margin: float | Sequence[float] = PERSON_MARGIN,
                 input_hw: tuple[int, int] = (2, 1)) -> Box:
    """The region cut for a body model from a person ``box``: grown by ``margin`` per side (a fraction of the
    box's width and of its height: a pair, or one number for both), then, if it is wider than the model's input
    (``input_hw``, height and width), grown in height to that aspect about its centre. Taller regions are kept:
    the model's PETA training crops (mostly 2–3 × as tall as wide) were stretched to its input, so it knows
    slender people but never saw a squeezed one.

    >>> frame_person((10, 10, 30, 50), (0.5, 0.25))    # 20×40 → 40×60, then grown to 40×80 (2:1)
    (0.0, -10.0, 40.0, 70.0)
    """
    mx, my = (float(margin), float(margin)) if isinstance(margin, (int, float)) else (float(v) for v in margin)
    x1, y1, x2, y2 = expand_box(box, 0.0, square=False)  # validates the box
    w, h = x2 - x1, y2 - y1
    x1, x2, y1, y2 = x1 - mx * w, x2 + mx * w, y1 - my * h, y2 + my * h
    aspect = input_hw[0] / input_hw[1]
    if (y2 - y1) < aspect * (x2 - x1):
        cy, half = (y1 + y2) / 2, aspect * (x2 - x1) / 2
        y1, y2 = cy - half, cy + half
    return (x1, y1, x2, y2)


def eye_roll(landmarks: Sequence[Sequence[float]] | None) -> float | None:
    """Degrees by which a face is rolled in the image, from its first two landmarks (the eyes, image-left one
    first, as CenterFace, BlazeFace and YuNet give them): the angle of the line from the first eye to the second,
    positive when the second (image-right) eye is lower, i.e. the face turned clockwise on screen. None when
    there are no two distinct eye points.

    >>> eye_roll(((10.0, 20.0), (30.0, 20.0)))
    0.0
    >>> round(eye_roll(((10.0, 20.0), (30.0, 40.0))), 1)
    45.0
    """
    if landmarks is None or len(landmarks) < 2:
        return None
    (xa, ya), (xb, yb) = landmarks[0][:2], landmarks[1][:2]
    dx, dy = float(xb) - float(xa), float(yb) - float(ya)
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx * dx + dy * dy < 1e-6:
        return None
    return math.degrees(math.atan2(dy, dx))


def crop(
    image: np.ndarray,
    detection: Detection | Sequence[float],
    margin: float = 0.0,
    square: bool = True,
    pad: str = "constant",
    roll: float = 0.0,
) -> np.ndarray:
    """Cut the (expanded) box out of ``image``; parts outside the image are padded.

    Args:
        image: ``H×W×C`` (or ``H×W``) array.
        detection: a :class:`Detection` or an ``(x1, y1, x2, y2)`` box.
        margin: fraction of the box size added on each side (see :func:`expand_box`); 0.4 is a common
            choice for age models trained on loosely cropped faces.
        square: make the crop square about the box centre, so resizing to the model's square input
            keeps the face's aspect ratio.
        pad: ``"constant"`` (zeros, i.e. black: the convention of aligned-face pipelines, and it adds no
            fake texture) or ``"edge"`` (repeat the border pixels).
        roll: degrees (as :func:`eye_roll` measures them) to turn the image back by about the box's centre
            before cutting, so a rolled face comes out upright (bilinear; 0 cuts the pixels as they are).

    Returns:
        a new array of about the expanded box's size (corners rounded to whole pixels, at least 1×1).
    """
    if pad not in ("constant", "edge"):
        raise AgeGenderError(f"pad must be 'constant' or 'edge', not {pad!r}", code="bad_config")
    box = detection.box if isinstance(detection, Detection) else detection
    x1f, y1f, x2f, y2f = expand_box(box, margin, square)
    # Round half up (not Python's half-to-even) so a box shifted by whole pixels keeps its crop size.
    x1, y1 = math.floor(x1f + 0.5), math.floor(y1f + 0.5)
    x2, y2 = max(math.floor(x2f + 0.5), x1 + 1), max(math.floor(y2f + 0.5), y1 + 1)
    if roll:
        import cv2

        # OpenCV's positive angle turns the image counter-clockwise on screen: back by the face's clockwise roll.
        m = cv2.getRotationMatrix2D(((x1f + x2f) / 2.0, (y1f + y2f) / 2.0), float(roll), 1.0)
        m[:, 2] -= (x1, y1)
        border = cv2.BORDER_CONSTANT if pad == "constant" else cv2.BORDER_REPLICATE
        return cv2.warpAffine(np.ascontiguousarray(image), m, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR,
                              borderMode=border)
    height, width = image.shape[:2]
    # Slice the part that lies inside the image, then pad the rest: no full-size padded copy needed.
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if ix1 >= ix2 or iy1 >= iy2:  # box entirely outside: nothing to repeat at the edge
        return np.zeros((y2 - y1, x2 - x1) + image.shape[2:], dtype=image.dtype)
    inside = image[iy1:iy2, ix1:ix2]
    widths = [(iy1 - y1, y2 - iy2), (ix1 - x1, x2 - ix2)] + [(0, 0)] * (image.ndim - 2)
    if any(before or after for before, after in widths):
        return np.pad(inside, widths, mode=pad)
    return inside.copy()


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns indices of the kept boxes, highest score first.

    Plain numpy so the detector layer never imports torch (a few hundred boxes take well under a ms).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        order = rest[iou_one_to_many(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def drop_centred_inside(boxes: np.ndarray) -> np.ndarray:
    """Indices of the ``(x1, y1, x2, y2)`` boxes (sorted best first) to keep when a box centred inside a better
    one is taken for the same face: views of one face at different scales, or a part of a large face, can box it
    differently enough to escape an IoU test.

    >>> drop_centred_inside(np.array([[0, 0, 100, 100], [40, 40, 60, 60], [90, 90, 150, 150]])).tolist()
    [0, 2]
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep: list[int] = []
    for i, (cx, cy) in enumerate(centres):
        kept = boxes[keep]
        if not ((kept[:, 0] <= cx) & (cx <= kept[:, 2]) & (kept[:, 1] <= cy) & (cy <= kept[:, 3])).any():
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``(x1, y1, x2, y2)`` box with each row of ``boxes`` (empty boxes: 0)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return inter / np.maximum(area + areas - inter, 1e-12)


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side``; return it and the factor used (≤ 1).

    Detectors search at many scales, so their cost grows with the pixel count; large photos are searched
    at a reduced size and boxes are divided by the factor afterwards.
    """
    longer = max(image.shape[:2])
    if not max_side or longer <= max_side:
        return image, 1.0
    import cv2  # core dependency; imported here so `base` stays importable without loading OpenCV

    scale = max_side / longer
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def margin_score(margin: float, typical_face_margin: float) -> float:
    """Map a classifier margin (0 = the backend's own decision threshold) to (0, 1).

    A logistic scaled so that 0 → 0.5 and ``typical_face_margin`` (the median margin of true faces,
    measured per backend) → 0.9. Monotone, so ordering is preserved; not a calibrated probability.
    """
    z = math.log(9.0) * margin / typical_face_margin
    return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))
