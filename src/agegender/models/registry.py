"""Registries of model parts: a config names a trunk, heads, losses and a task weighting; these build them.

Adding a part is one new file with a ``@TRUNKS.register(...)`` (or HEADS/LOSSES/WEIGHTINGS) decorator
and one import line in the package ``__init__`` that lists the files.
"""

from __future__ import annotations

from agegender.registry import Registry

#: builder(pretrained: bool = False, **kwargs) -> nn.Module with ``out_features`` and forward(x) -> (B, out_features)
TRUNKS: Registry = Registry("trunk")
#: builder(in_features: int, **kwargs) -> Head
HEADS: Registry = Registry("head")
#: builder(stats: dict | None = None, **kwargs) -> nn.Module, forward(output, target) -> scalar loss
LOSSES: Registry = Registry("loss")
#: builder(tasks: list[str], **kwargs) -> nn.Module, forward(losses: dict[str, Tensor]) -> scalar
WEIGHTINGS: Registry = Registry("weighting")
#: builder(config: dict, stats: dict) -> nn.Module composition (e.g. multitask, cross_modal, resnet_ae)
COMPOSITIONS: Registry = Registry("composition")
