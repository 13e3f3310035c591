"""Face models on rolled heads: each whole-photo source of a multi-source recipe (the All-Age-Faces and CelebA photos
its face crops were cut from), turned by fixed angles as heads tilt in real photos, and run through the full
pipeline (detector, framing, model) with the faces cut as they lie and turned upright first (the cropper's
``align`` option, from the detector's eye landmarks).

Every training source ships its faces aligned (eyes level), so a model trained on them has seen little roll
beyond its ±10° augmentation; the photos people give it have more. For each roll the photo is turned clockwise
for even-numbered images and anticlockwise for odd ones, on a canvas grown to hold it (edge pixels repeated).
The labelled face is the largest found. Per model, source, roll and alignment: photos, share with a face
found, age MAE, the share of minors estimated 18 or older, gender accuracy and the recall of women and men
(where the source has the label), then the sources pooled.

    python benchmarks/face_roll.py --models default [--config configs/default/face_from_dlib.yaml]
        [--split val|test] [--rolls 0,15,30] [--detector centerface] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine
from face_sources import recipe_sources


def turn(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """``rgb`` turned clockwise on screen by ``degrees`` on a canvas grown to hold all of it (edges repeated)."""
    if not degrees:
        return rgb
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -float(degrees), 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    m[:, 2] += (nw / 2.0 - w / 2.0, nh / 2.0 - h / 2.0)
    return cv2.warpAffine(rgb, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def photo_samples(dataset: str, root: str, split: str, split_config: dict, limit: int | None) -> list[tuple]:
    """(photo path, sample) for a cached-crop source's split: each crop's original photo (``source_file`` of the
    crop folder's ``labels.csv``, under the folder its ``summary.json`` names); [] when the source has no photos."""
    from agegender.evaluation.evaluate import split_samples

    summary, labels = Path(root) / "summary.json", Path(root) / "labels.csv"
    if not summary.exists() or not labels.exists():
        return []
    photos = Path(json.loads(summary.read_text())["root"])
    with labels.open(newline="") as f:
        original = {Path(r["file"]).name: photos / r["source_file"] for r in csv.DictReader(f) if r.get("source_file")}
    out = []
    for s in split_samples(dataset, root, split, split_config)[0]:
        photo = original.get(Path(s.path).name)
        if photo is not None and photo.exists():
            out.append((photo, s))
    if limit and len(out) > limit:  # a fixed draw: the split lists some sources sorted by label
        out = [out[i] for i in sorted(np.random.default_rng(0).choice(len(out), limit, replace=False))]
    return out


def figures(rows: list[tuple]) -> dict[str, float]:
    """rows: (sample, estimated years or None, p_female or None); None estimates are photos with no face found."""
    found = [(s, y, f) for s, y, f in rows if y is not None]
    out: dict[str, float] = {"photos": len(rows), "found": len(found) / max(len(rows), 1)}
    aged = [(s.age, y) for s, y, _ in found if s.age is not None]
    if aged:
        t, e = np.array(aged, dtype=float).T
        out["mae"] = float(np.abs(t - e).mean())
        minors = t < 18
        if minors.any():
            out["minors_adult"] = float((e[minors] >= 18).mean())
    sexed = [(s.gender, f) for s, _, f in found if s.gender is not None]
    if sexed:
        g, f = np.array(sexed, dtype=float).T
        said = (f >= 0.5).astype(int)  # 1: female, as the readers label it
        out["gender"] = float((said == g).mean())
        for name, v in (("women", 1), ("men", 0)):
            if (g == v).any():
                out[name] = float((said[g == v] == v).mean())
    return out


def cell(d: dict, key: str, scale: float = 100, fmt: str = "{:.1f}") -> str:
    return fmt.format(d[key] * scale) if key in d else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default")
    ap.add_argument("--config", default=str(REPO / "configs" / "default" / "face_from_dlib.yaml"))
    ap.add_argument("--split", default="test", choices=("test", "val"))
    ap.add_argument("--rolls", default="0,15,30", help="comma-separated angles in degrees")
    ap.add_argument("--detector", default="centerface")
    ap.add_argument("--limit", type=int, help="at most this many photos per source (a fixed random draw)")
    ap.add_argument("--align", default="off,on",
                    help="comma-separated cropper settings: off, on (the default smallest roll turned), or the "
                         "smallest roll in degrees to turn")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from agegender import load
    from agegender.inference.cropper import Cropper

    rolls = [float(r) for r in args.rolls.split(",") if r.strip()]
    aligns = [a.strip() for a in args.align.split(",") if a.strip()]
    absolute, sources = recipe_sources(args.config)
    per_source = [(s["name"], photo_samples(s["dataset"], s["root"], args.split, absolute, args.limit))
                  for s in sources]
    per_source = [(n, ps) for n, ps in per_source if ps]
    print(f"machine: {machine()}")
    print(f"recipe: {args.config}, {args.split} split, photos of "
          + ", ".join(f"{n} ({len(ps):,})" for n, ps in per_source) + f"; detector {args.detector}")
    print("| model | source | roll ° | align | photos | face found % | age MAE | minors called adult % | gender % | "
          "women % | men % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    dump = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        predictor = load(model, detector=args.detector)
        settings = {a: (False if a == "off" else True if a == "on" else float(a)) for a in aligns}
        croppers = {a: Cropper(args.detector, predictor.pre, {"align": v}) for a, v in settings.items()}
        for roll in rolls:
            rows: dict[str, list] = {a: [] for a in aligns}
            pooled: dict[str, list] = {a: [] for a in aligns}
            for name, pairs in per_source:
                from agegender.data.images import load_image

                def cut(pair, i_roll=roll):
                    i, (photo, sample) = pair
                    rgb = turn(load_image(photo), i_roll if i % 2 == 0 else -i_roll)
                    dets = croppers[aligns[0]].detect(rgb)
                    if not dets:
                        return sample, None
                    big = [max(dets, key=lambda d: d.area)]
                    return sample, {a: c._detected(rgb, big)[2][0] for a, c in croppers.items()}

                with ThreadPoolExecutor(2) as ex:
                    cuts = list(ex.map(cut, enumerate(pairs)))
                for aligned in aligns:
                    have = [(s, c[aligned]) for s, c in cuts if c is not None]
                    est = {}
                    if have:
                        out = predictor.predict_arrays([c for _, c in have])
                        dec = predictor.decoder(out)
                        for k, (s, _) in enumerate(have):
                            est[id(s)] = (float(dec.years[k]), float(dec.female[k]))
                    part = [(s, *est.get(id(s), (None, None))) for s, _ in cuts]
                    pooled[aligned] += part
                    fig = figures(part)
                    dump[f"{model}/{name}/{roll:g}/{aligned}"] = fig
                    rows[aligned].append((name, fig))
            for aligned in aligns:
                if len(per_source) > 1:
                    fig = figures(pooled[aligned])
                    dump[f"{model}/pooled/{roll:g}/{aligned}"] = fig
                    rows[aligned].append(("pooled", fig))
                for name, fig in rows[aligned]:
                    print(f"| {model} | {name} | {roll:g} | {aligned} | {fig['photos']:,} | "
                          f"{cell(fig, 'found')} | {cell(fig, 'mae', 1, '{:.2f}')} | {cell(fig, 'minors_adult')} | "
                          f"{cell(fig, 'gender')} | {cell(fig, 'women')} | {cell(fig, 'men')} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
