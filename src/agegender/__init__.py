"""agegender: age, gender and ethnicity estimation from faces and pedestrian images.

>>> import agegender
>>> predictor = agegender.load("default")          # doctest: +SKIP
>>> people = predictor.predict("photo.jpg")         # doctest: +SKIP

``import agegender`` is light (no torch): the predictor and result classes load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agegender import _compat  # noqa: F401  (must run before anything imports torchvision)
from agegender._version import __version__
from agegender.errors import AgeGenderError

if TYPE_CHECKING:
    from agegender.inference.predictor import Predictor
    from agegender.inference.results import AgeEstimate, ImageResult, PersonResult

__all__ = ["AgeEstimate", "AgeGenderError", "ImageResult", "PersonResult", "Predictor", "__version__", "load"]

_LAZY = {"Predictor": "agegender.inference.predictor", "AgeEstimate": "agegender.inference.results",
         "ImageResult": "agegender.inference.results", "PersonResult": "agegender.inference.results"}


def load(name_or_path: str = "default", **options: Any) -> Predictor:
    """Load a predictor: a bundled model name (``default``, ``default-fast``, ``default-accurate``, ``default-body``),
    a package (``.safetensors``), a checkpoint or an ONNX file. The options are those of
    :func:`agegender.inference.predictor.load` (detector, backend, scheme, min_confidence, tta_flip, ...).
    ``"default-person"`` or ``mode="person"`` gives a :class:`~agegender.inference.person.PersonPredictor` (face and
    body of every person, fused), with the same methods."""
    from agegender.inference.loading import load as _load

    return _load(name_or_path, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agegender' has no attribute {name!r}")
