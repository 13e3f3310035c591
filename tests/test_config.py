"""Config loading, overrides and validation; every shipped config loads."""

from pathlib import Path

import pytest
import torch

from agegender.errors import AgeGenderError
from agegender.training.config import load_config, parse_overrides

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_overrides_are_yaml_typed():
    assert parse_overrides(["optim.lr=0.01", "trainer.max_epochs=3", "data.cache=false"]) == {
        "optim": {"lr": 0.01}, "trainer": {"max_epochs": 3}, "data": {"cache": False}}


def test_unknown_key_is_rejected_with_valid_keys():
    with pytest.raises(AgeGenderError, match="unknown config key 'optim.lrr'.*lr"):
        load_config(None, ["optim.lrr=1"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(AgeGenderError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(AgeGenderError, match="YAML"):
        load_config(bad)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(p.parents[1])) for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg["model"]["heads"], "a config must name at least one head"


def test_a_misspelt_part_option_is_a_config_error_naming_the_valid_ones():
    """Registry.build checks options against the builder's signature (trunks, losses, detectors, ...)."""
    from agegender.inference.detectors import build_detector
    from agegender.models.registry import LOSSES, TRUNKS

    with pytest.raises(AgeGenderError, match=r"trunk 'small_cnn'.*'widht'.*it takes: .*pretrained") as e:
        TRUNKS.build("small_cnn", pretrained=False, widht=3)
    assert e.value.code == "bad_config"
    with pytest.raises(AgeGenderError, match=r"gama") as e:
        LOSSES.build("focal", stats=None, gama=2.0)
    assert e.value.code == "bad_config"
    with pytest.raises(AgeGenderError, match=r"detector 'haar'.*min_size") as e:
        build_detector("haar", min_size=3)
    assert e.value.code == "bad_config"
    assert TRUNKS.build("small_cnn", pretrained=False).out_features > 0  # valid options still build


def test_agegender_models_lists_detectors_and_trunks_without_an_input_size():
    from typer.testing import CliRunner

    from agegender.cli import app
    from agegender.models.registry import TRUNKS

    class Sizeless(torch.nn.Identity):
        out_features = 3

    TRUNKS.register("sizeless_test_trunk")(lambda pretrained=False: Sizeless())
    try:
        r = CliRunner().invoke(app, ["models"])
    finally:
        TRUNKS.unregister("sizeless_test_trunk")
    assert r.exit_code == 0, r.output
    assert "sizeless_test_trunk" in r.output and "input -" in r.output
    lines = r.output.splitlines()
    at = lines.index("detectors:")
    assert any(line.split()[0] == "blazeface" and "BlazeFace" in line for line in lines[at + 1:at + 8])
