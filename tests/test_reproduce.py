"""`agegender reproduce`: the paper tables, deviations derived from configs, k-fold mean ± std, and one
`--quick` row end to end on real UTKFace images."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import agegender.cli_eval  # noqa: F401  (registers the command on the app)
from agegender.cli import app
from agegender.metrics import aggregate_folds, multilabel_metrics
from agegender.training.config import dump_config, load_config
from agegender.workflows.paper_tables import PAPERS, get_paper, get_tables
from agegender.workflows.reproduce import deviations, reproduce

REPO = Path(__file__).resolve().parents[1]


# -- protocol metrics --------------------------------------------------------------------------------------

def test_aggregate_folds_mean_std_and_confusions():
    folds = [{"acc": 0.80, "n": 10, "x_confusion": [[1, 0], [0, 1]], "name": "a"},
             {"acc": 0.84, "n": 12, "x_confusion": [[2, 1], [0, 3]], "name": "b"},
             {"acc": 0.88, "n": 11, "x_confusion": [[0, 0], [1, 1]]}]
    agg = aggregate_folds(folds)
    assert agg["folds"] == 3 and "name" not in agg  # non-numeric (and not in every fold) left out
    assert agg["acc"]["mean"] == pytest.approx(0.84)
    assert agg["acc"]["std"] == pytest.approx(np.sqrt((0.04**2 + 0 + 0.04**2) / 3))  # population std
    assert aggregate_folds(folds, ddof=1)["acc"]["std"] == pytest.approx(0.04)
    assert agg["x_confusion"] == [[3, 1], [1, 5]]  # summed: every image tested once
    assert aggregate_folds([]) == {"folds": 0}


def test_multilabel_label_accuracy_by_hand():
    # chatzitzisi's multi-label "Acc" exceeds its precision, so it is the element-wise accuracy
    probs = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.6]])
    target = np.array([[1, 0, 0], [1, 1, np.nan]])
    # entries: right, right, wrong | wrong, right, (missing) → 3 of 5
    assert multilabel_metrics(probs, target, "p")["p_label_accuracy"] == pytest.approx(3 / 5)


# -- tables and deviations ---------------------------------------------------------------------------------

def test_every_paper_has_tables_with_published_values():
    assert {p.key for p in PAPERS} == {"jamoliddin2022", "aminian_noubir", "kang2019", "chatzitzisi2020",
                                       "dey_aggarwal"}
    for p in PAPERS:
        for tb in p.tables:
            headers = {c.header for c in tb.columns}
            for row in tb.rows:
                assert set(row.published) <= headers, (p.key, tb.table, row.label)
                if row.config:
                    assert row.config.startswith(f"configs/{p.key}/")
    assert get_paper("chatzitzisi").key == "chatzitzisi2020"
    assert get_tables("jamoliddin2022", "Table 2")[0].rows[4].published["Age %"].value == 61.34
    assert get_tables("aminian", "3")[0].rows[-1].published["Exact"].show(1) == "60.2 ± 1.8"


def test_deviations_are_derived_from_the_config():
    tb = get_tables("jamoliddin2022", "2")[0]
    cfg = load_config(REPO / "configs/jamoliddin2022/table2_small_cnn.yaml")
    result = {"split_sizes": {"train": 12541, "val": 2213, "test": 3689}, "epochs_run": 12}
    devs = deviations(tb.protocol, cfg, result)
    text = "; ".join(devs)
    assert "18,443 images (12,541/2,213/3,689 train/val/test) vs the paper's 24,104" in text
    assert "input 64×64 instead of 256×256" in text
    assert "stopped after 12 of 30 epochs" in text
    assert not any(d.startswith(("optimiser", "batch", "CPU", "dataset")) for d in devs)  # as in the paper
    assert "precision" not in text
    cfg["trainer"]["precision"] = "bf16-mixed"
    assert "bf16-mixed precision" in "; ".join(deviations(tb.protocol, cfg, result))
    # change the config and the deviations follow
    cfg["data"]["input_size"] = 256
    cfg["data"]["dataset"] = "fairface"
    cfg["optim"]["name"] = "sgd"
    devs2 = "; ".join(deviations(tb.protocol, cfg, result))
    assert "input" not in devs2 and "dataset fairface instead of UTKFace" in devs2 and "optimiser sgd" in devs2


def test_deviations_weights_folds_hardware_crops():
    tb = get_tables("aminian_noubir", "2")[0]
    cfg = load_config(REPO / "configs/aminian_noubir/table2_gender_net.yaml")
    devs = "; ".join(deviations(tb.protocol, cfg, {}, tb.rows[2], folds_run=2, ten_crop=True))
    assert "2 of 5 folds" in devs and "CPU instead of GPU" in devs
    assert "10-crop over-sampling instead of the centre crop" in devs  # row 2 is [1]'s single-crop
    tb = get_tables("dey_aggarwal", "3")[0]
    cfg = load_config(REPO / "configs/dey_aggarwal/table3_xception.yaml", ["model.trunk.pretrained=false"])
    assert "no ImageNet weights: trunk trained from scratch" in deviations(tb.protocol, cfg, {})


def test_deviation_for_a_substituted_trunk():
    """--set model.trunk.name=... is reported against the trunk the row's committed config names."""
    tb = get_tables("chatzitzisi2020", "1")[0]
    row = tb.rows[0]
    cfg = load_config(REPO / row.config)
    assert not any(d.startswith("trunk") for d in deviations(tb.protocol, cfg, {}, row))
    cfg = load_config(REPO / row.config, ["model.trunk.name=efficientnet_lite0"])
    assert "trunk efficientnet_lite0 instead of the paper's resnet50" in deviations(tb.protocol, cfg, {}, row)
    # the same trunk with another option: dey_aggarwal's Transformer row on EfficientNet-Lite0 features
    tb = get_tables("dey_aggarwal", "3")[0]
    row = next(r for r in tb.rows if r.config.endswith("table3_transformer.yaml"))
    cfg = load_config(REPO / row.config, ["model.trunk.features=efficientnet_lite0"])
    devs = deviations(tb.protocol, cfg, {}, row)
    assert "trunk features efficientnet_lite0 instead of the config's default" in devs
    assert not any(d.startswith("trunk") for d in deviations(tb.protocol, load_config(REPO / row.config), {}, row))


def test_deviation_for_a_changed_schedule():
    """A --set on the optimiser or epoch limit (a shortened schedule) is listed against the committed config."""
    tb = get_tables("chatzitzisi2020", "1")[0]
    row = tb.rows[0]
    cfg = load_config(REPO / row.config)
    assert not any(d.startswith("optim.") for d in deviations(tb.protocol, cfg, {}, row))
    cfg = load_config(REPO / row.config, ["optim.lr=0.01", "optim.scheduler={name: cosine, warmup_steps: 100}",
                                          "trainer.max_epochs=10", "trainer.max_steps=2000"])
    devs = deviations(tb.protocol, cfg, {}, row)
    assert "trainer.max_epochs 10 instead of the config's 100" in devs
    assert "trainer.max_steps 2000 instead of the config's unset" in devs  # e.g. kang2019's 2,000 iterations
    assert "optim.lr 0.01 instead of the config's 0.001" in devs
    assert "optim.scheduler.name cosine instead of the config's none" in devs
    assert "optim.scheduler.warmup_steps 100 instead of the config's unset" in devs


# -- the command -------------------------------------------------------------------------------------------

def test_reproduce_list():
    r = CliRunner().invoke(app, ["reproduce", "--list"])
    assert r.exit_code == 0, r.output
    for p in PAPERS:
        assert p.key in r.output
        for tb in p.tables:
            assert f"table {tb.table}:" in r.output
    assert "configs/jamoliddin2022/table2_small_cnn.yaml [present; data at hand" in r.output or \
        "configs/jamoliddin2022/table2_small_cnn.yaml [present; data not at" in r.output
    assert "quoted from earlier work" in r.output


@pytest.mark.parametrize("args,needle", [
    (["reproduce"], "name a paper"),
    (["reproduce", "nope"], "unknown paper"),
    (["reproduce", "jamoliddin2022", "--table", "9"], "has no table"),
    (["reproduce", "jamoliddin2022", "--rows", "zzz", "--reuse"], "no row of"),
])
def test_reproduce_user_errors(args, needle):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_rows_without_data_or_results(tmp_path):
    # Adience is not here: the table prints "needs ... data" rows instead of failing
    (tb,) = reproduce("aminian_noubir", "3", data=[f"adience={tmp_path / 'no_adience'}"], output=tmp_path)
    by = {r.row.label: r for r in tb.rows}
    assert by["Best from [71] (Eidinger et al.)"].status == "literature"
    assert by["single-crop [1]"].status == "needs data" and "adience" in by["single-crop [1]"].message
    assert by["E2E System"].status == "needs data"  # its gender net (trained first, per fold) needs the data too
    (tb,) = reproduce("jamoliddin2022", "2", data=[str(tmp_path)], output=tmp_path / "runs", reuse=True)
    assert {r.status for r in tb.rows} == {"not run"}  # --reuse never trains


def _fake_fold_runs(out: Path, config: str, accs: list[float], centre: list[float]) -> None:
    for f, (a, c) in enumerate(zip(accs, centre)):
        cfg = load_config(REPO / config, [f"data.split.fold={f}"])
        d = out / cfg["name"] / f"fold{f}"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(dump_config(cfg))
        split = {"train": 14000, "val": 1500, "test": 3900}
        (d / "results.json").write_text(json.dumps({"split_sizes": split, "epochs_run": 64, "best_checkpoint": "x",
                                                    "test": {"gender_accuracy": a, "ten_crop": True}}))
        (d / "test_centre_crop.json").write_text(json.dumps({"gender_accuracy": c, "ten_crop": False}))


def test_kfold_rows_report_mean_and_std_over_folds(tmp_path):
    _fake_fold_runs(tmp_path, "configs/aminian_noubir/table2_gender_net.yaml", [0.80, 0.82, 0.84, 0.86, 0.88],
                    [0.80, 0.80, 0.80, 0.80, 0.85])
    (tb,) = reproduce("aminian_noubir", "2", output=tmp_path, reuse=True)
    single, over = tb.rows[2], tb.rows[3]
    assert over.status == "reused" and over.measured["Accuracy"].show(1) == "84.0 ± 2.8"  # population std √8
    assert single.measured["Accuracy"].value == pytest.approx(81.0)  # centre-crop re-evaluation of the same runs
    assert "CPU instead of GPU" in "; ".join(over.deviations)
    assert not any("folds" in d for d in over.deviations)  # all 5 folds ran


@pytest.fixture(scope="module")
def quick_run(utkface_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    r = CliRunner().invoke(app, ["reproduce", "jamoliddin2022", "--table", "2", "--quick", "--rows",
                                 "table2_small_cnn.yaml", "--data", str(utkface_dir), "--output", str(out)])
    return r, out


def test_reproduce_quick_one_row_end_to_end(quick_run):
    r, out = quick_run
    assert r.exit_code == 0, r.output
    assert "QUICK smoke run" in r.output and "Our model (small CNN)" in r.output and "61.34" in r.output
    assert "class-weighted" not in r.output  # --rows kept one row
    res = json.loads((out / "jamoliddin2022_table2_small_cnn" / "results.json").read_text())
    assert res["split_sizes"]["test"] > 0 and 0 <= res["test"]["age_group_accuracy"] <= 1
    line = next(ln for ln in r.output.splitlines() if ln.startswith("Our model (small CNN)"))
    assert "quick" in line and "input 64×64 instead of 256×256" in line and "a random subset of 480 images" in line

    # publishing: --reuse --markdown prints the Markdown table without training
    r2 = CliRunner().invoke(app, ["reproduce", "jamoliddin2022", "--table", "2", "--reuse", "--markdown",
                                  "--output", str(out)])
    assert r2.exit_code == 0, r2.output
    md = r2.output
    assert md.startswith("### jamoliddin2022 — Table 2") and "| Row | Age % (paper) | Age % (ours) |" in md
    small = next(ln for ln in md.splitlines() if ln.startswith("| Our model (small CNN) |"))
    assert "| quick |" in small  # a reduced run is never shown as a result
    assert "| not run |" in md  # the other rows have no results.json
