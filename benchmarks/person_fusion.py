"""Face + body fusion in person mode, measured on real pedestrian images where the face is visible.

Every image of a split of ``../shared/data/peta`` (the body recipe's identity-disjoint split; by default the
validation part, which no body model trains on) is one person (the body model's detector ``none``: PETA images are
ready pedestrian crops). The person predictor looks for the face in the head region; on the people whose face
it reads, this prints the gender accuracy of the body alone, the face alone and the fusion, per PETA subset and
overall, plus how often a face is read. Each model is the bundled one unless named.

    python benchmarks/person_fusion.py                                   # default-body + default, val part
    python benchmarks/person_fusion.py --body B.safetensors --split val --limit 600
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402

import agegender  # noqa: E402,F401
from agegender.data.images import load_image  # noqa: E402
from agegender.evaluation.evaluate import split_samples  # noqa: E402
from agegender.inference.person import PersonPredictor, fuse_gender  # noqa: E402
from agegender.inference.predictor import load  # noqa: E402
from agegender.training.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--body", default="default-body")
    ap.add_argument("--face", default="default")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "peta"))
    ap.add_argument("--config", default=str(REPO / "configs" / "default" / "body.yaml"),
                    help="the recipe whose split is used")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0, help="score at most this many images (0: all)")
    ap.add_argument("--weights", default="1,0.5,0.25", help="face weights to compare (body weight 1)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    cfg = load_config(args.config)
    samples, _, _, _, _ = split_samples("peta", args.data, args.split, cfg["data"])
    if args.limit:
        samples = samples[:: max(1, len(samples) // args.limit)][: args.limit]
    person = PersonPredictor(load(args.body, detector="none"), load(args.face))
    names = person.face.gender_names
    rows = []
    t0 = time.perf_counter()
    for s in samples:
        if s.gender is None:
            continue
        rgb = load_image(s.path)
        people = person.predict(rgb)
        body_view = [p for p in people if p.views and "body" in p.views]
        if not body_view:
            continue
        p = body_view[0]
        face = p.views.get("face")
        rows.append({
            "subset": s.extra.get("subset", "?"),
            "truth": int(s.gender),  # 0 male, 1 female
            "body": p.views["body"].gender_probs[names[1]],
            "face": face.gender_probs[names[1]] if face is not None else None,
            "face_px": (face.box[2] - face.box[0]) if face is not None else None,
            "fused": p.gender_probs[names[1]],  # person mode's own answer (its face-size ramp and guards)
        })
    seconds = time.perf_counter() - t0
    both = [r for r in rows if r["face"] is not None]
    weights = [float(w) for w in args.weights.split(",")]

    def acc(rs, key):
        return 100.0 * np.mean([(r[key] >= 0.5) == (r["truth"] == 1) for r in rs]) if rs else float("nan")

    def fused_acc(rs, w):
        return 100.0 * np.mean([(fuse_gender(r["face"], r["body"], w, 1.0) >= 0.5) == (r["truth"] == 1)
                                for r in rs]) if rs else float("nan")

    print(f"# person_fusion: {args.face} + {args.body} on PETA {args.split} ({len(rows)} people, "
          f"{cpu_model()}, {seconds / max(len(rows), 1) * 1000:.0f} ms per image)")
    print(f"face read on {len(both)} of {len(rows)} people ({100.0 * len(both) / max(len(rows), 1):.1f} %)")
    header = ("| people | n | body | face | person mode | "
              + " | ".join(f"fixed w_face {w:g}" for w in weights) + " |")
    print(header)
    print("|" + "---|" * (5 + len(weights)))
    by_sub = collections.defaultdict(list)
    for r in both:
        by_sub[r["subset"]].append(r)
    groups = [("all with a face read", both)]
    for lo, hi in ((16, 32), (32, 48), (48, 10_000)):
        groups.append((f"face {lo}-{hi if hi < 10_000 else ''} px", [r for r in both if lo <= r["face_px"] < hi]))
    groups += [(f"subset {k}", v) for k, v in sorted(by_sub.items())]
    out = {}
    for label, rs in groups:
        cells = [acc(rs, "body"), acc(rs, "face"), acc(rs, "fused")] + [fused_acc(rs, w) for w in weights]
        out[label] = {"n": len(rs), "body": cells[0], "face": cells[1], "person_mode": cells[2],
                      **{f"fused_{w:g}": c for w, c in zip(weights, cells[3:])}}
        print(f"| {label} | {len(rs)} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    print(f"| every person | {len(rows)} | {acc(rows, 'body'):.1f} | | {acc(rows, 'fused'):.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": out}, indent=1))


if __name__ == "__main__":
    main()
