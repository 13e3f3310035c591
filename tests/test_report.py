"""`evaluate --report`: report.md with its PNG plots, fairness and calibration, on tiny models and real faces."""

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agegender  # noqa: F401  (torchvision compat first)
from agegender.cli import app
from agegender.evaluation.evaluate import evaluate
from helpers_models import write_tiny_package

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("## Metrics", "## Confusion matrices", "## MAE and accuracy by true age",
            "## Calibration (temperature scaling)", "## Fairness: metrics per group", "### By ethnicity",
            "### By gender", "### By age group", "### gender_accuracy by ethnicity within each true age group",
            "### age_mae by gender within each true age group", "## Under-18 detection")


@pytest.fixture(scope="module")
def small_utkface(utkface_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~150 real UTKFace faces across all ages (symlinks named as in the official release)."""
    folder = tmp_path_factory.mktemp("utk_small")
    for row in list(csv.DictReader((utkface_dir / "labels.csv").open()))[::120]:
        (folder / row["file"]).symlink_to(utkface_dir / "images" / row["file"])
    return folder


def _pngs_ok(folder: Path, names: list[str]) -> None:
    for name in names:
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC, name


def test_report_face_model(small_utkface, tmp_path):
    model = write_tiny_package(tmp_path / "tiny-face.safetensors", "face")
    out = tmp_path / "report"
    rep = evaluate(str(model), "utkface", small_utkface, output=tmp_path / "r.json", report_dir=out)
    md = (out / "report.md").read_text()
    for section in SECTIONS:
        assert section in md, section
    pngs = ["confusion_age_group.png", "confusion_gender.png", "confusion_ethnicity.png", "by_true_age.png",
            "reliability.png", "under18_sweep.png"]
    _pngs_ok(out, pngs)
    for name in pngs:
        assert f"]({name})" in md  # embedded in the report
    # calibration of every logit head, measured on two halves (no validation split with --split all)
    cal = rep["calibration"]
    assert set(cal["heads"]) == {"age", "gender", "ethnicity"} and "halves" in cal["method"]
    for c in cal["heads"].values():
        assert 0 <= c["ece_before"] <= 1 and 0 <= c["ece_after"] <= 1 and c["temperature"] > 0
    # fairness in the JSON; years model → age-threshold sweep
    assert set(rep["fairness"]["by"]) == {"ethnicity", "gender", "age_group"}
    assert rep["fairness"]["under18"]["score"] == "years"
    cross = rep["fairness"]["within_age_group"]["ethnicity"]["gender_accuracy"]
    assert sum(c["n"] for cells in cross["rows"].values() for c in cells.values()) == rep["n_images"]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["report"] == str(out / "report.md") and "fairness" in saved
    lines = (out / "predictions.csv").read_text().splitlines()
    assert len(lines) == rep["n_images"] + 1 and lines[0].startswith("path,true_age")
    assert "n_identities" not in rep  # one image per person: no per-identity figures


def test_report_cli_group_model_with_val_calibration(small_utkface, tmp_path):
    # a body model predicts age groups only (peta5 via the pedestrian head); --split test re-applies the model's
    # own split, so temperature scaling is fitted on its validation part
    model = write_tiny_package(tmp_path / "tiny-body.safetensors", "body")
    out = tmp_path / "report"
    r = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--dataset", "utkface", "--data",
                                 str(small_utkface), "--split", "test", "--report", str(out)])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.output)
    assert "pedestrian" in printed["ece"] and "fairness" not in printed
    md = (out / "report.md").read_text()
    assert "validation split" in md and "P(minor)" in md
    assert "The data carry no exact ages" not in md
    _pngs_ok(out, ["confusion_age_group.png", "confusion_gender.png", "reliability.png", "under18_sweep.png"])
    assert not (out / "confusion_ethnicity.png").exists()  # the model predicts no ethnicity


def test_report_bad_calibration_source(small_utkface, tmp_path):
    model = write_tiny_package(tmp_path / "tiny-face.safetensors", "face")
    r = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--dataset", "utkface", "--data",
                                 str(small_utkface), "--report", str(tmp_path / "rep"), "--calibration", "nope"])
    assert r.exit_code == 2 and "calibration must be one of" in r.output


def test_models_with_attribute_inputs_get_them(peta_dir, utkface_dir):
    # chatzitzisi's ResNet+AE, variant "annotated", takes the attribute vector as a forward input
    from agegender.data.readers import read_dataset
    from agegender.errors import AgeGenderError
    from agegender.evaluation.runner import run_model
    from agegender.labels import Sample
    from agegender.models import build_model
    from agegender.models.package import ModelBundle

    ss = read_dataset("peta", peta_dir, verify_images=False)
    k = len(ss.attribute_names)
    cfg = {"composition": "resnet_ae", "composition_args": {"variant": "annotated"}, "trunk": {"name": "small_cnn"},
           "heads": {"gender": {"type": "binary"}}}
    dims = {"age_group": 5, "gender": 2, "ethnicity": 5, "attributes": k, "pedestrian": 6}
    model = build_model(cfg, dims, stats=None, with_losses=False).eval()
    bundle = ModelBundle(model, {"model": cfg, "data": {"dataset": "peta", "age_scheme": "peta5"}}, dims,
                         {"input_size": [64, 32]}, {}, {"name": "ae"})
    res = run_model(bundle, ss.samples[:12], batch_size=8, raw=True, ten_crop=True)
    assert res.preds["gender_probs"].shape == (12, 2) and res.raw["gender"].shape == (12,)
    face = Sample(path=str(next((utkface_dir / "images").iterdir())), age=30.0)
    with pytest.raises(AgeGenderError, match="annotated attribute vector"):
        run_model(bundle, [face])


def test_peta_evaluation_counts_each_person_once(peta_dir, tmp_path):
    """PETA has many frames of some people: the report adds accuracies with every identity counted once."""
    from collections import defaultdict

    from agegender.evaluation.evaluate import run_evaluation
    from agegender.metrics import gender_probs

    with open(peta_dir / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["subset"] in ("TownCentre", "CUHK")][::25]
        fields = reader.fieldnames
    (tmp_path / "images").mkdir()
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r)
            (tmp_path / "images" / r["file"]).symlink_to(peta_dir / "images" / r["file"])
    pkg = write_tiny_package(tmp_path / "body.safetensors", kind="body")
    ev = run_evaluation(str(pkg), "peta", tmp_path)
    rep = ev.report
    ids = [s.identity for s in ev.samples]
    assert rep["n_identities"] == len(set(ids)) < rep["n_images"]  # TownCentre people repeat
    known = ev.targets["gender"] >= 0
    right = gender_probs(ev.preds).argmax(1) == ev.targets["gender"]
    by_id = defaultdict(list)
    for i, r, k in zip(ids, right, known):
        if k:
            by_id[i].append(float(r))
    want = sum(sum(v) / len(v) for v in by_id.values()) / len(by_id)
    assert rep["gender_accuracy_per_identity"] == pytest.approx(want)
    assert rep["gender_accuracy"] == pytest.approx(right[known].mean())
    assert want != pytest.approx(rep["gender_accuracy"])  # the two figures differ on this data
