"""The bundled CenterFace detector: faces from tight to small, key points, decoding, options and errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.detectors import DETECTORS, build_detector
from agegender.inference.detectors.base import detector_framing
from agegender.inference.detectors.centerface import decode
from helpers_images import face_scene


@pytest.fixture(scope="module")
def hopper(grace_hopper: Path) -> np.ndarray:
    return load_image(grace_hopper)


@pytest.fixture(scope="module")
def detector():
    return build_detector("centerface")


def test_finds_grace_hopper_with_five_key_points(detector, hopper: np.ndarray) -> None:
    faces = detector.detect(hopper)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    # her face: Haar's box is (149, 100, 380, 331) in the 512×600 photo
    assert 140 < x1 < 200 and 100 < y1 < 160 and 330 < x2 < 390 and 300 < y2 < 360
    assert faces[0].score > 0.5 and len(faces[0].landmarks) == 5
    (rex, rey), (lex, ley), (nx, ny), _, _ = faces[0].landmarks
    assert rex < nx < lex and rey < ny and ley < ny  # eyes either side of the nose, above it
    assert x1 < rex < x2 and y1 < ny < y2


def test_small_faces_in_a_large_photo_one_box_each(detector, hopper: np.ndarray) -> None:
    face = hopper[90:370, 125:405]
    places = [(100, 100), (600, 300), (1100, 560)]
    for side in (48, 80, 160):  # the face itself about 60 % of the side: ~29 to ~100 px
        faces = detector.detect(face_scene(face, side, places))
        assert len(faces) == 3, (side, [f.box for f in faces])
        for (x, y), f in zip(sorted(places), sorted(faces, key=lambda f: f.center[0])):
            assert x <= f.center[0] <= x + side and y <= f.center[1] <= y + side


def test_large_photos_are_searched_shrunk_and_boxes_map_back(hopper: np.ndarray) -> None:
    big = cv2.resize(hopper, (1024, 1200))  # longer side 1200
    small_det = build_detector("centerface", max_side=600)
    assert small_det.scale(1024, 1200) == pytest.approx(0.5)
    assert build_detector("centerface").scale(1024, 1200) == 1.0
    a = small_det.detect(big)[0].box
    b = build_detector("centerface").detect(hopper)[0].box
    assert np.allclose(np.array(a) / 2, b, atol=12)  # the same face, in the big image's pixels


def test_nothing_on_blank_or_noise(detector) -> None:
    assert detector.detect(np.zeros((480, 640, 3), dtype=np.uint8)) == []
    noise = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_odd_sizes_are_padded(detector, hopper: np.ndarray) -> None:
    odd = hopper[:517, :333]  # not multiples of 32
    faces = detector.detect(odd)
    assert len(faces) == 1 and faces[0].box[2] <= 340


def test_options_are_checked() -> None:
    for opts in ({"max_side": 16}, {"upscale": 0.5}, {"threads": 0}, {"min_face_size": -1}):
        with pytest.raises(AgeGenderError) as e:
            build_detector("centerface", **opts)
        assert e.value.code == "bad_config"


def test_decode_follows_the_authors_formulas() -> None:
    heat = np.zeros((1, 1, 8, 10), dtype=np.float32)
    heat[0, 0, 3, 5] = 0.9
    heat[0, 0, 6, 1] = 0.1  # under the threshold
    scale = np.zeros((1, 2, 8, 10), dtype=np.float32)
    scale[0, :, 3, 5] = [np.log(10.0), np.log(5.0)]  # height 40, width 20 px
    offset = np.zeros((1, 2, 8, 10), dtype=np.float32)
    offset[0, :, 3, 5] = [0.25, 0.5]  # y, x
    lm = np.zeros((1, 10, 8, 10), dtype=np.float32)
    lm[0, 0:2, 3, 5] = [0.5, 0.25]  # first point: y at half the height, x at a quarter of the width
    boxes, points, scores = decode(heat, scale, offset, lm, threshold=0.5)
    cx, cy = (5 + 0.5 + 0.5) * 4, (3 + 0.25 + 0.5) * 4
    assert np.allclose(boxes, [[cx - 10, cy - 20, cx + 10, cy + 20]])
    assert np.allclose(points[0, 0], [cx - 10 + 5, cy - 20 + 20]) and np.allclose(scores, [0.9])
    assert decode(heat, scale, offset, lm, threshold=0.95)[0].shape == (0, 4)


def test_registered_with_its_framing() -> None:
    assert "centerface" in DETECTORS.names()
    margin, shift = detector_framing("centerface")
    assert margin < 0 < shift  # its box is taller than blazeface's and sits higher


def test_missing_weights_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import agegender.inference.detectors.centerface as cf

    monkeypatch.setattr(cf, "weights_path", lambda: tmp_path / "gone.onnx")
    with pytest.raises(AgeGenderError) as e:
        build_detector("centerface")
    assert e.value.code == "missing_file" and "reinstall" in str(e.value)
