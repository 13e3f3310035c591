"""Where the time of ``agegender.load(MODEL, detector="none").predict_batch(crops)`` goes, stage by stage, on
decoded 200×200 UTKFace crops: the crop resize to the model's input, the network alone (as the predictor runs it:
its runtime's own batching, e.g. ONNX Runtime's single-threaded calls side by side), the decoding and typed results,
and the whole call. The first and the third are timed on one thread; the network and the whole call use every CPU,
as they do in use. Each figure is the best of ``--rounds`` after a warm-up call.

    python benchmarks/crop_path_stages.py [--model default] [--crops 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine
from default_path import load_crops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--crops", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    args = ap.parse_args()

    import agegender
    from agegender.inference.machine import best_seconds

    crops = load_crops(args.data, args.crops)
    n = len(crops)
    p = agegender.load(args.model, detector="none")
    p.predict_batch(crops[:64])  # warm-up: sessions, thread pools
    resized = [p.pre.resize(c) for c in crops]
    outputs = p.infer_crops(resized)
    boxes, scores = [(0.0, 0.0, 200.0, 200.0)] * n, [1.0] * n
    stages = [
        ("crop resize to the model's input (one thread)", lambda: [p.pre.resize(c) for c in crops]),
        ("network alone, as the predictor batches it", lambda: p.infer_crops(resized)),
        ("decoding and typed results (one thread)", lambda: p.people_from_arrays(outputs, boxes, scores)),
        ("the whole call: predict_batch(crops)", lambda: p.predict_batch(crops)),
    ]
    streams = getattr(p.backend, "streams", 1)
    print(f"machine: {machine()}")
    print(f"model: {args.model} ({p.info()['backend']} backend, {streams} model call(s) at once, "
          f"flip TTA {'on' if p.tta_flip else 'off'}); {n} decoded 200×200 UTKFace crops, best of {args.rounds}")
    print()
    print("| stage | ms per crop | crops/s |")
    print("|---|---|---|")
    for name, fn in stages:
        ms = best_seconds(fn, runs=args.rounds) / n * 1e3
        print(f"| {name} | {ms:.3f} | {1e3 / ms:,.0f} |")


if __name__ == "__main__":
    main()
