"""agegender: age, gender and ethnicity estimation from faces and pedestrian images.

>>> import agegender
>>> predictor = agegender.load("default")          # doctest: +SKIP
>>> people = predictor.predict("photo.jpg")         # doctest: +SKIP
"""

from __future__ import annotations

from agegender import _compat  # noqa: F401  (must run before anything imports torchvision)
from agegender._version import __version__
from agegender.errors import AgeGenderError

__all__ = ["AgeGenderError", "__version__", "load"]


def load(name_or_path: str = "default", **kwargs):
    """Load a predictor: a bundled model name (``default``, ``default-body``), a checkpoint or an ONNX file."""
    from agegender.inference.predictor import load as _load

    return _load(name_or_path, **kwargs)
