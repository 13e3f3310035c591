"""The OpenVINO backend: the same exported ``.onnx`` file as :class:`~agegender.inference.onnx_runtime.OnnxBackend`,
run by Intel's OpenVINO runtime, which can run it in bfloat16 on CPUs with native bfloat16 matrix units (Intel AMX).

On such a CPU the bundled face network runs about 2.3–2.7× faster than in ONNX Runtime's float32, with outputs
that move by bfloat16's rounding (docs/performance.md gives the speed and the accuracy); in float32 OpenVINO is
no faster than ONNX Runtime. OpenVINO also runs int8 files (``agegender export --int8-calibration``, the bundled
``*.int8.onnx`` twins) in int8, about 2.4× ONNX Runtime's float32 on CPUs with AVX-512 VNNI. So
:func:`agegender.load` picks it for the bundled models where :func:`preferred_precision` says so (AMX, or a speed
check on CPUs with AVX2 or later), and ``precision="fp32"`` keeps the exact float32 path. Like the ONNX Runtime
path, it loads neither torch nor timm.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.machine import (
    best_seconds,
    cache_dir,
    cpu_flags,
    cpu_name,
    read_cache_file,
    write_cache_entry,
)
from agegender.inference.onnx_runtime import ONNX_META_KEY, ExportedModel

PRECISIONS = ("fp32", "bf16", "auto")
#: OpenVINO bfloat16 must beat ONNX Runtime's float32 by this factor in the speed check to be chosen
MIN_SPEEDUP = 1.1
CHOICE_FILE = "openvino_choice.json"
log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def openvino_available() -> bool:
    """OpenVINO is installed and importable."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def bf16_native() -> bool:
    """This CPU has bfloat16 matrix units (Intel AMX, the ``amx_bf16`` flag of ``/proc/cpuinfo``) and OpenVINO
    is installed: there bfloat16 on OpenVINO was measured at 1.6–1.9× ONNX Runtime's float32 end to end
    (docs/performance.md), so :func:`prefer_openvino` takes it without a check."""
    return "amx_bf16" in cpu_flags() and openvino_available()


#: instruction sets where an int8 twin may beat ONNX Runtime's float32. Measured on an Intel Xeon with OpenVINO's
#: instruction set capped (network alone, one thread, against ONNX Runtime on that CPU's AVX-512): AVX-512 VNNI 2.4x,
#: AVX-512 1.3x, AVX-VNNI 1.15x, AVX2 0.85x; on a CPU with AVX2 only ONNX Runtime runs AVX2 kernels too, which for
#: OpenVINO's float32 cost 0.6x its AVX-512 speed, so there only the speed check can tell
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx512f", "avx2")


def preferred_precision(onnx_path: str | Path, int8_path: str | Path | None = None) -> str | None:
    """How :func:`agegender.load` should run a bundled model on this CPU: ``"bf16"`` (its ONNX twin at
    ``onnx_path`` on OpenVINO in bfloat16), ``"int8"`` (its int8 twin at ``int8_path`` on OpenVINO), or None
    (the ONNX twin on ONNX Runtime in float32).

    - CPUs with AMX: ``bf16``, without a check (1.6-1.9x ONNX Runtime's float32 end to end, docs/performance.md).
    - CPUs where OpenVINO may win otherwise (the AVX-512 bfloat16 instructions without AMX, as on AMD EPYC from
      Zen 4; or, with an int8 twin, AVX2 or later): a speed check on this machine (about a second, once; the
      verdict is kept in ``$AGEGENDER_CACHE_DIR/openvino_choice.json`` per model file, CPU and library versions)
      times ONNX Runtime's float32 and each candidate, and keeps the fastest if it is at least
      :data:`MIN_SPEEDUP` times ONNX Runtime's speed.
    - Elsewhere (x86-64 CPUs before AVX2, other architectures): None.
    """
    if not openvino_available():
        return None
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "bf16"
    candidates = {}
    if "avx512_bf16" in flags:
        candidates["bf16"] = onnx_path
    if int8_path is not None and any(f in flags for f in INT8_FLAGS):
        candidates["int8"] = int8_path
    if not candidates:
        return None
    key = _choice_key(onnx_path, *candidates.values())
    cached = read_cache_file(CHOICE_FILE).get(key)
    if isinstance(cached, dict) and "choice" in cached:
        return cached["choice"] or None
    ratios = {}
    for precision, path in candidates.items():
        try:
            ratios[precision] = speed_ratio(onnx_path, path, precision)
        except (AgeGenderError, RuntimeError) as e:  # OpenVINO cannot run it here: ONNX Runtime does
            log.info("OpenVINO %s speed check failed for %s (%s)", precision, path, _last_line(e))
    best = max(ratios, key=ratios.__getitem__, default=None)
    choice = best if best is not None and ratios[best] >= MIN_SPEEDUP else None
    write_cache_entry(CHOICE_FILE, key, {"choice": choice, "speed_ratio": {k: round(v, 3) for k, v in ratios.items()}})
    return choice


def speed_ratio(onnx_path: str | Path, candidate: str | Path | None = None, precision: str = "bf16",
                rows: int = 16, min_seconds: float = 0.3) -> float:
    """OpenVINO's speed on ``candidate`` (default: ``onnx_path``) in ``precision`` (``bf16``; ``int8``: an int8
    file, its float parts in float32) over ONNX Runtime float32's on ``onnx_path``, on one single-threaded call of
    ``rows`` random crops (best of several, after a warm-up)."""
    from agegender.data.preprocess import size_hw
    from agegender.inference.onnx_runtime import OnnxBackend

    ort_be = OnnxBackend(onnx_path, threads=1)
    ov_be = OpenVinoBackend(candidate or onnx_path, threads=1, precision="fp32" if precision == "int8" else precision)
    h, w = size_hw(ort_be.preprocess.get("resize") or ort_be.preprocess["input_size"])
    if ort_be.input_format == "uint8":
        x = np.random.default_rng(0).integers(0, 256, (rows, h, w, 3), dtype=np.uint8)
    else:
        x = np.random.default_rng(0).normal(size=(rows, len(ort_be.preprocess.get("mean") or (0, 0, 0)), h, w))
        x = x.astype(np.float32)
    t_ort = best_seconds(lambda: ort_be.run(x), min_seconds=min_seconds)
    t_ov = best_seconds(lambda: ov_be.run(x), min_seconds=min_seconds)
    return t_ort / t_ov


def _choice_key(*paths: str | Path) -> str:
    import onnxruntime
    import openvino

    files = []
    for path in paths:
        p = Path(path).resolve()
        st = p.stat()
        files.append({"model": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return json.dumps({"files": files, "cpu": cpu_name(), "openvino": openvino.__version__,
                       "onnxruntime": onnxruntime.__version__}, sort_keys=True)


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
        problem = (f"the OpenVINO backend runs on the CPU, not {device!r}; use backend='onnx' or 'torch'"
                   if str(device) != "cpu" else None)
        if precision not in PRECISIONS:
            problem = f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        if problem:
            raise AgeGenderError(problem, code="bad_option")
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
        #: ``fp32`` or ``bf16``: what the compiled network runs in (``int8`` for an int8 file)
        self.precision = "bf16" if precision == "bf16" or (precision == "auto" and has_bf16 and bf16_native()) else "fp32"
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
        self._tensor = ov.Tensor
        self._read_meta(raw, path)
        if self.meta.get("quantized") == "int8":  # its convolutions run in int8, the rest as compiled
            self.precision = "int8"

    def _request(self) -> Any:
        """This thread's infer request (a request runs one call at a time; each worker thread keeps its own)."""
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def _call(self, arr: np.ndarray) -> list[np.ndarray]:
        req = self._request()
        # a tensor of its own (a copy of the chunk) set on the request, rather than InferRequest.infer(data): that
        # resizes the request's input tensor in place when the row count changes, which, with several threads each
        # on its own request, hung two of five runs of benchmarks/peer_faceapi.py
        req.set_input_tensor(self._tensor(np.ascontiguousarray(arr)))
        req.infer()
        # copies: the request reuses its output buffers on the next call
        return [np.array(req.get_output_tensor(i).data) for i in range(len(self.outputs))]
