"""The one door from a model name to something that predicts: a :class:`~agegender.inference.predictor.Predictor`
for one model, or a :class:`~agegender.inference.person.PersonPredictor` (face + body) for person mode
(``mode="person"`` or the bundled name ``default-person``). ``agegender.load``, the CLI, the HTTP service and the
Ray job all load through :func:`load`; both predictors have the same public methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agegender.bundled import PERSON_PAIRS
from agegender.inference.options import PredictorOptions
from agegender.inference.person import PersonPredictor, load_person_pair
from agegender.inference.predictor import Predictor
from agegender.inference.predictor import load as load_model


def load(name_or_path: str | Path = "default", options: PredictorOptions | None = None,
         **overrides: Any) -> Predictor | PersonPredictor:
    """:func:`agegender.inference.predictor.load`'s arguments; person mode gives a ``PersonPredictor``."""
    opts = PredictorOptions.of(options, **overrides)
    if opts.mode == "person" or str(name_or_path) in PERSON_PAIRS:
        return load_person_pair(name_or_path, opts)
    return load_model(name_or_path, opts)
