"""The rules every dataset reader shares (``SkipLog.finish``): an image listed several times is read once,
or not at all when its labels conflict, and label-file paths that leave the dataset folder are refused
unless ``allow_outside_root`` is given."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agegender.data.readers import READING_RULES, SkippedEntriesWarning, read_dataset
from agegender.data.readers._base import outside_folder
from agegender.data.splits import make_split
from test_readers import write_csv, write_image


def read(name: str, root: Path, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ss = read_dataset(name, root, **options)
    return ss, [w for w in caught if issubclass(w.category, SkippedEntriesWarning)]


def codes(ss) -> list[tuple[str, str]]:
    return sorted((entry, why.split(":")[0]) for entry, why in ss.skipped)


def real(path: str) -> str:
    return os.path.realpath(path)


# -- duplicates


def test_identical_duplicates_are_read_once_and_counted(tmp_path):
    for n in ("a.jpg", "b.jpg"):
        write_image(tmp_path / "images" / n)
    write_csv(tmp_path / "labels.csv", ["file", "age", "gender"],
              [["a.jpg", 30, 0], ["images/a.jpg", 30, 0], ["b.jpg", 20, 1], ["a.jpg", 30, 0]])
    ss, warned = read("csv", tmp_path)
    assert sorted(Path(s.path).name for s in ss.samples) == ["a.jpg", "b.jpg"]
    assert codes(ss) == [("images/a.jpg", "duplicate"), ("images/a.jpg", "duplicate")]
    assert "skipped 2 (duplicate: 2)" in ss.summary()
    assert len(warned) == 1 and "duplicate" in str(warned[0].message)


def test_conflicting_labels_drop_every_copy(tmp_path):
    for n in ("a.jpg", "b.jpg"):
        write_image(tmp_path / n)
    write_csv(tmp_path / "labels.csv", ["file", "age", "gender"],
              [["a.jpg", 30, 0], ["b.jpg", 20, 1], ["a.jpg", 30, 1], ["a.jpg", 30, 0]])
    ss, _ = read("csv", tmp_path)
    assert [Path(s.path).name for s in ss.samples] == ["b.jpg"]
    assert codes(ss) == [("a.jpg", "conflicting_labels")] * 3
    assert all("gender" in why for _, why in ss.skipped)  # says which label differs


def test_another_name_for_the_same_file_is_a_duplicate(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    os.symlink(tmp_path / "images" / "a.jpg", tmp_path / "images" / "alias.jpg")
    write_csv(tmp_path / "labels.csv", ["file", "age"], [["a.jpg", 30], ["alias.jpg", 30], ["images/../images/a.jpg", 30]])
    ss, _ = read("csv", tmp_path)
    assert len(ss) == 1
    assert [c for _, c in codes(ss)] == ["duplicate", "duplicate"]


def test_same_photo_with_different_face_boxes_is_not_a_duplicate(tmp_path):
    from agegender.data.readers._base import SkipLog
    from agegender.labels import Sample, SampleSet

    write_image(tmp_path / "group.jpg")
    photo = str(tmp_path / "group.jpg")
    ss = SampleSet("x", [Sample(photo, age=30, box=(0, 0, 4, 4)), Sample(photo, age=60, box=(5, 5, 9, 9))],
                   root=str(tmp_path))
    SkipLog().finish(ss)
    assert len(ss) == 2 and not ss.skipped


def test_duplicates_can_no_longer_land_in_train_and_test(tmp_path):
    rows = []
    for i in range(30):
        write_image(tmp_path / "images" / f"{i}.jpg")
        rows += [[f"{i}.jpg", 20 + i, i % 2], [f"images/{i}.jpg", 20 + i, i % 2]]  # every image twice
    rows += [["0.jpg", 99, 1]]  # and one listed again with other labels
    write_csv(tmp_path / "labels.csv", ["file", "age", "gender"], rows)
    ss, _ = read("csv", tmp_path)
    for kind, opts in (("random", {"val": 0.2, "test": 0.4}), ("stratified", {"test": 0.3, "val": 0.2})):
        parts = make_split(kind, ss, seed=0, **opts)
        files = {k: {real(ss.samples[i].path) for i in v} for k, v in parts.items()}
        assert not files["train"] & files["test"] and not files["train"] & files["val"], kind
    assert len(ss) == 29 and len({real(s.path) for s in ss.samples}) == 29


# -- paths outside the dataset folder


def make_outside(tmp_path: Path) -> tuple[Path, Path]:
    root, elsewhere = tmp_path / "dataset", tmp_path / "elsewhere"
    write_image(root / "images" / "in.jpg")
    write_image(elsewhere / "out.jpg")
    write_image(elsewhere / "abs.jpg")
    write_csv(root / "labels.csv", ["file", "age", "gender"],
              [["in.jpg", 30, 0], ["../elsewhere/out.jpg", 40, 1], [str(elsewhere / "abs.jpg"), 50, 0],
               [str(root / "images" / "in.jpg"), 30, 0]])  # absolute but inside: kept (here a duplicate)
    return root, elsewhere


def test_paths_leaving_the_root_are_refused_with_the_option_named(tmp_path):
    root, elsewhere = make_outside(tmp_path)
    ss, warned = read("csv", root)
    assert [Path(s.path).name for s in ss.samples] == ["in.jpg"]
    why = dict(ss.skipped)
    assert why[str(root / "../elsewhere/out.jpg")].startswith("outside_root:")
    assert why[str(elsewhere / "abs.jpg")].startswith("outside_root:")
    assert all("allow_outside_root" in w for e, w in ss.skipped if w.startswith("outside_root"))
    assert "outside_root: 2" in ss.summary() and len(warned) == 1


def test_allow_outside_root_reads_them(tmp_path):
    root, _ = make_outside(tmp_path)
    ss, _ = read("csv", root, allow_outside_root=True)
    assert sorted(Path(s.path).name for s in ss.samples) == ["abs.jpg", "in.jpg", "out.jpg"]
    assert [c for _, c in codes(ss)] == ["duplicate"]


def test_symlinks_inside_the_root_are_followed_but_not_after_dotdot(tmp_path):
    root, store = tmp_path / "dataset", tmp_path / "big_disk"
    write_image(store / "a.jpg")
    write_image(store / "b.jpg")
    write_image(tmp_path / "secret.jpg")
    root.mkdir()
    os.symlink(store, root / "images")  # images/ kept on another disk: the folder's own layout
    write_csv(root / "labels.csv", ["file", "age"], [["a.jpg", 30], ["images/b.jpg", 40], ["images/../secret.jpg", 9]])
    ss, _ = read("csv", root)
    assert sorted(Path(s.path).name for s in ss.samples) == ["a.jpg", "b.jpg"]
    assert [c for _, c in codes(ss)] == ["outside_root"]  # images/.. is big_disk's parent, not the dataset
    assert not outside_folder(root / "images" / "a.jpg", root)
    assert outside_folder(root / "images" / ".." / "secret.jpg", root)
    assert outside_folder(tmp_path / "secret.jpg", root)
    assert not outside_folder(root / "sub" / ".." / "x.jpg", root)  # a '..' that stays inside is fine


def _peta(root: Path, names: list[str]) -> None:
    write_csv(root / "labels.csv", ["file", "subset", "person_id", "gender", "age_group", "attributes"],
              [[n, "VIPeR", "7", "0", "16-30", "hairLong"] for n in names])


def _utkface(root: Path, names: list[str]) -> None:
    write_csv(root / "labels.csv", ["file", "age", "gender", "race"], [[n, 30, 0, 1] for n in names])


def _fairface(root: Path, names: list[str]) -> None:
    write_csv(root / "fairface_label_train.csv", ["file", "age", "gender", "race"],
              [[f"images/{n}" if not n.startswith(("/", "..")) else n, "20-29", "Male", "White"] for n in names])


def _adience(root: Path, names: list[str]) -> None:
    # the path is aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>: a user_id can climb out
    rows = []
    for n in names:
        user = "u1" if not n.startswith("..") else "../../elsewhere"
        rows.append([user, Path(n).name, "1", "(25, 32)", "m"])
        write_image(root / "aligned" / user / f"landmark_aligned_face.1.{Path(n).name}")
    write_csv(root / "fold_0_data.txt", ["user_id", "original_image", "face_id", "age", "gender"], rows,
              delimiter="\t")


@pytest.mark.parametrize("name,writer", [("peta", _peta), ("utkface", _utkface), ("fairface", _fairface),
                                         ("adience", _adience)])
def test_every_reader_gets_both_rules(tmp_path, name, writer):
    root = tmp_path / "dataset"
    write_image(root / "images" / "a.jpg")
    write_image(tmp_path / "elsewhere" / "x.jpg")
    entries = ["a.jpg", "a.jpg", "../../elsewhere/x.jpg" if name != "fairface" else "../elsewhere/x.jpg"]
    writer(root, entries)
    ss, warned = read(name, root)
    assert len(ss) == 1 and len(warned) == 1
    assert sorted(c for _, c in codes(ss)) == ["duplicate", "outside_root"], ss.skipped
    ss, _ = read(name, root, allow_outside_root=True)
    assert len(ss) == 2


def test_rap_names_leaving_the_root_are_refused(tmp_path):
    from test_readers import make_rap

    make_rap(tmp_path / "rap")
    ok, _ = read("rap", tmp_path / "rap")
    assert len(ok) == 3 and not any(c == "outside_root" for _, c in codes(ok))
    one, _ = read("rap", tmp_path / "rap" / "RAP_annotation" / "RAP_annotation.mat")  # the .mat given directly
    assert len(one) == 3


# -- the option through configs and the CLI


def test_data_allow_outside_root_in_a_config(tmp_path):
    from agegender.training.config import load_config
    from agegender.training.datamodule import AgeGenderDataModule, reader_options

    root, _ = make_outside(tmp_path)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data:\n  dataset: csv\n  root: {root}\n  split: {{kind: random, val: 0.0, test: 0.0}}\n")
    cfg = load_config(cfg_file, [])
    assert cfg["data"]["allow_outside_root"] is False and reader_options(cfg["data"]) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = AgeGenderDataModule(cfg["data"])
        dm.prepare_samples()
        assert len(dm.samples) == 1
        cfg = load_config(cfg_file, ["data.allow_outside_root=true"])
        assert reader_options(cfg["data"]) == {"allow_outside_root": True}
        dm = AgeGenderDataModule(cfg["data"])
        dm.prepare_samples()
    assert len(dm.samples) == 3


def test_cli_evaluate_passes_the_option_and_datasets_states_the_rules(tmp_path, monkeypatch):
    import agegender.evaluation.evaluate as ev
    from agegender.cli import app

    seen: dict = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        return {"model": "m"}

    monkeypatch.setattr(ev, "evaluate", fake)
    runner = CliRunner()
    base = ["evaluate", "--model", "m", "--dataset", "csv", "--data", str(tmp_path)]
    assert runner.invoke(app, base).exit_code == 0 and not seen["options"]
    assert runner.invoke(app, [*base, "--allow-outside-root"]).exit_code == 0
    assert seen["options"] == {"allow_outside_root": True}
    out = runner.invoke(app, ["datasets"]).output
    assert "duplicate" in out and "allow_outside_root" in out and READING_RULES.split()[0] in out


def test_rules_leave_clean_data_alone(tmp_path):
    names = [f"{i}.jpg" for i in range(5)]
    for n in names:
        write_image(tmp_path / "images" / n)
    write_csv(tmp_path / "labels.csv", ["file", "age"], [[n, 20] for n in names])
    ss, warned = read("csv", tmp_path)
    assert len(ss) == 5 and not ss.skipped and not warned
    assert np.all([Path(s.path).is_file() for s in ss.samples])
