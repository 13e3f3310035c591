"""Calibration: ECE and reliability bins by hand, temperature recovery on synthetic logits, calibrate_bundle."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import agegender  # noqa: F401  (torchvision compat first)
from agegender.evaluation.calibration import (
    calibrate_bundle,
    cross_fitted_calibration,
    expected_calibration_error,
    fit_temperature,
    head_problem,
    nll,
    reliability_diagram,
)
from agegender.labels import Sample


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 0])
    # top labels: 0 (0.9, right), 1 (0.8, wrong), 1 (0.7, right), 1 (0.6, wrong)
    # 15 bins: each confidence alone in its bin → (|1-.9| + |0-.8| + |1-.7| + |0-.6|) / 4
    assert expected_calibration_error(probs, labels) == pytest.approx((0.1 + 0.8 + 0.3 + 0.6) / 4)
    # 2 bins: all in (0.5, 1] → |accuracy 0.5 − mean confidence 0.75|
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.25)
    r = reliability_diagram(probs, labels, n_bins=2)
    assert r["count"] == [0, 4] and r["accuracy"] == [None, 0.5] and r["confidence"][1] == pytest.approx(0.75)
    # 1-D input = probability of class 1
    assert expected_calibration_error(probs[:, 1], labels, n_bins=2) == pytest.approx(0.25)


def test_perfectly_calibrated_has_small_ece():
    rng = np.random.default_rng(0)
    p = _softmax(rng.normal(0, 2, (20000, 4)))
    y = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)  # labels drawn from p itself
    assert expected_calibration_error(p, y) < 0.02


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_known_temperature(true_t):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2.5, (6000, 5))
    y = (_softmax(z).cumsum(1) > rng.random((len(z), 1))).argmax(1)
    t = fit_temperature(z * true_t, y)  # logits scaled by T: dividing by T restores the true model
    assert t == pytest.approx(true_t, rel=0.08)
    assert nll(z * true_t, y, t) <= nll(z * true_t, y, 1.0)


def test_fit_temperature_binary_and_missing_labels():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 6000)
    y = (rng.random(6000) < 1 / (1 + np.exp(-z))).astype(float)
    y[:500] = np.nan  # missing labels are ignored
    assert fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(np.zeros((3, 2)), np.array([-1, -1, -1])) == 1.0


def test_age_distribution_and_ordinal_problems():
    z = np.zeros((3, 101))
    _, y, kind = head_problem(z, np.array([30.4, 130.0, np.nan]), "age_distribution")
    assert kind == "multiclass" and y.tolist() == [30, 100, -1]  # rounded, clamped, missing
    _, y, kind = head_problem(np.zeros((2, 4)), np.array([2.0, np.nan]), "ordinal")
    assert kind == "binary" and y[0].tolist() == [1, 1, 0, 0] and np.isnan(y[1]).all()


def test_cross_fitted_calibration_improves_overconfident_logits():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, (4000, 3))
    y = (_softmax(z).cumsum(1) > rng.random((len(z), 1))).argmax(1)
    r = cross_fitted_calibration(3 * z, y, "multiclass", rng.integers(0, 2, len(z)))
    assert r["ece_after"] < r["ece_before"] and len(r["temperatures"]) == 2
    assert r["temperature"] == pytest.approx(3.0, rel=0.15) and r["nll_after"] < r["nll_before"]


@pytest.fixture(scope="module")
def few_faces(utkface_dir: Path) -> list[Sample]:
    rows = list(csv.DictReader((utkface_dir / "labels.csv").open()))[::400]
    return [Sample(path=str(utkface_dir / "images" / r["file"]), age=float(r["age"]), gender=int(r["gender"]),
                   ethnicity=int(r["race"])) for r in rows]


def test_calibrate_bundle_sets_temperatures(few_faces):
    from helpers_models import tiny_bundle

    torch.set_num_threads(1)
    bundle = tiny_bundle("face")
    with torch.no_grad():  # make the random gender head confidently wrong-ish so T must move
        bundle.model.heads["gender"].net[-1].weight.mul_(50)
    res = calibrate_bundle(bundle, few_faces, batch_size=32)
    assert set(res) == {"age", "gender", "ethnicity"}
    for name, r in res.items():
        assert float(bundle.model.heads[name].temperature) == pytest.approx(r["temperature"])
        assert r["n"] == len(few_faces) and r["nll_after"] <= r["nll_before"] + 1e-9
        assert 0 <= r["ece_after"] <= 1 and r["kind"] in ("age_distribution", "multiclass")
    # a second fit starts from the stored temperature and finds (about) the same one
    again = calibrate_bundle(bundle, few_faces, apply=False)
    assert again["gender"]["temperature_before"] == pytest.approx(res["gender"]["temperature"])


def test_fit_age_quantile_corrects_a_biased_age_head():
    from agegender.evaluation.calibration import fit_age_quantile

    rng = np.random.default_rng(0)
    ages = rng.uniform(5, 80, 400)
    # every prediction is a wide distribution centred 3 years too old: a lower quantile fits better
    grid = np.arange(101)[None, :]
    z = -0.5 * ((grid - (ages[:, None] + 3.0)) / 6.0) ** 2
    r = fit_age_quantile([z], ages)
    assert r["estimate"] < 0.40 and r["mae_after"] < r["mae_before"] - 1.0
    assert r["before"] == "median" and r["n"] == 400 and r["views"] == 1
    # an unbiased head keeps (about) the median; unlabelled ages are ignored
    z0 = -0.5 * ((grid - ages[:, None]) / 6.0) ** 2
    r0 = fit_age_quantile([z0, z0], np.concatenate([ages[:-1], [np.nan]]))
    assert abs(r0["estimate"] - 0.5) <= 0.02 and r0["n"] == 399 and r0["views"] == 2
    assert fit_age_quantile([z], np.full(400, np.nan))["estimate"] == "median"


def test_fit_age_quantile_with_a_false_adult_limit():
    """max_false_adult: the lowest-MAE quantile among those that pass at most that share of minors as adults."""
    from agegender.evaluation.calibration import AGE_QUANTILES, fit_age_quantile

    rng = np.random.default_rng(1)
    ages = rng.uniform(5, 80, 600)
    grid = np.arange(101)[None, :]
    centre = ages + rng.normal(0, 4, ages.shape)  # unbiased but noisy: some 15-17-year-olds read 18+
    z = -0.5 * ((grid - centre[:, None]) / 8.0) ** 2
    free = fit_age_quantile([z], ages)
    assert abs(free["estimate"] - 0.5) <= 0.02 and "max_false_adult" not in free
    assert free["minor_guard"] is None  # no limit: no guard
    limit = free["under18_false_adult_after"] / 2
    r = fit_age_quantile([z], ages, max_false_adult=limit, guards=())  # quantiles only
    assert r["constraint_met"] and r["under18_false_adult_after"] <= limit and r["minor_guard"] is None
    assert r["estimate"] < free["estimate"] and r["mae_after"] > free["mae_after"]  # paid for in MAE
    # it is the best-MAE quantile that qualifies: the next one up (closer to the median) does not
    nxt = min(q for q in AGE_QUANTILES if q > r["estimate"])
    assert fit_age_quantile([z], ages, grid=[nxt], max_false_adult=limit, guards=())["constraint_met"] is False
    # an impossible limit keeps the unconstrained fit and says so
    r0 = fit_age_quantile([z], ages, max_false_adult=-1.0)
    assert r0["estimate"] == free["estimate"] and r0["constraint_met"] is False and r0["minor_guard"] is None


def test_the_minor_guard_meets_a_false_adult_limit_for_less_mae():
    """With guards to choose from, the same limit is met by holding only the likely minors below 18: a smaller MAE
    cost than lowering every estimate, and the chosen guard does in the head what the fit scored."""
    from agegender.evaluation.calibration import fit_age_quantile
    from agegender.models.heads import AgeDistributionHead

    rng = np.random.default_rng(1)
    ages = rng.uniform(5, 80, 600)
    grid = np.arange(101)[None, :]
    z = -0.5 * ((grid - (ages + rng.normal(0, 4, ages.shape))[:, None]) / 8.0) ** 2
    free = fit_age_quantile([z], ages)
    limit = free["under18_false_adult_after"] / 2
    by_quantile = fit_age_quantile([z], ages, max_false_adult=limit, guards=())
    guarded = fit_age_quantile([z], ages, max_false_adult=limit)
    assert guarded["constraint_met"] and guarded["under18_false_adult_after"] <= limit
    assert guarded["minor_guard"] is not None and 0 < guarded["minor_guard"] < 1
    assert guarded["mae_after"] < by_quantile["mae_after"]
    # the head reads the same estimates: its false-adult rate and MAE are the fit's
    head = AgeDistributionHead("age", 8, estimate=guarded["estimate"], minor_guard=guarded["minor_guard"])
    est = head.decode(torch.as_tensor(z, dtype=torch.float32))["age"].numpy()
    assert np.mean(est[ages < 18] >= 18) == pytest.approx(guarded["under18_false_adult_after"])
    assert np.mean(np.abs(est - ages)) == pytest.approx(guarded["mae_after"], abs=1e-3)
    # re-fitting from the guarded head reports where it starts
    again = fit_age_quantile([z], ages, current=guarded["estimate"], current_guard=guarded["minor_guard"])
    assert again["minor_guard_before"] == guarded["minor_guard"]
    assert again["under18_false_adult_before"] == pytest.approx(guarded["under18_false_adult_after"])


def test_minor_guard_in_the_head():
    from agegender.errors import AgeGenderError
    from agegender.models.heads import GUARDED_AGE, AgeDistributionHead

    p = torch.zeros(2, 101)
    p[0, 16], p[0, 20], p[1, 30] = 0.3, 0.7, 1.0  # 30 % under 18, median 20; certainly 30
    logits = torch.log(p.clamp_min(1e-9))
    plain = AgeDistributionHead("age", 8).decode(logits)["age"]
    assert plain[0] > 18
    guarded = AgeDistributionHead("age", 8, minor_guard=0.25).decode(logits)["age"]
    assert float(guarded[0]) == pytest.approx(GUARDED_AGE) and float(guarded[1]) == pytest.approx(float(plain[1]))
    assert float(AgeDistributionHead("age", 8, minor_guard=0.35).decode(logits)["age"][0]) == pytest.approx(
        float(plain[0]))  # 30 % is below that guard
    for bad in (0.0, 1.0, -0.2, "0.3", True):
        with pytest.raises(AgeGenderError, match="minor_guard must be a probability"):
            AgeDistributionHead("age", 8, minor_guard=bad)


def test_age_quantile_estimate_in_the_head():
    from agegender.errors import AgeGenderError
    from agegender.models.heads import AgeDistributionHead, distribution_quantile

    p = torch.zeros(1, 101)
    p[0, 20], p[0, 40] = 0.5, 0.5
    assert float(distribution_quantile(p, 0.25)) == pytest.approx(19.5 + 0.5)  # half of bin 20
    assert float(distribution_quantile(p, 0.75)) == pytest.approx(39.5 + 0.5)
    head = AgeDistributionHead("age", 8, estimate=0.25)
    logits = torch.log(p.clamp_min(1e-9))
    assert float(head.decode(logits)["age"]) == pytest.approx(20.0, abs=1e-3)
    for bad in (0.0, 1.0, 1.5, "p90", True):
        with pytest.raises(AgeGenderError, match="quantile between 0 and 1"):
            AgeDistributionHead("age", 8, estimate=bad)


def test_calibrate_bundle_fits_the_age_quantile_into_the_config(few_faces):
    from helpers_models import tiny_bundle

    torch.set_num_threads(1)
    bundle = tiny_bundle("face")
    bundle.config.setdefault("eval", {})["tta_flip"] = True
    res = calibrate_bundle(bundle, few_faces, batch_size=32, age_quantile=True)
    a = res["age"]["age_estimate"]
    assert a["views"] == 2 and a["n"] == len(few_faces) and a["mae_after"] <= a["mae_before"] + 1e-9
    assert bundle.model.heads["age"].estimate == a["estimate"]
    assert bundle.config["model"]["heads"]["age"]["estimate"] == a["estimate"]
    assert "age_estimate" not in res["gender"]
    # with a false-adult limit the guard is fitted too and stored where the package's config rebuilds it
    res = calibrate_bundle(bundle, few_faces, batch_size=32, age_quantile=True, max_false_adult=0.0)
    g = res["age"]["age_estimate"]["minor_guard"]
    assert bundle.model.heads["age"].minor_guard == g
    assert bundle.config["model"]["heads"]["age"].get("minor_guard") == g
