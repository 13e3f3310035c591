"""Turn a trained checkpoint into a self-describing model package: temperature scaling fitted on the
run's own validation split, fp16 weights, and training/validation facts in the metadata.

Used to build the bundled models (``agegender package``); the model card next to a bundled file is
written from the same facts.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from agegender.evaluation.calibration import calibrate_bundle
from agegender.models.package import load_bundle, save_package
from agegender.training.datamodule import AgeGenderDataModule


def package_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    data: str | Path | None = None,
    calibrate: bool = True,
    half: bool = True,
    name: str | None = None,
    version: str | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Package ``checkpoint`` into ``output``; returns the metadata written (incl. calibration figures)."""
    bundle = load_bundle(checkpoint)
    meta: dict[str, Any] = {
        "name": name or bundle.config.get("name"),
        "version": version or _dt.date.today().isoformat(),
        "description": bundle.config.get("description", ""),
        "trained_from": str(checkpoint),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "body" if bundle.config["data"].get("dataset") in ("peta", "rap") else "face",
        "default_detector": "none" if bundle.config["data"].get("dataset") in ("peta", "rap") else "haar",
    }
    results = Path(checkpoint).parent.parent / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        meta["training"] = {k: r.get(k) for k in ("train_seconds", "epochs_run", "global_step", "parameters",
                                                   "split_sizes", "read_summary")}
    if calibrate:
        dcfg = dict(bundle.config["data"])
        if data is not None:
            dcfg["root"] = str(data)
        dcfg["cache"] = False
        dm = AgeGenderDataModule(dcfg)
        dm.prepare_samples()
        val = [dm.samples[i] for i in dm.split["val"]]
        cal = calibrate_bundle(bundle, val)
        meta["calibration"] = {"fitted_on": f"validation split ({len(val)} images)", "heads": cal}
    meta.update(extra_meta or {})
    save_package(bundle, output, half=half, meta=meta)
    # Check the fp16 file round-trips to the same network.
    load_bundle(output)
    return meta
