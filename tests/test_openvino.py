"""The OpenVINO backend (agegender.inference.openvino_runtime): the bundled ONNX twins run by OpenVINO in float32
and, on CPUs with native bfloat16, in bfloat16; and which runtime `agegender.load` picks by default."""

from __future__ import annotations

import numpy as np
import pytest

import agegender
from agegender.bundled import onnx_twin, resolve_model_path
from agegender.data.images import load_image
from agegender.errors import AgeGenderError

ov = pytest.importorskip("openvino")
from agegender.inference import openvino_runtime
from agegender.inference.onnx_runtime import OnnxBackend
from agegender.inference.openvino_runtime import OpenVinoBackend

HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bfloat16")


@pytest.fixture(scope="module")
def twin():
    return onnx_twin(resolve_model_path("default-fast"))


@pytest.fixture(scope="module")
def crops(grace_hopper):
    rgb = load_image(grace_hopper)
    rng = np.random.default_rng(3)
    faces = [rgb[100:330, 150:380], rgb[90:340, 140:390], rgb]
    from agegender.data.preprocess import resize_rgb

    return np.stack([resize_rgb(c, (96, 96)) for c in faces]
                    + [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(37)])


def test_fp32_matches_onnx_runtime_and_reads_the_same_metadata(twin, crops):
    ref, ovb = OnnxBackend(twin), OpenVinoBackend(twin, precision="fp32")
    assert ovb.name == "openvino" and ovb.precision == "fp32"
    assert (ovb.config, ovb.preprocess, ovb.labels, ovb.meta, ovb.input_format, ovb.model_name) == (
        ref.config, ref.preprocess, ref.labels, ref.meta, ref.input_format, ref.model_name)
    for flip in (False, True):
        a, b = ref.run(crops, tta_flip=flip), ovb.run(crops, tta_flip=flip)  # 40 rows: three calls, the last of 8
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_allclose(b[k], a[k], atol=1e-3 if k == "age" else 1e-4, err_msg=k)


def test_streams_follow_threads_and_compiled_networks_are_cached(twin, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path))
    assert OpenVinoBackend(twin, precision="fp32").streams == max(1, os.cpu_count() or 1)
    assert OpenVinoBackend(twin, precision="fp32", threads=2).streams == 1
    assert any((tmp_path / "openvino").iterdir())


@needs_bf16
def test_bf16_stays_close_to_float32(twin, crops):
    ref, low = OnnxBackend(twin), OpenVinoBackend(twin, precision="bf16")
    assert low.precision == "bf16"
    a, b = ref.run(crops), low.run(crops)
    assert np.abs(b["gender_probs"] - a["gender_probs"]).max() < 0.05
    assert np.abs(b["age"][:2] - a["age"][:2]).max() < 1.0  # the two face crops; the whole photo and the noise
    # images have flat age distributions, whose median moves more
    assert np.abs(b["age"] - a["age"]).max() < 6.0
    assert not np.allclose(b["age_probs"], a["age_probs"], atol=1e-6)  # it did run in reduced precision
    assert (b["gender_probs"][:2].argmax(1) == a["gender_probs"][:2].argmax(1)).all()


def test_load_picks_bf16_openvino_only_where_the_cpu_has_amx(monkeypatch, grace_hopper):
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"sse4_2", "avx"})  # no candidate: nothing timed
    assert agegender.load("default-fast").backend.name == "onnx"
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"avx2", "amx_bf16", "avx512_bf16"})
    assert agegender.load("default-fast", precision="fp32").backend.name == "onnx"  # float32 asked for: exact
    if HAS_BF16:
        p = agegender.load("default-fast")
        assert (p.backend.name, p.info()["precision"]) == ("openvino", "bf16")
        assert p.info()["source"] == str(onnx_twin(resolve_model_path("default-fast")))
        assert len(p.predict(grace_hopper)) == 1


@needs_bf16
def test_avx512_bf16_without_amx_is_decided_by_a_cached_speed_check(monkeypatch, tmp_path, twin):
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"avx512_bf16"})  # no int8 candidate here
    for ratio, verdict in ((1.6, "bf16"), (0.8, None)):
        (tmp_path / openvino_runtime.CHOICE_FILE).unlink(missing_ok=True)
        calls = []
        monkeypatch.setattr(openvino_runtime, "speed_ratio",
                            lambda p, c_path, prec, r=ratio, c=calls: c.append((c_path, prec)) or r)
        assert openvino_runtime.preferred_precision(twin) == verdict
        assert openvino_runtime.preferred_precision(twin) == verdict  # the second answer comes from the cache
        assert calls == [(twin, "bf16")]
        assert agegender.load("default-fast").backend.name == ("openvino" if verdict else "onnx")


def test_int8_twin_is_chosen_by_a_cached_speed_check_on_avx2_and_later(monkeypatch, tmp_path, twin):
    """With an int8 twin, CPUs with AVX2 or later time it against ONNX Runtime's float32 once and keep the
    faster; older CPUs and AMX CPUs (bfloat16) do not time it."""
    from agegender.bundled import int8_twin

    int8 = int8_twin(resolve_model_path("default-fast"))
    assert int8 is not None and int8.name == "default-fast.int8.onnx"
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(openvino_runtime, "speed_ratio",
                        lambda p, c_path, prec, c=calls: c.append(prec) or {"int8": 2.4, "bf16": 1.3}[prec])
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"sse4_2", "avx"})
    assert openvino_runtime.preferred_precision(twin, int8) is None and calls == []
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"avx2", "amx_bf16", "avx512_vnni"})
    assert openvino_runtime.preferred_precision(twin, int8) == "bf16" and calls == []
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
    assert openvino_runtime.preferred_precision(twin, int8) == "int8" and sorted(calls) == ["bf16", "int8"]
    assert openvino_runtime.preferred_precision(twin, int8) == "int8" and len(calls) == 2  # cached
    p = agegender.load("default-fast")
    assert (p.backend.name, p.info()["precision"], p.info()["source"]) == ("openvino", "int8", str(int8))
    # float32 asked for: ONNX Runtime on the float twin, whatever the check found
    assert agegender.load("default-fast", precision="fp32").backend.name == "onnx"
    # a candidate OpenVINO cannot run is skipped, not an error
    (tmp_path / openvino_runtime.CHOICE_FILE).unlink()

    def broken(p, c_path, prec):
        raise RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:\nno kernel for this CPU")

    monkeypatch.setattr(openvino_runtime, "speed_ratio", broken)
    assert openvino_runtime.preferred_precision(twin, int8) is None
    assert agegender.load("default-fast").backend.name == "onnx"
    # a slower int8 (plain AVX2 here) is not taken
    (tmp_path / openvino_runtime.CHOICE_FILE).unlink()
    monkeypatch.setattr(openvino_runtime, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(openvino_runtime, "speed_ratio", lambda p, c_path, prec: 0.9)
    assert openvino_runtime.preferred_precision(twin, int8) is None


@pytest.mark.parametrize("name", ["default", "default-fast"])
def test_int8_twin_agrees_with_the_float_twin(name, utkface_dir, grace_hopper):
    """precision="int8" runs the bundled int8 twin on OpenVINO; on real face crops it stays close to float32 (its
    accuracy on the test splits is in docs/results.md)."""
    p = agegender.load(name, precision="int8", detector="none")
    ref = agegender.load(name, precision="fp32", detector="none")
    assert (p.backend.name, p.info()["precision"]) == ("openvino", "int8")
    faces = [load_image(f) for f in sorted((utkface_dir / "images").iterdir())[::500][:24]]
    a, b = ref.predict_arrays(faces), p.predict_arrays(faces)
    assert np.abs(b["age"] - a["age"]).mean() < 1.0
    assert np.abs(b["gender_probs"] - a["gender_probs"]).mean() < 0.02
    assert (b["gender_probs"].argmax(1) == a["gender_probs"].argmax(1)).mean() >= 0.9
    assert not np.allclose(b["age_probs"], a["age_probs"], atol=1e-6)  # it did run in int8
    assert len(agegender.load(name, precision="int8").predict(grace_hopper)) == 1


def test_int8_asked_for_where_there_is_none_is_a_one_line_error(twin):
    for kwargs, match in (({"backend": "onnx"}, "runs on OpenVINO"), ({"device": "cuda"}, "runs on OpenVINO")):
        with pytest.raises(AgeGenderError, match=match):
            agegender.load("default-fast", precision="int8", **kwargs)
    with pytest.raises(AgeGenderError, match="no int8 version"):
        agegender.load("default-accurate", precision="int8")
    with pytest.raises(AgeGenderError, match="not an int8 file") as e:
        agegender.load(twin, precision="int8")  # a float ONNX file
    assert "\n" not in str(e.value)


@needs_bf16
def test_speed_ratio_times_both_runtimes(twin):
    assert openvino_runtime.speed_ratio(twin, rows=4, min_seconds=0.0) > 0


def test_speed_ratio_times_the_int8_twin(twin):
    from agegender.bundled import int8_twin

    int8 = int8_twin(resolve_model_path("default-fast"))
    assert openvino_runtime.speed_ratio(twin, int8, "int8", rows=4, min_seconds=0.0) > 0


def test_explicit_openvino_backend_uses_the_bundled_twin(twin):
    p = agegender.load("default-fast", backend="openvino", precision="fp32")
    assert (p.backend.name, p.backend.source, p.info()["precision"]) == ("openvino", str(twin), "fp32")


def test_bad_options_and_files_are_one_line_errors(twin, tmp_path):
    with pytest.raises(AgeGenderError, match="unknown precision 'fp8'"):
        OpenVinoBackend(twin, precision="fp8")
    with pytest.raises(AgeGenderError, match="runs on the CPU"):
        OpenVinoBackend(twin, device="cuda")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(AgeGenderError, match="not a loadable ONNX model") as e:
        OpenVinoBackend(junk, precision="fp32")
    assert "\n" not in str(e.value)
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    bare = tmp_path / "bare.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), bare)
    with pytest.raises(AgeGenderError, match="no agegender metadata"):
        OpenVinoBackend(bare, precision="fp32")
    if not HAS_BF16:
        with pytest.raises(AgeGenderError, match="no native bfloat16"):
            OpenVinoBackend(twin, precision="bf16")


def test_concurrent_calls_of_varying_sizes_each_get_their_own_rows(twin):
    """Worker threads share one backend, each with its own infer request; every call returns its own rows."""
    from concurrent.futures import ThreadPoolExecutor

    be = OpenVinoBackend(twin, precision="fp32")
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 256, (int(n), 96, 96, 3), dtype=np.uint8) for n in rng.integers(1, 40, 24)]
    want = [be.run(b)["gender_probs"] for b in batches]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda b: be.run(b)["gender_probs"], batches))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-5)
