"""Rolled faces are turned upright by their eye landmarks before they are cut (the cropper's ``align`` option)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data.images import load_image
from agegender.data.preprocess import Preprocessing
from agegender.errors import AgeGenderError
from agegender.inference.cropper import ALIGN_MIN_ROLL, Cropper, align_setting
from agegender.inference.detectors.base import crop, eye_roll

PRE = Preprocessing((96, 96), (96, 96))


def turned(rgb: np.ndarray, degrees: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """``rgb`` turned clockwise on screen by ``degrees`` about ``centre`` (default: the middle), same size."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D(centre or (w / 2.0, h / 2.0), -degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over the middle half of two equal-size crops (corners differ by padding)."""
    h, w = a.shape[:2]
    sl = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
    return float(np.abs(a[sl].astype(float) - b[sl].astype(float)).mean())


@pytest.fixture(scope="module")
def hopper(grace_hopper: Path) -> np.ndarray:
    return load_image(grace_hopper)


def test_eye_roll_angle_sign_and_missing_points() -> None:
    assert eye_roll(((10.0, 20.0), (30.0, 20.0))) == 0.0
    assert eye_roll(((10.0, 20.0), (30.0, 40.0), (0.0, 0.0))) == pytest.approx(45.0)  # image-right eye lower
    assert eye_roll(((10.0, 40.0), (30.0, 40.0 - 20.0 * np.tan(np.radians(30))))) == pytest.approx(-30.0)
    assert eye_roll(None) is None and eye_roll(((1.0, 2.0),)) is None
    assert eye_roll(((5.0, 5.0), (5.0, 5.0))) is None and eye_roll(((0.0, 0.0), (float("nan"), 1.0))) is None


def test_crop_roll_undoes_a_turn() -> None:
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (25, 30, 3), dtype=np.uint8), (300, 250), interpolation=cv2.INTER_CUBIC)
    box = (100.0, 80.0, 180.0, 160.0)
    plain = crop(image, box, margin=0.2)
    tilted = turned(image, 25.0, centre=(140.0, 120.0))  # about the box's centre
    back = crop(tilted, box, margin=0.2, roll=25.0)
    assert back.shape == plain.shape == (112, 112, 3) and back.dtype == np.uint8
    as_is = crop(tilted, box, margin=0.2)
    assert mad(back, plain) < 6 and mad(as_is, plain) > 4 * mad(back, plain)
    # a region reaching past the border is padded as `pad` says, turned or not
    edge = crop(image, (-20.0, -20.0, 40.0, 40.0), roll=10.0)
    assert edge.shape == (60, 60, 3) and (edge[0, 0] == 0).all()
    assert (crop(image, (-20.0, -20.0, 40.0, 40.0), roll=10.0, pad="edge")[0, 0] != 0).any()


def roll_in(crop_rgb: np.ndarray, detector: str) -> float:
    """The roll the detector measures on a crop, found on a copy with a border (a face filling its image may
    leave the detector no window)."""
    framed = cv2.copyMakeBorder(crop_rgb, 96, 96, 96, 96, cv2.BORDER_REPLICATE)
    return eye_roll(Cropper(detector, PRE).detect(framed)[0].landmarks)


@pytest.mark.parametrize("detector", ["centerface", "blazeface"])
@pytest.mark.parametrize("degrees", [25.0, -35.0])
def test_cropper_turns_a_rolled_face_upright(hopper, detector, degrees) -> None:
    pre = Preprocessing((192, 192), (192, 192))
    w = hopper.shape[1]
    canvas = cv2.copyMakeBorder(hopper, w // 2, w // 2, w // 2, w // 2, cv2.BORDER_REPLICATE)  # room to turn
    tilted = turned(canvas, degrees)
    (det,) = Cropper(detector, pre).detect(tilted)[:1]
    assert eye_roll(det.landmarks) == pytest.approx(degrees, abs=8)
    aligned = Cropper(detector, pre)(tilted)[2][0]  # on by default
    as_is = Cropper(detector, pre, {"align": False})(tilted)[2][0]
    assert aligned.shape == as_is.shape == (192, 192, 3)
    assert abs(roll_in(aligned, detector)) < 10  # the landmarks scatter by a few degrees (level photo: -5 with CenterFace)
    assert roll_in(as_is, detector) == pytest.approx(degrees, abs=10)


def test_level_faces_are_cut_as_before_below_the_smallest_roll(hopper) -> None:
    (det,) = Cropper("blazeface", PRE).detect(hopper)[:1]
    assert abs(eye_roll(det.landmarks)) < ALIGN_MIN_ROLL  # Grace Hopper's head is near level
    off = Cropper("blazeface", PRE, {"align": "off"})(hopper)[2][0]
    assert np.array_equal(Cropper("blazeface", PRE)(hopper)[2][0], off)
    assert not np.array_equal(Cropper("blazeface", PRE, {"align": 0})(hopper)[2][0], off)


def test_detectors_without_landmarks_cut_as_before(hopper) -> None:
    a, b = Cropper("haar", PRE)(hopper)[2], Cropper("haar", PRE, {"align": False})(hopper)[2]
    assert len(a) == len(b) >= 1 and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("value, want", [(None, ALIGN_MIN_ROLL), (True, ALIGN_MIN_ROLL), ("on", ALIGN_MIN_ROLL),
                                         (False, None), ("off", None), ("no", None), (0, 0.0), ("12.5", 12.5)])
def test_align_setting_values(value, want) -> None:
    assert align_setting(value) == want


@pytest.mark.parametrize("bad", ["sideways", -1, 91, float("nan"), [5]])
def test_bad_align_setting_is_a_clear_error(bad) -> None:
    with pytest.raises(AgeGenderError, match="align must be on, off or the smallest roll") as e:
        Cropper("centerface", PRE, {"align": bad})
    assert e.value.code == "bad_option"


def test_predictor_reports_it_and_the_cli_takes_it(grace_hopper: Path) -> None:
    from typer.testing import CliRunner

    from agegender import load
    from agegender.cli import app

    assert load("default").info()["detector"]["crop_align"] == ALIGN_MIN_ROLL
    assert load("default", detector_options={"align": False}).info()["detector"]["crop_align"] is None
    r = CliRunner().invoke(app, ["predict", str(grace_hopper), "--format", "jsonl",
                                 "--detector-option", "align=off"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["predict", str(grace_hopper), "--detector-option", "align=sideways"])
    assert r.exit_code == 2 and "align must be" in r.output and "Traceback" not in r.output


def test_crop_cache_records_the_setting(grace_source: Path, tmp_path: Path) -> None:
    import csv

    from agegender.workflows.face_crops import build_crop_cache

    root = grace_source
    build_crop_cache("csv", root, tmp_path / "on", progress=False)
    assert json.loads((tmp_path / "on" / "manifest.json").read_text())["align"] == ALIGN_MIN_ROLL
    build_crop_cache("csv", root, tmp_path / "off", progress=False, detector_options={"align": False})
    assert json.loads((tmp_path / "off" / "manifest.json").read_text())["align"] is None
    with pytest.raises(AgeGenderError, match="align"):  # a cache is resumed only with its own settings
        build_crop_cache("csv", root, tmp_path / "on", progress=False, detector_options={"align": 0})
    assert len(list(csv.DictReader((tmp_path / "off" / "labels.csv").read_text().splitlines()))) == 1
    # a cache written before the setting existed was cut as faces lie: it resumes with align off, not on
    manifest = tmp_path / "off" / "manifest.json"
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "align"}))
    assert build_crop_cache("csv", root, tmp_path / "off", progress=False,
                            detector_options={"align": False})["resumed"] == 1
    with pytest.raises(AgeGenderError, match="align"):
        build_crop_cache("csv", root, tmp_path / "off", progress=False)
