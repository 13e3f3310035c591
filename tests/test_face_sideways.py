"""Faces of a photo on its side are looked for again in the photo turned a quarter (the cropper's ``sideways``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data.images import load_image
from agegender.data.preprocess import Preprocessing
from agegender.errors import AgeGenderError
from agegender.inference.cropper import (
    Cropper,
    blend_rolls,
    box_from_quarter_turn,
    on_off,
    quarter_turn,
    sideways_turns,
)
from agegender.inference.detectors.base import Detection, Detector, eye_roll, iou_one_to_many

PRE = Preprocessing((192, 192), (192, 192))


@pytest.fixture(scope="module")
def hopper(grace_hopper: Path) -> np.ndarray:
    return load_image(grace_hopper)


def roll_in(crop_rgb: np.ndarray) -> float:
    """The roll CenterFace measures on a crop, on a copy with a border (room for the detector's window)."""
    framed = cv2.copyMakeBorder(crop_rgb, 96, 96, 96, 96, cv2.BORDER_REPLICATE)
    return eye_roll(Cropper("centerface", PRE).detect(framed)[0].landmarks)


@pytest.mark.parametrize("k", [1, -1, 2])
def test_quarter_turn_boxes_map_back(k) -> None:
    rgb = np.zeros((60, 100, 3), np.uint8)
    rgb[10:20, 70:90] = 255  # a bright box at x 70-90, y 10-20
    turned = quarter_turn(rgb, k)
    assert turned.shape == ((60, 100, 3) if k == 2 else (100, 60, 3))
    ys, xs = np.nonzero(turned[:, :, 0])
    found = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    assert box_from_quarter_turn(found, k, rgb.shape[:2]) == pytest.approx((70.0, 10.0, 90.0, 20.0))


@pytest.mark.parametrize("k", [1, -1])
def test_a_photo_on_its_side_is_cut_upright(hopper, k) -> None:
    side = quarter_turn(hopper, -k)  # k=1: the photo lies turned clockwise, the face rolled clockwise by 90°
    on = Cropper("centerface", PRE)
    off = Cropper("centerface", PRE, {"sideways": "off"})
    (first,) = on.detect(side)[:1]
    assert abs(eye_roll(first.landmarks)) >= 30  # rolled, but CenterFace understates it
    boxes, _, crops = on(side)
    assert len(crops) == 1 and abs(roll_in(crops[0])) < 10
    assert abs(roll_in(off(side)[2][0])) > 20  # turned only as far as the landmarks say
    # the box is the face's in the photo as given: where the upright photo's face box lands when turned
    (level,) = on.detect(hopper)[:1]
    want = box_from_quarter_turn(level.box, k, side.shape[:2])
    assert float(iou_one_to_many(np.array(want), np.array([boxes[0]]))[0]) > 0.6


def test_level_and_slightly_rolled_photos_cost_no_second_look(hopper, monkeypatch) -> None:
    cropper = Cropper("centerface", PRE)
    calls = []
    detect = cropper.detect
    monkeypatch.setattr(cropper, "detect", lambda rgb: calls.append(rgb.shape) or detect(rgb))
    cropper(hopper)
    canvas = cv2.copyMakeBorder(hopper, 200, 200, 200, 200, cv2.BORDER_REPLICATE)
    h, w = canvas.shape[:2]
    cropper(cv2.warpAffine(canvas, cv2.getRotationMatrix2D((w / 2, h / 2), -15, 1.0), (w, h)))
    assert len(calls) == 2  # one detector run per photo
    calls.clear()
    cropper(quarter_turn(hopper, 1))
    assert len(calls) == 2  # the photo as given, and one quarter turn


def test_same_face_is_not_found_twice(hopper) -> None:
    side = quarter_turn(hopper, 1)
    wide = np.concatenate([side, quarter_turn(hopper, -1)], axis=1)  # one face rolled each way
    boxes, _, crops = Cropper("centerface", PRE)(wide)
    assert len(boxes) == 2 and all(abs(roll_in(c)) < 10 for c in crops)


def face(box, roll: float, nose: bool = True) -> Detection:
    """A detection whose eyes are rolled by ``roll`` degrees about the box's centre, the nose below them."""
    x1, y1, x2, y2 = box
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, np.radians(roll)
    ex, ey = 15 * np.cos(r), 15 * np.sin(r)
    pts = ((cx - ex, cy - ey), (cx + ex, cy + ey), (cx - 20 * np.sin(r), cy + 20 * np.cos(r)))
    return Detection(tuple(map(float, box)), 0.9, pts if nose else pts[:2])


@pytest.mark.parametrize("det, want", [
    (face((0, 0, 80, 100), 3.0), ()),  # level
    (face((0, 0, 80, 100), 40.0), (1,)),  # rolled clockwise: look in the photo turned anticlockwise
    (face((0, 0, 80, 100), -40.0), (-1,)),
    (face((0, 0, 130, 100), 8.0), (-1, 1)),  # a wide box read level: it may lie either way
    (face((0, 0, 130, 100), -50.0), (-1,)),
    (Detection((0.0, 0.0, 130.0, 100.0), 0.9), ()),  # no landmarks (Haar, dlib)
])
def test_where_to_look_again(det, want) -> None:
    assert sideways_turns(det) == want


def test_nose_lean_catches_eyes_read_level() -> None:
    det = face((0, 0, 80, 100), 70.0)
    lm = det.landmarks
    # the eyes read 20°, the nose leans 70°: look in the turn the nose says
    eyes = ((lm[0][0], lm[0][1]), (lm[0][0] + 30 * np.cos(np.radians(20)), lm[0][1] + 30 * np.sin(np.radians(20))))
    assert sideways_turns(Detection(det.box, 0.9, eyes + (lm[2],))) == (1,)


def test_blending_the_views() -> None:
    assert blend_rolls([(0, 40.0, True), (1, -40.0, True)]) == (0, pytest.approx(45.0))  # understated both ways
    assert blend_rolls([(0, 8.6, False), (1, -1.3, True)]) == (1, pytest.approx(88.7))  # the level view alone
    k, total = blend_rolls([(0, 60.0, True), (1, -20.0, True)])
    assert k == 1 and 60.0 < total < 70.0  # leans to the more level view
    assert blend_rolls([(0, 10.0, True), (-1, 5.0, True)]) == (-1, pytest.approx(-85.0))  # disagreeing: not averaged
    assert blend_rolls([(0, 170.0, True), (1, -120.0, True)]) is None  # upside down in both: nothing to pick


class Staged(Detector):
    """Finds what a scene shows in each orientation: as given (wide), a face rolled 50° and nothing else; turned
    anticlockwise (tall), that face level and a second face the photo as given hid."""

    name = "staged"
    reads_large_rolls = True

    def __init__(self) -> None:
        super().__init__(min_face_size=0)

    def _detect(self, image):
        h, w = image.shape[:2]
        if w > h:  # 300 x 200 as given
            return [face((200, 50, 260, 120), 50.0)]
        # turned anticlockwise (200 x 300): (x, y) -> (y, 300 - x)
        return [face((45, 35, 125, 105), -40.0), face((120, 200, 180, 270), 2.0)]


def test_turned_view_replaces_and_adds() -> None:
    rgb = np.zeros((200, 300, 3), np.uint8)
    boxes, _, crops = Cropper(Staged(), PRE)(rgb)
    assert len(boxes) == len(crops) == 2
    assert boxes[0] == pytest.approx(box_from_quarter_turn((45, 35, 125, 105), 1, (200, 300)))
    assert boxes[1] == pytest.approx((30.0, 120.0, 100.0, 180.0))  # the face found only turned, in rgb's frame
    off_boxes = Cropper(Staged(), PRE, {"sideways": False})(rgb)[0]
    assert off_boxes == [(200.0, 50.0, 260.0, 120.0)]


@pytest.mark.parametrize("value, want", [(None, True), (True, True), ("on", True), ("yes", True),
                                         (False, False), ("off", False), ("no", False)])
def test_switch_values(value, want) -> None:
    assert on_off("sideways", value) is want


@pytest.mark.parametrize("bad", ["sometimes", 2, [1]])
def test_bad_switch_is_a_clear_error(bad) -> None:
    with pytest.raises(AgeGenderError, match="sideways must be on or off") as e:
        Cropper("centerface", PRE, {"sideways": bad})
    assert e.value.code == "bad_option"


def test_it_follows_align_and_is_reported(grace_hopper: Path) -> None:
    from typer.testing import CliRunner

    from agegender import load
    from agegender.cli import app

    assert load("default").info()["detector"]["crop_sideways"] is True
    assert load("default", detector_options={"sideways": False}).info()["detector"]["crop_sideways"] is False
    assert load("default", detector_options={"align": False}).info()["detector"]["crop_sideways"] is False
    # on by default only where the landmarks read large rolls: BlazeFace's stop near 35°, Haar gives none
    assert not Cropper("blazeface", PRE).sideways and Cropper("blazeface", PRE, {"sideways": "on"}).sideways
    assert not Cropper("haar", PRE).sideways
    r = CliRunner().invoke(app, ["predict", str(grace_hopper), "--detector-option", "sideways=maybe"])
    assert r.exit_code == 2 and "sideways must be on or off" in r.output and "Traceback" not in r.output


def test_crop_cache_records_it(grace_source: Path, tmp_path: Path) -> None:
    from agegender.workflows.face_crops import build_crop_cache

    root = grace_source
    build_crop_cache("csv", root, tmp_path / "on", progress=False)
    manifest = tmp_path / "on" / "manifest.json"
    assert json.loads(manifest.read_text())["sideways"] is True
    with pytest.raises(AgeGenderError, match="sideways"):
        build_crop_cache("csv", root, tmp_path / "on", progress=False, detector_options={"sideways": "off"})
    # a cache written before the setting existed resumes with it off
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "sideways"}))
    assert build_crop_cache("csv", root, tmp_path / "on", progress=False,
                            detector_options={"sideways": "off"})["resumed"] == 1


@pytest.mark.parametrize("k", [1, -1])
def test_a_ready_crop_on_its_side_is_not_taken_whole(hopper, k) -> None:
    cropper = Cropper("centerface", PRE)
    (det,) = cropper.detect(hopper)[:1]
    x1, y1, x2, y2 = (int(v) for v in det.box)
    chip = np.ascontiguousarray(hopper[max(0, y1 - 10):y2 + 10, max(0, x1 - 10):x2 + 10])
    assert cropper.find(chip, whole_image_crops=True)[3] == ["whole_image"]  # a ready face crop, upright
    _, _, crops, kinds = cropper.find(quarter_turn(chip, k), whole_image_crops=True)
    assert kinds == ["detected"] and abs(roll_in(crops[0])) < 10
    # with align off it is taken whole as before
    assert Cropper("centerface", PRE, {"align": False}).find(quarter_turn(chip, k), whole_image_crops=True)[3] \
        == ["whole_image"]


class Hidden(Detector):
    """Finds nothing in a photo as given (wide, 300 x 200); turned a quarter (tall), one face whose eye roll is
    ``tall_roll``, and upside down (wide again, marked by a bright top-left pixel) one level face. Counts its runs."""

    name = "hidden"

    def __init__(self, tall_roll: float | None = 3.0, upside_down: bool = True) -> None:
        super().__init__(min_face_size=0)
        self.tall_roll, self.upside_down, self.runs = tall_roll, upside_down, 0

    def _detect(self, image):
        self.runs += 1
        h, w = image.shape[:2]
        if h > w:
            return [] if self.tall_roll is None else [face((45, 35, 125, 105), self.tall_roll)]
        if self.upside_down and image[0, 0, 0] == 255:  # the marker, at the bottom right as given
            return [face((20, 30, 80, 100), 1.0)]
        return []


def photo() -> np.ndarray:
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[-1, -1] = 255  # upside down, at the top left
    return rgb


def test_search_turned_finds_faces_missed_as_the_photo_lies() -> None:
    rgb = photo()
    det = Hidden()
    assert Cropper(det, PRE)(rgb)[0] == [] and det.runs == 1  # off by default: one run, no face
    det = Hidden()
    boxes, scores, crops = Cropper(det, PRE, {"search_turned": "on"})(rgb)
    # the first turn searched is a quarter clockwise, and it shows the face level: the search stops there
    assert det.runs == 2 and len(boxes) == len(crops) == 1
    assert boxes[0] == pytest.approx(box_from_quarter_turn((45, 35, 125, 105), -1, (200, 300)))
    assert crops[0].shape == (192, 192, 3)


def test_search_turned_takes_only_level_faces_and_goes_on_to_upside_down() -> None:
    det = Hidden(tall_roll=40.0)  # rolled in both quarter turns: not taken; upside down it is level
    boxes, _, _ = Cropper(det, PRE, {"search_turned": True})(photo())
    assert det.runs == 4 and boxes == [pytest.approx((300 - 80, 200 - 100, 300 - 20, 200 - 30))]
    det = Hidden(tall_roll=None, upside_down=False)  # a photo with no face at all costs every turn, finds nothing
    assert Cropper(det, PRE, {"search_turned": True})(photo())[0] == [] and det.runs == 4


def test_search_turned_costs_nothing_where_a_face_is_found(hopper) -> None:
    runs = []
    cropper = Cropper("centerface", PRE, {"search_turned": "on"})
    detect = cropper.detect
    cropper.detect = lambda rgb: runs.append(rgb.shape) or detect(rgb)  # type: ignore[method-assign]
    assert len(cropper(hopper)[0]) == 1 and len(runs) == 1


def test_search_turned_is_an_option_reported_everywhere(grace_hopper: Path, grace_source: Path, tmp_path: Path
                                                        ) -> None:
    from typer.testing import CliRunner

    from agegender import load
    from agegender.cli import app
    from agegender.workflows.face_crops import build_crop_cache

    assert load("default").info()["detector"]["crop_search_turned"] is False
    assert load("default", detector_options={"search_turned": "on"}).info()["detector"]["crop_search_turned"] is True
    r = CliRunner().invoke(app, ["predict", str(grace_hopper), "--detector-option", "search_turned=often"])
    assert r.exit_code == 2 and "search_turned must be on or off" in r.output and "Traceback" not in r.output
    build_crop_cache("csv", grace_source, tmp_path / "c", progress=False, detector_options={"search_turned": "on"})
    manifest = tmp_path / "c" / "manifest.json"
    assert json.loads(manifest.read_text())["search_turned"] is True
    with pytest.raises(AgeGenderError, match="search_turned"):
        build_crop_cache("csv", grace_source, tmp_path / "c", progress=False)
    # a cache written before the setting existed resumes with it off
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items()
                                    if k != "search_turned"}))
    assert build_crop_cache("csv", grace_source, tmp_path / "c", progress=False)["resumed"] == 1
