"""One pass of a packaged model over labelled samples, preprocessed exactly as in training (:func:`run_model`),
the samples' targets, and what an evaluation keeps (:class:`Evaluation`).

Shared by ``evaluate``, the report and calibration, which all need the same pass; none of them imports
another for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agegender.data.preprocess import Preprocessing
from agegender.data.transforms import average_crops, ten_crop_transform
from agegender.errors import AgeGenderError
from agegender.labels import AgeScheme, Sample
from agegender.models.package import ModelBundle

#: crops per image in aminian_noubir's over-sampling (4 corners + centre, and their mirrors)
N_CROPS = 10
_CENTRE_CROP = 4  # index of the unflipped centre crop in TenCrop's order


def sample_targets(samples: Sequence[Sample], scheme: str, num_attributes: int) -> dict[str, np.ndarray]:
    """The targets training builds for ``samples`` (age groups in ``scheme``)."""
    from agegender.training.datamodule import build_targets

    return build_targets(samples, scheme, num_attributes)


def num_attributes(samples: Sequence[Sample]) -> int:
    """Length of the attribute vectors the samples carry (0 when none do)."""
    return next((len(s.attributes) for s in samples if s.attributes is not None), 0)


@dataclass
class ModelOutputs:
    """One pass of a model over samples: decoded predictions, raw head outputs (logits, before the
    heads' temperature; from the plain centre view even when flip/10-crop averaging is on) and the mask
    of samples whose image decoded."""

    preds: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    ok: np.ndarray
    #: with ``raw`` and ``tta_flip``: the raw outputs of the mirrored view
    raw_flip: dict[str, np.ndarray] = field(default_factory=dict)


def _batches(bundle: ModelBundle, samples: Sequence[Sample], batch_size: int, ten_crop: bool, threads: int,
             progress: bool, ok: np.ndarray,
             cropper: Callable[[Sample], np.ndarray] | None = None) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(sample indices, preprocessed batch) exactly as in training (``bundle.preprocess``); images that fail
    to decode are dropped and marked in ``ok``. With ``ten_crop`` a batch is (B·10, C, H, W), crops consecutive."""
    from agegender.training.datamodule import read_resized

    pre = Preprocessing.from_meta(bundle.preprocess, bundle.source)
    resize_hw, margin = pre.resize_hw, pre.crop_margin
    tf = ten_crop_transform(pre.input_hw, pre.mean, pre.std, resize=list(resize_hw)) if ten_crop else pre.transform()

    def load(i: int) -> torch.Tensor | None:
        try:
            if cropper is not None:
                return tf(cropper(samples[i]))
            return tf(read_resized(samples[i], resize_hw, margin))
        except AgeGenderError:
            ok[i] = False
            return None

    it: Any = range(0, len(samples), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", unit="batch")
    with ThreadPoolExecutor(threads) as ex:
        for start in it:
            idx = list(range(start, min(start + batch_size, len(samples))))
            imgs = list(ex.map(load, idx))
            good = [i for i, t in zip(idx, imgs) if t is not None]
            if good:
                x = torch.stack([t for t in imgs if t is not None])
                yield good, (x.flatten(0, 1) if ten_crop else x)


def _input_tasks(bundle: ModelBundle, samples: Sequence[Sample]) -> tuple[str, ...]:
    """Labels the model takes as inputs (chatzitzisi's ResNet+AE, variant ``annotated``: the attribute vector)."""
    tasks = tuple(getattr(bundle.model, "input_tasks", ()) or ())
    if "attributes" in tasks and num_attributes(samples) == 0:
        raise AgeGenderError("this model takes the annotated attribute vector as an input (ResNet+AE, variant "
                             "'annotated') but these data carry no attributes; evaluate it on data with attribute "
                             "labels (e.g. PETA) or use a 'predicted'-variant model", code="needs_attributes")
    return tasks


def _extra_inputs(bundle: ModelBundle, samples: Sequence[Sample], idx: list[int], tasks: tuple[str, ...],
                  n_attr: int, repeat: int) -> dict[str, torch.Tensor]:
    if not tasks:
        return {}
    from agegender.training.module import model_inputs

    tg = sample_targets([samples[i] for i in idx], bundle.age_scheme, n_attr)
    extra = model_inputs(bundle.model, {t: torch.as_tensor(tg[t]) for t in tasks})
    return {k: v.repeat_interleave(repeat, dim=0) for k, v in extra.items()} if repeat > 1 else extra


def run_model(bundle: ModelBundle, samples: Sequence[Sample], batch_size: int = 64, tta_flip: bool = False,
              ten_crop: bool = False, raw: bool = False, threads: int = 2, progress: bool = False,
              cropper: Callable[[Sample], np.ndarray] | None = None) -> ModelOutputs:
    """Run the model over samples (images already cropped). ``ten_crop`` averages the probabilities of
    aminian_noubir's 10 crops (over-sampling); ``tta_flip`` those of the image and its mirror; ``raw``
    also keeps each head's raw output for temperature scaling."""
    ok = np.ones(len(samples), dtype=bool)
    chunks: list[dict[str, np.ndarray]] = []
    raws: list[dict[str, np.ndarray]] = []
    raws_flip: list[dict[str, np.ndarray]] = []
    model = bundle.model
    tasks = _input_tasks(bundle, samples)
    n_attr = num_attributes(samples)
    with torch.no_grad():
        for idx, x in _batches(bundle, samples, batch_size, ten_crop, threads, progress, ok, cropper):
            x = x.contiguous(memory_format=torch.channels_last)
            extra = _extra_inputs(bundle, samples, idx, tasks, n_attr, N_CROPS if ten_crop else 1)
            out = model(x, **extra)
            dec = model.decode(out)
            if tta_flip:
                out2 = model(torch.flip(x, dims=[3]), **extra)
                dec2 = model.decode(out2)
                dec = {k: (v + dec2[k]) / 2 for k, v in dec.items()}
                if raw and isinstance(out2, dict) and not ten_crop:
                    raws_flip.append({k: v.float().cpu().numpy() for k, v in out2.items()})
            if ten_crop:
                dec = average_crops(dec, N_CROPS)
            chunks.append({k: v.float().cpu().numpy() for k, v in dec.items()})
            if raw and isinstance(out, dict):
                if ten_crop:
                    out = {k: v[_CENTRE_CROP::N_CROPS] for k, v in out.items()}
                raws.append({k: v.float().cpu().numpy() for k, v in out.items()})
    if not chunks:
        return ModelOutputs({}, {}, ok)
    preds = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    rw = {k: np.concatenate([c[k] for c in raws]) for k in raws[0]} if raws else {}
    rf = {k: np.concatenate([c[k] for c in raws_flip]) for k in raws_flip[0]} if raws_flip else {}
    return ModelOutputs(preds, rw, ok, rf)


@dataclass
class Evaluation:
    """Everything one evaluation produced: the report dict plus per-sample predictions and targets (of the
    images that decoded), the raw head outputs, and the model's validation samples when ``split="test"``
    (where temperature scaling is fitted)."""

    report: dict[str, Any]
    bundle: ModelBundle
    scheme: AgeScheme
    samples: list[Sample]
    preds: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    val_samples: list[Sample] = field(default_factory=list)
