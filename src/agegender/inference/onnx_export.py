"""ONNX export of a trained model: the graph returns the *decoded* outputs (probabilities, years) with a
dynamic batch, and the file's ``metadata_props`` carry config, preprocessing and labels, so the ``.onnx``
file alone is loadable with ``agegender.load(path, backend="onnx")``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.inference.backends import ONNX_META_KEY
from agegender.inference.registry import resolve_model_path
from agegender.models.package import ModelBundle, load_bundle

INPUT_NAME = "image"


class DecodedModel(nn.Module):
    """``decode(forward(x))`` as a tuple in a fixed key order (what ONNX outputs are named after)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dec = self.model.decode(self.model(x))
        return tuple(dec[k] for k in self.names)


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _input_shape(bundle: ModelBundle) -> tuple[int, int, int]:
    size = bundle.preprocess.get("input_size") or 224
    h, w = (size, size) if isinstance(size, int) else size[:2]
    return len(bundle.preprocess.get("mean") or (0, 0, 0)), int(h), int(w)


def export_onnx(
    model_path: str | Path | ModelBundle,
    out_path: str | Path,
    opset: int = 17,
    verify: bool = True,
    batch: int = 2,
) -> dict[str, Any]:
    """Export a checkpoint/package (or a loaded bundle) to ``out_path``; returns a summary with the output
    names and, with ``verify``, the largest torch-vs-ONNX Runtime difference per output on random input."""
    bundle = model_path if isinstance(model_path, ModelBundle) else load_bundle(resolve_model_path(model_path))
    model = bundle.model.float().eval().to(memory_format=torch.contiguous_format)
    channels, h, w = _input_shape(bundle)
    x = torch.randn(batch, channels, h, w)
    with torch.no_grad():
        names = sorted(model.decode(model(x)))
    wrapper = DecodedModel(model, names).eval()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, (x,), str(out), input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes=dynamic, opset_version=int(opset), dynamo=False, do_constant_folding=True)
        except Exception as e:  # noqa: BLE001 - exporter errors are many and untyped
            raise AgeGenderError(f"ONNX export failed: {type(e).__name__}: {e}", code="export_failed") from None
    import onnx

    proto = onnx.load(str(out))
    meta = {
        "format": "agegender-onnx",
        "config": bundle.config,
        "dims": bundle.dims,
        "preprocess": bundle.preprocess,
        "labels": bundle.labels,
        "meta": {**bundle.meta, "exported_from": bundle.source, "opset": int(opset)},
        "outputs": names,
        "input": INPUT_NAME,
    }
    del proto.metadata_props[:]
    for key, value in {ONNX_META_KEY: _json_safe(meta), "preprocess": bundle.preprocess,
                       "labels": bundle.labels}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(_json_safe(value))
    proto.producer_name = "agegender"
    onnx.save(proto, str(out))
    summary: dict[str, Any] = {"onnx": str(out), "opset": int(opset), "input": [INPUT_NAME, channels, h, w],
                               "outputs": names, "bytes": out.stat().st_size}
    if verify:
        summary["max_abs_diff"] = parity(bundle, out)
    return summary


def parity(bundle: ModelBundle, onnx_path: str | Path, batch: int = 5, seed: int = 0) -> dict[str, float]:
    """Largest absolute difference per output between torch and ONNX Runtime on a random batch."""
    from agegender.inference.backends import OnnxBackend

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *_input_shape(bundle), generator=gen)
    ref = bundle.predict_tensor(x)
    got = OnnxBackend(onnx_path).run(x)
    return {k: float(np.max(np.abs(ref[k] - got[k]))) for k in ref}
