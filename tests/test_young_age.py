"""model.young_age: CelebA's 0/1 "Young" flag as an interval label for the age distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agegender.errors import AgeGenderError
from agegender.models import build_model
from agegender.training.datamodule import AgeGenderDataModule

DIMS = {"gender": 2, "age_group": 8, "ethnicity": 5, "attributes": 0, "pedestrian": 9}


def _model(spec, heads=None):
    cfg = {"trunk": {"name": "small_cnn"},
           "heads": heads or {"age": {"type": "age_distribution"}, "gender": {"type": "classification"}},
           "young_age": spec}
    torch.manual_seed(0)
    return build_model(cfg, DIMS, stats=None)


def test_the_flag_costs_the_log_of_the_mass_outside_its_interval():
    net = _model({"weight": 0.5, "young_max": 40, "old_min": 30})
    logits = torch.zeros(3, 101)  # uniform over ages 0..100
    logits[2, 60] = 20.0  # nearly all mass at 60
    out = {"age": logits.clone().requires_grad_(True), "gender": torch.zeros(3, 2)}
    targets = {"gender": torch.tensor([0, 1, 1]), "young": torch.tensor([1.0, math.nan, 1.0])}
    total, parts = net.compute_loss(out, targets)
    # row 0: uniform, 41 of 101 ages are <= 40; row 1 has no flag; row 2 is young but sits at 60
    log_p2 = math.log(41) - math.log(100 + math.exp(20))  # about 8e-8 of the mass: still exact, still a gradient
    expected = (-math.log(41 / 101) - log_p2) / 2
    assert float(parts["young_age"].detach()) == pytest.approx(expected, rel=1e-4)
    assert torch.allclose(total, parts["gender"] + 0.5 * parts["young_age"])
    total.backward()
    g = out["age"].grad
    assert g[2, 60] > 0 and g[2, 20] < 0  # descent moves row 2's mass from 60 towards the young ages
    assert torch.all(g[1] == 0)  # the unflagged row is untouched by the term

    # "not young" allows ages >= old_min: a distribution at 60 costs (almost) nothing there
    _, parts = net.compute_loss(out, {"young": torch.tensor([math.nan, math.nan, 0.0])})
    assert float(parts["young_age"]) == pytest.approx(0.0, abs=1e-6)
    # no flag in the batch: no term
    _, parts = net.compute_loss(out, {"gender": torch.tensor([0, 1, 1]), "young": torch.full((3,), math.nan)})
    assert "young_age" not in parts


@pytest.mark.parametrize("spec,heads,needle", [
    ({"weight": 1, "bound": 3}, None, "unknown key"),
    ({"young_max": 20, "old_min": 30}, None, "old_min <= young_max"),
    ({"weight": -1}, None, "weight must be >= 0"),
    ({"weight": "x"}, None, "must be numbers"),
    ({"weight": 1}, {"gender": {"type": "classification"}}, "age_distribution"),
])
def test_bad_young_age_settings_are_one_line_config_errors(spec, heads, needle):
    with pytest.raises(AgeGenderError) as err:
        _model(spec, heads)
    assert needle in str(err.value) and "\n" not in str(err.value) and err.value.code == "bad_config"


def test_the_datamodule_gives_the_flag_where_a_source_has_it(tmp_path):
    from test_multi_source import data_cfg, make_csv_source

    aged = make_csv_source(tmp_path / "aged", 30, ("age", "gender"))
    celeb = make_csv_source(tmp_path / "celeb", 40, ("gender", "identity", "young"), people=8, seed=1)
    dm = AgeGenderDataModule(data_cfg(aged, celeb))
    dm.prepare_samples()
    src, young = dm.targets["source"], dm.targets["young"]
    assert np.isnan(young[src == 0]).all()
    assert set(young[src == 1].tolist()) == {0.0, 1.0}
    # a pool without the flag has no such target
    plain = AgeGenderDataModule(data_cfg(aged, make_csv_source(tmp_path / "c2", 40, ("gender", "identity"), 8)))
    plain.prepare_samples()
    assert "young" not in plain.targets


def test_training_with_the_flag_logs_its_term(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from agegender.cli import app
    from test_multi_source import data_cfg, make_csv_source

    aged = make_csv_source(tmp_path / "aged", 30, ("age", "gender"))
    celeb = make_csv_source(tmp_path / "celeb", 40, ("gender", "identity", "young"), people=8, seed=1)
    cfg = {"name": "young", "data": {**data_cfg(aged, celeb), "batch_size": 16},
           "model": {"trunk": {"name": "small_cnn"},
                     "heads": {"age": {"type": "age_distribution", "loss": "dldl"},
                               "gender": {"type": "classification", "loss": "ce"}},
                     "young_age": {"weight": 1.0}},
           "optim": {"name": "adam", "lr": 1.0e-3},
           "trainer": {"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1}}
    path = tmp_path / "young.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["train", str(path), "--output", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/loss_young_age")
    assert any(row.split(",")[col] not in ("", "nan") for row in rows[1:])
