"""dey_aggarwal's "Transformer" base model (§3.4.6): MobileNet features, then a Transformer encoder over
the spatial feature tokens, then global max pooling.

The paper says only that the input goes through MobileNet, its output through a Transformer encoder (self-
attention + feed-forward layers) and a global max pooling layer. Our choices: MobileNetV2 features (1280 ×
h × w, h = w = ceil(input / 32), 7×7 at 224 px; torchvision has no MobileNet v1), a 1×1 convolution to
``d_model`` = 256, a learned positional embedding sized for ``input_size`` (bilinearly resized when the input
differs), 2 pre-norm encoder layers with 4 heads, feed-forward 512, dropout 0.1, GELU; then max (or mean) over
tokens. ``out_features`` = ``d_model``. ``pretrained=True`` loads torchvision's ImageNet MobileNetV2 (needs
internet); the projection and encoder always start random.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from agegender.models.registry import TRUNKS
from agegender.models.trunks._common import check_pool
from agegender.models.trunks.torchvision_backbones import load_torchvision_model

MOBILENET_V2_STRIDE = 32  # five stride-2 3×3 convs with padding 1: each maps n -> ceil(n / 2)
MOBILENET_V2_CHANNELS = 1280


class MobileNetTransformer(nn.Module):
    """MobileNetV2 features -> 1×1 projection + position embedding -> Transformer encoder -> token pool."""

    def __init__(
        self,
        pretrained: bool = False,
        d_model: int = 256,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        input_size: int = 224,
        pool: str = "max",
    ) -> None:
        super().__init__()
        self.backbone = load_torchvision_model(
            "mobilenet_v2", pretrained, trunk="mobilenet_transformer"
        ).features
        self.proj = nn.Conv2d(MOBILENET_V2_CHANNELS, d_model, kernel_size=1)
        grid = math.ceil(input_size / MOBILENET_V2_STRIDE)
        self.pos_embed = nn.Parameter(torch.zeros(1, d_model, grid, grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.pool = check_pool(pool)
        self.out_features = d_model

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Encoded feature tokens, (B, h·w, d_model)."""
        f = self.proj(self.backbone(x))
        pos = self.pos_embed
        if pos.shape[-2:] != f.shape[-2:]:
            pos = F.interpolate(pos, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.encoder((f + pos).flatten(2).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)
        return t.amax(dim=1) if self.pool == "max" else t.mean(dim=1)


@TRUNKS.register(
    "mobilenet_transformer",
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    paper="dey_aggarwal",
    pretrained=True,
    pool="max",
)
def mobilenet_transformer(pretrained: bool = False, **kwargs) -> MobileNetTransformer:
    """kwargs: d_model (256), nhead (4), num_layers (2), dim_feedforward (512), dropout (0.1),
    input_size (224; sizes the positional embedding), pool ('max' | 'avg')."""
    return MobileNetTransformer(pretrained=pretrained, **kwargs)
