"""ONNX export: dynamic batch, metadata-only loading, and torch ↔ ONNX Runtime parity within tolerance."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.onnx_export import export_onnx
from agegender.inference.onnx_runtime import OnnxBackend
from agegender.inference.predictor import Predictor, load
from helpers_models import grace_rgb

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model, tiny_regression_model

pytest.importorskip("onnxruntime")

#: tested tolerances between the torch and ONNX Runtime backends
PROB_ATOL = 1e-4
YEARS_ATOL = 1e-2


@pytest.fixture(scope="module")
def face_onnx(tiny_face_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "face.onnx"
    summary = export_onnx(tiny_face_model, out)
    assert summary["outputs"] == ["age", "age_probs", "ethnicity_probs", "gender_probs"]
    assert all(v < PROB_ATOL for k, v in summary["max_abs_diff"].items() if k != "age")
    return out


def test_onnx_file_alone_is_a_model(face_onnx: Path, tiny_face_model: Path, tmp_path: Path) -> None:
    alone = tmp_path / "elsewhere" / "model.onnx"
    alone.parent.mkdir()
    shutil.copy(face_onnx, alone)
    p_onnx = load(alone, backend="onnx", threads=1)
    p_torch = load(tiny_face_model, threads=1)
    assert p_onnx.info()["backend"] == "onnx" and p_onnx.info()["name"] == "tiny-face"
    assert p_onnx.backend.preprocess == p_torch.backend.preprocess
    assert p_onnx.backend.labels == p_torch.backend.labels
    assert p_onnx.tasks() == p_torch.tasks() and p_onnx.detector_name == "haar"
    assert load(alone).backend.name == "onnx"  # chosen from the extension


def test_parity_with_torch_dynamic_batch(face_onnx: Path, tiny_face_model: Path, utkface_dir: Path) -> None:
    files = sorted((utkface_dir / "images").iterdir())[5::1500][:7]
    crops = [load_image(f) for f in files]
    crops.append(grace_rgb())
    for bs in (1, 3, 8):  # dynamic batch: several batch sizes through the same graph
        pt = load(tiny_face_model, detector="none", batch_size=bs, threads=1)
        po = load(face_onnx, backend="onnx", detector="none", batch_size=bs, threads=1)
        a, b = pt.predict_arrays(crops), po.predict_arrays(crops)
        assert set(a) == set(b)
        for k in a:
            assert a[k].shape == b[k].shape
            np.testing.assert_allclose(a[k], b[k], atol=YEARS_ATOL if k == "age" else PROB_ATOL, err_msg=k)
    # end to end through the detector, with flip TTA
    rt = load(tiny_face_model, tta_flip=True).predict(grace_rgb())[0]
    ro = load(face_onnx, tta_flip=True).predict(grace_rgb())[0]
    assert rt.box == ro.box
    assert ro.age.years == pytest.approx(rt.age.years, abs=YEARS_ATOL)
    for k, v in rt.gender_probs.items():
        assert ro.gender_probs[k] == pytest.approx(v, abs=PROB_ATOL)


def test_body_model_export(tiny_body_model: Path, tmp_path: Path) -> None:
    s = export_onnx(tiny_body_model, tmp_path / "body.onnx", verify=True)
    # uint8 RGB crops [N, H, W, 3] at the (non-square) model size, normalised inside the graph
    assert s["input"] == ["image", 128, 64, 3] and s["input_format"] == "uint8"
    assert s["max_abs_diff"]["pedestrian_probs"] < PROB_ATOL
    p = load(tmp_path / "body.onnx")
    assert p.mode == "body" and p.detector_name == "nanodet"  # body mode's person detector
    r = p.predict(grace_rgb())[0]
    t = load(tiny_body_model).predict(grace_rgb())[0]
    assert r.gender_probs["female"] == pytest.approx(t.gender_probs["female"], abs=PROB_ATOL)


def test_cli_export(tiny_face_model: Path, tmp_path: Path) -> None:
    from agegender.cli_inference import app

    out = tmp_path / "cli.onnx"
    r = CliRunner().invoke(app, ["export", str(tiny_face_model), "--onnx", str(out), "--opset", "17"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["opset"] == 17 and out.is_file() and max(summary["max_abs_diff"].values()) < YEARS_ATOL
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "missing.pt"), "--onnx", str(out)])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_wrong_files_give_clear_errors(tiny_face_model: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(plain), dynamo=False, opset_version=17)
    with pytest.raises(AgeGenderError) as e:
        load(plain)
    assert e.value.code == "bad_model" and "agegender export" in str(e.value)
    (tmp_path / "junk.onnx").write_text("not onnx")
    with pytest.raises(AgeGenderError):
        load(tmp_path / "junk.onnx")
    # a checkpoint with backend="onnx" is exported on the fly and gives the torch results
    on_the_fly = load(tiny_face_model, backend="onnx", detector="none")
    assert on_the_fly.backend.name == "onnx" and on_the_fly.backend.source == str(tiny_face_model)
    a = on_the_fly.predict_arrays([grace_rgb()])["age"]
    b = load(tiny_face_model, detector="none").predict_arrays([grace_rgb()])["age"]
    np.testing.assert_allclose(a, b, atol=YEARS_ATOL)


def test_int8_export(tiny_face_model: Path, utkface_dir: Path, tmp_path: Path) -> None:
    from agegender.cli_inference import app

    calib = tmp_path / "calib"
    calib.mkdir()
    for f in sorted((utkface_dir / "images").iterdir())[::1000][:16]:
        shutil.copy(f, calib / f.name)
    out = tmp_path / "int8.onnx"
    r = CliRunner().invoke(
        app, ["export", str(tiny_face_model), "--onnx", str(out), "--int8-calibration", str(calib)]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["quantized"] == "int8" and summary["calibration_images"] == 16
    fp32_bytes = export_onnx(tiny_face_model, tmp_path / "fp32.onnx", verify=False)["bytes"]
    assert summary["bytes"] < fp32_bytes / 2  # int8 weights
    p = load(out, detector="none")
    assert p.info()["meta"]["quantized"] == "int8"
    # an int8 file runs on OpenVINO (in int8) unless ONNX Runtime is asked for
    ov_installed = importlib.util.find_spec("openvino") is not None
    assert (p.backend.name, p.info()["precision"]) == (("openvino", "int8") if ov_installed else ("onnx", "fp32"))
    assert load(out, detector="none", backend="onnx").backend.name == "onnx"
    crops = [load_image(f) for f in sorted(calib.iterdir())] + [grace_rgb()]
    a = load(tiny_face_model, detector="none").predict_arrays(crops)
    b = p.predict_arrays(crops)
    # int8 is an approximation: a loose bound here; real accuracy is checked with `agegender evaluate`
    np.testing.assert_allclose(a["age"], b["age"], atol=2.0)
    np.testing.assert_allclose(a["gender_probs"], b["gender_probs"], atol=0.05)


@pytest.mark.parametrize("resize,order", [(None, "RGB"), (80, "RGB"), (None, "BGR")])
def test_uint8_graph_matches_float_graph(tmp_path: Path, resize: int | None, order: str) -> None:
    """The in-graph preprocessing (centre crop, channel order, normalisation) is the predictor's."""
    from agegender.inference.onnx_export import UInt8Input  # noqa: F401 - the module under test
    from helpers_models import tiny_bundle

    bundle = tiny_bundle("face", seed=3)
    if resize:
        bundle.preprocess["resize"] = [resize, resize]  # crops arrive at 80x80, the graph takes the centre 64
    bundle.preprocess["channel_order"] = order
    s8 = export_onnx(bundle, tmp_path / "u8.onnx", input_format="uint8")
    sf = export_onnx(bundle, tmp_path / "f32.onnx", input_format="float")
    assert s8["input_format"] == "uint8" and sf["input_format"] == "float"
    assert s8["input"] == ["image", resize or 64, resize or 64, 3] and sf["input"] == ["image", 3, 64, 64]
    assert max(s8["max_abs_diff"].values()) < YEARS_ATOL
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (50 + 7 * i, 40 + 5 * i, 3), dtype=np.uint8) for i in range(4)] + [grace_rgb()]
    p8 = load(tmp_path / "u8.onnx", detector="none", tta_flip=True)
    pf = load(tmp_path / "f32.onnx", detector="none", tta_flip=True)
    assert p8.backend.input_format == "uint8" and pf.backend.input_format == "float"
    assert p8.model_input([p8._resize(c) for c in crops]).dtype == np.uint8
    a, b = p8.predict_arrays(crops), pf.predict_arrays(crops)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=YEARS_ATOL if k == "age" else PROB_ATOL, err_msg=k)
    # a wrong choice is refused with the accepted values named
    with pytest.raises(AgeGenderError, match="uint8"):
        export_onnx(bundle, tmp_path / "x.onnx", input_format="int16")


def test_int8_safe_scope_keeps_stem_and_depthwise_in_float(tiny_face_model: Path, utkface_dir: Path,
                                                           tmp_path: Path) -> None:
    import onnx

    from agegender.inference.onnx_export import float_nodes

    calib = sorted((utkface_dir / "images").iterdir())[::1000][:8]
    s = export_onnx(tiny_face_model, tmp_path / "q.onnx", verify=False, int8_calibration=calib, int8_scope="safe")
    proto = onnx.load(str(tmp_path / "q.onnx"))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    stem = next(n for n in convs if "/trunk/" in n.name)
    # a quantized Conv reads a DequantizeLinear output; the stem and the head/decode nodes read float
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    assert producers.get(stem.input[0]) != "DequantizeLinear"
    later = [n for n in convs if "/trunk/" in n.name and n is not stem]
    assert any(producers.get(n.input[0]) == "DequantizeLinear" for n in later)
    assert s["float_nodes"] >= 2
    # a graph without agegender's scope names is quantized throughout
    bare = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                  [onnx.helper.make_tensor_value_info("y", 1, [1])])
    assert float_nodes(onnx.helper.make_model(bare)) == []


def test_int8_scope_trunk_quantizes_every_trunk_convolution(tiny_face_model: Path, utkface_dir: Path,
                                                           tmp_path: Path) -> None:
    import onnx

    calib = sorted((utkface_dir / "images").iterdir())[::1000][:8]
    safe = export_onnx(tiny_face_model, tmp_path / "s.onnx", verify=False, int8_calibration=calib, int8_scope="safe")
    full = export_onnx(tiny_face_model, tmp_path / "t.onnx", verify=False, int8_calibration=calib)  # the default
    assert full["float_nodes"] < safe["float_nodes"]
    proto = onnx.load(str(tmp_path / "t.onnx"))
    producers = {o: n for n in proto.graph.node for o in n.output}

    def reads_int8(tensor: str) -> bool:  # a DequantizeLinear output, or one through a max pool (int8 either way)
        node = producers.get(tensor)
        while node is not None and node.op_type == "MaxPool":
            node = producers.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    trunk_convs = [n for n in proto.graph.node if n.op_type == "Conv" and "/trunk/" in n.name]
    assert trunk_convs and all(reads_int8(n.input[0]) and reads_int8(n.input[1]) for n in trunk_convs)
    # the heads and the decoding stay in float
    assert all(not reads_int8(i) for n in proto.graph.node if "/trunk/" not in n.name and n.op_type != "QuantizeLinear"
               for i in n.input)
    with pytest.raises(AgeGenderError, match="int8_scope"):
        export_onnx(tiny_face_model, tmp_path / "x.onnx", verify=False, int8_calibration=calib, int8_scope="all")


def test_streams_run_calls_at_once_with_the_same_outputs(face_onnx: Path) -> None:
    # threads unset on a CPU: one single-threaded call per CPU; threads set: one call on that many threads
    assert OnnxBackend(face_onnx).streams == max(1, os.cpu_count() or 1)
    assert OnnxBackend(face_onnx, threads=2).streams == 1
    one, three = OnnxBackend(face_onnx, streams=1), OnnxBackend(face_onnx, streams=3)
    x = np.random.default_rng(0).integers(0, 256, (37, *one.session.get_inputs()[0].shape[1:]), dtype=np.uint8)
    a, b = one.run(x, tta_flip=True), three.run(x, tta_flip=True)  # 74 rows: five calls of at most 16
    assert set(a) == set(b) and all(len(b[k]) == 37 for k in b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)


def test_pipelined_prediction_matches_one_call_at_a_time(face_onnx: Path, utkface_dir: Path,
                                                          tmp_path: Path) -> None:
    files = sorted((utkface_dir / "images").iterdir())[:45]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    inputs = [str(f) for f in files[:20]] + [str(broken), b""] + [str(f) for f in files[20:]] + [grace_rgb()]
    serial = load(face_onnx, detector="none", threads=1)
    piped = Predictor(OnnxBackend(face_onnx, streams=2), detector="none")
    assert serial.backend.streams == 1 and piped.backend.streams == 2
    ra, rb = serial.predict_batch(inputs, workers=2), piped.predict_batch(inputs, workers=1)
    assert [r.source for r in rb] == [r.source for r in ra]  # input order kept
    assert [r.status for r in rb] == [r.status for r in ra]
    assert not rb[20].ok and rb[21].status == "empty_file" and sum(r.ok for r in rb) == len(rb) - 2
    for x, y in zip(ra, rb):
        assert len(x.people) == len(y.people)
        for p, q in zip(x.people, y.people):
            assert p.box == q.box and q.age.years == pytest.approx(p.age.years, abs=1e-4)
            assert q.gender_probs == pytest.approx(p.gender_probs, abs=1e-5)
    # streaming with the decoded images: one image per task, same results and order
    pairs = list(piped.iter_predict(inputs[:5], return_images=True))
    assert [r.source for r, _ in pairs] == [r.source for r in ra[:5]]
    assert all(img is not None and img.ndim == 3 for _, img in pairs)


def test_minor_guard_survives_packaging_and_export(tmp_path: Path) -> None:
    """An age head's under-age guard is in the package's config and in the ONNX graph: both read the ages torch
    reads, held below 18 where the guard fires."""
    from agegender.models.heads import GUARDED_AGE
    from agegender.models.package import load_bundle, save_package
    from helpers_models import tiny_bundle

    bundle = tiny_bundle("face", seed=5)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(6)] + [grace_rgb()]
    save_package(bundle, tmp_path / "plain.safetensors")
    before = load(tmp_path / "plain.safetensors", detector="none").predict_arrays(crops)["age"]
    bundle.model.heads["age"].minor_guard = 0.01  # fires on any face with 1 % of its mass under 18
    bundle.config["model"]["heads"]["age"]["minor_guard"] = 0.01
    save_package(bundle, tmp_path / "g.safetensors")
    assert load_bundle(tmp_path / "g.safetensors").model.heads["age"].minor_guard == 0.01
    guarded = load(tmp_path / "g.safetensors", detector="none").predict_arrays(crops)["age"]
    np.testing.assert_allclose(guarded, np.minimum(before, GUARDED_AGE), atol=1e-3)
    assert (before > GUARDED_AGE).any()  # the guard changed something
    export_onnx(tmp_path / "g.safetensors", tmp_path / "g.onnx")
    onnx_ages = load(tmp_path / "g.onnx", detector="none").predict_arrays(crops)["age"]
    np.testing.assert_allclose(onnx_ages, guarded, atol=YEARS_ATOL)

