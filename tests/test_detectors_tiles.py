"""BlazeFace's tiling (``tiles="auto"``, the default): small faces in large photos, one box per face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.detectors import build_detector
from helpers_images import face_scene


@pytest.fixture(scope="module")
def hopper_face(grace_hopper: Path) -> np.ndarray:
    # Grace Hopper's face with a margin (Haar's box is (149, 100, 380, 331) in the 512×600 photo)
    return load_image(grace_hopper)[90:370, 125:405]


@pytest.mark.parametrize("place", [(100, 100), (900, 500)])
def test_small_face_in_a_large_photo_is_found_by_default_not_without_tiles(
    hopper_face: np.ndarray, place: tuple[int, int]
) -> None:
    img = face_scene(hopper_face, 56, [place])  # the face itself ~40 px wide in 1280×720
    assert build_detector("blazeface", tiles="off").detect(img) == []
    faces = build_detector("blazeface").detect(img)
    assert len(faces) == 1
    cx, cy = faces[0].center
    assert place[0] <= cx <= place[0] + 56 and place[1] <= cy <= place[1] + 56
    assert 30 <= faces[0].width <= 60 and faces[0].landmarks is not None


def test_tiling_gives_one_box_per_face(hopper_face: np.ndarray) -> None:
    # faces across tile overlaps (tiles start at x = 0, 224, 448, ... and y = 0, 168, 336), small and large
    places = [(330, 200), (600, 40), (1000, 330)]
    for side in (48, 80, 130, 220):
        faces = build_detector("blazeface").detect(face_scene(hopper_face, side, places))
        assert len(faces) == 3, (side, [f.box for f in faces])
        for (x, y), f in zip(sorted(places), sorted(faces, key=lambda f: f.center[0])):
            assert x <= f.center[0] <= x + side and y <= f.center[1] <= y + side


def test_tiles_only_on_large_images_and_options_checked() -> None:
    det = build_detector("blazeface")
    assert det._tiles(480, 360) == [] and build_detector("blazeface", tiles="off")._tiles(1280, 720) == []
    tiles = det._tiles(1280, 720)
    assert len(tiles) == 15 and tiles[-1] == (896, 336, 384, 384)  # covers the image, overlapping
    assert len(det._tiles(640, 480)) == 4
    noise = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    assert det.detect(noise) == [] and det.detect(np.full((720, 1280, 3), 128, np.uint8)) == []
    for bad in ({"tiles": "on"}, {"tile_size": 100}, {"tile_overlap": 0.95}):
        with pytest.raises(AgeGenderError) as info:
            build_detector("blazeface", **bad)
        assert info.value.code == "bad_config"


def test_opencv_runtime_tiles_like_onnxruntime(hopper_face: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    img = face_scene(hopper_face, 64, [(100, 100), (900, 500)])
    a = build_detector("blazeface", runtime="opencv").detect(img)
    b = build_detector("blazeface", runtime="onnxruntime").detect(img)
    assert len(a) == len(b) == 2
    for x, y in zip(sorted(a, key=lambda d: d.box), sorted(b, key=lambda d: d.box)):
        assert np.allclose(x.box, y.box, atol=1.0)
