"""Writes the ONNX twin of each bundled model package (``agegender/weights/<name>.onnx``), which
``agegender.load("default")`` runs by default with ONNX Runtime (no torch needed).

The graph takes uint8 RGB crops and normalises them itself (``agegender export``'s ``uint8`` input). The package's
float16 weights are stored as they are, unfolded, and cast to float32 once when ONNX Runtime loads the file (its
graph optimisation removes the casts and folds the batch norms), so the file is as small as the package and the
arithmetic is float32, as in the package.

    python tools/export_bundled_onnx.py            # all bundled models but those shipped without a twin
    python tools/export_bundled_onnx.py default-body
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import agegender  # noqa: F401
from agegender.bundled import BUNDLED, WEIGHTS_DIR, WITHOUT_TWIN, resolve_model_path
from agegender.inference.onnx_export import export_onnx, parity
from agegender.models.package import load_bundle

#: float initializers smaller than this stay float32 (biases, scalars: nothing to gain)
MIN_HALF_ELEMENTS = 64


def store_weights_half(model: onnx.ModelProto) -> int:
    """Replace each large float32 initializer by a float16 one plus a Cast back to float32; returns how many."""
    graph, casts, done = model.graph, [], 0
    keep = []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or arr.size < MIN_HALF_ELEMENTS:
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), name=f"{init.name}__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
        done += 1
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return done


def export_twin(name: str) -> Path:
    package = resolve_model_path(name)
    out = WEIGHTS_DIR / (package.stem + ".onnx")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(package, fp32, verify=False, input_format="uint8", fold_constants=False)
        model = onnx.load(str(fp32))
        n = store_weights_half(model)
        onnx.checker.check_model(model)
        onnx.save(model, str(out))
    diff = parity(load_bundle(package), out)
    worst = ", ".join(f"{k} {v:.1e}" for k, v in sorted(diff.items()))
    print(f"{name}: {out.name}, {out.stat().st_size / 1e6:.1f} MB, {n} weights stored as fp16; largest difference "
          f"from the package on random crops: {worst}")
    return out


def main(names: list[str]) -> None:
    for name in names or sorted({n for n in BUNDLED if (BUNDLED[n] != BUNDLED["default"] or n == "default")
                                 and n not in WITHOUT_TWIN}):
        export_twin(name)


if __name__ == "__main__":
    main(sys.argv[1:])
