"""How close the reduced-precision runtimes stay to the float32 model on real face crops (UTKFace): the
torch backend's bfloat16 trace (``bf16``) and the int8 ONNX export (``int8``). Prints the accuracy of each
against the labels, top-1 agreement with float32 and the largest probability difference. Use a trained model.

    python benchmarks/precision_agreement.py MODEL [--data ../shared/data/utkface] [--images 1000]
    python benchmarks/precision_agreement.py default --split test      # the model's own held-out test part
    python benchmarks/precision_agreement.py default --split test --variants bf16

int8 calibration uses 256 other crops of the same folder (with ``--split test``: of the model's training
part). Random images may include training images, so only agreement is unbiased there; ``--split test``
scores the model's held-out test part, with and without flip test-time augmentation.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="trained checkpoint/package (or a bundled name)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default=None, help="'test': the model's own held-out test part (all of it)")
    ap.add_argument("--variants", default="bf16,int8", help="comma-separated: bf16 (torch), int8 (ONNX)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - {"bf16", "int8"}:
        ap.error("--variants takes bf16 and/or int8")

    from agegender.data.images import load_image
    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.predictor import load

    root = Path(args.data)
    with open(root / "labels.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    order = np.random.default_rng(args.seed).permutation(len(rows))
    if args.split == "test":
        from agegender.bundled import resolve_model_path
        from agegender.models.package import load_bundle
        from agegender.training.datamodule import AgeGenderDataModule, one_source

        bundle = load_bundle(resolve_model_path(args.model))
        dm = AgeGenderDataModule(dict(one_source(bundle.config["data"], "utkface", str(root)), dataset="utkface",
                                      root=str(root), cache=False))
        dm.prepare_samples()
        by_name = {r["file"]: r for r in rows}
        part = {k: [by_name[Path(dm.samples[i].path).name] for i in dm.split[k]] for k in ("train", "test")}
        pick = np.random.default_rng(args.seed).permutation(len(part["train"]))[:256]
        calib = [root / "images" / part["train"][i]["file"] for i in pick]
        test = part["test"]
        what = f"the model's test split ({len(test)} crops)"
    else:
        calib = [root / "images" / rows[i]["file"] for i in order[:256]]
        test = [rows[i] for i in order[256 : 256 + args.images]]
        what = f"{len(test)} random UTKFace crops"
    # name → (model file, load() options); float32 is the reference
    runs: dict[str, tuple[Any, dict[str, Any]]] = {"torch fp32": (args.model, {"precision": "fp32"})}
    if "bf16" in variants:
        runs["torch bf16"] = (args.model, {"precision": "bf16"})
    if "int8" in variants:
        folder = Path(tempfile.mkdtemp(prefix="agegender-int8-"))
        int8 = export_onnx(args.model, folder / "int8.onnx", verify=False, int8_calibration=calib)["onnx"]
        runs["onnx int8"] = (int8, {})
    print(f"model: {args.model}; {what} from {root}"
          + (f"; int8 calibration: {len(calib)} other crops" if "int8" in variants else ""))
    print(f"machine: {machine()}")
    crops = [load_image(root / "images" / r["file"]) for r in test]
    flips = (False, True) if args.split == "test" else (False,)
    out = {
        name + (" +flip" if tta else ""): load(path, detector="none", tta_flip=tta, **opts).predict_arrays(crops)
        for tta in flips
        for name, (path, opts) in runs.items()
    }
    truth = {
        "gender_probs": np.array([int(r["gender"]) for r in test]),
        "age_group_probs": np.array([int(r["age_group"]) for r in test]),
        "ethnicity_probs": np.array([int(r["race"]) for r in test]),
    }
    ages = np.array([float(r["age"]) for r in test])
    ref = out["torch fp32"]
    for name, arr in out.items():
        # labels.csv's age_group is in adience8: scored only for models with 8 groups
        parts = [
            f"{k.removesuffix('_probs')} acc {np.mean(arr[k].argmax(1) == t):.4f}"
            for k, t in truth.items()
            if k in arr and (k != "age_group_probs" or arr[k].shape[1] == 8)
        ]
        if "age" in arr:
            err = np.abs(arr["age"] - ages)
            parts.append(f"age MAE {np.mean(err):.3f}; CS@5 {np.mean(err <= 5):.4f}")
            under = ages < 18
            parts.append(f"under-18 false-adult {np.mean(arr['age'][under] >= 18):.4f}")
        print(f"{name:16} " + "; ".join(parts))
    for name in runs:
        if name == "torch fp32":
            continue
        for k, v in ref.items():
            q = out[name][k]
            agree = f", top-1 agreement {np.mean(q.argmax(1) == v.argmax(1)):.4f}" if k.endswith("_probs") else ""
            print(f"{name}: {k:16} max |diff| {np.abs(q - v).max():.4f}, mean {np.abs(q - v).mean():.5f}{agree}")


if __name__ == "__main__":
    main()
