"""Frames per second of `agegender video` on a synthetic 640×480 MP4 (grace_hopper moving over a grey
background, made by ``agegender.inference.samples.synthetic_video``), for several ``--every`` values,
with and without writing the annotated output video.

    python benchmarks/video_fps.py [--model default] [--frames 250] [--every 1,3,5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_STANDIN, machine, resolve_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--fallback", default=DEFAULT_STANDIN, help="config YAML or trunk of the stand-in model")
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--every", default="1,3,5")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--detector", default=None)
    ap.add_argument("--backend", default=None)
    args = ap.parse_args()

    from agegender.inference.predictor import load
    from agegender.inference.samples import synthetic_video
    from agegender.inference.video import process_video

    path, desc = resolve_model(args.model, args.fallback)
    print(f"model: {desc}; threads {args.threads or 'default'}")
    print(f"machine: {machine()}")
    folder = Path(tempfile.mkdtemp(prefix="agegender-bench-"))
    clip = synthetic_video(folder / "clip.mp4", frames=args.frames)
    print(f"video: {clip} ({args.frames} frames, 640x480, 25 fps)")
    p = load(path, threads=args.threads, detector=args.detector, backend=args.backend)
    process_video(p, str(clip), every=1, max_frames=70)  # warm-up (the torch backend freezes after 64 crops)
    print("frames per second: wall clock, and per CPU-second of this process (= one idle core)")
    print(f"{'every':>5} {'fps':>7} {'fps/CPU':>7} {'fps writing mp4':>15} {'fps/CPU':>7} {'tracks':>6}")
    for every in (int(e) for e in args.every.split(",")):
        c = time.process_time()
        bare = process_video(p, str(clip), every=every)
        cpu_bare = bare["frames"] / (time.process_time() - c)
        c = time.process_time()
        written = process_video(p, str(clip), every=every, out=folder / f"out_{every}.mp4")
        cpu_written = written["frames"] / (time.process_time() - c)
        print(
            f"{every:5d} {bare['fps']:7.1f} {cpu_bare:7.1f} {written['fps']:15.1f} {cpu_written:7.1f} "
            f"{bare['tracks']:6d}",
            flush=True,
        )


if __name__ == "__main__":
    main()
