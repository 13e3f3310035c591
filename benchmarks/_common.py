"""Shared by the benchmark scripts: pick the model to measure (bundled, given, or a freshly built stand-in)
and describe the machine, so every printed figure says what it was measured on."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import agegender  # noqa: F401  (torchvision compat first)
from agegender.errors import AgeGenderError


def build_standin(trunk: str, folder: str | Path) -> Path:
    """A random-weight package with the default model's heads (age distribution, gender, ethnicity) on
    ``trunk`` at its default input size: same architecture and cost as a trained one, meaningless outputs."""
    from agegender.labels import ETHNICITIES, GENDERS, get_scheme
    from agegender.models import TRUNKS, build_model
    from agegender.models.package import ModelBundle, save_package

    meta = TRUNKS.meta(trunk)
    size = int(meta.get("input_size") or 112)
    heads = {
        "age": {"type": "age_distribution"},
        "gender": {"type": "classification"},
        "ethnicity": {"type": "classification"},
    }
    model_cfg = {"trunk": {"name": trunk, "pretrained": False}, "heads": heads}
    dims = {"age_group": 8, "gender": 2, "ethnicity": 5, "attributes": 0, "pedestrian": 9}
    model = build_model(model_cfg, dims, stats=None, with_losses=False).eval()
    mean = list(meta.get("mean") or (0.485, 0.456, 0.406))
    std = list(meta.get("std") or (0.229, 0.224, 0.225))
    pre = {
        "input_size": [size, size],
        "resize": [size, size],
        "mean": mean,
        "std": std,
        "channel_order": "RGB",
        "crop_margin": 0.0,
    }
    labels = {
        "gender": list(GENDERS),
        "ethnicity": list(ETHNICITIES),
        "age_scheme": "adience8",
        "age_groups": list(get_scheme("adience8").labels),
        "attributes": [],
    }
    config = {
        "name": f"standin-{trunk}",
        "model": model_cfg,
        "data": {"dataset": "utkface", "age_scheme": "adience8"},
    }
    bundle = ModelBundle(
        model, config, dims, pre, labels, {"name": f"standin-{trunk}-{size}px (random weights)"}
    )
    return save_package(bundle, Path(folder) / f"standin-{trunk}.pt")


def resolve_model(name: str, fallback_trunk: str) -> tuple[str, str]:
    """(model path, description): ``name`` if it resolves, else a stand-in on ``fallback_trunk``."""
    from agegender.inference.registry import resolve_model_path

    try:
        path = resolve_model_path(name)
        return str(path), f"{name} ({path})"
    except AgeGenderError as e:
        folder = tempfile.mkdtemp(prefix="agegender-bench-")
        path = build_standin(fallback_trunk, folder)
        return str(
            path
        ), f"stand-in: random-weight {fallback_trunk} package (model {name!r} unavailable: {e})"


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {load:.2f}"
    )
