"""`agegender evaluate`: score a trained model on a dataset folder and write a JSON of every metric
(and, with ``report_dir``, a Markdown report with plots, fairness tables and calibration).

With ``--split all`` (default) every image of the folder is scored — the case of an independent
held-out set. ``--split test|val|train`` re-applies the model's own training split (same seed and
procedure) to the folder, which is how paper tables are reproduced on one dataset.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agegender.attributes import align_samples, uses_attributes
from agegender.data.readers import DATASETS, read_dataset
from agegender.errors import AgeGenderError
from agegender.evaluation.runner import Evaluation, run_model, sample_targets
from agegender.labels import Sample, get_scheme
from agegender.metrics import compute_metrics, per_identity_accuracy, per_sample_correct
from agegender.models.package import ModelBundle, json_default, load_bundle

log = logging.getLogger(__name__)


class DetectorCropper:
    """Finds the labelled person in a loose image with a face detector and crops them as the predictor
    would (same framing and resize); the largest detection is taken as the labelled face. When nothing
    is found the whole image is used and counted, so loose-crop datasets are scored on every image."""

    def __init__(self, bundle: ModelBundle, detector: str) -> None:
        from agegender.inference.backends import TorchBackend
        from agegender.inference.predictor import Predictor

        self.predictor = Predictor(TorchBackend(None, bundle=bundle), detector=detector)
        self.no_face = 0
        self._lock = threading.Lock()

    def __call__(self, sample: Sample) -> np.ndarray:
        from agegender.data.images import load_image

        rgb = load_image(sample.path)
        boxes, _, crops = self.predictor.detect_crops(rgb)
        if crops:
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
            return crops[int(np.argmax(areas))]
        with self._lock:
            self.no_face += 1
        return self.predictor._resize(rgb)


def split_samples(
    dataset: str,
    data: str | Path,
    split: str,
    data_cfg: Mapping[str, Any],
    options: dict[str, Any] | None = None,
) -> tuple[list[Sample], list[Sample], int, Any, tuple[str, ...]]:
    """The samples :func:`run_evaluation` scores: every image of ``dataset`` at ``data`` (``split="all"``) or the
    ``split`` part (train, val, test) of the split that the ``data_cfg`` section makes of it (each source of a
    multi-source section is split on its own). Returns (samples, the validation samples when ``split="test"``,
    images skipped by the reader, the read summary, attribute names)."""
    val_samples: list[Sample] = []
    if split == "all":
        ss = read_dataset(dataset, data, **dict(options or {}))
        return ss.samples, val_samples, len(ss.skipped), ss.summary(), tuple(ss.attribute_names)
    if split not in ("train", "val", "test"):
        raise AgeGenderError(f"--split must be all, train, val or test (got {split!r})", code="bad_config")
    from agegender.training.datamodule import AgeGenderDataModule, one_source

    dcfg = one_source(data_cfg, dataset, str(data))
    dcfg.update({"dataset": dataset, "root": str(data), "cache": False})
    dcfg.pop("teacher", None)  # training-only targets: the split does not depend on them, and users lack the files
    if options:
        dcfg["options"] = dict(options)
    dm = AgeGenderDataModule(dcfg)
    dm.prepare_samples()
    samples = [dm.samples[i] for i in dm.split.get(split, [])]
    if split == "test":
        val_samples = [dm.samples[i] for i in dm.split.get("val", [])]
    if not samples:
        raise AgeGenderError(f"the model's split has no {split!r} part", code="bad_config")
    return samples, val_samples, 0, dm.read_summary, tuple(dm.attribute_names)


def run_evaluation(
    model: str | ModelBundle,
    dataset: str,
    data: str | Path,
    split: str = "all",
    scheme: str | None = None,
    batch_size: int = 64,
    tta_flip: bool | None = None,
    ten_crop: bool | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
    keep_raw: bool = False,
    detector: str | None = None,
    exclude_seen: bool = False,
    split_config: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Score ``model`` on ``dataset`` at ``data`` and keep the per-sample results (see :func:`evaluate`).

    ``split_config`` is the ``data`` section whose split ``split`` re-applies (default: the model's own), so that
    several models can be scored on the same images of one training recipe's split."""
    from agegender.bundled import resolve_model_path

    t0 = time.time()
    bundle = model if isinstance(model, ModelBundle) else load_bundle(resolve_model_path(model))
    meta = DATASETS.meta(dataset)
    sch = get_scheme(scheme or meta.get("age_scheme") or bundle.age_scheme)
    samples, val_samples, skipped, summary, attr_names = split_samples(
        dataset, data, split, split_config if split_config is not None else bundle.config.get("data") or {}, options)
    if not samples:
        raise AgeGenderError(f"{dataset}: no images to evaluate in {data} ({summary}); check --data and --dataset",
                             code="no_data")
    seen = _seen_in_training(bundle, samples, exclude_seen)
    n_seen = None if seen is None else int(seen.sum())
    if exclude_seen and seen is not None and seen.any():
        samples = [s for s, k in zip(samples, seen) if not k]
        if not samples:
            raise AgeGenderError(f"all {len(seen)} images were seen in training; nothing is left to evaluate",
                                 code="no_data")
    # attributes matched by name: the samples' vectors put in the model's column order
    samples, val_samples, n_attr, attr_align = align_samples(bundle, samples, val_samples, attr_names)
    ecfg = bundle.config.get("eval", {}) or {}
    if tta_flip is None:
        tta_flip = bool(ecfg.get("tta_flip", False))
    if ten_crop is None:
        ten_crop = bool(ecfg.get("ten_crop", False))
    # Tight crops (UTKFace, PETA) are scored as they are; loose images (FairFace, Adience) through a face
    # detector: the model's own (its package's default_detector, what `predict` would use) when it names one.
    if detector is None:
        detector = meta.get("default_detector") or "none"
        model_detector = (bundle.meta or {}).get("default_detector")
        if detector != "none" and model_detector not in (None, "none"):
            detector = str(model_detector)
    cropper = DetectorCropper(bundle, detector) if detector != "none" else None
    res = run_model(bundle, samples, batch_size=batch_size, tta_flip=tta_flip, ten_crop=ten_crop, raw=keep_raw,
                    progress=progress, cropper=cropper)
    kept = [s for s, k in zip(samples, res.ok) if k]
    if not kept:
        raise AgeGenderError(f"{dataset}: none of the {len(samples)} images in {data} could be read", code="no_data")
    targets = sample_targets(kept, sch.name, n_attr)
    targets["age_group_scheme"] = sch.name
    if sch.name != bundle.age_scheme:  # multi-label gender + age-group targets follow the model's groups
        targets["pedestrian"] = sample_targets(kept, bundle.age_scheme, n_attr)["pedestrian"]
    metrics = compute_metrics(res.preds, targets, sch, model_scheme=bundle.age_scheme) if res.preds else {}
    if res.preds:  # each person counted once, where some have several images (PETA)
        correct = per_sample_correct(res.preds, targets, sch, model_scheme=bundle.age_scheme)
        metrics.update(per_identity_accuracy(correct, [s.identity for s in kept]))
    if attr_align is not None and uses_attributes(bundle, res.preds):
        metrics.update(attr_align.report())
    report = {
        "model": bundle.name,
        "model_path": bundle.source,
        "dataset": dataset,
        "data": str(data),
        "split": split,
        "age_scheme": sch.name,
        "n_images": int(res.ok.sum()),
        "n_skipped": int(skipped + (~res.ok).sum()),
        "read_summary": summary,
        "tta_flip": tta_flip,
        "ten_crop": ten_crop,
        "detector": detector,
        "no_face": cropper.no_face if cropper is not None else 0,
        # images whose bytes are in the model's training fingerprint (None: the model carries none)
        "seen_in_training": n_seen,
        "seen_in_training_excluded": bool(exclude_seen and n_seen),
        "seconds": round(time.time() - t0, 2),
        **metrics,
    }
    return Evaluation(report, bundle, sch, kept, res.preds, targets, res.raw, val_samples)


def evaluate(
    model: str,
    dataset: str,
    data: str | Path,
    split: str = "all",
    scheme: str | None = None,
    output: str | Path | None = None,
    batch_size: int = 64,
    tta_flip: bool | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
    report_dir: str | Path | None = None,
    ten_crop: bool | None = None,
    calibration: str = "auto",
    detector: str | None = None,
    exclude_seen: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` (checkpoint/package path or bundled name) on ``dataset`` at ``data``.

    ``ten_crop`` (default: the model config's ``eval.ten_crop``) scores aminian_noubir's over-sampling
    instead of the centre crop. ``report_dir`` also writes ``report.md`` with PNG plots, per-group
    fairness tables, the under-18 threshold sweep and ECE before/after temperature scaling, plus
    ``predictions.csv``; the fairness and calibration results are then added to the returned dict.
    ``calibration`` says where the report fits the temperature: ``auto`` (the model's validation split
    when ``split="test"``, else two identity-disjoint halves of the evaluated data, each calibrated by the
    temperature fitted on the other), ``val`` or ``halves``.

    ``seen_in_training`` in the result counts the evaluated images whose bytes the model's package lists among its
    training and validation images (its fingerprint; None when it has none): figures over such images overstate
    the accuracy on new ones, and a warning is logged. ``exclude_seen`` leaves them out of the scores.
    """
    if report_dir is not None:
        from agegender.evaluation.report import CALIBRATION_SOURCES

        if calibration not in CALIBRATION_SOURCES:  # fail before the (slow) model pass
            raise AgeGenderError(f"calibration must be one of {', '.join(CALIBRATION_SOURCES)} (got {calibration!r})",
                                 code="bad_config")
    ev = run_evaluation(model, dataset, data, split=split, scheme=scheme, batch_size=batch_size,
                        tta_flip=tta_flip, ten_crop=ten_crop, progress=progress, options=options,
                        keep_raw=report_dir is not None, detector=detector, exclude_seen=exclude_seen)
    report = ev.report
    if report_dir is not None:
        from agegender.evaluation.report import write_report

        t0 = time.time()
        extra = write_report(ev, report_dir, calibration=calibration, batch_size=batch_size)
        report.update(extra)
        report["seconds"] = round(report["seconds"] + time.time() - t0, 2)
    if output:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=json_default))
    return report


def _seen_in_training(bundle: ModelBundle, samples: Sequence[Sample], excluded: bool) -> np.ndarray | None:
    """Which ``samples`` the model was trained or calibrated on (by file fingerprint; a cached crop by that of the
    original it was cut from, as packages record them); warns when any were."""
    if bundle.fingerprint is None:
        return None
    from agegender.data.fingerprint import seen_samples_mask

    seen = seen_samples_mask(bundle.fingerprint, samples)
    if seen.any():
        log.warning(seen_warning(int(seen.sum()), len(samples), excluded))
    return seen


def seen_warning(n_seen: int, n: int, excluded: bool = False) -> str:
    """The warning for ``n_seen`` of ``n`` evaluated images being training images of the model."""
    head = (f"{n_seen} of {n} images ({100 * n_seen / max(n, 1):.0f} %) are images this model was trained or "
            "calibrated on")
    if excluded:
        return head + ": left out of the scores (--exclude-seen)"
    return head + ": its figures here overstate its accuracy on new images (--exclude-seen leaves them out)"


