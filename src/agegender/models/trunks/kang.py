"""Kang et al.'s networks (kang2019 §III.B–C): the shallow gender CNN, the LeNet age CNN, and the shared
convolutions of their multi-task CNN, all on 128×128 grayscale faces.

Where the paper is silent or contradicts itself we decided as follows (the authors' released TensorFlow code,
github.com/htkang369/age_gender_classification, was read to settle some of these):

- Grayscale. §III.C says the multi-task net takes 128×128×1 grayscale input, and the LeNet's 156 first-layer
  parameters (§III.B.2: 6 filters × (5·5 + 1)) also imply one channel; the authors' code uses one channel
  everywhere. Our nets keep the RGB trunk contract and convert with fixed BT.601 luma weights in front of
  conv1 (``grayscale=False`` gives an RGB conv1 instead).
- Shallow convolutions (§III.B.1 and §III.C list, shared by the gender and multi-task nets): conv1 32@7×7
  stride 2, conv2 64@5×5, conv3 64@3×3, each conv -> ReLU -> max-pool (§III.C), then LRN after the first
  two only (§III.B.1 and the authors' code; §III.C lists it after all three). §III.C's output sizes
  64→32→32→16→16→8 fix the strides: conv1 stride 2 ("padding 2" is TF's SAME; we pad 3 to get its 64×64),
  conv2/conv3 stride 1 (its "stride 2" for them contradicts its own 32×32 and 16×16 outputs), and 3×3/2
  pooling padded 1 (the code's SAME 3×3/2 pool). Output 64×8×8 = 4096 at 128 px.
- Gender net FC layers: §III.B.1 only says "two fully connected layers"; we take the widths §III.C gives the
  multi-task net, FC6 = 512 and FC7 = 100, each ReLU + dropout (rate not given: 0.5). ``fc=(512,)``
  reproduces the authors' released gender net (one hidden FC).
- Multi-task net: §III.C shares the three conv layers; its FC6/FC7/FC8 are "parallel" per task, so the
  trunk is the convolutions only (``out_features`` = 4096); each task's FC6 512 -> FC7 100 -> FC8 branch is
  its head (``hidden: [512, 100]``, dropout 0.5). The authors' code also shares FC6: ``shared_fc=512``.
- LeNet (§III.B.2): conv 6@5×5 (128 -> 124), max-pool 2 (-> 62), conv 16@5×5 (-> 58), max-pool 2 (-> 29),
  conv 120@5×5 (-> 25), then the "sixth and seventh" FC layers on the 120×25×25 maps. Widths are not given:
  we use LeNet-5's 120 and 84. ReLU activations (the paper describes LeNet-5's sigmoid subsampling but calls
  it max-pooling), no dropout (none is mentioned). The paper's "416 parameters" for conv2 count one input
  map per filter; a full connection to the 6 maps has 2416.
- LRN as Levi–Hassner's (size 5, alpha 1e-4, beta 0.75; eq. 6 leaves them open); PyTorch default init.
- An adaptive average pool closes each ``features`` (identity at 128 px) so other input sizes work.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from agegender.models.registry import TRUNKS
from agegender.models.trunks._common import (
    ConvFCNet,
    Grayscale,
    lrn,
    no_pretrained,
)

KANG_INPUT = 128  # faces resized to 128×128 (§III.B.1, §IV.A)
KANG_POOLED = 8  # conv3 output 64×8×8 (§III.C, FC6)
LENET_POOLED = 25  # conv5 output 120×25×25 at 128 px (§III.B.2)


def _stem(grayscale: bool) -> tuple[list[nn.Module], int]:
    return ([Grayscale()], 1) if grayscale else ([], 3)


def kang_features(grayscale: bool = True) -> nn.Sequential:
    """The shallow gender / multi-task convolutions (§III.B.1, §III.C); output (B, 64, 8, 8)."""
    stem, c = _stem(grayscale)
    return nn.Sequential(
        *stem,
        nn.Conv2d(c, 32, kernel_size=7, stride=2, padding=3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        lrn(),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        lrn(),
        nn.Conv2d(64, 64, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(KANG_POOLED),
    )


def lenet_features(grayscale: bool = True) -> nn.Sequential:
    """LeNet layers 1–5 (§III.B.2); output (B, 120, 25, 25)."""
    stem, c = _stem(grayscale)
    return nn.Sequential(
        *stem,
        nn.Conv2d(c, 6, kernel_size=5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 120, kernel_size=5),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(LENET_POOLED),
    )


_META = {
    "input_size": KANG_INPUT,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "paper": "kang2019",
    "pretrained": False,
}


@TRUNKS.register("kang_gender", **_META)
def kang_gender(
    pretrained: bool = False, fc: Sequence[int] = (512, 100), dropout: float = 0.5, grayscale: bool = True
) -> ConvFCNet:
    """Shallow gender CNN (§III.B.1): convs + FC 512 + FC 100; ``embed`` -> ``{"fc1", "fc2"}``."""
    if pretrained:
        raise no_pretrained("kang_gender")
    return ConvFCNet(kang_features(grayscale), 64 * KANG_POOLED**2, fc, dropout)


@TRUNKS.register("kang_lenet", **_META)
def kang_lenet(
    pretrained: bool = False, fc: Sequence[int] = (120, 84), dropout: float = 0.0, grayscale: bool = True
) -> ConvFCNet:
    """LeNet age CNN (§III.B.2): 3 convs + FC 120 + FC 84; ``embed`` -> ``{"fc1", "fc2"}``.

    §III.B.2 mentions no dropout for LeNet (and reports it overfits, §IV.C), so ``dropout`` defaults to 0.
    """
    if pretrained:
        raise no_pretrained("kang_lenet")
    return ConvFCNet(lenet_features(grayscale), 120 * LENET_POOLED**2, fc, dropout)


@TRUNKS.register("kang_multitask_trunk", **_META)
def kang_multitask_trunk(
    pretrained: bool = False, shared_fc: int | None = None, dropout: float = 0.5, grayscale: bool = True
) -> ConvFCNet:
    """Shared convolutions of the multi-task CNN (§III.C); ``out_features`` = 4096, ``embed`` -> ``{"conv"}``.

    ``shared_fc=512`` also shares FC6 as the authors' code does (then ``embed`` -> ``{"fc1"}``).
    """
    if pretrained:
        raise no_pretrained("kang_multitask_trunk")
    return ConvFCNet(
        kang_features(grayscale), 64 * KANG_POOLED**2, (shared_fc,) if shared_fc else (), dropout
    )
