"""Small-scale CNN of jamoliddin_yoo2022 (§IV, Fig. 3–4): six Conv+BN+ReLU(+max-pool) blocks and two FC-512 layers.

The paper gives neither filter counts nor kernel sizes, only "six convolutional layers", BN instead of
LRN, two FC-512 layers with ReLU and dropout 0.5, and 11.5 M parameters (Table 2). Our choice:
3×3 convolutions with 32-64-128-256-512-768 filters, a 2×2 max-pool after each of the first four
blocks (the last two work at 4×4 for a 64×64 input, where most parameters cost little compute), and an
adaptive average pool to 4×4 before the FC layers, so the count is independent of the input size:
11.67 M parameters including the 8-way age and 2-way gender outputs (``agegender models``).
The paper trains at 256×256; on a CPU we default to 64×64 (configurable), noted beside the results.
"""

from __future__ import annotations

import torch
from torch import nn

from agegender.models.registry import TRUNKS
from agegender.registry import options_of

#: (out_channels, max-pool after the block?) for the six blocks
SMALL_CNN_BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, True),
    (64, True),
    (128, True),
    (256, True),
    (512, False),
    (768, False),
)
SMALL_CNN_POOLED = 4  # spatial size fed to FC1 (adaptive average pool)


class SmallCNN(nn.Module):
    """Feature extractor + the two FC-512 layers; ``out_features`` = 512 (fed to the age/gender heads)."""

    def __init__(self, in_channels: int = 3, fc: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for out, pool in SMALL_CNN_BLOCKS:
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(SMALL_CNN_POOLED)
        self.fc1 = nn.Sequential(nn.Linear(c * SMALL_CNN_POOLED**2, fc), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc2 = nn.Sequential(nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.out_features = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc2(self.fc1(x))


@TRUNKS.register("small_cnn", input_size=64, paper="jamoliddin_yoo2022", pretrained=False)
@options_of(SmallCNN)  # a misspelt option is a bad_config error
def small_cnn(pretrained: bool = False, **kwargs) -> SmallCNN:
    if pretrained:
        from agegender.errors import AgeGenderError

        raise AgeGenderError("small_cnn has no pretrained weights; set pretrained: false", code="bad_config")
    return SmallCNN(**kwargs)
