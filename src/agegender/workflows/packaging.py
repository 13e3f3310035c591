"""Turn a trained checkpoint into a self-describing model package: temperature scaling fitted on the
run's own validation split, fp16 weights, and training/validation facts in the metadata.

Used to build the bundled models (``agegender package``); the model card next to a bundled file is
written from the same facts.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agegender.errors import AgeGenderError
from agegender.evaluation.calibration import calibrate_bundle
from agegender.models.package import ModelBundle, is_package, load_bundle, save_package
from agegender.training.datamodule import AgeGenderDataModule, source_specs

log = logging.getLogger(__name__)


#: fewer validation images than this give temperatures and an age quantile too noisy to ship (``force`` overrides)
MIN_CALIBRATION_IMAGES = 200


class PackagingError(AgeGenderError):
    """A package that would be degenerate (e.g. calibrated on too few images); ``force=True`` writes it anyway."""


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
    force: bool = False,
    tta_flip: bool | None = None,
    calibration_data: Mapping[str, Any] | None = None,
    calibration_name: str | None = None,
) -> dict[str, Any]:
    """Package ``checkpoint`` into ``output``; returns the metadata written (incl. calibration figures and the
    ``warnings`` raised, which are also logged).

    ``detector`` is the detector the predictor uses for this model unless told otherwise (default: the
    detector of the model it was initialised from, else the person detector ``nanodet`` for pedestrian models and
    ``haar`` for face models). ``age_quantile`` (with ``calibrate``) also fits the age point estimate on the validation split
    (:func:`~agegender.evaluation.calibration.fit_age_quantile`; ``max_false_adult``: the lowest-MAE estimate whose
    under-18 false-adult rate there is at most that). ``tta_flip`` sets whether predictors average each crop with its
    mirror image by default (``eval.tta_flip`` of the config; None keeps the config's), and the calibration is
    fitted the same way. ``calibration_data`` (a config's ``data`` section, named ``calibration_name`` in the
    package's facts) is calibrated on instead of the model's own: the same images framed as the model meets them in
    use, say (a crop cache cut by its own detector pipeline), or a user's own validation data. ``checkpoint`` may be a
    package already: it is then
    re-calibrated (or only re-written, without ``calibrate``) and keeps its metadata (training facts, origin,
    detector) unless told otherwise.

    The package carries the fingerprint of the images of the training and validation splits
    (:mod:`agegender.data.fingerprint`), merged with that of the package it was initialised from, so that
    ``evaluate`` can tell how many of the images it scores the model has seen.

    Raises:
        PackagingError: calibration on fewer than :data:`MIN_CALIBRATION_IMAGES` images, unless ``force``.
    """
    from agegender.data.fingerprint import METHOD, samples_fingerprint
    from agegender.inference.detectors import DEFAULT_PERSON_DETECTOR

    bundle = load_bundle(checkpoint)
    if tta_flip is not None:
        bundle.config["eval"] = {**(bundle.config.get("eval") or {}), "tta_flip": bool(tta_flip)}
    body = bundle.config["data"].get("dataset") in ("peta", "rap")
    old = dict(bundle.meta or {}) if is_package(checkpoint) else {}
    parent = _init_package(bundle.config["model"].get("init_from"))
    warnings: list[str] = []
    own_detector = old.get("default_detector") or (parent.meta.get("default_detector") if parent else None)
    chosen = detector or own_detector or (DEFAULT_PERSON_DETECTOR if body else "haar")
    if own_detector and chosen != own_detector:
        warnings.append(f"the detector is {chosen!r}, not the model's own {own_detector!r} (what it was "
                        f"{'packaged' if old else 'initialised'} with); pass --detector {own_detector} to keep it")
    elif not own_detector and not detector and not body:
        warnings.append("no detector given: the package uses 'haar'; pass --detector with the one whose crops the "
                        "model was trained on")
    meta: dict[str, Any] = {
        **old,
        "name": name or old.get("name") or bundle.config.get("name"),
        # re-written without re-calibration, the weights are the same: the version stays
        "version": version or (old.get("version") if old and not calibrate else None) or _dt.date.today().isoformat(),
        "description": old.get("description") or bundle.config.get("description", ""),
        "trained_from": old.get("trained_from") or str(checkpoint),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "body" if body else "face",
        "default_detector": chosen,
    }
    meta.pop("warnings", None)
    if old:
        meta["repackaged_from"] = str(checkpoint)
    results = Path(checkpoint).parent.parent / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        meta["training"] = {k: r.get(k) for k in ("train_seconds", "epochs_run", "global_step", "parameters",
                                                   "split_sizes", "read_summary")}
    dcfg = dict(calibration_data if calibration_data is not None else bundle.config["data"])
    if data is not None:
        dcfg["root"] = str(data)
    dcfg["cache"] = False
    dcfg.pop("teacher", None)  # training-only targets: calibration and fingerprints do not need them
    dm = None
    if calibrate or data is not None or all(Path(str(s.get("root") or "")).exists() for s in source_specs(dcfg)):
        dm = AgeGenderDataModule(dcfg)
        dm.prepare_samples()
    if calibrate:
        assert dm is not None
        val = [dm.samples[i] for i in dm.split["val"]]
        if len(val) < MIN_CALIBRATION_IMAGES:
            msg = (f"calibration would be fitted on {len(val)} validation images (fewer than "
                   f"{MIN_CALIBRATION_IMAGES}): too few for reliable temperatures and age estimate")
            if not force:
                raise PackagingError(f"{msg}; use a larger data.split.val, --no-calibrate, or --force", code="bad_data")
            warnings.append(msg)
        cal = calibrate_bundle(bundle, val, age_quantile=age_quantile, max_false_adult=max_false_adult)
        # re-calibrating a package on its own validation data: its weights are the ones first calibrated, so the
        # "before" figures of that first fit (the uncalibrated network) still describe it. On other data (another
        # config's, or another folder) they would describe other images: the new fit's own "before" figures stand.
        own_root = str(bundle.config["data"].get("root") or "")
        own_data = calibration_data is None and (data is None or (
            bool(own_root) and Path(data).resolve() == Path(own_root).resolve()))
        first = ((old.get("calibration") or {}).get("heads") or {}) if own_data else {}
        for head, r in cal.items():
            prev = first.get(head) or {}
            for key in ("temperature_before", "nll_before", "ece_before"):
                if key in prev:
                    r[key] = prev[key]
        warnings += calibration_warnings(cal)
        where = f" of {calibration_name}" if calibration_name else (" of other data" if calibration_data else "")
        meta["calibration"] = {"fitted_on": f"validation split{where} ({len(val)} images)", "heads": cal}
    if dm is not None:
        # a cached crop stands for the original it was cut from (its source_fingerprint), so evaluate on the
        # originals still finds them
        # calibrated on another config's data: only its validation part has been seen (the model's own training
        # images are in the fingerprint it already carries)
        parts = ("val",) if calibration_data is not None else ("train", "val")
        seen = [dm.samples[i] for part in parts for i in dm.split.get(part, [])]
        bundle.fingerprint = samples_fingerprint(seen, bundle.fingerprint, parent.fingerprint if parent else None)
        meta["fingerprint"] = {"images": len(bundle.fingerprint), "method": METHOD,
                               "of": "the training and validation splits" + (" and those of the model it was "
                                                                             "initialised from" if parent else "")}
    elif bundle.fingerprint is None:
        warnings.append(f"the training data ({dcfg.get('root')}) is not here: the package has no fingerprint of "
                        "its training images, so evaluate cannot warn about them; pass --data")
    meta["half"] = half
    meta.update(extra_meta or {})
    if warnings:
        meta["warnings"] = warnings
    for w in warnings:
        log.warning("package: %s", w)
    save_package(bundle, output, half=half, meta=meta)
    # Check the fp16 file round-trips to the same network.
    load_bundle(output)
    return meta


def calibration_warnings(cal: dict[str, Any]) -> list[str]:
    """What is degenerate in the calibration results of :func:`calibrate_bundle`: temperatures at their bounds
    (the head's confidences cannot be trusted) and an under-18 limit that no age estimate met."""
    from agegender.evaluation.calibration import T_RANGE

    out = []
    for head, r in cal.items():
        t = float(r.get("temperature", 1.0))
        if min(abs(t - T_RANGE[0]), abs(t - T_RANGE[1])) <= 1e-3 * t:
            out.append(f"the {head} temperature {t:.3g} is at its bound {T_RANGE}: that head's confidences are "
                       "unreliable (a broken head or wrong labels?)")
        a = r.get("age_estimate") or {}
        if a.get("max_false_adult") is not None and not a.get("constraint_met", True):
            out.append(f"no age estimate keeps the validation under-18 false-adult rate at or below "
                       f"{100 * a['max_false_adult']:.0f} % (it is {100 * a['under18_false_adult_after']:.1f} %): "
                       "the plain MAE fit is used")
    return out


def _init_package(source: str | None) -> ModelBundle | None:
    """The package a config's ``model.init_from`` names, when it is one that can be found here."""
    if not source:
        return None
    from agegender.bundled import resolve_model_path

    try:
        path = resolve_model_path(source)
    except AgeGenderError:
        return None
    return load_bundle(path) if is_package(path) else None


_LICENCES = {
    "utkface": "UTKFace (Zhang, Song, Qi, CVPR 2017) is available for **non-commercial research purposes only**; "
               "the image copyrights belong to their owners.",
    "peta": "PETA (Deng, Luo, Loy, Tang, ACM MM 2014) is \"intended for research purposes only and as such cannot be "
            "used commercially\"; its images come from 10 re-identification datasets with their own terms.",
    # sources of data.sources are looked up by their name first (a csv reader can hold any collection)
    "aaf": "All-Age-Faces (Cheng, Li, Wang, Zhang, 2019) is released for **non-commercial research purposes only**.",
    "celeba": "CelebA (Liu, Luo, Wang, Tang, ICCV 2015) is available for **non-commercial research purposes only**; "
              "the images are from the internet and their copyrights belong to their owners.",
}

_KEYS = [
    ("age_mae", "age MAE (years)", 1.0),
    ("age_cs5", "CS@5 (share of errors ≤ 5 years)", 100.0),
    ("age_group_accuracy", "age-group accuracy (%)", 100.0),
    ("age_group_one_off", "age-group 1-off accuracy (%)", 100.0),
    ("gender_accuracy", "gender accuracy (%)", 100.0),
    ("gender_recall_female", "gender recall of women (%)", 100.0),
    ("gender_recall_male", "gender recall of men (%)", 100.0),
    ("ethnicity_accuracy", "ethnicity accuracy (%)", 100.0),
    ("under18_false_adult_rate", "under-18 false-adult rate (%)", 100.0),
    ("under18_prob_auc", "ROC AUC of P(under 18), minors against adults", 1.0, 3),
    ("under18_prob_brier", "Brier score of P(under 18)", 1.0, 4),
    ("attributes_mA", "attributes mA (%)", 100.0),
]


def _data_lines(data_cfg: dict[str, Any], training: dict[str, Any]) -> list[str]:
    """The card's data section: the one dataset with its split, or each source of ``data.sources``."""
    sizes = f" → sizes {training.get('split_sizes')}"
    if not data_cfg.get("sources"):
        return [(f"- dataset: `{data_cfg.get('dataset')}` from `{data_cfg.get('root')}` "
                 f"({training.get('read_summary', '')})"),
                f"- split: `{data_cfg.get('split')}`{sizes}"]
    lines = [(f"- {len(data_cfg['sources'])} sources, each read and split on its own; a label a source lacks is "
              "left out of that head's loss (`data.sources`):")]
    for sp in source_specs(data_cfg):
        lines.append(f"  - `{sp['name']}`: `{sp.get('dataset')}` from `{sp.get('root')}`, split `{sp.get('split')}`, "
                     f"draw weight {sp.get('weight', 1.0):g}")
    if data_cfg.get("sampler"):
        lines.append(f"- training draw balanced within each source: `data.sampler: {data_cfg['sampler']}`")
    lines.append(f"- pooled split{sizes}; {training.get('read_summary', '')}")
    return lines


def _file_line(package: Path, meta: dict[str, Any]) -> str:
    """What the model file is: a safetensors package, its training fingerprint and its ONNX twin, if any."""
    fp = meta.get("fingerprint") or {}
    text = "- file: a safetensors package (weights and a JSON header; loading it runs no code)"
    if fp:
        text += f", with the fingerprint of {fp['images']:,} images ({fp['of']}; `evaluate` reports `seen_in_training`)"
    twin = package.with_suffix(".onnx")
    if twin.is_file():
        text += f"; `{twin.name}` is its ONNX twin, which `agegender.load` runs by default (`tools/export_bundled_onnx.py`)"
    int8 = package.with_suffix(".int8.onnx")
    if int8.is_file():
        text += (f"; `{int8.name}` is its int8 twin (trunk quantized by NNCF; `tools/export_bundled_onnx.py --int8`), "
                 "which `agegender.load` runs on OpenVINO on CPUs without AMX where a one-time "
                 "speed check finds it faster than float32 (docs/performance.md)")
    return text


def _init_text(model_cfg: dict[str, Any]) -> str:
    if model_cfg.get("init_from"):
        return f"initialised from `{model_cfg['init_from']}`"
    what = PRETRAINED_ON.get(str(model_cfg["trunk"].get("name")), "ImageNet")
    return f"{what}-pretrained: {model_cfg['trunk'].get('pretrained', False)}"


#: what a trunk's ``pretrained: true`` weights were trained for, where it is not ImageNet classification
PRETRAINED_ON = {"dlib_resnet": "face-recognition (dlib)"}


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
    tr = meta.get("training") or {}
    heads = ", ".join(f"`{n}` ({h['type']})" for n, h in cfg["model"]["heads"].items())
    args = cfg["model"].get("composition_args") or {}
    members = args.get("members") if cfg["model"].get("composition") == "ensemble" else None
    if members:  # an ensemble: its members' trunks; the training figures below are the first member's
        sizes = [((a or {}).get("size") or b.preprocess.get("input_size")) for a in
                 (args.get("adapters") or [None] * len(members))]
        params = sum(p.numel() for p in b.model.members.parameters())
        model_lines = [
            f"- composition: `ensemble` of {len(members)} networks (`agegender.models.ensemble`), heads: {heads}",
            *[f"  - member {i}: `{m['trunk']['name']}` trunk ({_init_text(m)}), input {size} px"
              for i, (m, size) in enumerate(zip(members, sizes), 1)],
            f"- parameters: {params:,} ({' + '.join(f'{sum(p.numel() for p in m.parameters()):,}' for m in b.model.members)})",
        ]
    else:
        model_lines = [
            f"- trunk: `{cfg['model']['trunk']['name']}` ({_init_text(cfg['model'])}), heads: {heads}",
            f"- parameters: {tr.get('parameters', 'n/a'):,}" if isinstance(tr.get("parameters"), int)
            else "- parameters: n/a",
        ]
    lines = [
        f"# Model card: {meta.get('name')} ({Path(package).name})",
        "",
        f"{meta.get('description', '')}",
        "",
        "## Model",
        *model_lines,
        (f"- input: {b.preprocess.get('input_size')} px RGB, mean {b.preprocess.get('mean')}, std {b.preprocess.get('std')}"
        f"; mode `{meta.get('mode')}`, default detector `{meta.get('default_detector')}`"),
        (f"- weights stored as {'fp16' if meta.get('half', True) else 'fp32'}; age-group scheme of the training labels: "
        f"`{b.age_scheme}` (any scheme can be asked for at prediction time)"),
        _file_line(Path(package), meta),
        "",
        "## Data and split",
        *_data_lines(cfg["data"], tr),
        "",
        "## Training",
        f"- config: `{config or 'configs/default/' + ('body' if meta.get('mode') == 'body' else 'face') + '.yaml'}`",
        f"- command: `{commands.get('train', '')}`",
        (f"- time: {tr.get('train_seconds', 'n/a')} s for {tr.get('epochs_run', 'n/a')} epochs "
        f"({tr.get('global_step', 'n/a')} steps) on 2 CPU cores (shared with other jobs)"
        f"{', the last training stage of member 1' if members else ''}"),
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
                guard = a.get("minor_guard")
                lines += ["", (f"Age point estimate of `{h}` fitted on the same images: the "
                          f"{a['estimate']:.2f}-quantile of the predicted distribution (was "
                          f"{'the median' if a['before'] in ('median', 0.5) else a['before']}"
                          + (f" with an under-age guard of {a['minor_guard_before']:.2f}"
                             if a.get("minor_guard_before") is not None else "") + ")"
                          + (f", held below 18 where the probability of an age under 18 is at least {guard:.2f}"
                             if guard is not None else "")
                          + f", validation MAE {a['mae_before']:.3f} → {a['mae_after']:.3f} years, under-18 "
                          f"false-adult rate {100 * a['under18_false_adult_before']:.1f} → "
                          f"{100 * a['under18_false_adult_after']:.1f} %" + (
                              f" (the lowest-MAE quantile and under-age guard whose validation false-adult rate is "
                              f"at most {100 * a['max_false_adult']:.0f} %"
                              + ("" if a.get("constraint_met") else "; none reached it, so the plain MAE fit") + ")"
                              if a.get("max_false_adult") is not None else "") + ".")]
    if reports:
        lines += ["", "## Measured figures", "", "| metric | " + " | ".join(reports) + " |",
                  "|---|" + "---|" * len(reports)]
        for key, label, scale, *digits in _KEYS:
            if any(key in r for r in reports.values()):
                nd = digits[0] if digits else 2
                cells = [f"{r[key] * scale:.{nd}f}" if key in r else "" for r in reports.values()]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        for name, cmd in commands.items():
            if name.startswith("eval"):
                lines.append(f"- {name}: `{cmd}`")
        lines += [f"- {note}" for note in figure_notes or []]
    lines += ["", "## Known limits"] + [f"- {x}" for x in limits]
    texts = dict.fromkeys(_LICENCES.get(sp["name"]) or _LICENCES.get(sp.get("dataset"))
                          or f"{sp['name']}: see the training data licence." for sp in source_specs(cfg["data"]))
    lines += ["", "## Licence", *[f"- {t}" for t in texts],
              "- The weights inherit this restriction: **non-commercial research use only.**", ""]
    out = Path(path) if path else Path(package).with_suffix(".md")
    out.write_text("\n".join(lines))
    return out
