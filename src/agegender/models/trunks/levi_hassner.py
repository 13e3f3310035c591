"""Levi & Hassner's three-conv, two-FC network (aminian_noubir §4.1, Fig. 2), the trunk of the gender and
age classifiers of the cross-modal method; ``features`` is exposed so compositions can share the convolutions.

Layer sizes for a 227×227 crop (aminian_noubir §4.1, "Layer 1"–"Layer 5"):

- conv1 96@7×7, stride 4, no padding -> 96×56×56; ReLU; max-pool 3/2 -> 27×27; LRN.
  The paper's Fig. 2 caption and its "Layer 1" heading say 7×7 (as in Levi & Hassner's Caffe model), while
  the sentence after it computes with an 11×11 AlexNet receptive field; we follow the caption and
  Levi–Hassner.
- conv2 256@5×5, stride 1, pad 2 -> 27×27; ReLU; max-pool 3/2 -> 13×13; LRN.
- conv3 384@3×3, stride 1, pad 1 -> 13×13; ReLU; max-pool 3/2 -> 384×6×6 = 13824, the FC input size the paper
  states for Layer 4. (The paper's intermediate 28/14 sizes come from Caffe's ceil-mode pooling, which would
  end at 7×7 = 18816; floor-mode pooling is what gives its 13824.)
- fc1 512, ReLU, dropout 0.5; fc2 512, ReLU, dropout 0.5 (Layers 4–5).

LRN: local_size 5, alpha 1e-4, beta 0.75 (Levi–Hassner's Caffe prototxt). Initialisation: zero-mean
Gaussian, σ = 0.01, biases 0 (§4.3). An adaptive average pool to 6×6 closes ``features``: it is the identity
at 227 px and lets other input sizes reach the same FC layers.

Preprocessing: Caffe's convention of mean subtraction on the 0–255 scale, no division (mean = ImageNet mean,
std = 1/255). It matters here: with σ = 0.01 weights, unit-variance inputs would shrink activations ~100×.
"""

from __future__ import annotations

from torch import nn

from agegender.data.transforms import IMAGENET_MEAN
from agegender.models.registry import TRUNKS
from agegender.models.trunks._common import ConvFCNet, gaussian_init_, lrn, no_pretrained
from agegender.registry import options_of

LEVI_HASSNER_INPUT = 227  # 227×227 crops of 256×256 images (§4.1)
LEVI_HASSNER_POOLED = 6  # conv3 output is 384×6×6 at 227 px (§4.1, Layer 4)
#: Caffe convention: subtract the mean on the 0–255 scale, no scaling (x_in = (x - mean) * 255)
CAFFE_STD: tuple[float, float, float] = (1 / 255, 1 / 255, 1 / 255)


def levi_hassner_features() -> nn.Sequential:
    """The three convolutional layers (§4.1, Layers 1–3); output (B, 384, 6, 6)."""
    return nn.Sequential(
        nn.Conv2d(3, 96, kernel_size=7, stride=4),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        lrn(),
        nn.Conv2d(96, 256, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        lrn(),
        nn.Conv2d(256, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.AdaptiveAvgPool2d(LEVI_HASSNER_POOLED),
    )


class LeviHassner(ConvFCNet):
    """Convs + fc1 + fc2; ``forward`` returns fc2 (``out_features`` = 512); ``embed`` gives
    ``{"fc1", "fc2"}``, the gender embeddings of the cross-modal method (§4.2).
    """

    def __init__(self, fc: int = 512, dropout: float = 0.5, init_std: float | None = 0.01) -> None:
        super().__init__(levi_hassner_features(), 384 * LEVI_HASSNER_POOLED**2, (fc, fc), dropout)
        if init_std is not None:
            gaussian_init_(self, init_std)


@TRUNKS.register(
    "levi_hassner",
    input_size=LEVI_HASSNER_INPUT,
    mean=IMAGENET_MEAN,
    std=CAFFE_STD,
    paper="aminian_noubir",
    pretrained=False,
)
@options_of(LeviHassner)  # a misspelt option is a bad_config error
def levi_hassner(pretrained: bool = False, **kwargs) -> LeviHassner:
    """Levi–Hassner net; kwargs ``fc`` (512), ``dropout`` (0.5), ``init_std`` (0.01; None: PyTorch init)."""
    if pretrained:
        raise no_pretrained("levi_hassner")
    return LeviHassner(**kwargs)
