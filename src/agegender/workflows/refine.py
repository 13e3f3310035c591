"""Iterative model refinement (aminian_noubir §4.5, Fig. 7, Table 4): gender net → age net on its embedding →
gender net on the age net's embedding → age net again ..., each step a full training run on the same split."""

from __future__ import annotations

import argparse
import copy
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agegender.errors import AgeGenderError
from agegender.training.config import load_config
from agegender.workflows.train import train_and_test

log = logging.getLogger(__name__)

#: composition_args keys that name the embedding net or configure the refinement, not the network shape
_SOURCE_KEYS = ("gender_checkpoint", "source_checkpoint", "refine")
FINALS = ("age", "gender")


def _cross_modal(cfg: Mapping[str, Any], shape_args: Mapping[str, Any], source: str, data: Mapping[str, Any],
                 name: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(cfg))
    out["data"] = copy.deepcopy(dict(data))
    out["name"] = name
    out["model"]["composition"] = "cross_modal"
    out["model"]["composition_args"] = {**copy.deepcopy(dict(shape_args)), "source_checkpoint": str(source)}
    return out


def iterative_refinement(
    config_gender: Mapping[str, Any],
    config_age: Mapping[str, Any],
    rounds: int = 1,
    output: str | Path = "runs/refine",
    final: str = "age",
) -> dict[str, Any]:
    """Train Gender 1, Age 1, then ``rounds`` × (Gender k+1 on Age k, Age k+1 on Gender k+1) (§4.5, Fig. 7).

    ``config_gender`` is a resolved plain gender-net config (multi-task composition, e.g. one gender head);
    ``config_age`` a resolved ``cross_modal`` age config (its checkpoint key is replaced at each step). Both
    train on ``config_age["data"]``. Returns ``{"steps": [...]}`` with each step's task, round, run folder,
    best checkpoint and test metrics; the same goes to ``<output>/refinement.json``.
    """
    if config_age["model"].get("composition") != "cross_modal":
        raise AgeGenderError("refinement: the age config must use model.composition: cross_modal", code="bad_config")
    if final not in FINALS:
        raise AgeGenderError(f"refinement: final must be age or gender, got {final!r}", code="bad_config")
    if int(rounds) < 0:
        raise AgeGenderError(f"refinement: rounds must be >= 0, got {rounds}", code="bad_config")
    out = Path(output)
    data = config_age["data"]
    shape = {k: v for k, v in dict(config_age["model"].get("composition_args") or {}).items() if k not in _SOURCE_KEYS}
    plan: list[tuple[str, int]] = [("gender", 1), ("age", 1)]
    for r in range(2, int(rounds) + 2):
        plan += [("gender", r), ("age", r)]
    if final == "gender" and len(plan) > 2:
        plan.pop()
    steps: list[dict[str, Any]] = []
    checkpoint: dict[str, str] = {}
    for i, (task, k) in enumerate(plan, start=1):
        run = out / f"step{i}_{task}{k}"
        base = config_gender if task == "gender" else config_age
        name = f"{base.get('name') or task}_refine_{task}{k}"
        other = "age" if task == "gender" else "gender"
        if task == "gender" and k == 1:  # the plain gender net of §4.3
            cfg = copy.deepcopy(dict(config_gender))
            cfg["data"], cfg["name"] = copy.deepcopy(dict(data)), name
        else:
            cfg = _cross_modal(base, shape, checkpoint[other], data, name)
        log.info("refinement step %d: %s %d -> %s", i, task, k, run)
        result = train_and_test(cfg, run)
        checkpoint[task] = str(result.get("best_checkpoint") or run / "checkpoints" / "last.ckpt")
        steps.append({"step": i, "task": task, "round": k, "output": str(run), "best_checkpoint": checkpoint[task],
                      "fed_by": None if (task, k) == ("gender", 1) else checkpoint[other], "test": result.get("test")})
    summary = {"rounds": int(rounds), "final": final, "steps": steps}
    out.mkdir(parents=True, exist_ok=True)
    (out / "refinement.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _resolve(path: str, config_path: Path) -> Path:
    p = Path(path)
    for cand in (config_path.parent / p, p):
        if cand.is_file():
            return cand
    raise AgeGenderError(f"refinement: gender_config {path} not found (relative to {config_path.parent} or to "
                         "the current folder)", code="missing_file")


def refine_from_config(
    config: str | Path, output: str | Path | None = None, overrides: Sequence[str] = (), data: str | None = None
) -> dict[str, Any]:
    """Run :func:`iterative_refinement` as ``model.composition_args.refine`` of the age ``config`` says.

    Run it from a cross-modal age config whose ``model.composition_args.refine`` names the gender config::

        agegender refine configs/aminian_noubir/table4_iterative_refinement.yaml \\
            --data data/adience --output runs/refine

    ``refine`` options: ``gender_config`` (the plain gender-net config, step "Gender 1"; a path relative to the
    config's folder or to the current one), ``rounds`` (refinement rounds after "Age 1", each a gender step then
    an age step; default 1) and ``final`` (``age``, or ``gender`` to stop after the last gender step as Table 4
    does). Every step uses the age config's ``data``
    section, so all nets see the same split (a net whose embedding is fed in must not have seen the test fold).
    Each later step is a ``cross_modal`` net with the age config's variant, embedding and initialisation, fed by
    the previous step's best checkpoint; the summary is written to ``<output>/refinement.json``.
    """
    config = Path(config)
    extra = {"data": {"root": str(data)}} if data else {}
    cfg_age = load_config(config, overrides, **extra)
    opts = dict((cfg_age["model"].get("composition_args") or {}).get("refine") or {})
    if "gender_config" not in opts:
        raise AgeGenderError(f"{config}: model.composition_args.refine.gender_config (the plain gender-net config) "
                             "is needed for iterative refinement", code="bad_config")
    cfg_gender = load_config(_resolve(str(opts.pop("gender_config")), config), overrides, **extra)
    rounds, final = int(opts.pop("rounds", 1)), str(opts.pop("final", "age"))
    if opts:
        raise AgeGenderError(f"refine: unknown option(s) {sorted(opts)}; valid: gender_config, rounds, final",
                             code="bad_config")
    out = output or Path("runs") / str(cfg_age.get("name") or config.stem)
    return iterative_refinement(cfg_gender, cfg_age, rounds=rounds, output=out, final=final)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agegender.workflows.refine", description=__doc__.splitlines()[0])
    ap.add_argument("config", help="cross-modal age config with model.composition_args.refine")
    ap.add_argument("--data", help="dataset folder (overrides data.root of both configs)")
    ap.add_argument("--output", "-o", help="run folder (default runs/<config name>)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value, for both configs")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = refine_from_config(a.config, a.output, a.overrides, a.data)
    except AgeGenderError as e:
        print(f"error: {e}")
        return 2
    print(json.dumps([{k: s[k] for k in ("step", "task", "round", "best_checkpoint")} for s in summary["steps"]],
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
