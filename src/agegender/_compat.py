"""Compatibility fix for torchvision builds whose compiled operators cannot load.

PyPI's torchvision 0.28.0 is a CUDA build; next to the CPU build of torch 2.13.0 its
``torchvision::nms`` operator is never registered and ``import torchvision`` fails with
``RuntimeError: operator torchvision::nms does not exist`` (see ../shared/ENVIRONMENT.md).
Before torchvision is imported we define the operator schema and a pure-torch CPU kernel,
but only when the compiled library did not provide it; on a matching torch/torchvision pair
this module does nothing.

Importing this module does not import torch: it puts a finder on ``sys.meta_path`` that applies the fix the
moment anything (timm, Lightning, torchmetrics, our own code) first imports torchvision, so predicting with
ONNX Runtime never pays for loading torch.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

_PATCHED = False


def _nms_reference(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression in plain torch (same contract as torchvision.ops.nms)."""
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep: list[int] = []
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        xx1 = torch.maximum(x1[idx], x1)
        yy1 = torch.maximum(y1[idx], y1)
        xx2 = torch.minimum(x2[idx], x2)
        yy2 = torch.minimum(y2[idx], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[idx] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def _nms_registered() -> bool:
    import torch

    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return True
    except Exception:
        return False


def ensure_torchvision_ops() -> bool:
    """Register ``torchvision::nms`` when torchvision's compiled ops are missing.

    Returns True when the fallback was installed, False when nothing was needed.
    """
    global _PATCHED
    if _PATCHED:
        return True
    import torch

    try:
        # Loading torchvision's own extension registers nms on a matching install.
        import importlib.util

        spec = importlib.util.find_spec("torchvision")
        if spec is None:
            return False
        if not _nms_registered():
            # Try the compiled library first (it may load on a proper install).
            import glob
            import os

            pkg_dir = os.path.dirname(spec.origin or "")
            for lib in glob.glob(os.path.join(pkg_dir, "_C*.so")) + glob.glob(os.path.join(pkg_dir, "_C*.pyd")):
                try:
                    torch.ops.load_library(lib)
                except Exception:
                    pass
        if _nms_registered():
            return False
    except Exception:
        return False
    lib = torch.library.Library("torchvision", "DEF")
    # torchvision/_meta_registrations.py registers fake kernels for both of these at import time.
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _nms_reference, "CPU")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("qnms", lambda d, s, t: _nms_reference(d.dequantize(), s.dequantize(), t), "CPU")
    globals()["_LIB"] = lib
    _PATCHED = True
    return True


class _FixBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs :func:`ensure_torchvision_ops` just before the first ``import torchvision``, then steps aside."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision":
            uninstall()
            ensure_torchvision_ops()
        return None  # the normal finders import it


_FINDER = _FixBeforeTorchvision()


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


if "torchvision" in sys.modules:  # imported before agegender: fix what still can be fixed
    ensure_torchvision_ops()
elif _FINDER not in sys.meta_path:
    sys.meta_path.insert(0, _FINDER)
