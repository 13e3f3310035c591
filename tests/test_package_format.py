"""Model files are untrusted input: packages are safetensors (no code can run when loading one), pickle-based
files are refused or read with torch's restricted unpickler only, and every bad file is a one-line error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agegender.cli import app
from agegender.errors import AgeGenderError
from agegender.bundled import BUNDLED, WEIGHTS_DIR
from agegender.models.package import (
    FINGERPRINT_TENSOR,
    PACKAGE_FORMAT,
    convert_legacy_package,
    is_package,
    load_bundle,
    save_package,
)
from helpers_models import grace_hopper_path, tiny_bundle


class _Payload:
    """Unpickling this runs ``os.system``: what an attacker hides in a pickle-based model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy_dict(bundle) -> dict:
    """A format-1 package as earlier versions wrote it with ``torch.save``."""
    return {"format": PACKAGE_FORMAT, "version": 1, "config": bundle.config, "dims": bundle.dims,
            "preprocess": bundle.preprocess, "labels": bundle.labels, "meta": dict(bundle.meta),
            "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in bundle.model.state_dict().items()}}


@pytest.fixture()
def malicious(tmp_path):
    raw = _legacy_dict(tiny_bundle("face"))
    marker = tmp_path / "PWNED"
    raw["meta"]["note"] = _Payload(marker)
    path = tmp_path / "model.pt"
    torch.save(raw, path)
    return path, marker


def test_package_is_safetensors_and_round_trips(tmp_path):
    from safetensors import safe_open

    b = tiny_bundle("face", seed=3)
    b.fingerprint = np.array([-5, 7, 11], dtype=np.int64)
    path = save_package(b, tmp_path / "m.safetensors", half=True, meta={"extra": 1})
    assert is_package(path) and path.read_bytes()[8:9] == b"{"
    with safe_open(str(path), framework="pt") as f:  # plain tensors + a JSON header, nothing else
        assert f.metadata()["format"] == PACKAGE_FORMAT and FINGERPRINT_TENSOR in f.keys()  # noqa: SIM118
    again = load_bundle(path)
    assert again.meta["extra"] == 1 and again.config == b.config and again.preprocess == b.preprocess
    assert again.fingerprint.tolist() == [-5, 7, 11]
    x = torch.rand(2, 3, 64, 64)
    for k, v in b.predict_tensor(x).items():
        np.testing.assert_allclose(again.predict_tensor(x)[k], v, atol=2e-2)


def test_loading_a_package_never_unpickles(tmp_path, monkeypatch):
    path = save_package(tiny_bundle("face"), tmp_path / "m.safetensors")

    def no_pickle(*a, **k):
        raise AssertionError("torch.load called for a package")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert load_bundle(path).name == "tiny-face"


def test_bundled_models_are_safetensors_packages():
    for name, file in BUNDLED.items():
        assert file.endswith(".safetensors") and is_package(WEIGHTS_DIR / file), name
    assert not list(WEIGHTS_DIR.glob("*.pt"))


def test_malicious_pickle_is_refused_without_running(malicious):
    path, marker = malicious
    with pytest.raises(AgeGenderError, match="refused to load") as e:
        load_bundle(path)
    assert e.value.code == "unsafe_model" and "\n" not in str(e.value)
    with pytest.raises(AgeGenderError, match="refused"):
        convert_legacy_package(path, path.with_suffix(".safetensors"))
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["predict", "--model", "{model}", "{image}"],
    ["evaluate", "--model", "{model}", "--dataset", "utkface", "--data", "{folder}"],
    ["serve", "--model", "{model}", "--port", "1"],
    ["export", "{model}", "--onnx", "{folder}/m.onnx"],
])
def test_cli_refuses_malicious_model_in_one_line(malicious, command, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("serve started with a refused model"))
    path, marker = malicious
    args = [a.format(model=path, image=grace_hopper_path(), folder=path.parent) for a in command]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "refused to load" in r.output and "Traceback" not in r.output
    assert not marker.exists()


def test_init_from_refuses_malicious_model(malicious):
    from agegender.models import build_model
    from agegender.training.train import init_weights

    path, marker = malicious
    b = tiny_bundle("face")
    target = build_model(b.config["model"], b.dims, stats=None, with_losses=False)
    with pytest.raises(AgeGenderError, match="refused"):
        init_weights(target, str(path))
    assert not marker.exists()


def test_legacy_package_is_refused_with_the_convert_command(tmp_path):
    b = tiny_bundle("face", seed=2)
    old = tmp_path / "mine.pt"
    torch.save(_legacy_dict(b), old)
    with pytest.raises(AgeGenderError, match="agegender convert") as e:
        load_bundle(old)
    assert e.value.code == "legacy_model"
    r = CliRunner().invoke(app, ["convert", str(old), "--output", str(tmp_path / "mine.safetensors")])
    assert r.exit_code == 0, r.output
    new = load_bundle(tmp_path / "mine.safetensors")
    assert new.meta["name"] == "tiny-face" and "converted_from" in new.meta
    x = torch.rand(2, 3, 64, 64)
    for k, v in b.predict_tensor(x).items():
        np.testing.assert_allclose(new.predict_tensor(x)[k], v, atol=2e-2)
    # fp16 weights stay fp16
    from safetensors import safe_open

    with safe_open(str(tmp_path / "mine.safetensors"), framework="pt") as f:
        assert f.get_tensor("trunk.features.0.weight").dtype == torch.float16


@pytest.mark.parametrize("case", ["no_state_dict", "no_config", "not_a_dict"])
def test_incomplete_legacy_package_is_one_line(tmp_path, case):
    raw = _legacy_dict(tiny_bundle("face"))
    if case == "no_state_dict":
        del raw["state_dict"]
    elif case == "no_config":
        del raw["config"]
    else:
        raw = [1, 2, 3]
    path = tmp_path / "x.pt"
    torch.save(raw, path)
    with pytest.raises(AgeGenderError) as e:
        convert_legacy_package(path, tmp_path / "y.safetensors")
    assert e.value.code == "bad_model" and "\n" not in str(e.value)
    with pytest.raises(AgeGenderError):
        load_bundle(path)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    good = save_package(tiny_bundle("face"), tmp_path / "good.safetensors")
    data = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "header_cut": data[:40],
        "text": b"hello, not a model\n",
        "jpeg": grace_hopper_path().read_bytes(),
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f"{name}.safetensors"
        out[name].write_bytes(content)
    out["no_header"] = tmp_path / "no_header.safetensors"
    save_file({"w": torch.zeros(2)}, str(out["no_header"]))
    out["header_without_config"] = tmp_path / "hwc.safetensors"
    save_file({"w": torch.zeros(2)}, str(out["header_without_config"]),
              metadata={"format": PACKAGE_FORMAT, "agegender": '{"dims": {}}'})
    out["bad_json"] = tmp_path / "bad_json.safetensors"
    save_file({"w": torch.zeros(2)}, str(out["bad_json"]), metadata={"format": PACKAGE_FORMAT, "agegender": "{nope"})
    out["wrong_weights"] = tmp_path / "wrong.safetensors"
    b = tiny_bundle("face")
    b.config = {**b.config, "model": {**b.config["model"], "trunk": {"name": "levi_hassner"}}}
    save_package(b, out["wrong_weights"])
    out["unknown_trunk"] = tmp_path / "unknown_trunk.safetensors"
    b.config = {**b.config, "model": {**b.config["model"], "trunk": {"name": "no_such_trunk"}}}
    save_package(b, out["unknown_trunk"])
    return out


def test_every_bad_model_file_is_a_one_line_error(tmp_path):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(AgeGenderError) as e:
            load_bundle(path)
        assert e.value.code == "bad_model", (name, e.value)
        assert "\n" not in str(e.value) and str(path) in str(e.value), name


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip"])
def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, content):
    config = Path(__file__).resolve().parents[1] / "configs" / "jamoliddin2022" / "table2_small_cnn.yaml"
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(content)
    r = CliRunner().invoke(app, ["train", str(config), "--data", str(tmp_path), "--output", str(out), "--resume"])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and str(last) in lines[0] and "delete it" in lines[0]
    assert "Traceback" not in r.output and "Aborted" not in r.output


def test_calibration_warnings_name_what_is_degenerate():
    from agegender.evaluation.calibration import T_RANGE
    from agegender.workflows.packaging import calibration_warnings

    ok = {"gender": {"temperature": 0.9}, "age": {"temperature": 1.1, "age_estimate": {
        "max_false_adult": 0.08, "constraint_met": True, "under18_false_adult_after": 0.05}}}
    assert calibration_warnings(ok) == []
    bad = {"gender": {"temperature": T_RANGE[1]}, "ethnicity": {"temperature": T_RANGE[0]},
           "age": {"temperature": 1.0, "age_estimate": {"max_false_adult": 0.08, "constraint_met": False,
                                                          "under18_false_adult_after": 0.125}}}
    w = calibration_warnings(bad)
    assert len(w) == 3
    assert "gender temperature 20 is at its bound" in w[0] and "ethnicity temperature 0.05" in w[1]
    assert "8 %" in w[2] and "12.5 %" in w[2]
