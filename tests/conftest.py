"""Shared test fixtures: isolated caches, the real data folder beside the repo, and small images."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Point every cache at a temporary folder before anything imports torch/matplotlib/HF (ENVIRONMENT.md).
_CACHE = Path(tempfile.mkdtemp(prefix="agegender-test-cache-"))
for var, sub in {
    "TORCH_HOME": "torch",
    "HF_HOME": "hf",
    "MPLCONFIGDIR": "mpl",
    "XDG_CACHE_HOME": "xdg",
    "AGEGENDER_CACHE_DIR": "agegender",
}.items():
    os.environ[var] = str(_CACHE / sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AGEGENDER_SHARED", REPO.parent / "shared"))
UTKFACE = SHARED / "data" / "utkface"
PETA = SHARED / "data" / "peta"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a shared 2-core machine, two spinning OpenMP threads make
    each training step ~10x slower. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch  # here, not at import time: the cache variables above must be set first

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    if not (UTKFACE / "labels.csv").exists():
        pytest.skip(f"real UTKFace data not found at {UTKFACE}")
    return UTKFACE


@pytest.fixture(scope="session")
def peta_dir() -> Path:
    if not (PETA / "labels.csv").exists():
        pytest.skip(f"real PETA data not found at {PETA}")
    return PETA


@pytest.fixture(scope="session")
def grace_hopper() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture
def grace_source(grace_hopper: Path, tmp_path: Path) -> Path:
    """A one-photo source in the ``csv`` reader's layout (``images/grace.jpg``, ``labels.csv``), for crop caches."""
    import shutil

    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    shutil.copy(grace_hopper, root / "images" / "grace.jpg")
    (root / "labels.csv").write_text("file,age,gender\ngrace.jpg,79,1\n")
    return root


@pytest.fixture(scope="session")
def fake_yunet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX file with YuNet's input and its 12 outputs (``cls|obj|bbox|kps_{8,16,32}``, dynamic input size) but
    no learnt weights: one face where the image is white, on the stride-32 grid cell it fills."""
    import math

    import agegender  # noqa: F401 - its torchvision compatibility fix must precede torch (ENVIRONMENT.md)

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")

    class FakeYuNet(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            cls, obj, bbox, kps = [], [], [], []
            for stride in (8, 16, 32):
                cell = torch.nn.functional.avg_pool2d(x[:, :1], stride).flatten(1).unsqueeze(-1) / 255.0
                score = cell if stride == 32 else cell * 0.0
                zero = score * 0.0
                cls.append(score)
                obj.append(zero + 1.0)
                # centre at the cell centre, width = height = exp(log 2) × stride
                bbox.append(torch.cat([zero + 0.5, zero + 0.5, zero + math.log(2.0), zero + math.log(2.0)], -1))
                kps.append(torch.cat([zero + 0.5] * 10, -1))
            return tuple(cls + obj + bbox + kps)

    path = tmp_path_factory.mktemp("fake-yunet") / "fake_yunet.onnx"
    outputs = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    torch.onnx.export(FakeYuNet(), torch.zeros(1, 3, 320, 320), str(path), input_names=["input"], output_names=outputs,
                      dynamic_axes={"input": {2: "h", 3: "w"}, **{o: {1: f"cells_{o[-2:].strip('_')}"} for o in outputs}},
                      opset_version=17, dynamo=False)
    return path
