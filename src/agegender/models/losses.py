"""Loss functions of the five papers (plus DLDL-v2 and CORAL), registered by name in ``LOSSES``.

Every loss works on logits (log-sigmoid / log-softmax, never log of a probability) and returns the
mean over the batch of the per-sample loss the cited equation defines. Class weights come from
``stats`` that the data module computes on the training split; :func:`class_weights` and
:func:`label_weights` hold the weight formulas so each is written once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agegender.errors import AgeGenderError
from agegender.models.registry import LOSSES

CHATZITZISI = "chatzitzisi2020"
JAMOLIDDIN = "jamoliddin_yoo2022"
DEY = "dey_aggarwal"

# --------------------------------------------------------------------------------------------------
# Weight formulas
# --------------------------------------------------------------------------------------------------

#: kinds accepted by :func:`class_weights`
CLASS_WEIGHT_KINDS: tuple[str, ...] = ("inverse_proportion", "max_over_count", "mean_over_count")


def class_weights(kind: str, counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-class loss weights from the per-class counts of the training split.

    - ``inverse_proportion`` (chatzitzisi2020 eq. 5, binary only): with p_f = n_1 / (n_0 + n_1) the
      proportion of class 1 (females), w = [1 / (1 − p_f), 1 / p_f]. Balanced classes give [2, 2].
    - ``max_over_count`` (chatzitzisi2020, defined under eq. 12 for eqs. 11–12): w_i = max_j n_j / n_i.
    - ``mean_over_count`` (jamoliddin_yoo2022 eq. 1): w_i = E(m) / m_i, E(m) the mean class size.

    >>> class_weights("mean_over_count", [10, 30]).tolist()
    [2.0, 0.6666666666666666]
    """
    n = np.asarray(counts, dtype=np.float64).reshape(-1)
    if kind not in CLASS_WEIGHT_KINDS:
        raise AgeGenderError(
            f"unknown class-weight kind {kind!r}; choose one of: {', '.join(CLASS_WEIGHT_KINDS)}",
            code="bad_config",
        )
    if n.size < 2 or not np.all(np.isfinite(n)) or np.any(n < 0):
        raise AgeGenderError(
            f"class counts must be ≥ 2 non-negative numbers, got {n.tolist()}", code="bad_config"
        )
    if np.any(n == 0):
        empty = np.flatnonzero(n == 0).tolist()
        raise AgeGenderError(
            f"class(es) {empty} have no training examples, so a class-weighted loss would give them an "
            f"infinite weight (counts {n.tolist()}); use the unweighted loss or a split that contains every class",
            code="bad_config",
        )
    if kind == "inverse_proportion":
        if n.size != 2:
            raise AgeGenderError(f"eq. 5 weights need 2 class counts, got {n.size}", code="bad_config")
        p_f = n[1] / n.sum()
        return np.array([1.0 / (1.0 - p_f), 1.0 / p_f])
    if kind == "max_over_count":
        return n.max() / n
    return n.mean() / n


def label_weights(pos_rate: Sequence[float] | np.ndarray) -> np.ndarray:
    """chatzitzisi2020 eq. 17 as written: w_i = e^{p_i} where y_i = 0 and e^{1−p_i} where y_i = 1.

    ``pos_rate[i]`` = p_i, the proportion of positives of label i in the training split. Returns a
    (2, K) array: row 0 the weights of negatives, row 1 those of positives. The rarer side of each
    label gets the larger weight, between 1 and e.
    """
    p = np.asarray(pos_rate, dtype=np.float64).reshape(-1)
    if p.size == 0 or not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise AgeGenderError(
            f"pos_rate must be proportions in [0, 1] for every label, got {p.tolist()} "
            "(a NaN means a label with no annotated example in the training split)",
            code="bad_config",
        )
    return np.stack([np.exp(p), np.exp(1.0 - p)])


def _need(stats: Mapping[str, Any] | None, key: str, loss: str) -> np.ndarray:
    if not stats or stats.get(key) is None:
        raise AgeGenderError(
            f"loss {loss!r} needs stats[{key!r}] computed on the training split, and none were given; "
            "the data module must supply them (they are never written by hand in a config)",
            code="bad_config",
        )
    return np.asarray(stats[key], dtype=np.float64)


def _reject_extra(loss: str, extra: Mapping[str, Any]) -> None:
    if extra:
        raise AgeGenderError(
            f"loss {loss!r} does not take option(s) {sorted(extra)}; check loss_args in the config",
            code="bad_config",
        )


# --------------------------------------------------------------------------------------------------
# Shared element-wise terms
# --------------------------------------------------------------------------------------------------


def binary_terms(
    logits: Tensor, y: Tensor, gamma: float = 0.0, w_neg: Tensor | float = 1.0, w_pos: Tensor | float = 1.0
) -> Tensor:
    """Element-wise −[w₁·y·(1−ŷ)^γ·log ŷ + w₀·(1−y)·ŷ^γ·log(1−ŷ)], ŷ = σ(logits).

    chatzitzisi2020 eq. 4 with the weight of eq. 5 / 17 moved inside each term (the same thing for 0/1
    labels); γ = 0 gives eq. 3, w = 1 gives eq. 2, both give eq. 1.
    """
    log_p = F.logsigmoid(logits)  # log ŷ
    log_q = F.logsigmoid(-logits)  # log(1 − ŷ)
    pos = y * log_p
    neg = (1.0 - y) * log_q
    if gamma:
        pos = pos * torch.exp(gamma * log_q)  # (1 − ŷ)^γ
        neg = neg * torch.exp(gamma * log_p)  # ŷ^γ
    return -(w_pos * pos + w_neg * neg)


def categorical_terms(logits: Tensor, q: Tensor, gamma: float = 0.0, weight: Tensor | None = None) -> Tensor:
    """Per-sample −Σ_i w_i·q_i·(1−ŷ_i)^γ·log ŷ_i, ŷ = softmax(logits), q the (smoothed) one-hot target.

    chatzitzisi2020 eq. 12; γ = 0 gives eq. 11, w = 1 gives eq. 10, both give eq. 9.
    """
    log_p = F.log_softmax(logits, dim=-1)
    t = q * log_p
    if gamma:
        # 1 − ŷ as −expm1(log ŷ) stays accurate when ŷ → 1, where 1 − exp() would round to 0.
        t = t * (-torch.expm1(log_p)).clamp(min=0.0).pow(gamma)
    if weight is not None:
        t = t * weight
    return -t.sum(-1)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(-1) if x.dim() > 1 and x.shape[-1] == 1 else x


def _years_to_index(target: Tensor, num: int) -> Tensor:
    """Years → integer rank 0..num−1 (rounded; older ages pile into the top rank)."""
    return target.float().round().clamp(0, num - 1).long()


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class BinaryLoss(nn.Module):
    """Mean over the batch of chatzitzisi2020 eqs. 1–4 on logits (B,) or (B, 1); target 0/1."""

    def __init__(self, gamma: float = 0.0, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.gamma = float(gamma)
        w = torch.ones(2) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", w, persistent=False)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        x = _flat(output).float()
        y = _flat(target).to(x.dtype)
        return binary_terms(x, y, self.gamma, self.weights[0], self.weights[1]).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, weights={self.weights.tolist()}"


class CategoricalLoss(nn.Module):
    """Mean over the batch of chatzitzisi2020 eqs. 9–12 on logits (B, C); target class index (B,).

    ``label_smoothing`` ε replaces the one-hot y by (1−ε)·y + ε/C in the same formula. With
    ``years_target`` the target is an age in years, rounded and clamped to a class 0..C−1 (DEX).
    """

    def __init__(
        self,
        gamma: float = 0.0,
        weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        years_target: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise AgeGenderError(
                f"label_smoothing must be in [0, 1), got {label_smoothing}", code="bad_config"
            )
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.years_target = years_target
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", w, persistent=False)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        x = output.float()
        c = x.shape[-1]
        if self.weights is not None and self.weights.numel() != c:
            raise AgeGenderError(
                f"the training split has {self.weights.numel()} classes but the head outputs {c}",
                code="bad_config",
            )
        idx = _years_to_index(_flat(target), c) if self.years_target else _flat(target).long()
        q = F.one_hot(idx, c).to(x.dtype)
        if self.label_smoothing:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / c
        return categorical_terms(x, q, self.gamma, self.weights).mean()

    def extra_repr(self) -> str:
        w = None if self.weights is None else [round(v, 4) for v in self.weights.tolist()]
        return f"gamma={self.gamma}, label_smoothing={self.label_smoothing}, weights={w}"


class MultiLabelLoss(nn.Module):
    """chatzitzisi2020 eqs. 13–16: Σ over labels of the binary terms, then mean over the batch.

    NaN target entries are missing labels and contribute nothing. ``label_reduction="sum"`` is the
    paper's Σ_{i=1}^{M+1} (so the loss grows with K); ``"mean"`` divides each row by its number of
    observed labels. Rows with no observed label are left out of the batch mean.
    """

    def __init__(
        self, gamma: float = 0.0, weights: np.ndarray | None = None, label_reduction: str = "sum"
    ) -> None:
        super().__init__()
        if label_reduction not in ("sum", "mean"):
            raise AgeGenderError(
                f"label_reduction must be 'sum' (the paper) or 'mean', got {label_reduction!r}",
                code="bad_config",
            )
        self.gamma = float(gamma)
        self.label_reduction = label_reduction
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", w, persistent=False)  # (2, K): negatives, positives

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        x = output.float()
        y = target.to(x.dtype)
        if self.weights is not None and self.weights.shape[1] != x.shape[-1]:
            raise AgeGenderError(
                f"stats give pos_rate for {self.weights.shape[1]} labels but the head outputs {x.shape[-1]}",
                code="bad_config",
            )
        seen = ~torch.isnan(y)
        y = torch.where(seen, y, torch.zeros_like(y))
        w_neg, w_pos = (1.0, 1.0) if self.weights is None else (self.weights[0], self.weights[1])
        terms = binary_terms(x, y, self.gamma, w_neg, w_pos) * seen
        n_seen = seen.sum(-1)
        per_row = terms.sum(-1)
        if self.label_reduction == "mean":
            per_row = per_row / n_seen.clamp(min=1)
        rows = n_seen > 0
        # A batch with no observed label gives 0 that still depends on the output (keeps the graph whole).
        return per_row[rows].sum() / rows.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, label_reduction={self.label_reduction!r}, weighted={self.weights is not None}"


class RegressionLoss(nn.Module):
    """Mean over the batch of (ŷ − y)² (dey_aggarwal), |ŷ − y| or Smooth-L1 with threshold ``beta`` years."""

    def __init__(self, kind: str = "mse", beta: float = 1.0) -> None:
        super().__init__()
        self.kind = kind
        self.beta = float(beta)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        d = _flat(output).float() - _flat(target).float()
        if self.kind == "mse":
            return (d * d).mean()
        if self.kind == "l1":
            return d.abs().mean()
        a = d.abs()
        return torch.where(a < self.beta, 0.5 * d * d / self.beta, a - 0.5 * self.beta).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", beta={self.beta}" if self.kind == "smooth_l1" else "")


def interval_log_prob(logits: Tensor, allowed: Tensor) -> Tensor:
    """log P(age in the allowed bins) under softmax(logits), per row: logsumexp over the allowed bins minus over all,
    exact (and with a gradient) where that mass is tiny. The likelihood of an interval-censored age label, used by
    the ``dldl`` cut term and ``model.young_age``."""
    return torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=-1) - torch.logsumexp(logits, dim=-1)


class DLDLLoss(nn.Module):
    """DLDL-v2 (Gao et al. 2018): KL(q ‖ softmax(logits)) + λ·|Σ_k k·p_k − y|, plus an optional cut-point term.

    q_k ∝ exp(−(k − y)² / 2σ²) over ages k = 0..C−1 (normalised), y the true age clamped to 0..C−1.

    ``cuts`` (ages such as 18) add λ_cut · mean over cuts of −w·log P(the side of the cut the true age is on), P from
    the same distribution (P(age < c) = Σ_{k<c} p_k): a cumulative-link term, the binary cross-entropies CORAL
    (Cao et al. 2020, eq. 4) puts on every rank, here on chosen ages only and read off the one distribution. ``w`` is
    ``below_weight`` for true ages under the cut and 1 above it, the cost-sensitive weighting of Elkan (2001, §2):
    a minor called an adult can be made to cost more than the reverse.
    """

    def __init__(self, sigma: float = 2.0, lambda_l1: float = 1.0, cuts: Sequence[float] = (),
                 lambda_cut: float = 1.0, below_weight: float = 1.0) -> None:
        super().__init__()
        if sigma <= 0:
            raise AgeGenderError(f"dldl sigma must be > 0 years, got {sigma}", code="bad_config")
        try:
            cuts = [float(c) for c in ([cuts] if isinstance(cuts, (int, float)) else cuts)]
            lambda_cut, below_weight = float(lambda_cut), float(below_weight)
        except (TypeError, ValueError):
            raise AgeGenderError("dldl cuts must be a list of ages and lambda_cut, below_weight numbers",
                                 code="bad_config") from None
        if any(not 0 < c < 100 for c in cuts) or lambda_cut < 0 or below_weight <= 0:
            raise AgeGenderError(f"dldl cuts must be ages in (0, 100), lambda_cut >= 0 and below_weight > 0; got "
                                 f"cuts {cuts}, lambda_cut {lambda_cut:g}, below_weight {below_weight:g}",
                                 code="bad_config")
        self.sigma = float(sigma)
        self.lambda_l1 = float(lambda_l1)
        self.cuts = tuple(cuts)
        self.lambda_cut = lambda_cut
        self.below_weight = below_weight

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        x = output.float()
        ages = torch.arange(x.shape[-1], dtype=x.dtype, device=x.device)
        y = _flat(target).to(x.dtype).clamp(0, x.shape[-1] - 1)
        log_q = F.log_softmax(-((ages - y[:, None]) ** 2) / (2 * self.sigma**2), dim=-1)
        log_p = F.log_softmax(x, dim=-1)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)
        loss = kl
        if self.lambda_l1:
            loss = loss + self.lambda_l1 * (log_p.exp() @ ages - y).abs()
        if self.cuts and self.lambda_cut:
            terms = []
            for c in self.cuts:
                below = ages < c
                y_below = y < c
                side = torch.where(y_below[:, None], below, ~below)
                w = torch.where(y_below, torch.full_like(y, self.below_weight), torch.ones_like(y))
                terms.append(-w * interval_log_prob(x, side))
            loss = loss + self.lambda_cut * torch.stack(terms, dim=0).mean(0)
        return loss.mean()

    def extra_repr(self) -> str:
        cut = (f", cuts={list(self.cuts)}, lambda_cut={self.lambda_cut}, below_weight={self.below_weight}"
               if self.cuts else "")
        return f"sigma={self.sigma}, lambda_l1={self.lambda_l1}" + cut


class CoralLoss(nn.Module):
    """CORAL (Cao et al. 2020, eq. 4 with λ_k = 1): Σ_{k=0}^{K−2} BCE(g_k, 1[y > k]), mean over the batch.

    Logits (B, K−1) for ranks 0..K−1 (K = 101: ages 0..100); target in years, rounded and clamped.
    """

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        x = output.float()
        ranks = torch.arange(x.shape[-1], device=x.device)
        y = _years_to_index(_flat(target), x.shape[-1] + 1)
        levels = (y[:, None] > ranks).to(x.dtype)
        return binary_terms(x, levels).sum(-1).mean()


# --------------------------------------------------------------------------------------------------
# Registered builders
# --------------------------------------------------------------------------------------------------

_Stats = Mapping[str, Any] | None


@LOSSES.register("bce", kind="binary", paper=CHATZITZISI, eq="1")
def bce(stats: _Stats = None, **kw: Any) -> BinaryLoss:
    """−y·log ŷ − (1−y)·log(1−ŷ) (eq. 1)."""
    _reject_extra("bce", kw)
    return BinaryLoss()


@LOSSES.register("weighted_bce", kind="binary", paper=CHATZITZISI, eq="3, 5")
def weighted_bce(stats: _Stats = None, **kw: Any) -> BinaryLoss:
    """−w·[y·log ŷ + (1−y)·log(1−ŷ)], w = 1/(1−p_f) for y = 0, 1/p_f for y = 1 (eqs. 3, 5)."""
    _reject_extra("weighted_bce", kw)
    return BinaryLoss(weights=class_weights("inverse_proportion", _need(stats, "counts", "weighted_bce")))


@LOSSES.register("binary_focal", kind="binary", paper=CHATZITZISI, eq="2")
def binary_focal(stats: _Stats = None, gamma: float = 2.0, **kw: Any) -> BinaryLoss:
    """−y·(1−ŷ)^γ·log ŷ − (1−y)·ŷ^γ·log(1−ŷ) (eq. 2; γ = 2 as in §3)."""
    _reject_extra("binary_focal", kw)
    return BinaryLoss(gamma=gamma)


@LOSSES.register("weighted_binary_focal", kind="binary", paper=CHATZITZISI, eq="4, 5")
def weighted_binary_focal(stats: _Stats = None, gamma: float = 2.0, **kw: Any) -> BinaryLoss:
    """Eq. 2 multiplied by the eq. 5 weight (eq. 4)."""
    _reject_extra("weighted_binary_focal", kw)
    w = class_weights("inverse_proportion", _need(stats, "counts", "weighted_binary_focal"))
    return BinaryLoss(gamma=gamma, weights=w)


@LOSSES.register("ce", kind="multiclass", paper=CHATZITZISI, eq="9")
def ce(stats: _Stats = None, label_smoothing: float = 0.0, **kw: Any) -> CategoricalLoss:
    """−Σ_i y_i·log ŷ_i (eq. 9)."""
    _reject_extra("ce", kw)
    return CategoricalLoss(label_smoothing=label_smoothing)


@LOSSES.register("weighted_ce", kind="multiclass", paper=CHATZITZISI, eq="11 (w_i defined under eq. 12)")
def weighted_ce(stats: _Stats = None, label_smoothing: float = 0.0, **kw: Any) -> CategoricalLoss:
    """−Σ_i w_i·y_i·log ŷ_i with w_i = max_j n_j / n_i (eq. 11)."""
    _reject_extra("weighted_ce", kw)
    w = class_weights("max_over_count", _need(stats, "counts", "weighted_ce"))
    return CategoricalLoss(weights=w, label_smoothing=label_smoothing)


@LOSSES.register("focal", kind="multiclass", paper=CHATZITZISI, eq="10")
def focal(
    stats: _Stats = None, gamma: float = 2.0, label_smoothing: float = 0.0, **kw: Any
) -> CategoricalLoss:
    """−Σ_i y_i·(1−ŷ_i)^γ·log ŷ_i (eq. 10)."""
    _reject_extra("focal", kw)
    return CategoricalLoss(gamma=gamma, label_smoothing=label_smoothing)


@LOSSES.register("weighted_focal", kind="multiclass", paper=CHATZITZISI, eq="12")
def weighted_focal(
    stats: _Stats = None, gamma: float = 2.0, label_smoothing: float = 0.0, **kw: Any
) -> CategoricalLoss:
    """−Σ_i w_i·y_i·(1−ŷ_i)^γ·log ŷ_i with w_i = max_j n_j / n_i (eq. 12)."""
    _reject_extra("weighted_focal", kw)
    w = class_weights("max_over_count", _need(stats, "counts", "weighted_focal"))
    return CategoricalLoss(gamma=gamma, weights=w, label_smoothing=label_smoothing)


@LOSSES.register("class_weighted_ce", kind="multiclass", paper=JAMOLIDDIN, eq="1")
def class_weighted_ce(stats: _Stats = None, label_smoothing: float = 0.0, **kw: Any) -> CategoricalLoss:
    """−w_y·log ŷ_y with w_i = E(m) / m_i (jamoliddin_yoo2022 eq. 1)."""
    _reject_extra("class_weighted_ce", kw)
    w = class_weights("mean_over_count", _need(stats, "counts", "class_weighted_ce"))
    return CategoricalLoss(weights=w, label_smoothing=label_smoothing)


@LOSSES.register("ml_bce", kind="multilabel", paper=CHATZITZISI, eq="13")
def ml_bce(stats: _Stats = None, label_reduction: str = "sum", **kw: Any) -> MultiLabelLoss:
    """−Σ_i [y_i·log ŷ_i + (1−y_i)·log(1−ŷ_i)] (eq. 13; also the autoencoder loss, eq. 6)."""
    _reject_extra("ml_bce", kw)
    return MultiLabelLoss(label_reduction=label_reduction)


@LOSSES.register("ml_weighted_bce", kind="multilabel", paper=CHATZITZISI, eq="15, 17")
def ml_weighted_bce(stats: _Stats = None, label_reduction: str = "sum", **kw: Any) -> MultiLabelLoss:
    """−Σ_i w_i·[y_i·log ŷ_i + (1−y_i)·log(1−ŷ_i)], w_i = e^{p_i} (y=0) or e^{1−p_i} (y=1) (eqs. 15, 17)."""
    _reject_extra("ml_weighted_bce", kw)
    w = label_weights(_need(stats, "pos_rate", "ml_weighted_bce"))
    return MultiLabelLoss(weights=w, label_reduction=label_reduction)


@LOSSES.register("ml_focal", kind="multilabel", paper=CHATZITZISI, eq="14")
def ml_focal(
    stats: _Stats = None, gamma: float = 2.0, label_reduction: str = "sum", **kw: Any
) -> MultiLabelLoss:
    """−Σ_i [y_i·(1−ŷ_i)^γ·log ŷ_i + (1−y_i)·ŷ_i^γ·log(1−ŷ_i)] (eq. 14; also eq. 7)."""
    _reject_extra("ml_focal", kw)
    return MultiLabelLoss(gamma=gamma, label_reduction=label_reduction)


@LOSSES.register("ml_weighted_focal", kind="multilabel", paper=CHATZITZISI, eq="16, 17")
def ml_weighted_focal(
    stats: _Stats = None, gamma: float = 2.0, label_reduction: str = "sum", **kw: Any
) -> MultiLabelLoss:
    """Eq. 14 with each label's term multiplied by its eq. 17 weight (eq. 16)."""
    _reject_extra("ml_weighted_focal", kw)
    w = label_weights(_need(stats, "pos_rate", "ml_weighted_focal"))
    return MultiLabelLoss(gamma=gamma, weights=w, label_reduction=label_reduction)


@LOSSES.register("mse", kind="regression", paper=DEY, eq="MSE on sigmoid × max age")
def mse(stats: _Stats = None, **kw: Any) -> RegressionLoss:
    """(ŷ − y)² in years² (dey_aggarwal §training: MSE loss for age)."""
    _reject_extra("mse", kw)
    return RegressionLoss("mse")


@LOSSES.register("l1", kind="regression", paper="", eq="|ŷ − y|")
def l1(stats: _Stats = None, **kw: Any) -> RegressionLoss:
    """|ŷ − y| in years (optimises MAE directly)."""
    _reject_extra("l1", kw)
    return RegressionLoss("l1")


@LOSSES.register("smooth_l1", kind="regression", paper="", eq="Huber / Smooth-L1")
def smooth_l1(stats: _Stats = None, beta: float = 1.0, **kw: Any) -> RegressionLoss:
    """0.5·d²/β if |d| < β else |d| − 0.5·β, d = ŷ − y in years."""
    _reject_extra("smooth_l1", kw)
    if beta <= 0:
        raise AgeGenderError(f"smooth_l1 beta must be > 0 years, got {beta}", code="bad_config")
    return RegressionLoss("smooth_l1", beta=beta)


@LOSSES.register("dldl", kind="age_distribution", paper="Gao et al. 2018 (DLDL-v2)", eq="KL + λ·L1")
def dldl(stats: _Stats = None, sigma: float = 2.0, lambda_l1: float = 1.0, cuts: Sequence[float] = (),
         lambda_cut: float = 1.0, below_weight: float = 1.0, **kw: Any) -> DLDLLoss:
    """KL(N(y, σ²) over 0..100 ‖ softmax) + λ·|E[age] − y| (DLDL-v2), plus a cut-point term at ``cuts``."""
    _reject_extra("dldl", kw)
    return DLDLLoss(sigma=sigma, lambda_l1=lambda_l1, cuts=cuts, lambda_cut=lambda_cut, below_weight=below_weight)


@LOSSES.register("dex", kind="age_distribution", paper="Rothe et al. 2015 (DEX)", eq="CE on rounded age")
def dex(stats: _Stats = None, label_smoothing: float = 0.0, **kw: Any) -> CategoricalLoss:
    """−log softmax(logits)[round(y)] over ages 0..100 (DEX trains a 101-way classifier)."""
    _reject_extra("dex", kw)
    return CategoricalLoss(label_smoothing=label_smoothing, years_target=True)


@LOSSES.register("coral", kind="ordinal", paper="Cao et al. 2020 (CORAL)", eq="4")
def coral(stats: _Stats = None, **kw: Any) -> CoralLoss:
    """Σ_k BCE(σ(g_k), 1[y > k]) over the K−1 rank tasks (K = 101 ranks: ages 0..100)."""
    _reject_extra("coral", kw)
    return CoralLoss()


__all__ = [
    "CLASS_WEIGHT_KINDS",
    "BinaryLoss",
    "CategoricalLoss",
    "CoralLoss",
    "DLDLLoss",
    "MultiLabelLoss",
    "RegressionLoss",
    "binary_terms",
    "categorical_terms",
    "class_weights",
    "label_weights",
]
