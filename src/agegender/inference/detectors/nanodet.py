"""The "nanodet" person detector: NanoDet-g-416 (RangiLyu/nanodet, Apache-2.0), a COCO object detector of
which only the *person* class is used, bundled as ONNX (``weights/nanodet_g_416.onnx``, 7.6 MB; card in
``weights/nanodet_g_416.md``). The default detector of body mode.

NanoDet is an anchor-free one-stage detector (FCOS-style centres, Generalized Focal Loss heads). The file takes
a 416×416 BGR image normalised with mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395); for each cell
of the stride-8, 16 and 32 grids (52², 26², 13²) it gives 80 class scores (sigmoid) and, per box side, a
distribution over 11 distances (0–10 strides) from the cell centre ``((x + 0.5) · stride, (y + 0.5) · stride)``.
Decoding: softmax of each distribution, expected distance × stride, as NanoDet's ``GFLHead``/``Integral``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from agegender.bundled import WEIGHTS_DIR
from agegender.errors import AgeGenderError
from agegender.inference.detectors.base import DETECTORS, Detection, Detector, drop_centred_inside, nms

INPUT = 416
WEIGHTS = "nanodet_g_416.onnx"
STRIDES = (8, 16, 32)
BINS = 11  # reg_max 10
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
PERSON = 0  # COCO class index


def weights_path() -> Path:
    return WEIGHTS_DIR / WEIGHTS


@DETECTORS.register("nanodet", kind="person",
                     description="NanoDet-g person detector (bundled ONNX, COCO person class); default of body mode")
# (person boxes are framed by detectors.base.frame_person with PERSON_MARGIN, not by a per-detector framing)
class NanoDetPersonDetector(Detector):
    """Finds people (whole bodies) with NanoDet-g-416.

    Args:
        score_threshold: minimum person score (the sigmoid class score). 0.3 by default: on 40 street scenes of
            PETA's validation split it found 94.4 % of the people with 0.20 false persons per scene; 0.35: 90.0 % /
            0.20; 0.25: 95.6 % / 0.28 (``benchmarks/street_scenes.py --split val --seed 1 --scenes 40 --detectors
            nanodet,nanodet:score_threshold=0.35,...``).
        nms_threshold: IoU above which the lower-scoring of two person boxes is dropped.
        tiles: ``"off"`` (default): the whole image only; ``"auto"``: an image wider (or taller) than 1.5 × its
            other side is also searched in overlapping square tiles of its shorter side, so that small people in
            wide frames are seen at a larger scale (1280×720: two extra passes). On those scenes (people 120–400 px
            tall) tiles found 96.2 % with 0.28 false persons per scene at 2.2× the detector's time; they matter
            most for people under about 8 % of the image's longer side.
        threads: ONNX Runtime intra-op threads (1: the network is small and the CPU is left to the body model).
        min_face_size, max_faces: see :class:`Detector` (here the shorter side of a *person* box, default 16 px).

    The image (or tile) is letterboxed into 416×416 (top-left; the padding is the normalised mean); detections of
    all views are merged by NMS, and a box centred inside a better one (a part of a person boxed on its own) is
    dropped.
    """

    name = "nanodet"
    kind = "person"

    def __init__(
        self,
        *,
        score_threshold: float = 0.3,
        nms_threshold: float = 0.5,
        tiles: str = "off",
        threads: int = 1,
        min_face_size: float = 16,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        if tiles not in ("auto", "off"):
            raise AgeGenderError(f"tiles must be 'auto' or 'off', not {tiles!r}", code="bad_config")
        self.tiles = tiles
        self.nms_threshold = float(nms_threshold)
        path = weights_path()
        if not path.is_file():
            raise AgeGenderError(f"{path}: the bundled NanoDet model is missing; reinstall agegender, or use the "
                                 "'hog' person detector", code="missing_file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise AgeGenderError("the nanodet detector needs onnxruntime: pip install onnxruntime, or use the "
                                 "'hog' person detector", code="missing_dependency") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def _views(self, w: int, h: int) -> list[tuple[int, int, int, int]]:
        """(x0, y0, width, height) of the regions searched: the whole image, then square tiles when it is long."""
        views = [(0, 0, w, h)]
        if self.tiles == "auto" and max(w, h) > 1.5 * min(w, h):
            side = min(w, h)
            n = int(np.ceil(max(w, h) / side))  # tiles of the shorter side, overlapping, covering the long side
            for i in range(n):
                start = round(i * (max(w, h) - side) / max(n - 1, 1))
                views.append((start, 0, side, h) if w > h else (0, start, w, side))
        return views

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        boxes, scores = [], []
        for x0, y0, vw, vh in self._views(w, h):
            b, s = self._run(image[y0 : y0 + vh, x0 : x0 + vw])
            if len(b):
                if (vw, vh) != (w, h):
                    # a box cut by a tile's inner edge is a partial person: another view sees it whole
                    m = 0.01 * max(vw, vh)
                    inside = np.ones(len(b), dtype=bool)
                    if x0 > 0:
                        inside &= b[:, 0] > m
                    if x0 + vw < w:
                        inside &= b[:, 2] < vw - m
                    if y0 > 0:
                        inside &= b[:, 1] > m
                    if y0 + vh < h:
                        inside &= b[:, 3] < vh - m
                    b, s = b[inside], s[inside]
                boxes.append(b + [x0, y0, x0, y0])
                scores.append(s)
        if not boxes:
            return []
        b, s = np.concatenate(boxes), np.concatenate(scores)
        keep = nms(b, s, self.nms_threshold)
        b, s = b[keep], s[keep]
        keep = drop_centred_inside(b)  # part of a person boxed on its own (a torso) inside the whole person
        return [Detection(box=tuple(float(v) for v in bb), score=float(ss))  # type: ignore[arg-type]
                for bb, ss in zip(b[keep], s[keep])]

    def _run(self, view: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (pixels of ``view``) and scores above the threshold, before NMS."""
        vh, vw = view.shape[:2]
        scale = INPUT / max(vh, vw)
        nw, nh = max(1, round(vw * scale)), max(1, round(vh * scale))
        canvas = np.zeros((INPUT, INPUT, 3), dtype=np.float32)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[:nh, :nw] = cv2.resize(view, (nw, nh), interpolation=interp)[..., ::-1]  # RGB → BGR
        canvas[:nh, :nw] = (canvas[:nh, :nw] - MEAN_BGR) / STD_BGR  # the padding stays 0 (mean grey)
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
        with self._lock:
            outs = dict(zip([o.name for o in self._session.get_outputs()], self._session.run(None, {"input": blob})))
        boxes, scores = [], []
        for stride in STRIDES:
            cls, reg = outs[f"cls_{stride}"][0, :, PERSON], outs[f"reg_{stride}"][0]
            keep = np.flatnonzero(cls >= self.score_threshold)
            if not keep.size:
                continue
            dist = reg[keep].reshape(-1, 4, BINS).astype(np.float64)
            dist = np.exp(dist - dist.max(-1, keepdims=True))
            dist /= dist.sum(-1, keepdims=True)
            d = (dist * np.arange(BINS)).sum(-1) * stride  # left, top, right, bottom
            n = INPUT // stride
            cx, cy = (keep % n + 0.5) * stride, (keep // n + 0.5) * stride
            boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1) / scale)
            scores.append(cls[keep].astype(np.float64))
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0)
        return np.concatenate(boxes), np.concatenate(scores)

    def __repr__(self) -> str:
        return (f"NanoDetPersonDetector(score_threshold={self.score_threshold:g}, tiles={self.tiles!r}, "
                f"min_face_size={self.min_face_size:g})")
