"""Named models for the inference API: re-exported from :mod:`agegender.models.bundled`, where they live so
that training (``model.init_from``) and evaluation can resolve them without importing the inference layer."""

from agegender.models.bundled import BUNDLED, WEIGHTS_DIR, bundled_models, resolve_model_path

__all__ = ["BUNDLED", "WEIGHTS_DIR", "bundled_models", "resolve_model_path"]
