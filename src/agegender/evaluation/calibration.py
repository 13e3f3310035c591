"""Calibration: expected calibration error (15 bins), reliability-diagram data and temperature scaling
(Guo et al. 2017: one scalar T per head, fitted by LBFGS on the validation NLL, logits divided by T).

:func:`calibrate_bundle` fits T for every calibratable head of a loaded model on labelled samples and
stores it in the head's ``temperature`` buffer, which ``decode`` applies (``models/heads.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agegender.labels import MAX_AGE, Sample

#: head kinds temperature scaling applies to (regression outputs are years, not logits)
CALIBRATABLE_KINDS: tuple[str, ...] = ("multiclass", "binary", "age_distribution", "multilabel", "ordinal")
N_BINS = 15
#: the fitted temperature is kept inside this range (a degenerate fit would otherwise run to 0 or ∞)
T_RANGE: tuple[float, float] = (0.05, 20.0)


# -- ECE and reliability diagrams -------------------------------------------------------------------------

def _top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim == 1:  # probability of the positive class
        p = np.stack([1 - p, p], axis=1)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Per confidence bin (equal width on [0, 1], a confidence c falls in the bin with lower < c <= upper):
    mean confidence, accuracy and count of the top-label predictions, plus the ECE they give.

    ``probs`` is (N, K) class probabilities (or (N,) probabilities of class 1), ``labels`` (N,) class
    indices."""
    conf, correct = _top_label(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds edges[b] < c <= edges[b+1]; c = 0 cannot happen for a top label (c >= 1/K)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sum_conf / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, sum_acc / np.maximum(count, 1), np.nan)
    n = int(count.sum())
    ece = float(np.nansum(count / max(n, 1) * np.abs(acc - mean_conf))) if n else float("nan")
    return {
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "confidence": [None if np.isnan(v) else float(v) for v in mean_conf],
        "accuracy": [None if np.isnan(v) else float(v) for v in acc],
        "count": count.tolist(),
        "n": n,
        "ece": ece,
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE = Σ_b |B_b|/N · |accuracy(B_b) − confidence(B_b)| over ``n_bins`` equal-width confidence bins
    of the top-label prediction (Guo et al. 2017, 15 bins)."""
    return float(reliability_diagram(probs, labels, n_bins)["ece"])


# -- temperature scaling ----------------------------------------------------------------------------------

def _nll(z: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "multiclass":
        return F.cross_entropy(z, y)
    return F.binary_cross_entropy_with_logits(z, y)


def _as_problem(logits: np.ndarray, labels: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Valid (logits, labels) as a multiclass problem (z (N, K), y (N,)) or binary entries (z (M,), y (M,))."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if kind == "auto":
        kind = "binary" if z.ndim == 1 or (y.ndim == 2 and y.shape == z.shape) else "multiclass"
    if kind == "multiclass":
        ok = ~np.isnan(y) & (y >= 0)
        return z[ok], y[ok].astype(np.int64), "multiclass"
    if kind == "binary":
        ok = ~np.isnan(y) & (y >= 0)
        return z[ok].reshape(-1), y[ok].reshape(-1), "binary"
    raise ValueError(f"kind must be auto, multiclass or binary (got {kind!r})")


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, kind: str = "auto") -> float:
    """Mean negative log-likelihood of ``labels`` under ``logits / temperature`` (see :func:`fit_temperature`)."""
    z, y, kind = _as_problem(logits, labels, kind)
    if len(y) == 0:
        return float("nan")
    yt = torch.as_tensor(y, dtype=torch.int64 if kind == "multiclass" else torch.float64)
    return float(_nll(torch.as_tensor(z) / temperature, yt, kind))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, kind: str = "auto", max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of ``labels`` under ``logits / T`` (LBFGS on log T).

    ``kind="multiclass"``: logits (N, K), labels (N,) class indices (softmax); ``"binary"``: logits and 0/1
    labels of the same shape, each entry an independent sigmoid (binary heads, multi-label heads, CORAL
    ranks). ``"auto"`` picks binary for 1-D logits or labels shaped like the logits. Missing labels (-1 or
    NaN) are ignored; with none left the answer is 1.0.

    >>> z = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]]); y = np.array([0, 1, 1, 0])
    >>> fit_temperature(z, y) > 10   # half wrong at full confidence: soften as far as allowed
    True
    """
    z, y, kind = _as_problem(logits, labels, kind)
    if len(y) == 0:
        return 1.0
    zt = torch.as_tensor(z, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.int64 if kind == "multiclass" else torch.float64)
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _nll(zt / log_t.clamp(lo, hi).exp(), yt, kind)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(np.exp(np.clip(float(log_t.detach()), lo, hi)))
    return t if np.isfinite(t) else 1.0


# -- per-head views ---------------------------------------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def head_problem(logits: np.ndarray, target: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """A head's raw output and its task's targets as the calibration problem :func:`fit_temperature` solves.

    - multiclass: softmax over classes; binary: one sigmoid per image;
    - age_distribution: softmax over ages 0..100, the label is the true age rounded and clamped to 0..100;
    - multilabel: every labelled entry an independent sigmoid (NaN entries left out);
    - ordinal (CORAL): every rank k an independent sigmoid P(age > k), labelled ``age > k``.
    """
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if kind in ("multiclass",):
        return z, t, "multiclass"
    if kind == "binary":
        return z.reshape(-1), t.reshape(-1), "binary"
    if kind == "age_distribution":
        y = np.where(np.isnan(t), -1, np.clip(np.rint(np.nan_to_num(t)), 0, MAX_AGE))
        return z, y, "multiclass"
    if kind == "multilabel":
        return z, t, "binary"
    if kind == "ordinal":
        ranks = np.arange(z.shape[1], dtype=np.float64)
        y = (t[:, None] > ranks[None, :]).astype(np.float64)
        y[np.isnan(t)] = np.nan
        return z, y, "binary"
    raise ValueError(f"head kind {kind!r} is not calibratable (choose from {CALIBRATABLE_KINDS})")


def problem_view(z: np.ndarray, y: np.ndarray, kind: str, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of the valid rows at ``temperature``, in the top-label form ECE expects
    (binary entries as 2-class probabilities)."""
    z, y, kind = _as_problem(z, y, kind)
    if kind == "multiclass":
        return _softmax(z / temperature), y
    p = _sigmoid(z / temperature)
    return np.stack([1 - p, p], axis=1), y.astype(np.int64)


def head_calibration(logits_fit: np.ndarray, target_fit: np.ndarray, logits_eval: np.ndarray,
                     target_eval: np.ndarray, kind: str, temperature_before: float = 1.0,
                     n_bins: int = N_BINS) -> dict[str, Any]:
    """Fit T on one set and measure NLL, ECE and reliability before (at ``temperature_before``) and after on
    another (pass the same arrays twice to measure in-sample)."""
    zf, yf, pk = head_problem(logits_fit, target_fit, kind)
    ze, ye, _ = head_problem(logits_eval, target_eval, kind)
    t = fit_temperature(zf, yf, pk)
    pb, yb = problem_view(ze, ye, pk, temperature_before)
    pa, ya = problem_view(ze, ye, pk, t)
    rb, ra = reliability_diagram(pb, yb, n_bins), reliability_diagram(pa, ya, n_bins)
    return {
        "kind": kind,
        "temperature_before": float(temperature_before),
        "temperature": t,
        "n_fit": len(_as_problem(zf, yf, pk)[1]),
        "n": rb["n"],
        "nll_before": nll(ze, ye, temperature_before, pk),
        "nll_after": nll(ze, ye, t, pk),
        "ece_before": rb["ece"],
        "ece_after": ra["ece"],
        "reliability_before": rb,
        "reliability_after": ra,
    }


def cross_fitted_calibration(logits: np.ndarray, target: np.ndarray, kind: str, folds: np.ndarray,
                             temperature_before: float = 1.0, n_bins: int = N_BINS) -> dict[str, Any]:
    """Temperature scaling measured without a separate validation set: each fold's probabilities are
    calibrated with the T fitted on the other folds, and ECE/NLL "after" are measured on the pooled
    out-of-fold probabilities. ``temperature`` is then the mean of the per-fold fits (also listed)."""
    z, y, pk = head_problem(logits, target, kind)
    folds = np.asarray(folds)
    views: list[tuple[np.ndarray, np.ndarray]] = []
    temps: list[float] = []
    nll_sum, n_sum = 0.0, 0
    for f in np.unique(folds):
        test, fit = folds == f, folds != f
        if not fit.any():
            continue
        t = fit_temperature(z[fit], y[fit], pk)
        temps.append(t)
        pv, yv = problem_view(z[test], y[test], pk, t)
        views.append((pv, yv))
        m = len(yv)
        if m:
            nll_sum += nll(z[test], y[test], t, pk) * m
            n_sum += m
    if not views:
        return head_calibration(logits, target, logits, target, kind, temperature_before, n_bins)
    pb, yb = problem_view(z, y, pk, temperature_before)
    pa, ya = np.concatenate([v[0] for v in views]), np.concatenate([v[1] for v in views])
    rb, ra = reliability_diagram(pb, yb, n_bins), reliability_diagram(pa, ya, n_bins)
    return {
        "kind": kind,
        "temperature_before": float(temperature_before),
        "temperature": float(np.mean(temps)),
        "temperatures": temps,
        "n_fit": int(n_sum),
        "n": rb["n"],
        "nll_before": nll(z, y, temperature_before, pk),
        "nll_after": nll_sum / n_sum if n_sum else float("nan"),
        "ece_before": rb["ece"],
        "ece_after": ra["ece"],
        "reliability_before": rb,
        "reliability_after": ra,
    }


def calibratable_heads(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Heads (by name) whose output is a logit temperature scaling applies to."""
    heads = getattr(model, "heads", None) or {}
    return {n: h for n, h in heads.items()
            if getattr(h, "kind", "") in CALIBRATABLE_KINDS and h.calibratable() and hasattr(h, "temperature")}


def head_target(targets: Mapping[str, np.ndarray], head: torch.nn.Module, logits: np.ndarray) -> np.ndarray | None:
    """The target array a head's task is scored against, or None when the data lack it."""
    t = targets.get(head.task)
    if t is None or len(t) != len(logits):
        return None
    t = np.asarray(t)
    if head.kind == "multilabel" and (t.ndim != 2 or t.shape[1] != logits.shape[1]):
        return None
    tf = t.astype(np.float64)
    return t if bool(np.any(~np.isnan(tf) & (tf >= 0))) else None


def calibrate_bundle(bundle: Any, samples: Sequence[Sample], batch_size: int = 64, apply: bool = True,
                     progress: bool = False, age_quantile: bool = False,
                     max_false_adult: float | None = None) -> dict[str, Any]:
    """Fit one temperature per calibratable head (multiclass, binary, age-distribution, multi-label and
    CORAL heads) on labelled validation ``samples`` (ready crops), set each head's ``temperature`` buffer
    (unless ``apply=False``) and return, per head: kind, task, temperature before/after, NLL and ECE before
    and after (in-sample, on these samples), and n. Heads whose task the samples do not label are skipped.

    ``age_quantile``: then also fit the point estimate of each age-distribution head
    (:func:`fit_age_quantile`, with the model's flip TTA setting and ``max_false_adult``) and store it in the
    head and the config.

    >>> bundle = load_bundle("runs/x/checkpoints/best.ckpt")          # doctest: +SKIP
    >>> calibrate_bundle(bundle, val_samples)["gender"]["ece_after"]   # doctest: +SKIP
    """
    from agegender.evaluation.runner import num_attributes, run_model, sample_targets

    heads = calibratable_heads(bundle.model)
    if not heads or not samples:
        return {}
    tta = bool((bundle.config.get("eval") or {}).get("tta_flip", False))
    res = run_model(bundle, samples, batch_size=batch_size, raw=True, progress=progress,
                    tta_flip=tta and age_quantile)
    kept = [s for s, k in zip(samples, res.ok) if k]
    targets = sample_targets(kept, bundle.age_scheme, num_attributes(kept))
    out: dict[str, Any] = {}
    for name, head in heads.items():
        z = res.raw.get(name)
        if z is None:
            continue
        t = head_target(targets, head, z)
        if t is None:
            continue
        r = head_calibration(z, t, z, t, head.kind, float(head.temperature))
        r = {k: v for k, v in r.items() if not k.startswith("reliability")}
        r["task"] = head.task
        if apply:
            head.temperature.fill_(r["temperature"])
        if age_quantile and head.kind == "age_distribution":
            views = [z] + ([res.raw_flip[name]] if name in res.raw_flip else [])
            r["age_estimate"] = fit_age_quantile(views, t, r["temperature"], head.estimate,
                                                 max_false_adult=max_false_adult,
                                                 current_guard=getattr(head, "minor_guard", None))
            if apply:
                head.estimate = r["age_estimate"]["estimate"]
                head.minor_guard = r["age_estimate"]["minor_guard"]
                heads_cfg = bundle.config.get("model", {}).get("heads", {})
                if isinstance(heads_cfg.get(name), dict):
                    heads_cfg[name]["estimate"] = head.estimate
                    if head.minor_guard is None:
                        heads_cfg[name].pop("minor_guard", None)
                    else:
                        heads_cfg[name]["minor_guard"] = head.minor_guard
        out[name] = r
    return out


#: quantiles :func:`fit_age_quantile` tries
AGE_QUANTILES: tuple[float, ...] = tuple(round(0.30 + 0.01 * i, 2) for i in range(41))
#: under-age guards (:func:`agegender.models.heads.guard_minors`) it tries with them when a false-adult limit is set
MINOR_GUARDS: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(46))


def fit_age_quantile(views: Sequence[np.ndarray], ages: np.ndarray, temperature: float = 1.0,
                     current: str | float = "median", grid: Sequence[float] = AGE_QUANTILES,
                     max_false_adult: float | None = None, current_guard: float | None = None,
                     guards: Sequence[float] = MINOR_GUARDS) -> dict[str, Any]:
    """The quantile of an age-distribution head's output that minimises the mean absolute error on labelled
    images (the validation split), like temperature scaling a decision fitted after training.

    ``max_false_adult`` (a fraction, e.g. 0.08) makes it a constrained choice: the lowest-MAE pair of a quantile
    and an under-age guard (none, or one of ``guards``: :func:`agegender.models.heads.guard_minors` holds a face
    whose probability of being under 18 is at least the guard below 18) among those whose under-18 false-adult rate
    (minors estimated 18 or older) on these images is at most that. A lower quantile reads every age lower; the
    guard lowers only the faces near 18 that may be minors, so it usually meets a limit for far less MAE (the
    under-age concern of jamoliddin2022 §V). If no pair meets it (or no minor is labelled), the unconstrained
    choice is kept and ``constraint_met`` is False. Without a limit no guard is fitted (it cannot lower the MAE
    by more than noise).

    ``views``: the head's raw outputs (N, 101), one array per test-time view (the image and, with flip TTA,
    its mirror); each view's estimate is read (and guarded) and the views averaged, as the predictor does.
    ``ages``: true ages (NaN = unlabelled). Returns the chosen ``estimate`` and ``minor_guard`` with the MAE and
    under-18 false-adult rate at ``current`` / ``current_guard`` and at the choice; ties within 0.005 years go to
    the quantile nearer 0.5, then to the weaker guard.

    >>> z = np.log(np.full((1, 101), 1e-6) + np.eye(101)[[30]] * 0.5 + np.eye(101)[[40]] * 0.5)
    >>> fit_age_quantile([z], np.array([30.0]))["estimate"] < 0.5   # true age at the lower mode
    True
    """
    from agegender.labels import ADULT_AGE
    from agegender.models.heads import distribution_quantile, guard_minors

    y = np.asarray(ages, dtype=np.float64)
    keep = ~np.isnan(y)
    ps = [torch.softmax(torch.as_tensor(np.asarray(v)[keep], dtype=torch.float64) / temperature, -1) for v in views]
    y = y[keep]
    minor = y < ADULT_AGE
    per_view: dict[str | float, list[torch.Tensor]] = {}

    def view_estimates(q: str | float) -> list[torch.Tensor]:
        if q not in per_view:
            if q == "mean":
                per_view[q] = [p @ torch.arange(p.shape[1], dtype=p.dtype) for p in ps]
            else:
                per_view[q] = [distribution_quantile(p, 0.5 if q == "median" else float(q)) for p in ps]
        return per_view[q]

    def scores(q: str | float, guard: float | None = None) -> tuple[float, float]:
        ests = view_estimates(q)
        if guard is not None:  # the head's own rule, per view, as the predictor applies it
            ests = [guard_minors(e, p, guard) for e, p in zip(ests, ps)]
        est = torch.stack(ests).mean(0).numpy()
        fa = float(np.mean(est[minor] >= ADULT_AGE)) if minor.any() else float("nan")
        return float(np.mean(np.abs(est - y))), fa

    if not len(y):
        return {"estimate": current, "minor_guard": current_guard, "n": 0}
    table = {(q, None): scores(q) for q in grid}
    if max_false_adult is not None and minor.any():
        table.update({(q, g): scores(q, g) for q in grid for g in guards})
    pool = {k: v for k, v in table.items() if k[1] is None}
    if max_false_adult is not None:
        pool = {k: v for k, v in table.items() if v[1] <= max_false_adult} or pool
    best_mae = min(m for m, _ in pool.values())
    chosen = min((k for k, (m, _) in pool.items() if m <= best_mae + 0.005),
                 key=lambda k: (abs(k[0] - 0.5), -(k[1] if k[1] is not None else 1.0)))
    before = scores(current, current_guard)
    constraint = {} if max_false_adult is None else {
        "max_false_adult": float(max_false_adult), "constraint_met": bool(table[chosen][1] <= max_false_adult)}
    return {
        **constraint,
        "estimate": float(chosen[0]),
        "minor_guard": chosen[1],
        "before": current,
        "minor_guard_before": current_guard,
        "mae_before": before[0],
        "mae_after": table[chosen][0],
        "under18_false_adult_before": before[1],
        "under18_false_adult_after": table[chosen][1],
        "n": len(y),
        "views": len(views),
    }
