"""The YuNet detector. With a real YuNet file (``$AGEGENDER_YUNET_MODEL``; agegender does not bundle one): a real
face, a small face in a large photo, nothing on blank or noise images, crops framed like BlazeFace's, large faces.
Always, with a YuNet-format file without learnt weights: decoding, search scales, and one-line errors for a
missing, broken or foreign model file or bad options."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.detectors import DETECTORS, YuNetDetector, build_detector
from agegender.inference.detectors.base import detector_framing, expand_box, iou_one_to_many
from agegender.inference.detectors.yunet import ENV_MODEL


@pytest.fixture(scope="module")
def hopper(grace_hopper: Path) -> np.ndarray:
    return load_image(grace_hopper)


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    if not os.environ.get(ENV_MODEL):
        pytest.skip(f"no YuNet model file: set {ENV_MODEL} to face_detection_yunet_2023mar.onnx or a dynamic export")
    return build_detector("yunet")  # type: ignore[return-value]


def framed(name: str, box: tuple[float, float, float, float]) -> np.ndarray:
    """The square crop the predictor cuts for a detector's box (its registered framing, as the Cropper)."""
    margin, shift = detector_framing(name)
    x1, y1, x2, y2 = box
    dy = shift * (y2 - y1)
    return np.array(expand_box((x1, y1 + dy, x2, y2 + dy), margin))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_one_to_many(a, b[None])[0])


def scene(face: np.ndarray, side: int, place: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 8)
    x, y = place
    img[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return img


def test_registered_with_a_framing() -> None:
    assert "yunet" in DETECTORS.names() and detector_framing("yunet") != (0.0, 0.0)


def test_finds_grace_hopper_with_landmarks(hopper: np.ndarray, yunet: YuNetDetector) -> None:
    faces = yunet.detect(hopper)
    assert len(faces) == 1
    face = faces[0]
    assert 230 <= face.center[0] <= 310 and 180 <= face.center[1] <= 260 and 150 <= face.width <= 300
    assert 0.6 <= face.score <= 1.0
    assert face.landmarks is not None and len(face.landmarks) == 5
    (rx, ry), (lx, ly) = face.landmarks[:2]  # right eye (image left), left eye
    assert rx < lx and abs(ry - ly) < 20 and face.box[1] < ry < face.center[1]


def test_framed_like_blazeface(hopper: np.ndarray, yunet: YuNetDetector) -> None:
    blaze = build_detector("blazeface")
    face = hopper[90:370, 125:405]
    for img in (hopper, scene(face, 120, (300, 200)), scene(face, 200, (800, 300))):
        b, y = blaze.detect(img)[0], yunet.detect(img)[0]
        assert iou(framed("blazeface", b.box), framed("yunet", y.box)) > 0.8


@pytest.mark.parametrize("place", [(100, 100), (1000, 560)])
def test_small_face_in_a_large_photo(hopper: np.ndarray, yunet: YuNetDetector, place: tuple[int, int]) -> None:
    img = scene(hopper[90:370, 125:405], 48, place)  # the face itself ~30 px wide in 1280×720
    faces = yunet.detect(img)
    assert len(faces) == 1
    x, y = place
    assert x <= faces[0].center[0] <= x + 48 and y <= faces[0].center[1] <= y + 48
    assert 20 <= faces[0].width <= 60


def test_large_face_found_by_the_coarse_pass(hopper: np.ndarray, yunet: YuNetDetector) -> None:
    big = cv2.resize(hopper[90:370, 125:405], (1280, 1280))  # the face ~800 px wide, ~1200 px at 1.5×
    assert len(yunet.scales(1280, 1280)) == 2
    faces = yunet.detect(big)
    assert len(faces) == 1 and 600 <= faces[0].width <= 1000  # no second box on a part of the face
    main_only = build_detector("yunet", coarse_side=None)
    assert all(f.width < 600 for f in main_only.detect(big))


def test_nothing_on_blank_or_noise(yunet: YuNetDetector) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    assert yunet.detect(noise) == []
    assert yunet.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert yunet.detect(np.zeros((7, 5, 3), np.uint8)) == []  # smaller than a stride: still fine


def test_without_a_model_file_the_error_says_where_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MODEL, raising=False)
    with pytest.raises(AgeGenderError) as info:
        build_detector("yunet")
    assert info.value.code == "missing_file" and "model_path=FILE" in str(info.value) and "\n" not in str(info.value)


def test_decodes_yunet_outputs(fake_yunet: Path) -> None:
    """The fake scores the stride-32 cells a white square fills: one face there, box 2 cells wide."""
    img = np.zeros((320, 320, 3), np.uint8)
    img[96:128, 160:192] = 255  # exactly one 32-px cell
    faces = build_detector("yunet", model_path=fake_yunet, upscale=1.0, coarse_side=None, min_face_size=1).detect(img)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert abs((x1 + x2) / 2 - 176) < 1 and abs((y1 + y2) / 2 - 112) < 1 and abs((x2 - x1) - 64) < 1


def test_scales(fake_yunet: Path) -> None:
    det = build_detector("yunet", model_path=fake_yunet)
    assert det.scales(640, 480) == [1.5, 0.5]
    assert det.scales(1280, 720) == [1.5, 0.25]
    assert det.scales(3840, 2160) == [0.5, 320 / 3840]  # main pass capped at max_side 1920
    assert det.scales(200, 150) == [1.5]  # small: no coarse pass
    assert build_detector("yunet", model_path=fake_yunet, upscale=1.0, coarse_side=None).scales(1280, 720) == [1.0]


def test_broken_model_file_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "yunet.onnx"
    junk.write_bytes(b"\x08\x07not a model")
    with pytest.raises(AgeGenderError) as info:
        build_detector("yunet", model_path=junk)
    assert info.value.code == "bad_model" and "\n" not in str(info.value) and str(junk) in str(info.value)
    with pytest.raises(AgeGenderError) as info:
        build_detector("yunet", model_path=tmp_path / "missing.onnx")
    assert info.value.code == "missing_file"


def test_a_model_that_is_not_yunet_is_refused(tmp_path: Path) -> None:
    from agegender.inference.detectors.blazeface import weights_path

    with pytest.raises(AgeGenderError) as info:
        build_detector("yunet", model_path=weights_path())
    assert info.value.code == "bad_model" and "not a YuNet face detector" in str(info.value)


@pytest.mark.parametrize("bad", [{"upscale": 0}, {"max_side": 8}, {"coarse_side": 0}, {"max_face_share": 0}, {"upscale_factor": 2}])
def test_bad_options(bad: dict, fake_yunet: Path) -> None:
    with pytest.raises(AgeGenderError) as info:
        build_detector("yunet", model_path=fake_yunet, **bad)
    assert info.value.code == "bad_config"
