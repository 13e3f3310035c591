"""Would a monotone map of the predicted age, fitted on the validation splits, make ages better on the test splits?

A face model's age estimates regress towards the middle (the old read younger, young adults older). This fits two
maps from a model's estimate to the true age on the pooled validation faces of a multi-source recipe that have an
age (UTKFace, All-Age-Faces): isotonic regression (least squares, scikit-learn) and a piecewise-linear median
regression on fixed knots (least absolute deviation, scikit-learn's ``QuantileRegressor``), and scores each on
every source's test split beside the raw estimates: MAE, CS@5 and the share of minors estimated 18 or older.

    python benchmarks/age_recalibration.py [--model default] [--config configs/default/face_recut.yaml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FACE_RECIPE, machine
from face_sources import recipe_sources

#: knots of the piecewise-linear map, in years of the model's estimate
KNOTS = (0, 5, 12, 20, 30, 40, 55, 70)


def ages(model: str, split: str, config: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(estimate, true age) per source with ages, on ``split``, for the faces with a known age."""
    from agegender.evaluation.evaluate import run_evaluation

    absolute, sources = recipe_sources(config)
    out = {}
    for s in sources:
        ev = run_evaluation(model, s["dataset"], s["root"], split=split, split_config=absolute, tta_flip=None)
        y = np.asarray(ev.targets["age"], dtype=float)
        keep = np.isfinite(y) & (y >= 0)
        if keep.any():
            out[s["name"]] = (np.asarray(ev.preds["age"], dtype=float)[keep], y[keep])
    return out


def basis(x: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(x - k, 0, None) for k in KNOTS] + [np.ones_like(x)], axis=1)


def maps(est: np.ndarray, true: np.ndarray) -> dict:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import QuantileRegressor

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=100).fit(est, true)
    med = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(basis(est), true)
    return {"raw": lambda a: a, "isotonic": iso.predict,
            "piecewise-linear median": lambda a: np.clip(med.predict(basis(a)), 0, 100)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--config", default=FACE_RECIPE)
    args = ap.parse_args()
    val, test = ages(args.model, "val", args.config), ages(args.model, "test", args.config)
    if not val:
        sys.exit("error: no source of the recipe has ages on this machine; build the crops its data section names")
    fitted = maps(np.concatenate([v[0] for v in val.values()]), np.concatenate([v[1] for v in val.values()]))
    print(f"machine: {machine()}")
    print(f"model: {args.model}; maps fitted on the validation faces of {', '.join(val)} "
          f"({sum(len(v[0]) for v in val.values()):,}), scored on their test splits")
    print("| map | source | faces | MAE | CS@5 % | minors called adults % |")
    print("|---|---|---|---|---|---|")
    for name, f in fitted.items():
        for src, (est, true) in test.items():
            a, minors = f(est), true < 18
            rate = f"{100 * np.mean(a[minors] >= 18):.1f}" if minors.any() else "—"
            print(f"| {name} | {src} | {len(true):,} | {np.abs(a - true).mean():.2f} | "
                  f"{100 * np.mean(np.abs(a - true) <= 5):.1f} | {rate} |", flush=True)


if __name__ == "__main__":
    main()
