"""Trained-model files: Lightning checkpoints (``.ckpt``) and self-describing model packages (``.pt``).

A package carries, next to the weights, everything needed to run them correctly — the config that
built the network, task sizes, preprocessing (input size, resize, mean/std, channel order, crop
margin), label names and a model card — like torchvision's ``weights.transforms()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.multitask import build_model

PACKAGE_FORMAT = "agegender-model"
PACKAGE_VERSION = 1


@dataclass
class ModelBundle:
    """A ready network plus the metadata that says how to feed and read it."""

    model: nn.Module
    config: dict[str, Any]
    dims: dict[str, int]
    preprocess: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def age_scheme(self) -> str:
        return self.config.get("data", {}).get("age_scheme", "adience8")

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor, tta_flip: bool = False) -> dict[str, np.ndarray]:
        """Decoded predictions for a preprocessed batch; ``tta_flip`` averages with the mirrored batch."""
        x = x.contiguous(memory_format=torch.channels_last)
        dec = self.model.decode(self.model(x))
        if tta_flip:
            dec2 = self.model.decode(self.model(torch.flip(x, dims=[3])))
            dec = {k: (v + dec2[k]) / 2 for k, v in dec.items()}
        return {k: v.float().cpu().numpy() for k, v in dec.items()}

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.config.get("name") or Path(self.source).stem)


def _torch_load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            # Lightning checkpoints may hold objects the safe unpickler refuses; they are the user's own files.
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise AgeGenderError(f"{path} is not a readable model file ({type(e).__name__}: {e})", code="bad_model") from None


def load_bundle(path: str | Path) -> ModelBundle:
    """Load a Lightning checkpoint or a model package into an eval-mode :class:`ModelBundle`."""
    p = Path(path)
    if not p.is_file():
        raise AgeGenderError(f"model file {p} not found; give a .ckpt/.pt path or a bundled model name", code="missing_file")
    raw = _torch_load(p)
    if not isinstance(raw, dict):
        raise AgeGenderError(f"{p} is not an agegender model file", code="bad_model")
    if raw.get("format") == PACKAGE_FORMAT:
        hp, state, meta = raw, raw["state_dict"], dict(raw.get("meta") or {})
    elif "hyper_parameters" in raw and "state_dict" in raw:
        hp = raw["hyper_parameters"]
        state = {k[len("model."):]: v for k, v in raw["state_dict"].items() if k.startswith("model.")}
        meta = {"epoch": raw.get("epoch"), "global_step": raw.get("global_step")}
    else:
        raise AgeGenderError(f"{p} is neither an agegender package nor a Lightning checkpoint", code="bad_model")
    config = dict(hp["config"])
    model = build_model(config["model"], hp["dims"], stats=None, with_losses=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()
             if not k.startswith(("losses.", "weighting."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith(("losses.", "weighting."))]
    if missing or unexpected:
        raise AgeGenderError(f"{p}: weights do not match the network (missing {missing[:3]}, unexpected {unexpected[:3]})",
                             code="bad_model")
    model.eval()
    return ModelBundle(model, config, dict(hp["dims"]), dict(hp.get("preprocess") or {}), dict(hp.get("labels") or {}),
                       meta, str(p))


def save_package(bundle: ModelBundle, path: str | Path, half: bool = False, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a self-describing model package (optionally with fp16 weights to halve the file)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in bundle.model.state_dict().items()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": PACKAGE_FORMAT,
            "version": PACKAGE_VERSION,
            "config": bundle.config,
            "dims": bundle.dims,
            "preprocess": bundle.preprocess,
            "labels": bundle.labels,
            "meta": {**bundle.meta, **dict(meta or {})},
            "state_dict": state,
        },
        out,
    )
    return out
