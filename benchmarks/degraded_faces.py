"""Face models on degraded photos: each source's validation (or test) split of a multi-source recipe, as stored and
through fixed degradations like those of old scanned prints and poor cameras, predicted as ready crops
(``agegender.load(MODEL, detector="none").predict_batch``).

Degradations (deterministic, applied to the stored crop before the model's resize):

- ``clean``: the image as stored;
- ``mono``: grey levels;
- ``sepia``: a faded sepia print (sepia toning, contrast pulled 30 % towards mid-grey);
- ``soft``: a third of the size and back up (bilinear), then JPEG at quality 30;
- ``oldprint``: ``sepia`` then ``soft``.

For each model, source and degradation: images, age MAE, the MAE and mean signed error of adults aged 26-40,
the share of minors estimated 18 or older, gender accuracy and the recall of women and men (where the source has
the labels), then the sources pooled.

    python benchmarks/degraded_faces.py --models default,runs/x/model.safetensors [--split val|test]
        [--degradations clean,oldprint] [--config configs/default/face_recut.yaml]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FACE_RECIPE, machine
from face_sources import read_crop, recipe_sources

from agegender.data.transforms import SEPIA as _SEPIA  # the training augmentation's toning matrix

SEPIA = _SEPIA.numpy().astype(np.float32)


def mono(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def sepia(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) @ SEPIA.T
    return np.clip(0.7 * x + 0.3 * 128.0, 0, 255).round().astype(np.uint8)


def soft(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(8, w // 3), max(8, h // 3)), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(up[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 30])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


DEGRADATIONS = {"clean": lambda x: x, "mono": mono, "sepia": sepia, "soft": soft,
                "oldprint": lambda x: soft(sepia(x))}


def figures(years: np.ndarray, female: np.ndarray, ages: np.ndarray, genders: np.ndarray) -> dict[str, float]:
    """The metrics of ``agegender.metrics.compute_metrics`` (where the labels allow them) and the error on adults of
    26-40 (mean absolute and signed)."""
    from agegender.metrics import compute_metrics

    preds = {"age": years, "gender_probs": np.stack([1.0 - female, female], axis=1)}
    m = compute_metrics(preds, {"age": ages, "gender": genders}, "adience8")
    out = {"images": float(len(years))}
    for key, name in (("age_mae", "mae"), ("under18_false_adult_rate", "minors_adult"), ("gender_accuracy", "gender"),
                      ("gender_recall_female", "women"), ("gender_recall_male", "men")):
        v = m.get(key)
        if v is not None and np.isfinite(v):
            out[name] = float(v)
    band = np.isfinite(ages) & (ages >= 26) & (ages < 41)
    if band.any():
        err = years[band] - ages[band]
        out["mae_26_40"], out["bias_26_40"] = float(np.abs(err).mean()), float(err.mean())
    return out


COLUMNS = (("images", "images", 1, "{:,.0f}"), ("age MAE", "mae", 1, "{:.2f}"),
           ("MAE 26-40", "mae_26_40", 1, "{:.2f}"), ("error 26-40", "bias_26_40", 1, "{:+.2f}"),
           ("minors called adult %", "minors_adult", 100, "{:.1f}"), ("gender %", "gender", 100, "{:.1f}"),
           ("women %", "women", 100, "{:.1f}"), ("men %", "men", 100, "{:.1f}"))


def row(label: str, source: str, deg: str, f: dict[str, float]) -> str:
    cells = [fmt.format(f[key] * scale) if key in f else "—" for _, key, scale, fmt in COLUMNS]
    return f"| {label} | {source} | {deg} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default", help="comma-separated bundled names or package paths")
    ap.add_argument("--config", default=FACE_RECIPE)
    ap.add_argument("--split", default="val", choices=("test", "val"))
    ap.add_argument("--degradations", default=",".join(DEGRADATIONS))
    args = ap.parse_args()
    degs = [d.strip() for d in args.degradations.split(",") if d.strip()]
    unknown = [d for d in degs if d not in DEGRADATIONS]
    if unknown:
        sys.exit(f"error: unknown degradation(s) {unknown}; pick from {', '.join(DEGRADATIONS)}")

    import agegender
    from agegender.evaluation.evaluate import split_samples

    absolute, sources = recipe_sources(args.config)
    print(f"machine: {machine()}")
    print(f"recipe: {Path(args.config).name}, {args.split} split of each source; ready crops, flip TTA as each "
          "model says")
    data = {}
    for s in sources:
        samples = split_samples(s["dataset"], s["root"], args.split, absolute)[0]
        with ThreadPoolExecutor(2) as ex:
            pairs = [(x, c) for x, c in zip(samples, ex.map(read_crop, samples)) if c is not None]
        ages = np.array([np.nan if x.age is None else x.age for x, _ in pairs], dtype=np.float64)
        genders = np.array([-1 if x.gender is None else x.gender for x, _ in pairs], dtype=np.int64)
        data[s["name"]] = ([c for _, c in pairs], ages, genders)
    print("| model | source | degradation | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        pred = agegender.load(model, detector="none")
        for deg in degs:
            pooled = []
            for name, (crops, ages, genders) in data.items():
                resized = [pred.pre.resize(DEGRADATIONS[deg](c)) for c in crops]
                dec = pred.decoder(pred.infer_crops(resized))
                years = np.asarray(dec.years, dtype=np.float64)
                female = np.asarray(dec.female, dtype=np.float64)
                pooled.append((years, female, ages, genders))
                print(row(model, name, deg, figures(years, female, ages, genders)), flush=True)
            if len(pooled) > 1:
                cat = [np.concatenate([p[i] for p in pooled]) for i in range(4)]
                print(row(model, "pooled", deg, figures(*cat)), flush=True)


if __name__ == "__main__":
    main()
