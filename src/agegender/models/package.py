"""Trained-model files: Lightning checkpoints (``.ckpt``) and self-describing model packages (``.safetensors``).

A package carries, next to the weights, everything needed to run them correctly — the config that
built the network, task sizes, preprocessing (input size, resize, mean/std, channel order, crop
margin), label names and a model card — like torchvision's ``weights.transforms()``. It is a safetensors
file (tensors plus a JSON header), a format that cannot carry code, so a model file from anyone is safe
to load. Lightning checkpoints are pickles; they are read with ``weights_only=True`` only.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.multitask import build_model

PACKAGE_FORMAT = "agegender-model"
PACKAGE_VERSION = 2
#: file ending of model packages
PACKAGE_SUFFIX = ".safetensors"
#: key of the package's JSON (config, dims, preprocess, labels, meta) in the safetensors header
_HEADER_KEY = "agegender"
#: reserved tensor name of the training fingerprint (not a weight of the network)
FINGERPRINT_TENSOR = "agegender.fingerprint"
#: a safetensors header larger than this is not taken for one (real packages have a few hundred kB)
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass
class ModelBundle:
    """A ready network plus the metadata that says how to feed and read it."""

    model: nn.Module
    config: dict[str, Any]
    dims: dict[str, int]
    preprocess: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    #: sorted 64-bit hashes of the image files the model was trained and calibrated on
    #: (:mod:`agegender.data.fingerprint`), or None when unknown
    fingerprint: np.ndarray | None = None

    @property
    def age_scheme(self) -> str:
        return self.config.get("data", {}).get("age_scheme", "adience8")

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor, tta_flip: bool = False) -> dict[str, np.ndarray]:
        """Decoded predictions for a preprocessed batch; ``tta_flip`` averages with the mirrored batch."""
        x = x.contiguous(memory_format=torch.channels_last)
        dec = self.model.decode(self.model(x))
        if tta_flip:
            dec2 = self.model.decode(self.model(torch.flip(x, dims=[3])))
            dec = {k: (v + dec2[k]) / 2 for k, v in dec.items()}
        return {k: v.float().cpu().numpy() for k, v in dec.items()}

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.config.get("name") or Path(self.source).stem)


def _sniff(path: Path) -> str:
    """``safetensors``, ``torch`` (a zip or pickle written by ``torch.save``) or ``unknown``, from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        # safetensors: an 8-byte little-endian header length, then the JSON header
        if head[8:9] == b"{" and 0 < n <= _MAX_HEADER_BYTES:
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    return "unknown"


def _safe_torch_load(path: Path, what: str) -> Any:
    """``torch.load`` with the restricted unpickler only: tensors and plain data, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files; each becomes one line
        if isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower():
            found = re.search(r"GLOBAL (\S+)", str(e))
            raise AgeGenderError(
                f"{path}: refused to load this {what}: it holds Python objects beyond tensors and plain data "
                f"({found.group(1) if found else 'an object'}), which can run code; load only files you made yourself",
                code="unsafe_model") from None
        raise AgeGenderError(f"{path}: not a readable {what} ({_one_line(e)}); it may be truncated or damaged",
                             code="bad_model") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, read with ``weights_only=True`` (no code can run); a damaged,
    empty or foreign file is a one-line :class:`AgeGenderError`."""
    p = Path(path)
    if not p.is_file():
        raise AgeGenderError(f"checkpoint {p} not found", code="missing_file")
    if p.stat().st_size == 0:
        raise AgeGenderError(f"{p}: the checkpoint is empty (0 bytes)",
                             code="bad_model")
    raw = _safe_torch_load(p, "checkpoint")
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise AgeGenderError(f"{p} is not a Lightning checkpoint (no state_dict)", code="bad_model")
    return raw


def load_bundle(path: str | Path) -> ModelBundle:
    """Load a model package (safetensors) or a Lightning checkpoint into an eval-mode :class:`ModelBundle`.

    Packages are safetensors files: tensors plus a JSON header, so loading one can never run code. A Lightning
    checkpoint (``.ckpt``, the user's own training output) is read with ``torch.load(weights_only=True)``. A
    pickle-based package of format 1 is refused with the command that converts it.
    """
    p = Path(path)
    if not p.is_file():
        raise AgeGenderError(f"model file {p} not found; give a package (.safetensors), a .ckpt or a bundled model name",
                             code="missing_file")
    if p.stat().st_size == 0:
        raise AgeGenderError(f"{p}: the model file is empty (0 bytes)", code="bad_model")
    kind = _sniff(p)
    if kind == "safetensors":
        return _load_package(p)
    if kind != "torch":
        raise AgeGenderError(f"{p} is not an agegender model file (expected a .safetensors package or a Lightning "
                             ".ckpt)", code="bad_model")
    raw = _safe_torch_load(p, "model file")
    if isinstance(raw, dict) and raw.get("format") == PACKAGE_FORMAT:
        raise AgeGenderError(
            f"{p} is an old pickle-based package, a format that can carry code, so it is no longer loaded; if it is "
            f"your own file, convert it once with: agegender convert {p} --output {p.with_suffix(PACKAGE_SUFFIX)}",
            code="legacy_model")
    if not (isinstance(raw, dict) and isinstance(raw.get("hyper_parameters"), dict) and "state_dict" in raw):
        raise AgeGenderError(f"{p} is neither an agegender package nor a Lightning checkpoint of agegender",
                             code="bad_model")
    hp = raw["hyper_parameters"]
    state = {k[len("model."):]: v for k, v in raw["state_dict"].items() if k.startswith("model.")}
    meta = {"epoch": raw.get("epoch"), "global_step": raw.get("global_step")}
    return _assemble(p, hp, state, meta)


def _load_package(p: Path) -> ModelBundle:
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            if header.get("format") != PACKAGE_FORMAT:
                raise AgeGenderError(f"{p} is a safetensors file but not an agegender package (no agegender header)",
                                     code="bad_model")
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except AgeGenderError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:  # damaged header or data
        raise AgeGenderError(f"{p}: damaged model package ({_one_line(e)})", code="bad_model") from None
    try:
        info = json.loads(header.get(_HEADER_KEY) or "")
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise AgeGenderError(f"{p}: the package header has no readable {_HEADER_KEY!r} JSON", code="bad_model")
    fingerprint = state.pop(FINGERPRINT_TENSOR, None)
    bundle = _assemble(p, info, state, dict(info.get("meta") or {}))
    if fingerprint is not None:
        bundle.fingerprint = fingerprint.numpy().astype(np.int64)
    return bundle


def _assemble(p: Path, hp: Mapping[str, Any], state: dict[str, torch.Tensor], meta: dict[str, Any]) -> ModelBundle:
    """Build the network that ``hp`` describes and load ``state`` into it; every mismatch is a ``bad_model`` error."""
    for key, kind in (("config", dict), ("dims", dict)):
        if not isinstance(hp.get(key), kind):
            raise AgeGenderError(f"{p}: the model file lacks its {key!r} (not made by agegender, or damaged)",
                                 code="bad_model")
    config = dict(hp["config"])
    if not isinstance(config.get("model"), dict):
        raise AgeGenderError(f"{p}: the model file's config has no 'model' section", code="bad_model")
    try:
        model = build_model(config["model"], hp["dims"], stats=None, with_losses=False)
    except AgeGenderError as e:
        raise AgeGenderError(f"{p}: cannot build its network: {e}", code="bad_model") from None
    except Exception as e:  # noqa: BLE001 - a config from an untrusted file can fail anywhere in the builders
        raise AgeGenderError(f"{p}: cannot build its network ({_one_line(e)})", code="bad_model") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()
             if not k.startswith(("losses.", "weighting."))}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise AgeGenderError(f"{p}: weights do not match the network ({_one_line(e)})", code="bad_model") from None
    missing = [m for m in missing if not m.startswith(("losses.", "weighting."))]
    if missing or unexpected:
        raise AgeGenderError(f"{p}: weights do not match the network (missing {missing[:3]}, unexpected {unexpected[:3]})",
                             code="bad_model")
    model.eval()
    return ModelBundle(model, config, dict(hp["dims"]), dict(hp.get("preprocess") or {}), dict(hp.get("labels") or {}),
                       meta, str(p))


def save_package(bundle: ModelBundle, path: str | Path, half: bool = False, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a model package: a safetensors file of the weights (fp16 with ``half``, halving the file) whose header
    carries the config, task sizes, preprocessing, labels and metadata as JSON, plus the training fingerprint
    (:attr:`ModelBundle.fingerprint`) when the bundle has one."""
    # clone: safetensors refuses tensors that share memory (tied or aliased weights)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().clone().contiguous()
               for k, v in bundle.model.state_dict().items()}
    if bundle.fingerprint is not None:
        tensors[FINGERPRINT_TENSOR] = torch.from_numpy(np.ascontiguousarray(bundle.fingerprint, dtype=np.int64))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": PACKAGE_FORMAT, "version": str(PACKAGE_VERSION),
                                           _HEADER_KEY: json.dumps(bundle_info(bundle, meta), default=json_default)})
    return out


def bundle_info(bundle: ModelBundle, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a model file says besides its weights (config, task sizes, preprocessing, labels, metadata with
    ``meta`` added): the header of a package and the metadata of an exported ONNX file alike."""
    return {"config": bundle.config, "dims": bundle.dims, "preprocess": bundle.preprocess, "labels": bundle.labels,
            "meta": {**bundle.meta, **dict(meta or {})}}


def convert_legacy_package(src: str | Path, dst: str | Path) -> Path:
    """Re-write a pickle-based package (format 1) as a safetensors package, keeping its weights' precision.

    The old file is read with ``torch.load(weights_only=True)``: a file holding anything but tensors and plain data
    is refused, so converting cannot run code either."""
    p = Path(src)
    if not p.is_file():
        raise AgeGenderError(f"{p} not found", code="missing_file")
    if _sniff(p) == "safetensors":
        raise AgeGenderError(f"{p} is already a safetensors package; nothing to convert", code="bad_model")
    raw = _safe_torch_load(p, "model file")
    if not (isinstance(raw, dict) and raw.get("format") == PACKAGE_FORMAT):
        raise AgeGenderError(f"{p} is not an old agegender package (a Lightning checkpoint is packaged with "
                             "`agegender package`)", code="bad_model")
    if not isinstance(raw.get("state_dict"), dict):
        raise AgeGenderError(f"{p}: the package lacks its 'state_dict'", code="bad_model")
    bundle = _assemble(p, raw, raw["state_dict"], dict(raw.get("meta") or {}))
    half = any(v.dtype == torch.float16 for v in raw["state_dict"].values() if torch.is_tensor(v))
    return save_package(bundle, dst, half=half, meta={"converted_from": f"format 1 package {p.name}"})


def is_package(path: str | Path) -> bool:
    """Whether ``path`` is a model package (a safetensors file), as opposed to a checkpoint."""
    p = Path(path)
    return p.is_file() and p.stat().st_size > 0 and _sniff(p) == "safetensors"


def _one_line(e: BaseException) -> str:
    """The first sentence of an exception's message, for one-line errors."""
    text = " ".join(str(e).split()).split(". ")[0]
    return f"{type(e).__name__}: {text[:120]}" if text else type(e).__name__


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for what model metadata and reports hold: NumPy and torch values, sets, paths."""
    if hasattr(o, "tolist"):  # NumPy arrays and scalars, torch tensors
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    return str(o)
