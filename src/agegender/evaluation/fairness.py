"""Fairness and under-age checks: every metric per ethnicity, per gender and per age group with the largest
gap between groups, and jamoliddin_yoo2022 §V's under-18 question as a threshold sweep.

Under-18 rule. A model that predicts years flags a person as a minor when the predicted age is below a
threshold t (swept over 14..30; t = 18 is the plain rule). A model that predicts only age groups flags a
minor when P(minor) >= p (p swept over 0.05..0.95; 0.5 is the default rule), where P(minor) sums the
probabilities of the groups entirely under 18 and, for a group straddling 18 (Adience's 15-20, PETA's
16-30), the share of its ages that are under 18 (ages assumed uniform within a group). The truth is the
exact age when known, else the true group when it lies entirely on one side of 18; people in a
straddling group without an exact age are left out of the under-18 figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agegender.decode import OutputDecoder
from agegender.labels import ETHNICITIES, GENDERS, MAX_AGE, AgeScheme, get_scheme
from agegender.metrics import ADULT_AGE, compute_metrics, group_probs_in_scheme, true_groups

GROUPINGS: tuple[str, ...] = ("ethnicity", "gender", "age_group")
#: metrics shown first in fairness tables (any other scalar metric is kept in the dict too)
HEADLINE: tuple[str, ...] = (
    "age_mae", "age_cs5", "age_group_accuracy", "age_group_one_off", "age_group_balanced_accuracy",
    "gender_accuracy", "ethnicity_accuracy", "pedestrian_mA", "under18_false_adult_rate",
)
#: lower is better for these; every other headline metric is higher-is-better
LOWER_IS_BETTER: frozenset[str] = frozenset({"age_mae", "under18_false_adult_rate", "under18_false_minor_rate"})
YEAR_THRESHOLDS: tuple[int, ...] = tuple(range(14, 31))
PROB_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def _is_scalar_metric(key: str, value: Any) -> bool:
    return (isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
            and not key.endswith("_n") and key not in ("n",))


def subset(arrays: Mapping[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Rows ``mask`` of every per-sample array in ``arrays`` (other values are passed through)."""
    n = len(mask)
    return {k: (np.asarray(v)[mask] if isinstance(v, np.ndarray) and len(v) == n else v) for k, v in arrays.items()}


def grouping(targets: Mapping[str, Any], by: str, scheme: str | AgeScheme) -> tuple[np.ndarray, list[str]]:
    """(group index per sample, -1 = unknown; group names) for ``by`` in :data:`GROUPINGS`."""
    if by == "ethnicity":
        return np.asarray(targets.get("ethnicity", []), dtype=np.int64), list(ETHNICITIES)
    if by == "gender":
        return np.asarray(targets.get("gender", []), dtype=np.int64), list(GENDERS)
    if by == "age_group":
        return true_groups(targets, scheme), list(get_scheme(scheme).labels)
    raise ValueError(f"unknown grouping {by!r}; choose from {GROUPINGS}")


def per_group_metrics(preds: Mapping[str, np.ndarray], targets: Mapping[str, Any], by: str,
                      scheme: str | AgeScheme = "adience8", model_scheme: str | None = None) -> dict[str, dict[str, Any]]:
    """Every metric (:func:`compute_metrics` plus the under-18 figures) within each group of ``by``;
    each group's dict also holds ``n``, its number of samples. Groups with no samples are left out."""
    sch = get_scheme(scheme)
    idx, names = grouping(targets, by, sch)
    out: dict[str, dict[str, Any]] = {}
    if len(idx) == 0:
        return out
    for g, name in enumerate(names):
        m = idx == g
        if not m.any():
            continue
        p, t = subset(preds, m), subset(targets, m)
        with warnings.catch_warnings():  # a group often holds one class only: sklearn says so, we know
            warnings.simplefilter("ignore", UserWarning)
            met = compute_metrics(p, t, sch, model_scheme)
        for k, v in under18_point(p, t, sch, model_scheme).items():
            met.setdefault(k, v)
        out[name] = {"n": int(m.sum()), **met}
    return out


_SUPPORT_PREFIXES: tuple[str, ...] = ("under18", "age_group", "age", "gender", "ethnicity")


def support(metrics: Mapping[str, Any], key: str) -> int:
    """How many samples a metric of one group rests on: its task's ``<task>_n`` (e.g. ``under18_n``, the
    minors, for the false-adult rate), else the group's ``n``."""
    for prefix in _SUPPORT_PREFIXES:
        if key.startswith(prefix + "_") and f"{prefix}_n" in metrics:
            return int(metrics[f"{prefix}_n"])
    return int(metrics.get("n", 0))


def largest_gaps(groups: Mapping[str, Mapping[str, Any]], min_n: int = 1,
                 metrics: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per metric: the best and worst group (direction from :data:`LOWER_IS_BETTER`) among the groups where
    the metric rests on at least ``min_n`` samples (see :func:`support`), and the gap |best − worst|.
    Metrics known for fewer than two such groups are left out."""
    keys = list(metrics) if metrics is not None else sorted(
        {k for m in groups.values() for k, v in m.items() if _is_scalar_metric(k, v)})
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        vals = {g: float(m[k]) for g, m in groups.items() if k in m and _is_scalar_metric(k, m[k])
                and not np.isnan(float(m[k])) and support(m, k) >= min_n}
        if len(vals) < 2:
            continue
        lower = k in LOWER_IS_BETTER
        best = min(vals, key=vals.get) if lower else max(vals, key=vals.get)
        worst = max(vals, key=vals.get) if lower else min(vals, key=vals.get)
        out[k] = {"gap": abs(vals[best] - vals[worst]), "best": best, "best_value": vals[best],
                  "worst": worst, "worst_value": vals[worst], "groups": len(vals)}
    return out


#: metrics broken down by (age group x group) in :func:`within_age_groups`, per grouping
CROSS_METRICS: dict[str, tuple[str, ...]] = {"ethnicity": ("gender_accuracy", "age_mae"), "gender": ("age_mae",)}


def within_age_groups(preds: Mapping[str, np.ndarray], targets: Mapping[str, Any], by: str, metric: str,
                      scheme: str | AgeScheme = "adience8", model_scheme: str | None = None,
                      min_n: int = 20) -> dict[str, Any]:
    """``metric`` per (true age group x group of ``by``), and the largest gap between groups within each age
    group (cells with at least ``min_n`` samples).

    A gap between groups can come from their age make-up alone: UTKFace's Asian faces hold many more
    infants, whose gender is hard to tell, than its Black faces. Comparing groups inside one age group
    separates that composition effect from a real difference. Empty when the targets lack ``by`` or ages.
    """
    sch = get_scheme(scheme)
    ages, age_names = grouping(targets, "age_group", sch)
    idx, names = grouping(targets, by, sch)
    if len(idx) == 0 or len(ages) == 0 or not (ages >= 0).any():
        return {}
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    gaps: dict[str, dict[str, Any]] = {}
    for a, age_name in enumerate(age_names):
        m = ages == a
        if not m.any():
            continue
        groups = per_group_metrics(subset(preds, m), subset(targets, m), by, sch, model_scheme)
        cells = {g: {"n": support(v, metric), "value": float(v[metric])} for g, v in groups.items()
                 if metric in v and _is_scalar_metric(metric, v[metric]) and not np.isnan(float(v[metric]))}
        if not cells:
            continue
        rows[age_name] = cells
        gap = largest_gaps(groups, min_n, [metric]).get(metric)
        if gap:
            gaps[age_name] = gap
    if not rows:
        return {}
    worst = max(gaps.values(), key=lambda g: g["gap"]) if gaps else None
    return {"metric": metric, "by": by, "groups": list(names), "min_n": min_n, "rows": rows, "gaps": gaps,
            "largest_within_age_group_gap": worst["gap"] if worst else None}


# -- under 18 ---------------------------------------------------------------------------------------------

def minor_share_of_groups(scheme: str | AgeScheme, max_age: int = MAX_AGE) -> np.ndarray:
    """Per group of ``scheme``: the share of its whole-year ages 0..``max_age`` that are under 18."""
    sch = get_scheme(scheme)
    years = np.arange(max_age + 1)
    g = sch.groups_of(years)
    total = np.bincount(g, minlength=sch.num_groups).astype(np.float64)
    minor = np.bincount(g[years < ADULT_AGE], minlength=sch.num_groups).astype(np.float64)
    return np.divide(minor, total, out=np.zeros_like(total), where=total > 0)


def minor_truth(targets: Mapping[str, Any], scheme: str | AgeScheme) -> np.ndarray:
    """1 = under 18, 0 = adult, -1 = unknown (no exact age and a true group straddling 18)."""
    sch = get_scheme(scheme)
    g = true_groups(targets, sch)
    share = minor_share_of_groups(sch)
    truth = np.full(len(g), -1, dtype=np.int64)
    known = g >= 0
    truth[known & (share[np.maximum(g, 0)] == 1.0)] = 1
    truth[known & (share[np.maximum(g, 0)] == 0.0)] = 0
    if "age" in targets:
        age = np.asarray(targets["age"], dtype=np.float64)
        ok = ~np.isnan(age)
        truth[ok] = (age[ok] < ADULT_AGE).astype(np.int64)
    return truth


def minor_score(preds: Mapping[str, np.ndarray], scheme: str | AgeScheme,
                model_scheme: str | None = None, by: str = "auto") -> tuple[str, np.ndarray] | None:
    """``("years", predicted age)`` for models that predict years, ``("probability", P(minor))`` for group
    classifiers (see the module docstring), None when the model predicts no age at all. ``by="probability"``
    asks for P(minor) instead of years: a distribution over years gives its mass below 18 (``p_under_18``)."""
    if by == "probability" and "age_probs" in preds:
        return "probability", OutputDecoder.minor_probs(preds)
    if "age" in preds and by != "probability":
        return "years", np.asarray(preds["age"], dtype=np.float64)
    src = get_scheme(model_scheme or scheme)
    gp = group_probs_in_scheme(preds, src, src.name)
    if gp is None:
        return None
    gp = np.asarray(gp, dtype=np.float64)
    s = gp.sum(axis=1, keepdims=True)  # pedestrian heads are independent sigmoids: renormalise
    gp = np.divide(gp, s, out=np.full_like(gp, 1.0 / gp.shape[1]), where=s > 0)
    return "probability", gp @ minor_share_of_groups(src)


def _confusion_row(flag: np.ndarray, minor: np.ndarray) -> dict[str, Any]:
    tp = int((flag & minor).sum())
    fp = int((flag & ~minor).sum())
    fn = int((~flag & minor).sum())
    tn = int((~flag & ~minor).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": prec, "recall": rec, "f1": f1,
            "false_adult_rate": fn / (tp + fn) if tp + fn else float("nan"),
            "false_minor_rate": fp / (fp + tn) if fp + tn else float("nan"),
            "flagged_rate": (tp + fp) / max(tp + fp + fn + tn, 1)}


def _flags(kind: str, score: np.ndarray, threshold: float) -> np.ndarray:
    return score < threshold if kind == "years" else score >= threshold


def under18_sweep(preds: Mapping[str, np.ndarray], targets: Mapping[str, Any], scheme: str | AgeScheme = "adience8",
                  model_scheme: str | None = None, thresholds: Sequence[float] | None = None,
                  by: str = "auto") -> dict[str, Any]:
    """Precision / recall / F1 of the "minor" class and the false-adult rate (minors let through) and
    false-minor rate (adults flagged) at each threshold; empty when there is no score or no minor. ``by``: as
    :func:`minor_score`."""
    ms = minor_score(preds, scheme, model_scheme, by)
    if ms is None:
        return {}
    kind, score = ms
    truth = minor_truth(targets, scheme)
    known = truth >= 0
    if not (truth == 1).any():
        return {}
    minor = truth[known] == 1
    if thresholds is None:
        thresholds = YEAR_THRESHOLDS if kind == "years" else PROB_THRESHOLDS
    rows = [{"threshold": float(t), **_confusion_row(_flags(kind, score[known], t), minor)} for t in thresholds]
    rule = ("flag as minor when predicted age < threshold (years)" if kind == "years" else
            "flag as minor when p_under_18 >= threshold (the age distribution's mass below 18)"
            if "age_probs" in preds and by == "probability" else
            "flag as minor when P(minor) >= threshold (age-group probabilities)")
    return {"score": kind, "rule": rule, "default_threshold": float(ADULT_AGE) if kind == "years" else 0.5,
            "n": int(known.sum()), "n_minors": int(minor.sum()), "rows": rows}


def under18_point(preds: Mapping[str, np.ndarray], targets: Mapping[str, Any], scheme: str | AgeScheme = "adience8",
                  model_scheme: str | None = None) -> dict[str, Any]:
    """False-adult and false-minor rates at the default rule (age < 18, or P(minor) >= 0.5)."""
    ms = minor_score(preds, scheme, model_scheme)
    if ms is None:
        return {}
    kind, score = ms
    truth = minor_truth(targets, scheme)
    known = truth >= 0
    minor = truth[known] == 1
    if not minor.any():
        return {}
    row = _confusion_row(_flags(kind, score[known], ADULT_AGE if kind == "years" else 0.5), minor)
    return {"under18_false_adult_rate": row["false_adult_rate"], "under18_false_minor_rate": row["false_minor_rate"],
            "under18_n": int(minor.sum())}


def pick_threshold(sweep: Mapping[str, Any], max_false_adult_rate: float = 0.05) -> dict[str, Any] | None:
    """The sweep row that lets at most ``max_false_adult_rate`` of minors through while flagging the fewest
    adults; None when no threshold reaches it."""
    rows = [r for r in sweep.get("rows", []) if r["false_adult_rate"] <= max_false_adult_rate]
    return min(rows, key=lambda r: (r["false_minor_rate"], r["false_adult_rate"])) if rows else None


def fairness_report(preds: Mapping[str, np.ndarray], targets: Mapping[str, Any], scheme: str | AgeScheme = "adience8",
                    model_scheme: str | None = None, min_n: int = 20) -> dict[str, Any]:
    """Per-group metrics for each grouping the targets allow, the largest gaps (groups with ``min_n``+
    samples), and the under-18 sweep with an operating point at most 5 % of minors let through."""
    sch = get_scheme(scheme)
    out: dict[str, Any] = {"min_n": min_n, "by": {}, "gaps": {}}
    for by in GROUPINGS:
        idx, _ = grouping(targets, by, sch)
        if len(idx) == 0 or not (idx >= 0).any():
            continue
        groups = per_group_metrics(preds, targets, by, sch, model_scheme)
        out["by"][by] = groups
        out["gaps"][by] = largest_gaps(groups, min_n)
    for by, metrics in CROSS_METRICS.items():
        for metric in metrics:
            cross = within_age_groups(preds, targets, by, metric, sch, model_scheme, min_n)
            if cross:
                out.setdefault("within_age_group", {}).setdefault(by, {})[metric] = cross
    sweep = under18_sweep(preds, targets, sch, model_scheme)
    if sweep:
        out["under18"] = {**sweep, **under18_point(preds, targets, sch, model_scheme),
                          "operating_point_5pct": pick_threshold(sweep, 0.05)}
    if "age" in preds and "age_probs" in preds:  # a distribution over years: its p_under_18 swept too
        sweep = under18_sweep(preds, targets, sch, model_scheme, by="probability")
        if sweep:
            out["under18_probability"] = {**sweep, "operating_point_5pct": pick_threshold(sweep, 0.05)}
    return out
