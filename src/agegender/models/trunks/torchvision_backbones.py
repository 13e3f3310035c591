"""torchvision ImageNet backbones as trunks: the baselines of jamoliddin_yoo2022 (Table 2) and the pretrained
base models of dey_aggarwal (§3.4) and chatzitzisi2020 (§3.1), all built by one helper from a table of specs.

Each trunk is the torchvision model without its classifier, followed by global pooling:
- ``pool="max"`` is dey_aggarwal's "global max pooling layer added after the base model" (§3.4.1–3.4.5), so
  it is the default of the backbones only that paper uses (vgg19, inception_v3, mobilenet_v2).
- ``pool="avg"`` is torchvision's own pooling and chatzitzisi2020's ("global average pooling", §3.1), the
  default of resnet50 and of the jamoliddin baselines (``pool: max`` reproduces dey_aggarwal's ResNet50).
- ``keep_fc=True`` (default for alexnet and vgg11) keeps the two 4096-unit FC layers and drops only the last
  1000-way layer: jamoliddin_yoo2022 Table 2 counts 61 M / 133 M parameters for them, i.e. with the FC layers.
  vgg19 defaults to ``keep_fc=False``, dey_aggarwal's Keras ``include_top=False``.

dey_aggarwal's "MobileNet" cites MobileNet v1 (Howard et al. 2017), which torchvision does not have; we use
MobileNetV2 (it also matches the paper's mention of skip connections). ``pretrained=True`` downloads the
torchvision ``DEFAULT`` weights; offline that raises ``AgeGenderError(code="weights_unavailable")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import agegender._compat  # noqa: F401  (torchvision's missing nms operator, before importing torchvision)
from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from agegender.errors import AgeGenderError
from agegender.models.registry import TRUNKS
from agegender.models.trunks._common import GlobalPool, weights_download

_INCEPTION_LAYERS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)  # Inception3's layers up to its pool, without the auxiliary classifier


class _InceptionBody(nn.Module):
    """Inception v3 up to Mixed_7c. ``transform_input`` (set by torchvision for the Google weights) maps
    ImageNet-normalised input to the (x - 0.5) / 0.5 scaling those weights expect, as torchvision does."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.transform_input = bool(model.transform_input)
        self.layers = nn.Sequential(*[getattr(model, n) for n in _INCEPTION_LAYERS])
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            x = (x * self._std + self._mean - 0.5) / 0.5
        return self.layers(x)


def _features(channels: int) -> Callable[[nn.Module], tuple[nn.Module, int]]:
    return lambda m: (m.features, channels)


def _resnet(m: nn.Module) -> tuple[nn.Module, int]:
    return nn.Sequential(*list(m.children())[:-2]), m.fc.in_features


def _densenet(m: nn.Module) -> tuple[nn.Module, int]:
    # torchvision applies the final ReLU functionally in DenseNet.forward
    return nn.Sequential(m.features, nn.ReLU(inplace=True)), m.classifier.in_features


def _inception(m: nn.Module) -> tuple[nn.Module, int]:
    return _InceptionBody(m), m.fc.in_features


@dataclass(frozen=True)
class BackboneSpec:
    """One torchvision backbone: how to cut it, its default input size, pooling and paper."""

    name: str  # registry name = torchvision builder name
    body: Callable[[nn.Module], tuple[nn.Module, int]]  # model -> (conv body giving (B, C, h, w), C)
    paper: str
    input_size: int = 224
    pool: str = "avg"
    keep_fc: bool | None = None  # None: the model has no hidden FC layers to keep
    scratch_kwargs: dict[str, Any] = field(default_factory=dict)  # builder kwargs when pretrained=False


SPECS: tuple[BackboneSpec, ...] = (
    BackboneSpec("alexnet", _features(256), "jamoliddin_yoo2022", keep_fc=True),
    BackboneSpec("vgg11", _features(512), "jamoliddin_yoo2022", keep_fc=True),
    BackboneSpec("resnet18", _resnet, "jamoliddin_yoo2022"),
    BackboneSpec("densenet161", _densenet, "jamoliddin_yoo2022"),
    BackboneSpec("vgg19", _features(512), "dey_aggarwal", pool="max", keep_fc=False),
    BackboneSpec("resnet50", _resnet, "chatzitzisi2020"),
    BackboneSpec(
        "inception_v3",
        _inception,
        "dey_aggarwal",
        input_size=299,
        pool="max",
        scratch_kwargs={"aux_logits": False, "init_weights": True},
    ),
    BackboneSpec("mobilenet_v2", _features(1280), "dey_aggarwal", pool="max"),
)


class TorchvisionTrunk(nn.Module):
    """``body`` (convolutions) then ``neck`` (global pooling, or the kept FC layers) -> out_features."""

    def __init__(self, body: nn.Module, neck: nn.Module, out_features: int) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))


def load_torchvision_model(name: str, pretrained: bool, trunk: str | None = None, **kwargs: Any) -> nn.Module:
    """``torchvision.models.<name>`` with the DEFAULT ImageNet weights, or randomly initialised.

    ``trunk`` names the trunk in the offline error message (default: ``name``).
    """
    import torchvision

    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder(weights=None, **kwargs)
    with weights_download(trunk or name):
        return builder(weights="DEFAULT", **kwargs)


def build_torchvision_trunk(
    spec: BackboneSpec, pretrained: bool = False, pool: str | None = None, keep_fc: bool | None = None
) -> TorchvisionTrunk:
    """Build the trunk ``spec`` describes; ``pool`` and ``keep_fc`` override the spec's defaults.

    ``keep_fc=True`` (alexnet/vgg only) keeps torchvision's adaptive pool and hidden FC layers instead of
    global pooling, so ``pool`` must then be left unset.
    """
    keep_fc = spec.keep_fc if keep_fc is None else keep_fc
    if keep_fc and spec.keep_fc is None:
        raise AgeGenderError(f"{spec.name} has no hidden FC layers to keep; drop keep_fc", code="bad_config")
    if keep_fc and pool:
        raise AgeGenderError(f"{spec.name}: pool applies only with keep_fc: false", code="bad_config")
    model = load_torchvision_model(spec.name, pretrained, **({} if pretrained else spec.scratch_kwargs))
    body, channels = spec.body(model)
    if keep_fc:
        fcs = list(model.classifier.children())[:-1]  # all but the 1000-way output layer
        neck: nn.Module = nn.Sequential(model.avgpool, nn.Flatten(1), *fcs)
        out = next(m for m in reversed(fcs) if isinstance(m, nn.Linear)).out_features
    else:
        neck, out = GlobalPool(pool or spec.pool), channels
    return TorchvisionTrunk(body, neck, out)


def _register(spec: BackboneSpec) -> None:
    def builder(
        pretrained: bool = False, pool: str | None = None, keep_fc: bool | None = None
    ) -> TorchvisionTrunk:
        return build_torchvision_trunk(spec, pretrained=pretrained, pool=pool, keep_fc=keep_fc)

    builder.__name__ = spec.name
    builder.__doc__ = (
        f"torchvision {spec.name} trunk ({spec.paper}); kwargs: pool='avg'|'max' "
        f"(default {spec.pool!r}), keep_fc (default {spec.keep_fc})."
    )
    TRUNKS.register(
        spec.name,
        input_size=spec.input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        paper=spec.paper,
        pretrained=True,
        pool=spec.pool,
    )(builder)


for _spec in SPECS:
    _register(_spec)
