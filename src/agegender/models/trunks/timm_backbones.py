"""timm backbones as trunks: Xception, dey_aggarwal's best base model (§3.4.4, Tables 1–3), and the generic
wrapper the EfficientNet-Lite0 trunk reuses.

dey_aggarwal used Keras' ``Xception`` (Chollet 2017); timm's ``legacy_xception`` is that exact network (its
weights are the Keras/TF ImageNet ones, preprocessed with mean = std = 0.5), so we use it rather than the
aligned ``xception41/65`` variants. Input 299 (Keras' default); global max pooling as in §3.4.4.
``pretrained=True`` downloads through timm; offline it raises ``AgeGenderError(code="weights_unavailable")``.
"""

from __future__ import annotations

import torch
from torch import nn

import agegender._compat  # noqa: F401  (timm imports torchvision)
from agegender.models.registry import TRUNKS
from agegender.models.trunks._common import check_pool, weights_download

XCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)  # timm legacy_xception pretrained_cfg
XCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


class TimmTrunk(nn.Module):
    """A timm model built with ``num_classes=0`` (no classifier): forward gives pooled (B, num_features)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.out_features = int(model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create_timm_model(
    arch: str, pretrained: bool = False, pool: str = "avg", name: str | None = None, **kwargs: object
) -> nn.Module:
    """``timm.create_model(arch, num_classes=0, global_pool=pool)``; download failure: weights_unavailable."""
    import timm

    kwargs = {"num_classes": 0, "global_pool": check_pool(pool), **kwargs}
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **kwargs)
    with weights_download(name or arch):
        return timm.create_model(arch, pretrained=True, **kwargs)


@TRUNKS.register(
    "xception",
    input_size=299,
    mean=XCEPTION_MEAN,
    std=XCEPTION_STD,
    paper="dey_aggarwal",
    pretrained=True,
    pool="max",
)
def xception(pretrained: bool = False, pool: str = "max") -> TimmTrunk:
    """Xception (timm ``legacy_xception``), 2048 features, global max pooling by default (§3.4.4)."""
    return TimmTrunk(create_timm_model("legacy_xception", pretrained, pool, name="xception"))
