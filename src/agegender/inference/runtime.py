"""Opening a model's runtime: PyTorch (:class:`~agegender.inference.backends.TorchBackend`), ONNX Runtime
(:class:`~agegender.inference.onnx_runtime.OnnxBackend`) or OpenVINO
(:class:`~agegender.inference.openvino_runtime.OpenVinoBackend`). Each is imported only when chosen, so the
ONNX paths never load torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agegender.errors import AgeGenderError


class Backend(Protocol):
    """What the predictor needs of a runtime."""

    name: str
    input_format: str
    config: dict[str, Any]
    preprocess: dict[str, Any]
    labels: dict[str, Any]
    meta: dict[str, Any]
    source: str
    model_name: str

    def run(self, x: Any, tta_flip: bool = False) -> dict[str, np.ndarray]: ...


def open_backend(
    path: str | Path, backend: str | None = None, device: str = "cpu", threads: int | None = None,
    precision: str | None = None,
) -> Backend:
    """The runtime for a model file: ``backend`` ``torch``/``onnx``/``openvino``, or chosen by the file extension.

    ``onnx`` or ``openvino`` with a checkpoint/package exports it to ONNX first (a few seconds) and runs that.
    ``precision`` (``fp32``/``bf16``/``auto``; unset: ``fp32``, except ``auto`` for OpenVINO) is the torch
    backend's (see :class:`TorchBackend`) or OpenVINO's (see :class:`OpenVinoBackend`); ONNX Runtime runs the
    file's own float32.
    """
    kind = backend or ("onnx" if str(path).lower().endswith(".onnx") else "torch")
    if kind in ("onnx", "openvino"):
        if kind == "onnx" and precision == "bf16":
            raise AgeGenderError("precision 'bf16' needs backend='openvino' (an ONNX file) or backend='torch'",
                                 code="bad_option")
        if not str(path).lower().endswith(".onnx"):
            return _export_and_open(path, kind, device, threads, precision)
        return _open_onnx_file(path, kind, device, threads, precision)
    if kind == "torch":
        if str(path).lower().endswith(".onnx"):
            raise AgeGenderError(f"{path} is an ONNX file: load it with backend='onnx'", code="bad_model")
        from agegender.inference.backends import TorchBackend

        return TorchBackend(path, device, threads, precision=precision or "fp32")
    raise AgeGenderError(f"unknown backend {kind!r}; choose 'torch', 'onnx' or 'openvino'", code="bad_option")


def _open_onnx_file(path: str | Path, kind: str, device: str, threads: int | None, precision: str | None) -> Backend:
    if kind == "openvino":
        from agegender.inference.openvino_runtime import OpenVinoBackend

        return OpenVinoBackend(path, device, threads, precision=precision or "auto")
    from agegender.inference.onnx_runtime import OnnxBackend

    return OnnxBackend(path, device, threads)


def _export_and_open(path: str | Path, kind: str, device: str, threads: int | None, precision: str | None) -> Backend:
    import tempfile

    from agegender.inference.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="agegender-onnx-") as tmp:
        out = Path(tmp) / (Path(path).stem + ".onnx")
        export_onnx(path, out, verify=False)
        backend = _open_onnx_file(out, kind, device, threads, precision)  # the runtime holds the model in memory
    backend.source = str(path)
    return backend
