"""Face + body fusion in person mode, measured on real pedestrian images where the face is visible.

Every image of a split of ``../shared/data/peta`` (the body recipe's identity-disjoint split; by default the
validation part, which no body model trains on) is one person (the body model's detector ``none``: PETA images are
ready pedestrian crops). The person predictor looks for the face in the head region; on the people whose face
it reads, this prints the gender accuracy of the body alone, the face alone and the fusion, per PETA subset and
overall, plus how often a face is read. Each model is the bundled one unless named.

    python benchmarks/person_fusion.py                                   # default-body + default, val part
    python benchmarks/person_fusion.py --body B.safetensors --split val --limit 600

With ``--photos DIR`` the people are in whole photos instead: ``--data`` is a folder of face crops cached by
``agegender crops`` (the ``--config`` face recipe's source, whose split is used) and each crop's original photo is read
from ``DIR`` under the path its ``labels.csv`` gives as ``source_file``, e.g. the CelebA and All-Age-Faces portraits (a face and some of the body).
The body model then finds the person with its own detector (the largest box is taken), the face model the face (the
largest), and person mode fuses the two as it does in use; its portrait guard answers with the face alone when the
face is taller than ``BODY_MAX_FACE_SHARE`` of the person's box.

    python benchmarks/person_fusion.py --config configs/default/face_from_dlib.yaml --dataset csv \
        --data ../faces-extra/crops/celeba --photos ../faces-extra/celeba --split test --limit 600
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model

import agegender  # noqa: F401
from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.evaluation.evaluate import split_samples
from agegender.inference.person import PersonPredictor, fuse_gender
from agegender.inference.predictor import load
from agegender.training.config import load_config

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--body", default="default-body")
    ap.add_argument("--face", default="default")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "peta"))
    ap.add_argument("--dataset", default="peta", help="the reader of --data (peta; csv for cached face crops)")
    ap.add_argument("--photos", help="read each sample's original photo from this folder (see above)")
    ap.add_argument("--config", default=str(REPO / "configs" / "default" / "body.yaml"),
                    help="the recipe whose split is used")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0, help="score at most this many images (0: all)")
    ap.add_argument("--weights", default="1,0.5,0.25", help="face weights to compare (body weight 1)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    cfg = load_config(args.config)
    data = str(Path(args.data).resolve())
    samples, _, _, _, _ = split_samples(args.dataset, data, args.split, cfg["data"])
    samples = [s for s in samples if s.gender is not None]
    if args.limit:
        samples = samples[:: max(1, len(samples) // args.limit)][: args.limit]
    person = PersonPredictor(load(args.body, detector=None if args.photos else "none"), load(args.face))
    names = person.face.gender_names
    if args.photos:
        photo_rows(person, samples, data, args)
        return
    rows = []
    t0 = time.perf_counter()
    for s in samples:
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


def photo_rows(person: PersonPredictor, samples: list, data: str, args: argparse.Namespace) -> None:
    """Whole photos of one person each: the body and face views, person mode's answer and fixed-weight fusions."""
    names = person.face.gender_names
    originals = {}  # a crop's path as the reader gives it -> its original photo (labels.csv's source_file)
    with open(Path(data) / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            for crop in (Path(data) / row["file"], Path(data) / "images" / row["file"]):
                originals[str(crop)] = Path(args.photos) / (row.get("source_file") or row["file"])
    rows, missing = [], collections.Counter()
    t0 = time.perf_counter()
    for s in samples:
        photo = originals.get(str(Path(s.path))) or Path(args.photos) / Path(s.path).relative_to(data)
        try:
            rgb = load_image(photo)
        except AgeGenderError:
            missing["unreadable photo"] += 1
            continue
        bodies, faces = person.body.predict(rgb), person.face.predict(rgb)
        if not bodies or not faces:
            missing["no person" if not bodies else "no face"] += 1
            continue
        body = max(bodies, key=lambda p: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        face = max(faces, key=lambda p: p.box[2] - p.box[0])
        mode = person.fuse(face, body)
        rows.append({"truth": int(s.gender), "body": body.gender_probs[names[1]], "face": face.gender_probs[names[1]],
                     "fused": mode.gender_probs[names[1]], "views": "+".join(sorted(mode.views))})
    seconds = time.perf_counter() - t0
    weights = [float(w) for w in args.weights.split(",")]

    def acc(key):
        return 100.0 * np.mean([(r[key] >= 0.5) == (r["truth"] == 1) for r in rows]) if rows else float("nan")

    def fused_acc(w):
        return 100.0 * np.mean([(fuse_gender(r["face"], r["body"], w, 1.0) >= 0.5) == (r["truth"] == 1)
                                for r in rows]) if rows else float("nan")

    print(f"# person_fusion: {args.face} + {args.body} on photos of {args.data} ({args.split}; {cpu_model()}, "
          f"{seconds / max(len(samples), 1) * 1000:.0f} ms per photo)")
    print(f"{len(rows)} of {len(samples)} photos with a person and a face" +
          "".join(f"; {n} {why}" for why, n in sorted(missing.items())))
    print("person mode's views: " + ", ".join(f"{v} {n}" for v, n in collections.Counter(r["views"] for r in rows)
                                               .most_common()))
    print("| photos | body | face | person mode | " + " | ".join(f"fixed w_face {w:g}" for w in weights) + " |")
    print("|" + "---|" * (4 + len(weights)))
    print(f"| {len(rows)} | {acc('body'):.1f} | {acc('face'):.1f} | {acc('fused'):.1f} | "
          + " | ".join(f"{fused_acc(w):.1f}" for w in weights) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
