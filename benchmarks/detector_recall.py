"""Face-detector settings: recall, false positives and CPU milliseconds on 640×480 scenes.

Each scene is a 640×480 photo-like background (a UTKFace image blown up and blurred beyond recognition)
with one real UTKFace crop pasted at a random place and size (the crop's side is drawn from
``--sizes``; the face fills roughly 60 % of it). A detection *finds* the face when the square crop the
predictor cuts for it (its box with the detector's framing, ``_common.crop_square``) is centred inside the
pasted crop with a side of 25–120 % of the crop's; any other detection is a false positive. Speed
is CPU milliseconds of ``detector.detect`` (``time.process_time``, this process's threads), which stays
meaningful on a shared machine; wall-clock milliseconds are printed too.

    python benchmarks/detector_recall.py [--scenes 300] [--settings default,fast,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, crop_square, detector_settings, machine

#: settings measured: name → (detector, options)
SETTINGS: dict[str, tuple[str, dict]] = {
    "haar": ("haar", {}),  # the defaults: max_side 640, scale_factor 1.1, min_face_size 40
    "haar-min30": ("haar", {"min_face_size": 30}),  # the default before 2026-11-23
    "haar-640-1.15": ("haar", {"scale_factor": 1.15}),
    "haar-640-1.2": ("haar", {"scale_factor": 1.2}),
    "haar-480-1.1": ("haar", {"max_side": 480}),
    "haar-480-1.15": ("haar", {"max_side": 480, "scale_factor": 1.15}),
    "haar-fast": ("haar", {"max_side": 320, "scale_factor": 1.2}),  # photo_latency.py's fast setting
    "haar-320-1.1": ("haar", {"max_side": 320}),
    "haar-alt2": ("haar", {"cascade": "alt2"}),
    "haar-alt2-480-1.15": ("haar", {"cascade": "alt2", "max_side": 480, "scale_factor": 1.15}),
    "dlib": ("dlib", {}),
    "blazeface": ("blazeface", {}),  # bundled CNN; onnxruntime when installed; tiles on images > 480 px
    "blazeface-off": ("blazeface", {"tiles": "off"}),  # the whole image at 192x192 only (before tiling)
    "blazeface-opencv": ("blazeface", {"runtime": "opencv"}),  # the same network through OpenCV DNN
    "yunet": ("yunet", {}),  # YuNet (its file from $AGEGENDER_YUNET_MODEL), the whole image (longer side up to 1280 px)
}


def make_scenes(folder: Path, n: int, sizes: list[int], seed: int) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    import cv2

    from agegender.data.images import load_image

    files = sorted(folder.iterdir())
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        bg = load_image(files[int(rng.integers(len(files)))])
        bg = cv2.GaussianBlur(cv2.resize(bg, (640, 480)), (0, 0), 25)
        face = load_image(files[int(rng.integers(len(files)))])
        s = int(sizes[i % len(sizes)])
        face = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        x, y = int(rng.integers(0, 640 - s + 1)), int(rng.integers(0, 480 - s + 1))
        scene = bg.copy()
        scene[y : y + s, x : x + s] = face
        scenes.append((scene, (x, y, s)))
    return scenes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--sizes", default="64,96,128,192", help="sides of the pasted face crops (px)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"among {', '.join(SETTINGS)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    scenes = make_scenes(Path(args.data), args.scenes, sizes, args.seed)
    print(f"machine: {machine()}")
    print(f"{len(scenes)} scenes 640x480, pasted crop sides {sizes} px (equal shares)")
    head = " ".join(f"{'@' + str(s):>6}" for s in sizes)
    print(f"{'setting':20} {'recall':>6} {head} {'FP/scene':>8} {'CPU ms':>7} {'wall ms':>7}")
    for name, det in detector_settings(args.settings, SETTINGS, scenes[0][0], 20):
        found = {s: [] for s in sizes}
        fps, cpu, wall = 0, [], []
        for img, (x, y, s) in scenes:
            c, t = time.process_time(), time.perf_counter()
            dets = det.detect(img)
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - t)
            hit = False
            for d in dets:
                cx, cy, side = crop_square(det.name, d.box)
                if x <= cx <= x + s and y <= cy <= y + s and 0.25 * s <= side <= 1.2 * s and not hit:
                    hit = True
                else:
                    fps += 1
            found[s].append(hit)
        recall = np.mean([h for v in found.values() for h in v])
        per = " ".join(f"{100 * np.mean(found[s]):6.1f}" for s in sizes)
        print(
            f"{name:20} {100 * recall:6.1f} {per} {fps / len(scenes):8.3f} "
            f"{1e3 * statistics.median(cpu):7.1f} {1e3 * statistics.median(wall):7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
