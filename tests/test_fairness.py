"""Fairness: per-group metrics, largest gaps and the under-18 threshold sweep against hand-computed values."""

import numpy as np
import pytest

from agegender.evaluation.fairness import (
    fairness_report,
    largest_gaps,
    minor_score,
    minor_share_of_groups,
    minor_truth,
    per_group_metrics,
    pick_threshold,
    under18_sweep,
    within_age_groups,
)
from agegender.labels import ETHNICITIES, GENDERS


def _gender(p_female):
    p = np.asarray(p_female, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_per_group_metrics_and_gaps_by_hand():
    # ethnicity: white(0) rows 0-2, black(1) rows 3-5
    targets = {"age": np.array([20.0, 30.0, 40.0, 20.0, 30.0, 40.0]), "gender": np.array([0, 1, 0, 1, 1, 0]),
               "ethnicity": np.array([0, 0, 0, 1, 1, 1])}
    preds = {"age": np.array([22.0, 30.0, 43.0, 30.0, 20.0, 40.0]),  # errors 2,0,3 | 10,10,0
             "gender_probs": _gender([0.1, 0.9, 0.8, 0.9, 0.2, 0.1])}  # white: 2/3 right, black: 2/3 right
    by = per_group_metrics(preds, targets, "ethnicity", "adience8")
    assert set(by) == {"white", "black"}
    assert by["white"]["n"] == 3 and by["white"]["age_mae"] == pytest.approx(5 / 3)
    assert by["black"]["age_mae"] == pytest.approx(20 / 3)
    assert by["white"]["gender_accuracy"] == pytest.approx(2 / 3) == by["black"]["gender_accuracy"]
    gaps = largest_gaps(by, min_n=1)
    g = gaps["age_mae"]  # lower is better: best white, worst black
    assert g["best"] == "white" and g["worst"] == "black" and g["gap"] == pytest.approx(5.0)
    assert gaps["gender_accuracy"]["gap"] == pytest.approx(0.0)
    assert largest_gaps(by, min_n=4) == {}  # no group has 4 images

    by_gender = per_group_metrics(preds, targets, "gender", "adience8")
    # male rows 0, 2, 5: predicted male, female, male → 2/3; female rows 1, 3, 4: female, female, male → 2/3
    assert by_gender["male"]["gender_accuracy"] == pytest.approx(2 / 3)
    assert set(by_gender) <= set(GENDERS) and set(by) <= set(ETHNICITIES)


def test_within_age_groups_separates_age_make_up():
    """Overall, white (mostly infants) looks 40 points worse on gender than black; within each age group the
    two are equal, so the gap is the age make-up alone."""
    # infants (age 1, group 0-2): white 4 of them, black 1; adults (age 30, group 25-32): white 1, black 4
    age = np.array([1, 1, 1, 1, 30, 1, 30, 30, 30, 30], dtype=float)
    eth = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    gender = np.zeros(10, dtype=int)
    # every infant is wrong, every adult right
    p_female = np.where(age < 18, 0.9, 0.1)
    preds, targets = {"gender_probs": _gender(p_female)}, {"age": age, "gender": gender, "ethnicity": eth}
    overall = per_group_metrics(preds, targets, "ethnicity", "adience8")
    assert overall["white"]["gender_accuracy"] == pytest.approx(0.2) and overall["black"]["gender_accuracy"] == 0.8
    c = within_age_groups(preds, targets, "ethnicity", "gender_accuracy", "adience8", min_n=1)
    assert c["rows"]["0-2"] == {"white": {"n": 4, "value": 0.0}, "black": {"n": 1, "value": 0.0}}
    assert c["rows"]["25-32"]["black"] == {"n": 4, "value": 1.0}
    assert c["gaps"]["0-2"]["gap"] == 0.0 and c["largest_within_age_group_gap"] == 0.0
    # cells under min_n take no part in the gap
    assert within_age_groups(preds, targets, "ethnicity", "gender_accuracy", "adience8", min_n=2)["gaps"] == {}
    rep = fairness_report(preds, targets, "adience8", min_n=1)
    assert rep["within_age_group"]["ethnicity"]["gender_accuracy"]["rows"]["0-2"]["white"]["n"] == 4
    assert within_age_groups(preds, {"gender": gender, "ethnicity": eth}, "ethnicity", "gender_accuracy") == {}


def test_age_group_grouping_and_gap_support():
    targets = {"age": np.array([5.0, 5.0, 50.0, 50.0, 50.0])}
    preds = {"age": np.array([6.0, 9.0, 50.0, 40.0, 60.0])}
    by = per_group_metrics(preds, targets, "age_group", "adience8")
    assert by["4-6"]["n"] == 2 and by["4-6"]["age_mae"] == pytest.approx(2.5)
    assert by["48-53"]["age_mae"] == pytest.approx(20 / 3)
    # the under-18 rate is known only where there are minors (one group), so it has no gap
    gaps = largest_gaps(by, min_n=2)
    assert "age_mae" in gaps and "under18_false_adult_rate" not in gaps  # known for one group only


def test_under18_sweep_by_hand():
    targets = {"age": np.array([10.0, 15.0, 17.0, 20.0, 30.0, 40.0])}  # minors: rows 0, 1, 2
    preds = {"age": np.array([12.0, 19.0, 16.0, 17.0, 25.0, 45.0])}
    sw = under18_sweep(preds, targets, "adience8", thresholds=[16, 18, 20])
    assert sw["score"] == "years" and sw["n_minors"] == 3 and sw["n"] == 6
    r16, r18, r20 = sw["rows"]
    # t=16 flags row 0: tp 1, fp 0, fn 2
    assert (r16["tp"], r16["fp"], r16["fn"], r16["tn"]) == (1, 0, 2, 3)
    assert r16["precision"] == 1.0 and r16["recall"] == pytest.approx(1 / 3)
    assert r16["false_adult_rate"] == pytest.approx(2 / 3) and r16["false_minor_rate"] == 0.0
    # t=18 flags rows 0, 2, 3: tp 2, fp 1, fn 1
    assert r18["precision"] == pytest.approx(2 / 3) and r18["recall"] == pytest.approx(2 / 3)
    assert r18["f1"] == pytest.approx(2 / 3) and r18["false_minor_rate"] == pytest.approx(1 / 3)
    # t=20 flags rows 0-3: every minor caught, one adult flagged
    assert r20["false_adult_rate"] == 0.0 and r20["precision"] == pytest.approx(3 / 4)
    assert pick_threshold(sw, 0.05)["threshold"] == 20
    assert pick_threshold(sw, 0.5)["threshold"] == 20  # 18 flags as many adults and lets a minor through
    assert pick_threshold(sw, 0.7)["threshold"] == 16  # no adult flagged
    assert pick_threshold(sw, 0.0)["threshold"] == 20 and pick_threshold({"rows": []}) is None
    # the default rule (age < 18) agrees with compute_metrics' under18_false_adult_rate
    rep = fairness_report(preds, targets, "adience8", min_n=1)
    assert rep["under18"]["under18_false_adult_rate"] == pytest.approx(1 / 3)


def test_group_classifier_minor_probability():
    share = minor_share_of_groups("adience8")
    # 0-2, 4-6, 8-13 are entirely under 18; 15-20 spans the whole years 15..22, of which 15, 16, 17 are minors
    assert share[:3].tolist() == [1.0, 1.0, 1.0] and share[3] == pytest.approx(3 / 8) and share[4:].sum() == 0
    p = np.zeros((2, 8))
    p[0, [2, 3]] = [0.5, 0.5]  # P(minor) = 0.5 + 0.5 * 3/8
    p[1, [3, 4]] = [0.4, 0.6]  # P(minor) = 0.4 * 3/8
    kind, score = minor_score({"age_group_probs": p}, "adience8", "adience8")
    assert kind == "probability"
    assert score == pytest.approx([0.5 + 0.5 * 3 / 8, 0.4 * 3 / 8])
    sw = under18_sweep({"age_group_probs": p}, {"age": np.array([12.0, 30.0])}, "adience8", "adience8",
                       thresholds=[0.1, 0.5, 0.9])
    assert [r["tp"] for r in sw["rows"]] == [1, 1, 0] and [r["fp"] for r in sw["rows"]] == [1, 0, 0]


def test_distribution_models_are_also_swept_by_their_probability_of_a_minor():
    """A model with a distribution over years gets a second sweep, over p_under_18 (its mass below 18)."""
    probs = np.zeros((4, 101))
    probs[0, 10] = 1.0                   # a child, sure
    probs[1, 17], probs[1, 19] = 0.3, 0.7  # 30 % under 18
    probs[2, 17], probs[2, 25] = 0.1, 0.9  # 10 %
    probs[3, 40] = 1.0
    preds = {"age": np.array([10.0, 19.0, 25.0, 40.0]), "age_probs": probs}
    targets = {"age": np.array([9.0, 17.0, 22.0, 45.0])}
    kind, score = minor_score(preds, "adience8", "adience8", by="probability")
    assert kind == "probability" and score == pytest.approx([1.0, 0.3, 0.1, 0.0])
    assert minor_score(preds, "adience8", "adience8")[0] == "years"  # the default stays the estimate in years
    rep = fairness_report(preds, targets, "adience8", min_n=1)
    up = rep["under18_probability"]
    assert "p_under_18" in up["rule"] and up["n_minors"] == 2
    rows = {r["threshold"]: r for r in up["rows"]}
    # at 0.25 both minors are flagged and no adult; at 0.05 the 22-year-old (10 %) is flagged too
    assert rows[0.25]["false_adult_rate"] == 0.0 and rows[0.25]["fp"] == 0 and rows[0.05]["fp"] == 1
    assert up["operating_point_5pct"]["threshold"] >= 0.15  # the fewest adults flagged with no minor let through
    assert "under18_probability" not in fairness_report({"age": preds["age"]}, targets, "adience8", min_n=1)


def test_minor_truth_without_exact_ages():
    # PETA-style labels: 0-15 is a minor, 16-30 straddles 18 (unknown), 31-45 adult
    targets = {"age": np.full(3, np.nan), "age_group": np.array([0, 1, 2]), "age_group_scheme": "peta5"}
    assert minor_truth(targets, "peta5").tolist() == [1, -1, 0]
    # pedestrian heads (independent sigmoids) are renormalised over the groups
    ped = np.array([[0.9, 0.8, 0.2, 0.0, 0.0, 0.0]])  # gender, then 5 groups
    _, score = minor_score({"pedestrian_probs": ped}, "peta5", "peta5")
    assert score[0] == pytest.approx(0.8 + 0.2 * (2 / 15))  # 16-30: 16, 17 of the 15 years are minors


def test_fairness_report_sections():
    rng = np.random.default_rng(0)
    n = 200
    targets = {"age": rng.uniform(1, 80, n).round(), "gender": rng.integers(0, 2, n),
               "ethnicity": rng.integers(0, 5, n)}
    preds = {"age": targets["age"] + rng.normal(0, 5, n), "gender_probs": _gender(rng.random(n)),
             "ethnicity_probs": rng.dirichlet(np.ones(5), n)}
    rep = fairness_report(preds, targets, "adience8", min_n=20)
    assert set(rep["by"]) == {"ethnicity", "gender", "age_group"}
    assert "age_mae" in rep["gaps"]["ethnicity"] and rep["under18"]["rows"][0]["threshold"] == 14
    assert len(rep["under18"]["rows"]) == 17  # thresholds 14..30
