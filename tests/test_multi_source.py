"""data.sources: several datasets in one training run — each read and split on its own, labels a source lacks
masked out, the draw weighted per source, validation scored per source and pooled, and evaluation of one source
finding the split training made."""

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from agegender.cli import app
from agegender.errors import AgeGenderError
from agegender.training.datamodule import AgeGenderDataModule, one_source, source_specs


def make_csv_source(root: Path, n: int, columns: tuple[str, ...], people: int | None = None, seed: int = 0) -> Path:
    """A csv-layout dataset of ``n`` generated 24×24 images with the given label columns."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "images" / name)
        row = {"file": name, "age": str(5 + (i * 7) % 70), "gender": "female" if i % 2 else "male",
               "identity": str(i % people if people else i), "young": str(int(i % 3 == 0))}
        rows.append({k: row[k] for k in ("file", *columns)})
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", *columns])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture()
def two_sources(tmp_path):
    aged = make_csv_source(tmp_path / "aged", 60, ("age", "gender"))
    celeb = make_csv_source(tmp_path / "celeb", 90, ("gender", "identity"), people=18, seed=1)
    return aged, celeb


def data_cfg(aged: Path, celeb: Path, celeb_extra: dict | None = None, **extra) -> dict:
    return {"dataset": "csv", "input_size": 16, "batch_size": 8, "num_workers": 0, "cache": False,
            "sources": [
                {"name": "aged", "root": str(aged), "split": {"kind": "stratified", "val": 0.2, "test": 0.2, "seed": 3}},
                {"name": "celeb", "root": str(celeb), "split": {"kind": "identity", "val": 0.2, "test": 0.2, "seed": 3},
                 **(celeb_extra or {})},
            ], **extra}


def test_sources_are_read_and_split_on_their_own(two_sources):
    aged, celeb = two_sources
    dm = AgeGenderDataModule(data_cfg(aged, celeb))
    dm.prepare_samples()
    assert dm.source_names == ("aged", "celeb") and len(dm.samples) == 150
    assert "aged: csv: loaded 60" in dm.read_summary and "celeb: csv: loaded 90" in dm.read_summary
    src = dm.targets["source"]
    assert Counter(src.tolist()) == {0: 60, 1: 90}
    # every part of the pooled split holds both sources, and celeb's people are in one part only
    for part in ("train", "val", "test"):
        assert set(src[dm.split[part]]) == {0, 1}
    parts_of = {}
    for part in ("train", "val", "test"):
        for i in dm.split[part][src[dm.split[part]] == 1]:
            parts_of.setdefault(dm.samples[i].identity, set()).add(part)
    assert all(len(p) == 1 for p in parts_of.values()) and len(parts_of) == 18
    # the split of a source is the one it would get alone (so evaluating it later finds the same test images)
    alone = AgeGenderDataModule(one_source(dm.cfg, "csv", str(celeb)))
    alone.prepare_samples()
    pooled_test = sorted(dm.samples[i].path for i in dm.split["test"] if src[i] == 1)
    assert pooled_test == sorted(alone.samples[i].path for i in alone.split["test"])
    # a label a source lacks is missing (masked out of its head's loss), not a value
    assert np.isnan(dm.targets["age"][src == 1]).all() and not np.isnan(dm.targets["age"][src == 0]).any()
    assert (dm.targets["gender"] >= 0).all()


def test_source_weight_sets_its_share_of_the_draw(two_sources):
    aged, celeb = two_sources
    dm = AgeGenderDataModule(data_cfg(aged, celeb))
    dm.prepare_samples()
    assert dm.train_sampler() is None  # no weights and no balancing: a plain shuffle
    dm = AgeGenderDataModule(data_cfg(aged, celeb, celeb_extra={"weight": 0.25}))
    dm.prepare_samples()
    w = dm._sampler_weights()
    src = dm.targets["source"][dm.split["train"]]
    n0, n1 = (src == 0).sum(), (src == 1).sum()
    share = w[src == 1].sum() / w.sum()
    assert share == pytest.approx(0.25 * n1 / (n0 + 0.25 * n1))
    # balancing within a source keeps the source's share
    dm = AgeGenderDataModule(data_cfg(aged, celeb, celeb_extra={"weight": 0.25}, sampler={"by": ["gender"]}))
    dm.prepare_samples()
    w2 = dm._sampler_weights()
    assert w2[src == 1].sum() / w2.sum() == pytest.approx(share)


@pytest.mark.parametrize("sources,needle", [
    ("nope", "list of mappings"),
    ([{"root": "x", "wieght": 2}], "unknown key"),
    ([{"root": "a"}, {"root": "b"}], "names must be unique"),
])
def test_bad_sources_are_config_errors(sources, needle):
    with pytest.raises(AgeGenderError, match=needle):
        source_specs({"dataset": "csv", "sources": sources})


def test_negative_weight_and_unknown_source_for_evaluation(two_sources):
    aged, celeb = two_sources
    dm = AgeGenderDataModule(data_cfg(aged, celeb, celeb_extra={"weight": -1}))
    with pytest.raises(AgeGenderError, match="weight must be a number >= 0"):
        dm.prepare_samples()
    with pytest.raises(AgeGenderError, match="--split all"):
        one_source(data_cfg(aged, celeb), "utkface", "/elsewhere")


def test_training_reports_every_head_per_source(two_sources, tmp_path):
    aged, celeb = two_sources
    cfg = {"name": "two", "data": {**data_cfg(aged, celeb), "batch_size": 16},
           "model": {"trunk": {"name": "small_cnn"},
                     "heads": {"age": {"type": "age_distribution", "loss": "dldl"},
                               "gender": {"type": "classification", "loss": "ce"}}},
           "optim": {"name": "adam", "lr": 1.0e-3},
           "trainer": {"max_epochs": 1, "progress_bar": False}}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(path), "--output", str(out)])
    assert r.exit_code == 0, r.output
    header = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("aged", "celeb"):
        assert f"val/{name}/gender_accuracy" in header and f"val/{name}/gender_recall_female" in header
    assert "val/aged/age_mae" in header and "val/celeb/age_mae" not in header  # celeb has no ages
    assert "val/age_mae" in header  # pooled
    res = json.loads((out / "results.json").read_text())
    assert res["split_sizes"]["train"] + res["split_sizes"]["val"] + res["split_sizes"]["test"] == 150
    assert set(res["test"]) == {"aged", "celeb"}  # each source's test split scored on its own
    assert "age_mae" in res["test"]["aged"] and "age_mae" not in res["test"]["celeb"]
    assert "gender_recall_gap" in res["test"]["celeb"]

    # the model card lists each source with its split and draw weight, and each source's licence
    from agegender.workflows.packaging import write_model_card

    pkg = tmp_path / "two.safetensors"
    r = CliRunner().invoke(app, ["package", str(out / "checkpoints" / "best.ckpt"), "-o", str(pkg), "--no-calibrate",
                                 "--detector", "none"])
    assert r.exit_code == 0, r.output
    text = write_model_card(pkg, {"name": "two"}, {"aged test": res["test"]["aged"]}, {"train": "t"}, []).read_text()
    assert "- 2 sources, each read and split on its own" in text
    assert f"  - `aged`: `csv` from `{aged}`" in text and "draw weight 1" in text and "`celeb`: `csv`" in text
    assert "- aged: see the training data licence." in text and "- celeb: see the training data licence." in text
