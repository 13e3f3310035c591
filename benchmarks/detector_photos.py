"""The face model end to end on whole photos, with each face detector: how often the face is found, and the
model's gender and age on the face found, per source, on the photos as they are or turned as heads tilt.

The images are the original photos behind the crop caches of a multi-source recipe (``agegender crops`` keeps
each crop's ``source_file``), restricted to the recipe's validation (or test) split of each source, so a model
trained on the recipe never saw them. Each photo is predicted with ``agegender.load(MODEL, detector=D)`` as a user
would (the detector finds the face, the predictor frames and crops it); of several people the one with the largest
box area × detector score is scored, the rule ``agegender crops`` used to pick the labelled face. Columns: photos,
share with no face found, gender accuracy, recall of women and men, age MAE and the share of minors estimated 18
or older (where the source has ages) and the median wall ms per photo (with decoding for the photos as they are; a
turned or shrunk photo is given decoded).

``--rolls`` turns every photo by each angle in turn (even-numbered photos clockwise, odd ones anticlockwise, on a
canvas grown to hold the whole photo, edge pixels repeated): every training source ships its faces with the eyes
level, and the photos people take do not. ``--scales`` shrinks every photo by each factor in turn first (OpenCV's
pixel-area resize), so the faces are small as in group photos. ``--degradations`` passes every photo through each of
``degraded_faces.py``'s fixed degradations in turn (``mono``, ``sepia``, ``soft``, ``oldprint``: as old scanned prints
and poor cameras give them), applied to the whole photo before the detector sees it.

    python benchmarks/detector_photos.py [--model default[,default-fast]] [--detectors blazeface,centerface]
        [--split val] [--sources aaf,celeba] [--limit 600] [--rolls 0,20,30] [--scales 1,0.25]
        [--degradations clean,oldprint]

A detector may carry options after a colon, separated by ``+``: ``centerface:margin=-0.03+shift=0.05`` (detector
options, or the crop framing ``margin`` / ``shift`` / ``align``, e.g. ``centerface:align=off``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine
from degraded_faces import DEGRADATIONS


def originals(crop_root: Path) -> dict[str, Path]:
    """crop image path (resolved) → its original photo, from the cache's labels.csv."""
    photo_root = crop_root.parent.parent / crop_root.name  # ../faces-extra/crops/aaf -> ../faces-extra/aaf
    out = {}
    with open(crop_root / "labels.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[str((crop_root / "images" / row["file"]).resolve())] = photo_root / row["source_file"]
    return out


def turn(rgb: np.ndarray, degrees: float, grow: bool = True) -> np.ndarray:
    """``rgb`` turned clockwise on screen by ``degrees`` about its middle (edge pixels repeated), on a canvas grown
    to hold all of it, or with ``grow=False`` on its own canvas."""
    if not degrees:
        return rgb
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -float(degrees), 1.0)
    nw, nh = w, h
    if grow:
        cos, sin = abs(m[0, 0]), abs(m[0, 1])
        nw, nh = round(float(h * sin + w * cos)), round(float(h * cos + w * sin))
        m[:, 2] += (nw / 2.0 - w / 2.0, nh / 2.0 - h / 2.0)
    return cv2.warpAffine(rgb, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="a model, or several separated by commas")
    ap.add_argument("--detectors", default="blazeface,centerface")
    ap.add_argument("--config", default=str(REPO / "configs" / "default" / "face_wild.yaml"))
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--sources", default="aaf,celeba", help="sources of the recipe read from crop caches")
    ap.add_argument("--limit", type=int, default=600, help="photos per source at most (every k-th, 0: all)")
    ap.add_argument("--rolls", default="0", help="comma-separated angles in degrees to turn the photos by")
    ap.add_argument("--scales", default="1", help="comma-separated factors (at most 1) to shrink the photos by")
    ap.add_argument("--degradations", default="clean", help=f"comma-separated, of {', '.join(DEGRADATIONS)}")
    args = ap.parse_args()
    degradations = [d.strip() for d in args.degradations.split(",") if d.strip()]
    unknown = [d for d in degradations if d not in DEGRADATIONS]
    if unknown:
        sys.exit(f"error: unknown degradation(s) {unknown}; pick from {', '.join(DEGRADATIONS)}")
    rolls = [float(r) for r in args.rolls.split(",") if r.strip()]
    scales = [float(f) for f in args.scales.split(",") if f.strip()]
    if any(not 0 < f <= 1 for f in scales):
        sys.exit("error: --scales takes factors in (0, 1]")

    import os

    import agegender
    from agegender.training.config import load_config
    from agegender.training.datamodule import AgeGenderDataModule

    cwd = os.getcwd()
    os.chdir(REPO)  # the recipe's roots are relative to the repository
    try:
        dm = AgeGenderDataModule(load_config(args.config)["data"])
        dm.prepare_samples()
    finally:
        os.chdir(cwd)
    from agegender.training.datamodule import source_specs

    specs = source_specs(dm.cfg)
    names = [s["name"] for s in specs]
    wanted = [s.strip() for s in args.sources.split(",") if s.strip()]
    split_idx = set(dm.split[args.split].tolist())
    per_source: dict[str, list[tuple[Path, float | None, int | None]]] = {}
    for k, name in enumerate(names):
        if name not in wanted:
            continue
        spec = specs[k]
        root = Path(spec["root"]) if Path(spec["root"]).is_absolute() else (REPO / spec["root"]).resolve()
        if not (root / "labels.csv").is_file():
            print(f"skipped source {name}: {root} has no crop cache")
            continue
        photo_of = originals(root)
        rows = []
        for i in np.flatnonzero(dm.source_index == k):
            if int(i) not in split_idx:
                continue
            s = dm.samples[int(i)]
            photo = photo_of.get(str(Path(s.path).resolve()))
            if photo is not None and photo.is_file():
                rows.append((photo, s.age, s.gender))
        step = max(1, len(rows) // args.limit) if args.limit else 1
        per_source[name] = rows[::step][: args.limit or None]
    print(f"machine: {machine()}")
    print(f"{args.split} split of {', '.join(f'{n} ({len(r)} photos)' for n, r in per_source.items())}")
    print("| model | detector | source | degradation | scale | roll ° | photos | no face % | gender % | women % | men % | age MAE | "
          "minors called adult % | ms/photo |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model in [m.strip() for m in args.model.split(",") if m.strip()]:
        for det in [d.strip() for d in args.detectors.split(",") if d.strip()]:
            name, _, opts = det.partition(":")
            options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in opts.split("+") if o)}
            predictor = agegender.load(model, detector=name, detector_options=options)
            for deg in degradations:
                for scale in scales:
                    for roll in rolls:
                        for source, rows in per_source.items():
                            print(f"| {model} | {det} | {source} | {deg} | {scale:g} | {roll:g} | "
                                  + score(predictor, rows, roll, scale, deg), flush=True)


def shrink(rgb: np.ndarray, factor: float) -> np.ndarray:
    """``rgb`` shrunk by ``factor`` (pixel-area average), at least 8 px a side."""
    if factor >= 1:
        return rgb
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA)


def score(predictor, rows: list, roll: float, scale: float, degradation: str = "clean") -> str:
    """The table cells of one model, detector, degradation, scale and roll on one source's photos."""
    from agegender.data.images import load_image

    missed, right, ages, minors, times = 0, [], [], [], []
    by_sex: dict[int, list[bool]] = {0: [], 1: []}
    for k, (photo, age, gender) in enumerate(rows):
        if roll or scale < 1 or degradation != "clean":
            rgb = DEGRADATIONS[degradation](shrink(load_image(photo), scale))
            image = turn(rgb, roll if k % 2 == 0 else -roll)
        else:
            image = photo
        t = time.perf_counter()
        result = predictor.predict_image(image)
        times.append(1000 * (time.perf_counter() - t))
        people = result.people
        if not people:
            missed += 1
            continue
        best = max(people, key=lambda p: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) * p.detector_score)
        if gender is not None and best.gender in ("male", "female"):
            ok = (best.gender == "male") == (int(gender) == 0)
            right.append(ok)
            by_sex[int(gender)].append(ok)
        if age is not None and best.age is not None and best.age.years is not None:
            ages.append(abs(best.age.years - float(age)))
            if float(age) < 18:
                minors.append(best.age.years >= 18)

    def pct(v: list[bool]) -> str:
        return f"{100 * np.mean(v):.1f}" if v else "-"

    mae = f"{np.mean(ages):.2f}" if ages else "-"
    return (f"{len(rows)} | {100 * missed / max(1, len(rows)):.1f} | {pct(right)} | {pct(by_sex[1])} | "
            f"{pct(by_sex[0])} | {mae} | {pct(minors)} | {statistics.median(times):.0f} |")


if __name__ == "__main__":
    main()
