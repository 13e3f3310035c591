"""How each face detector frames a face, relative to UTKFace's aligned 200×200 crops.

Face models trained on UTKFace saw its crops' framing; the predictor turns a detector's box into that
framing with a per-detector (margin, shift) pair (each detector's ``framing=`` registration, read by
``agegender.inference.detectors.base.detector_framing``).
This script measures the pair: each of ``--n`` UTKFace crops is pasted at the centre of a 400×400 grey
canvas, the detector runs, and the box matching the crop gives its side ``B`` (the longer of width and
height) and centre ``(cx, cy)`` relative to the crop's side ``C``. The predictor's crop is the box moved
down by ``shift·B`` and grown by ``margin·B`` per side, so UTKFace's framing needs
``margin = (C/B − 1)/2`` and ``shift = (C/2 − cy)/B`` (medians printed). ``IoU`` is the median overlap of
the predictor's square crop (the registered framing, "in use") with the UTKFace crop.

    python benchmarks/face_framing.py [--detectors haar,blazeface,yunet,dlib] [--n 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    ap.add_argument("--detectors", default="haar,blazeface")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()

    from agegender.data.images import load_image
    from agegender.inference.detectors import build_detector
    from agegender.inference.detectors.base import detector_framing, expand_box, iou_one_to_many

    files = sorted(Path(args.data).iterdir())
    files = files[:: max(1, len(files) // args.n)][: args.n]
    print(f"machine: {machine()}")
    print(f"{len(files)} UTKFace crops, each pasted at the centre of a 400×400 grey canvas")
    print(f"{'detector':10} {'found %':>8} {'B/C':>6} {'cx/C':>6} {'cy/C':>6} {'margin':>7} {'shift':>7} {'IoU':>6}   in use")
    for name in args.detectors.split(","):
        det = build_detector(name)
        ratios, cxs, cys, margins, shifts, ious = [], [], [], [], [], []
        margin, shift = detector_framing(name)
        for f in files:
            face = load_image(f)
            c = face.shape[0]
            canvas = np.full((400, 400, 3), 128, dtype=np.uint8)
            o = (400 - c) // 2
            canvas[o : o + c, o : o + c] = face
            hits = [d for d in det.detect(canvas) if o <= d.center[0] <= o + c and o <= d.center[1] <= o + c]
            if not hits:
                continue
            d = max(hits, key=lambda d: d.area)
            b = max(d.width, d.height)
            cx, cy = d.center[0] - o, d.center[1] - o
            ratios.append(b / c)
            cxs.append(cx / c)
            cys.append(cy / c)
            margins.append((c / b - 1) / 2)
            shifts.append((c / 2 - cy) / b)
            x1, y1, x2, y2 = d.box
            dy = shift * (y2 - y1)
            framed = np.array(expand_box((x1, y1 + dy, x2, y2 + dy), margin))
            ious.append(float(iou_one_to_many(framed, np.array([[o, o, o + c, o + c]], dtype=float))[0]))
        if not ratios:
            print(f"{name:10} {0:8.1f}")
            continue
        med = statistics.median
        print(
            f"{name:10} {100 * len(ratios) / len(files):8.1f} {med(ratios):6.3f} {med(cxs):6.3f} {med(cys):6.3f} "
            f"{med(margins):7.3f} {med(shifts):7.3f} {med(ious):6.3f}   {(margin, shift)}"
        )


if __name__ == "__main__":
    main()
