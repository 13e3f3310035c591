"""Attributes are scored by name: a dataset whose attribute list differs from the model's (extra, missing or
reordered columns) is scored on the shared ones, the rest listed in the report, never a broadcast crash."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.attributes import align_attributes
from agegender.metrics import attribute_metrics, compute_metrics, multilabel_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = ("hairLong", "carryingBackpack", "upperBodyJacket", "lowerBodyJeans")


def arrays(seed: int = 0, n: int = 40):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, len(MODEL)))
    truth = {name: (rng.random(n) < 0.5).astype(np.float32) for name in (*MODEL, "extraA", "extraB")}
    return probs, truth


# -- the metric function, with arrays and names


def test_reordered_columns_score_like_the_model_order():
    probs, truth = arrays()
    data = ("lowerBodyJeans", "hairLong", "upperBodyJacket", "carryingBackpack")  # same names, another order
    target = np.stack([truth[n] for n in data], axis=1)
    got = compute_metrics({"attributes_probs": probs}, {"attributes": target},
                          attribute_names=MODEL, target_attribute_names=data)
    want = multilabel_metrics(probs, np.stack([truth[n] for n in MODEL], axis=1), "attributes")
    for k, v in want.items():
        assert got[k] == pytest.approx(v), k
    assert got["attributes_n_scored"] == 4
    assert got["attributes_model_only"] == [] and got["attributes_dataset_only"] == []


def test_extra_and_missing_columns_score_the_shared_ones_and_list_the_rest():
    probs, truth = arrays(1)
    data = ("extraA", "upperBodyJacket", "hairLong", "extraB")  # 2 shared, 2 extra; the model has 2 more
    target = np.stack([truth[n] for n in data], axis=1)
    got = attribute_metrics(probs, target, MODEL, data)
    want = multilabel_metrics(probs[:, [0, 2]], np.stack([truth["hairLong"], truth["upperBodyJacket"]], axis=1),
                              "attributes")
    assert got["attributes_mA"] == pytest.approx(want["attributes_mA"])
    assert got["attributes_example_f1"] == pytest.approx(want["attributes_example_f1"])
    assert got["attributes_n_scored"] == 2
    assert got["attributes_model_only"] == ["carryingBackpack", "lowerBodyJeans"]
    assert got["attributes_dataset_only"] == ["extraA", "extraB"]


def test_no_shared_name_means_no_attribute_metrics_and_a_note():
    probs, truth = arrays(2)
    target = np.stack([truth["extraA"], truth["extraB"]], axis=1)
    got = compute_metrics({"attributes_probs": probs}, {"attributes": target},
                          attribute_names=MODEL, target_attribute_names=("extraA", "extraB"))
    assert "attributes_mA" not in got and got["attributes_n_scored"] == 0
    assert "share no name" in got["attributes_note"]


def test_different_widths_without_names_do_not_crash():
    probs, truth = arrays(3)
    target = np.stack([truth[n] for n in (*MODEL, "extraA", "extraB")], axis=1)  # 4 predicted, 6 labelled
    got = compute_metrics({"attributes_probs": probs}, {"attributes": target})
    assert "attributes_mA" not in got and "cannot be matched" in got["attributes_note"]


def test_alignment_puts_data_columns_in_model_order():
    align = align_attributes(MODEL, ("extraA", "lowerBodyJeans", "hairLong"))
    t = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    out = align.to_model_order(t)
    assert out.shape == (2, 4)
    np.testing.assert_array_equal(out[:, 0], [1, 0])  # hairLong
    np.testing.assert_array_equal(out[:, 3], [0, 1])  # lowerBodyJeans
    assert np.isnan(out[:, 1:3]).all()  # not labelled in the data
    legacy = align_attributes(None, ("a", "b"), model_width=2)
    assert legacy.shared == ("a", "b") and "assumed" in legacy.report()["attributes_note"]
    assert align_attributes(None, ("a", "b"), model_width=3).shared == ()


# -- end to end: a body model with named attributes on a PETA-format folder


def body_bundle(attribute_names: tuple[str, ...]):
    import torch

    from agegender.labels import ETHNICITIES, GENDERS, get_scheme
    from agegender.models import build_model
    from agegender.models.package import ModelBundle

    torch.manual_seed(0)
    scheme = get_scheme("peta5")
    dims = {"age_group": 5, "gender": 2, "ethnicity": 5, "attributes": len(attribute_names), "pedestrian": 6}
    model_cfg = {"trunk": {"name": "small_cnn"}, "heads": {"gender": {"type": "classification"},
                                                           "attributes": {"type": "multilabel"}}}
    model = build_model(model_cfg, dims, stats=None, with_losses=False).eval()
    size = [64, 32]
    preprocess = {"input_size": size, "resize": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                  "channel_order": "RGB", "crop_margin": 0.0}
    labels = {"gender": list(GENDERS), "ethnicity": list(ETHNICITIES), "age_scheme": "peta5",
              "age_groups": list(scheme.labels), "attributes": list(attribute_names)}
    config = {"name": "tiny-attr-body", "model": model_cfg, "data": {"dataset": "peta", "age_scheme": "peta5"}}
    return ModelBundle(model, config, dims, preprocess, labels, {"name": "tiny-attr-body", "version": "test"})


def peta_folder(root: Path, tags: tuple[str, ...], n: int = 12) -> Path:
    rng = np.random.default_rng(5)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(root / "images" / f"p{i}.png")
        on = [t for t in tags if rng.random() < 0.5] or [tags[i % len(tags)]]
        rows.append([f"p{i}.png", "VIPeR", str(i), str(i % 2), "16-30", " ".join(["personalMale", *on])])
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "subset", "person_id", "gender", "age_group", "attributes"])
        w.writerows(rows)
    return root


def expected_attribute_metrics(ev, data_root: Path, model_names: tuple[str, ...]) -> dict:
    """The metrics recomputed independently: each model column against the data's column of that name."""
    from agegender.data.readers import read_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = read_dataset("peta", data_root)
    by_path = {s.path: s for s in ss.samples}
    shared = [n for n in model_names if n in ss.attribute_names]
    t = np.asarray([[by_path[s.path].attributes[ss.attribute_names.index(n)] for n in shared] for s in ev.samples],
                   dtype=np.float64)
    p = ev.preds["attributes_probs"][:, [model_names.index(n) for n in shared]]
    return multilabel_metrics(p, t, "attributes")


def test_evaluate_reordered_extra_and_missing_peta_attributes(tmp_path):
    from agegender.evaluation.evaluate import run_evaluation

    # the model lists its attributes in its own order; the PETA reader sorts the dataset's tags
    model_names = ("upperBodyJacket", "hairLong", "lowerBodyJeans", "accessoryHat", "carryingBackpack")
    data = peta_folder(tmp_path / "peta", ("hairLong", "upperBodyJacket", "carryingBackpack", "lowerBodyJeans",
                                           "footwearSneakers", "upperBodyBlack"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = run_evaluation(body_bundle(model_names), "peta", data)
    rep = ev.report
    assert rep["attributes_n_scored"] == 4
    assert rep["attributes_model_only"] == ["accessoryHat"]
    assert rep["attributes_dataset_only"] == ["footwearSneakers", "upperBodyBlack"]
    want = expected_attribute_metrics(ev, data, model_names)
    for k, v in want.items():
        assert rep[k] == pytest.approx(v), k


def test_evaluate_report_lists_the_attributes_and_survives_no_overlap(tmp_path):
    from agegender.evaluation.evaluate import evaluate

    data = peta_folder(tmp_path / "peta", ("hairLong", "upperBodyJacket", "footwearSneakers"))
    bundle = body_bundle(("hairLong", "accessoryHat", "upperBodyJacket"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = evaluate(bundle, "peta", data, output=tmp_path / "r.json", report_dir=tmp_path / "report")
    assert rep["attributes_n_scored"] == 2
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["attributes_n_scored"] == 2 and saved["attributes_model_only"] == ["accessoryHat"]
    assert saved["attributes_dataset_only"] == ["footwearSneakers"] and "attributes_mA" in saved
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Attributes" in md and "**2** attributes scored" in md
    assert "`accessoryHat`" in md and "`footwearSneakers`" in md

    # nothing shared: no attribute metrics, a note, and the other tasks still scored
    other = body_bundle(("accessoryHat", "carryingBackpack"))
    from agegender.evaluation.evaluate import run_evaluation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = run_evaluation(other, "peta", data).report
    assert rep["attributes_n_scored"] == 0 and "share no name" in rep["attributes_note"]
    assert not any(k.startswith("attributes_") and k.endswith(("_mA", "_f1")) for k in rep)
    assert "gender_accuracy" in rep


def test_evaluate_same_attributes_in_another_order(tmp_path):
    """Same names, same count, another order: scored column by column before, silently wrong."""
    from agegender.evaluation.evaluate import run_evaluation

    tags = ("hairLong", "upperBodyJacket", "carryingBackpack", "lowerBodyJeans")
    data = peta_folder(tmp_path / "peta", tags, n=16)
    model_names = tuple(sorted(tags, reverse=True))  # the reader's vocabulary is sorted: the reverse order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = run_evaluation(body_bundle(model_names), "peta", data)
    want = expected_attribute_metrics(ev, data, model_names)
    for k, v in want.items():
        assert ev.report[k] == pytest.approx(v), k
    assert ev.report["attributes_n_scored"] == 4
    assert ev.report["attributes_model_only"] == [] == ev.report["attributes_dataset_only"]
