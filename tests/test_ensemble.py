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
    assert again.meta["description"].startswith("An ensemble of 2 models: ")


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


@pytest.fixture()
def mixed(tmp_path: Path) -> list[Path]:
    """A 64-px member and a 128-px one normalised otherwise (another trunk's mean and std)."""
    from helpers_models import tiny_bundle

    first = write_tiny_package(tmp_path / "small.safetensors", "face", seed=1)
    b = tiny_bundle("face", seed=2, input_size=128)
    b.preprocess.update(mean=[0.48, 0.46, 0.41], std=[1.0, 1.0, 1.0])
    return [first, save_package(b, tmp_path / "big.safetensors")]


def test_members_of_other_input_see_the_pixels_in_their_own_size_and_normalisation(mixed, tmp_path):
    import torch.nn.functional as F

    from agegender.inference.onnx_export import export_onnx
    from agegender.inference.predictor import load

    ens = assemble_packages(mixed)
    assert ens.preprocess == load_bundle(mixed[0]).preprocess  # the ensemble takes the first member's input
    a, b = (load_bundle(p) for p in mixed)
    pixels = torch.rand(2, 3, 64, 64)

    def norm(pre, x):
        return (x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)

    with torch.no_grad():
        out = ens.model(norm(a.preprocess, pixels))
        big = F.interpolate(pixels, size=(128, 128), mode="bilinear", align_corners=False)
        want = (a.model(norm(a.preprocess, pixels))["gender"] + b.model(norm(b.preprocess, big))["gender"]) / 2
    torch.testing.assert_close(out["gender"], want, atol=1e-4, rtol=1e-4)
    # the adapters are part of the package's config and of the ONNX graph
    path = save_package(ens, tmp_path / "ens.safetensors")
    again = load_bundle(path)
    with torch.no_grad():
        torch.testing.assert_close(again.model(norm(a.preprocess, pixels))["gender"], out["gender"])
    s = export_onnx(path, tmp_path / "ens.onnx", verify=True)
    assert max(s["max_abs_diff"].values()) < 1e-3
    r = load(path, detector="none").predict(grace_rgb())[0]
    q = load(tmp_path / "ens.onnx", detector="none").predict(grace_rgb())[0]
    assert q.gender_probs["female"] == pytest.approx(r.gender_probs["female"], abs=1e-3)


def test_member_of_smaller_input_or_other_framing_is_refused(mixed, tmp_path):
    with pytest.raises(AgeGenderError, match="smallest input first") as err:
        assemble_packages(mixed[::-1])
    assert err.value.code == "bad_model" and "\n" not in str(err.value)
    b = load_bundle(mixed[1])
    b.preprocess.update(crop_margin=0.3)
    with pytest.raises(AgeGenderError, match="framing"):
        assemble_packages([mixed[0], save_package(b, tmp_path / "loose.safetensors")])
    b = load_bundle(mixed[1])
    b.preprocess.update(channel_order="BGR")
    with pytest.raises(AgeGenderError, match="channel order"):
        assemble_packages([mixed[0], save_package(b, tmp_path / "bgr.safetensors")])


def test_bundled_body_model_is_an_ensemble():
    from agegender.bundled import bundled_models, resolve_model_path

    if "default-body" not in bundled_models():
        pytest.skip("no bundled body model")
    b = load_bundle(resolve_model_path("default-body"))
    members = b.config["model"]["composition_args"]["members"]
    assert b.config["model"]["composition"] == "ensemble" and len(members) == 2
    assert [m["trunk"].get("parts", 0) for m in members] == [0, 3]
    assert np.isfinite(b.meta["calibration"]["heads"]["gender"]["temperature"])


def test_model_card_of_an_ensemble_names_each_member(mixed, tmp_path):
    from agegender.workflows.packaging import write_model_card

    path = save_package(assemble_packages(mixed), tmp_path / "ens.safetensors")
    b = load_bundle(path)
    card = write_model_card(path, b.meta, {"test": {"gender_accuracy": 0.5}}, {"train": "t"}, []).read_text()
    sizes = [sum(p.numel() for p in load_bundle(m).model.parameters()) for m in mixed]
    assert "composition: `ensemble` of 2 networks" in card
    assert "member 1: `small_cnn` trunk" in card and "input [64, 64] px" in card and "input [128, 128] px" in card
    assert f"parameters: {sum(sizes):,} ({sizes[0]:,} + {sizes[1]:,})" in card
    assert "An ensemble of 2 models: " in card


def test_the_ensembles_fitted_age_estimate_survives_its_package(members, tmp_path):
    """Packaging fits the ensemble's own age estimate and under-age guard (calibrate_bundle sets the heads and the
    config's ``model.heads``, not its members'); loading the package decodes with them."""
    ens = assemble_packages(members)
    head = ens.model.heads["age"]
    head.estimate, head.minor_guard = 0.4, 0.2  # what a fit under a false-adult limit may choose
    ens.config["model"]["heads"]["age"].update(estimate=0.4, minor_guard=0.2)
    again = load_bundle(save_package(ens, tmp_path / "ens.safetensors"))
    assert again.model.heads["age"].estimate == 0.4 and again.model.heads["age"].minor_guard == 0.2
    members_heads = [m["heads"]["age"] for m in again.config["model"]["composition_args"]["members"]]
    assert all("minor_guard" not in h for h in members_heads)  # the members' own sections are left as they were
    x = torch.randn(4, 3, *ens.preprocess["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(again.model.decode(again.model(x))["age"], ens.model.decode(ens.model(x))["age"])


def test_averaged_package_has_the_members_mean_weights_and_one_network(members, tmp_path):
    from agegender.models.ensemble import average_packages

    soup = average_packages(members)
    a, b = (load_bundle(p).model.state_dict() for p in members)
    got = soup.model.state_dict()
    for w in ("heads.gender.net.0.weight", "heads.age.net.0.bias"):
        torch.testing.assert_close(got[w], (a[w].float() + b[w].float()) / 2)
    assert soup.config["model"].get("composition") != "ensemble"  # one network, not two
    assert [m["source"] for m in soup.meta["averaged"]] == [str(p) for p in members]
    path = save_package(soup, tmp_path / "soup.safetensors")
    again = load_bundle(path)
    torch.testing.assert_close(again.model.state_dict()[w], got[w])


def test_only_one_architecture_can_be_averaged(members, tmp_path):
    from agegender.models.ensemble import average_packages

    body = write_tiny_package(tmp_path / "body.safetensors", "body", seed=3)
    with pytest.raises(AgeGenderError, match="one architecture|do not match") as err:
        average_packages([members[0], body])
    assert err.value.code == "bad_model"


def test_the_tool_averages_from_the_command_line(members, tmp_path):
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[1] / "tools" / "ensemble_package.py"
    out = tmp_path / "soup.safetensors"
    r = subprocess.run([sys.executable, str(tool), *map(str, members), "-o", str(out), "--average"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "averaged" in r.stdout and load_bundle(out).meta["averaged"]
