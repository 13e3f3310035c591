"""The "blazeface" detector: MediaPipe's BlazeFace full-range face detector, bundled as ONNX.

BlazeFace (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs") is
a single-shot detector; the *full-range* model MediaPipe ships (``face_detection_full_range_sparse``,
Apache-2.0) takes a 192×192 letterboxed image and predicts, for each of 48×48 anchors (stride 4), a
face score and a box with six key points (eyes, nose tip, mouth, ear tragions). It was converted to ONNX
by ``tools/convert_blazeface.py`` (outputs checked against the TFLite interpreter) and ships inside the
package (``weights/blazeface_full_range.onnx``, licence in ``weights/blazeface_full_range.md``), so it
works offline with no extra dependency: it runs through OpenCV's DNN module, or onnxruntime when it is
installed (faster).

Decoding follows MediaPipe's ``face_detection_full_range.pbtxt``: anchors at ``((x + 0.5) / 48,
(y + 0.5) / 48)`` with unit size; ``x_center = raw[0] / 192 + anchor_x`` (likewise y, key points),
``w = raw[2] / 192``, ``h = raw[3] / 192``; score = sigmoid of the raw logit clipped to ±100; then
weighted non-maximum suppression (IoU 0.3): overlapping boxes are averaged, weighted by score.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agegender.bundled import WEIGHTS_DIR
from agegender.errors import AgeGenderError
from agegender.inference.detectors.base import (
    DETECTORS,
    Detection,
    Detector,
    downscale,
    drop_centred_inside,
    iou_one_to_many,
)

INPUT = 192
GRID = 48  # 192 / stride 4
WEIGHTS = "blazeface_full_range.onnx"
#: tiles only when the image's longer side exceeds this many tile sides
TILE_MIN_RATIO = 1.25
#: tile detections whose box comes within this fraction of the tile's side of an inner tile edge are dropped
TILE_EDGE = 0.01


def weights_path() -> Path:
    """The bundled ONNX file (beside the bundled age/gender models)."""
    return WEIGHTS_DIR / WEIGHTS


def _anchors() -> np.ndarray:
    ys, xs = np.mgrid[0:GRID, 0:GRID]
    return np.stack([(xs.ravel() + 0.5) / GRID, (ys.ravel() + 0.5) / GRID], axis=1)  # (2304, 2): x, y


ANCHORS = _anchors()


@DETECTORS.register("blazeface", description="MediaPipe BlazeFace full-range CNN (bundled ONNX); fast",
                     framing=(0.010, 0.024))  # benchmarks/face_framing.py; see detectors.base.detector_framing
class BlazeFaceDetector(Detector):
    """BlazeFace full-range face detector.

    Args:
        nms_threshold: IoU above which boxes are merged (MediaPipe: 0.3).
        runtime: ``"auto"`` (onnxruntime if installed, else OpenCV DNN), ``"onnxruntime"`` or ``"opencv"``.
        max_side: downscale larger images to this longer side first (the network sees 192×192 anyway;
            this only bounds the cost of the resize of very large photos).
        min_face_size, score_threshold, max_faces: see :class:`Detector`; the score threshold defaults to
            0.5 (MediaPipe's ``min_detection_confidence``), scores are the network's sigmoid.
        tiles: ``"auto"`` (default): when the image's longer side exceeds 1.25 × ``tile_size``, the
            network also sees overlapping square tiles of ``tile_size`` px (15 for 1280×720, 4 for
            640×480), all in one batched call; ``"off"``: the whole image only.
        tile_size: side of a tile in pixels of the (downscaled) image; smaller tiles find smaller faces
            at more CPU.
        tile_overlap: overlap of neighbouring tiles, as a fraction of their side.
        tile_score_threshold: score threshold for tile detections (0.6: more windows, more chances of a
            false face, so a little stricter than the whole-image pass).

    The whole image is letterboxed to 192×192, where the network needs a face of about 30 px, i.e. about
    15 % of the image's longer side (faces under ~190 px are missed more and more often in a 1280-px
    photo). Tiles of 384 px see faces at half their size, so faces from about 56 px are found
    (``benchmarks/face_sizes.py``; 40-px faces about 60 % of the time). Detections from all views are
    merged by weighted NMS, boxes cut by an inner tile edge are dropped (the overlap shows the face whole
    elsewhere), and a box centred inside a better-scoring one is dropped as the same face.
    """

    name = "blazeface"

    def __init__(
        self,
        *,
        nms_threshold: float = 0.3,
        runtime: str = "auto",
        max_side: int | None = 1920,
        min_face_size: float = 20,
        score_threshold: float = 0.5,
        max_faces: int | None = None,
        tiles: str = "auto",
        tile_size: int = 384,
        tile_overlap: float = 0.25,
        tile_score_threshold: float | None = 0.6,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        if tiles not in ("auto", "off"):
            raise AgeGenderError(f"tiles must be 'auto' or 'off', not {tiles!r}", code="bad_config")
        if int(tile_size) < INPUT or not 0.0 <= float(tile_overlap) < 0.9:
            raise AgeGenderError(
                f"tile_size must be >= {INPUT} and tile_overlap in [0, 0.9), not {tile_size}, {tile_overlap}",
                code="bad_config",
            )
        self.tiles = tiles
        self.tile_size = int(tile_size)
        self.tile_overlap = float(tile_overlap)
        self.tile_score_threshold = float(score_threshold if tile_score_threshold is None else tile_score_threshold)
        if runtime not in ("auto", "onnxruntime", "opencv"):
            raise AgeGenderError(
                f"runtime must be 'auto', 'onnxruntime' or 'opencv', not {runtime!r}", code="bad_config"
            )
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side
        path = weights_path()
        if not path.is_file():
            raise AgeGenderError(f"{path}: the bundled BlazeFace model is missing; reinstall agegender",
                                 code="missing_file")
        self._session: Any = None
        self._net: Any = None
        self._lock = threading.Lock()
        if runtime in ("auto", "onnxruntime"):
            try:
                import onnxruntime as ort
            except ImportError:
                if runtime == "onnxruntime":
                    raise AgeGenderError(
                        "onnxruntime is not installed: pip install agegender[onnx], or runtime='opencv'",
                        code="missing_dependency",
                    ) from None
            else:
                opts = ort.SessionOptions()
                # One thread, no spinning: the network is small (6 ms on one core here, 15 ms with two
                # threads), and spinning pool threads would steal the CPU from the age/gender model after.
                opts.intra_op_num_threads = 1
                opts.inter_op_num_threads = 1
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        if self._session is None:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        self.runtime = "onnxruntime" if self._session is not None else "opencv"

    def _forward(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._session is not None:
            regs, scores = self._session.run(None, {"input": blob})
            return regs, scores
        outs = []
        with self._lock:  # an OpenCV Net holds its input as state
            for one in blob:  # OpenCV's importer cannot batch this graph (its Transposes are 7-D)
                self._net.setInput(one[None])
                outs.append(self._net.forward(["regressors", "scores"]))
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def _detect(self, image: np.ndarray) -> list[Detection]:
        small, factor = downscale(image, self.max_side)
        h, w = small.shape[:2]
        # Views: (x0, y0, width, height) of the image each network input sees; the whole image first.
        views = [(0, 0, w, h)] + self._tiles(w, h)
        blobs, maps = [], []
        for x0, y0, vw, vh in views:
            blob, offset, to_px = _letterbox(small[y0 : y0 + vh, x0 : x0 + vw])
            blobs.append(blob)
            maps.append((offset, to_px, x0, y0, vw, vh))
        regs, logits = self._forward(np.ascontiguousarray(np.concatenate(blobs)))
        regs = regs.reshape(len(views), -1, 16)
        logits = logits.reshape(len(views), -1)
        all_boxes, all_points, all_scores = [], [], []
        for v, (offset, to_px, x0, y0, vw, vh) in enumerate(maps):
            tile = v > 0
            threshold = self.tile_score_threshold if tile else self.score_threshold
            scores = 1.0 / (1.0 + np.exp(-np.clip(logits[v].astype(np.float64), -100.0, 100.0)))
            keep = scores >= threshold
            if not keep.any():
                continue
            r, sc, anchors = regs[v][keep], scores[keep], ANCHORS[keep]
            cx = r[:, 0] / INPUT + anchors[:, 0]
            cy = r[:, 1] / INPUT + anchors[:, 1]
            bw, bh = r[:, 2] / INPUT, r[:, 3] / INPUT
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
            points = r[:, 4:16].reshape(-1, 6, 2) / INPUT + anchors[:, None, :]
            # normalised letterbox coordinates → pixels of the (downscaled) image
            shift = np.array([x0, y0], dtype=np.float64)
            boxes = ((boxes.reshape(-1, 2, 2) - offset) * to_px + shift).reshape(-1, 4)
            points = (points - offset) * to_px + shift
            if tile:
                # A face cut by a tile's inner edge gives a partial box: the overlap guarantees a
                # neighbouring tile (or the whole-image pass) sees it whole, so drop such boxes.
                m = TILE_EDGE * max(vw, vh)
                inside = np.ones(len(boxes), dtype=bool)
                if x0 > 0:
                    inside &= boxes[:, 0] > x0 + m
                if y0 > 0:
                    inside &= boxes[:, 1] > y0 + m
                if x0 + vw < w:
                    inside &= boxes[:, 2] < x0 + vw - m
                if y0 + vh < h:
                    inside &= boxes[:, 3] < y0 + vh - m
                boxes, points, sc = boxes[inside], points[inside], sc[inside]
            all_boxes.append(boxes)
            all_points.append(points)
            all_scores.append(sc)
        if not all_boxes:
            return []
        detections = []
        merged = weighted_nms(np.concatenate(all_boxes), np.concatenate(all_points), np.concatenate(all_scores),
                              self.nms_threshold)
        if len(views) > 1:  # a small face seen coarsely by the whole-image pass and again by a tile
            merged = [merged[i] for i in drop_centred_inside(np.array([m[0] for m in merged]))]
        for box, pts, score in merged:
            detections.append(Detection(
                box=tuple(float(v) / factor for v in box),  # type: ignore[arg-type]
                score=float(score),
                landmarks=tuple((float(x) / factor, float(y) / factor) for x, y in pts),
            ))
        return detections

    def _tiles(self, w: int, h: int) -> list[tuple[int, int, int, int]]:
        """Square tiles of ``tile_size`` px overlapping by ``tile_overlap`` of their side, covering the image,
        when ``tiles="auto"`` and the image's longer side exceeds ``tile_size`` × ``TILE_MIN_RATIO``."""
        t = self.tile_size
        if self.tiles == "off" or max(w, h) <= t * TILE_MIN_RATIO:
            return []
        step = t * (1.0 - self.tile_overlap)

        def starts(length: int) -> list[int]:
            if length <= t:
                return [0]
            n = int(np.ceil((length - t) / step)) + 1
            return [round(i * (length - t) / (n - 1)) for i in range(n)]

        return [(x, y, min(t, w), min(t, h)) for y in starts(h) for x in starts(w)]

    def __repr__(self) -> str:
        return (f"BlazeFaceDetector(runtime={self.runtime!r}, min_face_size={self.min_face_size:g}, "
                f"score_threshold={self.score_threshold:g})")


def weighted_nms(
    boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-maximum suppression: take the best remaining box, average it with every
    remaining box overlapping it by more than ``iou_threshold`` (weights = scores; key points likewise),
    keep the best box's score, drop the group; repeat.

    >>> b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=float)
    >>> out = weighted_nms(b, np.zeros((3, 1, 2)), np.array([0.9, 0.6, 0.8]), 0.3)
    >>> [([round(float(v), 1) for v in o[0]], round(o[2], 2)) for o in out]
    [([0.4, 0.4, 10.4, 10.4], 0.9), ([50.0, 50.0, 60.0, 60.0], 0.8)]
    """
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        i = order[0]
        merged = iou_one_to_many(boxes[i], boxes[order]) > iou_threshold
        merged[0] = True  # the best box itself (even when degenerate, with IoU 0)
        group = order[merged]
        wts = scores[group] / scores[group].sum()
        out.append(((boxes[group] * wts[:, None]).sum(0), (points[group] * wts[:, None, None]).sum(0),
                    float(scores[i])))
        order = order[~merged]
    return out


def _letterbox(view: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The network input for an image region: letterboxed to a centred 192×192 square (as MediaPipe's
    ImageToTensorCalculator with keep_aspect_ratio), in [-1, 1], NCHW; plus the normalised offset of the
    image in the square and the factor from normalised square coordinates to the region's pixels."""
    h, w = view.shape[:2]
    side = max(h, w)
    px, py = (side - w) // 2, (side - h) // 2
    scale = INPUT / side
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((INPUT, INPUT, 3), dtype=np.uint8)
    ox, oy = round(px * scale), round(py * scale)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[oy : oy + nh, ox : ox + nw] = cv2.resize(view, (nw, nh), interpolation=interp)
    blob = (canvas.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None]
    return blob, np.array([ox, oy], dtype=np.float64) / INPUT, INPUT / scale
