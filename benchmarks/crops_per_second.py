"""Face crops per second of the model (torch, ONNX Runtime and OpenVINO backends) at several batch sizes.

Two figures per setting: ``model`` (a ready normalised batch through the network and decoding) and
``crops`` (uint8 face crops at the model's resize size → preprocessing → model → decoded arrays, what
``Predictor.predict_crops`` pays after detection). Prints a table and the best batch size per backend.

    python benchmarks/crops_per_second.py [--model default] [--fallback configs/default/face.yaml] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_STANDIN, REPO, machine, resolve_model


def rate(fn, n_items: int, min_seconds: float) -> tuple[float, float]:
    """Items per wall-clock second and per CPU-second (all threads of this process) of ``fn`` (``n_items``
    per call), each the best of repeated runs. The CPU figure is what one idle core would give; it is
    robust to other programs sharing the machine, the wall-clock figure is not."""
    fn()  # warm-up (allocations, ORT graph, oneDNN primitives)
    best_wall = best_cpu = 0.0
    start = time.perf_counter()
    while True:
        t, c = time.perf_counter(), time.process_time()
        fn()
        best_wall = max(best_wall, n_items / (time.perf_counter() - t))
        best_cpu = max(best_cpu, n_items / max(time.process_time() - c, 1e-9))
        if time.perf_counter() - start > min_seconds:
            return best_wall, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="bundled name or checkpoint/package path")
    ap.add_argument("--fallback", default=DEFAULT_STANDIN, help="config YAML or trunk of the stand-in model")
    ap.add_argument("--batch-sizes", default="1,8,32,64,128")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per setting")
    ap.add_argument("--backends", default="torch,torch-bf16,torch-eager,onnx,openvino-int8",
                    help="torch (traced + frozen after warm-up), torch-bf16 (the same in bfloat16: "
                    "load(..., precision='bf16')), torch-eager, onnx, openvino-int8 (an int8 export, its trunk "
                    "quantized by NNCF, on OpenVINO), onnx-int8 (the same file on ONNX Runtime), auto (load(..., "
                    "backend='auto', precision='auto'): the runtime this machine times fastest, measured afresh)")
    ap.add_argument(
        "--calibration",
        default=str(REPO.parent / "shared" / "data" / "utkface" / "images"),
        help="face crops for the int8 calibration (openvino-int8, onnx-int8)",
    )
    args = ap.parse_args()

    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.predictor import load

    path, desc = resolve_model(args.model, args.fallback)
    print(f"model: {desc}")
    print(f"machine: {machine()}")
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="agegender-bench-"))
    files = {"torch": path, "torch-bf16": path, "torch-eager": path, "auto": path}
    os.environ["AGEGENDER_CACHE_DIR"] = str(folder / "cache")  # backend auto measures afresh
    if "onnx" in args.backends.split(","):
        files["onnx"] = export_onnx(path, folder / "model.onnx", verify=False)["onnx"]
    if {"onnx-int8", "openvino-int8"} & set(args.backends.split(",")):
        calib = sorted(Path(args.calibration).iterdir())[::50][:256]
        int8 = export_onnx(path, folder / "int8.onnx", verify=False, int8_calibration=calib)["onnx"]
        files["onnx-int8"] = files["openvino-int8"] = int8
    best: dict[str, tuple[float, float, int]] = {}
    print("crops/s: uint8 crops -> preprocessing -> model -> decoded arrays, per wall-clock second and per")
    print("CPU-second (= one idle core); 'model' = a ready normalised batch through the network only;")
    print("'+flip' = with flip test-time augmentation (two forward passes per crop)")
    print(
        f"{'backend':10} {'batch':>5} {'model':>7} {'crops':>7} {'+flip':>7} {'crops/CPU-s':>11} {'+flip':>7}"
    )
    for backend in args.backends.split(","):
        if backend == "auto":
            p = load(files[backend], detector="none", threads=args.threads, backend="auto", precision="auto")
            print(f"# auto: {p.info()['backend_selection']}")
        else:
            precision = "bf16" if backend == "torch-bf16" else "fp32"
            # the runtime named, not the default one (a bundled model's default is its ONNX twin)
            p = load(files[backend], detector="none", threads=args.threads, precision=precision,
                     backend=backend.split("-")[0] if backend != "torch-eager" else "torch")
        tta_default = p.tta_flip
        h, w = p.pre.resize_hw
        rng = np.random.default_rng(0)
        if backend.startswith("torch"):
            # "torch" traces + freezes the network after its first crops (TorchBackend); "torch-eager" never
            p.backend.optimize_after = None if backend == "torch-eager" else 0
            p.backend.run(p.model_input([rng.integers(0, 256, (h, w, 3), dtype=np.uint8)] * 2))
        frozen = (f", traced+frozen={p.backend.optimized} ({p.backend.precision})"
                  if p.backend.name == "torch" else "")
        print(
            f"# {backend}: input {p.pre.input_hw}, threads {args.threads or 'default'}, "
            f"model's tta_flip={tta_default}{frozen}"
        )
        for bs in sizes:
            crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(bs)]
            p.batch_size = bs
            x = p.model_input(crops)
            model_rate, _ = rate(lambda x=x, p=p: p.backend.run(x), bs, args.seconds)
            rates = {}
            for flip in (False, True):
                p.tta_flip = flip
                rates[flip] = rate(lambda c=crops, p=p: p.infer_crops(c), bs, args.seconds)
            p.tta_flip = tta_default
            print(
                f"{backend:10} {bs:5d} {model_rate:7.0f} {rates[False][0]:7.0f} {rates[True][0]:7.0f} "
                f"{rates[False][1]:11.0f} {rates[True][1]:7.0f}",
                flush=True,
            )
            for flip, (r, cpu) in rates.items():
                key = f"{backend}{' +flip' if flip else ''}"
                if r > best.get(key, (0.0, 0.0, 0))[0]:
                    best[key] = (r, cpu, bs)
    for key, (r, cpu, bs) in best.items():
        print(f"best {key}: {r:.0f} crops/s at batch {bs} ({cpu:.0f} per CPU-second)")


if __name__ == "__main__":
    main()
