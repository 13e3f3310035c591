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
