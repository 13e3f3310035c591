"""Distillation from a trained model (``model.distill_model`` in a config): a frozen teacher network, e.g. the
bundled ``default``, sees every training batch and the student's heads are trained towards its softened outputs
(Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015, §2: the cross-entropy between the
teacher's and the student's softmax at temperature T, scaled by T² so its gradients keep their size).

Unlike ``model.distill`` (a teacher's probabilities read from a CSV file for the clean images), the teacher here
sees the same augmented batch as the student, for every head the two share (age distribution, gender,
ethnicity, ...), which is what compressing a model into a smaller or shallower one needs. The teacher is not part
of the student's weights or checkpoints. With ``flip: true`` the teacher's logits are the mean of its logits on the
batch and on its mirror image (the flip TTA a packaged model can run at inference), a slightly stronger teacher for
one more forward pass of it per batch. A teacher normalised otherwise than the student (another trunk's mean and std,
e.g. the ``dlib_resnet`` model distilled into an EfficientNet) gets the batch re-normalised to its own, and a
teacher of another input size gets it resized.

    model:
      distill_model: {from: default, weight: 1.0, temperature: 2.0}   # heads: [age, gender] to choose; flip: true

``mix: ALPHA`` makes the teacher's term a matter of function matching (Beyer et al., "Knowledge distillation: a good
teacher is patient and consistent", CVPR 2022, §3): it is computed on a mixup of the batch (Zhang et al., ICLR
2018: each image blended with another of the batch, λ ~ Beta(ALPHA, ALPHA) per image), which both networks see,
instead of on the batch itself, so the student learns the teacher's function between the training images too. The
labels' losses stay on the unmixed batch; the student runs once more per step on the mixed one, and teachers that
share the option share one mixed batch.

A list of such entries gives each head its own teacher, e.g. ages and ethnicity from ``default`` and gender from a
model that reads it better; the second teacher's terms are logged as ``distill_model2_<head>``, and so on.

    model:
      distill_model:
        - {from: default, heads: [age, ethnicity], weight: 2.0, temperature: 2.0}
        - {from: runs/gender_teacher/model.safetensors, heads: [gender], weight: 2.0, temperature: 2.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.input_adapter import InputAdapter

_KEYS = {"from", "weight", "temperature", "heads", "flip", "mix"}
_SHAPE = "model.distill_model must be a mapping ({from: ..., weight: ...}) or a list of them"


class ModelTeacher:
    """A frozen model whose raw head outputs (logits) the student's same-named heads learn to match."""

    def __init__(self, model: nn.Module, heads: list[str], weight: float, temperature: float,
                 adapter: InputAdapter | None = None, flip: bool = False, name: str = "distill_model",
                 mix: float | None = None) -> None:
        self.name = name
        self.model = model.float().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.heads = heads
        self.weight = weight
        self.temperature = temperature
        self.flip = flip
        #: Beta(mix, mix) mixup of the batch for this teacher's term (None: the batch as it is)
        self.mix = mix
        #: the student's batch resized and re-normalised to the teacher's input (None when the two take the same)
        self.adapter = adapter

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.eval()
        if next(self.model.parameters()).device != x.device:
            self.model.to(x.device)
        x = self.adapter(x) if self.adapter is not None else x.float()
        out = self.model(x)
        if not self.flip:
            return {h: out[h] for h in self.heads}
        mirrored = self.model(x.flip(-1))  # width is the last axis of NCHW
        return {h: (out[h] + mirrored[h]) / 2 for h in self.heads}

    def loss(self, student: Mapping[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``weight`` × the mean over the shared heads of T² · KL(softmax(teacher / T) ‖ softmax(student / T)),
        and each head's term."""
        t = self.temperature
        teacher = self.outputs(x)
        parts = {}
        for h in self.heads:
            logq = torch.log_softmax(teacher[h].float() / t, dim=-1)
            logp = torch.log_softmax(student[h].float() / t, dim=-1)
            # KL(teacher || student): the cross-entropy less the teacher's own entropy (same gradient, 0 at a match)
            parts[f"{self.name}_{h}"] = (t * t) * nn.functional.kl_div(logp, logq, reduction="batchmean",
                                                                        log_target=True)
        total = self.weight * torch.stack(list(parts.values())).mean()
        return total, parts


def build_teachers(cfg: Mapping[str, Any] | list | None, student: nn.Module, preprocess: Mapping[str, Any]
                   ) -> tuple[ModelTeacher, ...]:
    """The teachers of ``model.distill_model``: one entry or a list of them (empty when unset)."""
    entries = [cfg] if isinstance(cfg, Mapping) else cfg or []
    if not isinstance(entries, (list, tuple)):
        raise AgeGenderError(_SHAPE, code="bad_config")
    teachers = (build_teacher(c, student, preprocess, name="distill_model" if i == 0 else f"distill_model{i + 1}")
                for i, c in enumerate(entries))
    return tuple(t for t in teachers if t is not None)


def build_teacher(cfg: Mapping[str, Any] | None, student: nn.Module, preprocess: Mapping[str, Any],
                  name: str = "distill_model") -> ModelTeacher | None:
    """The teacher of one ``model.distill_model`` entry (None when unset); a config error names what is wrong."""
    if not cfg:
        return None
    if not isinstance(cfg, Mapping):
        raise AgeGenderError(_SHAPE, code="bad_config")
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - _KEYS)
    if unknown:
        raise AgeGenderError(f"model.distill_model: unknown key(s) {unknown}; it takes {', '.join(sorted(_KEYS))}",
                             code="bad_config")
    if not cfg.get("from"):
        raise AgeGenderError("model.distill_model needs from: a bundled model name, a package or a checkpoint",
                             code="bad_config")
    try:
        weight, temperature = float(cfg.get("weight", 1.0)), float(cfg.get("temperature", 1.0))
    except (TypeError, ValueError):
        raise AgeGenderError("model.distill_model: weight and temperature must be numbers", code="bad_config") from None
    if weight < 0 or temperature <= 0:
        raise AgeGenderError("model.distill_model: weight must be >= 0 and temperature > 0", code="bad_config")
    flip = cfg.get("flip", False)
    if not isinstance(flip, bool):
        raise AgeGenderError(f"model.distill_model: flip must be true or false, not {flip!r}", code="bad_config")
    mix = cfg.get("mix")
    if mix is not None and (isinstance(mix, bool) or not isinstance(mix, (int, float)) or not mix > 0):
        raise AgeGenderError(f"model.distill_model: mix is mixup's Beta parameter, a number > 0 (e.g. 1.0), "
                             f"not {mix!r}", code="bad_config")
    from agegender.bundled import resolve_model_path
    from agegender.models.package import load_bundle

    bundle = load_bundle(resolve_model_path(str(cfg["from"])))
    tpre, spre = bundle.preprocess or {}, preprocess or {}
    theads = getattr(bundle.model, "heads", {})
    shared = [h for h in getattr(student, "heads", {}) if h in theads
              and _width(student.heads[h]) is not None and _width(student.heads[h]) == _width(theads[h])]
    heads = [str(h) for h in cfg.get("heads") or shared]
    bad = [h for h in heads if h not in shared]
    if bad or not heads:
        raise AgeGenderError(f"model.distill_model: head(s) {bad or heads} are not in both models with the same "
                             f"outputs; shared: {shared}", code="bad_config")
    adapter = InputAdapter.between(spre, tpre, "model.distill_model", names=("the student", "the teacher"))
    return ModelTeacher(bundle.model, heads, weight, temperature, adapter, flip=flip, name=name,
                        mix=float(mix) if mix is not None else None)


def mix_batch(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mixup of a batch (Zhang et al., ICLR 2018, eq. 1): image i blended with image perm(i), λ ~ Beta(alpha, alpha)
    per image. The blend is linear, so mixing normalised tensors equals mixing the pixels and normalising."""
    n = x.shape[0]
    lam = torch.distributions.Beta(float(alpha), float(alpha)).sample((n,))
    lam = lam.to(x.device, x.dtype).view(n, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x[torch.randperm(n).to(x.device)]


#: head kinds whose outputs are softmax logits (the ones a temperature-softened cross-entropy fits)
SOFTMAX_KINDS = ("multiclass", "age_distribution")


def _width(head: nn.Module) -> tuple[str, int] | None:
    """(kind, outputs) of a softmax head (its last linear layer's width); None for any other head."""
    kind = getattr(head, "kind", "")
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return (kind, int(linears[-1].out_features)) if kind in SOFTMAX_KINDS and linears else None
