"""What a user of ``agegender.load("default")`` pays, measured in one run so the rows compare:

- cold start: wall seconds of ``agegender predict photo.jpg`` in a fresh process (median of ``--runs``), and of
  ``python -c "import agegender"``;
- end to end on ready face crops: ``load(MODEL, detector="none", ...).predict_batch(crops)`` on decoded UTKFace
  200×200 RGB arrays (resize, normalise, model, decode, typed results), crops per second, best of ``--repeats``.

Each row names the runtime and whether flip TTA is on. Run it on an otherwise idle machine.
``--compare`` instead times the end-to-end row alone for several models or runtimes, taken in turn each round
(``MODEL@BACKEND-PRECISION`` as in ``benchmarks/face_sources.py``), and gives each as a ratio to the first.

    python benchmarks/default_path.py [--model default] [--crops 1024] [--runs 5]
    python benchmarks/default_path.py --compare default@openvino-bf16,default@onnx-fp32,RUN/pkg.onnx@onnx-fp32
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, runtime_spec

PHOTO_CODE = "import matplotlib, os; print(os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg'))"


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def load_crops(folder: str | Path, n: int) -> list:
    """The first ``n`` images of ``folder`` (sorted names) decoded to RGB uint8 arrays."""
    import numpy as np
    from PIL import Image

    return [np.asarray(Image.open(f).convert("RGB")) for f in sorted(Path(folder).glob("*.jpg"))[:n]]


def warm_predictor(model: str, crops: list, **options):
    """``agegender.load(model, detector="none", **options)`` after a warm-up run (the runtime's first run, torch's
    trace after 64 crops)."""
    import agegender

    p = agegender.load(model, detector="none", **options)
    p.predict_batch(crops[:64])
    return p


def timed_rate(p, crops: list) -> float:
    """Crops per second of one ``predict_batch(crops)``."""
    t = time.perf_counter()
    p.predict_batch(crops)
    return len(crops) / (time.perf_counter() - t)


def runtime_name(p) -> str:
    info = p.info()
    return f"{info['backend']} {info['precision']}"


def crops_per_second(model: str, crops: list, repeats: int, **options) -> tuple[float, str]:
    """Best crops/s, and the runtime ``load`` chose (``onnx fp32``, ``openvino bf16``, ``torch fp32``, ...)."""
    p = warm_predictor(model, crops, **options)
    return max(timed_rate(p, crops) for _ in range(repeats)), runtime_name(p)


def compare(specs: list[str], crops: list, repeats: int) -> None:
    """End to end on ``crops`` for each spec, the specs taken in turn in every round (so a slow spell of the machine
    falls on all of them), best of ``repeats`` rounds, and each as a ratio to the first."""
    predictors = [warm_predictor(model, crops, **options) for model, options in map(runtime_spec, specs)]
    best = [0.0] * len(specs)
    for _ in range(repeats):
        for i, p in enumerate(predictors):
            best[i] = max(best[i], timed_rate(p, crops))
    print(f"| end to end, {len(crops)} decoded {crops[0].shape[1]}×{crops[0].shape[0]} crops | runtime | crops/s | "
          f"× the first |")
    print("|---|---|---|---|")
    for spec, p, rate in zip(specs, predictors, best):
        print(f"| `{spec}` | {runtime_name(p)} | {rate:.0f} | {rate / best[0]:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--crops", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per cold-start row")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    ap.add_argument("--compare", help="comma-separated MODEL[@BACKEND-PRECISION]: the end-to-end row alone for each")
    args = ap.parse_args()
    if args.compare:
        print(f"machine: {machine()}")
        compare([s.strip() for s in args.compare.split(",") if s.strip()], load_crops(args.data, args.crops),
                args.repeats)
        return
    photo = subprocess.run([sys.executable, "-c", PHOTO_CODE], capture_output=True, text=True, check=True).stdout.strip()
    exe = str(Path(sys.executable).with_name("agegender"))
    print(f"machine: {machine()}")
    print(f"model: {args.model}; photo: grace_hopper.jpg (512×600, one face)\n")
    print("| cold start (fresh process) | wall s |")
    print("|---|---|")
    print(f"| `python -c 'import agegender'` | {wall([sys.executable, '-c', 'import agegender'], args.runs):.2f} |")
    for extra in ([], ["--precision", "fp32"], ["--backend", "torch"]):
        label = " ".join(["agegender predict photo.jpg", "--model", args.model, *extra])
        print(f"| `{label}` | {wall([exe, 'predict', photo, '--model', args.model, *extra], args.runs):.2f} |")

    crops = load_crops(args.data, args.crops)
    print(f"\n| end to end, {len(crops)} decoded {crops[0].shape[1]}×{crops[0].shape[0]} crops | runtime | crops/s |")
    print("|---|---|---|")
    for label, opts in (("default load (bundled ONNX twin, flip TTA as the model says)", {}),
                        ("the same, flip TTA off", {"tta_flip": False}),
                        ("float32 asked for (`precision=\"fp32\"`)", {"precision": "fp32"}),
                        ("PyTorch (frozen after 64 crops), flip TTA as the model says", {"backend": "torch"}),
                        ("PyTorch, flip TTA off", {"backend": "torch", "tta_flip": False})):
        rate, runtime = crops_per_second(args.model, crops, args.repeats, **opts)
        print(f"| {label} | {runtime} | {rate:.0f} |")


if __name__ == "__main__":
    main()
