"""The evaluation report: ``report.md`` with PNG plots (matplotlib, Agg) beside the JSON of ``agegender
evaluate --report DIR`` — confusion matrices, MAE and accuracy by true age, reliability diagrams with ECE
before/after temperature scaling, per-group fairness tables with the largest gaps and the under-18 sweep.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agegender.evaluation.calibration import (
    calibratable_heads,
    cross_fitted_calibration,
    head_calibration,
    head_target,
)
from agegender.evaluation.fairness import HEADLINE, LOWER_IS_BETTER, fairness_report, minor_score
from agegender.labels import ETHNICITIES, GENDERS, Sample
from agegender.metrics import (
    PER_IDENTITY_KEYS,
    gender_probs,
    group_probs_in_scheme,
    per_sample_correct,
)

if TYPE_CHECKING:
    from agegender.evaluation.runner import Evaluation

AGE_BIN_WIDTH = 5
#: calibration sources: the model's validation split, or two identity-disjoint halves of the evaluated data
CALIBRATION_SOURCES: tuple[str, ...] = ("auto", "val", "halves")


# -- small helpers ----------------------------------------------------------------------------------------

def _fmt(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    if key == "threshold" and isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else f"{v:.2f}"
    if isinstance(v, (float, np.floating)):
        return f"{v:.2f}" if ("mae" in key or key.startswith(("temperature", "nll"))) else f"{v:.3f}"
    return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table (cells already formatted or formatted with :func:`str`)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _figure(w: float = 6.0, h: float = 4.5) -> Any:
    from matplotlib.figure import Figure  # the object API needs no pyplot, so no global backend state

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def two_halves(samples: Sequence[Sample], seed: int = 0) -> np.ndarray:
    """0/1 per sample, whole identities on one side (samples without one are their own identity)."""
    ids = [s.identity if s.identity is not None else f"__{i}" for i, s in enumerate(samples)]
    uniq, inverse = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
    side = np.random.default_rng(seed).permutation(len(uniq)) % 2
    return side[inverse]


# -- plots -----------------------------------------------------------------------------------------------

def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (rows = truth) with the counts written in the cells."""
    m = np.asarray(cm, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(m)
    fig = _figure(1.2 + 0.65 * k, 1.0 + 0.6 * k)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=list(labels)[:k], rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels)[:k])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.savefig(path)
    return path


def by_true_age(ev: Evaluation, width: int = AGE_BIN_WIDTH) -> list[dict[str, Any]]:
    """Per bin of true age (``width`` years): n, MAE (models that predict years) and the accuracy of every
    classification task; empty when the data carry no exact ages."""
    age = np.asarray(ev.targets.get("age", []), dtype=np.float64)
    if age.size == 0 or np.isnan(age).all():
        return []
    preds = ev.preds
    correct = per_sample_correct(preds, ev.targets, ev.scheme, ev.bundle.age_scheme)
    err = np.abs(np.asarray(preds["age"], dtype=np.float64) - age) if "age" in preds else None
    rows = []
    top = int(np.nanmax(age))
    for lo in range(0, top + 1, width):
        m = (age >= lo) & (age < lo + width)
        if not m.any():
            continue
        row: dict[str, Any] = {"ages": f"{lo}-{lo + width - 1}", "lo": lo, "n": int(m.sum())}
        if err is not None:
            row["age_mae"] = float(err[m].mean())
        for k, c in correct.items():
            v = c[m].astype(np.float64)
            v = v[~np.isnan(v)]
            row[k] = float(v.mean()) if len(v) else float("nan")
        rows.append(row)
    return rows


def plot_by_age(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    x = np.asarray([r["lo"] for r in rows], dtype=np.float64) + AGE_BIN_WIDTH / 2
    acc_keys = [k for k in ("age_group_accuracy", "gender_accuracy", "ethnicity_accuracy") if k in rows[0]]
    has_mae = "age_mae" in rows[0]
    fig = _figure(9, 4.5 if not (has_mae and acc_keys) else 7)
    n_ax = int(has_mae) + int(bool(acc_keys))
    axes = [fig.add_subplot(n_ax, 1, i + 1) for i in range(n_ax)]
    i = 0
    if has_mae:
        ax = axes[i]
        ax.bar(x, [r["age_mae"] for r in rows], width=AGE_BIN_WIDTH * 0.85, color="tab:orange")
        ax.set_ylabel("MAE (years)")
        ax.set_title("Age MAE by true age (bins of 5 years)")
        i += 1
    if acc_keys:
        ax = axes[i]
        for k in acc_keys:
            ax.plot(x, [r[k] for r in rows], marker="o", label=k.replace("_accuracy", ""))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy")
        ax.set_title("Accuracy by true age (bins of 5 years)")
        ax.legend(loc="lower right")
    axes[-1].set_xlabel("true age (years)")
    fig.savefig(path)
    return path


def plot_reliability(cal: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """One panel per head: accuracy vs confidence per bin before and after temperature scaling."""
    names = list(cal)
    fig = _figure(4.2 * len(names), 4.2)
    for i, name in enumerate(names):
        c = cal[name]
        ax = fig.add_subplot(1, len(names), i + 1)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
        for key, lab, col in (("reliability_before", "before", "tab:red"), ("reliability_after", "after", "tab:blue")):
            r = c[key]
            mids = (np.asarray(r["bin_lower"]) + np.asarray(r["bin_upper"])) / 2
            acc = np.asarray([np.nan if v is None else v for v in r["accuracy"]], dtype=np.float64)
            ok = ~np.isnan(acc)
            t = c["temperature_before"] if lab == "before" else c["temperature"]
            ax.plot(mids[ok], acc[ok], marker="o", color=col, label=f"{lab} (T={t:.2f}, ECE={r['ece']:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} ({c['kind']})")
        ax.legend(loc="upper left", fontsize=8)
    fig.savefig(path)
    return path


def plot_under18(sweep: Mapping[str, Any], path: Path) -> Path:
    rows = sweep["rows"]
    x = [r["threshold"] for r in rows]
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    for key, lab in (("precision", "precision (minor)"), ("recall", "recall (minor)"),
                     ("false_adult_rate", "false-adult rate (minors let through)"),
                     ("false_minor_rate", "false-minor rate (adults flagged)")):
        ax.plot(x, [r[key] for r in rows], marker=".", label=lab)
    ax.axvline(sweep["default_threshold"], color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("age threshold t (flag when predicted age < t)" if sweep["score"] == "years"
                  else "probability threshold p (flag when P(minor) >= p)")
    ax.set_title("Under-18 detection: threshold sweep")
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


# -- calibration ------------------------------------------------------------------------------------------

def report_calibration(ev: Evaluation, source: str = "auto", batch_size: int = 64) -> tuple[dict[str, Any], str]:
    """ECE before/after temperature scaling per calibratable head, and a sentence saying how T was fitted.

    ``val``: fit on the model's validation split (only when the evaluation re-applied the model's split,
    ``--split test``), measure on the evaluated images. ``halves``: split the evaluated images into two
    identity-disjoint halves, calibrate each with the T fitted on the other, and measure on all of them.
    ``auto`` = ``val`` when available, else ``halves``. The model itself is not changed.
    """
    from agegender.evaluation.runner import num_attributes, run_model, sample_targets

    if source not in CALIBRATION_SOURCES:
        from agegender.errors import AgeGenderError

        raise AgeGenderError(f"calibration must be one of {', '.join(CALIBRATION_SOURCES)} (got {source!r})",
                             code="bad_config")
    heads = calibratable_heads(ev.bundle.model)
    if not heads or not ev.raw:
        return {}, "The model has no head whose output temperature scaling applies to."
    scheme = ev.bundle.age_scheme  # heads speak the model's own scheme
    n_attr = num_attributes(ev.samples)
    targets = sample_targets(ev.samples, scheme, n_attr)
    use_val = source in ("auto", "val") and bool(ev.val_samples)
    fit_raw: dict[str, np.ndarray] = {}
    fit_targets: dict[str, np.ndarray] = {}
    if use_val:
        res = run_model(ev.bundle, ev.val_samples, batch_size=batch_size, raw=True)
        kept = [s for s, k in zip(ev.val_samples, res.ok) if k]
        fit_raw, fit_targets = res.raw, sample_targets(kept, scheme, num_attributes(kept))
        how = (f"T fitted on the model's validation split ({len(kept)} images, LBFGS on the NLL), ECE measured "
               f"on the {len(ev.samples)} evaluated images ({N_BINS_TEXT}).")
    else:
        folds = two_halves(ev.samples)
        how = (f"No separate validation data: the {len(ev.samples)} evaluated images were split into two "
               f"identity-disjoint halves; each half is calibrated with the T fitted (LBFGS on the NLL) on the "
               f"other, and ECE after is measured on the pooled out-of-half probabilities ({N_BINS_TEXT}). "
               f"The T shown is the mean of the two fits.")
        if source == "val":
            how = "The model's validation split is not available here (use --split test). " + how
    out: dict[str, Any] = {}
    for name, head in heads.items():
        z = ev.raw.get(name)
        if z is None:
            continue
        t = head_target(targets, head, z)
        if t is None:
            continue
        t_before = float(head.temperature)
        if use_val:
            zf = fit_raw.get(name)
            tf = head_target(fit_targets, head, zf) if zf is not None else None
            if tf is None:
                continue
            r = head_calibration(zf, tf, z, t, head.kind, t_before)
        else:
            r = cross_fitted_calibration(z, t, head.kind, folds, t_before)
        r["task"] = head.task
        out[name] = r
    return out, how


N_BINS_TEXT = "15 equal-width confidence bins"


# -- the report -------------------------------------------------------------------------------------------

def _metric_rows(report: Mapping[str, Any]) -> list[list[str]]:
    keys = [k for k in (*HEADLINE, "age_group_macro_f1", "gender_f1", "gender_balanced_accuracy",
                        "ethnicity_macro_f1", "pedestrian_example_f1", "pedestrian_label_accuracy",
                        *PER_IDENTITY_KEYS) if k in report]
    return [[k, _fmt(k, report[k])] for k in dict.fromkeys(keys)]


def _attributes_md(report: Mapping[str, Any]) -> list[str]:
    """The attributes section: how many were scored (matched by name) and the names left out on each side."""
    if "attributes_n_scored" not in report:
        return []
    n, n_model, n_data = report["attributes_n_scored"], report.get("attributes_n_model"), report.get("attributes_n_dataset")
    head = f"Matched by name: **{n}** attributes scored, of the model's {n_model} and the dataset's {n_data}."
    lines = ["\n## Attributes\n", head]
    if report.get("attributes_note"):
        lines.append(f"Note: {report['attributes_note']}.")
    keys = [k for k in ("attributes_mA", "attributes_example_accuracy", "attributes_example_precision",
                        "attributes_example_recall", "attributes_example_f1", "attributes_label_accuracy") if k in report]
    if keys:
        lines.append("\n" + md_table(["metric", "value"], [[k, _fmt(k, report[k])] for k in keys]))
    for key, what in (("attributes_model_only", "Predicted by the model but not labelled in the data (not scored)"),
                      ("attributes_dataset_only", "Labelled in the data but not predicted by the model (not scored)")):
        names = report.get(key) or []
        lines.append(f"\n{what}: {', '.join(f'`{x}`' for x in names) if names else 'none'}.")
    return lines


def _fairness_md(fair: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for by, groups in fair.get("by", {}).items():
        keys = [k for k in HEADLINE if any(k in g for g in groups.values())]
        lines.append(f"### By {by.replace('_', ' ')}\n")
        rows = [[name, g["n"], *[_fmt(k, g.get(k)) for k in keys]] for name, g in groups.items()]
        lines.append(md_table(["group", "n", *keys], rows))
        gaps = fair.get("gaps", {}).get(by, {})
        gap_rows = [[k, _fmt(k, gaps[k]["gap"]), f"{gaps[k]['best']} ({_fmt(k, gaps[k]['best_value'])})",
                     f"{gaps[k]['worst']} ({_fmt(k, gaps[k]['worst_value'])})"] if gaps[k]["gap"] > 0 else
                    [k, _fmt(k, 0.0), "all equal", "all equal"] for k in keys if k in gaps]
        if gap_rows:
            lines.append(f"\nLargest gaps by {by.replace('_', ' ')} (groups where the metric rests on at least "
                         f"{fair['min_n']} images; "
                         f"{', '.join(sorted(LOWER_IS_BETTER))}: lower is better):\n")
            lines.append(md_table(["metric", "gap", "best group", "worst group"], gap_rows))
        lines.append("")
    return lines


def _within_age_md(fair: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for by, per_metric in fair.get("within_age_group", {}).items():
        for metric, c in per_metric.items():
            cols = [g for g in c["groups"] if any(g in r for r in c["rows"].values())]
            rows = []
            for age, cells in c["rows"].items():
                gap = c["gaps"].get(age)
                rows.append([age, *[f"{_fmt(metric, cells[g]['value'])} ({cells[g]['n']})" if g in cells else ""
                                    for g in cols],
                             f"{_fmt(metric, gap['gap'])} ({gap['best']} / {gap['worst']})" if gap else ""])
            lines.append(f"### {metric} by {by.replace('_', ' ')} within each true age group\n")
            lines.append(f"Value (images) per cell; the gap column compares cells of at least {c['min_n']} images. "
                         "A gap between groups overall can come from their different age make-up alone.\n")
            lines.append(md_table(["age group", *cols, "gap (best / worst)"], rows))
            lines.append("")
    return lines


def _under18_md(u: Mapping[str, Any]) -> list[str]:
    lines = [(f"Rule: {u['rule']}. Truth: {u['n_minors']} people under 18 among {u['n']} whose side of 18 is "
              "known. See `agegender.evaluation.fairness` for how group classifiers are scored.\n")]
    if "under18_false_adult_rate" in u:
        lines.append(f"At the default threshold ({_fmt('threshold', u['default_threshold'])}): false-adult rate "
                     f"(minors taken for adults) **{u['under18_false_adult_rate']:.3f}**, false-minor rate "
                     f"(adults flagged) {_fmt('r', u.get('under18_false_minor_rate'))}.\n")
    op = u.get("operating_point_5pct")
    if op:
        lines.append(f"Operating point letting at most 5 % of minors through: threshold {_fmt('threshold', op['threshold'])} "
                     f"→ false-adult rate {op['false_adult_rate']:.3f}, adults flagged {op['false_minor_rate']:.3f}, "
                     f"precision {op['precision']:.3f}.\n")
    else:
        lines.append("No threshold in the sweep lets at most 5 % of minors through.\n")
    keys = ("threshold", "precision", "recall", "f1", "false_adult_rate", "false_minor_rate", "flagged_rate")
    lines.append(md_table(keys, [[_fmt(k, r[k]) for k in keys] for r in u["rows"]]))
    return lines


def write_predictions_csv(ev: Evaluation, path: Path) -> Path:
    """One row per scored image: truth and prediction of every task the model and the data have."""
    preds, t = ev.preds, ev.targets
    n = len(ev.samples)
    cols: dict[str, Any] = {"path": [s.path for s in ev.samples]}
    if "age" in t:
        cols["true_age"] = t["age"]
    gt = np.asarray(t.get("age_group", np.full(n, -1)))
    cols["true_age_group"] = [ev.scheme.labels[g] if g >= 0 else "" for g in gt]
    for task, names in (("gender", GENDERS), ("ethnicity", ETHNICITIES)):
        if task in t:
            cols[f"true_{task}"] = [names[g] if 0 <= g < len(names) else "" for g in np.asarray(t[task])]
    if "age" in preds:
        cols["pred_age"] = np.round(preds["age"], 2)
    gp = group_probs_in_scheme(preds, ev.scheme, ev.bundle.age_scheme)
    if gp is not None:
        cols["pred_age_group"] = [ev.scheme.labels[g] for g in gp.argmax(1)]
    gpr = gender_probs(preds)
    if gpr is not None:
        cols["pred_gender"] = [GENDERS[g] for g in gpr.argmax(1)]
        cols["p_female"] = np.round(gpr[:, 1], 4)
    if "ethnicity_probs" in preds:
        cols["pred_ethnicity"] = [ETHNICITIES[g] if g < len(ETHNICITIES) else str(g)
                                  for g in preds["ethnicity_probs"].argmax(1)]
    ms = minor_score(preds, ev.scheme, ev.bundle.age_scheme)
    if ms is not None and ms[0] == "probability":
        cols["p_minor"] = np.round(ms[1], 4)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        for i in range(n):
            w.writerow([cols[c][i] for c in cols])
    return path


def write_report(ev: Evaluation, out_dir: str | Path, calibration: str = "auto", batch_size: int = 64,
                 min_n: int = 20) -> dict[str, Any]:
    """Write ``report.md``, its PNGs and ``predictions.csv`` into ``out_dir``; return what to add to the
    JSON report (``fairness``, ``calibration`` without the per-bin data, ``report`` path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = ev.report
    model_scheme = ev.bundle.age_scheme
    md: list[str] = [f"# Evaluation report: {rep['model']}\n"]
    md.append(md_table(["", ""], [
        ["model file", f"`{rep['model_path']}`"], ["dataset", f"{rep['dataset']} (`{rep['data']}`)"],
        ["split", rep["split"]], ["images scored", rep["n_images"]], ["images skipped", rep["n_skipped"]],
        ["age scheme (evaluation / model)", f"{rep['age_scheme']} / {model_scheme}"],
        ["test-time augmentation", "10-crop over-sampling" if rep.get("ten_crop") else
         ("horizontal flip" if rep.get("tta_flip") else "none (centre crop)")],
    ]))
    md.append(f"\nCommand: `agegender evaluate --model {rep['model_path']} --dataset {rep['dataset']} "
              f"--data {rep['data']} --split {rep['split']} --report {out}`\n")
    md.append("## Metrics\n")
    md.append(md_table(["metric", "value"], _metric_rows(rep)) if _metric_rows(rep) else "No metric: the data "
              "carry no label the model predicts.")
    md.extend(_attributes_md(rep))

    # confusion matrices
    md.append("\n## Confusion matrices\n")
    cms = []
    for task, labels in (("age_group", ev.scheme.labels), ("gender", GENDERS), ("ethnicity", ETHNICITIES)):
        cm = rep.get(f"{task}_confusion")
        if cm:
            name = f"confusion_{task}.png"
            plot_confusion(cm, labels, f"{task.replace('_', ' ')} (rows: truth, colour: row share)", out / name)
            cms.append(f"![{task} confusion matrix]({name})")
    md.append("\n".join(cms) if cms else "No classification task with labels in these data.")

    # by true age
    md.append("\n## MAE and accuracy by true age\n")
    rows = by_true_age(ev)
    if rows:
        plot_by_age(rows, out / "by_true_age.png")
        md.append("![MAE and accuracy by true age](by_true_age.png)\n")
        keys = [k for k in ("age_mae", "age_group_accuracy", "gender_accuracy", "ethnicity_accuracy") if k in rows[0]]
        md.append(md_table(["true age", "n", *keys], [[r["ages"], r["n"], *[_fmt(k, r[k]) for k in keys]] for r in rows]))
    else:
        md.append("The data carry no exact ages.")

    # calibration
    md.append("\n## Calibration (temperature scaling)\n")
    cal, how = report_calibration(ev, calibration, batch_size)
    md.append(how + "\n")
    if cal:
        plot_reliability(cal, out / "reliability.png")
        md.append(md_table(["head", "kind", "n", "T before", "T fitted", "ECE before", "ECE after", "NLL before",
                            "NLL after"],
                           [[n, c["kind"], c["n"], _fmt("temperature", c["temperature_before"]),
                             _fmt("temperature", c["temperature"]), _fmt("ece", c["ece_before"]),
                             _fmt("ece", c["ece_after"]), _fmt("nll", c["nll_before"]), _fmt("nll", c["nll_after"])]
                            for n, c in cal.items()]))
        md.append("\nAge-distribution heads are scored over the 101 whole years (label: the true age rounded). "
                  "To store a fitted T in a model, use `agegender.evaluation.calibration.calibrate_bundle`.\n")
        md.append("![reliability diagram](reliability.png)")

    # fairness
    md.append("\n## Fairness: metrics per group\n")
    fair = fairness_report(ev.preds, ev.targets, ev.scheme, model_scheme, min_n=min_n)
    md.extend(_fairness_md(fair) or ["The data carry no ethnicity, gender or age labels to group by."])
    md.extend(_within_age_md(fair))
    md.append("## Under-18 detection (jamoliddin_yoo2022 §V)\n")
    u = fair.get("under18")
    if u:
        plot_under18(u, out / "under18_sweep.png")
        md.append("![under-18 threshold sweep](under18_sweep.png)\n")
        md.extend(_under18_md(u))
        up = fair.get("under18_probability")
        if up:
            md.append("\nThe same faces flagged by the probability of an age under 18 that every result carries "
                      "(`age.p_under_18`), for age checks that choose their own threshold:\n")
            md.extend(_under18_md(up))
    else:
        md.append("Not available: the model predicts no age, or the data hold no person known to be under 18.")
    write_predictions_csv(ev, out / "predictions.csv")
    md.append("\nPer-image predictions: [predictions.csv](predictions.csv).\n")
    (out / "report.md").write_text("\n".join(md))
    slim_cal = {n: {k: v for k, v in c.items() if not k.startswith("reliability")} for n, c in cal.items()}
    return {"fairness": fair, "calibration": {"method": how, "heads": slim_cal}, "report": str(out / "report.md")}

