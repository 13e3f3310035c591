"""Config loading, overrides and validation; every shipped config loads."""

from pathlib import Path

import pytest

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
