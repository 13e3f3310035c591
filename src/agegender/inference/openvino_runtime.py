"""The OpenVINO backend: the same exported ``.onnx`` file as :class:`~agegender.inference.onnx_runtime.OnnxBackend`,
run by Intel's OpenVINO runtime, which can run it in bfloat16 on CPUs with native bfloat16 matrix units (Intel AMX).

On such a CPU the bundled face network runs about 2.3–2.7× faster than in ONNX Runtime's float32, with outputs
that move by bfloat16's rounding (docs/performance.md gives the speed, docs/results.md the accuracy); in float32
OpenVINO is no faster than ONNX Runtime. So :func:`agegender.load` picks it for the bundled models only where
:func:`bf16_native` says the CPU has AMX, and ``precision="fp32"`` keeps the exact float32 path. Like the ONNX
Runtime path, it loads neither torch nor timm.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.onnx_runtime import ONNX_META_KEY, ExportedModel, cache_dir

PRECISIONS = ("fp32", "bf16", "auto")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def openvino_available() -> bool:
    """OpenVINO is installed and importable."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def bf16_native() -> bool:
    """This CPU has bfloat16 matrix units (Intel AMX, the ``amx_bf16`` flag of ``/proc/cpuinfo``) and OpenVINO
    is installed: the case in which :func:`agegender.load` runs the bundled models in bfloat16. CPUs with only the
    AVX-512 bfloat16 instructions are left on ONNX Runtime's float32: their bfloat16 speed was not measured."""
    return "amx_bf16" in _cpu_flags() and openvino_available()


def _last_line(e: Exception) -> str:
    """OpenVINO's multi-line messages end with the reason; the lines before say where in its source it failed."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


class OpenVinoBackend(ExportedModel):
    """An ONNX file written by :func:`agegender.inference.onnx_export.export_onnx`, run by OpenVINO on the CPU.

    ``precision``: ``fp32`` (OpenVINO's float32; outputs equal ONNX Runtime's to about 1e-4), ``bf16`` (bfloat16
    inference, an error on a CPU without native bfloat16), ``auto`` (``bf16`` where :func:`bf16_native`, else
    ``fp32``). ``threads`` and ``streams`` mean what they mean for
    :class:`~agegender.inference.onnx_runtime.OnnxBackend`: by default one single-threaded stream per CPU, each
    Python worker thread with its own infer request.
    """

    name = "openvino"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 streams: int | None = None, precision: str = "auto") -> None:
        if str(device) != "cpu":
            raise AgeGenderError(f"the OpenVINO backend runs on the CPU, not {device!r}; use backend='onnx' or 'torch'",
                                 code="bad_option")
        if precision not in PRECISIONS:
            raise AgeGenderError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}",
                                 code="bad_option")
        try:
            import openvino as ov
        except ImportError:
            raise AgeGenderError("the OpenVINO backend needs openvino: pip install openvino",
                                 code="missing_dependency") from None
        core = ov.Core()
        # compiled networks are cached (keyed by the model and the settings): a second load compiles in about
        # a third of the time; a cache folder that cannot be written is skipped
        cache = cache_dir() / "openvino"
        try:
            cache.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache)})
        except (OSError, RuntimeError):
            pass
        has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and not has_bf16:
            raise AgeGenderError("this CPU has no native bfloat16; use precision='fp32'", code="bad_option")
        #: ``fp32`` or ``bf16``: what the compiled network runs in
        self.precision = "bf16" if precision == "bf16" or (precision == "auto" and bf16_native()) else "fp32"
        self.streams = self.default_streams(device, threads, streams)
        try:  # the ONNX front end only: read_model would try every framework's reader on a file that is not ONNX
            from openvino.frontend import FrontEndManager

            onnx_fe = FrontEndManager().load_by_framework("onnx")
            model = onnx_fe.convert(onnx_fe.load(str(path)))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises its own untyped errors
            raise AgeGenderError(f"{path} is not a loadable ONNX model ({_last_line(e)})", code="bad_model") from None
        raw = None
        if model.has_rt_info(["framework", ONNX_META_KEY]):
            raw = model.get_rt_info(["framework", ONNX_META_KEY]).astype(str)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            # one stream per concurrent call, each on `threads` (default one) threads
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": self.streams * int(threads or 1),
        }
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # noqa: BLE001
            raise AgeGenderError(f"OpenVINO cannot compile {path} ({_last_line(e)})", code="bad_model") from None
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]
        self._local = threading.local()
        self._read_meta(raw, path)

    def _request(self) -> Any:
        """This thread's infer request (a request runs one call at a time; each worker thread keeps its own)."""
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def _call(self, arr: np.ndarray) -> list[np.ndarray]:
        import openvino as ov

        req = self._request()
        # a tensor of its own (a copy of the chunk) set on the request, rather than InferRequest.infer(data): that
        # resizes the request's input tensor in place when the row count changes, which, with several threads each
        # on its own request, hung two of five runs of benchmarks/peer_faceapi.py
        req.set_input_tensor(ov.Tensor(np.ascontiguousarray(arr)))
        req.infer()
        # copies: the request reuses its output buffers on the next call
        return [np.array(req.get_output_tensor(i).data) for i in range(len(self.outputs))]
