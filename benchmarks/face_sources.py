"""Face models scored on every source of a multi-source recipe, on the same images: each source's test (or
validation) split as the recipe's ``data.sources`` makes it, so a model trained on one source only and one trained
on all of them are compared on identical held-out faces.

For each model and source: images, age MAE, CS@5, gender accuracy, the recall of women and of men, ethnicity
accuracy and the share of minors estimated 18 or older (each where the source has the label), then the figures
pooled over the sources (each image counted once). Sources whose folder is absent are skipped with a note.

    python benchmarks/face_sources.py --models default,runs/face_wild/model.safetensors \\
        [--config configs/default/face_wild.yaml] [--split test|val] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine

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
    out = compute_metrics(preds, targets, evals[0].scheme, model_scheme=evals[0].bundle.age_scheme)
    out["n_images"] = sum(e.report["n_images"] for e in evals)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default", help="comma-separated bundled names or package paths")
    ap.add_argument("--config", default=str(REPO / "configs" / "default" / "face_wild.yaml"))
    ap.add_argument("--split", default="test", choices=("test", "val"))
    ap.add_argument("--json", help="also write every report here")
    args = ap.parse_args()

    import agegender  # noqa: F401
    from agegender.evaluation.evaluate import run_evaluation
    from agegender.training.config import load_config
    from agegender.training.datamodule import source_specs

    cfg = load_config(args.config)
    data_cfg = cfg["data"]
    # relative roots in a config are relative to the repository root, where training runs
    sources = [dict(s, root=str(Path(str(s["root"])) if Path(str(s["root"])).is_absolute()
                                else (REPO / str(s["root"])).resolve())) for s in source_specs(data_cfg)]
    absolute = dict(data_cfg, sources=sources)
    specs = [(s["name"], s["dataset"], s["root"]) for s in sources if Path(s["root"]).exists()]
    for s in sources:
        if not Path(s["root"]).exists():
            print(f"skipped source {s['name']}: {s['root']} not found")
    print(f"machine: {machine()}")
    print(f"recipe: {Path(args.config).relative_to(REPO) if Path(args.config).is_relative_to(REPO) else args.config}, "
          f"{args.split} split of each source")
    print("| model | source | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    dump = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        evals = []
        for name, dataset, root in specs:
            ev = run_evaluation(model, dataset, root, split=args.split, split_config=absolute)
            evals.append(ev)
            dump[f"{model}/{name}"] = ev.report
            print(f"| {model} | {name} | " + " | ".join(cell(ev.report, *c[1:]) for c in COLUMNS) + " |", flush=True)
        if len(evals) > 1:
            rep = pooled(evals)
            dump[f"{model}/pooled"] = rep
            print(f"| {model} | pooled | " + " | ".join(cell(rep, *c[1:]) for c in COLUMNS) + " |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1, default=float))


if __name__ == "__main__":
    main()
