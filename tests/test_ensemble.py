"""Ensemble packages (agegender.models.ensemble): members' temperature-scaled logits averaged per head, one file,
one ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agegender.errors import AgeGenderError
from agegender.models.ensemble import assemble_packages
from agegender.models.package import load_bundle, save_package
from helpers_models import grace_rgb, write_tiny_package


@pytest.fixture()
def members(tmp_path: Path) -> list[Path]:
    paths = [write_tiny_package(tmp_path / f"m{i}.safetensors", "face", seed=i) for i in (1, 2)]
    b = load_bundle(paths[1])
    b.model.heads["gender"].temperature.fill_(2.0)  # a calibrated member: its temperature enters the mean
    save_package(b, paths[1])
    return paths


def test_outputs_are_the_mean_of_the_members_scaled_logits(members, tmp_path):
    ens = assemble_packages(members)
    a, b = (load_bundle(p).model for p in members)
    x = torch.randn(3, 3, *ens.preprocess["input_size"])
    with torch.no_grad():
        out = ens.model(x)
        oa, ob = a(x), b(x)
    torch.testing.assert_close(out["gender"], (oa["gender"] + ob["gender"] / 2.0) / 2)
    assert set(out) == set(oa)
    dec = ens.model.decode(out)
    torch.testing.assert_close(dec["gender_probs"], torch.softmax(out["gender"], -1))
    # one package file: it loads back as the same network
    path = save_package(ens, tmp_path / "ens.safetensors")
    again = load_bundle(path)
    with torch.no_grad():
        torch.testing.assert_close(again.model(x)["gender"], out["gender"])
    assert again.config["model"]["composition"] == "ensemble"
    assert len(again.config["model"]["composition_args"]["members"]) == 2


def test_ensemble_predicts_and_exports(members, tmp_path):
    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.predictor import load

    path = save_package(assemble_packages(members), tmp_path / "ens.safetensors")
    p = load(path, detector="none")
    r = p.predict(grace_rgb())[0]
    assert 0.0 <= r.gender_probs["female"] <= 1.0 and r.age is not None
    s = export_onnx(path, tmp_path / "ens.onnx", verify=True)
    assert max(s["max_abs_diff"].values()) < 1e-3
    q = load(tmp_path / "ens.onnx", detector="none").predict(grace_rgb())[0]
    assert q.gender_probs["female"] == pytest.approx(r.gender_probs["female"], abs=1e-3)


def test_members_must_match(members, tmp_path):
    body = write_tiny_package(tmp_path / "body.safetensors", "body", seed=3)
    with pytest.raises(AgeGenderError) as err:
        assemble_packages([members[0], body])
    assert err.value.code == "bad_model" and "differ" in str(err.value)
    from agegender.models import build_model

    cfg = {"composition": "ensemble", "composition_args": {"members": [{"trunk": {"name": "small_cnn"}}]}}
    with pytest.raises(AgeGenderError):
        build_model(cfg, {"gender": 2}, with_losses=False)
    with pytest.raises(AgeGenderError, match="not trained"):
        build_model(cfg, {"gender": 2}, with_losses=True)


def test_bundled_body_model_is_an_ensemble():
    from agegender.bundled import bundled_models, resolve_model_path

    if "default-body" not in bundled_models():
        pytest.skip("no bundled body model")
    b = load_bundle(resolve_model_path("default-body"))
    members = b.config["model"]["composition_args"]["members"]
    assert b.config["model"]["composition"] == "ensemble" and len(members) == 2
    assert [m["trunk"].get("parts", 0) for m in members] == [0, 3]
    assert np.isfinite(b.meta["calibration"]["heads"]["gender"]["temperature"])
