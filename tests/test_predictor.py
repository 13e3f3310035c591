"""The Python predictor API: results on grace_hopper (Haar) and real UTKFace crops, input types,
preprocessing from metadata, schemes, abstention, body models and every bad-input case."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import agegender
from agegender.errors import AgeGenderError
from agegender.inference.predictor import Predictor, age_interval, list_inputs, load
from agegender.inference.results import (
    STATUS_NO_FACE,
    STATUS_OK,
    UNCERTAIN,
    AgeEstimate,
    ImageResult,
    PersonResult,
)
from agegender.labels import ETHNICITIES, GENDERS, get_scheme
from helpers_models import (
    BAD_INPUT_CASES,
    grace_rgb,
    jpeg_bytes,
    write_bad_inputs,
    write_image_folder,
)

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model, tiny_regression_model


@pytest.fixture(scope="module")
def face(tiny_face_model: Path) -> Predictor:
    return load(tiny_face_model, threads=1)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


def check_person(p: PersonResult, scheme: str = "adience8", width: int = 10**6, height: int = 10**6) -> None:
    assert isinstance(p, PersonResult)
    assert len(p.box) == 4 and all(isinstance(v, float) for v in p.box)
    x1, y1, x2, y2 = p.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert isinstance(p.detector_score, float) and 0.0 <= p.detector_score <= 1.0
    assert isinstance(p.age, AgeEstimate)
    sch = get_scheme(scheme)
    assert p.age.scheme == scheme and list(p.age.group_probs) == list(sch.labels)
    assert p.age.group in sch.labels
    assert sum(p.age.group_probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert p.gender in GENDERS and set(p.gender_probs) == set(GENDERS)
    assert sum(p.gender_probs.values()) == pytest.approx(1.0, abs=1e-3)
    json.dumps(p.to_dict())


def test_grace_hopper_one_face(face: Predictor, grace_hopper: Path) -> None:
    people = face.predict(grace_hopper)
    assert len(people) == 1
    p = people[0]
    check_person(p, width=512, height=600)
    assert isinstance(p.age.years, float) and 0 <= p.age.years <= 100
    lo, hi = p.age.interval
    assert lo <= p.age.years <= hi and p.age.interval_mass == 0.8
    assert 0.0 <= p.age.p_under_18 < 0.5  # an adult: Grace Hopper at about 77
    assert p.to_dict()["age"]["p_under_18"] == p.age.p_under_18
    assert p.ethnicity in ETHNICITIES and sum(p.ethnicity_probs.values()) == pytest.approx(1.0, abs=1e-3)
    # the face is in the upper middle of the portrait
    cx, cy = (p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2
    assert 150 < cx < 370 and 100 < cy < 350


def test_top_level_load_and_info(tiny_face_model: Path) -> None:
    p = agegender.load(str(tiny_face_model))
    info = p.info()
    assert info["name"] == "tiny-face" and info["backend"] == "torch" and info["mode"] == "face"
    assert info["tasks"] == ["age", "age_group", "gender", "ethnicity"]
    assert info["preprocess"]["input_size"] == [64, 64]
    assert info["detector"]["name"] == "haar"
    json.dumps(info)


def test_input_types_agree(face: Predictor, grace_hopper: Path) -> None:
    rgb = grace_rgb()
    ref = face.predict(rgb)
    data = grace_hopper.read_bytes()
    for src in (grace_hopper, str(grace_hopper), data, Image.open(io.BytesIO(data)), io.BytesIO(data)):
        got = face.predict(src)
        assert len(got) == 1 and got[0].box == ref[0].box
        assert got[0].age.years == pytest.approx(ref[0].age.years, abs=1e-3)
    bgr = face.predict(np.ascontiguousarray(rgb[:, :, ::-1]), channel_order="BGR")
    assert bgr[0].gender_probs == ref[0].gender_probs
    # an RGB array mistakenly declared BGR is a different image: the API really uses the argument
    swapped = face.predict_crops([rgb], channel_order="BGR")[0]
    assert swapped.gender_probs != face.predict_crops([rgb])[0].gender_probs


def test_preprocessing_matches_training_pipeline(face: Predictor, tmp_path: Path) -> None:
    """predict_crops = the training pipeline's resize to `resize` (datamodule.read_resized) + the eval transform +
    the bundle's forward."""
    from agegender.data.transforms import eval_transform
    from agegender.labels import Sample
    from agegender.training.datamodule import read_resized

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((200, 200), (90, 70), (64, 64))]
    people = face.predict_crops(crops)
    bundle = face.backend.bundle
    pp = bundle.preprocess
    tf = eval_transform(pp["input_size"], pp["mean"], pp["std"])
    files = []
    for i, c in enumerate(crops):
        files.append(tmp_path / f"c{i}.png")
        Image.fromarray(c).save(files[-1])
    x = torch.stack([tf(read_resized(Sample(path=str(f)), tuple(pp["resize"]))) for f in files])
    ref = bundle.predict_tensor(x)
    for i, p in enumerate(people):
        assert p.box == (0.0, 0.0, float(crops[i].shape[1]), float(crops[i].shape[0]))
        assert p.age.years == pytest.approx(float(ref["age"][i]), abs=0.01)
        assert p.gender_probs["female"] == pytest.approx(float(ref["gender_probs"][i, 1]), abs=1e-4)
    raw = face.predict_arrays(crops)
    np.testing.assert_allclose(raw["age_probs"], ref["age_probs"], atol=1e-5)


def test_utkface_crops_with_detector_none(tiny_face_model: Path, utkface_dir: Path) -> None:
    files = sorted((utkface_dir / "images").iterdir())[::900][:20]
    assert len(files) == 20
    p = load(tiny_face_model, detector="none", threads=1, batch_size=8)
    results = p.predict_batch(files, workers=2)
    assert [r.source for r in results] == [str(f) for f in files]
    for r in results:
        assert r.status == STATUS_OK and len(r.people) == 1
        assert r.people[0].box == (0.0, 0.0, float(r.width), float(r.height))
        check_person(r.people[0], width=r.width, height=r.height)


def test_scheme_conversion_and_interval(tiny_face_model: Path, face: Predictor) -> None:
    crop = grace_rgb()[100:330, 150:380]
    base = face.predict_crops([crop])[0]
    k4 = load(tiny_face_model, scheme="kang4", detector="none").predict_crops([crop])[0]
    raw = face.predict_arrays([crop])
    expected = get_scheme("kang4").probs_from_years(raw["age_probs"])[0]
    assert list(k4.age.group_probs) == list(get_scheme("kang4").labels)
    np.testing.assert_allclose(list(k4.age.group_probs.values()), expected, atol=1e-4)
    assert k4.age.years == base.age.years
    wide = load(tiny_face_model, interval=0.95, detector="none").predict_crops([crop])[0]
    assert wide.age.interval[0] <= base.age.interval[0] and wide.age.interval[1] >= base.age.interval[1]
    assert wide.age.interval_mass == 0.95


def test_age_interval_quantiles() -> None:
    p = np.zeros((2, 101))
    p[0, 20:30] = 0.1  # uniform over 20..29 → 10th/90th percentile at 20.5 / 28.5
    p[1, 40] = 1.0
    lo, hi = age_interval(p, 0.8)
    np.testing.assert_allclose(lo, [20.5, 39.6], atol=1e-6)
    np.testing.assert_allclose(hi, [28.5, 40.4], atol=1e-6)


def test_min_confidence_abstains(tiny_face_model: Path) -> None:
    # random weights give near-uniform probabilities, far below 0.99
    p = load(tiny_face_model, min_confidence=0.99, detector="none").predict_crops([grace_rgb()])[0]
    assert p.gender == UNCERTAIN and p.ethnicity == UNCERTAIN and p.age.group == UNCERTAIN
    assert p.age.years is not None and p.gender_probs  # numbers are still reported


def test_body_model_defaults(tiny_body_model: Path) -> None:
    p = load(tiny_body_model)
    assert p.mode == "body" and p.detector_name == "nanodet" and p.tasks() == ["age_group", "gender"]
    # the person detector finds the one person of the photo, whose box fills it
    found = p.predict(grace_rgb())
    assert len(found) == 1 and (found[0].box[2] - found[0].box[0]) * (found[0].box[3] - found[0].box[1]) > 0.8 * 512 * 600
    p = load(tiny_body_model, detector="none")  # ready crops: the whole image, as before person detectors
    person = p.predict(grace_rgb())
    assert len(person) == 1
    r = person[0]
    assert r.box == (0.0, 0.0, 512.0, 600.0) and r.ethnicity is None and r.crop == "whole_image"
    assert r.age.years is None and r.age.interval is None and r.age.scheme == "peta5"
    assert sum(r.age.group_probs.values()) == pytest.approx(1.0, abs=1e-3)
    raw = p.predict_arrays([grace_rgb()])["pedestrian_probs"][0]
    assert r.gender_probs["female"] == pytest.approx(float(raw[0]), abs=1e-4)
    # a face model can be forced into body mode (no detection) too
    assert load(tiny_body_model, mode="face").detector_name == "haar"


def test_regression_model_group_head_in_another_scheme(tiny_regression_model: Path) -> None:
    p = load(tiny_regression_model, scheme="fairface9", detector="none")
    r = p.predict_crops([grace_rgb()])[0]
    assert r.age.interval is None and isinstance(r.age.years, float)
    assert list(r.age.group_probs) == list(get_scheme("fairface9").labels)
    assert sum(r.age.group_probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert r.ethnicity is None and r.gender in GENDERS


@pytest.mark.parametrize("case", sorted(BAD_INPUT_CASES))
def test_bad_input_cases(case: str, face: Predictor, bad_inputs: dict[str, Path]) -> None:
    expected = BAD_INPUT_CASES[case]
    path = bad_inputs[case]
    res = face.predict_image(path)
    assert isinstance(res, ImageResult) and res.source == str(path)
    if expected == "face":
        assert res.status == STATUS_OK, res.message
        assert len(res.people) == 1
        assert (res.width, res.height) == (512, 600)  # EXIF rotation undone, first GIF frame, ...
        check_person(res.people[0], width=512, height=600)
    else:
        assert res.status == expected and res.message and not res.people
        with pytest.raises(AgeGenderError) as err:
            face.predict(path)
        assert err.value.code == expected


def test_bad_in_memory_inputs(face: Predictor) -> None:
    truncated = jpeg_bytes(grace_rgb())[:5000]
    for src, code in (
        (b"", "empty_file"),
        (truncated, "unreadable"),
        (b"plain text", "not_an_image"),
        (np.zeros((3, 4, 5)), "unsupported"),
        (12345, "unsupported"),
        ("/no/such/file.jpg", "missing_file"),
    ):
        r = face.predict_image(src)
        assert r.status == code, (src, r)
    tiny = load(face.backend.source, max_pixels=10_000).predict_image(grace_rgb())
    assert tiny.status == "too_large"


def test_no_face(face: Predictor) -> None:
    r = face.predict_image(np.full((240, 320, 3), 127, np.uint8))
    assert r.status == STATUS_NO_FACE and r.people == [] and r.ok and (r.width, r.height) == (320, 240)
    assert "no face found" in r.message and "--detector none" in r.message and "--model default-body" in r.message
    assert face.predict(np.full((240, 320, 3), 127, np.uint8)) == []


def test_batch_with_broken_files_loses_nothing(face: Predictor, tmp_path: Path) -> None:
    kinds = write_image_folder(tmp_path / "imgs", good=90, broken=10)
    inputs = list_inputs([tmp_path / "imgs"])
    assert len(inputs) == 100
    results = face.predict_batch([f for f, _ in inputs], workers=2)
    assert [r.source for r in results] == [f for f, _ in inputs]
    good = [r for r in results if r.ok]
    bad = [r for r in results if not r.ok]
    assert len(good) == 90 and len(bad) == 10
    assert {Path(r.source).name for r in bad} == {n for n, k in kinds.items() if k == "broken"}
    assert all(r.message for r in bad)
    # in-memory mix keeps order; crops of many images share model batches
    mixed = [grace_rgb(), b"", jpeg_bytes(grace_rgb()), "missing.jpg"]
    statuses = [r.status for r in face.predict_batch(mixed)]
    assert statuses == ["ok", "empty_file", "ok", "missing_file"]


def test_unknown_model_and_options(tiny_face_model: Path) -> None:
    with pytest.raises(AgeGenderError) as e:
        load("no-such-model")
    assert e.value.code == "unknown_model"
    with pytest.raises(AgeGenderError):
        load(tiny_face_model, mode="torso")
    with pytest.raises(AgeGenderError):
        load(tiny_face_model, backend="tensorflow")
    with pytest.raises(AgeGenderError):
        load(tiny_face_model, detector="no-such-detector")
    with pytest.raises(AgeGenderError):
        load(tiny_face_model, scheme="decades")


def test_threaded_detection_is_safe(face: Predictor, grace_hopper: Path) -> None:
    # OpenCV cascades are not thread-safe; the predictor keeps one detector per decode thread
    results = face.predict_batch([grace_hopper] * 12, workers=4)
    assert [len(r.people) for r in results] == [1] * 12
    assert len({r.people[0].box for r in results}) == 1


def test_ready_detector_instance(tiny_face_model: Path, grace_hopper: Path) -> None:
    from agegender.inference.detectors import build_detector

    p = load(tiny_face_model, detector=build_detector("haar", min_face_size=100))
    assert p.detector_name == "haar"
    assert [len(r.people) for r in p.predict_batch([grace_hopper] * 4, workers=2)] == [1] * 4


def test_flip_tta_matches_bundle(face: Predictor) -> None:
    face_crop = np.asarray(Image.fromarray(grace_rgb()[100:330, 150:380]).resize((64, 64)))
    x = torch.from_numpy(face.pre.batch([face_crop, np.zeros((64, 64, 3), np.uint8)]))
    ref = face.backend.bundle.predict_tensor(x, tta_flip=True)
    got = face.backend.run(x, tta_flip=True)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5, err_msg=k)
    plain = face.backend.run(x)
    assert not np.allclose(plain["age_probs"], got["age_probs"])


def test_face_crops_are_framed_like_utkface(face: Predictor, tiny_face_model: Path) -> None:
    from agegender.inference.detectors import crop
    from agegender.inference.detectors.base import detector_framing

    rgb = grace_rgb()
    boxes, _, crops = face.detect_crops(rgb)
    margin, shift = detector_framing("haar")
    assert (margin, shift) == (-0.017, 0.082)
    assert (face.crop_margin, face.crop_shift) == (margin, shift)
    x1, y1, x2, y2 = boxes[0]
    dy = shift * (y2 - y1)
    expected = crop(rgb, (x1, y1 + dy, x2, y2 + dy), margin, square=True)
    expected = cv2.resize(expected, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crops[0], expected)
    custom = load(tiny_face_model, detector_options={"margin": 0.2, "shift": 0.0})
    assert (custom.crop_margin, custom.crop_shift) == (0.2, 0.0)
    assert custom.info()["detector"]["crop_margin"] == 0.2


def test_package_root_exports_the_api_types(tiny_face_model: Path, grace_hopper: Path) -> None:
    import agegender

    p = agegender.load(tiny_face_model)
    assert isinstance(p, agegender.Predictor)
    res = p.predict_image(grace_hopper)
    assert isinstance(res, agegender.ImageResult) and all(isinstance(x, agegender.PersonResult) for x in res.people)
    assert agegender.ImageResult.model_validate(res.to_dict()).to_dict() == res.to_dict()  # the JSON round-trips


def test_options_are_validated_once_for_every_caller(tiny_face_model: Path) -> None:
    from agegender.errors import AgeGenderError
    from agegender.inference.options import PredictorOptions

    with pytest.raises(AgeGenderError, match="unknown predictor option 'min_confidance'; valid: device") as e:
        load(tiny_face_model, min_confidance=0.5)
    assert e.value.code == "bad_option" and "\n" not in str(e.value)
    with pytest.raises(AgeGenderError, match="interval=1.5"):
        load(tiny_face_model, interval=1.5)
    with pytest.raises(AgeGenderError, match="batch_size=0"):
        PredictorOptions.of(batch_size=0)
    opts = PredictorOptions.of(detector="none", tta_flip=False)
    p = load(tiny_face_model, opts, scheme="kang4")  # an options object, with overrides on top
    assert p.detector_name == "none" and not p.tta_flip and p.scheme.name == "kang4"
    assert p.options == PredictorOptions.of(opts, scheme="kang4")


def test_service_settings_check_predictor_options_alike() -> None:
    from agegender.errors import AgeGenderError
    from agegender.serve.settings import ServeSettings

    assert ServeSettings(predictor_options={"min_confidence": 0.6}).predictor_options == {"min_confidence": 0.6}
    with pytest.raises(AgeGenderError, match="unknown predictor option 'tta'"):
        ServeSettings(predictor_options={"tta": True})
