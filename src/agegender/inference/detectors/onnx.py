"""The "onnx" detector: a face detector the user supplies as an ``.onnx`` file (YuNet or a generic one).

- **YuNet** (OpenCV's ``face_detection_yunet_2023mar.onnx``) runs through ``cv2.FaceDetectorYN``, which
  decodes its 12 raw outputs, applies NMS and returns five landmarks per face. Needs only OpenCV.
- **Generic** detectors run with onnxruntime (``pip install agegender[onnx]``) and must already decode
  their boxes: the first output is ``[N, 5+]`` (or ``[1, N, 5+]``) rows of
  ``x1, y1, x2, y2, score`` in pixels of the network input, optionally followed by 10 values, the
  ``(x, y)`` of five landmarks. SCRFD, RetinaFace, YOLO-face etc. qualify only when exported with
  their decoding included; their raw per-anchor outputs are not decoded here. Scores must be in [0, 1].
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.detectors.base import DETECTORS, Detection, Detector, downscale, nms

#: Output names of YuNet models; a model exposing them is run by ``cv2.FaceDetectorYN``.
YUNET_OUTPUTS = ("cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32")

_INSTALL_HINT = "install it with: pip install agegender[onnx]"


@DETECTORS.register(
    "onnx", description="user-supplied ONNX face detector (YuNet via OpenCV, others via onnxruntime)"
)
class OnnxDetector(Detector):
    """Face detector from an ONNX file.

    Args:
        model_path: path of the ``.onnx`` file.
        kind: ``"yunet"``, ``"generic"`` or ``"auto"`` (YuNet when the file name contains "yunet" or the
            model has YuNet's output names, else generic).
        input_size: ``(width, height)`` of the network input for generic models. ``None`` takes it from
            the model when fixed, else uses the (downscaled) image size rounded up to a multiple of 32.
            The image is letterboxed: resized keeping its aspect ratio and padded with zeros at the right
            and bottom, so boxes map back by one scale factor.
        mean, std: per-channel normalisation ``(pixel - mean) / std`` for generic float models, in the
            model's channel order (SCRFD: mean 127.5, std 128, ``channel_order="BGR"``). Defaults feed
            raw 0–255 values. Ignored for uint8 inputs and for YuNet.
        channel_order: ``"RGB"`` or ``"BGR"`` input for generic models (YuNet always gets BGR).
        layout: ``"NCHW"``, ``"NHWC"`` or ``"auto"`` (NHWC when the model's last input dim is 3).
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.
        top_k: keep at most this many boxes before NMS.
        max_side: longer side of the image searched (``None``: full size); boxes are scaled back.
        score_threshold: minimum face score (default 0.5; scores are the model's own, in [0, 1]).
        min_face_size, max_faces: see :class:`Detector`.

    Raises:
        AgeGenderError: ``missing_file`` (no such file), ``bad_model`` (not a usable ONNX detector),
            ``missing_dependency`` (a generic model without onnxruntime installed).
    """

    name = "onnx"

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        kind: str = "auto",
        input_size: Sequence[int] | None = None,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: str = "RGB",
        layout: str = "auto",
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int | None = 640,
        min_face_size: float = 30,
        score_threshold: float = 0.5,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(min_face_size=min_face_size, score_threshold=score_threshold, max_faces=max_faces)
        self.model_path = os.fspath(model_path)
        if not os.path.isfile(self.model_path):
            raise AgeGenderError(
                f"{self.model_path}: no such ONNX model file; download the detector (e.g. OpenCV's "
                "face_detection_yunet_2023mar.onnx) and pass its path",
                code="missing_file",
            )
        if kind not in ("auto", "yunet", "generic"):
            raise AgeGenderError(
                f"kind must be 'auto', 'yunet' or 'generic', not {kind!r}", code="bad_config"
            )
        if channel_order not in ("RGB", "BGR") or layout not in ("auto", "NCHW", "NHWC"):
            raise AgeGenderError(
                f"channel_order must be RGB/BGR and layout auto/NCHW/NHWC, not {channel_order!r}/{layout!r}",
                code="bad_config",
            )
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.max_side = max_side
        self.input_size = tuple(int(v) for v in input_size) if input_size is not None else None
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)
        self.channel_order = channel_order
        self._session: Any = None
        self._yunet: Any = None
        self._lock = threading.Lock()

        if kind == "auto":
            kind = "yunet" if "yunet" in os.path.basename(self.model_path).lower() else self._inspect_kind()
        self.kind = kind
        if kind == "yunet":
            self._yunet = self._create_yunet()
        else:
            if self._session is None:
                self._session = _open_session(self.model_path)
            self._setup_generic(layout)

    # ------------------------------------------------------------------------------------------ YuNet

    def _create_yunet(self) -> Any:
        try:
            # The input size is a placeholder; each image sets its own before detection.
            return cv2.FaceDetectorYN.create(
                self.model_path, "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
            )
        except cv2.error as exc:
            raise AgeGenderError(
                f"{self.model_path}: OpenCV cannot load it as a YuNet face detector ({_first_line(exc)}); "
                "use face_detection_yunet_2023mar.onnx, or kind='generic' for other detectors",
                code="bad_model",
            ) from None

    def _detect_yunet(self, image: np.ndarray) -> list[Detection]:
        small, factor = downscale(image, self.max_side)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        # FaceDetectorYN keeps the input size as state, so concurrent callers must not interleave.
        with self._lock:
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._yunet.detect(bgr)
        if faces is None:
            return []
        detections = []
        for row in np.asarray(faces, dtype=np.float64).reshape(-1, 15):
            x, y, w, h = row[:4] / factor
            points = tuple((float(px), float(py)) for px, py in (row[4:14] / factor).reshape(5, 2))
            detections.append(
                Detection(
                    box=(float(x), float(y), float(x + w), float(y + h)),
                    score=float(row[14]),
                    landmarks=points,
                )
            )
        return detections

    # ---------------------------------------------------------------------------------------- generic

    def _inspect_kind(self) -> str:
        ort = _import_onnxruntime(
            f"{os.path.basename(self.model_path)} is not named like a YuNet model, so it needs onnxruntime; "
            f"{_INSTALL_HINT}, or pass kind='yunet' if it is a YuNet model"
        )
        self._session = _open_session(self.model_path, ort)
        names = {o.name for o in self._session.get_outputs()}
        if set(YUNET_OUTPUTS) <= names:
            self._session = None
            return "yunet"
        return "generic"

    def _setup_generic(self, layout: str) -> None:
        inp = self._session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise AgeGenderError(
                f"{self.model_path}: expected one image input of rank 4 (N×C×H×W or N×H×W×C), got {shape}",
                code="bad_model",
            )
        if layout == "auto":
            layout = "NHWC" if shape[3] == 3 and shape[1] != 3 else "NCHW"
        self.layout = layout
        self._input_name = inp.name
        self._input_type = inp.type  # e.g. 'tensor(float)', 'tensor(uint8)', 'tensor(float16)'
        h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
        self._fixed_size = (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None

    def _detect_generic(self, image: np.ndarray) -> list[Detection]:
        small, factor = downscale(image, self.max_side)
        target = self.input_size or self._fixed_size or _round_up(small.shape[1], small.shape[0], 32)
        blob, scale = self._letterbox(small, target)
        try:
            outputs = self._session.run(None, {self._input_name: blob})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise AgeGenderError(
                f"{self.model_path}: running the model failed ({_first_line(exc)}); check input_size, layout "
                "and mean/std against the model's documentation",
                code="bad_model",
            ) from None
        rows = np.asarray(outputs[0], dtype=np.float64)
        if rows.ndim == 3 and rows.shape[0] == 1:
            rows = rows[0]
        if rows.ndim != 2 or (rows.shape[0] and rows.shape[1] < 5):
            raise AgeGenderError(
                f"{self.model_path}: the first output has shape {tuple(np.shape(outputs[0]))}; a generic "
                "detector must output [N, 5+] rows of x1, y1, x2, y2, score (raw per-anchor outputs of "
                "SCRFD/RetinaFace are not decoded here; export the model with its post-processing)",
                code="bad_model",
            )
        rows = rows[rows[:, 4] >= self.score_threshold]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")[: self.top_k]]
        rows = rows[nms(rows[:, :4], rows[:, 4], self.nms_threshold)] if len(rows) else rows
        to_original = scale * factor
        detections = []
        for row in rows:
            box = tuple(float(v) for v in row[:4] / to_original)
            points = None
            if row.shape[0] >= 15:
                points = tuple((float(px), float(py)) for px, py in (row[5:15] / to_original).reshape(5, 2))
            detections.append(Detection(box=box, score=float(row[4]), landmarks=points))  # type: ignore[arg-type]
        return detections

    def _letterbox(self, image: np.ndarray, target: Sequence[int]) -> tuple[np.ndarray, float]:
        tw, th = int(target[0]), int(target[1])
        h, w = image.shape[:2]
        scale = min(tw / w, th / h)
        nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
        canvas = np.zeros((th, tw, 3), dtype=np.uint8)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
        if self.channel_order == "BGR":
            canvas = canvas[:, :, ::-1]
        if self._input_type == "tensor(uint8)":
            blob = np.ascontiguousarray(canvas)
        else:
            dtype = np.float16 if self._input_type == "tensor(float16)" else np.float32
            blob = ((canvas.astype(np.float32) - self.mean) / self.std).astype(dtype)
        if self.layout == "NCHW":
            blob = blob.transpose(2, 0, 1)
        return np.ascontiguousarray(blob[None]), scale

    def _detect(self, image: np.ndarray) -> list[Detection]:
        return self._detect_yunet(image) if self.kind == "yunet" else self._detect_generic(image)

    def __repr__(self) -> str:
        return (
            f"OnnxDetector({self.model_path!r}, kind={self.kind!r}, score_threshold={self.score_threshold:g})"
        )


def _import_onnxruntime(reason: str) -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise AgeGenderError(f"onnxruntime is not installed: {reason}", code="missing_dependency") from None
    return onnxruntime


def _open_session(path: str, ort: Any = None) -> Any:
    ort = ort or _import_onnxruntime(f"generic ONNX detectors run with it; {_INSTALL_HINT}")
    try:
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, NoSuchFile, ... all mean the same here
        raise AgeGenderError(
            f"{path}: not a valid ONNX model ({_first_line(exc)}); check the file is complete",
            code="bad_model",
        ) from None


def _round_up(width: int, height: int, multiple: int) -> tuple[int, int]:
    return (-(-width // multiple) * multiple, -(-height // multiple) * multiple)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else type(exc).__name__
