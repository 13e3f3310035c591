"""``agegender train``: a training run, then its best checkpoint scored on the run's own test split.

Writes ``results.json`` into the run folder: the facts of :func:`agegender.training.train.run_training`
(best checkpoint, parameter count, training time, split sizes) plus ``test``, every metric of
:func:`agegender.evaluation.evaluate.evaluate` on the test split when the split has one (per source, by name,
when the config lists ``data.sources``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agegender.evaluation.evaluate import evaluate
from agegender.training.datamodule import source_specs
from agegender.training.train import run_training


def train_and_test(cfg: Mapping[str, Any], output: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``output``, score the test split and write ``results.json``; returns what it holds
    (``{}`` on processes other than rank 0 of a multi-process run, which neither score nor write)."""
    result = run_training(cfg, output, resume=resume)
    if not result:
        return result
    if result["split_sizes"].get("test"):
        specs = source_specs(cfg["data"])
        scores = {spec["name"]: evaluate(result["best_checkpoint"], spec["dataset"], spec["root"], split="test",
                                         scheme=cfg["data"].get("age_scheme"), options=dict(spec.get("options") or {}))
                  for spec in specs}
        # one source: its metrics; several (data.sources): each source's test split scored on its own
        result["test"] = scores[specs[0]["name"]] if len(specs) == 1 else scores
    (Path(output) / "results.json").write_text(json.dumps(result, indent=2, default=str))
    return result
