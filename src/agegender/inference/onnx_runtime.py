"""The ONNX Runtime backend: an ``.onnx`` file written by :func:`agegender.inference.onnx_export.export_onnx`
(the bundled models ship one each), self-describing through its metadata. It needs neither torch nor timm, so
predicting with it loads only ONNX Runtime."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError

#: key of the JSON blob inside an exported ONNX model's ``metadata_props``
ONNX_META_KEY = "agegender"


class OnnxBackend:
    """An ONNX file written by :func:`agegender.inference.onnx_export.export_onnx`, run by ONNX Runtime.

    Everything the predictor needs (config, preprocessing, labels) comes from the file's metadata, so the
    ``.onnx`` file alone is a complete model.
    """

    name = "onnx"
    #: rows per ONNX Runtime call: small CNNs run fastest per crop at 16 (on 2 cores, AMD EPYC: 773 crops/s at 16,
    #: 542 at 64; docs/performance.md), so larger batches are split
    MAX_ROWS = 16
    #: at most this many single-threaded sessions share a large batch (see :meth:`run`)
    MAX_STREAMS = 8

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise AgeGenderError(
                "the ONNX backend needs onnxruntime: pip install 'agegender[onnx]'", code="missing_dependency"
            ) from None
        self._ort = ort
        self._providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            self._providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = self._session(path, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise AgeGenderError(f"{path} is not a loadable ONNX model ({e})", code="bad_model") from None
        # Batches of several chunks run on ``streams`` single-threaded sessions side by side: a small CNN on
        # 16 rows parallelises poorly inside one call, and one thread per call does about 1.4x the crops per
        # CPU-second of two threads on one call (benchmarks/crops_per_second.py, docs/performance.md).
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.streams = 1 if len(self._providers) > 1 else max(1, min(int(threads or cpus), self.MAX_STREAMS))
        self._stream_sessions: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        raw = self.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
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
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name
        self.source = str(path)
        self.max_rows = self.MAX_ROWS
        self.model_name = str(self.meta.get("name") or self.config.get("name") or Path(path).stem)

    def _session(self, path: str | Path, threads: int | None) -> Any:
        opts = self._ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            if int(threads) == 1:
                opts.inter_op_num_threads = 1
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self._ort.InferenceSession(str(path), opts, providers=self._providers)

    def _streams(self) -> list[Any]:
        """The single-threaded sessions, made on the first batch that needs them."""
        with self._lock:
            if not self._stream_sessions:
                self._stream_sessions = [self._session(self.source, 1) for _ in range(self.streams)]
                self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="agegender-onnx")
        return self._stream_sessions

    def _run_chunks(self, arr: np.ndarray) -> list[list[np.ndarray]]:
        starts = range(0, len(arr), self.max_rows)
        if self.streams < 2 or len(starts) < 2:
            return [self.session.run(self.outputs, {self.input_name: arr[i:i + self.max_rows]}) for i in starts]
        sessions = self._streams()
        groups = [list(starts)[k::len(sessions)] for k in range(len(sessions))]

        def work(k: int) -> list[tuple[int, list[np.ndarray]]]:
            sess = sessions[k]
            return [(i, sess.run(self.outputs, {self.input_name: arr[i:i + self.max_rows]})) for i in groups[k]]

        assert self._pool is not None
        done = dict(p for part in self._pool.map(work, range(len(groups))) for p in part)
        return [done[i] for i in starts]

    def run(self, x: Any, tta_flip: bool = False) -> dict[str, np.ndarray]:
        """Decoded outputs of a batch in this file's ``input_format`` (uint8 NHWC crops or normalised
        NCHW floats; a torch tensor is taken too)."""
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        n = arr.shape[0]
        uint8 = self.input_format == "uint8"
        if tta_flip:  # both halves in one call, averaged below (width is axis 2 in NHWC, 3 in NCHW)
            arr = np.concatenate([arr, arr[:, :, ::-1] if uint8 else arr[:, :, :, ::-1]])
        arr = np.ascontiguousarray(arr, dtype=np.uint8 if uint8 else np.float32)
        parts = self._run_chunks(arr)
        out = {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(self.outputs)}
        if tta_flip:
            out = {k: (v[:n] + v[n:]) / 2 for k, v in out.items()}
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
