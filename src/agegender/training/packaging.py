"""Turn a trained checkpoint into a self-describing model package: temperature scaling fitted on the
run's own validation split, fp16 weights, and training/validation facts in the metadata.

Used to build the bundled models (``agegender package``); the model card next to a bundled file is
written from the same facts.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from agegender.evaluation.calibration import calibrate_bundle
from agegender.models.package import load_bundle, save_package
from agegender.training.datamodule import AgeGenderDataModule


def package_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    data: str | Path | None = None,
    calibrate: bool = True,
    half: bool = True,
    name: str | None = None,
    version: str | None = None,
    extra_meta: dict[str, Any] | None = None,
    detector: str | None = None,
    age_quantile: bool = True,
    max_false_adult: float | None = None,
) -> dict[str, Any]:
    """Package ``checkpoint`` into ``output``; returns the metadata written (incl. calibration figures).

    ``detector`` is the face detector the predictor uses for this model unless told otherwise (default:
    ``none`` for pedestrian models, ``haar`` for face models). ``age_quantile`` (with ``calibrate``) also
    fits the age point estimate on the validation split (:func:`~agegender.evaluation.calibration.fit_age_quantile`;
    ``max_false_adult``: the lowest-MAE estimate whose under-18 false-adult rate there is at most that).
    ``checkpoint`` may be a package already: it is then re-calibrated and keeps its metadata (training
    facts, origin, detector) unless told otherwise."""
    bundle = load_bundle(checkpoint)
    body = bundle.config["data"].get("dataset") in ("peta", "rap")
    old = dict(bundle.meta or {}) if str(checkpoint).endswith(".pt") else {}
    meta: dict[str, Any] = {
        **old,
        "name": name or old.get("name") or bundle.config.get("name"),
        "version": version or _dt.date.today().isoformat(),
        "description": old.get("description") or bundle.config.get("description", ""),
        "trained_from": old.get("trained_from") or str(checkpoint),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "body" if body else "face",
        "default_detector": detector or old.get("default_detector") or ("none" if body else "haar"),
    }
    if old:
        meta["repackaged_from"] = str(checkpoint)
    results = Path(checkpoint).parent.parent / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        meta["training"] = {k: r.get(k) for k in ("train_seconds", "epochs_run", "global_step", "parameters",
                                                   "split_sizes", "read_summary")}
    if calibrate:
        dcfg = dict(bundle.config["data"])
        if data is not None:
            dcfg["root"] = str(data)
        dcfg["cache"] = False
        dm = AgeGenderDataModule(dcfg)
        dm.prepare_samples()
        val = [dm.samples[i] for i in dm.split["val"]]
        cal = calibrate_bundle(bundle, val, age_quantile=age_quantile, max_false_adult=max_false_adult)
        # re-calibrating a package: its weights are the ones first calibrated, so the "before" figures of
        # that first fit (the uncalibrated network) still describe it; the new fit starts from its temperatures
        first = ((old.get("calibration") or {}).get("heads") or {})
        for head, r in cal.items():
            prev = first.get(head) or {}
            for key in ("temperature_before", "nll_before", "ece_before"):
                if key in prev:
                    r[key] = prev[key]
        meta["calibration"] = {"fitted_on": f"validation split ({len(val)} images)", "heads": cal}
    meta["half"] = half
    meta.update(extra_meta or {})
    save_package(bundle, output, half=half, meta=meta)
    # Check the fp16 file round-trips to the same network.
    load_bundle(output)
    return meta


_LICENCES = {
    "utkface": "UTKFace (Zhang, Song, Qi, CVPR 2017) is available for **non-commercial research purposes only**; "
               "the image copyrights belong to their owners.",
    "peta": "PETA (Deng, Luo, Loy, Tang, ACM MM 2014) is \"intended for research purposes only and as such cannot be "
            "used commercially\"; its images come from 10 re-identification datasets with their own terms.",
}

_KEYS = [
    ("age_mae", "age MAE (years)", 1.0),
    ("age_cs5", "CS@5 (share of errors ≤ 5 years)", 100.0),
    ("age_group_accuracy", "age-group accuracy (%)", 100.0),
    ("age_group_one_off", "age-group 1-off accuracy (%)", 100.0),
    ("gender_accuracy", "gender accuracy (%)", 100.0),
    ("ethnicity_accuracy", "ethnicity accuracy (%)", 100.0),
    ("under18_false_adult_rate", "under-18 false-adult rate (%)", 100.0),
    ("attributes_mA", "attributes mA (%)", 100.0),
]


def _init_text(model_cfg: dict[str, Any]) -> str:
    if model_cfg.get("init_from"):
        return f"initialised from `{model_cfg['init_from']}`"
    return f"ImageNet-pretrained: {model_cfg['trunk'].get('pretrained', False)}"


def write_model_card(package: str | Path, meta: dict[str, Any], reports: dict[str, dict[str, Any]],
                     commands: dict[str, str], limits: list[str], path: str | Path | None = None,
                     config: str | None = None, training_notes: list[str] | None = None,
                     figure_notes: list[str] | None = None) -> Path:
    """A Markdown model card beside a packaged model: data, split, training, measured figures, limits, licence.

    ``config`` names the training config (default: ``configs/default/{face,body}.yaml``); ``training_notes``
    are extra lines for the training section (e.g. earlier stages of a staged schedule), ``figure_notes``
    for the measured-figures section (e.g. figures from a benchmark script)."""
    from agegender.models.package import load_bundle

    b = load_bundle(package)
    cfg = b.config
    dataset = cfg["data"]["dataset"]
    tr = meta.get("training") or {}
    heads = ", ".join(f"`{n}` ({h['type']})" for n, h in cfg["model"]["heads"].items())
    lines = [
        f"# Model card: {meta.get('name')} ({Path(package).name})",
        "",
        f"{meta.get('description', '')}",
        "",
        "## Model",
        f"- trunk: `{cfg['model']['trunk']['name']}` ({_init_text(cfg['model'])}), heads: {heads}",
        f"- parameters: {tr.get('parameters', 'n/a'):,}" if isinstance(tr.get("parameters"), int) else "- parameters: n/a",
        (f"- input: {b.preprocess.get('input_size')} px RGB, mean {b.preprocess.get('mean')}, std {b.preprocess.get('std')}"
        f"; mode `{meta.get('mode')}`, default detector `{meta.get('default_detector')}`"),
        (f"- weights stored as {'fp16' if meta.get('half', True) else 'fp32'}; age-group scheme of the training labels: "
        f"`{b.age_scheme}` (any scheme can be asked for at prediction time)"),
        "",
        "## Data and split",
        f"- dataset: `{dataset}` from `{cfg['data']['root']}` ({tr.get('read_summary', '')})",
        f"- split: `{cfg['data']['split']}` → sizes {tr.get('split_sizes')}",
        "",
        "## Training",
        f"- config: `{config or 'configs/default/' + ('body' if meta.get('mode') == 'body' else 'face') + '.yaml'}`",
        f"- command: `{commands.get('train', '')}`",
        (f"- time: {tr.get('train_seconds', 'n/a')} s for {tr.get('epochs_run', 'n/a')} epochs "
        f"({tr.get('global_step', 'n/a')} steps) on 2 CPU cores (shared with other jobs)"),
        f"- packaged with: `{commands.get('package', '')}`",
        *[f"- {note}" for note in training_notes or []],
    ]
    cal = (meta.get("calibration") or {}).get("heads") or {}
    if cal:
        lines += ["", "## Calibration (temperature scaling, " + meta["calibration"]["fitted_on"] + ")", "",
                  "| head | T | ECE before | ECE after |", "|---|---|---|---|"]
        for h, r in cal.items():
            lines.append(f"| {h} | {r.get('temperature', float('nan')):.3f} | {r.get('ece_before', float('nan')):.4f} | "
                         f"{r.get('ece_after', float('nan')):.4f} |")
        for h, r in cal.items():
            a = r.get("age_estimate")
            if a and a.get("n"):
                lines += ["", (f"Age point estimate of `{h}` fitted on the same images: the "
                          f"{a['estimate']:.2f}-quantile of the predicted distribution (was {a['before']}), "
                          f"validation MAE {a['mae_before']:.3f} → {a['mae_after']:.3f} years, under-18 "
                          f"false-adult rate {100 * a['under18_false_adult_before']:.1f} → "
                          f"{100 * a['under18_false_adult_after']:.1f} %" + (
                              f" (the lowest-MAE quantile whose validation false-adult rate is at most "
                              f"{100 * a['max_false_adult']:.0f} %"
                              + ("" if a.get("constraint_met") else "; none reached it, so the plain MAE fit") + ")"
                              if a.get("max_false_adult") is not None else "") + ".")]
    if reports:
        lines += ["", "## Measured figures", "", "| metric | " + " | ".join(reports) + " |",
                  "|---|" + "---|" * len(reports)]
        for key, label, scale in _KEYS:
            if any(key in r for r in reports.values()):
                cells = [f"{r[key] * scale:.2f}" if key in r else "" for r in reports.values()]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        for name, cmd in commands.items():
            if name.startswith("eval"):
                lines.append(f"- {name}: `{cmd}`")
        lines += [f"- {note}" for note in figure_notes or []]
    lines += ["", "## Known limits"] + [f"- {x}" for x in limits]
    lines += ["", "## Licence", (f"- {_LICENCES.get(dataset, 'See the training data licence.')} The weights inherit "
              "this restriction: **non-commercial research use only.**"), ""]
    out = Path(path) if path else Path(package).with_suffix(".md")
    out.write_text("\n".join(lines))
    return out
