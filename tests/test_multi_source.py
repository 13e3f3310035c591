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

    # calibrated on another config's data (its sources and splits) instead of the model's own
    cal = {**cfg, "data": data_cfg(aged, celeb)}
    for spec in cal["data"]["sources"]:
        spec["split"] = {**spec["split"], "val": 0.5}
    cal_path = tmp_path / "cal.yaml"
    cal_path.write_text(yaml.safe_dump(cal))
    dm = AgeGenderDataModule(cal["data"])
    dm.prepare_samples()
    recal = tmp_path / "recal.safetensors"
    own_cal = tmp_path / "own_cal.safetensors"  # first calibrated on its own validation images
    r = CliRunner().invoke(app, ["package", str(pkg), "-o", str(own_cal), "--force", "--detector", "none"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["package", str(own_cal), "-o", str(recal), "--calibration-config", str(cal_path),
                                 "--force", "--detector", "none"])
    assert r.exit_code == 0, r.output
    from agegender.models.package import load_bundle

    # the "before" figures describe the images it was calibrated on now, not those of the first fit
    first = load_bundle(own_cal).meta["calibration"]["heads"]["gender"]
    again = load_bundle(recal).meta["calibration"]["heads"]["gender"]
    assert again["nll_before"] != first["nll_before"] and again["n"] != first["n"]
    fitted = load_bundle(recal).meta["calibration"]["fitted_on"]
    assert fitted == f"validation split of {cal_path.as_posix()} ({len(dm.split['val'])} images)"
    # what it has seen: its own training and validation images and the validation images it was calibrated on
    from agegender.data.fingerprint import samples_fingerprint

    own = load_bundle(pkg).fingerprint
    assert set(load_bundle(recal).fingerprint.tolist()) == set(
        samples_fingerprint([dm.samples[i] for i in dm.split["val"]], own).tolist())
    r = CliRunner().invoke(app, ["package", str(pkg), "-o", str(recal), "--calibration-config",
                                 str(tmp_path / "none.yaml")])
    assert r.exit_code != 0 and "Traceback" not in r.output and "none.yaml" in r.output


def copy_of(source: Path, dest: Path, keep: slice, new: int = 0, rename: bool = False, fingerprints: bool = False
            ) -> Path:
    """Another copy of a csv-layout dataset (as a crop cache of the same photos cut another way is): the rows
    ``keep`` of ``source``, in reverse order, with fresh pixels, plus ``new`` images the source does not have; with
    ``rename`` its files are named otherwise, so only the originals' fingerprints (``fingerprints``) tie the two."""
    rng = np.random.default_rng(5)
    with open(source / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    (dest / "images").mkdir(parents=True)
    out = []
    for i, row in enumerate(rows[keep][::-1] + [dict(rows[0], file=f"new{j}.jpg") for j in range(new)]):
        row = dict(row)
        if fingerprints:
            row["source_fingerprint"] = str(1000 + int(row["file"][:4])) if row["file"][0].isdigit() else str(-1 - i)
        if rename:
            row["file"] = f"cut_{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(dest / "images" / row["file"])
        out.append(row)
    with open(dest / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    return dest


def parts_of(dm: AgeGenderDataModule, source: int, key) -> dict[object, str]:
    src = dm.targets["source"]
    return {key(dm.samples[i]): part for part, idx in dm.split.items() for i in idx if src[i] == source}


@pytest.mark.parametrize("rename", [False, True])
def test_same_as_split_follows_the_other_copy(two_sources, tmp_path, rename):
    """A source can take its parts from another copy of the same data (split: same_as): every image lands in the
    part its copy is in there, images with no copy are left out, and evaluating the source finds the same split."""
    aged, celeb = two_sources
    if rename:  # the reference needs the fingerprints too: a copy of it under its own names with them
        celeb = copy_of(celeb, tmp_path / "celeb_fp", slice(None), fingerprints=True)
    recut = copy_of(celeb, tmp_path / "recut", slice(5, None), new=3, rename=rename, fingerprints=rename)
    reference = {"kind": "identity", "val": 0.2, "test": 0.2, "seed": 3}
    before = AgeGenderDataModule(data_cfg(aged, celeb))
    before.prepare_samples()
    after = AgeGenderDataModule(data_cfg(aged, recut, celeb_extra={
        "root": str(recut), "split": {"kind": "same_as", "root": str(celeb), "split": reference}}))
    after.prepare_samples()

    def key(s):
        return s.extra["fingerprint"] if rename and "fingerprint" in s.extra else Path(s.path).name

    was, now = parts_of(before, 1, key), parts_of(after, 1, key)
    assert len(now) == 85 and len(was) == 90  # 5 left out of the copy; its 3 new images are in no part
    assert all(was[k] == p for k, p in now.items())
    assert set(now.values()) == {"train", "val", "test"}
    assert parts_of(after, 0, key) == parts_of(before, 0, key)  # the other source is untouched
    # evaluation of the recut source alone finds the split training made
    alone = AgeGenderDataModule(one_source(after.cfg, "csv", str(recut)))
    alone.prepare_samples()
    assert sorted(key(alone.samples[i]) for i in alone.split["test"]) == sorted(
        k for k, p in now.items() if p == "test")


@pytest.mark.parametrize("split,needle", [
    ({"kind": "same_as", "split": {"kind": "identity"}}, "needs root"),
    ({"kind": "same_as", "root": "ROOT"}, "needs root"),
    ({"kind": "same_as", "root": "ROOT", "split": {"kind": "identity"}, "seed": 3}, r"not \['seed'\]"),
    ({"kind": "same_as", "root": "ROOT", "split": {"kind": "same_as"}}, "not another same_as"),
    ({"kind": "same_as", "root": "MISSING", "split": {"kind": "identity"}}, "not found"),
])
def test_same_as_split_config_errors(two_sources, tmp_path, split, needle):
    aged, celeb = two_sources
    split = {k: (str(celeb) if v == "ROOT" else str(tmp_path / "nowhere") if v == "MISSING" else v)
             for k, v in split.items()}
    dm = AgeGenderDataModule(data_cfg(aged, celeb, celeb_extra={"split": split}))
    with pytest.raises(AgeGenderError, match=needle):
        dm.prepare_samples()


def test_same_as_outside_a_training_config_is_a_clear_error():
    from agegender.data.splits import make_split

    with pytest.raises(AgeGenderError, match="another copy of the data"):
        make_split("same_as", [])
