"""Tests for the face-detector layer: backends on a real photo, box/crop helpers, ONNX paths, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.detectors import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Detection,
    Detector,
    HaarDetector,
    NoneDetector,
    OnnxDetector,
    build_detector,
    crop,
    expand_box,
    margin_score,
    nms,
)

# Grace Hopper's face in matplotlib's 512×600 grace_hopper.jpg, measured: Haar finds the box
# (149, 100, 380, 331), dlib (180, 139, 367, 326); both centres lie near (265-275, 215-235).
FACE_CENTRE_X = (230, 310)
FACE_CENTRE_Y = (180, 260)


@pytest.fixture(scope="module")
def hopper(grace_hopper: Path) -> np.ndarray:
    return load_image(grace_hopper)


def assert_on_hopper_face(det: Detection, scale: float = 1.0) -> None:
    cx, cy = det.center
    assert FACE_CENTRE_X[0] * scale <= cx <= FACE_CENTRE_X[1] * scale, det
    assert FACE_CENTRE_Y[0] * scale <= cy <= FACE_CENTRE_Y[1] * scale, det
    assert 150 * scale <= det.width <= 300 * scale, det
    assert 0.5 <= det.score <= 1.0


# --------------------------------------------------------------------------------------------- haar


def test_default_detector_is_haar() -> None:
    assert DEFAULT_DETECTOR == "haar"
    assert isinstance(build_detector(), HaarDetector)
    assert {"haar", "blazeface", "dlib", "none", "onnx"} <= set(DETECTORS.names())


def test_haar_finds_grace_hopper(hopper: np.ndarray) -> None:
    faces = build_detector("haar").detect(hopper)
    assert len(faces) == 1
    assert_on_hopper_face(faces[0])
    assert all(isinstance(v, float) for v in faces[0].box)


@pytest.mark.parametrize("cascade", ["alt", "alt2"])
def test_haar_other_cascades(hopper: np.ndarray, cascade: str) -> None:
    faces = HaarDetector(cascade=cascade).detect(hopper)
    assert len(faces) == 1
    assert_on_hopper_face(faces[0])


def test_haar_downscales_large_images_and_maps_boxes_back(hopper: np.ndarray) -> None:
    # 2× the original, searched at max_side 600, i.e. at the original size: the same single face,
    # with its box scaled back up. (Other search sizes can add a background false positive.)
    big = cv2.resize(hopper, (1024, 1200), interpolation=cv2.INTER_CUBIC)
    faces = HaarDetector(max_side=600).detect(big)
    assert len(faces) == 1
    assert_on_hopper_face(faces[0], scale=2.0)


def test_haar_finds_nothing_on_blank_or_noise() -> None:
    detector = HaarDetector()
    assert detector.detect(np.full((480, 640, 3), 200, np.uint8)) == []
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert detector.detect(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


def test_common_filters(hopper: np.ndarray) -> None:
    assert HaarDetector(min_face_size=300).detect(hopper) == []  # her face is about 230 px
    assert len(HaarDetector(min_face_size=200).detect(hopper)) == 1
    assert HaarDetector(score_threshold=0.999).detect(hopper) == []
    assert HaarDetector(min_face_size=1000).detect(hopper[:100, :100]) == []  # larger than the image


def test_detect_rejects_wrong_input() -> None:
    detector = NoneDetector()
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(AgeGenderError) as info:
            detector.detect(bad)
        assert info.value.code == "unsupported" and "load_image" in str(info.value)


def test_haar_bad_cascade(tmp_path: Path) -> None:
    with pytest.raises(AgeGenderError) as info:
        HaarDetector(cascade="nope")
    assert info.value.code == "missing_file" and "alt2" in str(info.value)
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(AgeGenderError) as info:
        HaarDetector(cascade=str(bad))
    assert info.value.code == "bad_model"


# --------------------------------------------------------------------------------------------- dlib


def test_dlib_finds_grace_hopper(hopper: np.ndarray) -> None:
    pytest.importorskip("dlib")
    detector = build_detector("dlib")
    faces = detector.detect(hopper)
    assert len(faces) == 1
    assert_on_hopper_face(faces[0])
    assert detector.detect(np.full((200, 200, 3), 90, np.uint8)) == []


def test_dlib_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(AgeGenderError) as info:
        build_detector("dlib")
    assert info.value.code == "missing_dependency"
    assert "pip install agegender[dlib]" in str(info.value)


# ---------------------------------------------------------------------------------------- blazeface


@pytest.mark.parametrize("runtime", ["opencv", "onnxruntime"])
def test_blazeface_finds_grace_hopper_with_landmarks(hopper: np.ndarray, runtime: str) -> None:
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    detector = build_detector("blazeface", runtime=runtime)
    assert detector.runtime == runtime
    faces = detector.detect(hopper)
    assert len(faces) == 1
    assert_on_hopper_face(faces[0])
    pts = faces[0].landmarks
    assert pts is not None and len(pts) == 6
    (rx, ry), (lx, ly), (nx, ny), (_mx, my) = pts[:4]  # right eye, left eye, nose tip, mouth centre
    assert rx < nx < lx and max(ry, ly) < ny < my  # a face's layout, upright
    assert faces[0].box[0] < rx and lx < faces[0].box[2]


def test_blazeface_runtimes_agree_and_boxes_follow_the_image(hopper: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    a = build_detector("blazeface", runtime="opencv").detect(hopper)[0]
    b = build_detector("blazeface", runtime="onnxruntime").detect(hopper)[0]
    assert np.allclose(a.box, b.box, atol=0.5) and abs(a.score - b.score) < 1e-3
    # On a canvas twice the size with the photo at an offset, the box moves and scales with it.
    canvas = np.zeros((1200, 1400, 3), np.uint8)
    canvas[300:900, 500:1012] = hopper
    c = build_detector("blazeface").detect(canvas)[0]
    assert np.allclose(c.box, np.array(a.box) + [500, 300, 500, 300], atol=12), (c.box, a.box)


def test_blazeface_finds_nothing_on_blank_or_noise_and_checks_options() -> None:
    detector = build_detector("blazeface")
    assert detector.detect(np.full((300, 400, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    with pytest.raises(AgeGenderError) as info:
        build_detector("blazeface", runtime="tensorflow")
    assert info.value.code == "bad_config"


def test_blazeface_finds_several_faces_and_the_framing_is_registered(hopper: np.ndarray) -> None:
    from agegender.inference.detectors.base import detector_framing

    small = cv2.resize(hopper, (256, 300))
    canvas = np.full((400, 900, 3), 200, np.uint8)
    canvas[50:350, 20:276] = small
    canvas[50:350, 600:856] = small
    faces = build_detector("blazeface").detect(canvas)
    assert len(faces) == 2
    assert sorted(f.center[0] < 450 for f in faces) == [False, True]
    assert detector_framing("blazeface") == (0.010, 0.024) and detector_framing("none") == (0.0, 0.0)


def test_weighted_nms_merges_overlaps() -> None:
    from agegender.inference.detectors.blazeface import weighted_nms

    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [40, 40, 50, 50], [5, 5, 5, 5]], dtype=float)
    scores = np.array([0.9, 0.3, 0.8, 0.7])
    out = weighted_nms(boxes, np.zeros((4, 6, 2)), scores, 0.3)
    assert [o[2] for o in out] == [0.9, 0.8, 0.7]  # the degenerate box is kept alone, not looped on
    assert np.allclose(out[0][0], [0.5, 0, 10.5, 10])  # (0.9·0 + 0.3·2) / 1.2 = 0.5


# --------------------------------------------------------------------------------------------- none


def test_none_returns_full_frame() -> None:
    faces = build_detector("none").detect(np.zeros((20, 12, 3), np.uint8))  # smaller than 30 px: kept
    assert faces == [Detection(box=(0.0, 0.0, 12.0, 20.0), score=1.0)]


# ------------------------------------------------------------------------------------ box utilities


def test_expand_box() -> None:
    assert expand_box((10, 10, 30, 50), margin=0.0, square=False) == (10.0, 10.0, 30.0, 50.0)
    assert expand_box((10, 10, 30, 50), margin=0.0) == (0.0, 10.0, 40.0, 50.0)  # square about centre
    assert expand_box((10, 10, 30, 30), margin=0.25) == (5.0, 5.0, 35.0, 35.0)
    assert expand_box((10, 10, 30, 50), margin=0.5, square=False) == (0.0, -10.0, 40.0, 70.0)
    with pytest.raises(AgeGenderError):
        expand_box((10, 10, 10, 20))


def test_crop_inside_and_padding() -> None:
    image = np.arange(100 * 80 * 3, dtype=np.int64).reshape(100, 80, 3).astype(np.uint8)
    image[...] = 7
    det = Detection(box=(20.0, 30.0, 40.0, 60.0), score=1.0)  # 20 wide, 30 tall
    assert crop(image, det, margin=0.0, square=False).shape == (30, 20, 3)
    assert crop(image, det, margin=0.0).shape == (30, 30, 3)
    assert crop(image, det, margin=0.5).shape == (60, 60, 3)  # 30 + 2·0.5·30 after squaring
    inside = crop(image, det, margin=0.0, square=False)
    inside[...] = 0
    assert image.min() == 7  # a copy, not a view

    # A box at the top-left corner: the part outside the image is padded.
    corner = crop(image, (0, 0, 20, 20), margin=0.5)
    assert corner.shape == (40, 40, 3)
    assert (corner[:10] == 0).all() and (corner[:, :10] == 0).all()  # zeros by default
    assert (corner[10:, 10:] == 7).all()
    edge = crop(image, (0, 0, 20, 20), margin=0.5, pad="edge")
    assert (edge == 7).all()
    # Entirely outside: all padding, still the requested size.
    assert (crop(image, (200, 200, 220, 220)) == 0).all()
    assert crop(image[..., 0], (70, 90, 90, 110)).shape == (20, 20)  # 2-D images work too
    with pytest.raises(AgeGenderError):
        crop(image, det, pad="reflect-ish")


def test_crop_of_a_real_detection(hopper: np.ndarray) -> None:
    det = build_detector("haar").detect(hopper)[0]
    face = crop(hopper, det, margin=0.4)
    side = round(det.width * 1.8)
    assert abs(face.shape[0] - side) <= 1 and face.shape[0] == face.shape[1]
    assert face.dtype == np.uint8 and face.shape[2] == 3


def test_nms_and_margin_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.5).tolist() == [1, 2]
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.99).tolist() == [1, 0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert margin_score(0.0, 2.0) == pytest.approx(0.5)
    assert margin_score(2.0, 2.0) == pytest.approx(0.9)
    assert margin_score(-1e9, 2.0) < 1e-6 and margin_score(1e9, 2.0) > 1 - 1e-6


def test_sorting_and_max_faces() -> None:
    class Fixed(Detector):
        def _detect(self, image: np.ndarray) -> list[Detection]:
            return [
                Detection((0.0, 0.0, 40.0, 40.0), 0.6),
                Detection((10.0, 10.0, 90.0, 90.0), 0.6),
                Detection((50.0, 50.0, 90.0, 90.0), 0.9),
                Detection((-80.0, -80.0, -40.0, -40.0), 0.99),  # entirely outside the image
            ]

    image = np.zeros((100, 100, 3), np.uint8)
    scores = [(d.score, d.area) for d in Fixed().detect(image)]
    assert scores == [(0.9, 1600.0), (0.6, 6400.0), (0.6, 1600.0)]
    assert len(Fixed(max_faces=1).detect(image)) == 1


# ------------------------------------------------------------------------------------------ registry


def test_build_detector_errors(tmp_path: Path) -> None:
    with pytest.raises(AgeGenderError) as info:
        build_detector("retinaface")
    assert info.value.code == "unknown_detector"
    for name in ("dlib", "haar", "none", "onnx"):
        assert name in str(info.value)
    with pytest.raises(AgeGenderError) as info:
        build_detector("haar", min_face=10)
    assert info.value.code == "bad_config"
    with pytest.raises(AgeGenderError) as info:
        build_detector("onnx")
    assert info.value.code == "bad_config"
    with pytest.raises(AgeGenderError) as info:
        build_detector(str(tmp_path / "missing.onnx"))
    assert info.value.code == "missing_file"
    detector = NoneDetector()
    assert build_detector(detector) is detector


# ---------------------------------------------------------------------------------------------- ONNX

# Generic model: input 1×3×64×64, output [1, 5, 15] rows (x1, y1, x2, y2, score, 5 landmarks) in
# network-input pixels.
_ROWS = [
    [8, 8, 40, 40, 0.9],  # kept
    [10, 10, 42, 42, 0.8],  # overlaps the first: removed by NMS
    [44, 4, 60, 20, 0.7],  # kept
    [0, 20, 16, 30, 0.2],  # below the score threshold
    [50, 24, 53, 27, 0.95],  # 3 px: removed by min_face_size once scaled back (12 px)
]


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory, fake_yunet: Path) -> dict[str, Path]:
    import agegender  # noqa: F401 - its torchvision compatibility fix must precede torch (ENVIRONMENT.md)

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("onnx")
    rows = torch.tensor(
        [r + [r[0] + 1, r[1] + 2, r[2] - 1, r[1] + 2, 0, 0, 0, 0, 0, 0] for r in _ROWS], dtype=torch.float32
    )

    class FixedBoxes(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # The input must take part in the graph, or the exporter drops it.
            return (rows + 0.0 * x.mean())[None]

    class WrongShape(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))  # [1, 3]: not a box list

    paths = {}
    example = torch.zeros(1, 3, 64, 64)
    for name, module in (("generic", FixedBoxes()), ("wrong", WrongShape())):
        paths[name] = folder / f"{name}.onnx"
        torch.onnx.export(
            module, example, str(paths[name]), input_names=["images"], output_names=["dets"],
            opset_version=17, dynamo=False,
        )  # fmt: skip
    paths["yunet"] = folder / "fake_yunet_2023mar.onnx"
    paths["yunet"].write_bytes(fake_yunet.read_bytes())
    paths["yunet_unnamed"] = folder / "detector.onnx"
    paths["yunet_unnamed"].write_bytes(paths["yunet"].read_bytes())
    return paths


def test_onnx_generic_letterbox_threshold_nms(onnx_models: dict[str, Path]) -> None:
    pytest.importorskip("onnxruntime")
    detector = build_detector(str(onnx_models["generic"]))
    assert isinstance(detector, OnnxDetector) and detector.kind == "generic"
    # 128×256 image → letterboxed into 64×64 at scale 0.25, so boxes come back ×4.
    faces = detector.detect(np.zeros((128, 256, 3), np.uint8))
    assert [f.box for f in faces] == [(32.0, 32.0, 160.0, 160.0), (176.0, 16.0, 240.0, 80.0)]
    assert [f.score for f in faces] == pytest.approx([0.9, 0.7])
    assert faces[0].landmarks is not None and faces[0].landmarks[0] == (36.0, 40.0)
    # Lower thresholds let the weak and the tiny box through (the tiny one scores highest).
    loose = OnnxDetector(onnx_models["generic"], score_threshold=0.1, min_face_size=0, nms_threshold=0.9)
    assert len(loose.detect(np.zeros((128, 256, 3), np.uint8))) == 5


def test_onnx_bad_models(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    wrong = build_detector(str(onnx_models["wrong"]))
    with pytest.raises(AgeGenderError) as info:
        wrong.detect(np.zeros((64, 64, 3), np.uint8))
    assert info.value.code == "bad_model" and "[N, 5+]" in str(info.value)
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(AgeGenderError) as info:
        build_detector(str(junk))
    assert info.value.code == "bad_model"
    with pytest.raises(AgeGenderError) as info:
        OnnxDetector(junk, kind="yunet")
    assert info.value.code == "bad_model"


def test_onnx_generic_needs_onnxruntime(
    onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(AgeGenderError) as info:
        build_detector(str(onnx_models["generic"]))
    assert info.value.code == "missing_dependency" and "pip install agegender[onnx]" in str(info.value)
    # YuNet runs through OpenCV alone.
    assert OnnxDetector(onnx_models["yunet"]).kind == "yunet"


@pytest.mark.parametrize("model", ["yunet", "yunet_unnamed"])
def test_onnx_yunet_through_opencv(onnx_models: dict[str, Path], model: str) -> None:
    if model == "yunet_unnamed":
        pytest.importorskip("onnxruntime")  # recognising YuNet by its output names reads the model
    detector = build_detector(str(onnx_models[model]))
    assert detector.kind == "yunet"
    image = np.zeros((300, 400, 3), np.uint8)  # not a multiple of 32: FaceDetectorYN pads it
    image[64:96, 96:128] = 255  # fills stride-32 cell (row 2, column 3)
    faces = detector.detect(image)
    assert len(faces) == 1
    assert faces[0].box == (80.0, 48.0, 144.0, 112.0)
    assert faces[0].score == pytest.approx(1.0)
    assert faces[0].landmarks == ((112.0, 80.0),) * 5
    assert detector.detect(np.zeros((300, 400, 3), np.uint8)) == []
