"""The "yunet" detector: libfacedetection's YuNet face detector, an ONNX file the user supplies, run with onnxruntime.

YuNet (Wu, Peng, Yu 2023, "YuNet: A Tiny Millisecond-level Face Detector") is an anchor-free single-shot
detector trained on WIDER Face for faces of about 10 to 300 px. For each cell of three grids (strides 8,
16 and 32 px of the network input) it predicts a class and an objectness score, a box and five key points.
agegender does not bundle it (no package index ships the file): pass the path of YuNet's ONNX file as
``model_path`` or in the environment variable ``AGEGENDER_YUNET_MODEL``. OpenCV zoo's
``face_detection_yunet_2023mar.onnx`` (MIT) has a fixed 640×640 input and is letterboxed into it; an export of the
same weights with a dynamic input size (libfacedetection.train's ``yunet_s_dynamic.onnx``, Apache-2.0) lets the
network see the whole image at its own size (padded to a multiple of 32): by default enlarged 1.5× so that faces
down to ~15 px are found, plus a pass on a small copy for faces too large for the network's training range.

Decoding follows OpenCV's ``FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``), vectorised: for
the cell in row ``r``, column ``c`` of stride ``s``, score = sqrt(clip(cls) · clip(obj)), box centre
``((c + dx) s, (r + dy) s)``, size ``(exp(dw) s, exp(dh) s)``, key point ``((c + kx) s, (r + ky) s)``;
then greedy non-maximum suppression. Input: BGR pixels 0–255 as float, no normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

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

#: where the model file is looked up when ``model_path`` is not given
ENV_MODEL = "AGEGENDER_YUNET_MODEL"
STRIDES = (8, 16, 32)
#: the network's input sides must be multiples of its largest stride
MULTIPLE = 32


@DETECTORS.register("yunet", description="libfacedetection's YuNet CNN (your ONNX file: model_path or "
                    f"${ENV_MODEL}); finds faces from ~15 px",
                    framing=(-0.044, 0.056))  # benchmarks/face_framing.py; see detectors.base.detector_framing
class YuNetDetector(Detector):
    """YuNet face detector.

    Args:
        upscale: the main pass searches the image enlarged by this factor (longer side capped by
            ``max_side``). YuNet finds faces of about 16 px and more reliably, so 1.5 finds ~11-px faces, and
            24-px faces (40-px UTKFace-style crops) 98 % of the time instead of 70 % at 1.0
            (``benchmarks/face_sizes.py``); the cost grows with the pixel count (2.25× at 1.5).
        max_side: longer side of the main pass at most (``None``: no cap); larger photos are searched
            shrunk, so their smallest faces found grow in proportion (~20 px in a 2560-px photo).
        coarse_side: a second pass searches the image shrunk to this longer side, when the main pass is
            more than twice as large: YuNet was trained on faces up to ~300 px and misses faces much larger
            than that, such as a close-up portrait at 1.5× (``None``: main pass only). It costs a few ms.
        coarse_score_threshold: score threshold of the coarse pass. Seen that small, a large soft blur (the
            enlarged, blurred face photos behind the benchmark's scenes) can pass for a face with scores up to
            0.86; 120 real faces filling the frame all scored 0.85 or more there.
        max_face_share: drop boxes whose longer side exceeds this share of the image's shorter side. The
            coarse pass can take a large soft blur for a face overflowing the frame.
        nms_threshold: IoU above which the lower-scoring of two boxes (of either pass) is dropped; a box
            centred inside a better-scoring one is dropped too.
        top_k: keep at most this many of the best-scoring boxes of a pass before NMS.
        model_path: the YuNet ONNX file (default: the path in ``$AGEGENDER_YUNET_MODEL``). With a fixed input
            size (OpenCV zoo's ``face_detection_yunet_2023mar.onnx`` is fixed at 640×640), the image is
            letterboxed into it in one pass, which finds fewer small faces in large photos.
        min_face_size, score_threshold, max_faces: see :class:`Detector`; scores are YuNet's own, in [0, 1]
            (0.6: on the benchmark's face-free images 0.5 gave a few false faces, 0.6 none).

    Raises:
        AgeGenderError: ``missing_file`` (no model file), ``bad_model`` (not a YuNet ONNX model),
            ``bad_config`` (an option out of range).
    """

    name = "yunet"

    def __init__(
        self,
        *,
        upscale: float = 1.5,
        max_side: int | None = 1920,
        coarse_side: int | None = 320,
        coarse_score_threshold: float = 0.85,
        max_face_share: float = 1.0,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        model_path: str | os.PathLike | None = None,
        min_face_size: float = 20,
        score_threshold: float = 0.6,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        for option, value in (("max_side", max_side), ("coarse_side", coarse_side)):
            if value is not None and int(value) < MULTIPLE:
                raise AgeGenderError(f"{option} must be >= {MULTIPLE} or None, not {value}", code="bad_config")
        if not 0.1 <= float(upscale) <= 4.0:
            raise AgeGenderError(f"upscale must be in [0.1, 4], not {upscale}", code="bad_config")
        if float(max_face_share) <= 0:
            raise AgeGenderError(f"max_face_share must be > 0, not {max_face_share}", code="bad_config")
        self.upscale = float(upscale)
        self.max_side = None if max_side is None else int(max_side)
        self.coarse_side = None if coarse_side is None else int(coarse_side)
        self.max_face_share = float(max_face_share)
        self.coarse_score_threshold = float(coarse_score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        if model_path is None:
            model_path = os.environ.get(ENV_MODEL) or None
        if model_path is None:
            raise AgeGenderError(
                "the yunet detector needs YuNet's ONNX file, which agegender does not bundle: get "
                "face_detection_yunet_2023mar.onnx from OpenCV's model zoo and pass --detector-option "
                f"model_path=FILE (or set {ENV_MODEL})", code="missing_file")
        path = Path(model_path)
        if not path.is_file():
            raise AgeGenderError(f"{path}: no such YuNet model file; check the path", code="missing_file")
        self.model_path = str(path)
        self._session = _open_session(self.model_path)
        inp = self._session.get_inputs()[0]
        outputs = [o.name for o in self._session.get_outputs()]
        wanted = [f"{kind}_{s}" for s in STRIDES for kind in ("cls", "obj", "bbox", "kps")]
        if len(inp.shape) != 4 or not set(wanted) <= set(outputs):
            raise AgeGenderError(
                f"{self.model_path}: not a YuNet face detector (it needs one image input and the outputs "
                f"{', '.join(wanted)}); use face_detection_yunet_2023mar.onnx",
                code="bad_model",
            )
        self._input = inp.name
        self._outputs = wanted
        h, w = inp.shape[2], inp.shape[3]
        self._fixed = (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None

    def scales(self, width: int, height: int) -> list[float]:
        """The factors the image is searched at: the main pass, then the coarse one when it runs."""
        long = max(width, height)
        if self._fixed is not None:  # letterboxed into the model's input
            return [min(self._fixed[0] / width, self._fixed[1] / height)]
        main = self.upscale if self.max_side is None else min(self.upscale, self.max_side / long)
        if self.coarse_side is not None and main * long > 2 * self.coarse_side:
            return [main, self.coarse_side / long]
        return [main]

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        found = [self._pass(image, scale, self.score_threshold if i == 0 else self.coarse_score_threshold)
                 for i, scale in enumerate(self.scales(w, h))]
        boxes, points, scores = (np.concatenate(parts) for parts in zip(*found))
        # A box larger than the image's shorter side is no face to crop: seen coarsely, a large soft blur (an
        # out-of-focus background) can pass for one.
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        fits = np.flatnonzero(sides <= self.max_face_share * min(h, w))
        keep = fits[nms(boxes[fits], scores[fits], self.nms_threshold)]
        keep = keep[drop_centred_inside(boxes[keep])]  # a part of a large face, or one face seen by both passes
        return detections_at(keep, boxes, scores, points)

    def _pass(self, image: np.ndarray, scale: float, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, key points and scores (in pixels of ``image``) found with the image resized by ``scale``."""
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        view = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
        if self._fixed is not None:
            pw, ph = self._fixed
        else:
            pw, ph = -(-nw // MULTIPLE) * MULTIPLE, -(-nh // MULTIPLE) * MULTIPLE
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, :nh, :nw] = view[:, :, ::-1].transpose(2, 0, 1)  # RGB → BGR, zero padding right and bottom
        try:
            outs = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: blob})))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise AgeGenderError(f"{self.model_path}: running the YuNet model failed ({_first_line(exc)})",
                                 code="bad_model") from None
        boxes, points, scores = decode(outs, pw, ph, threshold)
        if len(scores) > self.top_k:
            best = np.argsort(-scores, kind="stable")[: self.top_k]
            boxes, points, scores = boxes[best], points[best], scores[best]
        return boxes / (nw / w), points / (nw / w), scores

    def __repr__(self) -> str:
        return (f"YuNetDetector(upscale={self.upscale:g}, max_side={self.max_side}, "
                f"coarse_side={self.coarse_side}, min_face_size={self.min_face_size:g}, "
                f"score_threshold={self.score_threshold:g})")


def decode(outs: dict[str, np.ndarray], width: int, height: int, threshold: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet's raw outputs for a ``width``×``height`` input → boxes ``(N, 4)`` (x1, y1, x2, y2), key points
    ``(N, 5, 2)`` and scores ``(N,)`` of the cells scoring at least ``threshold``, in input pixels."""
    boxes, points, scores = [], [], []
    for s in STRIDES:
        cols, rows = width // s, height // s
        cls = np.clip(outs[f"cls_{s}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outs[f"obj_{s}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        idx = np.flatnonzero(score[: rows * cols] >= threshold)
        if not idx.size:
            continue
        r, c = np.divmod(idx, cols)
        cell = np.stack([c, r], axis=1).astype(np.float64)
        b = outs[f"bbox_{s}"].reshape(-1, 4)[idx].astype(np.float64)
        k = outs[f"kps_{s}"].reshape(-1, 5, 2)[idx].astype(np.float64)
        centre = (cell + b[:, :2]) * s
        half = np.exp(b[:, 2:]) * s / 2.0
        boxes.append(np.concatenate([centre - half, centre + half], axis=1))
        points.append((k + cell[:, None, :]) * s)
        scores.append(score[idx].astype(np.float64))
    if not scores:
        return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0)
    return np.concatenate(boxes), np.concatenate(points), np.concatenate(scores)


def _open_session(path: str) -> Any:
    import onnxruntime as ort  # a core dependency

    opts = ort.SessionOptions()
    # One thread, no spinning (as for BlazeFace): the age/gender model runs right after on the same cores.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, NoSuchFile, ... all mean the same here
        raise AgeGenderError(f"{path}: not a valid ONNX model ({_first_line(exc)}); check the file is complete",
                             code="bad_model") from None

