"""Trunks (feature extractors) registered in ``TRUNKS``: importing this package registers every one.

>>> from agegender.models.trunks import TRUNKS
>>> TRUNKS.build("levi_hassner").out_features
512
"""

from __future__ import annotations

from typing import Any

import torch

from agegender.models.registry import TRUNKS
from agegender.models.trunks import (  # noqa: F401  (registration)
    dlib_resnet,
    efficientnet_lite,
    kang,
    levi_hassner,
    mobilenet_transformer,
    small_cnn,
    timm_backbones,
    torchvision_backbones,
)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build_shapes_only(name: str) -> torch.nn.Module:
    # On the meta device nothing is allocated or initialised, so even vgg19 builds in milliseconds.
    try:
        with torch.device("meta"):
            return TRUNKS.build(name, pretrained=False)
    except (RuntimeError, NotImplementedError):  # a builder that needs real tensors while building
        return TRUNKS.build(name, pretrained=False)


def trunk_info(names: list[str] | None = None) -> list[dict[str, Any]]:
    """For each registered trunk (or ``names``): name, parameters (built with pretrained=False),
    out_features, input_size, mean, std, paper and whether pretrained weights exist."""
    rows = []
    for name in names or TRUNKS.names():
        meta = TRUNKS.meta(name)
        trunk = _build_shapes_only(name)
        rows.append(
            {
                "name": name,
                "parameters": count_parameters(trunk),
                "out_features": int(trunk.out_features),
                "input_size": meta.get("input_size"),
                "mean": meta.get("mean"),
                "std": meta.get("std"),
                "paper": meta.get("paper"),
                "pretrained": bool(meta.get("pretrained", False)),
            }
        )
    return rows


__all__ = ["TRUNKS", "count_parameters", "trunk_info"]
