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
from agegender.labels import AGE_BINS, MAX_AGE
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
    """

    kind = "age_distribution"
    ESTIMATES = ("median", "mean")

    def __init__(self, task: str, in_features: int, estimate: str | float = "median", **kw) -> None:
        super().__init__(task, in_features, AGE_BINS, **kw)
        self.estimate = check_age_estimate(estimate)
        self.register_buffer("ages", torch.arange(AGE_BINS, dtype=torch.float32))

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        p = torch.softmax(out / self.temperature, dim=-1)
        if self.estimate == "mean":
            age = p @ self.ages
        else:
            age = distribution_quantile(p, 0.5 if self.estimate == "median" else float(self.estimate))
        return {"age": age, "age_probs": p}


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
