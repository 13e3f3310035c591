"""How far would averaging several face models get? Scores the mean of their predictions.

Reads the ``predictions.csv`` that ``agegender evaluate --report DIR`` writes for each model (all on the same
images), averages the probability of "female" and the age estimate over every combination of the models, and
prints gender accuracy, the gender-accuracy gap between ethnicities and age MAE for each. It bounds what an
ensemble (or a student distilled from one) of these models could reach::

    agegender evaluate --model default --dataset utkface --data ../shared/data/utkface --split val --report /tmp/ens/default
    agegender evaluate --model other.safetensors --dataset utkface --data ../shared/data/utkface --split val --report /tmp/ens/other
    python tools/ensemble_predictions.py /tmp/ens/default /tmp/ens/other
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd


def scores(frames: list[pd.DataFrame]) -> dict[str, float]:
    base = frames[0]
    female = (base.true_gender == "female").to_numpy()
    p = np.mean([f.p_female.to_numpy() for f in frames], axis=0)
    right = (p > 0.5) == female
    by_eth = pd.Series(right).groupby(base.true_ethnicity.to_numpy()).mean()
    age = np.mean([f.pred_age.to_numpy() for f in frames], axis=0)
    return {"gender": 100 * right.mean(), "gap": 100 * (by_eth.max() - by_eth.min()),
            "mae": float(np.abs(age - base.true_age.to_numpy()).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="report directories (or predictions.csv files)")
    args = ap.parse_args()
    frames = {}
    for r in args.reports:
        f = r / "predictions.csv" if r.is_dir() else r
        frames[r.name if r.is_dir() else r.parent.name] = pd.read_csv(f)
    names = list(frames)
    paths = frames[names[0]].path
    for n in names[1:]:
        if len(frames[n]) != len(paths) or not (frames[n].path.to_numpy() == paths.to_numpy()).all():
            raise SystemExit(f"{n}: not the same images in the same order as {names[0]}; evaluate every model on one split")
    print("| models | gender % | gender gap between ethnicities (points) | age MAE |")
    print("|---|---|---|---|")
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            s = scores([frames[n] for n in combo])
            print(f"| {' + '.join(combo)} | {s['gender']:.2f} | {s['gap']:.1f} | {s['mae']:.3f} |")


if __name__ == "__main__":
    main()
