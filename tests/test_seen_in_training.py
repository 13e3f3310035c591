"""A package carries the fingerprint of its training images; evaluate counts (and can leave out) the evaluated
images the model has seen, under any name or folder, and an empty dataset is an error, not a report of nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from agegender.cli import app
from agegender.data.fingerprint import file_hashes, fingerprint, seen_mask
from agegender.bundled import resolve_model_path
from agegender.models.package import load_bundle, save_package
from helpers_models import tiny_bundle

pytest_plugins = ["fixtures_models"]


def test_fingerprint_follows_bytes_not_names(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.jpg", "b.jpg", "c.jpg"))
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    c.write_bytes(b"one")  # a copy of a under another name
    fp = fingerprint([a])
    assert fp.dtype == np.int64 and len(fp) == 1
    assert seen_mask(fp, [a, b, c, tmp_path / "missing.jpg"]).tolist() == [True, False, True, False]
    assert file_hashes([a])[0] == file_hashes([c])[0] != file_hashes([b])[0]
    # merging with an earlier fingerprint keeps both, once each
    assert sorted(fingerprint([b], fp).tolist()) == sorted({*fp.tolist(), *file_hashes([b]).tolist()})


@pytest.fixture()
def seen_setup(utkface_dir, tmp_path):
    chips = sorted((utkface_dir / "images").glob("*.jpg"))[:6] if (utkface_dir / "images").is_dir() else \
        sorted(utkface_dir.rglob("*.chip.jpg"))[:6]
    folder = tmp_path / "subset"
    folder.mkdir()
    for f in chips:
        shutil.copy(f, folder / f.name)  # a copied subset: other paths, same bytes
    b = tiny_bundle("face")
    b.fingerprint = fingerprint(chips[:4])
    return save_package(b, tmp_path / "m.safetensors"), folder


def test_evaluate_counts_and_excludes_seen_images(seen_setup, caplog):
    from agegender.evaluation.evaluate import evaluate

    model, folder = seen_setup
    assert len(load_bundle(model).fingerprint) == 4
    with caplog.at_level("WARNING"):
        rep = evaluate(str(model), "utkface", folder)
    assert rep["n_images"] == 6 and rep["seen_in_training"] == 4 and not rep["seen_in_training_excluded"]
    assert any("4 of 6 images" in r.message and "overstate" in r.message for r in caplog.records)
    rep = evaluate(str(model), "utkface", folder, exclude_seen=True)
    assert rep["n_images"] == 2 and rep["seen_in_training"] == 4 and rep["seen_in_training_excluded"]


def test_cli_evaluate_reports_and_warns(seen_setup, caplog):
    model, folder = seen_setup
    with caplog.at_level("WARNING"):  # `agegender` logs warnings to stderr
        r = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--dataset", "utkface", "--data", str(folder)])
    assert r.exit_code == 0, r.output
    assert '"seen_in_training": 4' in r.output
    assert any("4 of 6 images" in rec.message for rec in caplog.records)


def test_model_without_fingerprint_says_unknown(tiny_face_model, utkface_dir, tmp_path):
    from agegender.evaluation.evaluate import evaluate

    folder = tmp_path / "two"
    folder.mkdir()
    for f in sorted(utkface_dir.rglob("*.chip.jpg"))[:2]:
        shutil.copy(f, folder / f.name)
    assert evaluate(tiny_face_model, "utkface", folder)["seen_in_training"] is None


def test_evaluate_on_an_empty_dataset_is_an_error(tiny_face_model, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("file,age,gender,race\n")
    r = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_face_model), "--dataset", "utkface",
                                 "--data", str(tmp_path)])
    assert r.exit_code == 2 and "no images to evaluate" in r.output and "Traceback" not in r.output


def test_bundled_models_carry_their_training_fingerprint():
    # default: the train and validation splits of its three sources (50,046 + 5,975 images, 51 of them with the same
    # bytes as another); default-body: PETA's (its members trained on the training and test parts, 8,075, and were
    # chosen and calibrated on the validation part, 1,425)
    for name, images in (("default", 50046 + 5975 - 51), ("default-body", 8075 + 1425)):
        b = load_bundle(resolve_model_path(name))
        assert b.fingerprint is not None and len(b.fingerprint) == images == b.meta["fingerprint"]["images"]


def test_a_crop_cache_is_matched_by_its_originals(tmp_path):
    """Crops cut by `agegender crops` carry their originals' fingerprints; evaluating the cache finds the crops
    whose original the model was trained on, although the crops' own bytes differ."""
    from PIL import Image

    from agegender.evaluation.evaluate import evaluate

    rng = np.random.default_rng(0)
    originals, rows = [], ["file,age,gender,source_fingerprint"]
    (tmp_path / "cache" / "images").mkdir(parents=True)
    for i in range(5):
        original = tmp_path / f"photo{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(original)
        originals.append(original)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "cache" / "images" / f"{i}.jpg")
        rows.append(f"images/{i}.jpg,{20 + i},{i % 2},{file_hashes([original])[0]}")
    (tmp_path / "cache" / "labels.csv").write_text("\n".join(rows) + "\n")
    b = tiny_bundle("face")
    b.fingerprint = fingerprint(originals[:2])
    model = save_package(b, tmp_path / "m.safetensors")
    rep = evaluate(str(model), "csv", tmp_path / "cache")
    assert rep["n_images"] == 5 and rep["seen_in_training"] == 2
    assert evaluate(str(model), "csv", tmp_path / "cache", exclude_seen=True)["n_images"] == 3
