"""A face crop cache framed by the predictor's own detector pipeline, so that a model trained on it sees the crops
:meth:`agegender.Predictor.predict` will give it (``agegender crops``).

Each sample of a dataset (read by its registered reader) is decoded and framed by ``agegender.load(model)``'s
cropper exactly as ``predict`` frames it: its detector and framing, and for a face model the ready-crop rule (an
image in which the detector finds nobody but which is itself one face is taken whole, ``crop: whole_image``).
Of several faces the one with the largest ``area × score`` is kept. The crop is written as a JPEG (quality 95) at
the model's input size under ``OUTPUT/images/``, and ``OUTPUT/labels.csv`` lists it in the ``csv`` reader's
layout, with the source's labels and

- ``young``: the source sample's ``extra["young"]`` (0/1) when it has one (CelebA's flag),
- ``framing``: the detector's name, or ``whole_image``,
- ``source_file``: the original's path relative to the dataset root,
- ``source_fingerprint``: :func:`agegender.data.fingerprint.file_hash` of the ORIGINAL file, which the ``csv``
  reader keeps as ``Sample.extra["fingerprint"]`` so that a model trained on the cache carries the originals'
  fingerprints (``seen_in_training``).

Images with no face are not written (counted in ``summary.json``), unreadable images are skipped with a reason.
Work is recorded per image in ``OUTPUT/progress.jsonl``, so a re-run with the same settings resumes; the settings
(model, detector, size, dataset) are kept in ``OUTPUT/manifest.json`` and a re-run with other settings is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError

log = logging.getLogger(__name__)

#: JPEG quality of the cached crops
JPEG_QUALITY = 95
#: columns of OUTPUT/labels.csv (the csv reader's layout plus the cache's own)
COLUMNS = ("file", "age", "gender", "ethnicity", "identity", "young", "framing", "source_file",
           "source_fingerprint")
MANIFEST_VERSION = 1


def _pick(boxes: list, scores: list[float]) -> int:
    """Index of the face to keep: the largest ``area × score``."""
    def weight(i: int) -> float:
        x1, y1, x2, y2 = boxes[i]
        return max(0.0, x2 - x1) * max(0.0, y2 - y1) * float(scores[i])
    return max(range(len(boxes)), key=weight)


def _relative(path: str, roots: list[Path]) -> str:
    p = Path(path).resolve()
    for r in roots:
        try:
            return p.relative_to(r.resolve()).as_posix()
        except ValueError:
            continue
    return p.name


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_progress(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run: that image is redone
                continue
            done[rec["source_file"]] = rec
    return done


def build_crop_cache(
    dataset: str,
    root: str | os.PathLike,
    output: str | os.PathLike,
    model: str = "default",
    size: int | None = None,
    options: dict[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = True,
    detector: str | None = None,
    detector_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Frame every face of ``dataset`` (read from ``root`` with reader ``options``) as ``agegender.load(model,
    detector=detector, detector_options=detector_options)`` does (``None``: the model's own detector and framing)
    and cache the crops at ``size`` px (default: the model's input size) under ``output``.

    Returns the summary (also written as ``output/summary.json``): ``images`` (samples considered), ``written``,
    ``framing`` (crops per framing: the detector's name or ``whole_image``), ``no_face`` and ``no_face_files``,
    ``skipped`` (unreadable images, each with its reason) and the settings. ``limit`` takes the first N samples.
    """
    from agegender.data.fingerprint import sample_fingerprint
    from agegender.data.images import load_image
    from agegender.data.readers import read_dataset
    from agegender.inference.predictor import load

    out = Path(output)
    predictor = load(model, detector=detector, detector_options=dict(detector_options or {}))
    pre = predictor.cropper.pre
    if size is None:
        size_hw = tuple(int(v) for v in pre.input_hw)
    else:
        if int(size) < 8:
            raise AgeGenderError(f"crops: size must be at least 8 px, not {size}", code="bad_option")
        size_hw = (int(size), int(size))
    if tuple(pre.resize_hw) != size_hw:  # same framing, crops cut at the cache's size
        predictor.cropper.pre = dataclasses.replace(pre, resize_hw=size_hw, input_hw=size_hw)
    detector = predictor.detector_name
    settings = {"version": MANIFEST_VERSION, "model": str(model), "detector": detector, "size": list(size_hw),
                "mode": predictor.mode, "margin": predictor.crop_margin, "shift": predictor.crop_shift,
                "align": predictor.crop_align, "sideways": predictor.crop_sideways,
                "search_turned": predictor.crop_search_turned,
                "dataset": dataset, "reader_options": {k: _cell(v) for k, v in sorted((options or {}).items())}}

    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):
            old.setdefault("align", None)  # caches cut before faces were turned upright cut them as they lie
            old.setdefault("sideways", False)  # and before faces were looked for again in the photo turned
            old.setdefault("search_turned", False)  # and before photos with no face were searched turned
        if old != settings:
            diff = sorted(k for k in set(settings) | set(old or {}) if (old or {}).get(k) != settings.get(k))
            raise AgeGenderError(f"crops: {out} holds a crop cache made with other settings ({', '.join(diff)}); "
                                 "use a new output folder", code="bad_config")
    elif out.exists() and any(out.iterdir()):
        raise AgeGenderError(f"crops: {out} is not empty and holds no crop cache; use a new output folder",
                             code="bad_config")

    samples = list(read_dataset(dataset, root, **(options or {})).samples)
    if limit is not None:
        samples = samples[: max(0, int(limit))]
    roots = [Path(root)] + ([Path(root).parent] if Path(root).is_file() else [])

    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    progress_path = out / "progress.jsonl"
    done = _read_progress(progress_path)
    used = {r["row"]["file"] for r in done.values() if r.get("row")}

    from PIL import Image

    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(samples), desc="crops", unit="img", leave=False)
        except ImportError:
            bar = None
    resumed = 0
    with open(progress_path, "a", encoding="utf-8") as plog:
        for s in samples:
            if bar is not None:
                bar.update(1)
            rel = _relative(s.path, roots)
            if rel in done:
                resumed += 1
                continue
            rec: dict[str, Any] = {"source_file": rel}
            try:
                rgb = load_image(s.path, max_pixels=predictor.max_pixels)
                boxes, scores, crops, kinds = predictor.cropper.find(rgb, whole_image_crops=predictor.mode == "face")
            except AgeGenderError as e:
                rec.update(status="skipped", reason=f"{e.code}: {e}")
            except Exception as e:  # never let one bad image end the batch
                rec.update(status="skipped", reason=f"{type(e).__name__}: {e}")
            else:
                if not crops:
                    rec["status"] = "no_face"
                else:
                    i = _pick(boxes, scores)
                    fp = sample_fingerprint(s)
                    name = str(Path(rel).with_suffix(".jpg"))
                    if name in used:
                        name = str(Path(rel).with_suffix("")) + f"-{fp & 0xFFFFFFFF:08x}.jpg"
                    used.add(name)
                    target = images_dir / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.ascontiguousarray(crops[i])).save(target, "JPEG", quality=JPEG_QUALITY)
                    framing = "whole_image" if kinds[i] == "whole_image" else detector
                    young = s.extra.get("young")
                    rec.update(status="ok", row={
                        "file": Path(name).as_posix(), "age": _cell(s.age), "gender": _cell(s.gender),
                        "ethnicity": _cell(s.ethnicity), "identity": _cell(s.identity),
                        "young": "" if young in (None, "") else str(int(young)), "framing": framing,
                        "source_file": rel, "source_fingerprint": str(fp)})
            plog.write(json.dumps(rec) + "\n")
            plog.flush()
            done[rel] = rec
    if bar is not None:
        bar.close()

    wanted = {_relative(s.path, roots) for s in samples}
    recs = [r for k, r in done.items() if k in wanted]
    rows = [r["row"] for r in recs if r.get("status") == "ok"]
    tmp = out / "labels.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "labels.csv")
    framing: dict[str, int] = {}
    for r in rows:
        framing[r["framing"]] = framing.get(r["framing"], 0) + 1
    no_face = sorted(r["source_file"] for r in recs if r.get("status") == "no_face")
    summary = {
        "dataset": dataset, "root": str(root), "output": str(out), "model": str(model), "detector": detector,
        "size": list(size_hw), "images": len(samples), "written": len(rows), "framing": framing,
        "no_face": len(no_face), "no_face_files": no_face,
        "skipped": [{"file": r["source_file"], "reason": r.get("reason", "")} for r in recs
                    if r.get("status") == "skipped"],
        "resumed": resumed,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The CLI's lines: one per framing, then the no-face and skipped counts."""
    n = max(1, summary["images"])
    lines = [f"{k}: {v} crops ({100 * v / n:.1f} % of {summary['images']} images)"
             for k, v in sorted(summary["framing"].items())]
    lines.append(f"no face: {summary['no_face']} images ({100 * summary['no_face'] / n:.1f} %)")
    if summary["skipped"]:
        lines.append(f"skipped (unreadable): {len(summary['skipped'])}")
    lines.append(f"labels: {Path(summary['output']) / 'labels.csv'}")
    return lines
