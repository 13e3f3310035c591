"""The train entry point: config → data module + Lightning module → Trainer.fit.

Writes into the output folder: ``config.yaml`` (resolved), ``checkpoints/{best,last}.ckpt`` and ``logs/`` (CSV
metrics per step/epoch), and returns the run's facts (best checkpoint, parameter count, training time, split
sizes). Scoring the test split and writing ``results.json`` need the evaluation layer, so they are
:func:`agegender.workflows.train.train_and_test`, which ``agegender train`` runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger

from agegender.errors import AgeGenderError
from agegender.labels import ETHNICITIES, GENDERS, get_scheme
from agegender.models.registry import TRUNKS
from agegender.training.config import dump_config
from agegender.training.datamodule import AgeGenderDataModule
from agegender.training.module import AgeGenderModule

log = logging.getLogger(__name__)


def build(cfg: Mapping[str, Any]) -> tuple[AgeGenderDataModule, AgeGenderModule]:
    """Data module (samples read and split, no images decoded yet) and the Lightning module."""
    trunk_name = cfg["model"]["trunk"]["name"]
    dm = AgeGenderDataModule(cfg["data"], TRUNKS.meta(trunk_name))
    dm.prepare_samples()
    labels = {
        "gender": list(GENDERS),
        "ethnicity": list(ETHNICITIES),
        "age_scheme": dm.scheme,
        "age_groups": list(get_scheme(dm.scheme).labels),
        "attributes": list(dm.attribute_names),
    }
    module = AgeGenderModule(cfg, dm.dims, dm.stats, dm.preprocess(), labels)
    if cfg["model"].get("init_from"):
        init_weights(module.model, cfg["model"]["init_from"])
    if cfg["trainer"].get("channels_last"):
        module.model.to(memory_format=torch.channels_last)
    return dm, module


def init_weights(model: torch.nn.Module, source: str) -> dict[str, int]:
    """Copy into ``model`` every tensor of ``source`` (bundled model name, package or checkpoint) whose
    name and shape match; fitted temperatures are left at 1 (they are refitted after training). Returns the
    counts; an error if nothing matches (a different architecture)."""
    from agegender.bundled import resolve_model_path
    from agegender.models.package import load_bundle

    src = load_bundle(resolve_model_path(source)).model.state_dict()
    own = model.state_dict()
    take = {k: v for k, v in src.items()
            if k in own and own[k].shape == v.shape and not k.endswith("temperature")}
    if not any(k.startswith("trunk.") for k in take):  # heads alone on another trunk would be meaningless
        raise AgeGenderError(f"model.init_from={source!r}: no trunk weight matches this network; it needs the same trunk",
                             code="bad_config")
    model.load_state_dict(take, strict=False)
    skipped = len(own) - len(take)
    log.warning("init_from %s: %d tensors copied, %d kept as initialised", source, len(take), skipped)
    return {"copied": len(take), "kept": skipped}


def _ema_callback(ema: Mapping[str, Any]) -> EMAWeightAveraging:
    """``trainer.ema`` → an EMA of the weights (batch-norm statistics included); unknown keys are a config error."""
    unknown = set(ema) - {"decay", "start_step"}
    if unknown:
        raise AgeGenderError(f"trainer.ema: unknown key(s) {sorted(unknown)}; valid: decay, start_step",
                             code="bad_config")
    decay = float(ema.get("decay", 0.999))
    if not 0.0 < decay < 1.0:
        raise AgeGenderError(f"trainer.ema.decay must be between 0 and 1, got {decay}", code="bad_config")
    return EMAWeightAveraging(decay=decay, update_starting_at_step=int(ema.get("start_step", 0)))


def _resume_checkpoint(out: Path) -> str:
    """``<out>/checkpoints/last.ckpt``, checked to be a readable checkpoint before any data is read."""
    from agegender.models.package import load_checkpoint

    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise AgeGenderError(f"--resume: no checkpoint at {last}; train once without --resume first",
                             code="missing_file")
    try:
        load_checkpoint(last)
    except AgeGenderError as e:
        best = out / "checkpoints" / "best.ckpt"
        hint = (f"copy {best} over it to resume from the best epoch, or delete it" if best.is_file()
                else "delete it")
        raise AgeGenderError(f"--resume: {e}; {hint} to start over", code=e.code) from None
    return str(last)


def run_training(cfg: Mapping[str, Any], output: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``output`` (``resume``: from its ``last.ckpt``); the run's facts, ``{}`` on processes
    other than rank 0."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t = cfg["trainer"]
    if t.get("threads"):
        torch.set_num_threads(int(t["threads"]))
    ckpt_path = _resume_checkpoint(out) if resume else None
    L.seed_everything(int(cfg.get("seed", 42)), workers=True, verbose=False)
    dm, module = build(cfg)
    (out / "config.yaml").write_text(dump_config(cfg))
    has_val = len(dm.split.get("val", [])) > 0
    monitor = t.get("checkpoint_monitor") if has_val else None
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor,
                           mode=t.get("checkpoint_mode", "min"), save_top_k=1)
    # last.ckpt is the latest epoch (what --resume continues from). Not `save_last=True`: since Lightning
    # 2.6 that writes last.ckpt only when `best` improves, so a run whose best epoch was the 4th of 10
    # would resume from the 4th.
    latest = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                             enable_version_counter=False)
    callbacks: list[Any] = [ckpt, latest, LearningRateMonitor(logging_interval="epoch")]
    es = t.get("early_stopping")
    if es and has_val:
        callbacks.append(EarlyStopping(monitor=es.get("monitor", "val/loss"), patience=int(es.get("patience", 5)),
                                       mode=es.get("mode", "min")))
    ema = t.get("ema")
    if ema:
        callbacks.append(_ema_callback(ema))
    if t.get("progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    trainer = L.Trainer(
        max_epochs=int(t["max_epochs"]),
        max_steps=int(t.get("max_steps", -1)),
        accelerator=t.get("accelerator", "cpu"),
        devices=t.get("devices", 1),
        strategy=t.get("strategy", "auto"),
        num_nodes=int(t.get("num_nodes", 1)),
        precision=t.get("precision", "32-true"),
        limit_train_batches=t.get("limit_train_batches"),
        limit_val_batches=t.get("limit_val_batches") if has_val else 0,
        log_every_n_steps=int(t.get("log_every_n_steps", 20)),
        gradient_clip_val=t.get("gradient_clip_val"),
        deterministic=bool(t.get("deterministic", False)),
        callbacks=callbacks,
        logger=CSVLogger(str(out), name="logs"),
        default_root_dir=str(out),
        enable_progress_bar=bool(t.get("progress_bar", True)),
        enable_model_summary=False,
    )
    t0 = time.time()
    # weights_only: the checkpoint is read with torch's restricted unpickler, which cannot run code
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    train_seconds = module.train_seconds() if module._fit_t0 else time.time() - t0
    if trainer.global_rank != 0:
        return {}
    best = ckpt.best_model_path or str(out / "checkpoints" / "last.ckpt")
    n_params = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    return {
        "name": cfg.get("name"),
        "best_checkpoint": best,
        "epochs_run": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "train_seconds": round(train_seconds, 1),
        "parameters": int(n_params),
        "read_summary": dm.read_summary,
        "split_sizes": {k: len(v) for k, v in dm.split.items()},
    }
