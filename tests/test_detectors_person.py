"""Person detectors ("nanodet", "hog") and body mode with them: people found in a street scene, a ready pedestrian
crop kept whole, person framing, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import agegender
from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.detectors import (
    DEFAULT_PERSON_DETECTOR,
    DETECTORS,
    HogPersonDetector,
    NanoDetPersonDetector,
    build_detector,
    default_person_detector,
)
from agegender.inference.detectors.base import PERSON_MARGIN, frame_person, iou_one_to_many

PERSON_DETECTORS = ("nanodet", "hog")
#: PETA images pasted into the test scene, with the height they get there (px) and their left edge
PASTED = (("3DPeS__1_12_FRAME_48_RGB.png", 300, 80), ("3DPeS__132_733_FRAME_58_RGB.png", 220, 420),
          ("3DPeS__17_113_FRAME_108_RGB.png", 260, 700), ("CUHK__0943.png", 180, 1050))


def street(seed: int = 0) -> np.ndarray:
    """A 1280×720 street without people: sky gradient, blocks with window grids, a noisy road."""
    rng = np.random.default_rng(seed)
    img = np.zeros((720, 1280, 3), dtype=np.float32)
    img[:] = np.linspace(120, 230, 720, dtype=np.float32)[:, None, None]
    for x in range(0, 1280, 200):
        h = int(rng.uniform(150, 380))
        img[400 - h : 400, x + 10 : x + 190] = rng.uniform(40, 220, 3)
        img[400 - h + 10 : 390 : 30, x + 20 : x + 180] = rng.uniform(0, 255, 3)
    img[400:] = rng.uniform(60, 140)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene(peta_dir: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The street with four PETA pedestrians pasted in, and their boxes."""
    img = street()
    boxes = []
    for name, height, x in PASTED:
        crop = load_image(peta_dir / "images" / name)
        width = round(height * crop.shape[1] / crop.shape[0])
        y = 700 - height
        img[y : y + height, x : x + width] = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
        boxes.append((x, y, x + width, y + height))
    return img, boxes


def found(boxes: list, truth: list, iou: float = 0.4) -> int:
    """How many ``truth`` boxes a box of ``boxes`` overlaps with IoU ≥ ``iou``."""
    if not boxes:
        return 0
    arr = np.asarray(boxes, dtype=np.float64)
    return sum(bool((iou_one_to_many(np.asarray(t, dtype=np.float64), arr) >= iou).any()) for t in truth)


def test_person_detectors_are_registered() -> None:
    assert DEFAULT_PERSON_DETECTOR == "nanodet" == default_person_detector()
    for name in PERSON_DETECTORS:
        assert DETECTORS.meta(name)["kind"] == "person"
        assert build_detector(name).kind == "person"
    assert isinstance(build_detector("nanodet"), NanoDetPersonDetector)
    assert isinstance(build_detector("hog"), HogPersonDetector)
    assert build_detector("haar").kind == "face"


def test_hog_is_the_fallback_without_the_bundled_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agegender.inference.detectors import nanodet

    monkeypatch.setattr(nanodet, "weights_path", lambda: tmp_path / "absent.onnx")
    assert default_person_detector() == "hog"
    with pytest.raises(AgeGenderError, match="hog") as e:
        build_detector("nanodet")
    assert e.value.code == "missing_file"


@pytest.mark.parametrize("name", PERSON_DETECTORS)
def test_nobody_in_generated_images(name: str) -> None:
    det = build_detector(name)
    rng = np.random.default_rng(0)
    for img in (np.full((480, 640, 3), 128, np.uint8), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                street(1), street(2)):
        assert det.detect(img) == []


def test_nanodet_finds_grace_hopper(grace_hopper: Path) -> None:
    people = build_detector("nanodet").detect(load_image(grace_hopper))
    assert len(people) == 1
    x1, y1, x2, y2 = people[0].box
    assert (x2 - x1) * (y2 - y1) > 0.8 * 512 * 600 and 0.5 <= people[0].score <= 1.0


@pytest.mark.parametrize("name", PERSON_DETECTORS)
def test_person_detectors_find_the_pedestrians(name: str, scene) -> None:
    img, truth = scene
    people = build_detector(name).detect(img)
    # HOG is the weaker fallback (about 90 % recall on the street scenes of docs/performance.md): 3 of the 4
    assert found([p.box for p in people], truth) >= (len(truth) if name == "nanodet" else len(truth) - 1)
    assert len(people) <= len(truth) + 1
    assert all(0.0 <= p.score <= 1.0 for p in people)


def test_nanodet_tiles_find_the_same_people(scene) -> None:
    img, truth = scene
    people = build_detector("nanodet", tiles="auto").detect(img)
    assert found([p.box for p in people], truth) == len(truth)


def test_body_mode_returns_each_person(scene) -> None:
    img, truth = scene
    body = agegender.load("default-body")
    assert body.detector_name == "nanodet"
    people = body.predict(img)
    assert found([p.box for p in people], truth) == len(truth)
    assert all(p.crop == "detected" and p.gender in ("male", "female") for p in people)
    # the crops are cut at the model's aspect, not squared (192×96 for the bundled model)
    _, _, crops = body.detect_crops(img)
    assert all(c.shape[:2] == body.pre.resize_hw for c in crops)
    # ready crops only: the detector "none" takes the whole scene as one person, as before
    whole = agegender.load("default-body", detector="none").predict(img)
    assert len(whole) == 1 and whole[0].crop == "whole_image" and whole[0].box == (0.0, 0.0, 1280.0, 720.0)


@pytest.mark.parametrize("name", PERSON_DETECTORS)
def test_a_ready_pedestrian_crop_stays_one_person(name: str, peta_dir: Path) -> None:
    body = agegender.load("default-body", detector=name)
    for file, _, _ in PASTED:
        rgb = load_image(peta_dir / "images" / file)
        for img in (rgb, cv2.resize(rgb, (48, 128), interpolation=cv2.INTER_AREA)):  # PETA's smallest size too
            people = body.predict(img)
            assert len(people) == 1 and people[0].crop == "whole_image", (file, img.shape, people)
            assert people[0].box == (0.0, 0.0, float(img.shape[1]), float(img.shape[0]))


def test_a_tall_image_without_anyone_is_taken_as_a_crop_only_when_small() -> None:
    # as with --detector none: a small tall image in which no whole person is found is a ready crop...
    body = agegender.load("default-body")
    small = np.full((160, 64, 3), 90, np.uint8)
    assert [p.crop for p in body.predict(small)] == ["whole_image"]
    # ...a landscape photo with nobody is not, nor a large tall one
    for img in (street(3), cv2.resize(street(3)[:, :400], (700, 1300))):
        res = body.predict_image(img)
        assert res.people == [] and res.status == "no_face" and "no person found" in res.message


def test_frame_person() -> None:
    # a tall box keeps its shape (grown by the margin only); a wide one is grown in height to the model's aspect
    x1, y1, x2, y2 = frame_person((100, 100, 140, 220), PERSON_MARGIN, (192, 96))
    assert (x2 - x1, y2 - y1) == pytest.approx((40 * 1.1, 120 * 1.05))
    x1, y1, x2, y2 = frame_person((0, 0, 100, 100), 0.0, (192, 96))
    assert (x1, y1, x2, y2) == pytest.approx((0, -50, 100, 150))
    with pytest.raises(AgeGenderError):
        frame_person((10, 10, 10, 50))


@pytest.mark.parametrize("name", PERSON_DETECTORS)
def test_bad_input_is_a_clear_error(name: str) -> None:
    det = build_detector(name)
    for bad in (np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.float32), "photo.jpg",
                np.zeros((0, 10, 3), np.uint8)):
        with pytest.raises(AgeGenderError) as e:
            det.detect(bad)  # type: ignore[arg-type]
        assert e.value.code == "unsupported" and "\n" not in str(e.value)


def test_bad_options_are_clear_errors() -> None:
    for name, opts in (("nanodet", {"tiles": "many"}), ("hog", {"scale": 1.0}), ("hog", {"min_face_size": -1}),
                       ("nanodet", {"no_such_option": 1})):
        with pytest.raises(AgeGenderError) as e:
            build_detector(name, **opts)
        assert e.value.code == "bad_config", (name, opts)


def test_body_mode_bad_input_and_options(tmp_path: Path, scene) -> None:
    from typer.testing import CliRunner

    from agegender.cli_inference import app

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    body = agegender.load("default-body")
    with pytest.raises(AgeGenderError):
        body.predict(bad)
    assert body.predict_image(bad).status not in ("ok", "error")
    cv2.imwrite(str(tmp_path / "scene.png"), cv2.cvtColor(scene[0], cv2.COLOR_RGB2BGR))
    for args, says in ((["--detector", "nanodet", "--detector-option", "tiles=many"], "tiles"),
                       (["--detector", "no_such_detector"], "no_such_detector")):
        r = CliRunner().invoke(app, ["predict", str(tmp_path / "scene.png"), "--model", "default-body", *args])
        assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
