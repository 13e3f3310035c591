"""Face models scored on every source of a multi-source recipe, on the same images: each source's test (or
validation) split as the recipe's ``data.sources`` makes it, so a model trained on one source only and one trained
on all of them are compared on identical held-out faces.

For each model and source: images, age MAE, CS@5, gender accuracy, the recall of women and of men, ethnicity
accuracy and the share of minors estimated 18 or older (each where the source has the label), then the figures
pooled over the sources (each image counted once). Sources whose folder is absent are skipped with a note.

A model ``faceapi:DIR`` is face-api.js's age/gender net (``benchmarks/peers/faceapi.py``; DIR the unpacked
``@vladmandic/face-api`` npm package, or ``faceapi`` alone with ``FACEAPI_DIR``) scored on the same split images,
each given to it as the decoded image (face-api pads to square and resizes to 112 itself): age and gender only.
A model ``MODEL@BACKEND[-PRECISION]`` (e.g. ``default@onnx``, ``default@openvino-bf16``) is one of ours run by
``agegender.load(MODEL, backend=BACKEND, precision=PRECISION)`` on the same images, every head scored: what a
runtime's rounding costs (the plain name runs the package in PyTorch float32, as ``agegender evaluate`` does).

    python benchmarks/face_sources.py --models default,runs/face_wild/model.safetensors,faceapi:package \\
        [--config configs/default/face_recut.yaml] [--split test|val] [--json OUT.json] [--by-age]

``--by-age`` adds a table per true-age band (faces, MAE, gender accuracy, share estimated 18 or older): where the
misses are.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FACE_RECIPE, REPO, machine, runtime_spec

#: (column title, metric key, scale, format)
COLUMNS = (
    ("images", "n_images", 1, "{:,.0f}"),
    ("age MAE", "age_mae", 1, "{:.2f}"),
    ("CS@5 %", "age_cs5", 100, "{:.1f}"),
    ("gender %", "gender_accuracy", 100, "{:.1f}"),
    ("women %", "gender_recall_female", 100, "{:.1f}"),
    ("men %", "gender_recall_male", 100, "{:.1f}"),
    ("ethnicity %", "ethnicity_accuracy", 100, "{:.1f}"),
    ("under-18 called adult %", "under18_false_adult_rate", 100, "{:.1f}"),
)


def cell(report: dict, key: str, scale: float, fmt: str) -> str:
    v = report.get(key)
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v * scale)


@dataclass
class PeerEvaluation:
    """What :func:`pooled` and the table need of an evaluation, for a net that is not an agegender package."""

    report: dict
    preds: dict
    targets: dict
    scheme: Any
    bundle: Any = field(default=None)


def read_crop(sample) -> np.ndarray | None:
    """A sample's image as the dataset gives it (its box cut out when it has one), not resized; None if unreadable."""
    from agegender.errors import AgeGenderError
    from agegender.training.datamodule import read_resized

    try:
        return read_resized(sample, None)
    except AgeGenderError:
        return None


def peer_evaluation(peer, dataset: str, root: str, split: str, split_config: dict) -> PeerEvaluation:
    """``peer.predict_batch(crops) -> (ages, p_male)`` scored on the images :func:`run_evaluation` scores."""
    from agegender.data.readers import DATASETS
    from agegender.evaluation.evaluate import split_samples
    from agegender.evaluation.runner import sample_targets
    from agegender.labels import get_scheme
    from agegender.metrics import compute_metrics

    samples = split_samples(dataset, root, split, split_config)[0]
    kept, outs = [], []
    with ThreadPoolExecutor(2) as ex:
        for start in range(0, len(samples), 256):
            part = samples[start:start + 256]
            pairs = [(s, c) for s, c in zip(part, ex.map(read_crop, part)) if c is not None]
            out = peer.predict_batch([c for _, c in pairs])
            if not isinstance(out, dict):  # a peer's (ages, p_male)
                out = {"age": out[0], "gender_probs": np.stack([out[1], 1 - out[1]], axis=1)}
            kept += [s for s, _ in pairs]
            outs.append(out)
    sch = get_scheme(DATASETS.meta(dataset).get("age_scheme") or "adience8")
    preds = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    targets = sample_targets(kept, sch.name, 0)
    targets["age_group_scheme"] = sch.name
    report = {"model": peer.name, "dataset": dataset, "split": split, "n_images": len(kept),
              "n_skipped": len(samples) - len(kept), **compute_metrics(preds, targets, sch)}
    return PeerEvaluation(report, preds, targets, sch)


class RuntimePeer:
    """One of our models through ``agegender.load(model, backend=..., precision=...)`` (``MODEL@BACKEND[-PRECISION]``,
    e.g. ``default@openvino-bf16``), so that a runtime's outputs are scored on the same images as the package under
    PyTorch: ``predict_batch(crops)`` returns every decoded head."""

    def __init__(self, spec: str) -> None:
        import agegender

        model, options = runtime_spec(spec)
        self.name = spec
        self.predictor = agegender.load(model, detector="none", **options)

    def predict_batch(self, crops: list) -> dict:
        return self.predictor.predict_arrays(crops)


def pooled(evals: list) -> dict:
    """The metrics over the union of the sources' images (each counted once)."""
    from agegender.metrics import compute_metrics

    preds = {k: np.concatenate([np.asarray(e.preds[k]) for e in evals]) for k in evals[0].preds
             if all(k in e.preds for e in evals) and np.asarray(evals[0].preds[k]).ndim >= 1}
    targets = {}
    for k, v in evals[0].targets.items():
        if isinstance(v, np.ndarray) and all(isinstance(e.targets.get(k), np.ndarray) for e in evals):
            targets[k] = np.concatenate([e.targets[k] for e in evals])
        else:
            targets[k] = v
    bundle = evals[0].bundle
    out = compute_metrics(preds, targets, evals[0].scheme, model_scheme=bundle.age_scheme if bundle else None)
    out["n_images"] = sum(e.report["n_images"] for e in evals)
    return out


#: true-age bands of the ``--by-age`` table
AGE_BANDS = ((0, 3), (3, 7), (7, 13), (13, 16), (16, 18), (18, 26), (26, 41), (41, 61), (61, 200))


def by_age(ev) -> list[str]:
    """Rows of the ``--by-age`` table for one evaluation: per true-age band, the faces, age MAE, gender accuracy and
    the share estimated 18 or older (which is the share of minors called adults in the bands under 18)."""
    ages = np.asarray(ev.targets.get("age", []), dtype=float)
    if not ages.size or "age" not in ev.preds:
        return []
    est = np.asarray(ev.preds["age"], dtype=float)
    gender = np.asarray(ev.targets.get("gender", np.full(len(ages), -1)))
    probs = ev.preds.get("gender_probs")
    right = (np.argmax(np.asarray(probs), axis=1) == gender) if probs is not None else None
    rows = []
    for lo, hi in AGE_BANDS:
        m = (ages >= lo) & (ages < hi)
        if not m.any():
            continue
        g = m & (gender >= 0)
        gcell = f"{100 * right[g].mean():.1f}" if right is not None and g.any() else "—"
        rows.append(f"{lo}–{hi - 1 if hi < 200 else ''} | {m.sum():,} | {np.abs(est[m] - ages[m]).mean():.2f} | "
                    f"{gcell} | {100 * np.mean(est[m] >= 18):.1f}")
    return rows


def recipe_sources(config: str | Path) -> tuple[dict, list[dict]]:
    """A recipe's data section with every source's root made absolute (relative roots are relative to the repository
    root, where training runs), and the sources whose folder exists; the others are reported as skipped."""
    from agegender.training.config import load_config
    from agegender.training.datamodule import source_specs

    def absolute(root: object) -> str:
        return str(Path(str(root)) if Path(str(root)).is_absolute() else (REPO / str(root)).resolve())

    data_cfg = load_config(str(config))["data"]
    sources = [dict(s, root=absolute(s["root"])) for s in source_specs(data_cfg)]
    for s in sources:  # a split taken from another copy of the data (same_as) names that copy's folder
        if isinstance(s.get("split"), dict) and s["split"].get("root"):
            s["split"] = dict(s["split"], root=absolute(s["split"]["root"]))
    for s in sources:
        if not Path(s["root"]).exists():
            print(f"skipped source {s['name']}: {s['root']} not found")
    return dict(data_cfg, sources=sources), [s for s in sources if Path(s["root"]).exists()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default",
                    help="comma-separated bundled names or package paths; faceapi:DIR for face-api.js's net; "
                         "MODEL@BACKEND[-PRECISION] (e.g. default@openvino-bf16) for one of ours through that runtime")
    ap.add_argument("--config", default=FACE_RECIPE)
    ap.add_argument("--split", default="test", choices=("test", "val"))
    ap.add_argument("--json", help="also write every report here")
    ap.add_argument("--by-age", action="store_true",
                    help="also print, per model and source with ages, each true-age band's faces, MAE, gender "
                         "accuracy and share estimated 18 or older")
    ap.add_argument("--exclude-seen", action="store_true",
                    help="leave out, for each of our models, the images it was trained or calibrated on (by the "
                         "fingerprints its package carries: a cached crop by its original; a photo held twice under two "
                         "names counts as seen)")
    ap.add_argument("--tta-flip", choices=("model", "on", "off"), default="model",
                    help="flip test-time augmentation for our models: as each model's config says (default), on or off")
    args = ap.parse_args()

    import agegender  # noqa: F401
    from agegender.evaluation.evaluate import run_evaluation

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    peers = {}
    for model in models:
        if model == "faceapi" or model.startswith("faceapi:"):
            sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
            from faceapi import FaceApiAgeGender, FaceApiMissing

            try:
                peers[model] = FaceApiAgeGender(model.partition(":")[2] or None)
            except FaceApiMissing as e:
                sys.exit(f"error: {e}")
        elif "@" in model:
            peers[model] = RuntimePeer(model)
    absolute, sources = recipe_sources(args.config)
    specs = [(s["name"], s["dataset"], s["root"]) for s in sources]
    print(f"machine: {machine()}")
    print(f"recipe: {Path(args.config).relative_to(REPO) if Path(args.config).is_relative_to(REPO) else args.config}, "
          f"{args.split} split of each source")
    for model, peer in peers.items():
        if isinstance(peer, RuntimePeer):
            info = peer.predictor.info()
            print(f"{model}: {info['source']} on {info['backend']} ({info['precision']})")
        else:
            print(f"{model}: {peer.name}, {peer.onnx_path.name} on ONNX Runtime")
    print("| model | source | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    dump, by_source = {}, {}
    for model in models:
        label = "face-api.js" if model in peers and not isinstance(peers[model], RuntimePeer) else model
        evals = []
        for name, dataset, root in specs:
            if model in peers:
                ev = peer_evaluation(peers[model], dataset, root, args.split, absolute)
            else:
                ev = run_evaluation(model, dataset, root, split=args.split, split_config=absolute,
                                    tta_flip=None if args.tta_flip == "model" else args.tta_flip == "on",
                                    exclude_seen=args.exclude_seen)
            evals.append(ev)
            by_source[(label, name)] = ev
            dump[f"{model}/{name}"] = ev.report
            print(f"| {label} | {name} | " + " | ".join(cell(ev.report, *c[1:]) for c in COLUMNS) + " |", flush=True)
        if len(evals) > 1:
            rep = pooled(evals)
            dump[f"{model}/pooled"] = rep
            print(f"| {label} | pooled | " + " | ".join(cell(rep, *c[1:]) for c in COLUMNS) + " |", flush=True)
    if args.by_age:
        print("\n| model | source | true age | faces | age MAE | gender % | estimated 18+ % |")
        print("|---|---|---|---|---|---|---|")
        for (label, name), ev in by_source.items():
            for row in by_age(ev):
                print(f"| {label} | {name} | {row} |")
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1, default=float))


if __name__ == "__main__":
    main()
