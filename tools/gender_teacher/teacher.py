"""Gender teacher on frozen dlib face descriptors (compute_descriptors.py): candidates fitted on the training faces
of all three sources, picked by pooled validation accuracy; training faces get out-of-fold P(female) (5 folds,
CelebA grouped by identity), val/test faces the teacher fitted on every training face.

    OMP_NUM_THREADS=1 python tools/gender_teacher/teacher.py [--compare]   # --compare: only the orig-vs-crop96 check

Writes gender_teacher.csv (path,source,split,p_male,p_female: the data.teacher file of
configs/default/face_wild_distill.yaml) and gender_teacher.json into the descriptors' folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

from descriptors import OUT, build_dm

FEMALE = 1  # agegender.labels.GENDERS = ("male", "female")


def load_store(path):
    z = dict(np.load(path, allow_pickle=False))  # read each array once
    return {str(p): (z["desc"][i].copy(), bool(z["landmarks_failed"][i]), bool(z["box_fallback"][i]),
                     str(z["variant"][i])) for i, p in enumerate(z["paths"])}


def candidates():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    out = {}
    for c in (0.1, 1.0, 10.0):
        out[f"logreg C={c}"] = lambda c=c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    for c in (1.0, 3.0, 10.0):
        out[f"svc-rbf C={c} (sigmoid-calibrated, 3-fold)"] = lambda c=c: make_pipeline(
            StandardScaler(), CalibratedClassifierCV(SVC(C=c, kernel="rbf", gamma="scale"), method="sigmoid", cv=3))
    for a in (1e-3, 1e-2):
        out[f"mlp 256 alpha={a}"] = lambda a=a: make_pipeline(StandardScaler(), MLPClassifier(
            (256,), alpha=a, early_stopping=True, max_iter=300, random_state=0))
    return out


def metrics(p_female, y):
    from sklearn.metrics import log_loss

    y = np.asarray(y)
    pred = (p_female >= 0.5).astype(int)
    out = {"n": int(len(y)), "accuracy": float((pred == y).mean()) if len(y) else None}
    if len(y):
        out["recall_female"] = float((pred[y == FEMALE] == FEMALE).mean()) if (y == FEMALE).any() else None
        out["recall_male"] = float((pred[y != FEMALE] != FEMALE).mean()) if (y != FEMALE).any() else None
        out["log_loss"] = float(log_loss(y, np.clip(p_female, 1e-6, 1 - 1e-6), labels=[0, 1]))
        # expected calibration error, 10 bins of confidence
        conf = np.maximum(p_female, 1 - p_female)
        bins = np.minimum((conf - 0.5) * 20, 9.999).astype(int)
        out["ece"] = float(sum(abs((pred[bins == b] == y[bins == b]).mean() - conf[bins == b].mean())
                               * (bins == b).mean() for b in range(10) if (bins == b).any()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", action="store_true", help="only compare aaf/celeba descriptors: orig vs crop96")
    ap.add_argument("--variant", default="orig", choices=["orig", "crop96"])
    ap.add_argument("--only", action="append", default=[],
                    help="fit only these candidates (labels as printed, e.g. 'logreg C=1.0'); the RBF SVMs cost "
                         "about n^2: minutes each on all 50,000 training faces")
    ap.add_argument("--jobs", type=int, default=1, help="processes fitting the five out-of-fold teachers at once")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    dm, split_of = build_dm()
    names = dm.source_names
    path_index = {s.path: i for i, s in enumerate(dm.samples)}
    y_all = np.array([-1 if s.gender is None else int(s.gender) for s in dm.samples])

    if args.compare:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        utk = load_store(f"{OUT}/descriptors_utkface.npz")
        Xu = np.stack([v[0] for v in utk.values()])
        yu = y_all[[path_index[p] for p in utk]]
        base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(Xu, yu)
        res = {}
        for name in ("aaf", "celeba"):
            crop = load_store(f"{OUT}/descriptors_{name}_crop96.npz")
            orig = load_store(f"{OUT}/descriptors_{name}.npz")
            ps = [p for p in crop if p in orig]
            y = y_all[[path_index[p] for p in ps]]
            for v, st in (("crop96", crop), ("orig", orig)):
                X = np.stack([st[p][0] for p in ps])
                acc_utk = float((base.predict(X) == y).mean())
                cv = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)),
                                       np.vstack([X, Xu]), np.concatenate([y, yu]), cv=5)[: len(ps)]
                res[f"{name}/{v}"] = {"n": len(ps), "acc_utk_trained_logreg": acc_utk,
                                      "acc_cv_with_utk": float((cv == y).mean()),
                                      "landmarks_failed": int(sum(st[p][1] for p in ps)),
                                      "box_fallback": int(sum(st[p][2] for p in ps))}
                print(name, v, res[f"{name}/{v}"])
            d = np.linalg.norm(np.stack([crop[p][0] for p in ps]) - np.stack([orig[p][0] for p in ps]), axis=1)
            res[f"{name}/desc_distance_median"] = float(np.median(d))
        json.dump(res, open(f"{OUT}/variant_comparison.json", "w"), indent=1)
        return

    suffix = "" if args.variant == "orig" else "_crop96"
    rows = []  # (sample index, desc, failed, fallback)
    for name in names:
        st = load_store(f"{OUT}/descriptors_{name}{'' if name == 'utkface' else suffix}.npz")
        for p, (d, failed, fallback, _) in st.items():
            rows.append((path_index[p], d, failed, fallback))
    idx = np.array([r[0] for r in rows])
    X = np.stack([r[1] for r in rows]).astype(np.float64)
    failed = np.array([r[2] for r in rows])
    fallback = np.array([r[3] for r in rows])
    y = y_all[idx]
    src = dm.source_index[idx]
    part = split_of[idx].astype(str)
    tr = (part == "train") & (y >= 0)
    fit_mask = tr & ~failed  # faces whose landmarks look wrong do not teach
    va = (part == "val") & (y >= 0)
    te = (part == "test") & (y >= 0)
    summary = {"variant": args.variant, "faces_with_descriptor": {}, "landmarks_failed": {}, "box_fallback": {},
               "candidates": {}}
    for k, name in enumerate(names):
        summary["faces_with_descriptor"][name] = {pp: int(((src == k) & (part == pp)).sum())
                                                  for pp in ("train", "val", "test")}
        summary["faces_in_split"] = summary.get("faces_in_split", {})
        summary["faces_in_split"][name] = {pp: int((dm.source_index[dm.split[pp]] == k).sum())
                                           for pp in ("train", "val", "test")}
        summary["landmarks_failed"][name] = int(failed[src == k].sum())
        summary["box_fallback"][name] = int(fallback[src == k].sum())
    print(json.dumps(summary, indent=1))

    # 1. candidates, fitted on all training faces, picked by pooled val accuracy
    cands = candidates()
    if args.only:
        unknown = set(args.only) - set(cands)
        if unknown:
            raise SystemExit(f"unknown candidates {sorted(unknown)}; known: {sorted(cands)}")
        cands = {k: v for k, v in cands.items() if k in args.only}
    fitted = {}
    for label, make in cands.items():
        t = time.time()
        m = make().fit(X[fit_mask], y[fit_mask])
        p = m.predict_proba(X[va])[:, list(m.classes_).index(FEMALE)]
        r = metrics(p, y[va])
        r["per_source"] = {names[k]: metrics(p[src[va] == k], y[va][src[va] == k])["accuracy"] for k in range(len(names))}
        r["fit_seconds"] = round(time.time() - t, 1)
        summary["candidates"][label] = r
        fitted[label] = m
        print(f"{label}: val acc {r['accuracy']:.4f} logloss {r['log_loss']:.4f} ece {r['ece']:.4f} "
              f"{r['per_source']} ({r['fit_seconds']} s)", flush=True)
    best = max(summary["candidates"], key=lambda k: summary["candidates"][k]["accuracy"])
    summary["chosen"] = best
    print("chosen:", best)
    final = fitted[best]

    # 2. probabilities: val/test (and anything not in train) from the final teacher, train out-of-fold
    p_female = np.full(len(idx), np.nan)
    held = ~tr
    p_female[held] = final.predict_proba(X[held])[:, list(final.classes_).index(FEMALE)]
    from sklearn.model_selection import StratifiedGroupKFold

    tr_idx = np.flatnonzero(tr)
    groups = np.array([f"{names[src[i]]}:{dm.samples[idx[i]].identity}" if dm.samples[idx[i]].identity
                       else f"img:{idx[i]}" for i in tr_idx])
    strat = src[tr_idx] * 2 + y[tr_idx]  # folds balanced over source x gender
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    from joblib import Parallel, delayed

    def fold(a, b):
        fa = tr_idx[a][~failed[tr_idx[a]]]
        m = cands[best]().fit(X[fa], y[fa])
        return len(fa), b, m.predict_proba(X[tr_idx[b]])[:, list(m.classes_).index(FEMALE)]

    splits = list(folds.split(X[tr_idx], strat, groups))
    for f, (n_fit, b, p) in enumerate(Parallel(n_jobs=args.jobs)(delayed(fold)(a, b) for a, b in splits)):
        p_female[tr_idx[b]] = p
        print(f"fold {f}: fitted on {n_fit}, scored {len(b)}", flush=True)
    assert not np.isnan(p_female).any()

    # 3. report per source and part
    rep = {}
    for pp, mask in (("train_oof", tr), ("val", va), ("test", te)):
        for k, name in enumerate(names):
            mm = mask & (src == k)
            rep[f"{name}/{pp}"] = metrics(p_female[mm], y[mm])
            rep[f"{name}/{pp}"]["landmarks_failed"] = int(failed[mm].sum())
            ok = mm & ~failed
            rep[f"{name}/{pp}"]["accuracy_landmarks_ok"] = metrics(p_female[ok], y[ok])["accuracy"]
        rep[f"pooled/{pp}"] = metrics(p_female[mask], y[mask])
    summary["teacher"] = rep
    for k, v in rep.items():
        print(k, {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()})

    order = np.argsort(idx)
    with open(f"{OUT}/gender_teacher.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source", "split", "p_male", "p_female"])
        for i in order:
            w.writerow([os.path.abspath(dm.samples[idx[i]].path), names[src[i]], part[i], f"{1 - p_female[i]:.6f}",
                        f"{p_female[i]:.6f}"])
    summary["csv_rows"] = int(len(idx))
    summary["note"] = ("p_female of training faces is out-of-fold (5 folds, StratifiedGroupKFold over source x gender, "
                       "CelebA grouped by identity); val/test from the teacher fitted on all training faces with "
                       "descriptors (landmark-failed faces excluded from fitting, still scored).")
    json.dump(summary, open(f"{OUT}/gender_teacher.json", "w"), indent=1)
    print("wrote", f"{OUT}/gender_teacher.csv", len(idx), "rows")


if __name__ == "__main__":
    main()
