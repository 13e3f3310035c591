"""agegender crops: a detector-framed face crop cache in the csv layout."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from agegender.data.fingerprint import file_hash, sample_fingerprint
from agegender.data.readers import read_dataset
from agegender.errors import AgeGenderError
from agegender.workflows.face_crops import build_crop_cache


@pytest.fixture()
def dataset(tmp_path):
    import matplotlib.cbook

    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        (root / "images" / "grace.jpg").write_bytes(f.read())
    rng = np.random.default_rng(0)
    Image.fromarray((np.ones((120, 160, 3)) * np.array([40, 120, 200])).astype(np.uint8)).save(
        root / "images" / "blank.png")
    Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(root / "images" / "noise.png")
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "age", "gender", "identity", "young"])
        w.writerow(["grace.jpg", "79", "1", "gh", "0"])
        w.writerow(["blank.png", "30", "0", "b", "1"])
        w.writerow(["noise.png", "", "0", "n", ""])
    return root


def test_cache_resume_and_read_back(dataset, tmp_path):
    out = tmp_path / "cache"
    s = build_crop_cache("csv", dataset, out, progress=False)
    assert s["images"] == 3 and s["written"] == 1
    assert s["no_face"] == 2 and set(s["no_face_files"]) == {"images/blank.png", "images/noise.png"}
    assert sum(s["framing"].values()) == 1 and json.loads((out / "summary.json").read_text()) == s
    rows = list(csv.DictReader(open(out / "labels.csv")))
    (row,) = rows
    assert row["source_file"] == "images/grace.jpg" and row["age"] == "79" and row["young"] == "0"
    assert int(row["source_fingerprint"]) == file_hash(dataset / "images" / "grace.jpg")
    img = Image.open(out / "images" / row["file"])
    assert img.format == "JPEG" and img.size == (96, 96)
    back = read_dataset("csv", out).samples
    (sample,) = list(back)
    assert sample.age == 79 and sample.gender == 1 and sample.extra["young"] == 0
    assert sample_fingerprint(sample) == file_hash(dataset / "images" / "grace.jpg")
    # resumable: nothing redone
    again = build_crop_cache("csv", dataset, out, progress=False)
    assert again["resumed"] == 3 and again["written"] == 1
    with pytest.raises(AgeGenderError, match="new output folder"):
        build_crop_cache("csv", dataset, out, size=64, progress=False)


def test_unreadable_skipped_and_cli(dataset, tmp_path):
    from typer.testing import CliRunner

    from agegender.cli import app

    (dataset / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    with open(dataset / "labels.csv", "a", newline="") as f:
        csv.writer(f).writerow(["broken.jpg", "20", "1", "x", "1"])
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["crops", "csv", str(dataset), "--output", str(out), "--size", "64",
                                 "--set", "verify_images=false"])
    assert r.exit_code == 0, r.output
    assert "no face: 2" in r.output and "crops" in r.output
    s = json.loads((out / "summary.json").read_text())
    assert [k["file"] for k in s["skipped"]] == ["images/broken.jpg"]
    r = CliRunner().invoke(app, ["crops", "csv", str(dataset), "--output", str(out)])
    assert r.exit_code == 2 and "new output folder" in r.output and "Traceback" not in r.output
    shutil.rmtree(out)


def test_another_detector_is_recorded_and_kept(dataset, tmp_path):
    out = tmp_path / "blaze"
    s = build_crop_cache("csv", dataset, out, progress=False, detector="blazeface")
    assert s["framing"] == {"blazeface": 1}
    assert json.loads((out / "manifest.json").read_text())["detector"] == "blazeface"
    with pytest.raises(AgeGenderError, match="detector"):  # the model's own detector would frame them otherwise
        build_crop_cache("csv", dataset, out, progress=False)
    default = build_crop_cache("csv", dataset, tmp_path / "own", progress=False)
    assert default["framing"] == {"centerface": 1}
