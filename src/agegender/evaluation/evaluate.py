"""`agegender evaluate`: score a trained model on a dataset folder and write a JSON of every metric.

With ``--split all`` (default) every image of the folder is scored — the case of an independent
held-out set. ``--split test|val|train`` re-applies the model's own training split (same seed and
procedure) to the folder, which is how paper tables are reproduced on one dataset.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agegender.data.readers import DATASETS, read_dataset
from agegender.data.transforms import eval_transform
from agegender.errors import AgeGenderError
from agegender.evaluation.metrics import compute_metrics
from agegender.labels import get_scheme
from agegender.models.package import ModelBundle, load_bundle


def _targets(samples, scheme: str, num_attributes: int) -> dict[str, np.ndarray]:
    from agegender.training.datamodule import build_targets

    return build_targets(samples, scheme, num_attributes)


def predict_samples(bundle: ModelBundle, samples, batch_size: int = 64, tta_flip: bool = False,
                    threads: int = 2, progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run the model over samples (images already cropped); returns predictions and the mask of decoded ones."""
    from agegender.training.datamodule import as_hw, read_resized

    pp = bundle.preprocess
    input_hw = as_hw(pp.get("input_size", 224))
    resize_hw = as_hw(pp.get("resize") or input_hw)
    tf = eval_transform(input_hw, pp.get("mean"), pp.get("std"))
    ok = np.ones(len(samples), dtype=bool)
    chunks: list[dict[str, np.ndarray]] = []

    def load(i: int):
        try:
            return tf(read_resized(samples[i], resize_hw, float(pp.get("crop_margin", 0.0))))
        except AgeGenderError:
            ok[i] = False
            return None

    it = range(0, len(samples), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", unit="batch")
    with ThreadPoolExecutor(threads) as ex:
        for start in it:
            idx = list(range(start, min(start + batch_size, len(samples))))
            imgs = list(ex.map(load, idx))
            good = [t for t in imgs if t is not None]
            if not good:
                continue
            chunks.append(bundle.predict_tensor(torch.stack(good), tta_flip=tta_flip))
    if not chunks:
        return {}, ok
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}, ok


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
) -> dict[str, Any]:
    """Evaluate ``model`` (checkpoint/package path or bundled name) on ``dataset`` at ``data``."""
    from agegender.inference.registry import resolve_model_path

    t0 = time.time()
    bundle = load_bundle(resolve_model_path(model))
    meta = DATASETS.meta(dataset)
    sch = get_scheme(scheme or meta.get("age_scheme") or bundle.age_scheme)
    if split == "all":
        ss = read_dataset(dataset, data, **dict(options or {}))
        samples, skipped, summary = ss.samples, len(ss.skipped), ss.summary()
        n_attr = len(ss.attribute_names)
    elif split in ("train", "val", "test"):
        from agegender.training.datamodule import AgeGenderDataModule

        dcfg = dict(bundle.config["data"])
        dcfg.update({"dataset": dataset, "root": str(data), "cache": False})
        if options:
            dcfg["options"] = dict(options)
        dm = AgeGenderDataModule(dcfg)
        dm.prepare_samples()
        samples = [dm.samples[i] for i in dm.split.get(split, [])]
        skipped, summary, n_attr = 0, dm.read_summary, len(dm.attribute_names)
        if not samples:
            raise AgeGenderError(f"the model's split has no {split!r} part", code="bad_config")
    else:
        raise AgeGenderError(f"--split must be all, train, val or test (got {split!r})", code="bad_config")
    if tta_flip is None:
        tta_flip = bool(bundle.config.get("eval", {}).get("tta_flip", False))
    preds, ok = predict_samples(bundle, samples, batch_size=batch_size, tta_flip=tta_flip, progress=progress)
    targets = _targets([s for s, k in zip(samples, ok) if k], sch.name, n_attr)
    targets["age_group_scheme"] = sch.name
    metrics = compute_metrics(preds, targets, sch, model_scheme=bundle.age_scheme) if preds else {}
    report = {
        "model": bundle.name,
        "model_path": bundle.source,
        "dataset": dataset,
        "data": str(data),
        "split": split,
        "age_scheme": sch.name,
        "n_images": int(ok.sum()),
        "n_skipped": int(skipped + (~ok).sum()),
        "read_summary": summary,
        "tta_flip": tta_flip,
        "seconds": round(time.time() - t0, 2),
        **metrics,
    }
    if output:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report
