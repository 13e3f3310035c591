"""Gender/age/ethnicity on looser, FairFace-style images made from the held-out UTKFace test part.

FairFace images are 448×448 with the face about 40 % of the side, found by a detector. No FairFace copy is
on this machine, so this builds a stand-in from the model's own UTKFace **test** split (never seen in
training): each 200×200 UTKFace crop is scaled so its face (≈ 80 % of the crop) covers ``--face-fraction``
of a 448×448 canvas, placed off-centre at random, and the rest of the canvas is filled by stretching the
crop's border pixels outwards and blurring them (no second face, no hard edge). The images are written in FairFace's own
layout (``fairface_label_val.csv`` + ``val/*.jpg``) to a temporary folder, and scored with the product's
path: ``agegender evaluate --dataset fairface`` (the model's face detector finds the face, the predictor frames
and crops it). Prints the evaluate report's figures and how many images had no face found.

    python benchmarks/loose_crops.py [--model default] [--limit 0] [--face-fraction 0.4] [--keep DIR]

A stand-in, not FairFace: same people and photo style as UTKFace; it measures what looser framing and a
detector in the loop cost, not FairFace's different population.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine

FAIRFACE_SIZE = 448
#: how much of a UTKFace crop's side the face (brow to chin, ear to ear) spans, by eye on the aligned crops
UTK_FACE_FRACTION = 0.8
#: UTKFace ethnicity → a FairFace race of the same folded ethnicity (the reader folds 7 races onto 5)
RACE = {"white": "White", "black": "Black", "asian": "East Asian", "indian": "Indian", "other": "Latino_Hispanic"}


def fairface_age(age: float) -> str:
    for lo, hi in ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69)):
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "more than 70"


def loosen(rgb: np.ndarray, face_fraction: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    side = round(FAIRFACE_SIZE * face_fraction / UTK_FACE_FRACTION)
    crop = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = FAIRFACE_SIZE - side
    left = int(rng.integers(pad // 4, pad - pad // 4 + 1))
    top = int(rng.integers(pad // 4, pad - pad // 4 + 1))
    canvas = cv2.copyMakeBorder(crop, top, pad - top, left, pad - left, cv2.BORDER_REPLICATE)  # streaks, no mirrored second face
    blurred = cv2.GaussianBlur(canvas, (0, 0), 12)
    mask = np.zeros(canvas.shape[:2], np.float32)
    mask[top : top + side, left : left + side] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 4)[..., None]
    return (canvas * mask + blurred * (1 - mask)).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface"))
    ap.add_argument("--face-fraction", type=float, default=0.4)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    ap.add_argument("--detector", default=None, help="override the dataset's default detector")
    ap.add_argument("--keep", default=None, help="write the images here instead of a temporary folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from PIL import Image

    from agegender.bundled import resolve_model_path
    from agegender.data.images import load_image
    from agegender.evaluation.evaluate import evaluate, split_samples
    from agegender.labels import ETHNICITIES, GENDERS
    from agegender.models.package import load_bundle

    bundle = load_bundle(resolve_model_path(args.model))
    # the UTKFace test split of the model's own training (its UTKFace source, when it was trained on several)
    test = split_samples("utkface", args.data, "test", bundle.config["data"])[0]
    if args.limit:
        test = test[: args.limit]
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="agegender-loose-"))
    (folder / "val").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    with open(folder / "fairface_label_val.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "age", "gender", "race", "service_test"])
        for i, s in enumerate(test):
            img = loosen(load_image(s.path), args.face_fraction, rng)
            Image.fromarray(img).save(folder / "val" / f"{i}.jpg", quality=92)
            w.writerow([f"val/{i}.jpg", fairface_age(float(s.age)), GENDERS[s.gender].capitalize(),
                        RACE[ETHNICITIES[s.ethnicity]], "True"])
    print(f"model: {bundle.name} ({bundle.source})")
    print(f"machine: {machine()}")
    print(f"{len(test)} UTKFace test-split faces on {FAIRFACE_SIZE}x{FAIRFACE_SIZE} canvases, face ~"
          f"{100 * args.face_fraction:.0f} % of the side, in {folder}")
    rep = evaluate(args.model, "fairface", folder, detector=args.detector)
    keys = ["n_images", "detector", "no_face", "gender_accuracy", "ethnicity_accuracy", "age_group_accuracy",
            "age_group_one_off", "seconds"]
    print(json.dumps({k: rep.get(k) for k in keys}, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
