"""Shared by the benchmark scripts: pick the model to measure (bundled, given, or a freshly built stand-in)
and describe the machine, so every printed figure says what it was measured on."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import agegender  # noqa: F401  (torchvision compat first)
from agegender.errors import AgeGenderError

REPO = Path(__file__).resolve().parents[1]
#: what stands in for a missing bundled model: the default model's own training config
DEFAULT_STANDIN = str(REPO / "configs" / "default" / "face.yaml")
#: the face models' sources as the bundled pipeline cuts them (CenterFace, faces turned upright) with the parts the
#: bundled face models were trained, calibrated and tested on: what the per-source benchmarks score by default
FACE_RECIPE = str(REPO / "configs" / "default" / "face_recut.yaml")


def build_standin(spec: str, folder: str | Path) -> Path:
    """A random-weight package with the architecture, input size, preprocessing and TTA setting of a
    config (``spec`` a YAML path), or the default heads on a trunk (``spec`` a trunk name): the same
    cost as the trained model, meaningless outputs."""
    from agegender.labels import ETHNICITIES, GENDERS, get_scheme
    from agegender.models import TRUNKS, build_model
    from agegender.models.package import ModelBundle, save_package
    from agegender.training.config import load_config

    if spec.endswith((".yaml", ".yml")):
        cfg = load_config(spec, ["model.trunk.pretrained=false"])
    else:
        heads = {
            "age": {"type": "age_distribution"},
            "gender": {"type": "classification"},
            "ethnicity": {"type": "classification"},
        }
        cfg = load_config(
            None,
            [f"model.trunk.name={spec}", "model.trunk.pretrained=false"],
            model={"heads": heads},
            name=f"standin-{spec}",
        )
    trunk = cfg["model"]["trunk"]["name"]
    meta = TRUNKS.meta(trunk)
    size = int(cfg["data"].get("input_size") or meta.get("input_size") or 112)
    scheme = cfg["data"].get("age_scheme") or "adience8"
    dims = {
        "age_group": get_scheme(scheme).num_groups,
        "gender": 2,
        "ethnicity": 5,
        "attributes": 0,
        "pedestrian": 1 + get_scheme(scheme).num_groups,
    }
    model = build_model(cfg["model"], dims, stats=None, with_losses=False).eval()
    mean = list(cfg["data"].get("mean") or meta.get("mean") or (0.485, 0.456, 0.406))
    std = list(cfg["data"].get("std") or meta.get("std") or (0.229, 0.224, 0.225))
    pre = {
        "input_size": [size, size],
        "resize": [size, size],
        "mean": mean,
        "std": std,
        "channel_order": "RGB",
        "crop_margin": float(cfg["data"].get("crop_margin") or 0.0),
    }
    labels = {
        "gender": list(GENDERS),
        "ethnicity": list(ETHNICITIES),
        "age_scheme": scheme,
        "age_groups": list(get_scheme(scheme).labels),
        "attributes": [],
    }
    name = (
        f"stand-in {cfg.get('name')} ({trunk} {size}px, random weights, tta_flip={cfg['eval']['tta_flip']})"
    )
    bundle = ModelBundle(model, dict(cfg), dims, pre, labels, {"name": name})
    return save_package(bundle, Path(folder) / "standin.safetensors")


def resolve_model(name: str, fallback: str = DEFAULT_STANDIN) -> tuple[str, str]:
    """(model path, description): ``name`` if it resolves, else a stand-in built from ``fallback``."""
    from agegender.inference.registry import resolve_model_path

    try:
        path = resolve_model_path(name)
        return str(path), f"{name} ({path})"
    except AgeGenderError as e:
        folder = tempfile.mkdtemp(prefix="agegender-bench-")
        path = build_standin(fallback, folder)
        from agegender.models.package import load_bundle

        return str(path), f"{load_bundle(path).name}, since model {name!r} is unavailable ({e.code})"


def runtime_spec(spec: str) -> tuple[str, dict]:
    """``MODEL[@BACKEND[-PRECISION]]`` (e.g. ``default@openvino-bf16``, ``runs/x/pkg.onnx@onnx-fp32``) as the model and
    the ``agegender.load`` options it names (none for a plain model: ``load``'s own choice)."""
    model, _, runtime = spec.partition("@")
    backend, _, precision = runtime.partition("-")
    return model, {k: v for k, v in (("backend", backend), ("precision", precision)) if v}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    from agegender.inference.machine import cpu_name

    return cpu_name()


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"(default {torch.get_num_threads()} threads), load average {load:.2f} at start"
    )


def crop_square(detector: str, box) -> tuple[float, float, float]:
    """Centre and side of the square crop the predictor cuts for a detector's ``box``: the box with the
    detector's registered framing (``detector_framing``), so detectors that box faces differently are
    matched to pasted faces alike."""
    from agegender.inference.detectors.base import detector_framing, expand_box

    margin, shift = detector_framing(detector)
    x1, y1, x2, y2 = box
    dy = shift * (y2 - y1)
    x1, y1, x2, y2 = expand_box((x1, y1 + dy, x2, y2 + dy), margin)
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1


def detector_settings(names: str, settings: dict, warm_image, width: int):
    """``(name, detector)`` for each comma-separated setting name (``settings``: name → (detector, options)),
    each run once on ``warm_image`` first; a detector this machine lacks is printed as unavailable and left out."""
    from agegender.inference.detectors import build_detector

    for name in names.split(","):
        det_name, opts = settings[name]
        try:
            det = build_detector(det_name, **opts)
        except AgeGenderError as e:
            print(f"{name:{width}} unavailable: {e}")
            continue
        det.detect(warm_image)  # warm-up
        yield name, det
