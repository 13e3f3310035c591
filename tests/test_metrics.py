"""Metrics against values computed by hand."""

import numpy as np
import pytest

from agegender.metrics import compute_metrics, multilabel_metrics


def test_age_metrics_by_hand():
    # errors 1, 10, 0, 10 → MAE 21/4, CS@5 = 2/4; minors (age<18): 10 (pred 11), 17 (pred 27) → 1 of 2 adult
    preds = {"age": np.array([11.0, 27.0, 40.0, 70.0])}
    targets = {"age": np.array([10.0, 17.0, 40.0, 60.0])}
    m = compute_metrics(preds, targets, "adience8")
    assert m["age_mae"] == pytest.approx(21 / 4)
    assert m["age_cs5"] == pytest.approx(0.5)
    assert m["under18_false_adult_rate"] == pytest.approx(0.5)
    # groups: true 10→2, 17→3, 40→5, 60→7 ; pred 11→2, 27→4, 40→5, 70→7 → 3/4 exact, 4/4 one-off
    assert m["age_group_accuracy"] == pytest.approx(0.75)
    assert m["age_group_one_off"] == pytest.approx(1.0)


def test_probability_of_a_minor_by_hand():
    """ROC AUC and Brier score of P(age < 18) against the true ages; left out when only one side is labelled."""
    probs = np.zeros((4, 101))
    for i, (young, p_young) in enumerate([(10, 0.9), (17, 0.4), (30, 0.6), (50, 0.0)]):
        probs[i, young if young < 18 else 5] = p_young  # mass under 18
        probs[i, 40] += 1 - p_young
    ages = np.array([10.0, 17.0, 30.0, 50.0])
    m = compute_metrics({"age": np.full(4, 30.0), "age_probs": probs}, {"age": ages})
    # minors score 0.9 and 0.4, adults 0.6 and 0.0: 3 of the 4 minor/adult pairs ranked right
    assert m["under18_prob_auc"] == pytest.approx(0.75)
    assert m["under18_prob_brier"] == pytest.approx((0.1**2 + 0.6**2 + 0.6**2 + 0.0) / 4)
    assert m["under18_prob_mean"] == pytest.approx(0.475) and m["under18_share"] == pytest.approx(0.5)
    adults = compute_metrics({"age": np.full(2, 30.0), "age_probs": probs[2:]}, {"age": ages[2:]})
    assert "under18_prob_auc" not in adults
    assert "under18_prob_auc" not in compute_metrics({"age": np.full(4, 30.0)}, {"age": ages})


def test_missing_labels_are_ignored():
    preds = {"gender_probs": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])}
    targets = {"gender": np.array([0, -1, 1])}
    m = compute_metrics(preds, targets)
    assert m["gender_n"] == 2 and m["gender_accuracy"] == pytest.approx(0.5)
    # female = positive class: one female, predicted male → recall 0
    assert m["gender_recall"] == 0.0
    assert m["gender_balanced_accuracy"] == pytest.approx(0.5)


def test_age_group_in_other_scheme_from_distribution():
    p = np.zeros((2, 101))
    p[0, 25] = 1
    p[1, 50] = 1
    m = compute_metrics({"age_probs": p, "age": np.array([25.0, 50.0])}, {"age": np.array([29.0, 47.0])}, "kang4")
    assert m["age_group_accuracy"] == 1.0 and m["age_scheme"] == "kang4"


def test_multilabel_by_hand():
    probs = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.6]])
    target = np.array([[1, 0, 0], [1, 1, np.nan]])
    m = multilabel_metrics(probs, target, "a")
    # label 0: pos rows 0,1 → TPR 1/2; no negatives → excluded. label 1: pos row1 (pred 1) TPR 1, neg row0 (pred 0) TNR 1 → 1
    # label 2: only row0 valid (neg, pred 1) → no positives → excluded.   mA = 1.0
    assert m["a_mA"] == pytest.approx(1.0)
    # example-based: row0 pred {0,2} true {0} → acc 1/2, prec 1/2, rec 1 ; row1 pred {1} (label2 masked) true {0,1}
    # → acc 1/2, prec 1, rec 1/2.  means: acc .5, prec .75, rec .75, F1 .75
    assert m["a_example_accuracy"] == pytest.approx(0.5)
    assert m["a_example_precision"] == pytest.approx(0.75)
    assert m["a_example_recall"] == pytest.approx(0.75)
    assert m["a_example_f1"] == pytest.approx(0.75)


def test_confusion_and_macro():
    preds = {"ethnicity_probs": np.eye(5)[[0, 1, 1, 3]]}
    m = compute_metrics(preds, {"ethnicity": np.array([0, 1, 2, 3])})
    assert m["ethnicity_accuracy"] == 0.75
    assert m["ethnicity_confusion"][2][1] == 1


def test_per_identity_accuracy_counts_each_person_once():
    from agegender.metrics import per_identity_accuracy

    # person a: 3 images, 2 right; person b: 1 image, wrong; the sample without identity is its own person
    correct = {"gender_accuracy": np.array([1.0, 1.0, 0.0, 0.0, 1.0]),
               "ethnicity_accuracy": np.array([np.nan, 1.0, 1.0, np.nan, np.nan])}  # NaN: no label
    ids = ["a", "a", "a", "b", None]
    m = per_identity_accuracy(correct, ids)
    assert m["gender_accuracy_per_identity"] == pytest.approx((2 / 3 + 0 + 1) / 3)  # plain accuracy: 3/5
    assert m["ethnicity_accuracy_per_identity"] == pytest.approx(1.0)  # only person a has labels
    assert m["n_identities"] == 3
    # one image per person: the plain figure already counts everyone once, nothing is added
    assert per_identity_accuracy(correct, ["a", "b", "c", None, None]) == {}
    assert per_identity_accuracy({}, []) == {}


def test_per_sample_correct_reads_the_truth_like_compute_metrics():
    from agegender.metrics import per_sample_correct

    gp = np.eye(8)[[2, 5, 7, 0]]  # predicted adience8 groups 2, 5, 7, 0
    preds = {"age_group_probs": gp, "gender_probs": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])}
    # truth: exact ages for the first two (10 → group 2, 30 → group 4), a group label for the third (7),
    # nothing for the fourth; genders 0, 1, 1 and missing
    targets = {"age": np.array([10.0, 30.0, np.nan, np.nan]), "age_group": np.array([-1, -1, 7, -1]),
               "age_group_scheme": "adience8", "gender": np.array([0, 1, 1, -1])}
    c = per_sample_correct(preds, targets, "adience8", model_scheme="adience8")
    np.testing.assert_array_equal(c["age_group_accuracy"], [1.0, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(c["gender_accuracy"], [1.0, 1.0, 0.0, np.nan])
    m = compute_metrics(preds, targets, "adience8", model_scheme="adience8")
    assert np.nanmean(c["age_group_accuracy"]) == pytest.approx(m["age_group_accuracy"])
    assert np.nanmean(c["gender_accuracy"]) == pytest.approx(m["gender_accuracy"])
