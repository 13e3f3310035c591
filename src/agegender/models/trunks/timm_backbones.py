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
    """A timm model built with ``num_classes=0`` (no classifier): forward gives pooled (B, num_features).

    ``parts > 0`` (the model then built with ``global_pool=""``, giving its last feature map): the global
    average is followed by the averages of ``parts`` horizontal stripes, top to bottom, so the output is
    ``(1 + parts) × num_features`` wide. For pedestrians, stripes are head/torso/legs, as in part-based
    person attribute and re-identification nets (PCB: Sun et al., "Beyond Part Models", ECCV 2018, §3.1).
    The feature map's height must be a multiple of ``parts`` (for ONNX export; 192-px input → 6 rows).
    """

    def __init__(self, model: nn.Module, parts: int = 0) -> None:
        super().__init__()
        self.model = model
        self.parts = int(parts)
        self.out_features = int(model.num_features) * (1 + self.parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model(x)
        if not self.parts:
            return f
        stripes = nn.functional.adaptive_avg_pool2d(f, (self.parts, 1)).flatten(2)  # (B, C, parts)
        return torch.cat([f.mean(dim=(2, 3)), stripes.transpose(1, 2).flatten(1)], dim=1)

    def extra_repr(self) -> str:
        return f"parts={self.parts}" if self.parts else ""


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
