"""End to end on real UTKFace images: train one short epoch, checkpoint, resume, evaluate via the CLI."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agegender.cli import app

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "jamoliddin2022" / "table2_small_cnn.yaml"
FAST = ["--set", "data.limit=320", "--set", "data.num_workers=0", "--set", "trainer.progress_bar=false",
        "--set", "data.batch_size=32"]


def test_train_checkpoint_resume_evaluate(utkface_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    base = ["train", str(CONFIG), "--data", str(utkface_dir), "--output", str(out), *FAST]
    r = runner.invoke(app, [*base, "--set", "trainer.max_epochs=1"])
    assert r.exit_code == 0, r.output
    assert (out / "checkpoints" / "last.ckpt").is_file()
    res = json.loads((out / "results.json").read_text())
    assert res["split_sizes"]["test"] == 64 and res["parameters"] > 11_000_000
    assert 0.0 <= res["test"]["age_group_accuracy"] <= 1.0

    r = runner.invoke(app, [*base, "--set", "trainer.max_epochs=2", "--resume"])
    assert r.exit_code == 0, r.output
    metrics = (out / "logs" / "version_1" / "metrics.csv").read_text()
    epochs = {line.split(",")[0] for line in metrics.splitlines()[1:]}
    res2 = json.loads((out / "results.json").read_text())
    assert res2["epochs_run"] == 2, epochs
    # training time accumulates across --resume (carried in the checkpoint)
    assert res2["train_seconds"] > res["train_seconds"]

    report = tmp_path / "report.json"
    r = runner.invoke(app, ["evaluate", "--model", str(out / "checkpoints" / "last.ckpt"), "--dataset", "utkface",
                            "--data", str(utkface_dir), "--split", "test", "--output", str(report)])
    assert r.exit_code == 0, r.output
    rep = json.loads(report.read_text())
    assert rep["n_images"] == 64 and rep["age_scheme"] == "adience8"
    for key in ("age_group_accuracy", "age_group_one_off", "gender_accuracy"):
        assert 0.0 <= rep[key] <= 1.0
    assert "age_mae" not in rep  # a group classifier gives no years


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "nope.yaml"], "not found"),
        (["train", str(CONFIG), "--data", "/does/not/exist"], "does not exist"),
        (["train", str(CONFIG), "--set", "optim.lrr=3"], "unknown config key"),
        (["evaluate", "--model", "nope", "--dataset", "utkface", "--data", "."], "unknown model"),
    ],
)
def test_user_errors_are_one_line(args, needle):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2
    assert needle in r.output and "Traceback" not in r.output


def test_package_calibrates_and_round_trips(utkface_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    cfg = ["--set", "model.heads={age: {type: age_distribution}, gender: {type: classification}}",
           "--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=2"]
    r = runner.invoke(app, ["train", str(CONFIG), "--data", str(utkface_dir), "--output", str(out), *FAST, *cfg])
    assert r.exit_code == 0, r.output
    pkg = tmp_path / "model.safetensors"
    args = ["package", str(out / "checkpoints" / "last.ckpt"), "--output", str(pkg), "--data", str(utkface_dir)]
    # 38 validation images are too few to calibrate on: refused in one line, unless --force (which warns)
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "38 validation images" in r.output and "--force" in r.output, r.output
    assert not pkg.exists() and "Traceback" not in r.output
    r = runner.invoke(app, [*args, "--force"])
    assert r.exit_code == 0, r.output
    assert "warning: calibration would be fitted on 38 validation images" in r.output
    assert "warning: no detector given" in r.output
    from agegender.inference.predictor import load
    from agegender.models.package import load_bundle

    b = load_bundle(pkg)
    # the package carries the fingerprint of its training and validation images
    sizes = b.meta["training"]["split_sizes"]
    assert len(b.fingerprint) == sizes["train"] + sizes["val"] == b.meta["fingerprint"]["images"]
    assert any("38 validation images" in w for w in b.meta["warnings"])  # (a 1-epoch model trips others too)
    cal = b.meta["calibration"]["heads"]
    assert set(cal) == {"age", "age_group", "gender"}  # --set merges into the config's heads
    # the fitted temperatures are stored in the heads and used by decode
    assert float(b.model.heads["gender"].temperature) == pytest.approx(cal["gender"]["temperature"], rel=1e-3)
    assert b.preprocess["input_size"] == [64, 64] and b.labels["gender"] == ["male", "female"]
    assert b.meta["mode"] == "face" and b.meta["training"]["split_sizes"]["test"] == 64
    assert b.meta["default_detector"] == "haar"
    # the age estimate (a quantile of the distribution) is fitted on the same validation images and kept
    est = cal["age"]["age_estimate"]["estimate"]
    assert b.model.heads["age"].estimate == est and b.config["model"]["heads"]["age"]["estimate"] == est
    # by default under the under-age limit of `--max-false-adult 0.08` (if any quantile reaches it)
    fit = cal["age"]["age_estimate"]
    assert fit["max_false_adult"] == 0.08
    assert fit["under18_false_adult_after"] <= 0.08 or not fit["constraint_met"]
    # with the under-age guard the fit chose (None: none), kept where the package rebuilds the head from
    assert b.model.heads["age"].minor_guard == fit["minor_guard"]
    assert b.config["model"]["heads"]["age"].get("minor_guard") == fit["minor_guard"]
    # re-packaging a package keeps its metadata (training facts, detector) and records where it came from
    r = runner.invoke(app, ["package", str(pkg), "-o", str(tmp_path / "again.safetensors"), "--data", str(utkface_dir),
                            "--no-fit-age-quantile", "--force"])
    assert r.exit_code == 0, r.output
    again = load_bundle(tmp_path / "again.safetensors")
    assert again.meta["training"] == b.meta["training"] and again.meta["repackaged_from"] == str(pkg)
    assert again.meta["trained_from"] == b.meta["trained_from"]
    assert "age_estimate" not in again.meta["calibration"]["heads"]["age"]
    assert again.model.heads["age"].estimate == est  # not refitted: the package's own estimate stays
    for head, first in cal.items():  # "before" still means the uncalibrated network of the first fit
        assert again.meta["calibration"]["heads"][head]["ece_before"] == first["ece_before"]
    # a package may name its own face detector; an unknown name is refused before any work
    ckpt = str(out / "checkpoints" / "last.ckpt")
    r = runner.invoke(app, ["package", ckpt, "-o", str(tmp_path / "b.safetensors"), "--no-calibrate", "--detector", "blazeface"])
    assert r.exit_code == 0, r.output
    assert load_bundle(tmp_path / "b.safetensors").meta["default_detector"] == "blazeface"
    # the flip TTA default is the package's to set, either way, and predictors follow it
    for flag, want in (("--no-tta-flip", False), ("--tta-flip", True)):
        r = runner.invoke(app, ["package", ckpt, "-o", str(tmp_path / "f.safetensors"), "--no-calibrate", flag])
        assert r.exit_code == 0, r.output
        assert load_bundle(tmp_path / "f.safetensors").config["eval"]["tta_flip"] is want
        assert load(tmp_path / "f.safetensors", detector="none").tta_flip is want
    # re-packaging it with another detector than its own is warned about
    r = runner.invoke(app, ["package", str(tmp_path / "b.safetensors"), "-o", str(tmp_path / "b2.safetensors"),
                            "--no-calibrate", "--detector", "haar"])
    assert r.exit_code == 0 and "not the model's own 'blazeface'" in r.output, r.output
    r = runner.invoke(app, ["package", ckpt, "-o", str(tmp_path / "c.safetensors"), "--no-calibrate", "--detector", "yolo"])
    assert r.exit_code == 2 and "unknown detector 'yolo'" in r.output and not (tmp_path / "c.safetensors").exists()

    from agegender.workflows.packaging import write_model_card

    card = write_model_card(pkg, b.meta, {"test": {"age_mae": 9.5, "gender_accuracy": 0.5}},
                            {"train": "agegender train x", "eval test": "agegender evaluate y"}, ["tiny test model"])
    text = card.read_text()
    assert "| age MAE (years) | 9.50 |" in text and "non-commercial research" in text and "tiny test model" in text
    assert "- config: `configs/default/face.yaml`" in text
    import copy

    guarded = copy.deepcopy(b.meta)
    guarded["calibration"]["heads"]["age"]["age_estimate"].update(estimate=0.5, minor_guard=0.3, before=0.43,
                                                                  minor_guard_before=None)
    text = write_model_card(pkg, guarded, {}, {"train": "t"}, []).read_text()
    assert ("the 0.50-quantile of the predicted distribution (was 0.43), held below 18 where the probability of an "
            "age under 18 is at least 0.30") in text
    card = write_model_card(pkg, b.meta, {}, {"train": "t"}, [], config="configs/x/stage2.yaml",
                            training_notes=["stage 1: agegender train configs/x/stage1.yaml"])
    text = card.read_text()
    assert "- config: `configs/x/stage2.yaml`" in text and "- stage 1: agegender train configs/x/stage1.yaml" in text


def test_init_from_copies_matching_weights(tmp_path):
    """model.init_from: a package's trunk and matching heads are copied, other heads keep their init,
    temperatures stay 1; a different trunk is refused."""
    import torch

    from agegender.errors import AgeGenderError
    from agegender.models import build_model
    from agegender.training.train import init_weights
    from helpers_models import write_tiny_package

    src_path = write_tiny_package(tmp_path / "src.safetensors", "face", seed=1)
    from agegender.models.package import ModelBundle, load_bundle, save_package

    b = load_bundle(src_path)
    b.model.heads["gender"].temperature.fill_(2.5)
    save_package(ModelBundle(b.model, b.config, b.dims, b.preprocess, b.labels, b.meta), src_path)
    dims = dict(b.dims, age_group=5)
    cfg = {"trunk": {"name": "small_cnn"},
           "heads": {"gender": {"type": "classification"}, "age_group": {"type": "classification"}}}
    torch.manual_seed(9)
    target = build_model(cfg, dims, stats=None, with_losses=False)
    fresh_group = target.heads["age_group"].state_dict()
    counts = init_weights(target, str(src_path))
    assert counts["copied"] > 0 and counts["kept"] > 0
    for k, v in b.model.trunk.state_dict().items():
        assert torch.equal(target.trunk.state_dict()[k], v), k
    g_src, g_dst = b.model.heads["gender"].state_dict(), target.heads["gender"].state_dict()
    assert all(torch.equal(g_src[k], g_dst[k]) for k in g_src if not k.endswith("temperature"))
    assert float(target.heads["gender"].temperature) == 1.0
    assert all(torch.equal(v, target.heads["age_group"].state_dict()[k]) for k, v in fresh_group.items())
    other = build_model({"trunk": {"name": "levi_hassner"}, "heads": {"gender": {"type": "classification"}}},
                        dims, stats=None, with_losses=False)
    with pytest.raises(AgeGenderError, match="no trunk weight matches"):
        init_weights(other, str(src_path))


def test_ema_checkpoint_holds_the_average(utkface_dir, tmp_path):
    """trainer.ema: the checkpoint's weights are the moving average (differ from the live weights and lie
    between the start and the live weights), and a bad decay is a one-line config error."""
    import torch

    out = tmp_path / "ema"
    r = CliRunner().invoke(app, ["train", str(CONFIG), "--data", str(utkface_dir), "--output", str(out), *FAST,
                                 "--set", "data.limit=128", "--set", "trainer.max_epochs=1",
                                 "--set", "trainer.ema={decay: 0.9}"])
    assert r.exit_code == 0, r.output
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    avg, live = ck["state_dict"], ck["current_model_state"]
    key = next(k for k, v in avg.items() if v.is_floating_point() and "weight" in k)
    assert not torch.equal(avg[key], live[key])
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 1

    r = CliRunner().invoke(app, ["train", str(CONFIG), "--data", str(utkface_dir), "--output", str(tmp_path / "x"),
                                 *FAST, "--set", "trainer.ema={decay: 1.5}"])
    assert r.exit_code == 2 and "trainer.ema.decay" in r.output


def test_last_checkpoint_is_the_latest_epoch_not_the_best(utkface_dir, tmp_path):
    """`--resume` continues from last.ckpt, which must be the latest epoch even when `best` stopped improving."""
    import torch

    out = tmp_path / "run"
    # monitoring the epoch number in "min" mode keeps epoch 0 as the best for ever
    r = CliRunner().invoke(app, ["train", str(CONFIG), "--data", str(utkface_dir), "--output", str(out), *FAST,
                                 "--set", "trainer.max_epochs=3", "--set", "trainer.limit_train_batches=2",
                                 "--set", "trainer.checkpoint_monitor=epoch", "--set", "trainer.checkpoint_mode=min",
                                 "--set", "trainer.early_stopping=null"])
    assert r.exit_code == 0, r.output
    ck = out / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(ck / "best.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0
    assert torch.load(ck / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2
    res = json.loads((out / "results.json").read_text())
    assert Path(res["best_checkpoint"]).name == "best.ckpt"
