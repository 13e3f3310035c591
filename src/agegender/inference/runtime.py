"""Opening a model's runtime: PyTorch (:class:`~agegender.inference.backends.TorchBackend`) or ONNX Runtime
(:class:`~agegender.inference.onnx_runtime.OnnxBackend`). Each is imported only when chosen, so the ONNX path
never loads torch."""

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
    precision: str = "fp32",
) -> Backend:
    """The runtime for a model file: ``backend`` ``torch``/``onnx``, or chosen by the file extension.

    ``onnx`` with a checkpoint/package exports it to ONNX first (a few seconds) and runs that.
    ``precision`` (``fp32``/``bf16``/``auto``) is the torch backend's (see :class:`TorchBackend`); ONNX
    Runtime runs the file's own precision.
    """
    kind = backend or ("onnx" if str(path).lower().endswith(".onnx") else "torch")
    if kind == "onnx":
        if precision == "bf16":
            raise AgeGenderError("precision 'bf16' is a torch backend option; use backend='torch'",
                                 code="bad_option")
        if not str(path).lower().endswith(".onnx"):
            return _export_and_open(path, device, threads)
        from agegender.inference.onnx_runtime import OnnxBackend

        return OnnxBackend(path, device, threads)
    if kind == "torch":
        if str(path).lower().endswith(".onnx"):
            raise AgeGenderError(f"{path} is an ONNX file: load it with backend='onnx'", code="bad_model")
        from agegender.inference.backends import TorchBackend

        return TorchBackend(path, device, threads, precision=precision)
    raise AgeGenderError(f"unknown backend {kind!r}; choose 'torch' or 'onnx'", code="bad_option")


def _export_and_open(path: str | Path, device: str, threads: int | None) -> Backend:
    import tempfile

    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.onnx_runtime import OnnxBackend

    with tempfile.TemporaryDirectory(prefix="agegender-onnx-") as tmp:
        out = Path(tmp) / (Path(path).stem + ".onnx")
        export_onnx(path, out, verify=False)
        backend = OnnxBackend(out, device, threads)  # ONNX Runtime holds the model in memory
    backend.source = str(path)
    return backend
