"""Tracking quality and speed of `agegender video` on synthetic camera pans across real faces.

Each clip (``agegender.inference.samples.panning_video``) is a 640×480, 25-fps, 10-s pan at ``--speeds`` px per
frame across ``--faces`` UTKFace 200×200 images (drawn at random per clip from ``../shared/data/utkface``,
grace_hopper's face tinted six ways when the data is absent) pasted 100–150 px wide on a textured wall in two
rows, each face swaying a little; the middle face is hidden behind a grey panel for ``--occlusion`` seconds (0.3)
halfway through its time in full view. Ground truth: an output box belongs to the face whose pasted square holds its centre.

Per ``--every`` setting (detection + model every N frames, ByteTrack carrying boxes in between) it prints, summed
over the clips: id switches per person per 10 s (changes of track id along a face's boxes), track ids per
person, coverage (share of frames with a face at least 80 % in view in which it has a box), false boxes, and
frames per second of the whole run (decode, detect, model, track, draw and write the annotated H.264 MP4, or
without writing), wall clock and per CPU-second of this process.

    python benchmarks/video_tracking.py [--model default] [--clips 3] [--speeds 4,8,12] [--every 1,2,3,5]
        [--detector-option tiles=off] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_STANDIN, REPO, machine, resolve_model

UTKFACE = REPO.parent / "shared" / "data" / "utkface"


def face_sets(n_clips: int, n_faces: int, seed: int) -> tuple[list[list[np.ndarray]], str]:
    """``n_clips`` lists of ``n_faces`` RGB face images, and where they came from."""
    from agegender.data.images import load_image

    rng = np.random.default_rng(seed)
    labels = UTKFACE / "labels.csv"
    if labels.is_file():
        with open(labels, newline="") as f:
            files = [r["file"] for r in csv.DictReader(f)]
        sets = [[load_image(UTKFACE / "images" / files[i]) for i in rng.choice(len(files), n_faces, replace=False)]
                for _ in range(n_clips)]
        return sets, f"UTKFace ({UTKFACE}), {n_faces} random images per clip, seed {seed}"
    from agegender.inference.samples import grace_hopper_face

    face = grace_hopper_face().astype(np.float32)
    tints = [face * np.array(rng.uniform(0.7, 1.2, 3)) for _ in range(n_faces)]
    faces = [np.clip(t, 0, 255).astype(np.uint8) for t in tints]
    return [faces] * n_clips, f"grace_hopper's face tinted {n_faces} ways ({UTKFACE} not found)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--fallback", default=DEFAULT_STANDIN, help="config YAML or trunk of the stand-in model")
    ap.add_argument("--clips", type=int, default=3, help="clips per pan speed, each with other faces")
    ap.add_argument("--faces", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--speeds", default="4,8,12", help="pan speeds in px per frame (8 crosses 640 px in 3.2 s)")
    ap.add_argument("--every", default="1,2,3,5")
    ap.add_argument("--occlusion", type=float, default=0.3, help="seconds one face of each clip is hidden")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--detector", default=None)
    ap.add_argument("--detector-option", action="append", default=[], help="KEY=VALUE, e.g. tiles=off")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from agegender.cli_inference import parse_detector_options
    from agegender.inference.predictor import load
    from agegender.inference.samples import panning_video
    from agegender.inference.video import process_video

    w, h = (int(v) for v in args.size.split("x"))
    det_opts = parse_detector_options(args.detector_option)
    path, desc = resolve_model(args.model, args.fallback)
    p = load(path, threads=args.threads, detector=args.detector, backend=args.backend,
             **({"detector_options": det_opts} if det_opts else {}))
    print(f"model: {desc}; detector {p.info()['detector']['repr']} {det_opts or ''}; "
          f"threads {args.threads or 'default'}")
    print(f"machine: {machine()}")
    folder = Path(tempfile.mkdtemp(prefix="agegender-bench-"))
    speeds = [float(s) for s in args.speeds.split(",")]
    sets, source = face_sets(args.clips, args.faces, args.seed)
    clips = [(speed, panning_video(folder / f"pan_{speed:g}_{k}.mp4", faces, size=(w, h), seconds=args.seconds,
                                   speed=speed, seed=args.seed + k,
                                   occlusion=(args.faces // 2, 0.5, args.occlusion) if args.occlusion > 0 else None))
             for speed in speeds for k, faces in enumerate(sets)]
    print(f"clips: {len(sets)} per speed, {args.size}, 25 fps, {args.seconds:g} s, pan {args.speeds} px/frame, "
          f"one face hidden for {args.occlusion:g} s, faces from {source}")
    process_video(p, str(clips[0][1].path), every=1, max_frames=70)  # warm-up (the torch backend freezes)
    print(f"{'speed':>5} {'every':>5} {'switches/person/10s':>19} {'ids/person':>10} {'coverage':>8} "
          f"{'false':>5} {'fps':>6} {'fps/CPU':>7} {'fps no-write':>12} {'fps/CPU':>7}")
    for every in (int(e) for e in args.every.split(",")):
        for speed in speeds:
            switches = ids = persons = false = 0
            covered = []
            runs = {"write": [0, 0.0, 0.0], "bare": [0, 0.0, 0.0]}  # frames, wall s, CPU s
            seconds = 0.0
            for sp, clip in clips:
                if sp != speed:
                    continue
                js = folder / "frames.json"
                c = time.process_time()
                s = process_video(p, str(clip.path), every=every, out=folder / "out.mp4", json_path=js)
                runs["write"][0] += s.frames
                runs["write"][1] += s.seconds
                runs["write"][2] += time.process_time() - c
                c = time.process_time()
                bare = process_video(p, str(clip.path), every=every)
                runs["bare"][0] += bare.frames
                runs["bare"][1] += bare.seconds
                runs["bare"][2] += time.process_time() - c
                frames = json.loads(js.read_text())["frames"]
                sc = clip.score([[(q["track_id"], q["box"]) for q in f["people"]] for f in frames])
                switches += sum(sc.switches)
                ids += sum(sc.ids)
                persons += len(sc.switches)
                false += sc.false_boxes
                covered.append(sc.coverage)
                seconds += sc.seconds
            per_10s = switches / max(persons, 1) / (seconds / len(covered) / 10.0)
            fw, fb = runs["write"], runs["bare"]
            print(f"{speed:5g} {every:5d} {per_10s:19.2f} {ids / max(persons, 1):10.2f} "
                  f"{100 * float(np.mean(covered)):7.1f}% {false:5d} {fw[0] / fw[1]:6.1f} {fw[0] / fw[2]:7.1f} "
                  f"{fb[0] / fb[1]:12.1f} {fb[0] / fb[2]:7.1f}", flush=True)
    print(f"annotated video codec: {s.codec}")


if __name__ == "__main__":
    main()
