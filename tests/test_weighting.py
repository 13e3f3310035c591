"""Task weightings: fixed sums, kang2019 eq. 5's collapse as written, and uncertainty weighting staying sane."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import agegender  # noqa: F401  (torchvision compat fix before torch)
from agegender.errors import AgeGenderError
from agegender.models.registry import WEIGHTINGS

TASKS = ["age", "gender"]


def test_fixed_sums_present_tasks() -> None:
    w = WEIGHTINGS.build("fixed", TASKS, weights={"gender": 3.0})
    assert w.current_weights() == {"age": 1.0, "gender": 3.0}
    total = w({"age": torch.tensor(2.0), "gender": torch.tensor(0.5)})
    assert float(total.detach()) == pytest.approx(2.0 + 3.0 * 0.5)
    assert float(w({"gender": torch.tensor(0.5)})) == pytest.approx(1.5)  # age skipped this step
    assert float(w({})) == 0.0


def test_bad_task_names_raise() -> None:
    with pytest.raises(AgeGenderError, match="ethnicity"):
        WEIGHTINGS.build("fixed", TASKS, weights={"ethnicity": 2.0})
    w = WEIGHTINGS.build("uncertainty", TASKS)
    with pytest.raises(AgeGenderError, match="ethnicity"):
        w({"ethnicity": torch.tensor(1.0)})
    with pytest.raises(AgeGenderError, match="option"):
        WEIGHTINGS.build("kang_trainable", TASKS, p=1.0)


def test_kang_eq5_value_and_gradient() -> None:
    w = WEIGHTINGS.build("kang_trainable", TASKS, init={"age": 0.7})
    la, lg = torch.tensor(2.0), torch.tensor(0.5)
    total = w({"age": la, "gender": lg})
    assert float(total.detach()) == pytest.approx(0.7 * 2.0 + 1.0 * 0.5)  # p·L_age + q·L_gender
    total.backward()
    assert float(w.p["age"].grad) == pytest.approx(2.0)  # ∂L/∂p = L_age ≥ 0: descent always lowers p
    assert float(w.p["gender"].grad) == pytest.approx(0.5)


def test_uncertainty_value_and_optimum() -> None:
    w = WEIGHTINGS.build("uncertainty", TASKS, init_log_var={"age": math.log(4.0)})
    total = w({"age": torch.tensor(2.0), "gender": torch.tensor(0.5)})
    assert float(total.detach()) == pytest.approx(
        math.exp(-math.log(4.0)) * 2.0 + math.log(4.0) + 1.0 * 0.5 + 0.0
    )
    assert w.current_weights() == pytest.approx({"age": 0.25, "gender": 1.0})
    # With constant losses the minimiser is s = log L, i.e. weight 1 / L.
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        w({"age": torch.tensor(2.0), "gender": torch.tensor(0.5)}).backward()
        opt.step()
    assert w.current_weights() == pytest.approx({"age": 0.5, "gender": 2.0}, rel=1e-2)


def _train(weighting_name: str, steps: int = 100) -> tuple[list[dict[str, float]], list[float], list[dict]]:
    """Jointly train a tiny two-task model and the weighting with plain SGD; record weights, totals, losses."""
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    age = x @ torch.randn(5) + 0.3 * torch.randn(64)
    age = (age - age.mean()) / age.std()  # both task losses start near 1
    gender = (x[:, 0] + 0.5 * torch.randn(64) > 0).float()
    trunk = nn.Linear(5, 8)
    heads = nn.ModuleDict({"age": nn.Linear(8, 1), "gender": nn.Linear(8, 1)})
    w = WEIGHTINGS.build(weighting_name, TASKS)
    opt = torch.optim.SGD([*trunk.parameters(), *heads.parameters(), *w.parameters()], lr=0.02)
    weights, totals, parts = [], [], []
    for _ in range(steps):
        f = torch.relu(trunk(x))
        losses = {
            "age": nn.functional.mse_loss(heads["age"](f).squeeze(-1), age),
            "gender": nn.functional.binary_cross_entropy_with_logits(heads["gender"](f).squeeze(-1), gender),
        }
        total = w(losses)
        opt.zero_grad()
        total.backward()
        opt.step()
        weights.append(w.current_weights())
        totals.append(float(total.detach()))
        parts.append({t: float(v.detach()) for t, v in losses.items()})
    return weights, totals, parts


def test_kang_trainable_collapses_under_sgd() -> None:
    # kang2019 eq. 5 as written: p and q fall at every step (their gradients are the losses), cross
    # zero, and the "loss" turns negative: from then on the network is rewarded for doing worse
    # (left running, the age loss grows without bound and everything becomes NaN within ~80 more steps).
    weights, totals, parts = _train("kang_trainable")
    for t in TASKS:
        seq = [w[t] for w in weights]
        assert all(b < a for a, b in itertools.pairwise(seq)), f"{t} weight did not fall monotonically"
        assert seq[-1] < 0.0
    assert totals[-1] < 0.0
    age = [p["age"] for p in parts]
    assert age[-1] > min(age) + 0.03  # the age error is now rising


def test_uncertainty_weights_stay_positive_and_bounded() -> None:
    # Same model, data, optimiser and steps: exp(−s) can never reach zero or flip sign.
    weights, totals, parts = _train("uncertainty")
    for w in weights:
        for t in TASKS:
            assert 0.0 < w[t] < 10.0
    assert all(math.isfinite(v) for v in totals)
    for t in TASKS:
        assert parts[-1][t] < parts[0][t]  # both tasks still learn
