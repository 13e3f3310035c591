"""How often a ready face crop gets a person with default settings, and how often a face-free image gets one.

Ready crops: every ``--step``-th UTKFace chip (200×200, tight and aligned) predicted with ``agegender.load(MODEL)``
as installed (no detector flag); each person says whether a detector found the face (``detected``) or the image was
recognised as a face crop itself (``whole_image``). Face-free: ``--noface`` generated 200×200 images (uniform noise
and flat colours).

    python benchmarks/ready_crops.py [--model default] [--detector NAME] [--n 1000] [--step 18]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--detector", default=None, help="a face detector instead of the model's own")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--step", type=int, default=18)
    ap.add_argument("--noface", type=int, default=100)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    args = ap.parse_args()
    import agegender

    print(f"machine: {machine()}")
    files = sorted(Path(args.data).glob("*.jpg"))[:: args.step][: args.n]
    p = agegender.load(args.model, detector=args.detector)
    t = time.perf_counter()
    results = p.predict_batch(files)
    seconds = time.perf_counter() - t
    kinds = [r.people[0].crop for r in results if r.people]
    from agegender.data.images import load_image

    direct = sum(bool(p.cropper.detect(load_image(f))) for f in files)  # the detector alone, no bordered check
    rng = np.random.default_rng(0)
    noface = [(rng.random((200, 200, 3)) * 255).astype(np.uint8) if i % 2 else
              np.full((200, 200, 3), rng.integers(0, 256, 3), np.uint8) for i in range(args.noface)]
    false = sum(bool(r.people) for r in p.predict_batch(noface))
    print(f"model {args.model}, detector {p.detector_name}")
    print("| images | with a person | crop detected | crop whole_image | ms per image |")
    print("|---|---|---|---|---|")
    print(f"| {len(files)} UTKFace chips | {100 * len(kinds) / len(files):.1f} % | {kinds.count('detected')} | "
          f"{kinds.count('whole_image')} | {1000 * seconds / len(files):.1f} |")
    print(f"| {len(noface)} face-free images | {false} | | | |")
    print(f"\nthe detector alone finds a face in {100 * direct / len(files):.1f} % of the chips")


if __name__ == "__main__":
    main()
