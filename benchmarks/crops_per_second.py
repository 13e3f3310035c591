"""Face crops per second of the model (torch and ONNX Runtime backends) at several batch sizes.

Two figures per setting: ``model`` (a ready normalised batch through the network and decoding) and
``crops`` (uint8 face crops at the model's resize size → preprocessing → model → decoded arrays, what
``Predictor.predict_crops`` pays after detection). Prints a table and the best batch size per backend.

    python benchmarks/crops_per_second.py [--model default] [--fallback efficientnet_lite0] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, resolve_model


def rate(fn, n_items: int, min_seconds: float) -> float:
    """Items per second of ``fn`` (processing ``n_items`` per call), best of repeated timed runs."""
    fn()  # warm-up (allocations, ORT graph, oneDNN primitives)
    best = 0.0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        best = max(best, n_items / (time.perf_counter() - t))
        if time.perf_counter() - start > min_seconds:
            return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="bundled name or checkpoint/package path")
    ap.add_argument(
        "--fallback", default="efficientnet_lite0", help="trunk of the stand-in when --model is missing"
    )
    ap.add_argument("--batch-sizes", default="1,8,32,64,128")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per setting")
    ap.add_argument("--backends", default="torch,onnx")
    args = ap.parse_args()

    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.predictor import load

    path, desc = resolve_model(args.model, args.fallback)
    print(f"model: {desc}")
    print(f"machine: {machine()}")
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    onnx_path = None
    if "onnx" in args.backends:
        onnx_path = Path(tempfile.mkdtemp(prefix="agegender-bench-")) / "model.onnx"
        export_onnx(path, onnx_path, verify=False)
    best: dict[str, tuple[float, int]] = {}
    print(f"{'backend':8} {'batch':>5} {'model crops/s':>14} {'crops/s (with preprocessing)':>29}")
    for backend in args.backends.split(","):
        p = load(
            onnx_path if backend == "onnx" else path, backend=backend, detector="none", threads=args.threads
        )
        h, w = p.resize_hw
        print(f"# {backend}: input {p.input_hw}, threads {args.threads or 'default'}")
        rng = np.random.default_rng(0)
        for bs in sizes:
            crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(bs)]
            p.batch_size = bs
            x = p.to_batch(crops)
            model_rate = rate(lambda x=x, p=p: p.backend.run(x, tta_flip=p.tta_flip), bs, args.seconds)
            full_rate = rate(lambda c=crops, p=p: p.infer_crops(c), bs, args.seconds)
            print(f"{backend:8} {bs:5d} {model_rate:14.0f} {full_rate:29.0f}", flush=True)
            if full_rate > best.get(backend, (0.0, 0))[0]:
                best[backend] = (full_rate, bs)
    for backend, (r, bs) in best.items():
        print(f"best {backend}: {r:.0f} crops/s at batch {bs}")


if __name__ == "__main__":
    main()
