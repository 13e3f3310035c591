"""The ONNX Runtime backend: an ``.onnx`` file written by :func:`agegender.inference.onnx_export.export_onnx`
(the bundled models ship one each), self-describing through its metadata. It needs neither torch nor timm, so
predicting with it loads only ONNX Runtime."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError

#: key of the JSON blob inside an exported ONNX model's ``metadata_props``
ONNX_META_KEY = "agegender"


class ExportedModel:
    """What every runtime of an exported ``.onnx`` file shares: its metadata (config, preprocessing, labels),
    splitting a batch into calls of :attr:`MAX_ROWS` rows run ``streams`` at a time, and the flip average.
    A runtime sets :attr:`streams` and :attr:`outputs`, then calls :meth:`_read_meta` (which starts the pool of
    ``streams`` threads), and implements :meth:`_call` (one chunk → the outputs, in :attr:`outputs` order)."""

    name = "onnx"
    #: rows per runtime call: small CNNs run fastest per crop at 16 (on 2 cores, AMD EPYC: 773 crops/s at 16,
    #: 542 at 64; docs/performance.md), so larger batches are split
    MAX_ROWS = 16
    streams = 1
    outputs: list[str]

    @staticmethod
    def default_streams(device: str, threads: int | None, streams: int | None) -> int:
        """One single-threaded call per CPU unless ``threads`` (one call at a time) or ``streams`` is given."""
        on_cpu = not str(device).startswith("cuda")
        if streams is None:
            streams = (os.cpu_count() or 1) if (threads is None and on_cpu) else 1
        return max(1, int(streams))

    def _read_meta(self, raw: str | None, path: str | Path) -> None:
        if not raw:
            raise AgeGenderError(
                f"{path} has no agegender metadata; export it with "
                "`agegender export CHECKPOINT --onnx OUT.onnx`",
                code="bad_model",
            )
        meta: dict[str, Any] = json.loads(raw)
        self.config = meta["config"]
        self.dims = meta["dims"]
        self.preprocess = meta["preprocess"]
        self.labels = meta.get("labels") or {}
        self.meta = meta.get("meta") or {}
        # "uint8": RGB uint8 crops [batch, H, W, 3], normalised inside the graph; "float" (files exported
        # before the uint8 input existed, grayscale models): the normalised NCHW batch
        self.input_format = str(meta.get("input_format", "float"))
        self.source = str(path)
        self.max_rows = self.MAX_ROWS
        self.model_name = str(self.meta.get("name") or self.config.get("name") or Path(path).stem)
        # threads start on first use
        self._pool = (ThreadPoolExecutor(self.streams, thread_name_prefix=f"agegender-{self.name}")
                      if self.streams > 1 else None)

    def _call(self, arr: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def run(self, x: Any, tta_flip: bool = False) -> dict[str, np.ndarray]:
        """Decoded outputs of a batch in this file's ``input_format`` (uint8 NHWC crops or normalised
        NCHW floats; a torch tensor is taken too)."""
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        n = arr.shape[0]
        uint8 = self.input_format == "uint8"
        if tta_flip:  # both halves in one call, averaged below (width is axis 2 in NHWC, 3 in NCHW)
            arr = np.concatenate([arr, arr[:, :, ::-1] if uint8 else arr[:, :, :, ::-1]])
        arr = np.ascontiguousarray(arr, dtype=np.uint8 if uint8 else np.float32)
        chunks = [arr[i:i + self.max_rows] for i in range(0, len(arr), self.max_rows)]
        if self._pool is not None and len(chunks) > 1:  # up to `streams` calls at once
            parts = list(self._pool.map(self._call, chunks))
        else:
            parts = [self._call(c) for c in chunks]
        out = {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(self.outputs)}
        if tta_flip:
            out = {k: (v[:n] + v[n:]) / 2 for k, v in out.items()}
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


class OnnxBackend(ExportedModel):
    """An ONNX file written by :func:`agegender.inference.onnx_export.export_onnx`, run by ONNX Runtime.

    Everything the predictor needs (config, preprocessing, labels) comes from the file's metadata, so the
    ``.onnx`` file alone is a complete model.
    """

    name = "onnx"
    #: ONNX Runtime runs the file's float32 weights as they are
    precision = "fp32"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 streams: int | None = None) -> None:
        """``threads``: ONNX Runtime's intra-op threads per call. ``streams``: calls run at once (from several
        Python threads on the one session; ONNX Runtime's ``run`` is thread-safe). Default: with ``threads``
        unset on a CPU, one single-threaded call per CPU (:attr:`streams`), which keeps every core busy
        without the hand-offs of a multi-threaded call (docs/performance.md); with ``threads`` set, one call
        at a time on that many threads."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise AgeGenderError(
                "the ONNX backend needs onnxruntime: pip install 'agegender[onnx]'", code="missing_dependency"
            ) from None
        on_cpu = not str(device).startswith("cuda")
        #: model calls run at once by :meth:`run` and by the predictor's pipelines
        self.streams = self.default_streams(device, threads, streams)
        opts = ort.SessionOptions()
        if threads or self.streams > 1:
            opts.intra_op_num_threads = int(threads or 1)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if not on_cpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise AgeGenderError(f"{path} is not a loadable ONNX model ({e})", code="bad_model") from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name
        self._read_meta(self.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY), path)

    def _call(self, arr: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.outputs, {self.input_name: arr})
