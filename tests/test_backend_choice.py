"""backend="auto" (agegender.inference.backend_choice) and precision="auto": the runtime or precision is
chosen by timing it on this machine, the fastest is kept, the choice is cached, and results do not change
beyond rounding."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import agegender  # noqa: F401  (torchvision compat first)
from agegender.errors import AgeGenderError
from agegender.inference import backend_choice, backends
from agegender.inference.backend_choice import candidates, open_fastest_backend, synthetic_batch
from agegender.inference.backends import TorchBackend
from agegender.inference.onnx_runtime import OnnxBackend

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_auto_measures_keeps_the_fastest_and_caches(tiny_face_model: Path, cache_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    be = open_fastest_backend(tiny_face_model, batch_size=16, min_seconds=0.05)
    sel = be.selection
    assert set(sel["crops_per_second"]) == {"torch", "onnx"} and not sel["cached"]
    assert all(v > 0 for v in sel["crops_per_second"].values())
    assert sel["choice"] == max(sel["crops_per_second"], key=sel["crops_per_second"].get)
    assert be.name == sel["choice"]
    # the chosen runtime computes the same network as eager PyTorch
    ref = TorchBackend(tiny_face_model, optimize_after=None)
    x = synthetic_batch(ref, 5, seed=4)
    want = ref.run(x)
    got = be.run(synthetic_batch(be, 5, seed=4) if be.input_format == "uint8" else x)
    if be.input_format != "uint8":
        for k in want:
            np.testing.assert_allclose(want[k], got[k], atol=1e-4, err_msg=k)
    else:
        assert set(want) <= set(got)
    # the choice is remembered: a second load only opens the winner and measures nothing
    entries = json.loads((cache_dir / "backend_choice.json").read_text())
    assert [e["choice"] for e in entries.values()] == [sel["choice"]]

    def no_timing(*a, **k):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(backend_choice, "crops_per_second", no_timing)
    exports = list((cache_dir / "onnx").glob("*.onnx"))
    assert len(exports) == 1  # the ONNX candidate's export is kept beside the choice ...

    def no_export(*a, **k):
        raise AssertionError("exported again despite the cache")

    from agegender.inference import onnx_export

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = open_fastest_backend(tiny_face_model, batch_size=16)  # ... and reused
    assert again.selection["cached"] and again.name == sel["choice"]
    assert again.source == str(tiny_face_model)
    monkeypatch.undo()
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(backend_choice, "crops_per_second", no_timing)
    # another batch size, or a changed model file, is a new key: measured again
    with pytest.raises(AssertionError, match="measured again"):
        open_fastest_backend(tiny_face_model, batch_size=8)
    st = tiny_face_model.stat()
    os.utime(tiny_face_model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="measured again"):
        open_fastest_backend(tiny_face_model, batch_size=16)


@pytest.mark.parametrize(("rates", "winner"), [({"torch": 200.0, "onnx": 100.0}, "torch"),
                                               ({"torch": 100.0, "onnx": 300.0}, "onnx")])
def test_auto_follows_the_measurement(tiny_face_model: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                      rates: dict[str, float], winner: str) -> None:
    monkeypatch.setattr(backend_choice, "crops_per_second", lambda be, *a, **k: rates[be.name])
    be = open_fastest_backend(tiny_face_model, use_cache=False)
    assert be.name == winner and be.selection["crops_per_second"] == rates
    assert not (cache_dir / "backend_choice.json").exists()  # use_cache=False writes nothing


def test_auto_skips_a_candidate_that_cannot_be_built(tiny_face_model: Path, cache_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    def no_onnx(path, *a, **k):
        raise AgeGenderError("export failed", code="bad_model")

    monkeypatch.setattr(backend_choice, "_open_onnx", no_onnx)
    be = open_fastest_backend(tiny_face_model, use_cache=False, min_seconds=0.01)
    assert isinstance(be, TorchBackend) and list(be.selection["crops_per_second"]) == ["torch"]
    assert "onnx is not usable" in caplog.text

    def no_torch(*a, **k):
        raise AgeGenderError("no such model", code="bad_model")

    monkeypatch.setattr(backend_choice, "TorchBackend", no_torch)
    with pytest.raises(AgeGenderError, match="no such model"):  # nothing usable: the first error
        open_fastest_backend(tiny_face_model, use_cache=False)


def test_candidates(tiny_face_model: Path, tmp_path: Path) -> None:
    assert candidates(tmp_path / "m.onnx", "cpu", "fp32") == ["onnx"]
    assert candidates(tiny_face_model, "cpu", "fp32") == ["torch", "onnx"]
    assert candidates(tiny_face_model, "cpu", "auto") == ["torch", "onnx"]
    assert candidates(tiny_face_model, "cpu", "bf16") == ["torch"]  # bfloat16 is a PyTorch option


def test_load_auto_reports_the_choice(tiny_face_model: Path, cache_dir: Path, grace_hopper: Path) -> None:
    from agegender.inference.predictor import load

    p = load(tiny_face_model, backend="auto", detector="none", batch_size=8)
    info = p.info()
    assert info["backend"] == info["backend_selection"]["choice"]
    people = p.predict(grace_hopper)
    assert len(people) == 1 and people[0].gender in ("male", "female") and people[0].gender_probs
    assert load(tiny_face_model, detector="none").info()["backend_selection"] is None


def test_cli_predict_backend_auto(tiny_face_model: Path, cache_dir: Path, grace_hopper: Path) -> None:
    from typer.testing import CliRunner

    from agegender.cli import app

    r = CliRunner().invoke(app, ["predict", str(grace_hopper), "--model", str(tiny_face_model), "--detector",
                                 "none", "--backend", "auto", "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    assert "(auto: torch" in r.stderr and "crops/s)" in r.stderr
    assert json.loads(r.stdout.splitlines()[0])["status"] == "ok"


@pytest.mark.parametrize("faster", ["fp32", "bf16"])
def test_precision_auto_keeps_the_faster_trace(tiny_face_model: Path, monkeypatch: pytest.MonkeyPatch,
                                               faster: str) -> None:
    """With native bfloat16, precision="auto" freezes both networks, times them and keeps the faster."""
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    b = TorchBackend(tiny_face_model, optimize_after=0, precision="auto")
    model = b.bundle.model.eval()

    def fake_freeze(example: torch.Tensor, dtype: torch.dtype = torch.float32):
        slow = (dtype == torch.float32) != (faster == "fp32")

        def net(x: torch.Tensor):
            if slow:
                time.sleep(0.25)  # far above any run time of the tiny net, even on a busy machine
            return model(x.float())

        return net

    monkeypatch.setattr(b, "_freeze", fake_freeze)
    out = b.run(synthetic_batch(b, 4))
    assert b.optimized and b.precision == faster
    assert all(v.dtype == np.float32 for v in out.values())


def test_precision_auto_is_fp32_without_native_bf16(tiny_face_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    b = TorchBackend(tiny_face_model, optimize_after=0, precision="auto")
    assert b.precision == "fp32"
    b.run(synthetic_batch(b, 3))
    assert b.optimized and b.precision == "fp32" and "BFloat16" not in str(b._frozen.graph)


def test_onnx_file_auto_is_onnx(tiny_face_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    from agegender.inference.onnx_export import export_onnx

    onnx = export_onnx(tiny_face_model, tmp_path / "tiny.onnx", verify=False)["onnx"]
    be = open_fastest_backend(onnx, min_seconds=0.01)
    assert isinstance(be, OnnxBackend) and list(be.selection["crops_per_second"]) == ["onnx"]


def test_timing_counts_the_step_from_crops_to_each_runtime(tiny_face_model: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # PyTorch takes a normalised float batch, made from the crops in Python; an ONNX file with a uint8 input
    # normalises inside its graph. The timing must include the first step, or it ranks the runtimes wrongly.
    from agegender.data.preprocess import Preprocessing
    from agegender.inference.onnx_export import export_onnx

    batches: list[int] = []
    real = Preprocessing.batch
    monkeypatch.setattr(Preprocessing, "batch", lambda self, crops: batches.append(len(crops)) or real(self, crops))
    torch_be = TorchBackend(tiny_face_model, optimize_after=0)
    assert backend_choice.crops_per_second(torch_be, 4, min_seconds=0.0) > 0
    assert batches and set(batches) == {4}  # every timed call made its float batch from 4 uint8 crops
    batches.clear()
    onnx_be = OnnxBackend(export_onnx(tiny_face_model, tmp_path / "m.onnx", verify=False)["onnx"])
    assert onnx_be.input_format == "uint8"
    assert backend_choice.crops_per_second(onnx_be, 4, min_seconds=0.0) > 0
    assert batches == []  # the crops go to ONNX Runtime as they are
