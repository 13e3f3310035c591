"""Seconds to load each bundled model package (safetensors) beside the same package written in the pickle-based
format 1 that earlier versions used (``torch.load(weights_only=True)`` + the same network build), in one run.

    python benchmarks/model_load.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

import torch

from agegender.bundled import BUNDLED, resolve_model_path
from agegender.models.package import PACKAGE_FORMAT, _assemble, load_bundle


def load_format1(path: Path):
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return _assemble(path, raw, raw["state_dict"], dict(raw.get("meta") or {}))


def median_seconds(fn, path: Path, repeats: int) -> float:
    fn(path)  # warm: imports, file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print("| model | file MB | safetensors (ms) | format 1 pickle (ms) | ratio |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted({n for n, f in BUNDLED.items() if n != "default-face"}):
            path = resolve_model_path(name)
            b = load_bundle(path)
            old = Path(tmp) / f"{name}.pt"
            state = {k: v.half() if v.is_floating_point() else v for k, v in b.model.state_dict().items()}
            torch.save({"format": PACKAGE_FORMAT, "version": 1, "config": b.config, "dims": b.dims,
                        "preprocess": b.preprocess, "labels": b.labels, "meta": b.meta, "state_dict": state}, old)
            new_s = median_seconds(load_bundle, path, args.repeats)
            old_s = median_seconds(load_format1, old, args.repeats)
            print(f"| {name} | {path.stat().st_size / 1e6:.1f} | {1000 * new_s:.0f} | {1000 * old_s:.0f} | "
                  f"{new_s / old_s:.2f} |")


if __name__ == "__main__":
    main()
