"""Command-line interface (Typer): a thin shell over the Python API.

The app and its error handling live in :mod:`agegender.cli_app`; the commands here and those of
``cli_eval``, ``cli_inference`` and ``cli_serve`` (imported below) register on it. User errors
(:class:`AgeGenderError`) print one line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from agegender.cli_app import app, user_errors
from agegender.errors import AgeGenderError

__all__ = ["app", "main"]


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="experiment YAML (see configs/)"),
    data: Path | None = typer.Option(None, "--data", help="dataset folder (overrides data.root)"),
    output: Path | None = typer.Option(None, "--output", "-o", help="run folder (default runs/<config name>)"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: --set optim.lr=0.001 (repeatable)"),
    resume: bool = typer.Option(False, "--resume", help="continue from <output>/checkpoints/last.ckpt"),
) -> None:
    """Train a model from a config; writes checkpoints, CSV logs and results.json."""
    import agegender  # noqa: F401
    from agegender.training.config import load_config
    from agegender.workflows.train import train_and_test

    extra: dict[str, Any] = {}
    if data is not None:
        if not data.exists():
            raise AgeGenderError(f"data folder {data} does not exist", code="missing_path")
        extra = {"data": {"root": str(data)}}
    cfg = load_config(config, set_, **extra)
    out = output or Path("runs") / str(cfg.get("name") or config.stem)
    result = train_and_test(cfg, out, resume=resume)
    if result:
        test = result.get("test", {})
        keys = ("age_mae", "age_cs5", "age_group_accuracy", "age_group_one_off", "gender_accuracy", "ethnicity_accuracy")
        summary = {k: round(test[k], 4) for k in keys if k in test}
        typer.echo(json.dumps({"output": str(out), "best_checkpoint": result["best_checkpoint"],
                               "train_seconds": result["train_seconds"], "test": summary}, indent=2))


@app.command()
@user_errors
def refine(
    config: Path = typer.Argument(..., help="cross-modal age config with model.composition_args.refine"),
    data: Path | None = typer.Option(None, "--data", help="dataset folder (overrides data.root of both configs)"),
    output: Path | None = typer.Option(None, "--output", "-o", help="run folder (default runs/<config name>)"),
    set_: list[str] = typer.Option([], "--set", help="override a key of both configs (repeatable)"),
) -> None:
    """Iterative refinement (aminian_noubir §4.5): gender net → cross-modal age net → gender net from the
    age net's embedding → age again, as many rounds as the config says."""
    from agegender.workflows.refine import refine_from_config

    summary = refine_from_config(config, output, set_, str(data) if data else None)
    typer.echo(json.dumps([{k: s[k] for k in ("step", "task", "round", "best_checkpoint")} for s in summary["steps"]],
                          indent=2))


@app.command()
@user_errors
def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="checkpoint/package path or bundled model name"),
    dataset: str = typer.Option(..., "--dataset", "-d", help="dataset reader name (see `agegender datasets`)"),
    data: Path = typer.Option(..., "--data", help="dataset folder"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the JSON report here"),
    split: str = typer.Option("all", "--split", help="all (independent test set) or the model's own train/val/test split"),
    scheme: str | None = typer.Option(None, "--scheme", help="age-group scheme (default: the dataset's)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    tta_flip: bool | None = typer.Option(None, "--tta-flip/--no-tta-flip", help="average with mirrored images"),
    detector: str | None = typer.Option(None, "--detector", help="face detector for loose images (default: "
                                           "none for tight crops such as UTKFace; for FairFace/Adience the model's own "
                                           "detector, else haar)"),
    ten_crop: bool | None = typer.Option(None, "--ten-crop/--centre-crop",
                                            help="aminian_noubir's 10-crop over-sampling (default: the model config's)"),
    report: Path | None = typer.Option(None, "--report", help="also write report.md with plots, fairness tables, "
                                          "the under-18 sweep and calibration into this folder"),
    calibration: str = typer.Option("auto", "--calibration", help="where the report fits temperature scaling: auto "
                                    "(the model's val split with --split test, else two halves of the data), val, halves"),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="read images that the label files "
                                            "place outside --data (absolute paths, '..'); refused by default"),
    exclude_seen: bool = typer.Option(False, "--exclude-seen", help="leave out the images the model was trained or "
                                      "calibrated on (found by its package's fingerprint)"),
) -> None:
    """Score a model on a dataset folder and print (or write) every metric its labels allow."""
    from agegender.evaluation.evaluate import evaluate as run

    rep = run(model, dataset, data, split=split, scheme=scheme, output=output, batch_size=batch_size,
              tta_flip=tta_flip, progress=sys.stderr.isatty(), report_dir=report, ten_crop=ten_crop,
              calibration=calibration, detector=detector,
              options={"allow_outside_root": True} if allow_outside_root else None, exclude_seen=exclude_seen)
    brief = {k: v for k, v in rep.items() if not k.endswith("_confusion") and k not in ("fairness", "calibration")}
    if "calibration" in rep:
        brief["ece"] = {h: {"before": round(c["ece_before"], 4), "after": round(c["ece_after"], 4),
                            "temperature": round(c["temperature"], 3)} for h, c in rep["calibration"]["heads"].items()}
    typer.echo(json.dumps(brief, indent=2))


@app.command()
@user_errors
def datasets() -> None:
    """List the supported datasets and the folder layout each expects."""
    from agegender.data.readers import READING_RULES, describe_datasets

    for d in describe_datasets():
        typer.echo(f"{d['name']}")
        typer.echo(f"  tasks: {', '.join(d.get('tasks') or [])}")
        typer.echo(f"  layout: {d['layout']}\n")
    typer.echo(f"Every dataset: {READING_RULES}")


@app.command()
@user_errors
def models() -> None:
    """List every registered trunk (with parameter count), head, loss, weighting, detector and bundled model."""
    import agegender.models  # noqa: F401  (registration)
    from agegender.inference.registry import BUNDLED, bundled_models
    from agegender.models.registry import COMPOSITIONS, HEADS, LOSSES, WEIGHTINGS
    from agegender.models.trunks import trunk_info

    typer.echo("trunks:")
    for t in trunk_info():
        size = t.get("input_size")
        size = "-" if size is None else "x".join(map(str, size)) if isinstance(size, (list, tuple)) else size
        typer.echo(f"  {t['name']:<24} {t['parameters'] / 1e6:8.2f} M params  input {size!s:<4} "
                   f"{t.get('paper') or ''}")
    typer.echo("heads:        " + ", ".join(HEADS.names()))
    typer.echo("losses:       " + ", ".join(LOSSES.names()))
    typer.echo("weightings:   " + ", ".join(WEIGHTINGS.names()))
    typer.echo("compositions: " + ", ".join(COMPOSITIONS.names()))
    from agegender.inference.detectors import DETECTORS

    typer.echo("detectors:")
    for name in DETECTORS.names():
        meta = DETECTORS.meta(name)
        typer.echo(f"  {name:<24} {meta.get('kind', 'face'):<7} {meta.get('description', '')}")
    present = bundled_models()
    typer.echo("bundled:      " + ", ".join(f"{n}{'' if n in present else ' (missing)'}" for n in BUNDLED))


@app.command()
@user_errors
def package(
    checkpoint: Path = typer.Argument(..., help="a Lightning checkpoint from `agegender train` (or a package to re-calibrate)"),
    output: Path = typer.Option(..., "--output", "-o", help="package file to write (.safetensors)"),
    data: Path | None = typer.Option(None, "--data", help="dataset folder for calibration (default: the config's)"),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="fit temperature scaling on the validation split"),
    age_quantile: bool = typer.Option(
        True, "--fit-age-quantile/--no-fit-age-quantile",
        help="with --calibrate: also fit the age estimate (a quantile of the age distribution) on the validation split",
    ),
    max_false_adult: float | None = typer.Option(
        0.08, "--max-false-adult",
        help="with --fit-age-quantile: the lowest-MAE quantile and under-age guard (faces likely enough to be "
        "under 18 held below 18) whose validation under-18 false-adult rate (minors estimated 18+) is at most this "
        "fraction; 1 = plain MAE fit, no guard",
        min=0.0, max=1.0,
    ),
    half: bool = typer.Option(True, "--half/--full", help="store weights as fp16"),
    name: str | None = typer.Option(None, "--name"),
    detector: str | None = typer.Option(
        None, "--detector",
        help="the model's default detector (default: that of the model it was initialised from, else haar; "
        "the person detector nanodet for body models)"
    ),
    force: bool = typer.Option(False, "--force", help="write the package even when calibrated on too few images"),
    tta_flip: bool | None = typer.Option(
        None, "--tta-flip/--no-tta-flip",
        help="average each crop with its mirror image by default (default: as the training config says); "
        "the calibration is fitted the same way"
    ),
    calibration_config: Path | None = typer.Option(
        None, "--calibration-config",
        help="a training config whose data section (its sources and their splits) to calibrate on instead of the "
        "model's own, e.g. the same faces cut by the model's own detector pipeline",
    ),
) -> None:
    """Package a checkpoint with its preprocessing, labels, calibration and training fingerprint into one
    safetensors model file (a format that cannot carry code). Degenerate results (a tiny calibration set, a
    temperature at its bound, an unmet under-18 constraint, a detector other than the model's own) are warned
    about on stderr."""
    from agegender.inference.detectors import DETECTORS
    from agegender.workflows.packaging import package_checkpoint

    if detector is not None and detector not in DETECTORS.names():
        raise AgeGenderError(
            f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS.names())}", code="unknown_detector"
        )
    calibration_data = None
    if calibration_config is not None:
        from agegender.training.config import load_config

        calibration_data = load_config(str(calibration_config))["data"]
    meta = package_checkpoint(checkpoint, output, data=data, calibrate=calibrate, half=half, name=name,
                              detector=detector, age_quantile=age_quantile, force=force, tta_flip=tta_flip,
                              calibration_data=calibration_data,
                              calibration_name=None if calibration_config is None else calibration_config.as_posix(),
                              max_false_adult=None if max_false_adult is None or max_false_adult >= 1 else max_false_adult)
    typer.echo(json.dumps(meta, indent=2, default=str))
    for w in meta.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)


@app.command()
@user_errors
def convert(
    old: Path = typer.Argument(..., help="a pickle-based agegender package (.pt) of your own"),
    output: Path = typer.Option(..., "--output", "-o", help="safetensors package to write"),
) -> None:
    """Convert an old pickle-based model package (.pt) into the safetensors format that `agegender` loads.

    The old file is read with torch's restricted unpickler (tensors and plain data only), so a file that holds
    code is refused rather than run; convert only files you made or trust."""
    from agegender.models.package import convert_legacy_package

    out = convert_legacy_package(old, output)
    typer.echo(f"wrote {out}")


# Command groups that live in their own modules register on the same app.
import agegender.cli_eval
import agegender.cli_inference
import agegender.cli_serve  # noqa: F401  (serve)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
