"""The bundled models load with no download and still do their job on real images."""

import numpy as np
import pytest

import agegender
from agegender.data.images import load_image
from agegender.data.readers import read_dataset
from agegender.evaluation.evaluate import split_samples
from agegender.inference.registry import bundled_models
from agegender.training.datamodule import AgeGenderDataModule

pytestmark = pytest.mark.skipif("default" not in bundled_models(), reason="bundled face model not in this checkout")


@pytest.fixture(scope="module", params=["default", "default-fast", "default-accurate"])
def face(request):
    if request.param not in bundled_models():
        pytest.skip(f"{request.param} not in this checkout")
    return agegender.load(request.param)


def test_default_face_on_grace_hopper(face, grace_hopper):
    people = face.predict(str(grace_hopper))
    assert len(people) == 1
    p = people[0]
    assert p.age.group == "60+" and p.age.interval[0] < p.age.years < p.age.interval[1]
    assert sum(p.gender_probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert set(p.ethnicity_probs) == {"white", "black", "asian", "indian", "other"}
    assert face.info()["name"] in ("default-face", "default-fast", "default-accurate")
    # the bundled face models name their own detector (CenterFace); any other can still be asked for
    assert face.detector_name == "centerface"
    assert agegender.load("default", detector="haar").detector_name == "haar"


def test_default_face_accuracy_on_its_held_out_split(face, utkface_dir):
    """A guard on the shipped weights: 300 images of the model's own test split (never trained on)."""
    # the test split of the model's UTKFace source (its training data may list other sources, absent here)
    split = split_samples("utkface", utkface_dir, "test", face.backend.config["data"])[0]
    idx = np.random.default_rng(0).choice(len(split), 300, replace=False)  # labels.csv is sorted by age
    test = [split[i] for i in idx]
    crops = [load_image(s.path) for s in test]
    out = face.predict_arrays(crops)
    mae = np.mean(np.abs(out["age"] - np.array([s.age for s in test])))
    gender_acc = np.mean(out["gender_probs"].argmax(1) == np.array([s.gender for s in test]))
    assert mae < 6.0 and gender_acc > 0.88, (mae, gender_acc)


def test_default_body_on_peta(peta_dir):
    if "default-body" not in bundled_models():
        pytest.skip("bundled body model not in this checkout")
    body = agegender.load("default-body")
    # body mode finds people with the person detector; a ready PETA crop stays one whole-image person
    assert body.mode == "body" and body.detector_name == "nanodet"
    ss = read_dataset("peta", peta_dir)
    dm = AgeGenderDataModule({**body.backend.config["data"], "root": str(peta_dir), "cache": False})
    dm.prepare_samples()
    # images the model never trained on: its test part, or its validation part when it was fitted on train + test
    held = dm.split["test"] if len(dm.split["test"]) else dm.split["val"]
    test = [dm.samples[i] for i in np.random.default_rng(0).choice(held, 200, replace=False)]
    assert len(ss) > len(test) > 100
    results = body.predict_batch([s.path for s in test])
    assert all(r.status == "ok" and len(r.people) == 1 for r in results)
    assert sum(r.people[0].crop == "whole_image" for r in results) >= 0.98 * len(results)
    acc = np.mean([(r.people[0].gender == "female") == (s.gender == 1) for r, s in zip(results, test)])
    assert acc > 0.75, acc



@pytest.mark.parametrize("name", ["default", "default-fast", "default-body"])
def test_bundled_onnx_twin_is_the_default_and_matches_the_package(name, grace_hopper):
    """`load(name)` runs the bundled ONNX twin (in float32 on ONNX Runtime when asked for float32); it gives what the
    safetensors package gives under PyTorch."""
    from agegender.bundled import int8_twin, onnx_twin, resolve_model_path
    from agegender.inference.openvino_runtime import preferred_precision

    package = resolve_model_path(name)
    choice = preferred_precision(onnx_twin(package), int8_twin(package))
    assert agegender.load(name).backend.name == ("openvino" if choice else "onnx")
    fast, ref = agegender.load(name, precision="fp32"), agegender.load(name, backend="torch")
    assert fast.backend.name == "onnx" and ref.backend.name == "torch"
    assert fast.info()["source"] == str(onnx_twin(resolve_model_path(name)))
    assert fast.backend.config == ref.backend.config and fast.backend.preprocess == ref.backend.preprocess
    rgb = load_image(grace_hopper)
    rng = np.random.default_rng(1)
    crops = [rgb[100:330, 150:380], rgb] + [rng.integers(0, 256, (120, 100, 3), dtype=np.uint8) for _ in range(6)]
    a, b = fast.predict_arrays(crops), ref.predict_arrays(crops)
    assert set(a) == set(b)
    for k in a:
        tol = 1e-3 if k == "age" else 1e-4  # the same float16 weights, run in float32 by both
        np.testing.assert_allclose(a[k], b[k], atol=tol, err_msg=k)


def test_bundled_package_without_twin_runs_its_export_kept_in_the_cache(grace_hopper, tmp_path, monkeypatch):
    """`default-accurate` ships without an ONNX twin: the first load exports it into the cache folder, later loads
    run that export without importing torch, and it gives what the package gives under PyTorch."""
    import subprocess
    import sys

    from agegender.bundled import onnx_twin, resolve_model_path
    from agegender.inference.onnx_cache import cached_export_path

    if "default-accurate" not in bundled_models():
        pytest.skip("default-accurate not in this checkout")
    path = resolve_model_path("default-accurate")
    assert onnx_twin(path) is None
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path))
    code = ("import sys, agegender; p = agegender.load('default-accurate', precision='fp32'); "
            "people = p.predict(sys.argv[1]); assert len(people) == 1, people; "
            "heavy = sorted(m for m in ('torch', 'timm') if m in sys.modules); "
            "print('backend:', p.info()['backend'], 'source:', p.info()['source'], 'heavy:', heavy)")
    runs = [subprocess.run([sys.executable, "-c", code, str(grace_hopper)], check=False, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    export = cached_export_path(path)
    assert export.is_file() and f"source: {export}" in runs[0].stdout and "backend: onnx" in runs[0].stdout
    assert "heavy: []" in runs[1].stdout, runs[1].stdout  # the second load finds the export: no torch
    fast = agegender.load(export, detector="none")
    ref = agegender.load("default-accurate", backend="torch", detector="none")
    rgb = load_image(grace_hopper)
    a, b = fast.predict_arrays([rgb, rgb[100:330, 150:380]]), ref.predict_arrays([rgb, rgb[100:330, 150:380]])
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-3 if k == "age" else 1e-4, err_msg=k)


def test_predicting_a_photo_with_the_default_model_loads_no_torch(grace_hopper):
    import subprocess
    import sys

    code = ("import sys, agegender; p = agegender.load('default'); people = p.predict(sys.argv[1]); "
            "assert len(people) == 1, people; "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'lightning') if m in sys.modules); "
            "print('heavy:', heavy)")
    out = subprocess.run([sys.executable, "-c", code, str(grace_hopper)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout, out.stdout


def test_tight_face_crops_are_recognised_as_crops(utkface_dir, grace_hopper):
    """UTKFace chips leave BlazeFace no face-sized window: about half find no face directly. They are checked on a
    bordered copy and predicted on the whole image, marked `crop: whole_image`; face-free images stay no_face.
    The default detector (CenterFace) finds the face in (nearly) every chip directly."""
    chips = sorted((utkface_dir / "images").glob("*.jpg"))[::200][:60]
    rgbs = [load_image(f) for f in chips]
    default = agegender.load("default")
    assert sum(bool(default.cropper.detect(rgb)) for rgb in rgbs) >= 57
    # the one face found fills the chip (cropper.FACE_FILL): the chip is predicted whole, with its own framing
    kinds = [r.people[0].crop for r in default.predict_batch(chips[:20]) if r.people]
    assert len(kinds) == 20 and kinds.count("whole_image") >= 18, kinds
    assert [p.crop for p in default.predict(grace_hopper)] == ["detected"]  # a photo is not a face crop
    face = agegender.load("default", detector="blazeface")
    missed = [i for i, rgb in enumerate(rgbs) if not face.cropper.detect(rgb)]
    assert len(missed) >= 5, "the bordered check needs chips the detector misses"
    results = face.predict_batch([chips[i] for i in missed])
    whole = [r for r in results if r.people and r.people[0].crop == "whole_image"]
    assert len(whole) >= 0.9 * len(missed)
    r = whole[0]
    assert r.people[0].box == (0.0, 0.0, float(r.width), float(r.height)) and r.to_dict()["people"][0]["crop"]
    # a chip BlazeFace does find: its framed crop fills the chip, so it is taken whole too
    assert [p.crop for p in face.predict_image(rgbs[next(i for i in range(60) if i not in missed)]).people] == ["whole_image"]
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (200, 200, 3), dtype=np.uint8), np.full((200, 200, 3), 127, np.uint8)):
        assert face.predict_image(img).status == "no_face"
