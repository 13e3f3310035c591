"""How much dlib's face alignment is worth to its frozen descriptor: logistic-regression gender on the same faces,
from (a) the descriptors of dlib's 5-point-aligned 150-px chips of the original photos (descriptors_{source}.npz,
made by descriptors.py) and (b) the same network (trunk ``dlib_resnet`` with dlib's projection) on the unaligned
96-px crops the face models train on (the bundled detector's framing), enlarged to 150 px.

1,500 training and 700 validation faces drawn from each source of configs/default/face_wild_robust.yaml (seed 0);
needs the teacher files of descriptors.py and ``pip install 'agegender[faces]'``.

    python tools/gender_teacher/alignment_probe.py
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np

MAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.environ.get("AGEGENDER_TEACHER_DIR", os.path.normpath(os.path.join(MAIN, "..", "faces-extra", "teacher")))
sys.path.insert(0, os.path.join(MAIN, "benchmarks"))
PER_SOURCE = {"train": 1500, "val": 700}


def main() -> None:
    import cv2
    import torch
    from face_sources import read_crop, recipe_sources
    from sklearn.linear_model import LogisticRegression

    from agegender.data.preprocess import resize_rgb
    from agegender.evaluation.evaluate import split_samples
    from agegender.models.trunks import TRUNKS
    from agegender.models.trunks.dlib_resnet import MEAN, STD, descriptor_projection

    torch.set_num_threads(1)
    net = TRUNKS.build("dlib_resnet", pretrained=True).eval()
    proj = descriptor_projection()
    absolute, sources = recipe_sources(os.path.join(MAIN, "configs", "default", "face_wild_robust.yaml"))
    rng = random.Random(0)
    rows: dict[str, list] = {"train": [], "val": []}
    for s in sources:
        with np.load(os.path.join(OUT, f"descriptors_{s['name']}.npz"), allow_pickle=True) as z:
            paths, desc = z["paths"], z["desc"]
        index = {p: i for i, p in enumerate(paths)}
        for split, n in PER_SOURCE.items():
            pool = [x for x in split_samples(s["dataset"], s["root"], split, absolute)[0]
                    if x.gender is not None and x.gender >= 0 and x.path in index]
            for sample in rng.sample(pool, min(n, len(pool))):
                crop = read_crop(sample)
                if crop is not None:
                    big = cv2.resize(resize_rgb(crop, (96, 96)), (150, 150), interpolation=cv2.INTER_LINEAR)
                    rows[split].append((desc[index[sample.path]], big, int(sample.gender), s["name"]))

    def unaligned(part: list) -> np.ndarray:
        out = []
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        for i in range(0, len(part), 64):
            x = torch.from_numpy(np.stack([r[1] for r in part[i:i + 64]]).astype(np.float32) / 255.0)
            with torch.no_grad():
                out.append((net((x.permute(0, 3, 1, 2) - mean) / std) @ proj.t()).numpy())
        return np.concatenate(out)

    tr, va = rows["train"], rows["val"]
    ytr, yva = np.array([r[2] for r in tr]), np.array([r[2] for r in va])
    src = np.array([r[3] for r in va])
    print(f"{len(tr)} training and {len(va)} validation faces")
    print("| descriptor | gender, all | " + " | ".join(sorted(set(src))) + " |")
    print("|---|---|" + "---|" * len(set(src)))
    for name, xtr, xva in (("dlib's aligned chips", np.stack([r[0] for r in tr]), np.stack([r[0] for r in va])),
                           ("unaligned 96-px crops at 150 px", unaligned(tr), unaligned(va))):
        pred = LogisticRegression(C=10.0, max_iter=5000).fit(xtr, ytr).predict(xva)
        per = " | ".join(f"{100 * np.mean(pred[src == s] == yva[src == s]):.1f} %" for s in sorted(set(src)))
        print(f"| {name} | {100 * np.mean(pred == yva):.1f} % | {per} |")


if __name__ == "__main__":
    main()
