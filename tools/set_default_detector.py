"""Set the detector a bundled face package names as its own (``meta.default_detector``), keeping its weights, their
precision and every other header field byte for byte; then re-export the ONNX twins (``tools/export_bundled_onnx.py``).

The bundled face models were trained on crops framed by BlazeFace; CenterFace's framing is fitted to give the same
crops on real photos (``agegender.inference.detectors.centerface``), so they name ``centerface``:

    python tools/set_default_detector.py centerface default-face default-fast
    python tools/export_bundled_onnx.py default default-fast
"""

from __future__ import annotations

import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from agegender.bundled import WEIGHTS_DIR
from agegender.inference.detectors import DETECTORS

HEADER = "agegender"


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    detector, names = sys.argv[1], sys.argv[2:]
    DETECTORS.get(detector)  # unknown names: the error lists the registered ones
    for name in names:
        path = WEIGHTS_DIR / f"{name}.safetensors"
        with safe_open(str(path), "np") as f:
            metadata = dict(f.metadata())
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        info = json.loads(metadata[HEADER])
        old = info["meta"].get("default_detector")
        info["meta"]["default_detector"] = detector
        metadata[HEADER] = json.dumps(info)
        save_file(tensors, str(path), metadata=metadata)
        with safe_open(str(path), "np") as f:  # the weights are unchanged
            assert all(np.array_equal(f.get_tensor(k), v) and f.get_tensor(k).dtype == v.dtype for k, v in tensors.items())
        print(f"{path.name}: default detector {old} -> {detector}")


if __name__ == "__main__":
    main()
