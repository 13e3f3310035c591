"""`agegender predict`: output formats round-trip through JSON/CSV readers, annotated copies, and broken
files give error records without changing the exit code (unless --fail-on-error)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agegender.cli_inference import app
from helpers_models import grace_hopper_path, write_image_folder

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model, tiny_regression_model


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["predict", *args])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def read_records(text: str, fmt: str) -> list[dict]:
    """The flat rows (one per image, one per person) of any format: JSON and JSON Lines hold one nested object
    per image, each checked against the result schema and flattened as CSV rows are."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    from agegender.inference.records import to_records
    from agegender.inference.results import ImageResult

    objs = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row for o in objs for row in to_records(ImageResult.model_validate(o))]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_image_folder(root, good=3, broken=2)
    sub = root / "nested" / "deeper"
    sub.mkdir(parents=True)
    (sub / "grace.jpg").write_bytes(grace_hopper_path().read_bytes())
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_formats_round_trip(fmt: str, photos: Path, tiny_face_model: Path, tmp_path: Path) -> None:
    code, out, err = run(str(photos), "--model", str(tiny_face_model), "--format", fmt, "--no-progress")
    assert code == 0, err
    rows = read_records(out, fmt)
    images = [r for r in rows if r["record"] == "image"]
    persons = [r for r in rows if r["record"] == "person"]
    assert len(images) == 6  # 3 good + 2 broken + nested grace (notes.txt skipped)
    assert {Path(r["source"]).name for r in images} >= {"grace.jpg", "bad_0000.jpg", "bad_0001.jpg"}
    statuses = {Path(r["source"]).name: r["status"] for r in images}
    assert statuses["grace.jpg"] == "ok" and statuses["bad_0000.jpg"] == "empty_file"
    assert statuses["bad_0001.jpg"] == "unreadable"
    assert len(persons) == sum(int(r["num_people"]) for r in images) >= 1
    assert all(r["message"] for r in images if r["status"] not in ("ok", "no_face"))
    g = next(r for r in persons if r["source"].endswith("grace.jpg"))
    assert 0 <= float(g["age"]) <= 100 and float(g["age_low"]) <= float(g["age"]) <= float(g["age_high"])
    assert 0.0 <= float(g["age_p_under_18"]) <= 1.0
    assert g["gender"] in ("male", "female")
    assert float(g["gender_prob_male"]) + float(g["gender_prob_female"]) == pytest.approx(1.0, abs=1e-3)
    assert float(g["x2"]) > float(g["x1"])
    if fmt == "csv":
        assert len({tuple(r) for r in rows}) == 1  # every row has the same columns
    else:  # one object per image, its people nested as in the HTTP API
        objs = json.loads(out) if fmt == "json" else [json.loads(x) for x in out.splitlines()]
        assert len(objs) == 6 and all(set(o) == {"source", "status", "message", "width", "height", "people"}
                                      for o in objs)
        grace = next(o for o in objs if o["source"].endswith("grace.jpg"))
        assert set(grace["people"][0]["age"]) >= {"years", "interval", "group", "group_probs", "scheme"}
    # the same records written to a file instead of stdout
    dest = tmp_path / f"out.{fmt}"
    code, out2, _ = run(str(photos), "--model", str(tiny_face_model), "--format", fmt, "--output", str(dest))
    assert code == 0 and out2 == ""
    assert read_records(dest.read_text(), fmt) == rows


def test_annotated_copies_keep_relative_paths(photos: Path, tiny_face_model: Path, tmp_path: Path) -> None:
    ann = tmp_path / "annotated"
    code, _, err = run(str(photos), "--model", str(tiny_face_model), "--out", str(ann), "--format", "jsonl")
    assert code == 0, err
    written = sorted(str(p.relative_to(ann)) for p in ann.rglob("*") if p.is_file())
    assert "nested/deeper/grace.jpg" in written
    assert not any(n.startswith("bad_") for n in written)  # unreadable files have nothing to annotate
    from agegender.data.images import load_image

    assert load_image(ann / "nested/deeper/grace.jpg").shape == (600, 512, 3)
    assert "annotated copies in" in err


def test_hundred_files_ten_broken(tiny_face_model: Path, tmp_path: Path) -> None:
    kinds = write_image_folder(tmp_path / "many", good=90, broken=10)
    dest = tmp_path / "r.csv"
    code, _, err = run(
        str(tmp_path / "many"),
        "--model",
        str(tiny_face_model),
        "--format",
        "csv",
        "--output",
        str(dest),
        "--workers",
        "2",
        "--batch-size",
        "16",
    )
    assert code == 0, err
    rows = read_records(dest.read_text(), "csv")
    images = [r for r in rows if r["record"] == "image"]
    assert len(images) == 100 and {Path(r["source"]).name for r in images} == set(kinds)
    ok = [r for r in images if r["status"] in ("ok", "no_face")]
    errors = [r for r in images if r["status"] not in ("ok", "no_face")]
    assert len(ok) == 90 and len(errors) == 10
    assert {Path(r["source"]).name for r in errors} == {n for n, k in kinds.items() if k == "broken"}
    assert "100 images" in err
    code, _, _ = run(
        str(tmp_path / "many"),
        "--model",
        str(tiny_face_model),
        "--format",
        "jsonl",
        "--output",
        str(tmp_path / "r.jsonl"),
        "--fail-on-error",
    )
    assert code == 1
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 100  # one line per image


def test_missing_path_is_a_record_and_options(tiny_face_model: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        str(grace_hopper_path()),
        str(tmp_path / "nope.jpg"),
        "--model",
        str(tiny_face_model),
        "--format",
        "jsonl",
        "--min-confidence",
        "0.99",
        "--scheme",
        "kang4",
    )
    # every other path is still predicted and the missing one gets its record, but the run exits 2 (a user error)
    assert code == 2 and "1 of the paths given do not exist" in _ and str(tmp_path / "nope.jpg") in _
    rows = read_records(out, "jsonl")
    assert [r["status"] for r in rows if r["record"] == "image"] == ["ok", "missing_file"]
    person = next(r for r in rows if r["record"] == "person")
    assert person["gender"] == "uncertain" and "age_group_prob_61+" in person


def test_detector_options_and_tta(tiny_face_model: Path) -> None:
    base = ["--model", str(tiny_face_model), "--format", "jsonl"]
    code, out, err = run(
        str(grace_hopper_path()),
        *base,
        "--detector-option",
        "max_side=320",
        "--detector-option",
        "scale_factor=1.2",
        "--detector-option",
        "margin=0.1",
    )
    assert code == 0, err
    fast = [r for r in read_records(out, "jsonl") if r["record"] == "person"]
    assert len(fast) == 1
    _, out_flip, _ = run(str(grace_hopper_path()), *base, "--tta-flip")
    _, out_plain, _ = run(str(grace_hopper_path()), *base, "--no-tta-flip")
    flip, plain = (
        next(r for r in read_records(o, "jsonl") if r["record"] == "person") for o in (out_flip, out_plain)
    )
    assert flip != plain  # flip TTA changes the probabilities
    code, _, err = run(str(grace_hopper_path()), *base, "--detector-option", "no_such_option=1")
    assert code == 2 and "no_such_option" in err
    code, _, err = run(str(grace_hopper_path()), *base, "--detector-option", "max_side")
    assert code == 2 and "KEY=VALUE" in err


def test_user_errors_exit_2(tiny_face_model: Path, tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path), "--model", "no-such-model")
    assert code == 2 and err.startswith("error: unknown model")
    code, _, err = run(str(tmp_path), "--model", str(tiny_face_model), "--format", "xml")
    assert code == 2 and "--format" in err
    code, _, err = run(str(tmp_path), "--model", str(tiny_face_model))  # empty folder
    assert code == 2 and "no image files" in err
    code, _, err = run(str(tmp_path), "--model", str(tiny_face_model), "--ray", "--out", str(tmp_path / "a"))
    assert code == 2 and "--ray" in err


def test_precision_bf16_for_batch_jobs(tiny_face_model: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(96):  # more than the 64 crops after which the torch backend traces the network
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:03d}.png")
    base = [str(tmp_path), "--model", str(tiny_face_model), "--detector", "none", "--format", "jsonl",
            "--batch-size", "32", "--no-tta-flip"]
    people = {}
    for precision in ("fp32", "bf16"):
        code, out, err = run(*base, "--precision", precision)
        assert code == 0, err
        people[precision] = [r for r in read_records(out, "jsonl") if r["record"] == "person"]
    assert len(people["fp32"]) == len(people["bf16"]) == 96
    key = next(k for k in people["fp32"][0] if k.startswith("gender_prob_"))
    p32, p16 = (np.array([float(r[key]) for r in people[p]]) for p in ("fp32", "bf16"))
    np.testing.assert_allclose(p32[:64], p16[:64], atol=1e-5)  # the first batches run float32 either way
    assert np.abs(p32[64:] - p16[64:]).max() < 0.1 and not np.array_equal(p32[64:], p16[64:])
    code, _, err = run(*base, "--precision", "fp8")
    assert code == 2 and "precision='fp8'" in err and "'fp32', 'bf16', 'int8' or 'auto'" in err


def test_precision_int8_runs_the_bundled_int8_twin(tmp_path: Path) -> None:
    """`--precision int8` predicts with the bundled model's int8 twin (OpenVINO) and reads the photo as float32
    does; a model without one is a one-line error."""
    pytest.importorskip("openvino")
    photo = str(grace_hopper_path())
    rows = {}
    for precision in ("fp32", "int8"):
        code, out, err = run(photo, "--model", "default-fast", "--format", "json", "--precision", precision)
        assert code == 0, err
        rows[precision] = [r for r in read_records(out, "json") if r["record"] == "person"]
    assert len(rows["fp32"]) == len(rows["int8"]) == 1
    a, b = rows["fp32"][0], rows["int8"][0]
    assert a["gender"] == b["gender"] and abs(float(a["age"]) - float(b["age"])) < 3.0
    code, _, err = run(photo, "--model", "default-accurate", "--precision", "int8")
    assert code == 2 and "no int8 version" in err and len(err.strip().splitlines()) == 1


def test_heic_and_extensionless_files_get_records(tiny_face_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    heif = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    (folder / "IMG_0001.HEIC").write_bytes(heif)
    (folder / "IMG_0002").write_bytes(heif)  # no extension: found by its first bytes
    (folder / "download").write_bytes(grace_hopper_path().read_bytes())
    (folder / "README").write_text("not an image")  # no extension, not an image: not a record
    code, out, _ = run(str(folder), "--model", str(tiny_face_model), "--format", "jsonl", "--detector", "none")
    assert code == 0
    status = {Path(r["source"]).name: (r["status"], r["message"]) for r in read_records(out, "jsonl")
              if r["record"] == "image"}
    assert set(status) == {"IMG_0001.HEIC", "IMG_0002", "download"}
    assert status["download"][0] == "ok"
    for name in ("IMG_0001.HEIC", "IMG_0002"):
        assert status[name][0] == "unsupported" and "HEIC" in status[name][1] and "JPEG" in status[name][1]


def test_version_and_stdout_stays_records(tiny_face_model: Path) -> None:
    import agegender

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"agegender {agegender.__version__}"
    # the summary line goes to stderr: stdout is only the records, parseable as a whole
    code, out, err = run(str(grace_hopper_path()), "--model", str(tiny_face_model), "--format", "json")
    assert code == 0 and json.loads(out) and "images" in err and "images" not in out
