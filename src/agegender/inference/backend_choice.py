"""``backend="auto"``: time the runtimes this machine offers on the model itself and keep the fastest.

Which runtime is fastest depends on the CPU more than on the model: on an AMD EPYC host the bfloat16
PyTorch trace gave 1.2–1.4x ONNX Runtime's crops per second, on an Intel Xeon host it gave 0.55x and ONNX
Runtime won (docs/performance.md). So rather than guess, :func:`open_fastest_backend` builds each candidate —
the frozen PyTorch network (``precision`` as asked; ``auto`` lets it time float32 against bfloat16 itself)
and ONNX Runtime on an on-the-fly export — times a batch of the predictor's size through each, and returns
the fastest. That costs a few seconds once (export, tracing, timing), so it is meant for batch jobs,
video and servers; the choice is cached per model file, CPU model, thread count and library versions in
``$AGEGENDER_CACHE_DIR`` (default ``~/.cache/agegender``), with the model's ONNX export beside it, so later
runs only load the winner.

The candidates compute the same network (tested to agree within the ONNX export tolerance; bfloat16 only
when ``precision`` allows it), so the choice changes speed, not results beyond rounding.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agegender.data.preprocess import Preprocessing, size_hw
from agegender.errors import AgeGenderError
from agegender.inference.backends import TorchBackend
from agegender.inference.machine import best_seconds, cache_dir, cpu_name, read_cache_file, write_cache_entry
from agegender.inference.onnx_cache import cached_export, cached_export_path
from agegender.inference.onnx_runtime import OnnxBackend
from agegender.inference.runner import Runner
from agegender.inference.runtime import open_backend

log = logging.getLogger(__name__)

CACHE_FILE = "backend_choice.json"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def candidates(path: str | Path, device: str, precision: str) -> list[str]:
    """Runtimes worth timing for this model file: an ``.onnx`` file only runs in ONNX Runtime; a checkpoint
    runs in PyTorch and, unless bfloat16 was asked for (a PyTorch-only option), in ONNX Runtime too."""
    if str(path).lower().endswith(".onnx"):
        return ["onnx"]
    names = ["torch"]
    if precision != "bf16":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            log.info("backend auto: onnxruntime is not installed; PyTorch only")
        else:
            names.append("onnx")
    return names


def synthetic_batch(backend: TorchBackend | OnnxBackend, n: int, seed: int = 0) -> torch.Tensor | np.ndarray:
    """``n`` random crops in the form ``backend.run`` takes (uint8 NHWC at the resize size for an ONNX file
    that normalises in its graph, else a normalised NCHW float batch at the input size)."""
    pp = backend.preprocess or {}
    rng = np.random.default_rng(seed)
    if getattr(backend, "input_format", "float") == "uint8":
        h, w = size_hw(pp.get("resize") or pp["input_size"])
        return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    h, w = size_hw(pp["input_size"])
    channels = len(pp.get("mean") or (0, 0, 0))
    return torch.from_numpy(rng.normal(size=(n, channels, h, w)).astype(np.float32))


def crops_per_second(
    backend: TorchBackend | OnnxBackend, batch_size: int, tta_flip: bool = False, min_seconds: float = 1.0
) -> float:
    """Best crops per second from uint8 crops at the model's resize size to outputs, through the predictor's own
    :class:`~agegender.inference.runner.Runner`, after a warm-up that also makes a PyTorch backend trace and
    freeze its network (it is built with ``optimize_after=0``).

    The step from crops to the runtime's input counts: an ONNX file that normalises inside its graph takes the
    crops as they are, a PyTorch network needs them normalised to a float batch first, which costs a share of the
    time and left out would rank the runtimes wrongly."""
    pre = Preprocessing.from_meta(backend.preprocess, f"model {getattr(backend, 'source', '')}")
    runner = Runner(backend, pre, batch_size, tta_flip)
    h, w = pre.resize_hw
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(batch_size)]
    runner(crops)  # the first call traces and freezes a PyTorch network
    return batch_size / best_seconds(lambda: runner(crops), min_seconds=min_seconds)


def _cache_key(path: str | Path, device: str, threads: int | None, precision: str, batch_size: int,
               tta_flip: bool) -> str:
    p = Path(path).resolve()
    st = p.stat()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return json.dumps(
        {
            "model": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "device": device,
            "threads": threads or torch.get_num_threads(), "precision": precision, "batch_size": batch_size,
            "tta_flip": tta_flip, "cpu": cpu_name(), "torch": torch.__version__, "onnxruntime": ort_version,
        },
        sort_keys=True,
    )


def _open_onnx(path: str | Path, device: str, threads: int | None) -> OnnxBackend:
    """ONNX Runtime on ``path``: an ``.onnx`` file as it is; a checkpoint or package exported once into the
    cache folder (keyed by its path, size and modification time) so that later runs skip the export."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return OnnxBackend(p, device, threads)
    try:
        out = cached_export(p)
    except OSError as e:  # no writable cache: export to a temporary file as backend="onnx" does
        log.info("backend auto: cannot keep the ONNX export in %s (%s)", cached_export_path(p).parent, e)
        return open_backend(p, "onnx", device, threads)  # type: ignore[return-value]
    backend = OnnxBackend(out, device, threads)
    backend.source = str(path)
    return backend


def _read_cache() -> dict[str, Any]:
    return read_cache_file(CACHE_FILE)


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    write_cache_entry(CACHE_FILE, key, entry)


def open_fastest_backend(
    path: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    precision: str = "fp32",
    batch_size: int = 64,
    tta_flip: bool = False,
    use_cache: bool = True,
    min_seconds: float = 1.0,
) -> TorchBackend | OnnxBackend:
    """The fastest runtime for the model file at ``path`` on this machine (see the module docstring).

    The returned backend has a ``selection`` dict: ``choice`` (``torch`` or ``onnx``), ``precision`` (of the
    PyTorch candidate, as resolved by its own timing when ``auto``), ``crops_per_second`` per candidate, and
    ``cached`` (True when read from the cache instead of measured). A candidate that cannot be built (an
    export failure, say) is skipped with a log line; if none can be, the error of the first is raised.
    """
    if threads:
        torch.set_num_threads(int(threads))
    names = candidates(path, device, precision)
    key = _cache_key(path, device, threads, precision, batch_size, tta_flip)
    cached = _read_cache().get(key) if use_cache else None
    if cached and cached.get("choice") in names:
        if cached["choice"] == "onnx":
            backend = _open_onnx(path, device, threads)
        else:
            backend = open_backend(path, "torch", device, threads, precision=cached.get("precision", precision))
        backend.selection = {**cached, "cached": True}  # type: ignore[union-attr]
        return backend
    built: dict[str, TorchBackend | OnnxBackend] = {}
    rates: dict[str, float] = {}
    first_error: AgeGenderError | None = None
    for name in names:
        try:
            if name == "torch":
                backend = TorchBackend(path, device, threads, optimize_after=0, precision=precision)
            else:
                backend = _open_onnx(path, device, threads)
            rates[name] = crops_per_second(backend, batch_size, tta_flip, min_seconds)
        except AgeGenderError as e:
            first_error = first_error or e
            log.warning("backend auto: %s is not usable for %s (%s)", name, path, e)
            continue
        built[name] = backend
    if not built:
        assert first_error is not None
        raise first_error
    choice = max(rates, key=rates.__getitem__)
    backend = built[choice]
    torch_precision = getattr(built.get("torch"), "precision", None)
    entry = {
        "choice": choice,
        "precision": torch_precision if choice == "torch" else "fp32",
        "crops_per_second": {k: round(v, 1) for k, v in rates.items()},
        "torch_precision": torch_precision,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    log.info("backend auto: %s (%s)", choice, ", ".join(f"{k} {v:.0f} crops/s" for k, v in rates.items()))
    if choice == "torch" and isinstance(backend, TorchBackend):
        backend.optimize_after = TorchBackend.OPTIMIZE_AFTER  # already frozen; keep the usual setting
    if use_cache:
        _write_cache(key, entry)
    backend.selection = {**entry, "cached": False}  # type: ignore[union-attr]
    return backend


__all__ = ["cache_path", "candidates", "crops_per_second", "open_fastest_backend"]
