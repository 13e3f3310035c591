"""The runner: a model runtime (ONNX Runtime or PyTorch) fed with the model's own preprocessing, in batches, with
the optional flip average. One part of the :class:`~agegender.inference.predictor.Predictor`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agegender.data.preprocess import Preprocessing
from agegender.inference.runtime import Backend


class Runner:
    """Decodable model outputs (``age``, ``age_probs``, ``gender_probs``, ...) for uint8 RGB crops at the resize
    size, ``batch_size`` crops per runtime call, averaged with the mirrored crops when ``tta_flip``."""

    def __init__(self, backend: Backend, pre: Preprocessing, batch_size: int = 64, tta_flip: bool = False) -> None:
        self.backend = backend
        self.pre = pre
        self.batch_size = max(1, int(batch_size))
        self.tta_flip = bool(tta_flip)

    def model_input(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """A batch as the backend takes it: the stacked uint8 crops for an ONNX file that normalises
        inside its graph (``input_format`` ``uint8``), else the normalised float NCHW batch
        (:meth:`Preprocessing.batch <agegender.data.preprocess.Preprocessing.batch>`)."""
        if getattr(self.backend, "input_format", "float") == "uint8":
            return np.stack(crops)
        return self.pre.batch(crops)

    def __call__(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        parts = [self.backend.run(self.model_input(crops[s:s + self.batch_size]), tta_flip=self.tta_flip)
                 for s in range(0, len(crops), self.batch_size)]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
