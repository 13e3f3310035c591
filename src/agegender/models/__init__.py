"""Models: trunks, heads, losses, task weightings and compositions, all built by name from registries."""

from __future__ import annotations

from agegender import _compat  # noqa: F401  (torchvision compat before any torchvision import)
from agegender.models import attribute_ae, cross_modal, ensemble, heads, losses, multitask, trunks, weighting  # noqa: F401
from agegender.models.multitask import MultiTaskNet, build_model
from agegender.models.registry import COMPOSITIONS, HEADS, LOSSES, TRUNKS, WEIGHTINGS

__all__ = ["COMPOSITIONS", "HEADS", "LOSSES", "TRUNKS", "WEIGHTINGS", "MultiTaskNet", "build_model"]
