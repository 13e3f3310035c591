"""ONNX export of a trained model: the graph returns the *decoded* outputs (probabilities, years) with a
dynamic batch, and the file's ``metadata_props`` carry config, preprocessing and labels, so the ``.onnx``
file alone is loadable with ``agegender.load(path, backend="onnx")``."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agegender.bundled import resolve_model_path
from agegender.data.preprocess import Preprocessing, size_hw
from agegender.errors import AgeGenderError
from agegender.inference.onnx_runtime import ONNX_META_KEY, OnnxBackend
from agegender.models.package import ModelBundle, bundle_info, json_default, load_bundle

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


class UInt8Input(nn.Module):
    """The predictor's eval preprocessing inside the graph: uint8 RGB crops, NHWC, at the model's resize
    size → centre crop to the input size → (BGR if the model wants it) → ``(x / 255 - mean) / std`` → NCHW
    float. Exactly ``Preprocessing.batch`` (torchvision's ``CenterCrop`` offsets, ``ToDtype(scale=True)``,
    ``Normalize``), but ONNX Runtime fuses it with the first convolution instead of Python/torch doing it
    batch by batch (which had become the bottleneck of ONNX throughput, docs/performance.md)."""

    def __init__(self, inner: nn.Module, resize_hw: tuple[int, int], input_hw: tuple[int, int],
                 mean: Sequence[float], std: Sequence[float], bgr: bool) -> None:
        super().__init__()
        self.inner = inner
        (rh, rw), (h, w) = resize_hw, input_hw
        self.top, self.left = round((rh - h) / 2.0), round((rw - w) / 2.0)  # = v2.CenterCrop
        self.h, self.w = h, w
        self.bgr = bool(bgr)
        m, sd = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * sd)).view(1, -1, 1, 1))
        self.register_buffer("shift", (-m / sd).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x[:, self.top : self.top + self.h, self.left : self.left + self.w, :]
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        if self.bgr:
            x = x[:, [2, 1, 0]]
        return self.inner(x * self.scale + self.shift)


def _input_shape(bundle: ModelBundle) -> tuple[int, int, int]:
    """Channels, height, width of the network's normalised float input."""
    h, w = size_hw(bundle.preprocess.get("input_size") or 224)
    return len(bundle.preprocess.get("mean") or (0, 0, 0)), h, w


def _uint8_shape(bundle: ModelBundle) -> tuple[int, int, int]:
    """Height, width, channels of a ``uint8`` model's input: RGB crops at the resize size."""
    pp = bundle.preprocess
    h, w = size_hw(pp.get("resize") or pp.get("input_size") or 224)
    return h, w, 3


def export_onnx(
    model_path: str | Path | ModelBundle,
    out_path: str | Path,
    opset: int = 17,
    verify: bool = True,
    batch: int = 2,
    int8_calibration: Sequence[Any] | str | Path | None = None,
    calibration_limit: int = 256,
    input_format: str = "auto",
    fold_constants: bool = True,
    int8_scope: str = "trunk",
) -> dict[str, Any]:
    """Export a checkpoint/package (or a loaded bundle) to ``out_path``; returns a summary with the output
    names and, with ``verify``, the largest torch-vs-ONNX Runtime difference per output on random input.

    ``int8_calibration`` (face crops: a folder, or a list of paths/arrays) quantizes the trunk's convolutions
    to int8 (NNCF's post-training quantization, :func:`_quantize_int8`; a QDQ graph), with activation ranges
    measured on up to ``calibration_limit`` of those crops; batch norms are folded first (``fold_constants`` is
    ignored). The heads and the decoding (softmax, age quantile) stay in float. OpenVINO runs such a file in
    int8 (``agegender.load(path, backend="openvino")``), 2.4x ONNX Runtime's float32 on CPUs with AVX-512 VNNI;
    ONNX Runtime runs it too, but slowly (docs/performance.md). Check accuracy with ``agegender evaluate``.
    ``int8_scope``: ``trunk`` (default) quantizes every trunk convolution; ``safe`` also keeps the trunk's stem
    and depthwise convolutions in float (:func:`float_nodes`).

    ``input_format``: ``uint8`` takes RGB ``uint8`` crops ``[batch, H, W, 3]`` at the model's resize size
    and normalises them inside the graph (:class:`UInt8Input`); ``float`` takes the normalised
    ``[batch, C, h, w]`` float batch; ``auto`` (default) is ``uint8`` for 3-channel models, ``float`` for
    grayscale ones. :class:`~agegender.inference.onnx_runtime.OnnxBackend` reads which from the metadata.

    ``fold_constants=False`` keeps the batch norms apart from the convolutions, so the file's weights are the
    package's own values (ONNX Runtime folds them when it loads the file); the bundled twins are made so, which
    lets them store the package's float16 weights without rounding again.
    """
    bundle = (
        model_path if isinstance(model_path, ModelBundle) else load_bundle(resolve_model_path(model_path))
    )
    model = bundle.model.float().eval().to(memory_format=torch.contiguous_format)
    channels, h, w = _input_shape(bundle)
    x = torch.randn(batch, channels, h, w)
    with torch.no_grad():
        names = sorted(model.decode(model(x)))
    wrapper: nn.Module = DecodedModel(model, names).eval()
    if int8_scope not in ("safe", "trunk"):
        raise AgeGenderError(f"int8_scope must be 'safe' or 'trunk', not {int8_scope!r}", code="bad_option")
    if input_format == "auto":
        input_format = "uint8" if channels == 3 else "float"
    if input_format not in ("uint8", "float"):
        raise AgeGenderError(f"input_format must be 'auto', 'uint8' or 'float', not {input_format!r}",
                             code="bad_option")
    if input_format == "uint8":
        if channels != 3:
            raise AgeGenderError("input_format='uint8' needs a 3-channel model; use 'float'", code="bad_option")
        pp = bundle.preprocess
        rh, rw, _ = _uint8_shape(bundle)
        wrapper = UInt8Input(wrapper, (rh, rw), (h, w), pp.get("mean") or (0.485, 0.456, 0.406),
                             pp.get("std") or (0.229, 0.224, 0.225),
                             str(pp.get("channel_order", "RGB")).upper() == "BGR").eval()
        x = torch.randint(0, 256, (batch, rh, rw, 3), dtype=torch.uint8)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                (x,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes=dynamic,
                opset_version=int(opset),
                dynamo=False,
                # the int8 quantizer wants the batch norms folded into the convolutions
                do_constant_folding=fold_constants or int8_calibration is not None,
            )
        except Exception as e:  # noqa: BLE001 - exporter errors are many and untyped
            raise AgeGenderError(
                f"ONNX export failed: {type(e).__name__}: {e}", code="export_failed"
            ) from None
    import onnx

    proto = onnx.load(str(out))
    meta = {
        "format": "agegender-onnx",
        **bundle_info(bundle, {"exported_from": bundle.source, "opset": int(opset)}),
        "outputs": names,
        "input": INPUT_NAME,
        "input_format": input_format,
    }
    extra: dict[str, Any] = {}
    if int8_calibration is not None:
        proto, extra = _quantize_int8(bundle, proto, int8_calibration, calibration_limit, input_format, int8_scope)
        meta["meta"].update(extra)
    del proto.metadata_props[:]
    for key, value in {ONNX_META_KEY: meta, "preprocess": bundle.preprocess, "labels": bundle.labels}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value, default=json_default)
    proto.producer_name = "agegender"
    onnx.save(proto, str(out))
    summary: dict[str, Any] = {
        "onnx": str(out),
        "opset": int(opset),
        "input": [INPUT_NAME, *(_uint8_shape(bundle) if input_format == "uint8" else (channels, h, w))],
        "input_format": input_format,
        "outputs": names,
        "bytes": out.stat().st_size,
        **extra,
    }
    if verify:
        summary["max_abs_diff"] = parity(bundle, out)
    return summary


def parity(bundle: ModelBundle, onnx_path: str | Path, batch: int = 5, seed: int = 0) -> dict[str, float]:
    """Largest absolute difference per output between torch and ONNX Runtime on a random batch (random
    uint8 crops through the predictor's preprocessing for a ``uint8`` model, random floats otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    onnx_backend = OnnxBackend(onnx_path)
    if onnx_backend.input_format == "uint8":
        crops = torch.randint(0, 256, (batch, *_uint8_shape(bundle)), generator=gen, dtype=torch.uint8).numpy()
        ref = bundle.predict_tensor(torch.from_numpy(Preprocessing.from_meta(bundle.preprocess).batch(crops)))
        got = onnx_backend.run(crops)
    else:
        x = torch.randn(batch, *_input_shape(bundle), generator=gen)
        ref = bundle.predict_tensor(x)
        got = onnx_backend.run(x)
    return {k: float(np.max(np.abs(ref[k] - got[k]))) for k in ref}


def _calibration_batches(
    bundle: ModelBundle, images: Sequence[Any] | str | Path, limit: int, batch: int = 16,
    input_format: str = "float",
) -> list[np.ndarray]:
    """Calibration crops through the model's own preprocessing (as face crops: no detection); stacked
    uint8 crops for a ``uint8`` graph, normalised float batches otherwise."""
    from agegender.data.images import iter_image_files, load_image

    if isinstance(images, (str, Path)):
        images = iter_image_files([images])
    pre = Preprocessing.from_meta(bundle.preprocess)
    crops = []
    for src in images:
        try:
            crops.append(pre.resize(load_image(src)))
        except AgeGenderError:
            continue
        if len(crops) >= limit:
            break
    if not crops:
        raise AgeGenderError(
            "no readable calibration images; pass a folder of face crops", code="missing_file"
        )
    if input_format == "uint8":
        return [np.stack(crops[i : i + batch]) for i in range(0, len(crops), batch)]
    return [pre.batch(crops[i : i + batch]) for i in range(0, len(crops), batch)]


def _quantize_int8(
    bundle: ModelBundle, proto: Any, images: Sequence[Any] | str | Path, limit: int, input_format: str = "float",
    scope: str = "trunk",
) -> tuple[Any, dict[str, Any]]:
    """NNCF's post-training quantization (OpenVINO's quantizer: per-channel symmetric weights, activation ranges
    from the calibration crops, then a per-channel bias correction of the shift the rounding leaves) of the
    exported graph, as a QDQ ONNX file; every node of :func:`float_nodes` stays in float."""
    try:
        import nncf
    except ImportError:
        raise AgeGenderError("int8 export needs nncf: pip install 'agegender[onnx]'",
                             code="missing_dependency") from None
    import logging

    batches = _calibration_batches(bundle, images, limit, input_format=input_format)
    keep_float = float_nodes(proto, scope)
    quiet = logging.getLogger("nncf")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # its progress bars go to stdout, which the CLI keeps for the JSON summary
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            quantized = nncf.quantize(
                proto,
                nncf.Dataset(batches, lambda x: {INPUT_NAME: x}),
                subset_size=int(sum(len(b) for b in batches)),
                ignored_scope=nncf.IgnoredScope(names=keep_float, validate=False),
            )
    except Exception as e:  # noqa: BLE001 - the quantizer raises many untyped errors
        raise AgeGenderError(f"int8 quantization failed: {type(e).__name__}: {e}", code="export_failed") from None
    finally:
        quiet.setLevel(level)
    return quantized, {
        "quantized": "int8",
        "calibration_images": int(sum(len(b) for b in batches)),
        "float_nodes": len(keep_float),
    }


def float_nodes(proto: Any, scope: str = "trunk") -> list[str]:
    """Nodes the int8 export leaves in float: everything outside the trunk (input preprocessing, heads,
    decoding) and, with ``scope="safe"``, the trunk's first convolution and its depthwise convolutions
    (``scope="trunk"``: every trunk convolution is quantized).

    The decoding must stay in float: quantized, the age quantile's cumulative sum shifted the bundled face
    model's ages by -0.56 year on average. With the trunk alone quantized by NNCF, its UTKFace validation MAE
    moved 4.848 -> 4.853 (docs/results.md, "Reduced precision").
    """
    nodes = [n for n in proto.graph.node if n.name]
    trunk = [n for n in nodes if "/trunk/" in n.name]
    if not trunk:  # not exported by agegender (no scope names): quantize every convolution
        return []
    keep = {n.name for n in nodes if "/trunk/" not in n.name}
    convs = [n for n in trunk if n.op_type == "Conv"] if scope == "safe" else []
    if convs:
        keep.add(convs[0].name)
        keep.update(n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute))
    return sorted(keep)
