"""`evaluate` on loose images goes through a face detector (FairFace-style), tight crops do not."""

import csv

import numpy as np
from PIL import Image

from agegender.evaluation.evaluate import evaluate

pytest_plugins = ["fixtures_models"]


def _loose_fairface(tmp_path, grace_hopper, n=4):
    """A FairFace-layout folder: the face in the middle of a larger canvas, plus one image without a face."""
    face = Image.open(grace_hopper).convert("RGB").resize((180, 210))
    (tmp_path / "val").mkdir()
    rows = []
    for i in range(n):
        canvas = Image.new("RGB", (448, 448), (120, 120, 120))
        canvas.paste(face, (130 + 5 * i, 110))
        canvas.save(tmp_path / "val" / f"{i}.jpg")
        rows.append({"file": f"val/{i}.jpg", "age": "more than 70", "gender": "Female",
                     "race": "White", "service_test": "True"})
    Image.fromarray(np.full((448, 448, 3), 90, np.uint8)).save(tmp_path / "val" / "blank.jpg")
    rows.append({"file": "val/blank.jpg", "age": "20-29", "gender": "Male", "race": "Black", "service_test": "True"})
    with open(tmp_path / "fairface_label_val.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def test_fairface_defaults_to_haar_and_counts_no_face(tiny_face_model, grace_hopper, tmp_path):
    root = _loose_fairface(tmp_path, grace_hopper)
    rep = evaluate(str(tiny_face_model), "fairface", root)
    assert rep["detector"] == "haar"
    assert rep["n_images"] == 5 and rep["no_face"] == 1
    assert rep["gender_n"] == 5 and rep["age_scheme"] == "fairface9"
    rep2 = evaluate(str(tiny_face_model), "fairface", root, detector="none")
    assert rep2["detector"] == "none" and rep2["no_face"] == 0


def test_fairface_uses_the_models_own_detector(tiny_face_model, grace_hopper, tmp_path):
    """A package that names its face detector (`agegender package --detector`) is evaluated with it on
    loose images, as `predict` would run it; tight crops still go without a detector."""
    from agegender.models.package import load_bundle, save_package

    path = save_package(load_bundle(tiny_face_model), tmp_path / "blaze.safetensors", meta={"default_detector": "blazeface"})
    (tmp_path / "ff").mkdir()
    root = _loose_fairface(tmp_path / "ff", grace_hopper)
    rep = evaluate(str(path), "fairface", root)
    assert rep["detector"] == "blazeface"
    assert rep["n_images"] == 5 and rep["no_face"] == 1
    assert evaluate(str(path), "fairface", root, detector="haar")["detector"] == "haar"
