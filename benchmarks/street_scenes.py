"""Person detectors on street scenes: recall, false persons and milliseconds per 1280×720 scene, and the body
model's gender accuracy on the people found; plus how often a ready PETA crop stays one whole-image person.

Each scene is a synthetic street (sky gradient, blocks of "buildings" with window grids, a noisy road, a few
parked "cars": rectangles, no people) with four pedestrians pasted at realistic sizes: PETA images of the part of
the body model's own identity-disjoint split that it never trained on (``--split held``: its test part, or its
validation part when it was fitted on train + test), heights drawn from 120–400 px, lower in the frame when
taller, overlapping each other little. A detection finds a pasted person when its box overlaps the pasted image
with IoU ≥ ``--iou`` (each person found at most once); other detections are false persons. Gender accuracy is the
model's through the predictor on the scene (the person's crop framed as the predictor frames it) for each person
found, against the PETA label.

Ready crops: ``--crops`` images of that part given to ``agegender.load(MODEL)`` as they are (no detector flag,
then each of ``--crop-detectors``); the share that comes back as exactly one person with ``crop: whole_image``.

    python benchmarks/street_scenes.py [--scenes 60] [--detectors nanodet,nanodet:tiles=auto,hog] [--crops 1425]
        [--framing 0:0,0.05:0.025,0.1:0.05] [--split held|test|val] [--model default-body]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine

WIDTH, HEIGHT = 1280, 720
PEOPLE = 4


def peta_split(data: str, model: str, split: str = "held") -> tuple[list[Any], str]:
    """A part of the PETA split the body ``model`` was trained with (its package's own split settings): ``test``,
    ``val``, or ``held``: the part it never trained on (its test part, or its validation part when it was fitted on
    train + test). Returns the samples and the part's name."""
    import agegender
    from agegender.evaluation.evaluate import split_samples

    cfg = agegender.load(model, detector="none").backend.config["data"]
    if split == "held":
        split = "val" if (cfg.get("split") or {}).get("test_in_train") else "test"
    return split_samples("peta", data, split, cfg)[0], split


def background(rng: np.random.Generator) -> np.ndarray:
    """A street without people: sky gradient, buildings with window grids, road with noise, parked boxes."""
    import cv2

    img = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    top, bottom = rng.uniform(90, 230, 3), rng.uniform(150, 255, 3)
    t = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None, None]
    img[:] = top * (1 - t) + bottom * t  # sky
    horizon = int(rng.uniform(0.45, 0.65) * HEIGHT)
    x = 0
    while x < WIDTH:  # buildings
        w = int(rng.uniform(90, 300))
        h = int(rng.uniform(0.25, 0.9) * horizon)
        colour = rng.uniform(40, 220, 3)
        img[horizon - h : horizon, x : x + w] = colour
        win = rng.uniform(0, 255, 3)
        ww, wh = int(rng.uniform(8, 22)), int(rng.uniform(10, 26))
        for wy in range(horizon - h + 12, horizon - wh - 8, wh + int(rng.uniform(8, 20))):
            for wx in range(x + 8, x + w - ww - 4, ww + int(rng.uniform(6, 16))):
                img[wy : wy + wh, wx : wx + ww] = win * rng.uniform(0.7, 1.1)
        x += w + int(rng.uniform(0, 40))
    road = rng.uniform(60, 140)
    g = np.linspace(0.0, 1.0, HEIGHT - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] = road * (0.8 + 0.4 * g) * rng.uniform(0.85, 1.15, 3)
    for _ in range(int(rng.integers(1, 5))):  # parked "cars", street furniture
        w, h = int(rng.uniform(60, 260)), int(rng.uniform(30, 120))
        x0, y0 = int(rng.uniform(0, WIDTH - w)), int(rng.uniform(horizon - h / 2, HEIGHT - h))
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(20, 235, 3)
    img += rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    return np.clip(img, 0, 255).astype(np.uint8)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_scene(samples: list[Any], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[tuple[int, ...], Any]]]:
    """One scene and its people: ``((x1, y1, x2, y2), sample)`` for each pasted PETA crop."""
    import cv2

    from agegender.data.images import load_image

    scene = background(rng)
    people: list[tuple[tuple[int, ...], Any]] = []
    while len(people) < PEOPLE:
        sample = samples[int(rng.integers(len(samples)))]
        crop = load_image(sample.path)
        h = int(rng.uniform(120, 400))
        w = max(8, round(h * crop.shape[1] / crop.shape[0]))
        for _ in range(50):  # a place overlapping the others little
            # taller people stand lower (nearer the camera); feet between 45 % and 100 % of the height
            feet = (0.45 + 0.55 * (h - 120) / 280) * HEIGHT + rng.uniform(-60, 60)
            y2 = int(np.clip(feet, h, HEIGHT))
            x1 = int(rng.uniform(0, WIDTH - w))
            box = (x1, y2 - h, x1 + w, y2)
            if all(_iou(box, b) < 0.05 for b, _ in people):
                break
        else:
            continue
        interp = cv2.INTER_AREA if h < crop.shape[0] else cv2.INTER_LINEAR
        scene[box[1] : box[3], box[0] : box[2]] = cv2.resize(crop, (w, h), interpolation=interp)
        people.append((box, sample))
    return scene, people


def match(boxes: list[tuple[float, ...]], people: list[tuple[tuple[int, ...], Any]], iou: float) -> dict[int, int]:
    """Greedy matching by IoU: person index → detection index, for pairs with IoU ≥ ``iou``."""
    pairs = sorted(((_iou(tuple(b), p[0]), d, i) for d, b in enumerate(boxes) for i, p in enumerate(people)),
                   reverse=True)
    found: dict[int, int] = {}
    used: set[int] = set()
    for v, d, i in pairs:
        if v >= iou and i not in found and d not in used:
            found[i] = d
            used.add(d)
    return found


def parse_detector(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value;key=value`` (values read as Python literals when they parse)."""
    import ast

    name, _, rest = spec.partition(":")
    opts: dict[str, Any] = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        try:
            opts[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            opts[key] = value
    return name, opts


def scene_table(scenes: list, model: str, detectors: list[str], iou: float) -> None:
    """Recall, false persons, milliseconds and gender accuracy of the people found, per detector."""
    import agegender

    print(f"{'detector':22} {'recall %':>8} {'false/scene':>11} {'detect ms':>9} {'predict ms':>10} "
          f"{'gender % (found)':>16}")
    for spec in detectors:
        name, opts = parse_detector(spec)
        try:
            p = agegender.load(model, detector=name, detector_options=opts)
        except agegender.AgeGenderError as e:
            print(f"{spec:22} unavailable: {e}")
            continue
        p.predict(scenes[0][0])  # warm-up
        hits = false = right = 0
        det_ms, ms = [], []
        for scene, people in scenes:
            t = time.perf_counter()
            p.detector.detect(scene)
            det_ms.append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            found = p.predict(scene)
            ms.append(1e3 * (time.perf_counter() - t))
            got = match([r.box for r in found], people, iou)
            hits += len(got)
            false += len(found) - len(got)
            right += sum(int(found[d].gender == ("male", "female")[people[i][1].gender]) for i, d in got.items())
        n = len(scenes) * PEOPLE
        print(f"{spec:22} {100 * hits / n:8.1f} {false / len(scenes):11.2f} {statistics.median(det_ms):9.0f} "
              f"{statistics.median(ms):10.0f} {100 * right / max(hits, 1):16.1f}", flush=True)


def framing_table(scenes: list, model: str, detector: str, margins: list[tuple[float, float]], iou: float) -> None:
    """Gender accuracy of the people ``detector`` finds, by the margin their boxes are framed with (``frame_person``:
    stretched to the model's input, as PETA's crops were in training; "fitted": grown to the model's aspect
    first), beside the pasted crops themselves (the PETA image, resized)."""
    import agegender

    name, opts = parse_detector(detector)
    base = agegender.load(model, detector=name, detector_options=opts)
    found = []  # (scene index, person index, box)
    for k, (scene, people) in enumerate(scenes):
        dets = base.detector.detect(scene)
        for i, d in match([x.box for x in dets], people, iou).items():
            found.append((k, i, dets[d].box))
    truth = np.array([scenes[k][1][i][1].gender for k, i, _ in found])

    def accuracy(crops: list[np.ndarray]) -> float:
        out = base.predict_arrays(crops)
        return float(np.mean((out["gender_probs"][:, 1] > 0.5).astype(int) == truth))

    from agegender.inference.detectors import crop
    from agegender.inference.detectors.base import frame_person

    print(f"framing of {detector}'s boxes ({len(found)} people found): gender accuracy %")
    pasted = [crop(scenes[k][0], scenes[k][1][i][0], 0.0, square=False) for k, i, _ in found]
    print(f"  {'pasted crops':30} {100 * accuracy(pasted):5.1f}")
    aspect = base.pre.input_hw[0] / base.pre.input_hw[1]

    def fitted(box: tuple[float, ...]) -> tuple[float, ...]:
        """The box grown to the model's aspect in whichever direction it falls short (not stretched)."""
        x1, y1, x2, y2 = box
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        w, h = max(w, h / aspect), max(h, w * aspect)
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    for mx, my in margins:
        for fit in (False, True):
            crops = [crop(scenes[k][0], (fitted if fit else tuple)(frame_person(b, (mx, my), base.pre.input_hw)),
                          0.0, square=False) for k, _, b in found]
            label = f"margin {mx:g} x {my:g}" + (", fitted" if fit else "")
            print(f"  {label:30} {100 * accuracy(crops):5.1f}", flush=True)


def ready_crops(samples: list, model: str, detectors: list[str]) -> None:
    """Share of PETA images that come back as exactly one whole-image person, per detector (no other flag)."""
    import agegender

    for spec in detectors:
        name, opts = parse_detector(spec)
        p = agegender.load(model, detector=name, detector_options=opts) if spec != "default" else agegender.load(model)
        t = time.perf_counter()
        results = p.predict_batch([s.path for s in samples])
        seconds = time.perf_counter() - t
        whole = sum(1 for r in results if len(r.people) == 1 and r.people[0].crop == "whole_image")
        one = sum(1 for r in results if len(r.people) == 1)
        print(f"ready crops, {spec} ({p.detector_name}): {whole}/{len(samples)} = {100 * whole / len(samples):.1f} % one "
              f"whole-image person; {100 * one / len(samples):.1f} % one person; {1e3 * seconds / len(samples):.0f} ms "
              "per image", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "peta"))
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--detectors", default="nanodet,nanodet:tiles=auto,hog",
                    help="comma-separated; options after a colon, e.g. nanodet:tiles=auto;score_threshold=0.25")
    ap.add_argument("--model", default="default-body")
    ap.add_argument("--iou", type=float, default=0.4)
    ap.add_argument("--framing", default="", help="margins to compare for the first detector, e.g. 0:0,0.05:0.025")
    ap.add_argument("--crops", type=int, default=1425, help="PETA images for the ready-crop rate (0: skip)")
    ap.add_argument("--crop-detectors", default="default,hog", help="detectors for the ready-crop rate; "
                    "default: the model's own, as `agegender predict` without a flag")
    ap.add_argument("--split", default="held", help="part of the model's PETA split the people come from: held (the "
                    "part it never trained on: test, or val when it was fitted on train + test), test or val")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import agegender

    print(f"machine: {machine()}")
    samples, part = peta_split(args.data, args.model, args.split)
    detectors = [d for d in args.detectors.split(",") if d]
    if args.scenes:
        rng = np.random.default_rng(args.seed)
        scenes = [make_scene(samples, rng) for _ in range(args.scenes)]
        version = agegender.load(args.model, detector="none").info()["version"]
        print(f"{len(scenes)} scenes {WIDTH}x{HEIGHT}, {PEOPLE} people each from the {part} part of the model's "
              f"PETA split ({len(samples)} images; heights 120-400 px); model {args.model} (version {version}); "
              f"found: IoU >= {args.iou}")
        scene_table(scenes, args.model, detectors, args.iou)
        if args.framing:
            margins = [tuple(float(v) for v in m.split(":")) for m in args.framing.split(",")]
            framing_table(scenes, args.model, detectors[0], margins, args.iou)  # type: ignore[arg-type]
    if args.crops:
        ready_crops(samples[: args.crops], args.model, [d for d in args.crop_detectors.split(",") if d])


if __name__ == "__main__":
    main()
