"""Scale-out batch prediction with Ray Data: the same predictor over millions of files, on a local Ray
instance or a cluster, written as Parquet (one row per person plus one status row per image).

>>> from agegender.inference.distributed import predict_directory_ray
>>> predict_directory_ray(["photos/"], "predictions/", model="default")    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError

log = logging.getLogger(__name__)


class PredictBatch:
    """Ray Data callable class: loads the predictor once per actor, turns a batch of paths into records."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        import agegender._compat  # noqa: F401  (torchvision compat inside the worker process)
        from agegender.inference.loading import load

        self.predictor = load(model, **options)
        self.columns = self.predictor.record_schema()

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        from agegender.inference.records import arrow_schema, to_records

        paths = [str(p) for p in batch["path"]]
        rows = [
            row
            for res in self.predictor.predict_batch(paths, workers=1)
            for row in to_records(res, self.columns)
        ]
        return pa.Table.from_pylist(rows, schema=arrow_schema(self.columns))


def predict_directory_ray(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    output_dir: str | os.PathLike,
    model: str = "default",
    address: str | None = None,
    batch_size: int = 64,
    num_cpus: int | None = None,
    concurrency: int | None = None,
    cpus_per_actor: float = 1.0,
    recursive: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    **predictor_options: Any,
) -> dict[str, Any]:
    """Predict over files/folders with a Ray Data pipeline and write Parquet files into ``output_dir``.

    Args:
        paths: files and folders (folders are searched recursively for images).
        output_dir: a new or empty folder for the Parquet files (``overwrite`` empties it first).
        model: bundled name or checkpoint/ONNX path (every Ray node must see the same path).
        address: ``None``/``"local"`` starts a local Ray instance; otherwise a cluster address such as
            ``"ray://head:10001"`` or ``"auto"`` (agegender must be installed on the workers).
        batch_size: images per actor call (their crops share model batches).
        num_cpus: CPUs of the local instance (default: all).
        concurrency: number of predictor actors (default: CPUs / ``cpus_per_actor``).
        predictor_options: passed to :func:`agegender.load` (``detector``, ``mode``, ``min_confidence``, ...).

    Returns a summary: images, person rows, status counts, seconds, images per second, output folder.
    """
    try:
        import ray
    except ImportError:
        raise AgeGenderError(
            "--ray needs Ray: pip install 'agegender[ray]'", code="missing_dependency"
        ) from None
    from agegender.inference.registry import BUNDLED, resolve_model_path

    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise AgeGenderError(
                f"output folder {out} is not empty; choose a new folder or pass overwrite", code="bad_option"
            )
        shutil.rmtree(out)
    model_ref = model if model in BUNDLED else str(resolve_model_path(model).resolve())
    from agegender.inference.predictor import list_inputs

    files = [
        f for f, _ in list_inputs([paths] if isinstance(paths, (str, os.PathLike)) else paths, recursive)
    ]
    if not files:
        raise AgeGenderError("no image files found in the given paths", code="missing_file")
    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        local = address in (None, "", "local")
        ray.init(
            address=None if local else address,
            num_cpus=num_cpus if local else None,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = concurrency or max(1, int(total_cpus // cpus_per_actor))
        threads = max(1, int(cpus_per_actor))
        options = {"threads": threads, "workers": 1, **predictor_options}
        ds = ray.data.from_items(
            [{"path": f} for f in files],
            override_num_blocks=max(1, min(len(files) // max(batch_size, 1) + 1, 4 * actors)),
        )
        ds = ds.map_batches(
            PredictBatch,
            fn_constructor_args=(model_ref, options),
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            batch_format="numpy",
        )
        try:
            ds.write_parquet(str(out))
        except Exception as e:  # Ray wraps worker errors (e.g. a model path the nodes lack)
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise AgeGenderError(f"the Ray job failed: {first}", code="ray_failed") from e
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    summary = summarize_parquet(out)
    summary.update(
        {
            "seconds": round(seconds, 2),
            "images_per_second": round(summary["images"] / seconds, 1),
            "output": str(out),
            "address": address or "local",
        }
    )
    return summary


def summarize_parquet(folder: str | os.PathLike) -> dict[str, Any]:
    """Counts of images, person rows and image statuses in a Ray prediction output folder."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(folder), columns=["record", "status"])
    record = table.column("record").to_pylist()
    status = table.column("status").to_pylist()
    counts: dict[str, int] = {}
    for r, s in zip(record, status):
        if r == "image":
            counts[s] = counts.get(s, 0) + 1
    return {"images": sum(counts.values()), "people": sum(r == "person" for r in record), "status": counts}
