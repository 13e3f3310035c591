"""Multi-task composition: one shared trunk, one head per task, masked per-task losses and a task weighting.

The default composition of every config. Rows whose label is missing for a task are removed from that
task's loss (missing = -1 for class labels, NaN for years and multi-hot entries), so datasets with
partial labels train together. Task weighting: fixed, kang2019 eq. 5 trainable p, q, or homoscedastic
uncertainty (``models/weighting.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.losses import interval_log_prob
from agegender.models.registry import COMPOSITIONS, HEADS, LOSSES, TRUNKS, WEIGHTINGS

#: head types whose target is a class index (long, -1 = missing)
_INDEX_KINDS = {"multiclass", "binary"}


def valid_mask(target: torch.Tensor) -> torch.Tensor:
    """Rows of ``target`` that carry a label for this task."""
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        return target >= 0
    if target.dim() > 1:
        return ~torch.isnan(target).all(dim=-1)
    return ~torch.isnan(target)


def build_trunk(cfg: Mapping[str, Any]) -> nn.Module:
    cfg = dict(cfg)
    name = cfg.pop("name")
    return TRUNKS.build(name, **cfg)


def build_head(name: str, cfg: Mapping[str, Any], in_features: int, dims: Mapping[str, int]) -> nn.Module:
    cfg = dict(cfg)
    kind = cfg.pop("type")
    task = cfg.pop("task", name)
    cfg.pop("loss", None)
    cfg.pop("loss_args", None)
    cfg.pop("scheme", None)
    if kind == "classification":
        cfg.setdefault("num_classes", _dim(dims, task))
    elif kind == "multilabel":
        cfg.setdefault("num_labels", _dim(dims, task))
    return HEADS.build(kind, task, in_features, **cfg)


def build_loss(cfg: Mapping[str, Any], head: nn.Module, stats: Mapping[str, Any] | None) -> nn.Module:
    name = cfg.get("loss") or _DEFAULT_LOSS[head.kind]
    meta = LOSSES.meta(name)
    if meta.get("kind") and meta["kind"] != head.kind:
        raise AgeGenderError(
            f"loss {name!r} is for {meta['kind']} outputs but head {head.task!r} is {head.kind}; "
            f"pick a {head.kind} loss (see `agegender models`)",
            code="bad_config",
        )
    task_stats = (stats or {}).get(head.task)
    return LOSSES.build(name, stats=task_stats, **dict(cfg.get("loss_args") or {}))


def _dim(dims: Mapping[str, int], task: str) -> int:
    if task not in dims:
        raise AgeGenderError(f"the dataset gives no size for task {task!r} (known: {sorted(dims)})", code="bad_config")
    return int(dims[task])


#: the training-time output holding the projected features of ``model.distill_embedding``
EMBEDDING_OUTPUT = "_embedding"

_DEFAULT_LOSS = {
    "multiclass": "ce",
    "binary": "bce",
    "multilabel": "ml_bce",
    "regression": "mse",
    "age_distribution": "dldl",
    "ordinal": "coral",
}


class MultiTaskNet(nn.Module):
    """Shared trunk + named heads. ``forward`` returns ``{head_name: raw output}``."""

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        losses: Mapping[str, nn.Module] | None = None,
        weighting: nn.Module | None = None,
        distill: Mapping[str, Any] | None = None,
        distill_embedding: Mapping[str, Any] | None = None,
        young_age: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))
        self.losses = nn.ModuleDict(dict(losses or {}))
        self.weighting = weighting
        self.distill = _distill_spec(distill, self.heads) if distill else None
        # Feature distillation (FitNets, Romero et al. 2015, §2.2: a regressor from the student's features to the
        # teacher's): a linear map of the trunk's features is trained towards a teacher embedding (cosine distance,
        # ``data.teacher`` task ``embedding``). It runs in training only: evaluation, prediction and ONNX export
        # see the heads alone.
        self.embed_spec = _embedding_spec(distill_embedding) if distill_embedding else None
        self.embed_proj = (nn.Linear(trunk.out_features, self.embed_spec["dim"])
                           if self.embed_spec is not None else None)
        self.young_spec = _young_spec(young_age, self.heads) if young_age else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        out = {name: head(f) for name, head in self.heads.items()}
        if self.embed_proj is not None and self.training:
            out[EMBEDDING_OUTPUT] = self.embed_proj(f)
        return out

    def compute_loss(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked per-task losses combined by the weighting; tasks with no label in the batch are skipped."""
        parts: dict[str, torch.Tensor] = {}
        for name, head in self.heads.items():
            if name not in self.losses or head.task not in targets:
                continue
            t = targets[head.task]
            m = valid_mask(t)
            if not bool(m.any()):
                continue
            out = outputs[name][m]
            tt = t[m]
            parts[name] = self.losses[name](out, tt)
        if not parts:
            # No head has a label in the batch; keep the graph connected so optimisers/DDP see every parameter.
            total = sum(o.sum() for o in outputs.values()) * 0.0
        else:
            total = self.weighting(parts) if self.weighting is not None else sum(parts.values())
        if self.distill is not None:
            term = self._distill_loss(outputs, targets)
            if term is not None:
                parts[f"distill_{self.distill['task']}"] = term
                total = total + self.distill["weight"] * term
        if self.embed_spec is not None:
            term = self._embedding_loss(outputs, targets)
            if term is not None:
                parts["distill_embedding"] = term
                total = total + self.embed_spec["weight"] * term
            elif EMBEDDING_OUTPUT in outputs:  # no teacher row in the batch: keep the projection in the graph (DDP)
                total = total + 0.0 * outputs[EMBEDDING_OUTPUT].sum()
        if self.young_spec is not None:
            term = self._young_loss(outputs, targets)
            if term is not None:
                parts["young_age"] = term
                total = total + self.young_spec["weight"] * term
        return total, parts

    def _young_loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                    ) -> torch.Tensor | None:
        """A 0/1 "young" flag as an interval label for the age distribution: the negative log of the probability
        the head puts on the ages the flag allows (``<= young_max`` when young, ``>= old_min`` when not), the
        likelihood of an interval-censored observation; rows without the flag (NaN) are skipped."""
        spec = self.young_spec
        assert spec is not None
        flag = targets.get("young")
        if flag is None:
            return None
        m = ~torch.isnan(flag)
        if not bool(m.any()):
            return None
        head = self.heads[spec["head"]]
        logits = outputs[spec["head"]][m].float()
        young = flag[m].unsqueeze(-1) > 0.5
        allowed = torch.where(young, head.ages <= spec["young_max"], head.ages >= spec["old_min"])
        return -interval_log_prob(logits, allowed).mean()

    def _embedding_loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                        ) -> torch.Tensor | None:
        """Mean cosine distance between the projected features and the teacher's embedding, over the rows the
        teacher covers (NaN rows are skipped); None outside training or without covered rows."""
        teacher = targets.get("embedding_teacher")
        student = outputs.get(EMBEDDING_OUTPUT)
        if teacher is None or student is None:
            return None
        if teacher.shape[-1] != student.shape[-1]:
            raise AgeGenderError(f"model.distill_embedding.dim is {student.shape[-1]} but the teacher's embeddings "
                                 f"have {teacher.shape[-1]} values; make them equal", code="bad_config")
        m = ~torch.isnan(teacher).any(dim=-1)
        if not bool(m.any()):
            return None
        return (1.0 - torch.nn.functional.cosine_similarity(student[m].float(), teacher[m].float(), dim=-1)).mean()

    def _distill_loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                      ) -> torch.Tensor | None:
        """Hinton et al. 2015 (§2): T^2 * cross-entropy between the teacher's probabilities and the student's
        softened ones, over the rows with a teacher label (NaN rows are skipped)."""
        spec = self.distill
        assert spec is not None
        soft = targets.get(f"{spec['task']}_teacher")
        if soft is None:
            return None
        m = ~torch.isnan(soft).any(dim=-1)
        if not bool(m.any()):
            return None
        t = spec["temperature"]
        logp = torch.log_softmax(outputs[spec["head"]][m].float() / t, dim=-1)
        return (t * t) * -(soft[m].float() * logp).sum(dim=-1).mean()

    @torch.no_grad()
    def decode(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return decode_heads(self.heads, outputs)


def decode_heads(heads: Mapping[str, nn.Module], outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every head's decoded outputs (probabilities, years, ...) from the raw outputs, merged into one dict."""
    out: dict[str, torch.Tensor] = {}
    for name, head in heads.items():
        out.update(head.decode(outputs[name]))
    return out


def _known_keys(cfg: Mapping[str, Any], section: str, allowed: Sequence[str]) -> dict[str, Any]:
    """``cfg`` as a dict, or a one-line config error naming the keys of ``model.<section>`` that it does not take."""
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise AgeGenderError(f"model.{section}: unknown key(s) {unknown}; it takes {', '.join(allowed)}",
                             code="bad_config")
    return cfg


def _distill_spec(cfg: Mapping[str, Any], heads: Mapping[str, nn.Module]) -> dict[str, Any]:
    cfg = _known_keys(cfg, "distill", ("task", "weight", "temperature"))
    task = str(cfg.get("task") or "")
    names = [n for n, h in heads.items() if getattr(h, "task", n) == task and getattr(h, "kind", "") == "multiclass"]
    if not names:
        raise AgeGenderError(f"model.distill.task {task!r} has no classification head to distil into",
                             code="bad_config")
    weight, temperature = float(cfg.get("weight", 1.0)), float(cfg.get("temperature", 1.0))
    if weight < 0 or temperature <= 0:
        raise AgeGenderError("model.distill: weight must be >= 0 and temperature > 0", code="bad_config")
    return {"task": task, "head": names[0], "weight": weight, "temperature": temperature}


def _embedding_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = _known_keys(cfg, "distill_embedding", ("dim", "weight"))
    try:
        dim, weight = int(cfg.get("dim", 0)), float(cfg.get("weight", 1.0))
    except (TypeError, ValueError):
        raise AgeGenderError("model.distill_embedding: dim must be an integer and weight a number",
                             code="bad_config") from None
    if dim < 1 or weight < 0:
        raise AgeGenderError("model.distill_embedding: dim (the teacher embedding's length) must be >= 1 and "
                             "weight >= 0", code="bad_config")
    return {"dim": dim, "weight": weight}


def _young_spec(cfg: Mapping[str, Any], heads: Mapping[str, nn.Module]) -> dict[str, Any]:
    cfg = _known_keys(cfg, "young_age", ("weight", "young_max", "old_min"))
    names = [n for n, h in heads.items() if getattr(h, "kind", "") == "age_distribution"]
    if not names:
        raise AgeGenderError("model.young_age needs an age head of type age_distribution (a distribution over "
                             "ages to put the flag's interval on)", code="bad_config")
    try:
        weight = float(cfg.get("weight", 1.0))
        young_max, old_min = float(cfg.get("young_max", 40)), float(cfg.get("old_min", 30))
    except (TypeError, ValueError):
        raise AgeGenderError("model.young_age: weight, young_max and old_min must be numbers", code="bad_config") from None
    if weight < 0 or not 0 < old_min <= young_max < 100:
        raise AgeGenderError("model.young_age: weight must be >= 0 and 0 < old_min <= young_max < 100 "
                             f"(got old_min {old_min:g}, young_max {young_max:g})", code="bad_config")
    return {"head": names[0], "weight": weight, "young_max": young_max, "old_min": old_min}


@COMPOSITIONS.register("multitask")
def build_multitask(
    cfg: Mapping[str, Any], dims: Mapping[str, int], stats: Mapping[str, Any] | None = None, with_losses: bool = True
) -> MultiTaskNet:
    trunk = build_trunk(cfg["trunk"])
    heads_cfg = cfg.get("heads") or {}
    if not heads_cfg:
        raise AgeGenderError("model.heads is empty: name at least one head (e.g. gender)", code="bad_config")
    heads = {n: build_head(n, h, trunk.out_features, dims) for n, h in heads_cfg.items()}
    losses = {n: build_loss(heads_cfg[n], h, stats) for n, h in heads.items()} if with_losses else {}
    wcfg = dict(cfg.get("weighting") or {"name": "fixed"})
    weighting = WEIGHTINGS.build(wcfg.pop("name"), list(heads), **wcfg) if with_losses else None
    distill = cfg.get("distill") if with_losses else None
    # the projection is built for packages too (with_losses=False), so that their weights load; it is unused there
    return MultiTaskNet(trunk, heads, losses, weighting, distill, cfg.get("distill_embedding"),
                        cfg.get("young_age") if with_losses else None)


def build_model(
    cfg: Mapping[str, Any], dims: Mapping[str, int], stats: Mapping[str, Any] | None = None, with_losses: bool = True
) -> nn.Module:
    """Build the composition named by ``cfg['composition']`` (default ``multitask``)."""
    return COMPOSITIONS.build(cfg.get("composition", "multitask"), cfg, dims, stats, with_losses)
