"""Experiment configs: YAML files under ``configs/`` merged over defaults, with ``--set key=value`` overrides.

A config names the parts (trunk, heads, losses, data, schedule) and the registries build them.
Unknown keys are rejected with a message listing the valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from agegender.errors import AgeGenderError

#: keys whose value is a free-form mapping (validated by the part that consumes it)
_FREE = {"data.options", "data.split", "data.filter", "data.sampler", "data.teacher", "model.distill",
         "model.distill_embedding", "model.distill_model", "model.young_age", "model.trunk", "model.heads", "model.weighting",
         "model.composition_args", "optim.scheduler", "trainer.early_stopping", "trainer.ema", "eval"}

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "paper": None,
    "table": None,
    "description": "",
    "seed": 42,
    "data": {
        "dataset": "utkface",
        "root": None,
        "options": {},
        # read images that label files place outside data.root (absolute paths, '..'); the reader option
        # allow_outside_root, see agegender.data.readers.READING_RULES
        "allow_outside_root": False,
        "split": {"kind": "stratified", "test": 0.2, "val": 0.15, "seed": 42},
        "age_scheme": "adience8",
        "input_size": None,  # default: the trunk's
        "resize": None,  # eval: resize to this then centre-crop input_size (default: input_size)
        "mean": None,  # default: the trunk's
        "std": None,
        "augment": "standard",
        # keyword arguments of agegender.data.transforms.PhotoDegradation for augment: wild, e.g. {scale: [0.12, 0.7]}
        "degradation": None,
        "batch_size": 32,
        "eval_batch_size": 128,
        "num_workers": 2,
        "cache": True,  # decode + resize every image once into RAM
        "limit": None,  # use only N samples (smoke tests)
        "filter": {},  # e.g. {min_age: 10, max_age: 65} (dey_aggarwal)
        "crop_margin": 0.0,
        # re-weight the training draw: {by: [ethnicity, age_group], power: 1.0} weights each image by
        # 1 / (size of its group, a combination of the listed labels) ** power, so every group is drawn
        # equally often at power 1, in proportion to the square root of its size at 0.5; null: plain shuffle
        "sampler": None,
        # train on several datasets at once: a list of {name, dataset, root, options, split, filter, limit, weight,
        # allow_outside_root}; each source is read and split on its own (missing keys come from this section),
        # labels a source lacks are masked out of their head's loss, validation is scored per source and pooled,
        # and ``weight`` multiplies the source's share of the training draw (1: in proportion to its size)
        "sources": None,
        # a teacher's soft labels for distillation: {task: gender, file: CSV with path,p_male,p_female}
        # (agegender.data.soft_labels); used by model.distill
        "teacher": None,
    },
    "model": {
        "composition": "multitask",
        "composition_args": {},
        "trunk": {"name": "small_cnn", "pretrained": False},
        "heads": {},
        "weighting": {"name": "fixed"},
        # start from another model's weights: a bundled name ("default"), a package (.safetensors) or a checkpoint
        # .ckpt; every tensor whose name and shape match is copied (fine-tuning, staged training)
        "init_from": None,
        # knowledge distillation (Hinton et al. 2015, §2): {task: gender, weight: 1.0, temperature: 1.0} adds
        # weight * T^2 * cross-entropy(teacher probabilities, softmax(logits / T)) on the images data.teacher covers
        "distill": None,
        # feature distillation: {dim: 128, weight: 1.0} trains a linear map of the trunk's features towards the
        # embeddings of a data.teacher entry with task: embedding (cosine distance; training only)
        "distill_embedding": None,
        # distillation from a trained model (agegender.training.teacher): {from: default, weight: 1.0,
        # temperature: 2.0, heads: [...]}; the frozen teacher sees each training batch and every softmax head the
        # two models share is trained towards its softened outputs
        "distill_model": None,
        # a weak age label: {weight: 1.0, young_max: 40, old_min: 30} trains the age distribution of the images
        # whose source gives the 0/1 flag ``young`` (CelebA's "Young" attribute, no exact age) to put its mass at
        # ages <= young_max (young) or >= old_min (not young); see MultiTaskNet._young_loss
        "young_age": None,
    },
    "optim": {
        "name": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "trunk_lr_mult": 1.0,
        "scheduler": {"name": "none"},
    },
    "trainer": {
        "max_epochs": 30,
        "max_steps": -1,
        "early_stopping": {"monitor": "val/loss", "patience": 5, "mode": "min"},
        "checkpoint_monitor": "val/loss",
        "checkpoint_mode": "min",
        "precision": "32-true",
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
        "num_nodes": 1,
        "limit_train_batches": None,
        "limit_val_batches": None,
        "log_every_n_steps": 20,
        "channels_last": True,
        "threads": None,
        "gradient_clip_val": None,
        "progress_bar": True,
        "deterministic": False,
        # exponential moving average of the weights (Lightning's EMAWeightAveraging): validation, checkpoints
        # and the final model use the average; e.g. {decay: 0.998, start_step: 300}
        "ema": None,
    },
    "eval": {"tta_flip": False, "ten_crop": False},
}


def _merge(base: dict, over: Mapping, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{prefix}{k}"
        if prefix.rstrip(".") in _FREE or key in _FREE:
            out[k] = copy.deepcopy(v)
            continue
        if k not in base:
            valid = ", ".join(sorted(base)) if base else "(none)"
            raise AgeGenderError(f"unknown config key {key!r}; valid keys here: {valid}", code="bad_config")
        if isinstance(base[k], dict) and isinstance(v, Mapping):
            out[k] = _merge(base[k], v, key + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "trainer.max_epochs=2"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise AgeGenderError(f"--set expects key=value, got {item!r}", code="bad_config")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _deep_update(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """Load a YAML config over :data:`DEFAULTS`, apply ``key=value`` overrides, validate keys."""
    user: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise AgeGenderError(f"config file {p} not found; see configs/ for examples", code="missing_file")
        try:
            user = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise AgeGenderError(f"config {p} is not valid YAML: {e}", code="bad_config") from None
        if not isinstance(user, dict):
            raise AgeGenderError(f"config {p} must be a mapping at the top level", code="bad_config")
    user = _deep_update(user, parse_overrides(overrides))
    user = _deep_update(user, extra)
    return _merge(DEFAULTS, user)


def dump_config(cfg: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False)
