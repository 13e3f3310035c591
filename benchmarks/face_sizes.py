"""Face-detector recall by face size on 1280×720 scenes, false faces on face-free images, CPU ms per photo.

Each scene is a 1280×720 photo-like background (a UTKFace image blown up and blurred beyond recognition,
as in ``detector_recall.py``) with six real UTKFace 200×200 crops pasted at sizes drawn in turn from
``--sizes`` (the face fills ~60 % of a crop), not overlapping. A detection *finds* a face when the square
crop the predictor cuts for it (its box with the detector's framing, ``_common.crop_square``) is centred
inside the pasted crop with a side of 25–120 % of the crop's; any other detection is a false face.
Face-free images are 1280×720 backgrounds: half blurred photos, half photos cut into 40-px blocks and
shuffled (edges and skin-coloured texture, but no face). Speed is median CPU milliseconds of
``detector.detect`` (``time.process_time``) on the scenes and on the same scenes resized to 640×480, and
its ratio to the first setting measured.

    python benchmarks/face_sizes.py [--scenes 40] [--empty 40] [--settings blazeface-off,blazeface]
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

W, H, FACES = 1280, 720, 6

#: settings measured: name → (detector, options)
SETTINGS: dict[str, tuple[str, dict]] = {
    "blazeface-off": ("blazeface", {"tiles": "off"}),  # the whole image at 192×192 only (before tiling)
    "blazeface": ("blazeface", {}),  # the default: plus tiles when the image is large
    "blazeface-t256": ("blazeface", {"tile_size": 256}),  # smaller tiles: smaller faces, more CPU
    "blazeface-t320": ("blazeface", {"tile_size": 320}),
    "blazeface-opencv": ("blazeface", {"runtime": "opencv"}),
    "centerface": ("centerface", {}),  # CenterFace (the bundled models' default): the image at its own size (<= 1280 px), score 0.2
    "centerface-s0.25": ("centerface", {"score_threshold": 0.25}),
    "centerface-s0.3": ("centerface", {"score_threshold": 0.3}),
    "centerface-s0.5": ("centerface", {"score_threshold": 0.5}),
    "centerface-x1.5": ("centerface", {"upscale": 1.5, "max_side": 1920}),  # enlarged: finds 20-px faces, misses large ones
    "centerface-640": ("centerface", {"max_side": 640}),  # searched shrunk to 640 px: cheap, misses small faces
    "yunet": ("yunet", {}),  # YuNet (its file from $AGEGENDER_YUNET_MODEL): the image at 1.5x (longer side <= 1920) plus a 320-px pass
    "yunet-x1": ("yunet", {"upscale": 1.0}),  # the image at its own size: cheaper, misses more 20-30-px faces
    "yunet-x1.25": ("yunet", {"upscale": 1.25}),
    "yunet-s0.5": ("yunet", {"score_threshold": 0.5}),
    "haar": ("haar", {}),
    "dlib": ("dlib", {}),
}


def background(files: list[Path], rng: np.random.Generator, shuffled: bool = False) -> np.ndarray:
    import cv2

    from agegender.data.images import load_image

    bg = cv2.resize(load_image(files[int(rng.integers(len(files)))]), (W, H))
    if not shuffled:
        return cv2.GaussianBlur(bg, (0, 0), 25)
    b = 40
    blocks = [bg[y : y + b, x : x + b] for y in range(0, H, b) for x in range(0, W, b)]
    order = rng.permutation(len(blocks))
    out = np.empty_like(bg)
    cols = W // b
    for k, j in enumerate(order):
        y, x = divmod(k, cols)
        out[y * b : (y + 1) * b, x * b : (x + 1) * b] = blocks[j]
    return out


def make_scenes(folder: Path, n: int, sizes: list[int], seed: int) -> list[tuple[np.ndarray, list[tuple[int, int, int]]]]:
    import cv2

    from agegender.data.images import load_image

    files = sorted(folder.iterdir())
    rng = np.random.default_rng(seed)
    scenes, k = [], 0
    for _ in range(n):
        scene = background(files, rng)
        placed: list[tuple[int, int, int]] = []
        for _f in range(FACES):
            s = int(sizes[k % len(sizes)])
            k += 1
            for _try in range(200):
                x, y = int(rng.integers(0, W - s + 1)), int(rng.integers(0, H - s + 1))
                if all(x + s + 8 <= px or px + ps + 8 <= x or y + s + 8 <= py or py + ps + 8 <= y
                       for px, py, ps in placed):
                    break
            else:
                continue
            face = cv2.resize(load_image(files[int(rng.integers(len(files)))]), (s, s), interpolation=cv2.INTER_AREA)
            scene[y : y + s, x : x + s] = face
            placed.append((x, y, s))
        scenes.append((scene, placed))
    return scenes


def make_empty(folder: Path, n: int, seed: int) -> list[np.ndarray]:
    files = sorted(folder.iterdir())
    rng = np.random.default_rng(seed + 1)
    return [background(files, rng, shuffled=i % 2 == 1) for i in range(n)]


def match(detector: str, dets, placed) -> tuple[list[bool], int]:
    hit = [False] * len(placed)
    false = 0
    for d in dets:
        cx, cy, side = crop_square(detector, d.box)
        for i, (x, y, s) in enumerate(placed):
            if not hit[i] and x <= cx <= x + s and y <= cy <= y + s and 0.25 * s <= side <= 1.2 * s:
                hit[i] = True
                break
        else:
            false += 1
    return hit, false


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    ap.add_argument("--scenes", type=int, default=40, help="1280x720 scenes with six faces each")
    ap.add_argument("--empty", type=int, default=40, help="face-free 1280x720 images")
    ap.add_argument("--sizes", default="32,40,56,80,112,160,256", help="sides of the pasted face crops (px)")
    ap.add_argument("--settings", default="blazeface-off,blazeface", help=f"among {', '.join(SETTINGS)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import cv2

    sizes = [int(s) for s in args.sizes.split(",")]
    scenes = make_scenes(Path(args.data), args.scenes, sizes, args.seed)
    empty = make_empty(Path(args.data), args.empty, args.seed)
    small = [cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA) for img, _ in scenes]
    print(f"machine: {machine()}")
    print(f"{len(scenes)} scenes {W}x{H} with {FACES} faces each, crop sides {sizes} px (equal shares); "
          f"{len(empty)} face-free {W}x{H} images (half blurred, half block-shuffled)")
    head = " ".join(f"{'@' + str(s):>5}" for s in sizes)
    print(f"{'setting':17} {head} {'>=40':>5} {'FF/scene':>8} {'FF/empty':>8} "
          f"{'ms 720p':>7} {'ms 480p':>7} {'x base':>6}")
    base = None
    for name, det in detector_settings(args.settings, SETTINGS, scenes[0][0], 17):
        found: dict[int, list[bool]] = {s: [] for s in sizes}
        false_scene, cpu720 = 0, []
        for img, placed in scenes:
            c = time.process_time()
            dets = det.detect(img)
            cpu720.append(time.process_time() - c)
            hit, false = match(det.name, dets, placed)
            false_scene += false
            for (_x, _y, s), h in zip(placed, hit):
                found[s].append(h)
        false_empty = sum(len(det.detect(img)) for img in empty)
        cpu480 = []
        for img in small:
            c = time.process_time()
            det.detect(img)
            cpu480.append(time.process_time() - c)
        ms720, ms480 = 1e3 * statistics.median(cpu720), 1e3 * statistics.median(cpu480)
        base = base or ms480
        per = " ".join(f"{100 * np.mean(found[s]):5.1f}" for s in sizes)
        big = np.mean([h for s in sizes if s >= 40 for h in found[s]])
        print(f"{name:17} {per} {100 * big:5.1f} {false_scene / len(scenes):8.3f} "
              f"{false_empty / max(len(empty), 1):8.3f} {ms720:7.1f} {ms480:7.1f} {ms480 / base:6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
