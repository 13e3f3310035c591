"""Each registered loss against values worked out by hand from its paper's equation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import agegender  # noqa: F401  (torchvision compat fix before torch)
from agegender.errors import AgeGenderError
from agegender.labels import AGE_BINS, MAX_AGE
from agegender.models.losses import class_weights, label_weights
from agegender.models.registry import LOSSES

E = math.e


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def build(name: str, stats: dict | None = None, **kw) -> torch.nn.Module:
    return LOSSES.build(name, stats=stats, **kw)


def value(loss: torch.nn.Module, output, target) -> float:
    return float(loss(torch.tensor(output, dtype=torch.float32), torch.as_tensor(target)).detach())


# ---------------------------------------------------------------- binary (chatzitzisi2020 eqs. 1–5)

X = [0.5, -1.2, 2.0, 0.3]
Y = [1, 0, 1, 0]
COUNTS = np.array([30, 10])  # 30 male, 10 female → p_f = 0.25


def test_bce_eq1() -> None:
    # L = −y log ŷ − (1 − y) log(1 − ŷ), averaged over the batch
    per = [-math.log(sig(0.5)), -math.log(1 - sig(-1.2)), -math.log(sig(2.0)), -math.log(1 - sig(0.3))]
    assert value(build("bce"), X, Y) == pytest.approx(sum(per) / 4, rel=1e-5)
    # (B, 1) logits and long targets are accepted too
    assert value(build("bce"), [[v] for v in X], torch.tensor(Y)) == pytest.approx(sum(per) / 4, rel=1e-5)


def test_weighted_bce_eqs3_5() -> None:
    p_f = 10 / 40
    w0, w1 = 1 / (1 - p_f), 1 / p_f  # eq. 5: 4/3 for males, 4 for females
    per = [
        -w1 * math.log(sig(0.5)),
        -w0 * math.log(1 - sig(-1.2)),
        -w1 * math.log(sig(2.0)),
        -w0 * math.log(1 - sig(0.3)),
    ]
    assert value(build("weighted_bce", {"counts": COUNTS}), X, Y) == pytest.approx(sum(per) / 4, rel=1e-5)


def test_binary_focal_eq2() -> None:
    g = 2.0
    per = []
    for x, y in zip(X, Y):
        p = sig(x)
        per.append(-((1 - p) ** g) * math.log(p) if y == 1 else -(p**g) * math.log(1 - p))
    assert value(build("binary_focal"), X, Y) == pytest.approx(sum(per) / 4, rel=1e-5)
    # γ is a kwarg; γ = 0 is plain BCE
    assert value(build("binary_focal", gamma=0.0), X, Y) == pytest.approx(value(build("bce"), X, Y), rel=1e-6)


def test_binary_focal_paper_example() -> None:
    # §2.1: with γ = 2 an example classified with ŷ = 0.9 gets 100× lower loss than with cross-entropy
    logit = math.log(0.9 / 0.1)
    ratio = value(build("bce"), [logit], [1]) / value(build("binary_focal"), [logit], [1])
    assert ratio == pytest.approx(100.0, rel=1e-4)


def test_weighted_binary_focal_eq4() -> None:
    g, p_f = 2.0, 0.25
    w = {0: 1 / (1 - p_f), 1: 1 / p_f}
    per = []
    for x, y in zip(X, Y):
        p = sig(x)
        per.append(-w[y] * ((1 - p) ** g * math.log(p) if y == 1 else p**g * math.log(1 - p)))
    got = value(build("weighted_binary_focal", {"counts": COUNTS}), X, Y)
    assert got == pytest.approx(sum(per) / 4, rel=1e-5)


# ---------------------------------------------------------------- multiclass (chatzitzisi2020 eqs. 9–12)

LOGITS = [[1.0, 2.0, 0.5], [0.2, -0.3, 1.5], [2.5, 0.0, -1.0]]
CLS = [1, 2, 1]
MC_COUNTS = np.array([10, 40, 20])


def _logp() -> list[float]:
    return [log_softmax(r)[c] for r, c in zip(LOGITS, CLS)]


def test_ce_eq9() -> None:
    want = sum(-lp for lp in _logp()) / 3
    assert value(build("ce"), LOGITS, CLS) == pytest.approx(want, rel=1e-5)


def test_ce_label_smoothing() -> None:
    eps, c = 0.1, 3
    per = []
    for r, k in zip(LOGITS, CLS):
        lp = log_softmax(r)
        per.append(-sum(((1 - eps) * (j == k) + eps / c) * lp[j] for j in range(c)))
    assert value(build("ce", label_smoothing=eps), LOGITS, CLS) == pytest.approx(sum(per) / 3, rel=1e-5)


def test_weighted_ce_eq11() -> None:
    w = [40 / 10, 40 / 40, 40 / 20]  # w_i = n_max / n_i
    want = sum(-w[k] * lp for k, lp in zip(CLS, _logp())) / 3
    assert value(build("weighted_ce", {"counts": MC_COUNTS}), LOGITS, CLS) == pytest.approx(want, rel=1e-5)


def test_focal_eq10() -> None:
    want = sum(-((1 - math.exp(lp)) ** 2) * lp for lp in _logp()) / 3
    assert value(build("focal"), LOGITS, CLS) == pytest.approx(want, rel=1e-5)


def test_weighted_focal_eq12() -> None:
    w = [4.0, 1.0, 2.0]
    want = sum(-w[k] * (1 - math.exp(lp)) ** 2 * lp for k, lp in zip(CLS, _logp())) / 3
    got = value(build("weighted_focal", {"counts": MC_COUNTS}), LOGITS, CLS)
    assert got == pytest.approx(want, rel=1e-5)


def test_class_weighted_ce_jamoliddin_eq1() -> None:
    mean = (10 + 40 + 20) / 3
    w = [mean / 10, mean / 40, mean / 20]  # w_i = E(m) / m_i
    want = sum(-w[k] * lp for k, lp in zip(CLS, _logp())) / 3
    got = value(build("class_weighted_ce", {"counts": MC_COUNTS}), LOGITS, CLS)
    assert got == pytest.approx(want, rel=1e-5)


def test_class_weights_formulas() -> None:
    assert class_weights("inverse_proportion", [30, 10]) == pytest.approx([4 / 3, 4.0])
    assert class_weights("max_over_count", [10, 40, 20]) == pytest.approx([4.0, 1.0, 2.0])
    assert class_weights("mean_over_count", [10, 40, 20]) == pytest.approx([7 / 3, 7 / 12, 7 / 6])
    assert label_weights([0.2, 0.7]) == pytest.approx(np.array([[E**0.2, E**0.7], [E**0.8, E**0.3]]))


# ---------------------------------------------------------------- multi-label (chatzitzisi2020 eqs. 13–17)

ML_X = [[0.4, -1.0, 2.0], [1.5, 0.3, -0.7]]
ML_Y = [[1.0, 0.0, 1.0], [0.0, float("nan"), 1.0]]
POS = np.array([0.2, 0.5, 0.7])


def _ml_term(x: float, y: float, gamma: float, w_neg: float, w_pos: float) -> float:
    p = sig(x)
    if y == 1:
        return -w_pos * (1 - p) ** gamma * math.log(p)
    return -w_neg * p**gamma * math.log(1 - p)


def _ml_want(gamma: float, weighted: bool) -> float:
    rows = []
    for xs, ys in zip(ML_X, ML_Y):
        s = 0.0
        for i, (x, y) in enumerate(zip(xs, ys)):
            if math.isnan(y):
                continue  # a missing label contributes nothing
            w_neg, w_pos = (math.exp(POS[i]), math.exp(1 - POS[i])) if weighted else (1.0, 1.0)
            s += _ml_term(x, y, gamma, w_neg, w_pos)
        rows.append(s)  # Σ over labels (eqs. 13–16)
    return sum(rows) / len(rows)


@pytest.mark.parametrize(
    ("name", "gamma", "weighted"),
    [
        ("ml_bce", 0.0, False),
        ("ml_focal", 2.0, False),
        ("ml_weighted_bce", 0.0, True),
        ("ml_weighted_focal", 2.0, True),
    ],
)
def test_multilabel_eqs13_17(name: str, gamma: float, weighted: bool) -> None:
    stats = {"pos_rate": POS} if weighted else None
    got = value(build(name, stats), ML_X, torch.tensor(ML_Y))
    assert math.isfinite(got)
    assert got == pytest.approx(_ml_want(gamma, weighted), rel=1e-5)


def test_multilabel_nan_masking() -> None:
    loss = build("ml_bce")
    out = torch.tensor(ML_X, requires_grad=True)
    tgt = torch.tensor(ML_Y)
    v = loss(out, tgt)
    v.backward()
    assert out.grad[1, 1] == 0.0  # no gradient flows from the missing label
    # the masked entry's logit does not change the value
    out2 = torch.tensor(ML_X)
    out2[1, 1] = 50.0
    assert float(loss(out2, tgt)) == pytest.approx(float(v.detach()), rel=1e-6)
    # a row with no observed label is left out of the batch mean
    tgt3 = torch.cat([tgt, torch.full((1, 3), float("nan"))])
    out3 = torch.cat([torch.tensor(ML_X), torch.zeros(1, 3)])
    assert float(loss(out3, tgt3)) == pytest.approx(float(v.detach()), rel=1e-6)
    # all missing: zero, finite, still differentiable
    allnan = loss(out, torch.full((2, 3), float("nan")))
    allnan.backward()
    assert float(allnan.detach()) == 0.0


def test_multilabel_mean_reduction() -> None:
    # label_reduction="mean": each row's sum divided by its number of observed labels (3 and 2)
    row0 = sum(_ml_term(x, y, 0.0, 1, 1) for x, y in zip(ML_X[0], ML_Y[0]))
    row1 = _ml_term(1.5, 0.0, 0.0, 1, 1) + _ml_term(-0.7, 1.0, 0.0, 1, 1)
    got = value(build("ml_bce", label_reduction="mean"), ML_X, torch.tensor(ML_Y))
    assert got == pytest.approx((row0 / 3 + row1 / 2) / 2, rel=1e-5)


# ---------------------------------------------------------------- regression (dey_aggarwal) and friends

PRED = [30.0, 22.5, 60.0]
AGE = [25.0, 23.0, 61.5]


def test_mse_l1_smooth_l1() -> None:
    d = [p - a for p, a in zip(PRED, AGE)]  # 5, −0.5, −1.5
    assert value(build("mse"), PRED, AGE) == pytest.approx(sum(x * x for x in d) / 3, rel=1e-6)
    assert value(build("l1"), PRED, AGE) == pytest.approx(sum(abs(x) for x in d) / 3, rel=1e-6)
    sl1 = (5 - 0.5) + 0.5 * 0.5**2 + (1.5 - 0.5)  # β = 1: 0.5 d² if |d| < 1 else |d| − 0.5
    assert value(build("smooth_l1"), PRED, AGE) == pytest.approx(sl1 / 3, rel=1e-6)
    sl2 = (5 - 1.0) + 0.5 * 0.25 / 2 + 0.5 * 2.25 / 2  # β = 2
    assert value(build("smooth_l1", beta=2.0), PRED, AGE) == pytest.approx(sl2 / 3, rel=1e-6)


# ---------------------------------------------------------------- age distributions: DLDL-v2, DEX


def _dist_logits() -> list[list[float]]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, AGE_BINS, generator=g).tolist()


def test_dldl_by_hand() -> None:
    logits, ages, sigma, lam = _dist_logits(), [23.0, 117.0], 2.5, 0.5
    per = []
    for row, y in zip(logits, ages):
        y = min(max(y, 0.0), MAX_AGE)  # true age clamped into 0..100
        g = [math.exp(-((k - y) ** 2) / (2 * sigma**2)) for k in range(AGE_BINS)]
        q = [v / sum(g) for v in g]
        lp = log_softmax(row)
        kl = sum(qk * (math.log(qk) - lpk) for qk, lpk in zip(q, lp) if qk > 0)
        expected = sum(k * math.exp(lpk) for k, lpk in enumerate(lp))
        per.append(kl + lam * abs(expected - y))
    got = value(build("dldl", sigma=sigma, lambda_l1=lam), logits, ages)
    assert got == pytest.approx(sum(per) / 2, rel=1e-4)


def test_dldl_minimum_at_label_distribution() -> None:
    # logits equal to log q give KL = 0 and, q being symmetric around an interior age, E[age] = y
    y = 40.0
    logq = [-((k - y) ** 2) / (2 * 2.0**2) for k in range(AGE_BINS)]
    assert value(build("dldl", sigma=2.0), [logq], [y]) == pytest.approx(0.0, abs=1e-4)


def test_dldl_cut_term_by_hand() -> None:
    # cuts add lambda_cut * mean over cuts of -w log P(true side of the cut), w = below_weight under the cut
    logits, ages = _dist_logits(), [16.0, 30.0]
    lam_cut, below_w, cuts = 0.7, 3.0, [13.0, 18.0]
    plain = value(build("dldl", sigma=2.0, lambda_l1=0.1), logits, ages)
    per = []
    for row, y in zip(logits, ages):
        p = [math.exp(v) for v in log_softmax(row)]
        terms = []
        for c in cuts:
            below = sum(p[k] for k in range(AGE_BINS) if k < c)
            terms.append(-(below_w * math.log(below) if y < c else math.log(1.0 - below)))
        per.append(lam_cut * sum(terms) / len(terms))
    got = value(build("dldl", sigma=2.0, lambda_l1=0.1, cuts=cuts, lambda_cut=lam_cut, below_weight=below_w),
                logits, ages)
    assert got == pytest.approx(plain + sum(per) / 2, rel=1e-4)


def test_dldl_cut_term_pushes_mass_across_the_cut() -> None:
    # one gradient step on a 16-year-old read as 25: the cut term moves more probability below 18 than DLDL alone
    base = torch.tensor([[-((k - 25.0) ** 2) / 50.0 for k in range(AGE_BINS)]])
    moved = []
    for kw in ({}, {"cuts": [18], "lambda_cut": 1.0, "below_weight": 4.0}):
        x = base.clone().requires_grad_(True)
        build("dldl", sigma=2.0, lambda_l1=0.1, **kw)(x, torch.tensor([16.0])).backward()
        with torch.no_grad():
            moved.append(torch.softmax(x - 2.0 * x.grad, -1)[0, :18].sum().item())
    assert moved[1] > moved[0] + 0.2


@pytest.mark.parametrize("kw", [{"cuts": [0]}, {"cuts": [120]}, {"cuts": ["x"]}, {"cuts": [18], "below_weight": 0},
                                {"cuts": [18], "lambda_cut": -1}])
def test_dldl_cut_term_rejects_bad_settings(kw) -> None:
    with pytest.raises(AgeGenderError, match="dldl cuts"):
        build("dldl", **kw)


def test_dex_ce_on_rounded_age() -> None:
    logits = _dist_logits() + [[0.0] * AGE_BINS]
    ages = [30.4, 130.0, -0.2]  # → classes 30, 100 (clamped), 0
    want = -(log_softmax(logits[0])[30] + log_softmax(logits[1])[100] + log_softmax(logits[2])[0]) / 3
    assert value(build("dex"), logits, ages) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------- ordinal: CORAL (Cao et al. 2020)


def test_coral_by_hand() -> None:
    logits = [[0.05 * (50 - k) for k in range(AGE_BINS - 1)], [0.1 * (20 - k) for k in range(AGE_BINS - 1)]]
    ages = [2.6, 104.0]  # ranks 3 and 100 (clamped)
    per = []
    for row, y in zip(logits, ages):
        r = min(max(round(y), 0), MAX_AGE)
        s = 0.0
        for k, g in enumerate(row):  # task k: is the age > k?
            s += -math.log(sig(g)) if r > k else -math.log(1 - sig(g))
        per.append(s)  # Σ over the K−1 tasks, λ_k = 1
    assert value(build("coral"), logits, ages) == pytest.approx(sum(per) / 2, rel=1e-5)


# ---------------------------------------------------------------- properties shared by all losses

BALANCED_FACTOR = {
    # eq. 5 with p_f = 1/2 gives w = 2 for both genders; eq. 17 with p_i = 1/2 gives e^{1/2} everywhere;
    # n_max / n_i and E(m) / m_i give 1.
    ("weighted_bce", "bce"): 2.0,
    ("weighted_binary_focal", "binary_focal"): 2.0,
    ("weighted_ce", "ce"): 1.0,
    ("weighted_focal", "focal"): 1.0,
    ("class_weighted_ce", "ce"): 1.0,
    ("ml_weighted_bce", "ml_bce"): math.exp(0.5),
    ("ml_weighted_focal", "ml_focal"): math.exp(0.5),
}


@pytest.mark.parametrize(("weighted", "plain"), list(BALANCED_FACTOR))
def test_weighted_reduces_to_unweighted_when_balanced(weighted: str, plain: str) -> None:
    kind = LOSSES.meta(weighted)["kind"]
    if kind == "binary":
        stats, out, tgt = {"counts": np.array([20, 20])}, X, Y
    elif kind == "multiclass":
        stats, out, tgt = {"counts": np.array([7, 7, 7])}, LOGITS, CLS
    else:
        stats, out, tgt = {"pos_rate": np.full(3, 0.5)}, ML_X, torch.tensor(ML_Y)
    factor = BALANCED_FACTOR[(weighted, plain)]
    assert value(build(weighted, stats), out, tgt) == pytest.approx(
        factor * value(build(plain), out, tgt), rel=1e-5
    )


WEIGHTED = ["weighted_bce", "weighted_binary_focal", "weighted_ce", "weighted_focal", "class_weighted_ce"]
ML_WEIGHTED = ["ml_weighted_bce", "ml_weighted_focal"]


@pytest.mark.parametrize("name", WEIGHTED + ML_WEIGHTED)
@pytest.mark.parametrize("stats", [None, {}, {"other": 1}])
def test_missing_stats_raise(name: str, stats: dict | None) -> None:
    with pytest.raises(AgeGenderError) as e:
        build(name, stats)
    assert e.value.code == "bad_config"
    assert "data module" in str(e.value)


@pytest.mark.parametrize("name", WEIGHTED)
def test_empty_class_raises(name: str) -> None:
    counts = np.array([0, 10]) if LOSSES.meta(name)["kind"] == "binary" else np.array([5, 0, 3])
    with pytest.raises(AgeGenderError, match="no training examples"):
        build(name, {"counts": counts})


def test_bad_options_raise() -> None:
    with pytest.raises(AgeGenderError, match="gamma"):
        build("bce", gamma=2.0)
    with pytest.raises(AgeGenderError):
        build("ml_weighted_bce", {"pos_rate": np.array([0.2, float("nan")])})
    with pytest.raises(AgeGenderError, match="classes"):
        build("weighted_ce", {"counts": np.array([1, 2])})(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(AgeGenderError, match="label_reduction"):
        build("ml_bce", label_reduction="max")


def _example(kind: str, scale: float) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
    """Outputs of the right shape for ``kind`` (logits of size ``scale``) and a matching target."""
    g = torch.Generator().manual_seed(1)
    if kind == "binary":
        return (
            scale * torch.randn(6, generator=g),
            torch.tensor([0, 1, 1, 0, 1, 0]),
            {"counts": np.array([4, 2])},
        )
    if kind == "multiclass":
        return (
            scale * torch.randn(6, 4, generator=g),
            torch.tensor([0, 1, 2, 3, 3, 1]),
            {"counts": np.array([1, 2, 3, 4])},
        )
    if kind == "multilabel":
        y = torch.tensor([[1, 0, float("nan")], [0, 1, 1]] * 3)
        return scale * torch.randn(6, 3, generator=g), y, {"pos_rate": np.array([0.1, 0.5, 0.9])}
    ages = torch.tensor([0.0, 3.0, 25.5, 60.0, 100.0, 116.0])
    if kind == "regression":
        return torch.rand(6, generator=g) * MAX_AGE, ages, None
    if kind == "age_distribution":
        return scale * torch.randn(6, AGE_BINS, generator=g), ages, None
    return scale * torch.randn(6, AGE_BINS - 1, generator=g), ages, None  # ordinal


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_scalar_with_finite_gradient(name: str, scale: float) -> None:
    out, tgt, stats = _example(LOSSES.meta(name)["kind"], scale)
    out.requires_grad_(True)
    v = build(name, stats)(out, tgt)
    assert v.dim() == 0 and torch.isfinite(v)
    v.backward()
    assert torch.isfinite(out.grad).all()


def test_every_loss_registered_with_kind_and_equation() -> None:
    kinds = {"binary", "multiclass", "multilabel", "regression", "age_distribution", "ordinal"}
    for name in LOSSES.names():
        meta = LOSSES.meta(name)
        assert meta["kind"] in kinds and meta["eq"], name


def test_age_distribution_head_estimates() -> None:
    """The default point estimate is the distribution's median (interpolated in its bin); "mean" gives
    the DEX/DLDL expected value; a skewed distribution separates the two."""
    import torch

    from agegender.errors import AgeGenderError
    from agegender.models.heads import AgeDistributionHead, distribution_median

    p = torch.zeros(2, 101)
    p[0, 10], p[0, 11], p[0, 60] = 0.4, 0.4, 0.2  # a child with a long adult tail
    p[1, 30] = 1.0
    # median: cdf 0.4 below bin 11, which holds 0.4 → 10.5 + 0.1 / 0.4; bin 30 holds all → its centre
    assert torch.allclose(distribution_median(p), torch.tensor([10.75, 30.0]))
    logits = torch.log(p.clamp_min(1e-30))
    median_head, mean_head = AgeDistributionHead("age", 8), AgeDistributionHead("age", 8, estimate="mean")
    assert median_head.estimate == "median"
    assert torch.allclose(median_head.decode(logits)["age"], torch.tensor([10.75, 30.0]), atol=1e-4)
    assert torch.allclose(mean_head.decode(logits)["age"], torch.tensor([20.4, 30.0]), atol=1e-3)
    # uniform within a bin: half of bin 3's mass → its centre; all below → interpolated edge
    q = torch.tensor([[0.2, 0.2, 0.0, 0.2, 0.4]])
    assert torch.allclose(distribution_median(q), torch.tensor([3.0]))  # cdf 0.4 below, bin 3 holds 0.2 → 2.5 + 0.5
    with pytest.raises(AgeGenderError):
        AgeDistributionHead("age", 8, estimate="mode")
