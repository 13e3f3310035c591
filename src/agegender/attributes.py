"""Attributes matched by name between a model and a dataset.

A model predicts the attributes of the data it was trained on (its package lists them in
``labels["attributes"]``); another dataset may name more, fewer or the same attributes in another order
(a PETA-format test set whose tags differ, RAP's columns). Scoring column ``j`` against column ``j`` is
then wrong or impossible, so evaluation matches columns by name: the shared attributes are scored, the
others are listed (``attributes_model_only``, ``attributes_dataset_only``) and, when nothing is shared,
attribute metrics are left out with a note. A leaf module, because :mod:`agegender.metrics` (training and
evaluation) matches attributes with it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agegender.labels import Sample


@dataclass(frozen=True)
class AttributeAlignment:
    """The model's and the dataset's attribute names and how their columns correspond."""

    model: tuple[str, ...]
    data: tuple[str, ...]
    #: set when the model names no attributes and their order had to be assumed
    assumed: str = ""

    @property
    def shared(self) -> tuple[str, ...]:
        """Names in both lists, in the model's order (what is scored)."""
        data = set(self.data)
        return tuple(n for n in self.model if n in data)

    @property
    def model_only(self) -> tuple[str, ...]:
        data = set(self.data)
        return tuple(n for n in self.model if n not in data)

    @property
    def data_only(self) -> tuple[str, ...]:
        model = set(self.model)
        return tuple(n for n in self.data if n not in model)

    @property
    def identical(self) -> bool:
        return self.model == self.data

    def model_columns(self) -> np.ndarray:
        """Column index in the model's output of each shared attribute."""
        index = {n: j for j, n in enumerate(self.model)}
        return np.asarray([index[n] for n in self.shared], dtype=np.int64)

    def data_columns(self) -> np.ndarray:
        """Column index in the dataset's vectors of each shared attribute."""
        index = {n: j for j, n in enumerate(self.data)}
        return np.asarray([index[n] for n in self.shared], dtype=np.int64)

    def to_model_order(self, target: np.ndarray) -> np.ndarray:
        """(n, len(data)) dataset targets → (n, len(model)) in the model's column order, NaN (unlabelled)
        for the attributes the dataset lacks; dataset-only columns are dropped."""
        t = np.asarray(target, dtype=np.float32)
        out = np.full((t.shape[0], len(self.model)), np.nan, dtype=np.float32)
        out[:, self.model_columns()] = t[:, self.data_columns()]
        return out

    def sample(self, s: Sample) -> Sample:
        """``s`` with its attribute vector in the model's order (NaN for model-only attributes); None
        when nothing is shared."""
        if s.attributes is None:
            return s
        if not self.shared:
            return dataclasses.replace(s, attributes=None)
        vec = tuple(s.attributes)
        index = {n: j for j, n in enumerate(self.data)}
        return dataclasses.replace(
            s, attributes=tuple(float(vec[index[n]]) if n in index else math.nan for n in self.model)
        )

    def report(self) -> dict[str, Any]:
        """What the JSON report and report.md list: the count scored and the names left out."""
        out: dict[str, Any] = {
            "attributes_n_scored": len(self.shared),
            "attributes_n_model": len(self.model),
            "attributes_n_dataset": len(self.data),
            "attributes_model_only": list(self.model_only),
            "attributes_dataset_only": list(self.data_only),
        }
        notes = [self.assumed] if self.assumed else []
        if not self.shared:
            notes.append(f"no attribute metrics: the model's {len(self.model)} attributes and the dataset's "
                         f"{len(self.data)} share no name")
        if notes:
            out["attributes_note"] = "; ".join(notes)
        return out


def align_attributes(model_names: Sequence[str] | None, data_names: Sequence[str],
                     model_width: int | None = None) -> AttributeAlignment:
    """Match a model's attributes to a dataset's by name.

    ``model_names`` None (a model file that does not list them) with ``model_width`` equal to the
    dataset's count: the model is assumed to follow the dataset's order (as before names were matched)
    and the report says so; with another width its columns get the predictor's names ``attr_<j>``,
    which no dataset uses, so nothing is scored.
    """
    data = tuple(str(n) for n in data_names)
    if model_names:
        return AttributeAlignment(tuple(str(n) for n in model_names), data)
    width = int(model_width or 0)
    if width == len(data):
        return AttributeAlignment(data, data, assumed="the model does not name its attributes; assumed to be "
                                                      "in the dataset's order")
    return AttributeAlignment(tuple(f"attr_{j}" for j in range(width)), data,
                              assumed=f"the model does not name its {width} attributes")


def attribute_alignment_for(bundle: Any, data_names: Sequence[str]) -> AttributeAlignment | None:
    """The alignment between ``bundle``'s attribute outputs and a dataset's attributes; None when one side
    has none (nothing to match: a face model, or data without attribute labels)."""
    width = int((bundle.dims or {}).get("attributes", 0) or 0)
    names = list((bundle.labels or {}).get("attributes") or [])
    if not data_names or not (width or names):
        return None
    return align_attributes(names or None, data_names, width)


def align_samples(bundle: Any, samples: Sequence[Sample], val_samples: Sequence[Sample],
                  data_names: Sequence[str]) -> tuple[list[Sample], list[Sample], int, AttributeAlignment | None]:
    """Evaluation's samples with their attribute vectors in ``bundle``'s order (see
    :meth:`AttributeAlignment.sample`), so that metrics, calibration and models that take the annotated
    attributes as input all see matching columns. Returns (samples, val_samples, attribute count of the
    targets, alignment or None when there is nothing to match)."""
    align = attribute_alignment_for(bundle, data_names)
    if align is None or align.identical:
        return list(samples), list(val_samples), len(data_names), align
    n = len(align.model) if align.shared else 0
    return [align.sample(s) for s in samples], [align.sample(s) for s in val_samples], n, align


def uses_attributes(bundle: Any, preds: dict[str, Any]) -> bool:
    """Whether the model predicts attributes or takes them as an input (then the report lists the match)."""
    return "attributes_probs" in preds or "attributes" in tuple(getattr(bundle.model, "input_tasks", ()) or ())
