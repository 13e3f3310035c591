"""Output heads: each maps trunk features to one task's raw output and decodes it into predictions.

Gender as one sigmoid unit (chatzitzisi) or a 2-way softmax (the other papers); age group as an
M-way softmax; age as regression (sigmoid × max age, dey_aggarwal), as a distribution over years
0–100 (DEX / DLDL: the expected value is the estimate) or as CORAL ordinal ranks; ethnicity softmax;
multi-label sigmoid units (attributes, and chatzitzisi §2.3's gender + M age groups).
``decode`` always returns probabilities already divided by the head's ``temperature`` buffer, which
temperature scaling (fitted on validation data) sets after training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.labels import ADULT_AGE, AGE_BINS, MAX_AGE
from agegender.models.registry import HEADS


def mlp(in_features: int, hidden: Sequence[int], out: int, dropout: float = 0.0) -> nn.Sequential:
    """Hidden Linear+ReLU(+Dropout) layers then a linear output (dey_aggarwal: two Dense-128 per task)."""
    layers: list[nn.Module] = []
    c = in_features
    for h in hidden:
        layers += [nn.Linear(c, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        c = h
    if dropout and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c, out))
    return nn.Sequential(*layers)


class Head(nn.Module):
    """Base head. ``task`` names the target it learns; ``kind`` selects compatible losses and metrics."""

    kind: str = ""

    def __init__(self, task: str, in_features: int, out: int, hidden: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        self.task = task
        self.net = mlp(in_features, hidden, out, dropout)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def calibratable(self) -> bool:
        """Whether temperature scaling applies (heads whose output is a logit)."""
        return True


class ClassificationHead(Head):
    kind = "multiclass"

    def __init__(self, task: str, in_features: int, num_classes: int, **kw) -> None:
        super().__init__(task, in_features, num_classes, **kw)
        self.num_classes = num_classes

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{self.task}_probs": torch.softmax(out / self.temperature, dim=-1)}


class BinaryHead(Head):
    """One sigmoid unit; decodes to 2-class probabilities [p(class 0), p(class 1)]."""

    kind = "binary"

    def __init__(self, task: str, in_features: int, **kw) -> None:
        super().__init__(task, in_features, 1, **kw)
        self.num_classes = 2

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats).squeeze(-1)

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        p = torch.sigmoid(out / self.temperature)
        return {f"{self.task}_probs": torch.stack([1 - p, p], dim=-1)}


class MultiLabelHead(Head):
    kind = "multilabel"

    def __init__(self, task: str, in_features: int, num_labels: int, **kw) -> None:
        super().__init__(task, in_features, num_labels, **kw)
        self.num_labels = num_labels

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{self.task}_probs": torch.sigmoid(out / self.temperature)}


class AgeRegressionHead(Head):
    """dey_aggarwal: sigmoid output times the maximum age, trained with MSE."""

    kind = "regression"

    def __init__(self, task: str, in_features: int, max_age: float = MAX_AGE, **kw) -> None:
        super().__init__(task, in_features, 1, **kw)
        self.max_age = float(max_age)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(feats).squeeze(-1)) * self.max_age

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"age": out}

    def calibratable(self) -> bool:
        return False


class AgeDistributionHead(Head):
    """Softmax over ages 0..100 (DEX/DLDL).

    ``estimate`` picks the point estimate read from the distribution: ``"median"`` (default) or
    ``"mean"`` (the expected value, as DEX and DLDL report it). The median minimises the expected
    absolute error under the predicted distribution, and age distributions are right-skewed for
    children and teenagers, whose expected value is pulled towards adulthood. Measured with stage 1
    of the default face model (flip TTA; val 1,660 / test 1,844 UTKFace images): MAE 4.77 → 4.72 /
    4.64 → 4.61 years and under-18 false-adult rate 12.1 → 10.8 % / 9.1 → 8.5 % from mean to median.
    The median is interpolated within its one-year bin (bin ``k`` spans ``[k − 0.5, k + 0.5)``).

    A number ``0 < q < 1`` reads that quantile instead. ``agegender package`` fits it on the validation
    split (:func:`agegender.evaluation.calibration.fit_age_quantile`): a network that errs towards older
    ages on its validation images gets a quantile below 0.5, the way temperature scaling corrects
    over-confidence. The package stores the fitted value in its config.

    ``minor_guard`` (a probability, or None) is an under-age guard on the point estimate: where the predicted
    probability of being under 18 is at least ``minor_guard``, the estimate is held at :data:`GUARDED_AGE` (17.4)
    at most. A lower quantile moves every estimate down to pass fewer minors as adults; the guard moves only the
    faces the distribution itself finds plausibly under 18, which are near 18 already, so it buys the same drop in
    minors estimated 18 or older for far less MAE (measured on the pooled UTKFace + All-Age-Faces validation split
    of ``default``, a guard of 0.38: 10.1 → 7.8 % of minors at MAE 5.086 → 5.084, where the 0.35-quantile reaches
    7.3 % at MAE 5.370). ``agegender package --max-false-adult`` fits it with the quantile
    (:func:`agegender.evaluation.calibration.fit_age_quantile`).
    """

    kind = "age_distribution"
    ESTIMATES = ("median", "mean")

    def __init__(self, task: str, in_features: int, estimate: str | float = "median",
                 minor_guard: float | None = None, **kw) -> None:
        super().__init__(task, in_features, AGE_BINS, **kw)
        self.estimate = check_age_estimate(estimate)
        self.minor_guard = check_minor_guard(minor_guard)
        self.register_buffer("ages", torch.arange(AGE_BINS, dtype=torch.float32))

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        p = torch.softmax(out / self.temperature, dim=-1)
        if self.estimate == "mean":
            age = p @ self.ages
        else:
            age = distribution_quantile(p, 0.5 if self.estimate == "median" else float(self.estimate))
        if self.minor_guard is not None:
            age = guard_minors(age, p, self.minor_guard)
        return {"age": age, "age_probs": p}


#: the estimate the under-age guard holds a face at (below :data:`agegender.labels.ADULT_AGE` however it is rounded)
GUARDED_AGE = 17.4


def guard_minors(age: torch.Tensor, p: torch.Tensor, guard: float) -> torch.Tensor:
    """``age`` held at :data:`GUARDED_AGE` at most where the probability of an age under 18 (the mass of ``p``'s
    first 18 bins) is at least ``guard``; elementwise ops only, so it exports to ONNX.

    >>> p = torch.zeros(2, 101); p[0, 17], p[0, 19], p[1, 30] = 0.4, 0.6, 1.0
    >>> guard_minors(torch.tensor([19.0, 30.0]), p, 0.3).tolist()   # 40 % under 18: held below 18
    [17.399999618530273, 30.0]
    """
    minor = p[..., :ADULT_AGE].sum(dim=-1)
    return torch.where(minor >= guard, torch.clamp(age, max=GUARDED_AGE), age)


def check_minor_guard(guard: Any) -> float | None:
    """None (no guard) or a probability strictly between 0 and 1; anything else is a config error."""
    if guard is None:
        return None
    if isinstance(guard, (int, float)) and not isinstance(guard, bool) and 0.0 < float(guard) < 1.0:
        return float(guard)
    raise AgeGenderError(f"minor_guard must be a probability between 0 and 1 (or null for none), not {guard!r}",
                         code="bad_config")


def check_age_estimate(estimate: Any) -> str | float:
    """``"median"``, ``"mean"`` or a quantile strictly between 0 and 1; anything else is a config error."""
    if isinstance(estimate, str) and estimate in AgeDistributionHead.ESTIMATES:
        return estimate
    if isinstance(estimate, (int, float)) and not isinstance(estimate, bool) and 0.0 < float(estimate) < 1.0:
        return float(estimate)
    raise AgeGenderError(
        f"age estimate must be one of {', '.join(AgeDistributionHead.ESTIMATES)} or a quantile between 0 and 1, "
        f"not {estimate!r}", code="bad_config")


def distribution_quantile(p: torch.Tensor, q: float = 0.5) -> torch.Tensor:
    """The ``q``-quantile of distributions over ages ``0..K-1`` (rows of ``p``), linear within its bin.

    Written with cumsum/sum/gather only, so it exports to ONNX.

    >>> float(distribution_quantile(torch.tensor([[0.0, 0.25, 0.5, 0.25]])))  # the median: middle of bin 2
    2.0
    >>> float(distribution_quantile(torch.tensor([[0.5, 0.5, 0.0]])))  # the boundary of bins 0 and 1
    0.5
    >>> float(distribution_quantile(torch.tensor([[0.0, 0.25, 0.5, 0.25]]), 0.25))  # the top of bin 1
    1.5
    """
    cdf = torch.cumsum(p, dim=-1)
    k = (cdf < q).sum(dim=-1, keepdim=True).clamp(max=p.shape[-1] - 1)
    pk = torch.gather(p, -1, k)
    below = torch.gather(cdf, -1, k) - pk
    return (k.to(p.dtype) - 0.5 + (q - below) / pk.clamp_min(1e-12)).squeeze(-1)


def distribution_median(p: torch.Tensor) -> torch.Tensor:
    """Median of distributions over ages ``0..K-1`` (rows of ``p``): :func:`distribution_quantile` at 0.5."""
    return distribution_quantile(p, 0.5)


class CoralHead(Head):
    """CORAL (Cao et al. 2020): one shared weight vector and K−1 ordered biases; P(age > k) = σ(w·x + b_k)."""

    kind = "ordinal"

    def __init__(self, task: str, in_features: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> None:
        super().__init__(task, in_features, 1, hidden=hidden, dropout=dropout)
        self.net[-1] = nn.Linear(self.net[-1].in_features, 1, bias=False)
        self.biases = nn.Parameter(torch.linspace(2.0, -2.0, AGE_BINS - 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats) + self.biases

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        gt = torch.sigmoid(out / self.temperature)  # P(age > k), k = 0..99
        # Cumulative → point masses; clamp because independent sigmoids need not be monotone.
        upper = torch.cat([torch.ones_like(gt[:, :1]), gt], dim=1)
        lower = torch.cat([gt, torch.zeros_like(gt[:, :1])], dim=1)
        probs = (upper - lower).clamp(min=0)
        probs = probs / probs.sum(-1, keepdim=True).clamp(min=1e-8)
        return {"age": gt.sum(-1), "age_probs": probs}


HEADS.register("classification")(ClassificationHead)
HEADS.register("binary")(BinaryHead)
HEADS.register("multilabel")(MultiLabelHead)
HEADS.register("age_regression")(AgeRegressionHead)
HEADS.register("age_distribution")(AgeDistributionHead)
HEADS.register("coral")(CoralHead)
