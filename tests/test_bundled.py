"""The bundled models load with no download and still do their job on real images."""

import numpy as np
import pytest

import agegender
from agegender.data.images import load_image
from agegender.data.readers import read_dataset
from agegender.inference.registry import bundled_models
from agegender.training.datamodule import AgeGenderDataModule

pytestmark = pytest.mark.skipif("default" not in bundled_models(), reason="bundled face model not in this checkout")


@pytest.fixture(scope="module", params=["default", "default-fast"])
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
    assert face.info()["name"] in ("default-face", "default-fast")
    # the bundled face models name their own detector (BlazeFace); any other can still be asked for
    assert face.detector_name == "blazeface"
    assert agegender.load("default", detector="haar").detector_name == "haar"


def test_default_face_accuracy_on_its_held_out_split(face, utkface_dir):
    """A guard on the shipped weights: 300 images of the model's own test split (never trained on)."""
    bundle = face.backend.bundle
    dcfg = {**bundle.config["data"], "root": str(utkface_dir), "cache": False}
    dm = AgeGenderDataModule(dcfg)
    dm.prepare_samples()
    idx = np.random.default_rng(0).choice(dm.split["test"], 300, replace=False)  # labels.csv is sorted by age
    test = [dm.samples[i] for i in idx]
    crops = [load_image(s.path) for s in test]
    out = face.predict_arrays(crops)
    mae = np.mean(np.abs(out["age"] - np.array([s.age for s in test])))
    gender_acc = np.mean(out["gender_probs"].argmax(1) == np.array([s.gender for s in test]))
    assert mae < 6.0 and gender_acc > 0.88, (mae, gender_acc)


def test_default_body_on_peta(peta_dir):
    if "default-body" not in bundled_models():
        pytest.skip("bundled body model not in this checkout")
    body = agegender.load("default-body")
    assert body.mode == "body" and body.detector_name == "none"
    ss = read_dataset("peta", peta_dir)
    bundle = body.backend.bundle
    dm = AgeGenderDataModule({**bundle.config["data"], "root": str(peta_dir), "cache": False})
    dm.prepare_samples()
    test = [dm.samples[i] for i in np.random.default_rng(0).choice(dm.split["test"], 200, replace=False)]
    assert len(ss) > len(test) > 100
    results = body.predict_batch([s.path for s in test])
    assert all(r.status == "ok" and len(r.people) == 1 for r in results)
    acc = np.mean([(r.people[0].gender == "female") == (s.gender == 1) for r, s in zip(results, test)])
    assert acc > 0.75, acc

