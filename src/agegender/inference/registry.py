"""Named models for the inference API: re-exported from :mod:`agegender.bundled`."""

from agegender.bundled import BUNDLED, WEIGHTS_DIR, bundled_models, resolve_model_path

__all__ = ["BUNDLED", "WEIGHTS_DIR", "bundled_models", "resolve_model_path"]
