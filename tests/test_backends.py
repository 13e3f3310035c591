"""TorchBackend: eager for the first crops, then a traced + frozen network with the same outputs; any
tracing problem keeps the eager path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import agegender  # noqa: F401  (torchvision compat first)
from agegender.inference.backends import TorchBackend

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model


def _batch(b: TorchBackend, n: int, seed: int = 0) -> torch.Tensor:
    """n random normalised crops of the model's input size."""
    s = b.preprocess["input_size"]
    h, w = (s, s) if isinstance(s, int) else s
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(np.float32))


@pytest.mark.parametrize("model", ["tiny_face_model", "tiny_body_model", "default"])
def test_freezes_after_threshold_with_the_same_outputs(model: str, request: pytest.FixtureRequest) -> None:
    from agegender.bundled import resolve_model_path

    path = resolve_model_path("default") if model == "default" else request.getfixturevalue(model)
    eager = TorchBackend(path, optimize_after=None)
    fast = TorchBackend(path, optimize_after=6)
    x4 = _batch(fast, 4, seed=1)
    fast.run(x4)
    assert not fast.optimized  # 4 crops: still eager
    fast.run(x4)
    assert fast.optimized  # 8 > 6: traced and frozen
    x5 = _batch(fast, 5, seed=2)  # another batch size than the trace's
    for flip in (False, True):
        a, b = eager.run(x5, tta_flip=flip), fast.run(x5, tta_flip=flip)
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)
    assert not eager.optimized


def test_tracing_failure_or_mismatch_stays_eager(tiny_face_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    b = TorchBackend(tiny_face_model, optimize_after=0)
    x = _batch(b, 3)
    want = TorchBackend(tiny_face_model, optimize_after=None).run(x)

    def broken(*a, **k):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(torch.jit, "freeze", broken)
    got = b.run(x)
    assert not b.optimized and "staying in eager mode" in caplog.text
    for k in want:
        np.testing.assert_allclose(want[k], got[k], atol=1e-6)
    monkeypatch.undo()

    # a trace whose outputs differ from the network's is refused
    b2 = TorchBackend(tiny_face_model, optimize_after=0)
    real = torch.jit.optimize_for_inference

    def off_by_one(mod):
        frozen = real(mod)
        return lambda t: {k: v + 1.0 for k, v in frozen(t).items()}

    monkeypatch.setattr(torch.jit, "optimize_for_inference", off_by_one)
    caplog.clear()
    b2.run(x)
    assert not b2.optimized and "differs from the network" in caplog.text


@pytest.mark.parametrize("model", ["tiny_face_model", "tiny_body_model", "default"])
def test_bf16_trace_runs_in_bfloat16_and_stays_close(model: str, request: pytest.FixtureRequest) -> None:
    from agegender.bundled import resolve_model_path

    path = resolve_model_path("default") if model == "default" else request.getfixturevalue(model)
    ref = TorchBackend(path, optimize_after=None)
    b = TorchBackend(path, optimize_after=0, precision="bf16")
    x = _batch(b, 6, seed=3)
    a, got = ref.run(x, tta_flip=True), b.run(x, tta_flip=True)
    assert b.optimized and b.precision == "bf16"
    # the traced graph really computes in bfloat16 (its convolution weights are bfloat16 constants) ...
    graph = str(b._frozen.graph)
    assert "BFloat16" in graph
    # ... while the decoded outputs are float32
    assert all(v.dtype == np.float32 for v in got.values())
    for k in a:
        if k.endswith("_probs"):
            np.testing.assert_allclose(a[k], got[k], atol=TorchBackend.BF16_TOLERANCE, err_msg=k)
            assert not np.array_equal(a[k], got[k])  # it did not silently run float32
    # the float32 copy the predictor decodes with is untouched
    assert next(b.bundle.model.parameters()).dtype == torch.float32


def test_bf16_mismatch_stays_eager_and_precision_options(tiny_face_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from agegender.errors import AgeGenderError
    from agegender.inference import backends
    from agegender.inference.runtime import open_backend

    monkeypatch.setattr(TorchBackend, "BF16_TOLERANCE", -1.0)  # no trace can pass
    b = TorchBackend(tiny_face_model, optimize_after=0, precision="bf16")
    x = _batch(b, 3)
    out = b.run(x)
    assert not b.optimized and "frozen bf16 trace differs" in caplog.text
    want = TorchBackend(tiny_face_model, optimize_after=None).run(x)
    for k in want:  # eager float32 results
        np.testing.assert_allclose(want[k], out[k], atol=1e-6)

    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    assert TorchBackend(tiny_face_model, precision="auto").precision == "fp32"
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    assert TorchBackend(tiny_face_model, precision="auto").precision == "auto"  # decided when frozen
    assert TorchBackend(tiny_face_model).precision == "fp32"  # the default
    with pytest.raises(AgeGenderError, match="unknown precision 'fp8'"):
        TorchBackend(tiny_face_model, precision="fp8")
    with pytest.raises(AgeGenderError, match="needs backend=.openvino."):
        open_backend(tiny_face_model, backend="onnx", precision="bf16")
