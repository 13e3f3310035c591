"""One model's input made into another's: a batch normalised and sized for model A, re-normalised per channel to
model B's mean and std (back to pixels by A's, then B's) and resized to B's input size (bilinear). A distillation
teacher of another trunk sees the student's batch through one (``agegender.training.teacher``), and so does an
ensemble member that takes other input than the ensemble (``agegender.models.ensemble``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from agegender.data.preprocess import size_hw
from agegender.errors import AgeGenderError


def input_size(preprocess: Mapping[str, Any]) -> tuple[int, int] | None:
    """``preprocess["input_size"]`` as (height, width), or None when the preprocessing does not say."""
    size = preprocess.get("input_size")
    return size_hw(size) if size else None


def renormalise(source: Mapping[str, Any], target: Mapping[str, Any], what: str = "model",
                names: tuple[str, str] = ("the input", "the model")) -> tuple[list[float], list[float]] | None:
    """(scale, shift) per channel taking input normalised by ``source``'s mean/std to ``target``'s: pixel = x·σs + μs,
    then (pixel − μt) / σt; None when both normalise alike (or either does not say how)."""
    keys = ("mean", "std")
    if not all(k in target and k in source for k in keys):
        return None
    mt, st, ms, ss = (list(map(float, _as_list(d[k]))) for d in (target, source) for k in keys)
    if (mt, st) == (ms, ss):
        return None
    if not len(mt) == len(st) == len(ms) == len(ss):
        raise AgeGenderError(f"{what}: {names[1]} normalises {len(mt)} channels and {names[0]} {len(ms)}",
                             code="bad_config")
    return [b / c for b, c in zip(ss, st)], [(a - m) / c for a, m, c in zip(ms, mt, st)]


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class InputAdapter(nn.Module):
    """``x · scale + shift`` per channel, then a bilinear resize to ``size`` (antialiased when it shrinks).

    ``source_size``, the input's size when known, makes the resize one of constant factors, whose output size ONNX
    can infer (an exported graph needs it where a trunk pools to a fixed grid)."""

    def __init__(self, scale: list[float] | None = None, shift: list[float] | None = None,
                 size: tuple[int, int] | None = None, source_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size) if size else None
        self.source_size = tuple(int(s) for s in source_size) if source_size else None
        # derived from the two models' preprocessing, so kept out of the state dict
        self.register_buffer("scale", None if scale is None else torch.tensor(scale).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("shift", None if shift is None else torch.tensor(shift).view(1, -1, 1, 1),
                             persistent=False)

    @classmethod
    def between(cls, source: Mapping[str, Any], target: Mapping[str, Any], what: str = "model",
                names: tuple[str, str] = ("the input", "the model")) -> InputAdapter | None:
        """The adapter from input prepared by ``source`` (a preprocessing dict) to ``target``'s; None when the two
        take the same input. ``what`` and ``names`` (source's, target's) word the error of a mismatch."""
        if str(source.get("channel_order", "RGB")) != str(target.get("channel_order", "RGB")):
            raise AgeGenderError(f"{what}: {names[1]} reads {target.get('channel_order')} images and {names[0]} "
                                 f"{source.get('channel_order')}; combine models of one channel order",
                                 code="bad_config")
        affine = renormalise(source, target, what, names)
        size = input_size(target)
        if affine is None and (size is None or size == input_size(source)):
            return None
        return cls(*(affine or (None, None)), size=size, source_size=input_size(source))

    def config(self) -> dict[str, Any]:
        """What rebuilds this adapter (``InputAdapter(**config)``)."""
        return {"scale": None if self.scale is None else self.scale.flatten().tolist(),
                "shift": None if self.shift is None else self.shift.flatten().tolist(),
                "size": list(self.size) if self.size else None,
                "source_size": list(self.source_size) if self.source_size else None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            shrink = self.size[0] < x.shape[-2] or self.size[1] < x.shape[-1]
            if self.source_size is not None and tuple(x.shape[-2:]) == self.source_size:
                factors = tuple(o / i for o, i in zip(self.size, self.source_size))
                x = nn.functional.interpolate(x, scale_factor=factors, mode="bilinear", antialias=shrink,
                                              align_corners=False)
            else:
                x = nn.functional.interpolate(x, size=self.size, mode="bilinear", antialias=shrink,
                                              align_corners=False)
        x = x.float()
        if self.scale is not None:
            x = x * self.scale.to(x.device) + self.shift.to(x.device)
        return x
