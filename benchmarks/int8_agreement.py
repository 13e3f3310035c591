"""How close the int8 ONNX export stays to the float model on real face crops (UTKFace): accuracy of both
against the labels, top-1 agreement and the largest probability difference. Use a trained model.

    python benchmarks/int8_agreement.py MODEL [--data ../shared/data/utkface] [--images 1000]
    python benchmarks/int8_agreement.py default --split test      # the model's own held-out test part

Calibration uses 256 other crops of the same folder (with ``--split test``: of the model's training part).
Random images may include training images, so only agreement is unbiased there; ``--split test`` scores
the model's held-out test part, with and without flip test-time augmentation.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

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
    args = ap.parse_args()

    from agegender.data.images import load_image
    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.predictor import load

    root = Path(args.data)
    with open(root / "labels.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    order = np.random.default_rng(args.seed).permutation(len(rows))
    if args.split == "test":
        from agegender.models.bundled import resolve_model_path
        from agegender.models.package import load_bundle
        from agegender.training.datamodule import AgeGenderDataModule

        bundle = load_bundle(resolve_model_path(args.model))
        dm = AgeGenderDataModule(dict(bundle.config["data"], dataset="utkface", root=str(root), cache=False))
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
    folder = Path(tempfile.mkdtemp(prefix="agegender-int8-"))
    int8 = export_onnx(args.model, folder / "int8.onnx", verify=False, int8_calibration=calib)["onnx"]
    print(f"model: {args.model}; {what} from {root}; calibration: {len(calib)} other crops")
    print(f"machine: {machine()}")
    crops = [load_image(root / "images" / r["file"]) for r in test]
    runs = [("torch fp32", args.model, False), ("onnx int8", int8, False)]
    if args.split == "test":
        runs += [("torch fp32 +flip", args.model, True), ("onnx int8 +flip", int8, True)]
    out = {name: load(path, detector="none", tta_flip=tta).predict_arrays(crops) for name, path, tta in runs}
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
    for k, v in ref.items():
        q = out["onnx int8"][k]
        agree = f", top-1 agreement {np.mean(q.argmax(1) == v.argmax(1)):.4f}" if k.endswith("_probs") else ""
        print(f"{k:16} max |int8 - fp32| {np.abs(q - v).max():.4f}, mean {np.abs(q - v).mean():.5f}{agree}")


if __name__ == "__main__":
    main()
