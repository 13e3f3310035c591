"""The PyTorch runtime behind the predictor: a model package run eagerly, then traced and frozen, turning a
normalised NCHW float batch into the dict of decoded numpy arrays (``age``, ``age_probs``, ``gender_probs``, ...)
that :class:`~agegender.inference.onnx_runtime.OnnxBackend` returns too. :func:`agegender.inference.runtime.open_backend`
picks between them."""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agegender.errors import AgeGenderError
from agegender.inference.machine import best_seconds

log = logging.getLogger(__name__)

class TorchBackend:
    """A :class:`~agegender.models.package.ModelBundle` run by PyTorch (no grad).

    It starts in eager mode (``channels_last``). On a CPU, once it has run ``optimize_after`` crops (a batch
    job, a video, a server), it traces the network once and freezes it for inference
    (``torch.jit.trace`` → ``torch.jit.freeze`` → ``torch.jit.optimize_for_inference``: batch norm folded
    into the convolutions, oneDNN kernels). That costs about 2 s once, so one-photo runs stay eager, and it
    makes each later batch faster (one 96-px face: 18 → 11 ms on one core; `benchmarks/crops_per_second.py`).
    The outputs agree with eager mode to ~1e-5 (tested). ``optimize_after=None`` keeps eager mode. If
    tracing fails (an unusual network), it stays eager and says so once in the log.

    ``precision="bf16"`` traces a bfloat16 copy of the network instead (the decoding of its outputs stays in
    float32). On CPUs with native bfloat16 instructions (AVX512-BF16 or AMX; :func:`cpu_has_bf16`) that was
    1.4–1.8x the crops per second of the frozen float32 network on an AMD EPYC host, but 0.7x on an Intel Xeon
    host with AVX512-BF16 (docs/performance.md). It costs a small change of the
    outputs (`benchmarks/precision_agreement.py`: on the default model's test split, 99.6 % / 98.6 % of gender /
    ethnicity decisions unchanged, age MAE +0.02 years). The first ``optimize_after`` crops still run in
    float32, so a batch job's results differ slightly from one-photo runs; that is why it is opt-in.
    ``"auto"`` measures instead of guessing: on a CPU with native bfloat16 it traces both networks when it
    freezes, times each on the batch at hand and keeps the faster (:attr:`precision` then says which); on
    other CPUs (where bfloat16 is emulated and slow) it is float32. ``"fp32"`` is the default. The bfloat16
    trace is checked against the float32 network on its first batch and not used if a probability differs
    by more than :attr:`BF16_TOLERANCE`.
    """

    name = "torch"
    #: what :meth:`run` takes: a normalised NCHW float batch (``Preprocessing.batch`` builds it)
    input_format = "float"
    #: crops run in eager mode before the network is traced and frozen (see the class docstring)
    OPTIMIZE_AFTER = 64
    #: largest output difference (logits) between the frozen trace and eager mode that is accepted
    FREEZE_TOLERANCE = 1e-3
    #: largest difference of a decoded probability between the bfloat16 trace and the float32 network
    BF16_TOLERANCE = 0.1
    PRECISIONS = ("auto", "fp32", "bf16")

    def __init__(
        self, path: str | Path | None, device: str = "cpu", threads: int | None = None, bundle: Any = None,
        optimize_after: int | None = OPTIMIZE_AFTER, precision: str = "fp32",
    ) -> None:
        from agegender.models.package import load_bundle

        if precision not in self.PRECISIONS:
            raise AgeGenderError(
                f"unknown precision {precision!r}; choose one of {', '.join(self.PRECISIONS)}", code="bad_option")

        if threads:
            torch.set_num_threads(int(threads))
        self.bundle = bundle if bundle is not None else load_bundle(path)  # type: ignore[arg-type]
        path = path if path is not None else self.bundle.source
        self.device = torch.device(device)
        self.bundle.model.to(self.device).to(memory_format=torch.channels_last)
        self.config = self.bundle.config
        self.dims = self.bundle.dims
        self.preprocess = self.bundle.preprocess
        self.labels = self.bundle.labels
        self.meta = self.bundle.meta
        self.source = str(path)
        self.model_name = self.bundle.name
        self.optimize_after = optimize_after if self.device.type == "cpu" else None
        #: precision of the frozen network: ``fp32``/``bf16``, or ``auto`` until the freeze has timed both
        #: (only on a CPU that computes bfloat16 natively; elsewhere ``auto`` is ``fp32`` at once)
        self.precision = "fp32" if precision == "auto" and not cpu_has_bf16() else precision
        self._seen = 0
        self._frozen: Any = None  # the traced + frozen network, once built
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(
        cls, bundle: Any, device: str = "cpu", optimize_after: int | None = OPTIMIZE_AFTER, precision: str = "fp32",
    ) -> TorchBackend:
        """Wrap an already loaded :class:`~agegender.models.package.ModelBundle`."""
        return cls(None, device, bundle=bundle, optimize_after=optimize_after, precision=precision)

    @property
    def _dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def optimized(self) -> bool:
        """Whether the network now runs traced and frozen."""
        return self._frozen is not None and self._frozen is not False

    def _network(self, x: torch.Tensor) -> Any:
        """The callable to run ``x`` through: eager until ``optimize_after`` crops, then the frozen trace."""
        self._seen += int(x.shape[0])
        if self._frozen is None and self.optimize_after is not None and self._seen > self.optimize_after:
            with self._lock:
                if self._frozen is None:
                    if self.precision == "auto":
                        self._frozen, self.precision = self._freeze_fastest(x)
                    else:
                        self._frozen = self._freeze(x[:2], self._dtype)
        return self._frozen if self.optimized else self.bundle.model

    def _freeze_fastest(self, batch: torch.Tensor) -> tuple[Any, str]:
        """``precision="auto"``: freeze the float32 and the bfloat16 network, time both on ``batch`` (best of
        3 runs each) and return the faster trace with its precision."""
        timed: dict[str, tuple[float, Any]] = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            frozen = self._freeze(batch[:2], dtype)
            if frozen is False:
                continue
            x = batch.contiguous().to(dtype)
            timed[name] = (best_seconds(lambda f=frozen, x=x: f(x)), frozen)
        if not timed:
            return False, "fp32"
        name = min(timed, key=lambda k: timed[k][0])
        log.info("%s: precision auto -> %s (%s per batch of %d)", self.model_name, name,
                 ", ".join(f"{k} {v[0] * 1e3:.1f} ms" for k, v in timed.items()), batch.shape[0])
        return timed[name][1], name

    def _freeze(self, example: torch.Tensor, dtype: torch.dtype = torch.float32) -> Any:
        import warnings

        model = self.bundle.model.eval()
        net = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        x = example.contiguous().to(dtype)
        label = "bf16" if dtype == torch.bfloat16 else "fp32"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python values
                traced = torch.jit.trace(net, x, strict=False)
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
                want, got = model(example), frozen(x)
                if dtype == torch.float32:  # raw outputs agree to rounding
                    worst = max(float((want[k].float() - got[k].float()).abs().max()) for k in want)
                    limit = self.FREEZE_TOLERANCE
                else:  # bfloat16 keeps ~3 significant digits: compare what users get, the probabilities
                    want, got = model.decode(want), model.decode({k: v.float() for k, v in got.items()})
                    worst = max(float((want[k] - got[k]).abs().max()) for k in want if k.endswith("_probs"))
                    limit = self.BF16_TOLERANCE
        except Exception as e:  # noqa: BLE001 - any tracing failure: keep the (correct) eager path
            log.warning("%s: tracing for faster CPU inference (%s) failed (%s: %s); staying in eager mode",
                        self.model_name, label, type(e).__name__, e)
            return False
        if not worst <= limit:  # a trace that does not reproduce the network is never used
            log.warning("%s: the frozen %s trace differs from the network by %.3g; staying in eager mode",
                        self.model_name, label, worst)
            return False
        return frozen

    def run(self, x: torch.Tensor | np.ndarray, tta_flip: bool = False) -> dict[str, np.ndarray]:
        """Decoded outputs of a normalised NCHW float batch; ``tta_flip`` averages with the mirrored crops (same
        result as ``ModelBundle.predict_tensor``, but one forward pass over both halves: cheaper for small
        batches)."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        n = x.shape[0]
        x = x.to(self.device)
        if tta_flip:
            x = torch.cat([x, torch.flip(x, dims=[3])])
        with torch.inference_mode():
            net = self._network(x)
            if net is self.bundle.model:
                dec = net.decode(net(x.contiguous(memory_format=torch.channels_last)))
            else:  # the frozen trace, in its own dtype; decoding (softmax, expected age) in float32
                raw = net(x.contiguous().to(self._dtype))
                dec = self.bundle.model.decode({k: v.float() for k, v in raw.items()})
        out = {k: v.float().cpu().numpy() for k, v in dec.items()}
        return {k: (v[:n] + v[n:]) / 2 for k, v in out.items()} if tta_flip else out


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
