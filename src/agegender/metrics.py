"""Metrics for every task, computed from decoded predictions and (possibly partial) targets. One module for
training's validation figures and evaluation's test figures, so both score alike (below both layers).

Uses scikit-learn for the standard ones (accuracy, macro precision/recall/F1, balanced accuracy —
the mAcc of chatzitzisi —, confusion matrices); age MAE, CS@5 (share of errors ≤ 5 years), exact
and 1-off age-group accuracy, the under-18 false-adult rate and the ROC AUC and Brier score of the probability
of an age under 18 are one-liners on top.
Missing labels (-1 / NaN) are left out per task, so partial datasets score what they can.

chatzitzisi2020's names map onto ours as: gender Prec/Rec/F1 → ``gender_precision/recall/f1`` (female
positive), mAcc → ``gender_balanced_accuracy``, Acc → ``gender_accuracy``; age mPrec/mRec/mF1/Acc →
``age_group_macro_precision/recall/f1`` and ``age_group_accuracy``; multi-label Prec/Rec/F1 →
``pedestrian_example_precision/recall/f1``, mAcc → ``pedestrian_mA``, Acc → ``pedestrian_label_accuracy``
(its Acc exceeds its Prec, so it cannot be the example-based accuracy, which never exceeds precision).
:func:`aggregate_folds` turns per-fold reports into mean ± std (aminian_noubir's Adience protocol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from agegender.decode import OutputDecoder
from agegender.labels import ADULT_AGE, AgeScheme, get_scheme


def group_probs_in_scheme(preds: Mapping[str, np.ndarray], scheme: AgeScheme, model_scheme: str | None) -> np.ndarray | None:
    """Predicted probabilities over ``scheme``'s groups from whatever the model outputs (the predictor's decoder)."""
    return OutputDecoder(model_scheme or scheme, scheme).group_probs(preds)


def gender_probs(preds: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """(N, 2) probabilities of male, female (the predictor's decoder)."""
    female = OutputDecoder.female_probs(preds)
    return None if female is None else np.stack([1 - female, female], axis=1)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, prefix: str) -> dict[str, Any]:
    labels = list(range(num_classes))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    out = {
        f"{prefix}_accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}_macro_precision": float(p),
        f"{prefix}_macro_recall": float(r),
        f"{prefix}_macro_f1": float(f),
        f"{prefix}_balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        f"{prefix}_confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        f"{prefix}_n": len(y_true),
    }
    if num_classes == 2:
        # Binary figures with "female" (1) as the positive class, as chatzitzisi reports them.
        bp, br, bf, _ = precision_recall_fscore_support(y_true, y_pred, labels=[1], average=None, zero_division=0)
        out.update({f"{prefix}_precision": float(bp[0]), f"{prefix}_recall": float(br[0]), f"{prefix}_f1": float(bf[0])})
    return out


def true_groups(targets: Mapping[str, Any], scheme: str | AgeScheme, n: int | None = None) -> np.ndarray:
    """True age group per sample in ``scheme`` (-1 unknown): from the exact age, else the stored group (when
    it is in the same scheme). ``n``: the number of samples, when the targets alone do not say it."""
    sch = get_scheme(scheme)
    if n is None:
        n = len(next(v for v in targets.values() if isinstance(v, np.ndarray)))
    g = np.full(n, -1, dtype=np.int64)
    age = np.asarray(targets.get("age", []), dtype=np.float64)
    if age.size:
        g = np.where(np.isnan(age), -1, sch.groups_of(np.nan_to_num(age)))
    if "age_group" in targets and targets.get("age_group_scheme", sch.name) == sch.name:
        g = np.where(g >= 0, g, np.asarray(targets["age_group"], dtype=np.int64))
    return g


def compute_metrics(
    preds: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    scheme: str | AgeScheme = "adience8",
    model_scheme: str | None = None,
    attribute_names: Sequence[str] | None = None,
    target_attribute_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric the targets allow. ``targets`` may hold age (NaN = missing), age_group (in
    ``targets_scheme``= ``scheme`` unless given as exact ages), gender, ethnicity (-1 = missing).

    Attributes are matched by name when ``attribute_names`` (the model's output columns) and
    ``target_attribute_names`` (the columns of ``targets["attributes"]``) are given: only the shared ones
    are scored, and ``attributes_n_scored``, ``attributes_model_only`` and ``attributes_dataset_only`` say
    what was (see :mod:`agegender.attributes`). Without names the columns must already
    correspond; a different count leaves the attribute metrics out with ``attributes_note``."""
    sch = get_scheme(scheme)
    out: dict[str, Any] = {"age_scheme": sch.name, "age_group_labels": list(sch.labels)}
    age_t = np.asarray(targets.get("age", []), dtype=np.float64)
    # --- age in years
    if "age" in preds and age_t.size:
        m = ~np.isnan(age_t)
        if m.any():
            err = np.abs(np.asarray(preds["age"], dtype=np.float64)[m] - age_t[m])
            out["age_mae"] = float(err.mean())
            out["age_cs5"] = float((err <= 5).mean())
            out["age_n"] = int(m.sum())
            minors = m & (age_t < ADULT_AGE)
            if minors.any():
                out["under18_false_adult_rate"] = float((np.asarray(preds["age"])[minors] >= ADULT_AGE).mean())
                out["under18_n"] = int(minors.sum())
    # --- the probability of an age under 18 (a distribution over years): how well it ranks and how honest it is
    p_minor = OutputDecoder.minor_probs(preds)
    if p_minor is not None and age_t.size == len(p_minor):
        m = ~np.isnan(age_t)
        is_minor = age_t[m] < ADULT_AGE
        if is_minor.any() and not is_minor.all():
            out["under18_prob_auc"] = float(roc_auc_score(is_minor, p_minor[m]))
            out["under18_prob_brier"] = float(np.mean((p_minor[m] - is_minor) ** 2))
            out["under18_prob_mean"] = float(p_minor[m].mean())
            out["under18_share"] = float(is_minor.mean())
    # --- age group in the evaluation scheme
    gp = group_probs_in_scheme(preds, sch, model_scheme)
    if gp is not None:
        g_true = true_groups(targets, sch, len(gp))
        m = g_true >= 0
        if m.any():
            g_pred = gp[m].argmax(1)
            out.update(classification_metrics(g_true[m], g_pred, sch.num_groups, "age_group"))
            out["age_group_one_off"] = float((np.abs(g_pred - g_true[m]) <= 1).mean())
    # --- gender
    gpr = gender_probs(preds)
    if gpr is not None and "gender" in targets:
        t = np.asarray(targets["gender"], dtype=np.int64)
        m = t >= 0
        if m.any():
            pred = gpr[m].argmax(1)
            out.update(classification_metrics(t[m], pred, 2, "gender"))
            # each gender's recall (labels.GENDERS: 0 male, 1 female) and the gap between them
            for code, name in ((1, "female"), (0, "male")):
                rows = t[m] == code
                out[f"gender_recall_{name}"] = float((pred[rows] == code).mean()) if rows.any() else float("nan")
            out["gender_recall_gap"] = abs(out["gender_recall_female"] - out["gender_recall_male"])
    # --- ethnicity
    if "ethnicity_probs" in preds and "ethnicity" in targets:
        t = np.asarray(targets["ethnicity"], dtype=np.int64)
        m = t >= 0
        if m.any():
            k = preds["ethnicity_probs"].shape[1]
            out.update(classification_metrics(t[m], preds["ethnicity_probs"][m].argmax(1), k, "ethnicity"))
    # --- attributes (label-based mA and example-based metrics)
    if "attributes_probs" in preds and "attributes" in targets:
        out.update(attribute_metrics(preds["attributes_probs"], targets["attributes"], attribute_names,
                                     target_attribute_names))
    if ("pedestrian_probs" in preds and "pedestrian" in targets
            and np.shape(preds["pedestrian_probs"]) == np.shape(targets["pedestrian"])):  # same scheme only
        out.update(multilabel_metrics(preds["pedestrian_probs"], targets["pedestrian"], prefix="pedestrian"))
    return out


def per_sample_correct(
    preds: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    scheme: str | AgeScheme = "adience8",
    model_scheme: str | None = None,
) -> dict[str, np.ndarray]:
    """1.0 / 0.0 per sample for each classification task that the predictions and targets allow (keys
    ``age_group_accuracy``, ``gender_accuracy``, ``ethnicity_accuracy``), NaN where the truth is missing.
    The true age group is :func:`true_groups`, as in :func:`compute_metrics`."""
    sch = get_scheme(scheme)
    out: dict[str, np.ndarray] = {}
    gp = group_probs_in_scheme(preds, sch, model_scheme)
    if gp is not None:
        g = true_groups(targets, sch, len(gp))
        out["age_group_accuracy"] = np.where(g >= 0, gp.argmax(1) == g, np.nan)
    gpr = gender_probs(preds)
    if gpr is not None and "gender" in targets:
        t = np.asarray(targets["gender"], dtype=np.int64)
        out["gender_accuracy"] = np.where(t >= 0, gpr.argmax(1) == t, np.nan)
    if "ethnicity_probs" in preds and "ethnicity" in targets:
        t = np.asarray(targets["ethnicity"], dtype=np.int64)
        out["ethnicity_accuracy"] = np.where(t >= 0, preds["ethnicity_probs"].argmax(1) == t, np.nan)
    return out


#: what :func:`per_identity_accuracy` adds to a report when some people have several images
PER_IDENTITY_KEYS: tuple[str, ...] = ("age_group_accuracy_per_identity", "gender_accuracy_per_identity",
                                      "ethnicity_accuracy_per_identity", "n_identities")


def per_identity_accuracy(correct: Mapping[str, np.ndarray], identities: Sequence[Any]) -> dict[str, Any]:
    """Accuracies with every person counted once: the mean over identities of each identity's accuracy.

    On data where some people have many images (PETA: a TownCentre walker has about 29 frames, a CUHK
    one a single image), the plain accuracy is mostly a few people's. This one is steadier for choosing
    between models. Samples without an identity count as their own person. Returns
    ``{task}_per_identity`` for each of ``correct`` (from :func:`per_sample_correct`) plus
    ``n_identities``; empty when no identity has more than one sample, where it equals the plain figure.
    """
    ids = np.asarray([str(i) if i is not None else f"__sample_{k}" for k, i in enumerate(identities)])
    n_ids = len(np.unique(ids))
    if n_ids == len(ids):  # no one has two images (or there are none)
        return {}
    out: dict[str, Any] = {}
    for key, c in correct.items():
        c = np.asarray(c, dtype=np.float64)
        m = ~np.isnan(c)
        if not m.any():
            continue
        _, inv = np.unique(ids[m], return_inverse=True)
        per_id = np.bincount(inv, weights=c[m]) / np.bincount(inv)
        out[f"{key}_per_identity"] = float(per_id.mean())
    if out:
        out["n_identities"] = n_ids
    return out


def attribute_metrics(probs: np.ndarray, target: np.ndarray, model_names: Sequence[str] | None = None,
                      target_names: Sequence[str] | None = None, prefix: str = "attributes") -> dict[str, Any]:
    """:func:`multilabel_metrics` of the attributes the model and the data share, matched by name when both
    name lists are given (else by position, when the counts agree); never raises on a mismatch: then the
    metrics are left out and ``{prefix}_note`` says why."""
    from agegender.attributes import align_attributes

    p, t = np.asarray(probs), np.asarray(target)
    if t.ndim != 2 or t.shape[1] == 0:
        return {}
    if model_names is not None and target_names is not None:
        align = align_attributes(model_names, target_names, p.shape[1])
        if len(align.model) != p.shape[1] or len(align.data) != t.shape[1]:
            return {f"{prefix}_note": f"{len(align.model)} model and {len(align.data)} data attribute names for "
                                      f"{p.shape[1]} and {t.shape[1]} columns; attributes not scored"}
        out = {k.replace("attributes", prefix, 1): v for k, v in align.report().items()}
        if align.shared:
            out.update(multilabel_metrics(p[:, align.model_columns()], t[:, align.data_columns()], prefix))
        return out
    if p.shape[1] != t.shape[1]:
        return {f"{prefix}_note": f"the model predicts {p.shape[1]} attributes, the data label {t.shape[1]}; "
                                  "without their names they cannot be matched, so they are not scored"}
    return multilabel_metrics(p, t, prefix)


def multilabel_metrics(probs: np.ndarray, target: np.ndarray, prefix: str, threshold: float = 0.5) -> dict[str, Any]:
    """Label-based mean accuracy (mA: mean over labels of (TPR + TNR) / 2) and example-based
    accuracy / precision / recall / F1 (Li et al., used across pedestrian-attribute work).
    NaN targets are ignored; labels without positives or negatives are left out of mA."""
    t = np.asarray(target, dtype=np.float64)
    valid = ~np.isnan(t)
    pred = (np.asarray(probs) >= threshold) & valid
    pos = (t == 1) & valid
    neg = (t == 0) & valid
    tpr_terms = []
    for j in range(t.shape[1]):
        if pos[:, j].any() and neg[:, j].any():
            tpr = (pred[:, j] & pos[:, j]).sum() / pos[:, j].sum()
            tnr = (~pred[:, j] & neg[:, j]).sum() / neg[:, j].sum()
            tpr_terms.append((tpr + tnr) / 2)
    inter = (pred & pos).sum(1).astype(np.float64)
    union = (pred | pos).sum(1).astype(np.float64)
    npred = pred.sum(1).astype(np.float64)
    npos = pos.sum(1).astype(np.float64)
    rows = valid.any(1)
    acc = np.where(union > 0, inter / np.maximum(union, 1), 1.0)[rows]
    prec = np.where(npred > 0, inter / np.maximum(npred, 1), 0.0)[rows]
    rec = np.where(npos > 0, inter / np.maximum(npos, 1), 0.0)[rows]
    p_mean, r_mean = float(prec.mean()) if len(prec) else 0.0, float(rec.mean()) if len(rec) else 0.0
    # Element-wise accuracy over every labelled entry (Keras' binary accuracy; chatzitzisi's multi-label "Acc").
    n_valid = int(valid.sum())
    label_acc = float(((pred == pos) & valid).sum() / n_valid) if n_valid else float("nan")
    return {
        f"{prefix}_mA": float(np.mean(tpr_terms)) if tpr_terms else float("nan"),
        f"{prefix}_example_accuracy": float(acc.mean()) if len(acc) else float("nan"),
        f"{prefix}_example_precision": p_mean,
        f"{prefix}_example_recall": r_mean,
        f"{prefix}_example_f1": 2 * p_mean * r_mean / (p_mean + r_mean) if p_mean + r_mean > 0 else 0.0,
        f"{prefix}_label_accuracy": label_acc,
    }


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def aggregate_folds(reports: Sequence[Mapping[str, Any]], ddof: int = 0) -> dict[str, Any]:
    """Mean ± standard deviation over k per-fold metric reports (k-fold protocols such as Adience's 5 folds).

    Every numeric metric present in all reports becomes ``{"mean", "std", "n", "values"}``; confusion
    matrices (``*_confusion``) are summed over the folds (each image is tested exactly once). ``ddof=0``
    gives the population std over folds (numpy's default); pass ``ddof=1`` for the sample std. NaN fold
    values are left out of that metric's mean and std.

    >>> aggregate_folds([{"acc": 0.5}, {"acc": 0.7}])["acc"]["mean"]
    0.6
    """
    reports = [r for r in reports if r]
    out: dict[str, Any] = {"folds": len(reports)}
    if not reports:
        return out
    keys = [k for k in reports[0] if all(k in r for r in reports[1:])]
    for k in keys:
        vals = [r[k] for r in reports]
        if all(_is_number(v) for v in vals):
            arr = np.asarray(vals, dtype=np.float64)
            ok = arr[~np.isnan(arr)]
            out[k] = {
                "mean": float(ok.mean()) if len(ok) else float("nan"),
                "std": float(ok.std(ddof=ddof)) if len(ok) > ddof else float("nan"),
                "n": len(ok),
                "values": [float(v) for v in arr],
            }
        elif k.endswith("_confusion"):
            try:
                out[k] = np.sum([np.asarray(v, dtype=np.int64) for v in vals], axis=0).tolist()
            except ValueError:  # folds with different label sets: nothing sensible to sum
                continue
    return out
