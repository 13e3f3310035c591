"""Task weightings that combine per-task losses into one training loss, registered in ``WEIGHTINGS``.

``fixed`` constants, kang2019 eq. 5's trainable p, q (as written: unconstrained, so gradient descent
can drive them to zero and below) and Kendall et al. 2018's homoscedastic-uncertainty weighting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from agegender.errors import AgeGenderError
from agegender.models.registry import WEIGHTINGS


class TaskWeighting(nn.Module):
    """Base: ``forward(losses)`` sums the weighted losses of the tasks present in ``losses``."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks:
            raise AgeGenderError("a task weighting needs at least one task", code="bad_config")
        self.tasks = list(tasks)

    def _check(self, losses: Mapping[str, Tensor]) -> list[str]:
        unknown = sorted(set(losses) - set(self.tasks))
        if unknown:
            raise AgeGenderError(
                f"losses for task(s) {unknown} but the weighting was built for {self.tasks}",
                code="bad_config",
            )
        return [t for t in self.tasks if t in losses]

    def term(self, task: str, loss: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        present = self._check(losses)
        if not present:
            device = next((p.device for p in self.parameters()), None)
            return torch.zeros((), device=device)
        return torch.stack([self.term(t, losses[t]) for t in present]).sum()

    def current_weights(self) -> dict[str, float]:
        """The multiplier of each task's loss right now (for logging)."""
        raise NotImplementedError


def _check_task_dict(
    name: str, values: Mapping[str, float] | None, tasks: Sequence[str], default: float = 1.0
) -> dict[str, float]:
    """One float per task from a config dict, defaulting the tasks it leaves out."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(tasks))
    if unknown:
        raise AgeGenderError(
            f"weighting {name!r} got values for task(s) {unknown}, which are not heads of this model {list(tasks)}",
            code="bad_config",
        )
    return {t: float(values.get(t, default)) for t in tasks}


def _reject_extra(name: str, extra: Mapping[str, object]) -> None:
    if extra:
        raise AgeGenderError(
            f"weighting {name!r} does not take option(s) {sorted(extra)}; check model.weighting in the config",
            code="bad_config",
        )


class FixedWeighting(TaskWeighting):
    """L = Σ_t w_t·L_t with constant w_t (default 1: the plain sum, e.g. chatzitzisi2020 eq. 8)."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        self.weights = _check_task_dict("fixed", weights, tasks)

    def term(self, task: str, loss: Tensor) -> Tensor:
        return self.weights[task] * loss

    def current_weights(self) -> dict[str, float]:
        return dict(self.weights)


class KangTrainableWeighting(TaskWeighting):
    """kang2019 eq. 5, Loss = p·loss_age + q·loss_gender, generalised to L = Σ_t p_t·L_t.

    Implemented as written: each p_t is a free parameter trained by back-propagation with the network.
    Since ∂L/∂p_t = L_t ≥ 0, gradient descent lowers every p_t at every step, through zero and on to
    −∞ (the loss becomes unbounded below), so this weighting is kept for reproducing the paper only.
    """

    def __init__(self, tasks: Sequence[str], init: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        start = _check_task_dict("kang_trainable", init, tasks)
        self.p = nn.ParameterDict({t: nn.Parameter(torch.tensor(v)) for t, v in start.items()})

    def term(self, task: str, loss: Tensor) -> Tensor:
        return self.p[task] * loss

    def current_weights(self) -> dict[str, float]:
        return {t: float(self.p[t].detach()) for t in self.tasks}


class UncertaintyWeighting(TaskWeighting):
    """Kendall, Gal & Cipolla 2018 (homoscedastic uncertainty): L = Σ_t exp(−s_t)·L_t + s_t, s_t = log σ_t².

    The multiplier exp(−s_t) is always positive, and for a fixed L_t > 0 the objective is minimised at
    s_t = log L_t, i.e. weight 1 / L_t, so it cannot collapse the way the unconstrained eq. 5 does.
    """

    def __init__(self, tasks: Sequence[str], init_log_var: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        start = _check_task_dict("uncertainty", init_log_var, tasks, default=0.0)
        self.log_var = nn.ParameterDict({t: nn.Parameter(torch.tensor(v)) for t, v in start.items()})

    def term(self, task: str, loss: Tensor) -> Tensor:
        s = self.log_var[task]
        return torch.exp(-s) * loss + s

    def current_weights(self) -> dict[str, float]:
        return {t: float(torch.exp(-self.log_var[t].detach())) for t in self.tasks}


@WEIGHTINGS.register("fixed", paper="chatzitzisi2020", eq="8 (plain sum)")
def fixed(tasks: list[str], weights: Mapping[str, float] | None = None, **kw: object) -> FixedWeighting:
    """Constant weights per task, e.g. ``{"age": 1.0, "gender": 10.0}``; missing tasks get 1."""
    _reject_extra("fixed", kw)
    return FixedWeighting(tasks, weights)


@WEIGHTINGS.register("kang_trainable", paper="kang2019", eq="5")
def kang_trainable(
    tasks: list[str], init: Mapping[str, float] | None = None, **kw: object
) -> KangTrainableWeighting:
    """Trainable, unconstrained p_t per task starting at ``init`` (default 1 each)."""
    _reject_extra("kang_trainable", kw)
    return KangTrainableWeighting(tasks, init)


@WEIGHTINGS.register("uncertainty", paper="Kendall et al. 2018", eq="exp(−s)·L + s")
def uncertainty(
    tasks: list[str], init_log_var: Mapping[str, float] | None = None, **kw: object
) -> UncertaintyWeighting:
    """Learnable s_t = log σ_t² per task starting at ``init_log_var`` (default 0: weight 1)."""
    _reject_extra("uncertainty", kw)
    return UncertaintyWeighting(tasks, init_log_var)
