"""Facts about the machine that the runtimes choose by, without importing torch: the CPU's model name and flags,
the cache folder for what runtimes derive from a model file, and a best-of-n timer."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any


def _cpuinfo(key: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``), or the platform's processor string elsewhere."""
    name = _cpuinfo("model name")
    if name:
        return name
    import platform

    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where that file does not exist)."""
    return set((_cpuinfo("flags") or "").split())


def cache_dir() -> Path:
    """Where runtimes keep what they derive from a model file (the ``auto`` backend's timings and exports,
    OpenVINO's compiled networks and its speed check): ``$AGEGENDER_CACHE_DIR``, default ``~/.cache/agegender``."""
    return Path(os.environ.get("AGEGENDER_CACHE_DIR") or Path.home() / ".cache" / "agegender")


def read_cache_file(name: str) -> dict[str, Any]:
    """The JSON object kept in ``cache_dir() / name`` (empty when it is missing or unreadable)."""
    try:
        data = json.loads((cache_dir() / name).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_cache_entry(name: str, key: str, entry: Any) -> None:
    """Set ``key`` in the JSON object ``cache_dir() / name`` (written whole, atomically). A cache folder that cannot
    be written is logged and skipped: the choice is just not remembered."""
    data = read_cache_file(name)
    data[key] = entry
    path = cache_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as e:
        logging.getLogger(__name__).info("cannot keep %s in %s (%s)", key, path, e)


def best_seconds(fn: Any, runs: int = 3, min_seconds: float = 0.0) -> float:
    """Fastest wall-clock time of ``fn()`` over at least ``runs`` calls (and ``min_seconds``), after one
    warm-up call (oneDNN primitives, ONNX Runtime's first-run setup)."""
    fn()
    best, start, n = float("inf"), time.perf_counter(), 0
    while n < runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        n += 1
    return best
