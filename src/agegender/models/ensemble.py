"""An ensemble of trained multi-task networks as one model (``composition: ensemble``): every member sees the same
input, and each head's output is the mean of the members' temperature-scaled logits (for a softmax head the
normalised geometric mean of their calibrated probabilities). The ensemble has heads of its own for decoding, whose
temperatures packaging fits on the validation split as for any model; their weights are not used.

One package and one ONNX graph hold all the members, so an ensemble loads and runs like any other model. Build one
from packaged members with ``python tools/ensemble_package.py A.safetensors B.safetensors -o E.safetensors`` and
calibrate it with ``agegender package E.safetensors -o FINAL.safetensors``.

The ensemble takes the first member's input. A member normalised otherwise or of a larger input size (another
trunk, e.g. the ``dlib_resnet`` model at 150 px beside an EfficientNet at 96 px) gets that input re-normalised to
its own mean and std and enlarged to its size inside the network (:class:`agegender.models.input_adapter.
InputAdapter`, as a distillation teacher does); a member of a smaller input size would need a shrinking resize that
ONNX cannot express, so the member with the smallest input goes first.

Config: ``model: {composition: ensemble, composition_args: {members: [MODEL_SECTION, ...], adapters: [...]},
heads: ..., trunk: ...}`` where each member is a ``model`` section of its own (its trunk and heads), ``adapters``
(optional) gives each member's input adapter (``InputAdapter.config()``, null for none) and ``heads``/``trunk``
repeat the first member's (what the ensemble answers and how its card names it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from agegender.data.fingerprint import merge_fingerprints
from agegender.errors import AgeGenderError
from agegender.models.input_adapter import InputAdapter, input_size
from agegender.models.multitask import decode_heads
from agegender.models.registry import COMPOSITIONS

if TYPE_CHECKING:
    from agegender.models.package import ModelBundle


class EnsembleNet(nn.Module):
    """Members' outputs averaged head by head (after each member head's own temperature)."""

    def __init__(self, members: list[nn.Module], heads: Mapping[str, nn.Module],
                 adapters: Sequence[InputAdapter | None] | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise AgeGenderError("an ensemble needs at least two members", code="bad_config")
        names = set(heads)
        for i, m in enumerate(members):
            if set(getattr(m, "heads", {})) != names:
                raise AgeGenderError(f"ensemble member {i} has heads {sorted(getattr(m, 'heads', {}))}, the first "
                                     f"{sorted(names)}: members must answer the same tasks", code="bad_config")
        adapters = list(adapters or [None] * len(members))
        if len(adapters) != len(members):
            raise AgeGenderError(f"an ensemble of {len(members)} members needs as many input adapters, not "
                                 f"{len(adapters)}", code="bad_config")
        self.members = nn.ModuleList(members)
        self.heads = nn.ModuleDict(dict(heads))
        #: each member's input made from the ensemble's (identity where the member takes the ensemble's input)
        self.adapters = nn.ModuleList([a if a is not None else nn.Identity() for a in adapters])

    def forward(self, x: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [m(a(x)) for m, a in zip(self.members, self.adapters)]
        return {name: torch.stack([o[name] / m.heads[name].temperature for o, m in zip(outs, self.members)]).mean(0)
                for name in self.heads}

    @torch.no_grad()
    def decode(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return decode_heads(self.heads, outputs)


@COMPOSITIONS.register("ensemble")
def build_ensemble(cfg: Mapping[str, Any], dims: Mapping[str, int], stats: Mapping[str, Any] | None = None,
                   with_losses: bool = True) -> EnsembleNet:
    if with_losses:
        raise AgeGenderError("an ensemble is assembled from trained models (tools/ensemble_package.py), not trained",
                             code="bad_config")
    from agegender.models.multitask import build_head, build_model

    members_cfg = (cfg.get("composition_args") or {}).get("members")
    if not isinstance(members_cfg, list) or len(members_cfg) < 2 or not all(isinstance(m, Mapping) for m in members_cfg):
        raise AgeGenderError("model.composition_args.members must list two or more model sections", code="bad_config")
    if any(m.get("composition", "multitask") == "ensemble" for m in members_cfg):
        raise AgeGenderError("an ensemble member cannot itself be an ensemble", code="bad_config")
    members = [build_model(m, dims, stats=None, with_losses=False) for m in members_cfg]
    adapters_cfg = (cfg.get("composition_args") or {}).get("adapters") or [None] * len(members)
    if not isinstance(adapters_cfg, list) or not all(a is None or isinstance(a, Mapping) for a in adapters_cfg):
        raise AgeGenderError("model.composition_args.adapters must list a mapping or null per member", code="bad_config")
    try:
        adapters = [None if a is None else InputAdapter(**a) for a in adapters_cfg]
    except TypeError as e:
        raise AgeGenderError(f"model.composition_args.adapters: {e}", code="bad_config") from None
    # decoding heads: the ensemble's own section (where packaging stores the fitted age estimate and under-age
    # guard), else the first member's kinds and sizes; their layers (1 input feature) are never run
    heads = {n: build_head(n, h, 1, dims) for n, h in (cfg.get("heads") or members_cfg[0].get("heads") or {}).items()}
    return EnsembleNet(members, heads, adapters)


def assemble_packages(paths: Sequence[str | Path]) -> ModelBundle:
    """One ensemble bundle (uncalibrated heads) from packages of the same tasks, labels and preprocessing."""
    from agegender.models.multitask import build_head
    from agegender.models.package import ModelBundle, load_bundle

    bundles = [load_bundle(p) for p in paths]
    first = bundles[0]
    adapters: list[InputAdapter | None] = [None]
    for p, b in zip(paths[1:], bundles[1:]):
        for what in ("labels", "dims"):
            if getattr(b, what) != getattr(first, what):
                raise AgeGenderError(f"{p}: its {what} differ from {paths[0]}'s; ensemble members must give the same "
                                     "outputs", code="bad_model")
        if _framing(b.preprocess) != _framing(first.preprocess):
            raise AgeGenderError(f"{p}: its crop framing {_framing(b.preprocess)} differs from {paths[0]}'s "
                                 f"{_framing(first.preprocess)}; ensemble members must see the same crop",
                                 code="bad_model")
        small, big = input_size(b.preprocess), input_size(first.preprocess)
        if small and big and (small[0] < big[0] or small[1] < big[1]):
            raise AgeGenderError(f"{p} takes {small[0]}x{small[1]} input, smaller than {paths[0]}'s {big[0]}x{big[1]}: "
                                 "name the member with the smallest input first", code="bad_model")
        adapters.append(InputAdapter.between(first.preprocess, b.preprocess, str(p),
                                             names=(f"{paths[0]}", "this member")))
    members_cfg = [copy.deepcopy(b.config["model"]) for b in bundles]
    for m in members_cfg:
        m.pop("init_from", None)
        m.pop("distill", None)
    heads = {n: build_head(n, h, 1, first.dims) for n, h in (members_cfg[0].get("heads") or {}).items()}
    model = EnsembleNet([b.model for b in bundles], heads, adapters).eval()
    config = copy.deepcopy(first.config)
    args: dict[str, Any] = {"members": members_cfg}
    if any(a is not None for a in adapters):
        args["adapters"] = [None if a is None else a.config() for a in adapters]
    config["model"] = {"composition": "ensemble", "composition_args": args,
                       "trunk": members_cfg[0]["trunk"], "heads": copy.deepcopy(members_cfg[0]["heads"])}
    config["name"] = "ensemble of " + ", ".join(str(b.config.get("name")) for b in bundles)
    config["description"] = f"An ensemble of {len(bundles)} models: " + "; ".join(
        str(b.meta.get("description") or b.config.get("description") or b.name) for b in bundles)
    meta = {k: v for k, v in first.meta.items() if k != "calibration"}
    meta["description"] = config["description"]
    meta["members"] = [{"source": str(p), "name": b.meta.get("name"), "config": b.config.get("name")}
                       for p, b in zip(paths, bundles)]
    bundle = ModelBundle(model, config, dict(first.dims), dict(first.preprocess), dict(first.labels), meta)
    bundle.fingerprint = merge_fingerprints(*(b.fingerprint for b in bundles))
    return bundle


def average_packages(paths: Sequence[str | Path]) -> ModelBundle:
    """One network whose weights are the mean of the members' (a "model soup", Wortsman et al. 2022, eq. 1: the
    uniform soup): members of one architecture fine-tuned from the same start, so their weights lie in one basin.
    The result costs one network, not several; calibrate it like any package afterwards (its temperatures, age
    estimate and guard are the first member's until then). The result is the first member's network: each of its
    weights is averaged (a weight another member lacks is an error; weights only the others have, such as a
    training-only projection, are left out), and its integer buffers (batch-norm step counts) are kept."""
    from agegender.models.package import ModelBundle, load_bundle

    bundles = [load_bundle(p) for p in paths]
    first = bundles[0]
    states = [b.model.state_dict() for b in bundles]
    for p, b, sd in zip(paths[1:], bundles[1:], states[1:]):
        if b.config["model"].get("trunk") != first.config["model"].get("trunk") or b.dims != first.dims:
            raise AgeGenderError(f"{p}: its network differs from {paths[0]}'s; only models of one architecture can "
                                 "be averaged (tools/ensemble_package.py combines different ones)", code="bad_model")
        odd = sorted(k for k in states[0] if k not in sd or sd[k].shape != states[0][k].shape)
        if odd:
            raise AgeGenderError(f"{p}: its weights do not match {paths[0]}'s ({odd[0]} and {len(odd) - 1} more)",
                                 code="bad_model")
    mean = {k: (torch.stack([sd[k].float() for sd in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
            for k, v in states[0].items()}
    first.model.load_state_dict(mean)
    meta = {k: v for k, v in first.meta.items() if k != "calibration"}
    meta["averaged"] = [{"source": str(p), "name": b.meta.get("name")} for p, b in zip(paths, bundles)]
    bundle = ModelBundle(first.model.eval(), copy.deepcopy(first.config), dict(first.dims), dict(first.preprocess),
                         dict(first.labels), meta)
    bundle.fingerprint = merge_fingerprints(*(b.fingerprint for b in bundles))
    return bundle


def _framing(preprocess: Mapping[str, Any]) -> tuple[Any, Any]:
    """What a member's crop shows: the margin around the detected box and the resize-then-centre-crop ratio."""
    size, resize = input_size(preprocess), preprocess.get("resize")
    ratio = None
    if size and resize:
        r = resize if isinstance(resize, (list, tuple)) else (resize, resize)
        ratio = round(float(r[0]) / size[0], 4), round(float(r[1]) / size[1], 4)
    return preprocess.get("crop_margin", 0.0), ratio
