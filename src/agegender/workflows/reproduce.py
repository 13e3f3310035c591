"""`agegender reproduce PAPER`: run the configs behind a paper's published table (``paper_tables.py``) on the
data at hand and print the measured table beside the published one, with every deviation next to its row.

Deviations are derived by comparing the configuration that actually ran (and its ``results.json``) with
the paper's protocol facts: dataset and its size, split, age filter, input size, epochs and early stopping,
batch size, optimiser, ImageNet weights, folds, test-time cropping, hardware. ``--quick`` is a smoke test
(a few hundred images, one short epoch, small inputs); its numbers are not results.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agegender.errors import AgeGenderError
from agegender.metrics import aggregate_folds
from agegender.workflows.paper_tables import PAPERS, Cell, Protocol, Row, Table, get_tables

log = logging.getLogger(__name__)

#: --quick: the shorter image side is shrunk to this (never enlarged); inception_v3 needs at least 75
QUICK_SIDE = 80
QUICK_SETTINGS: dict[str, Any] = {
    "data": {"limit": 480, "num_workers": 0, "eval_batch_size": 64},
    "trainer": {"max_epochs": 1, "limit_train_batches": 4, "limit_val_batches": 2, "progress_bar": False},
}
WEIGHTS_MODES: tuple[str, ...] = ("auto", "scratch", "require")
WEIGHTS_OFFLINE = "ImageNet weights could not be downloaded (offline)"

# Row statuses
MEASURED, REUSED, QUICK, LITERATURE = "measured", "reused", "quick", "literature"
NO_CONFIG, NO_DATA, NO_WEIGHTS, NOT_RUN, RUNNER, FAILED = (
    "needs config", "needs data", "needs weights", "not run", "other driver", "failed")


def repo_root() -> Path:
    """The folder holding ``configs/``: the current one, else the source checkout agegender runs from."""
    for cand in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (cand / "configs").is_dir():
            return cand
    return Path.cwd()


def resolve_path(path: str | Path, base: Path | None = None) -> Path:
    """A config-relative path: absolute as is, else from the current folder, else from the repository."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = (base or repo_root()) / p
    return alt if alt.exists() else p


def parse_data_args(items: Sequence[str]) -> dict[str, str]:
    """``["DIR"]`` → ``{"*": DIR}``; ``["utkface=DIR", "peta=DIR2"]`` → per dataset reader name."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and "/" not in name:
            out[name.strip()] = path
        else:
            out["*"] = item
    return out


@dataclass
class RowResult:
    row: Row
    status: str
    measured: dict[str, Cell] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    message: str = ""
    run_dir: str | None = None


@dataclass
class TableResult:
    table: Table
    rows: list[RowResult]
    quick: bool = False
    command: str = ""


# -- configs ----------------------------------------------------------------------------------------------

def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    node = cfg
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def input_hw(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """The network input (height, width) a config trains at: ``data.input_size`` or the trunk's default."""
    import agegender.models  # noqa: F401  (registers the trunks)
    from agegender.models.registry import TRUNKS
    from agegender.training.datamodule import as_hw

    size = cfg["data"].get("input_size")
    if size is None:
        try:
            size = TRUNKS.meta(cfg["model"]["trunk"]["name"]).get("input_size", 224)
        except AgeGenderError:
            size = 224
    return as_hw(size)


def quick_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The reduced schedule of ``--quick``: a 480-image subset, one epoch of 4 batches, small inputs."""
    cfg = _deep_merge(copy.deepcopy(cfg), QUICK_SETTINGS)
    h, w = input_hw(cfg)
    f = min(1.0, QUICK_SIDE / min(h, w))
    if f < 1.0:
        cfg["data"]["input_size"] = [max(1, round(h * f)), max(1, round(w * f))]
        if cfg["data"].get("resize"):
            from agegender.training.datamodule import as_hw

            rh, rw = as_hw(cfg["data"]["resize"])
            cfg["data"]["resize"] = [max(1, round(rh * f)), max(1, round(rw * f))]
    return cfg


def load_row_config(path: Path, data: Mapping[str, str], quick: bool, sets: Sequence[str], weights: str) -> dict[str, Any]:
    from agegender.training.config import load_config

    cfg = load_config(path, sets)
    ds = cfg["data"]["dataset"]
    root = data.get(ds) or data.get("*")
    if root:
        cfg["data"]["root"] = str(root)
    if cfg["data"].get("root"):
        cfg["data"]["root"] = str(resolve_path(cfg["data"]["root"]))
    if weights == "scratch" and cfg["model"]["trunk"].get("pretrained"):
        cfg["model"]["trunk"]["pretrained"] = False
    return quick_config(cfg) if quick else cfg


# -- deviations -------------------------------------------------------------------------------------------

def row_config(row: Row | None) -> dict[str, Any] | None:
    """The row's committed config as written (before any ``--set``), or None without a config."""
    from agegender.training.config import load_config

    if row is None or row.config is None:
        return None
    path = resolve_path(row.config)
    return load_config(path) if path.is_file() else None


def _flat(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def schedule_changes(committed: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """Optimiser settings and epoch limit of the run that differ from the row's committed config (e.g.
    ``--set optim.lr`` for a shortened schedule). The committed values follow the paper or, where it is
    silent, say so in the config; either way a reader of the table must see the change."""

    def keys(c: Mapping[str, Any]) -> dict[str, Any]:
        t = c.get("trainer") or {}
        steps = t.get("max_steps")  # -1 (Lightning's "no limit") reads as unset
        return {**_flat(c.get("optim") or {}, "optim."), "trainer.max_epochs": t.get("max_epochs"),
                "trainer.max_steps": None if steps is None or int(steps) < 0 else int(steps)}

    was, now = keys(committed), keys(cfg)

    def text(v: Any) -> Any:
        return "unset" if v is None else v

    return [f"{k} {text(now.get(k))} instead of the config's {text(was.get(k))}"
            for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]


def _hw_text(hw: Sequence[int]) -> str:
    return f"{hw[0]}×{hw[1]}"


def deviations(p: Protocol, cfg: Mapping[str, Any], result: Mapping[str, Any], row: Row | None = None,
               folds_run: int | None = None, ten_crop: bool | None = None, notes: Sequence[str] = ()) -> list[str]:
    """Every way the run (its resolved config and results.json) departs from the paper's protocol."""
    d, t, m, o = cfg["data"], cfg["trainer"], cfg["model"], cfg["optim"]
    out: list[str] = list(notes)
    if d.get("dataset") != p.dataset:
        out.append(f"dataset {d.get('dataset')} instead of {p.dataset_label}")
    sizes = result.get("split_sizes") or {}
    tr, va, te = (int(sizes.get(k, 0)) for k in ("train", "val", "test"))
    n = tr + va + te
    if folds_run:
        n = int(result.get("n_images_all_folds") or n)
    if n and p.split_sizes and (tr, va, te) != p.split_sizes and not folds_run:
        a, b, c = p.split_sizes
        out.append(f"{n:,} images ({tr:,}/{va:,}/{te:,} train/val/test) vs the paper's {a + b + c:,} "
                   f"({a:,}/{b:,}/{c:,})")
    elif n and p.n_images and abs(n - p.n_images) > 0.01 * p.n_images:
        out.append(f"{n:,} images vs the paper's {p.n_images:,}")
    if d.get("limit"):
        out.append(f"a random subset of {int(d['limit']):,} images (data.limit)")
    split = dict(d.get("split") or {})
    kind = split.get("kind", "stratified")
    if p.split_kind and kind != p.split_kind:
        out.append(f"split {kind} instead of the paper's {p.split_text or p.split_kind}")
    elif p.split_kind is None and p.split_text:
        out.append(f"split {kind} (paper: {p.split_text})")
    flt = dict(d.get("filter") or {})
    ours = (flt.get("min_age"), flt.get("max_age")) if flt else None
    if (p.age_filter or None) != (ours if ours and any(v is not None for v in ours) else None):
        out.append(f"age filter {ours or 'none'} instead of {p.age_filter or 'none'}")
    if p.age_scheme and d.get("age_scheme") != p.age_scheme:
        out.append(f"age groups {d.get('age_scheme')} instead of {p.age_scheme}")
    hw = input_hw(cfg)
    if p.input_size and tuple(hw) != tuple(p.input_size):
        out.append(f"input {_hw_text(hw)} instead of {_hw_text(p.input_size)}")
    max_epochs = int(t.get("max_epochs") or 0)
    ran = result.get("epochs_run")
    if p.epochs and max_epochs != p.epochs:
        out.append(f"at most {max_epochs} epoch(s) instead of {p.epochs}" + (f" (ran {ran})" if ran is not None else ""))
    es = t.get("early_stopping")
    if es and p.early_stopping is False:
        stopped = ran is not None and max_epochs and int(ran) < max_epochs
        out.append(f"early stopping on {es.get('monitor', 'val/loss')} (patience {es.get('patience', 5)}), not in the "
                   f"paper" + (f": stopped after {ran} of {max_epochs} epochs" if stopped else ""))
    if t.get("limit_train_batches"):
        out.append(f"only {t['limit_train_batches']} training batch(es) per epoch")
    if str(t.get("precision", "32-true")) not in ("32-true", "32", "32-mixed"):  # the papers trained in fp32
        out.append(f"{t['precision']} precision (the run's last segment, if resumed)")
    if p.batch_size and int(d.get("batch_size") or 0) != p.batch_size:
        out.append(f"batch {d.get('batch_size')} instead of {p.batch_size}")
    if p.optimizer and str(o.get("name")).lower() != p.optimizer:
        out.append(f"optimiser {o.get('name')} instead of {p.optimizer}")
    elif p.lr and o.get("lr") is not None and abs(float(o["lr"]) - p.lr) > 1e-12:
        out.append(f"learning rate {o['lr']:g} instead of {p.lr:g}")
    covered = (("optim.name ",) if p.optimizer else ()) + (("optim.lr ",) if p.lr else ()) + \
        (("trainer.max_epochs ",) if p.epochs else ())  # each reported above against the paper
    committed = row_config(row)  # the row's config before any --set
    if committed is not None:
        out += [c for c in schedule_changes(committed, cfg) if not c.startswith(covered)]
    wanted_trunk = None if committed is None else (committed["model"].get("trunk") or {}).get("name")
    ran_trunk = (m.get("trunk") or {}).get("name")
    if wanted_trunk and ran_trunk and ran_trunk != wanted_trunk:
        out.append(f"trunk {ran_trunk} instead of the paper's {wanted_trunk}")
    elif committed is not None:  # same trunk, other options (e.g. mobilenet_transformer's features)
        was, now = (dict(c["model"].get("trunk") or {}) for c in (committed, cfg))
        for k in sorted((set(was) | set(now)) - {"name", "pretrained", "input_size"}):
            if was.get(k) != now.get(k):
                out.append(f"trunk {k} {now.get(k, 'default')} instead of the config's {was.get(k, 'default')}")
    pre = bool((m.get("trunk") or {}).get("pretrained"))
    if p.pretrained and not pre:
        offline = WEIGHTS_OFFLINE in out
        out = [x for x in out if x != WEIGHTS_OFFLINE]
        out.append("no ImageNet weights" + (" (download failed: offline)" if offline else "") +
                   ": trunk trained from scratch")
    elif p.pretrained is False and pre:
        out.append("ImageNet-pretrained trunk (the paper trains from scratch)")
    if p.folds:
        if kind != "kfold":
            pass  # already reported as a split difference
        elif folds_run is not None and folds_run < p.folds:
            out.append(f"{folds_run} of {p.folds} folds")
    intended = (row.eval.get("ten_crop") if row is not None and "ten_crop" in row.eval else p.ten_crop)
    if intended is not None and ten_crop is not None and bool(ten_crop) != bool(intended):
        out.append("centre crop instead of 10-crop over-sampling" if intended else "10-crop over-sampling instead of "
                   "the centre crop")
    if p.hardware and str(t.get("accelerator", "cpu")) == "cpu":
        out.append(f"CPU instead of {p.hardware}")
    return list(dict.fromkeys(out))


# -- running ----------------------------------------------------------------------------------------------

@dataclass
class _Session:
    data: dict[str, str]
    output: Path
    quick: bool
    reuse: bool
    sets: tuple[str, ...]
    weights: str
    max_folds: int | None
    cache: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = field(default_factory=dict)


class _RowSkip(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _run_dir(s: _Session, cfg: Mapping[str, Any], fold: int | None) -> Path:
    d = s.output / str(cfg.get("name") or "experiment")
    return d / f"fold{fold}" if fold is not None else d


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    from agegender.training.config import load_config

    res = run_dir / "results.json"
    if not res.is_file():
        return None
    result = json.loads(res.read_text())
    cfg_file = run_dir / "config.yaml"
    cfg = load_config(cfg_file) if cfg_file.is_file() else {}
    return cfg, result


def _train_or_reuse(s: _Session, cfg: dict[str, Any], fold: int | None,
                    inject: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(resolved config that ran, results.json, notes) of one training run, trained unless reusable."""
    from agegender.workflows.train import train_and_test

    cfg = copy.deepcopy(cfg)
    if fold is not None:
        cfg["data"].setdefault("split", {})["fold"] = fold
    for key, ckpt in (inject or {}).items():
        cfg["model"].setdefault("composition_args", {})[key] = ckpt
    run_dir = _run_dir(s, cfg, fold)
    key = str(run_dir)
    if key in s.cache:
        return s.cache[key]
    got = _read_run(run_dir) if s.reuse else None
    if got is not None:
        s.cache[key] = (got[0] or cfg, got[1], [f"reused {run_dir}"])
        return s.cache[key]
    root = cfg["data"].get("root")
    if not root or not Path(root).exists():
        raise _RowSkip(NO_DATA, f"needs {cfg['data']['dataset']} data at {root or '(no data.root)'} "
                                f"(pass --data {cfg['data']['dataset']}=DIR)")
    if s.reuse:
        raise _RowSkip(NOT_RUN, f"no {run_dir / 'results.json'} to reuse (run without --reuse to train)")
    notes: list[str] = []
    try:
        result = train_and_test(cfg, run_dir)
    except AgeGenderError as e:
        if getattr(e, "code", "") != "weights_unavailable":
            raise
        if s.weights == "require":
            raise _RowSkip(NO_WEIGHTS, f"needs ImageNet weights for {cfg['model']['trunk']['name']} "
                                       "(no internet; use --weights auto to train from scratch)") from None
        cfg["model"]["trunk"]["pretrained"] = False
        notes.append(WEIGHTS_OFFLINE)
        result = train_and_test(cfg, run_dir)
    s.cache[key] = (cfg, result, notes)
    return s.cache[key]


def _evaluate_variant(s: _Session, cfg: Mapping[str, Any], result: Mapping[str, Any], run_dir: Path,
                      ten_crop: bool) -> dict[str, Any]:
    """Test metrics of a trained run re-scored with another test-time crop (cached in the run folder)."""
    from agegender.evaluation.evaluate import evaluate

    cache = run_dir / f"test_{'ten_crop' if ten_crop else 'centre_crop'}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    ckpt = result.get("best_checkpoint")
    d = dict(cfg["data"])
    root = s.data.get(d["dataset"]) or s.data.get("*")  # --data wins over the root the run was trained with
    if root:
        d["root"] = str(resolve_path(root))
    if not ckpt or not Path(ckpt).is_file():
        raise _RowSkip(NOT_RUN, f"no checkpoint {ckpt} to re-evaluate with {'10 crops' if ten_crop else 'centre crop'}")
    if not d.get("root") or not Path(d["root"]).exists():
        raise _RowSkip(NO_DATA, f"needs {d['dataset']} data at {d.get('root')} to re-evaluate the checkpoint")
    return evaluate(str(ckpt), d["dataset"], d["root"], split="test", scheme=d.get("age_scheme"),
                    options=dict(d.get("options") or {}), ten_crop=ten_crop, output=cache)


def _measure(table: Table, row: Row, tests: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]],
             cfg: Mapping[str, Any]) -> dict[str, Cell]:
    """Column → measured Cell (mean ± std over folds when there are several)."""
    per_fold: list[dict[str, float]] = []
    for test, result in zip(tests, results):
        vals: dict[str, float] = {}
        for c in table.columns:
            metric = row.metrics.get(c.header, c.metric)
            v = c.derive(test, result, cfg) if c.derive else test.get(metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[c.header] = float(v) * (c.scale if not c.derive else 1.0)
        per_fold.append(vals)
    if len(per_fold) == 1:
        return {k: Cell(v) for k, v in per_fold[0].items()}
    agg = aggregate_folds(per_fold)
    return {k: Cell(v["mean"], v["std"]) for k, v in agg.items() if isinstance(v, dict)}


def _run_row(s: _Session, table: Table, row: Row) -> RowResult:
    if row.config is None:
        return RowResult(row, LITERATURE, message="quoted by the paper from earlier work; not re-run")
    path = resolve_path(row.config)
    if not path.is_file():
        return RowResult(row, NO_CONFIG, message=f"needs config {row.config} (not written yet)")
    if row.runner:
        return RowResult(row, RUNNER, message="run with `" + row.runner.format(config=row.config) + "`")
    try:
        cfg = load_row_config(path, s.data, s.quick, s.sets, s.weights)
        kfold = (cfg["data"].get("split") or {}).get("kind") == "kfold"
        k = int((cfg["data"].get("split") or {}).get("k", 5)) if kfold else 0
        folds: list[int | None] = list(range(k)) if kfold else [None]
        if kfold and s.max_folds:
            folds = folds[: s.max_folds]
        tests, results, notes = [], [], []
        ran_cfg: dict[str, Any] = cfg
        ten_crop_used = bool((cfg.get("eval") or {}).get("ten_crop", False))
        for fold in folds:
            inject: dict[str, str] = {}
            for dep_path, key in row.requires:
                dp = resolve_path(dep_path)
                if not dp.is_file():
                    raise _RowSkip(NO_CONFIG, f"needs config {dep_path} (the net whose embedding is fed in)")
                dcfg = load_row_config(dp, s.data, s.quick, s.sets, s.weights)
                _, dres, _ = _train_or_reuse(s, dcfg, fold)
                inject[key] = str(dres.get("best_checkpoint"))
            ran_cfg, result, n = _train_or_reuse(s, cfg, fold, inject)
            notes += n
            test = dict(result.get("test") or {})
            want = row.eval.get("ten_crop")
            if want is not None and bool(want) != bool(test.get("ten_crop", ten_crop_used)):
                test = _evaluate_variant(s, ran_cfg, result, _run_dir(s, ran_cfg, fold), bool(want))
            ten_crop_used = bool(test.get("ten_crop", ten_crop_used))
            if not test:
                raise _RowSkip(NOT_RUN, "the run has no test split, so no test metrics")
            tests.append(test)
            results.append(result)
    except _RowSkip as e:
        return RowResult(row, e.status, message=e.message)
    except AgeGenderError as e:
        return RowResult(row, FAILED, message=str(e))
    except Exception as e:  # one broken row must not lose the others' hours of training
        log.exception("row %r of %s table %s failed", row.label, table.paper, table.table)
        return RowResult(row, FAILED, message=f"{type(e).__name__}: {e}")
    measured = _measure(table, row, tests, results, ran_cfg)
    res0 = dict(results[0])
    if kfold:
        res0["n_images_all_folds"] = sum(int(v) for v in (res0.get("split_sizes") or {}).values())
    devs = deviations(table.protocol, ran_cfg, res0, row, folds_run=len(folds) if kfold else None,
                      ten_crop=ten_crop_used, notes=[n for n in notes if not n.startswith("reused")])
    if any(c.derive is not None and c.metric == "train_minutes" for c in table.columns):
        devs.append(f"training time in minutes on this machine ({ran_cfg['trainer'].get('accelerator', 'cpu')}); "
                    "the paper states neither unit nor hardware")
    reused = any(n.startswith("reused") for n in notes)
    status = QUICK if s.quick or ran_cfg["data"].get("limit") else (REUSED if reused else MEASURED)
    run_dir = str(_run_dir(s, ran_cfg, None))
    return RowResult(row, status, measured, devs, run_dir=run_dir)


def reproduce(
    paper: str,
    table: str | None = None,
    data: Sequence[str] | Mapping[str, str] = (),
    output: str | Path | None = None,
    quick: bool = False,
    reuse: bool = False,
    rows: Sequence[str] = (),
    sets: Sequence[str] = (),
    weights: str = "auto",
    max_folds: int | None = None,
) -> list[TableResult]:
    """Run (or, with ``reuse``, collect) the rows of a paper's tables; see the module docstring.

    ``data``: ``DIR`` for every row or ``dataset=DIR`` per reader name. ``output``: run folders go to
    ``<output>/<config name>`` (default ``runs`` — where ``agegender train`` puts them — or ``runs/quick``
    with ``quick``). ``rows``: keep rows whose label or config name contains one of these (case-insensitive).
    ``sets``: ``key=value`` overrides for every config. ``weights``: ``auto`` (download ImageNet weights,
    train from scratch when offline, noted as a deviation), ``scratch`` or ``require``. ``max_folds``: run
    only the first folds of k-fold protocols (default: all; 1 with ``quick``).
    """
    if weights not in WEIGHTS_MODES:
        raise AgeGenderError(f"--weights must be one of {', '.join(WEIGHTS_MODES)}", code="bad_config")
    dmap = dict(data) if isinstance(data, Mapping) else parse_data_args(data)
    out = Path(output) if output else Path("runs/quick" if quick else "runs")
    s = _Session(dmap, out, quick, reuse, tuple(sets), weights, max_folds or (1 if quick else None))
    results = []
    for tb in get_tables(paper, table):
        picked = [r for r in tb.rows if _row_matches(r, rows)]
        if rows and not picked:
            continue
        results.append(TableResult(tb, [_run_row(s, tb, r) for r in picked], quick))
    if rows and not results:
        raise AgeGenderError(f"no row of {paper} matches {list(rows)}; see `agegender reproduce --list`",
                             code="bad_config")
    return results


def _row_matches(row: Row, wanted: Sequence[str]) -> bool:
    if not wanted:
        return True
    hay = f"{row.label} {Path(row.config).name if row.config else ''}".lower()
    return any(w.lower() in hay for w in wanted)


# -- printing ---------------------------------------------------------------------------------------------

def _cell(c: Cell | None, digits: int) -> str:
    return c.show(digits) if c is not None else ""


def table_rows(tr: TableResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the row label, each column's published and measured values, status, deviations."""
    header = ["Row"]
    for c in tr.table.columns:
        header += [f"{c.header} (paper)", f"{c.header} (ours)"]
    header += ["Status", "Deviations / notes"]
    rows = []
    for r in tr.rows:
        line = [r.row.label]
        for c in tr.table.columns:
            line += [_cell(r.row.published.get(c.header), c.digits), _cell(r.measured.get(c.header), c.digits)]
        notes = list(r.deviations)
        if r.message:
            notes.insert(0, r.message)
        if r.row.note:
            notes.append(r.row.note)
        line += [r.status, "; ".join(notes)]
        rows.append(line)
    return header, rows


def format_table(tr: TableResult, markdown: bool = False) -> str:
    tb = tr.table
    header, rows = table_rows(tr)
    title = f"{tb.paper} — Table {tb.table}: {tb.title}" if tb.table[0].isdigit() else \
        f"{tb.paper} — {tb.table}: {tb.title}"
    lines: list[str] = []
    if markdown:
        lines.append(f"### {title}\n")
        if tb.source:
            lines.append(f"Source: {tb.source}. Paper protocol: {tb.protocol.dataset_label}; "
                         f"{tb.protocol.split_text or 'split not stated'}.\n")
        if tr.quick:
            lines.append("**QUICK smoke run (reduced schedule): these numbers are not results.**\n")
        if tr.command:
            lines.append(f"Command: `{tr.command}`\n")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    lines.append(title)
    if tr.quick:
        lines.append("QUICK smoke run (reduced schedule): these numbers are not results.")
    body = [header, *rows]
    widths = [max(len(r[i]) for r in body) for i in range(len(header) - 1)]
    for r in body:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(len(header) - 1)) + "  " + r[-1])
    return "\n".join(lines) + "\n"


def list_papers() -> str:
    """Every paper and table known, each row's config (present or not) and whether its data are at hand."""
    from agegender.training.config import load_config

    lines: list[str] = []
    for p in PAPERS:
        lines.append(f"{p.key}  ({', '.join(p.aliases)})  — {p.title}  [papers/{p.file}]")
        for tb in p.tables:
            lines.append(f"  table {tb.table}: {tb.title}  ({tb.source}; {tb.protocol.dataset_label})")
            for r in tb.rows:
                if r.config is None:
                    lines.append(f"    - {r.label}: quoted from earlier work")
                    continue
                path = resolve_path(r.config)
                state = "present" if path.is_file() else "MISSING"
                extra = ""
                if path.is_file():
                    try:
                        root = load_config(path)["data"].get("root")
                        extra = "; data at hand" if root and resolve_path(root).exists() else \
                            f"; data not at {root} (pass --data)"
                    except AgeGenderError as e:
                        extra = f"; config error: {e}"
                if r.runner:
                    extra += "; run by another driver"
                lines.append(f"    - {r.label}: {r.config} [{state}{extra}]")
    return "\n".join(lines)
