"""Writes the ONNX twin of each bundled model package (``agegender/weights/<name>.onnx``), which
``agegender.load("default")`` runs by default with ONNX Runtime (no torch needed).

The graph takes uint8 RGB crops and normalises them itself (``agegender export``'s ``uint8`` input). The package's
float16 weights are stored as they are, unfolded, and cast to float32 once when ONNX Runtime loads the file (its
graph optimisation removes the casts and folds the batch norms), so the file is as small as the package and the
arithmetic is float32, as in the package.

    python tools/export_bundled_onnx.py            # all bundled models but those shipped without a twin
    python tools/export_bundled_onnx.py default-body

``--int8`` writes the int8 twins instead (``<name>.int8.onnx``, :data:`INT8_MODELS`), which OpenVINO runs where a
speed check finds them faster than ONNX Runtime's float32 (CPUs without AMX): the trunk quantized by NNCF
(``agegender export --int8-calibration``), calibrated on ``--per-source`` random training faces of each source of
the recipe ``--config`` (its split, as ``agegender evaluate --split train`` would take them):

    python tools/export_bundled_onnx.py --int8 --config configs/default/face_recut.yaml --per-source 128
"""

from __future__ import annotations

import argparse
import random
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


#: bundled models shipped with an int8 twin (the face models; measured in docs/results.md, "Reduced precision")
INT8_MODELS = ("default", "default-fast")


def calibration_faces(config: str, per_source: int, seed: int = 0) -> list[np.ndarray]:
    """``per_source`` random training images of each source of the recipe ``config`` that exists here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from face_sources import recipe_sources

    from agegender.data.images import load_image
    from agegender.evaluation.evaluate import split_samples

    absolute, sources = recipe_sources(config)
    faces = []
    for s in sources:
        train = split_samples(s["dataset"], s["root"], "train", absolute)[0]
        for sample in random.Random(seed).sample(train, min(per_source, len(train))):
            faces.append(load_image(sample.path))
        print(f"calibration: {min(per_source, len(train))} training faces of {s['name']}")
    return faces


def export_int8_twin(name: str, faces: list[np.ndarray]) -> Path:
    package = resolve_model_path(name)
    out = WEIGHTS_DIR / (package.stem + ".int8.onnx")
    summary = export_onnx(package, out, verify=False, input_format="uint8", int8_calibration=faces,
                          calibration_limit=len(faces))
    diff = parity(load_bundle(package), out)
    worst = ", ".join(f"{k} {v:.2g}" for k, v in sorted(diff.items()))
    print(f"{name}: {out.name}, {out.stat().st_size / 1e6:.1f} MB, int8 trunk ({summary['float_nodes']} nodes in "
          f"float), calibrated on {summary['calibration_images']} faces; largest difference from the package on "
          f"random crops (ONNX Runtime): {worst}")
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--int8", action="store_true", help="write the int8 twins")
    ap.add_argument("--config", default="configs/default/face_recut.yaml", help="recipe of the calibration faces")
    ap.add_argument("--per-source", type=int, default=128, help="calibration faces per source")
    args = ap.parse_args(argv)
    if args.int8:
        faces = calibration_faces(args.config, args.per_source)
        for name in args.names or INT8_MODELS:
            export_int8_twin(name, faces)
        return
    for name in args.names or sorted({n for n in BUNDLED if (BUNDLED[n] != BUNDLED["default"] or n == "default")
                                      and n not in WITHOUT_TWIN}):
        export_twin(name)


if __name__ == "__main__":
    main(sys.argv[1:])
