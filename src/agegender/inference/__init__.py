"""Inference: face/person detectors → crops → batched model → typed results (ONNX, video and batch jobs)."""

from typing import Any

__all__ = ["Predictor", "load"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing a light submodule (e.g. the detectors) does not load torch and the model code.
    if name in __all__:
        from agegender.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'agegender.inference' has no attribute {name!r}")
