"""Cross-modal age estimation (aminian_noubir §4.2, Figs. 3–5): a frozen gender net's FC1 or FC2 embedding of the
same image is fed into the age net — Manual 1, Manual 2, or all four variants at once (E2E)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.multitask import MultiTaskNet, build_head, build_loss, build_trunk
from agegender.models.registry import COMPOSITIONS, WEIGHTINGS
from agegender.models.trunks._common import fc_block, gaussian_init_

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("manual1", "manual2", "e2e")
EMBEDDINGS: tuple[str, ...] = ("fc1", "fc2")
#: where the embedding joins the age net: the new FC layer (Manual 1) or the softmax layer (Manual 2)
PLACES: tuple[str, ...] = ("fc", "softmax")
#: the (embedding, place) pairs of each variant; E2E runs all four (§4.2, Fig. 5)
VARIANT_BRANCHES: dict[str, tuple[tuple[str, str], ...]] = {
    "manual1": (("", "fc"),),
    "manual2": (("", "softmax"),),
    "e2e": (("fc1", "fc"), ("fc2", "fc"), ("fc1", "softmax"), ("fc2", "softmax")),
}


def _check_embedder(trunk: nn.Module, role: str, name: str) -> None:
    if not all(hasattr(trunk, a) for a in ("embed", "features", "embed_from_features", "fcs")):
        raise AgeGenderError(
            f"cross_modal: the {role} trunk {name!r} has no named FC layers to embed with; use a paper "
            "network such as levi_hassner, kang_gender or kang_lenet",
            code="bad_config",
        )


class FrozenEmbedder(nn.Module):
    """A trained net's trunk, frozen: no parameter needs a gradient and it stays in eval mode (dropout off)."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenEmbedder:
        # Lightning calls model.train() every epoch; the frozen net must keep its dropout off.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.trunk.embed(x)


class CrossModalBranch(nn.Module):
    """One {embedding} × {place} variant (§4.2): the age net's last FC output and the frozen embedding give the
    input of the output layer. ``fcs`` is this branch's own copy of the age FC layers (E2E) or None (the trunk's).
    """

    def __init__(
        self,
        embedding: str,
        place: str,
        age_dim: int,
        emb_dim: int,
        width: int = 512,
        dropout: float = 0.5,
        fcs: nn.ModuleDict | None = None,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.place = place
        self.fcs = fcs
        # §4.2 "Layer 6": FC-512 + ReLU + dropout, on [age FC2, embedding] (Manual 1) or on age FC2 alone (Manual 2)
        self.fc3 = fc_block(age_dim + emb_dim if place == "fc" else age_dim, width, dropout)
        self.out_features = width if place == "fc" else width + emb_dim

    def own_age_embedding(self, conv: torch.Tensor) -> torch.Tensor:
        """This branch's age FC1/FC2 activation from the shared convolutional output (E2E, Fig. 5)."""
        assert self.fcs is not None
        h = conv.flatten(1)
        for layer in self.fcs.values():
            h = layer(h)
        return h

    def forward(self, age: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.place == "fc":  # Manual 1 (Fig. 3)
            return self.fc3(torch.cat([age, emb], dim=1))
        return torch.cat([self.fc3(age), emb], dim=1)  # Manual 2 (Fig. 4): the embedding enters the softmax layer

    def extra_repr(self) -> str:
        return f"embedding={self.embedding!r}, place={self.place!r}, own_fcs={self.fcs is not None}"


class CrossModalNet(MultiTaskNet):
    """Age (or gender) net fed with a frozen net's embedding; ``features`` concatenates the branch outputs and the
    heads, losses, weighting, ``compute_loss`` and ``decode`` are :class:`MultiTaskNet`'s."""

    def __init__(
        self,
        trunk: nn.Module,
        source: FrozenEmbedder,
        branches: list[CrossModalBranch],
        heads: Mapping[str, nn.Module],
        losses: Mapping[str, nn.Module] | None = None,
        weighting: nn.Module | None = None,
    ) -> None:
        super().__init__(trunk, heads, losses, weighting)
        self.source = source
        self.branches = nn.ModuleList(branches)

    @property
    def out_features(self) -> int:
        return sum(b.out_features for b in self.branches)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.trunk.features(x)  # shared by every branch (§4.2, E2E: "all convolutional layers remain")
        emb = self.source(x)
        shared: torch.Tensor | None = None  # the trunk's own FC output, computed once for the branches using it
        parts = []
        for b in self.branches:
            if b.fcs is None:
                if shared is None:
                    shared = list(self.trunk.embed_from_features(conv).values())[-1]
                age = shared
            else:
                age = b.own_age_embedding(conv)
            parts.append(b(age, emb[b.embedding]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def build_heads(
    cfg: Mapping[str, Any],
    in_features: int,
    dims: Mapping[str, int],
    stats: Mapping[str, Any] | None,
    with_losses: bool,
    in_features_of: Mapping[str, int] | None = None,
) -> tuple[dict[str, nn.Module], dict[str, nn.Module], nn.Module | None]:
    """``model.heads`` on ``in_features``-wide features (``in_features_of[name]`` for the heads it names), their
    losses and the task weighting: what :func:`build_multitask` does after its trunk, for compositions whose
    heads see other features than the trunk's."""
    heads_cfg = dict(cfg.get("heads") or {})
    if not heads_cfg:
        raise AgeGenderError("model.heads is empty: name at least one head (e.g. age_group)", code="bad_config")
    widths = dict(in_features_of or {})
    heads = {n: build_head(n, h, widths.get(n, in_features), dims) for n, h in heads_cfg.items()}
    losses = {n: build_loss(heads_cfg[n], h, stats) for n, h in heads.items()} if with_losses else {}
    wcfg = dict(cfg.get("weighting") or {"name": "fixed"})
    weighting = WEIGHTINGS.build(wcfg.pop("name"), list(heads), **wcfg) if with_losses else None
    return heads, losses, weighting


def _pop_one(args: dict[str, Any], *names: str) -> Any:
    found = [n for n in names if args.get(n) is not None]
    if len(found) > 1:
        raise AgeGenderError(f"cross_modal: give only one of {' / '.join(found)}", code="bad_config")
    values = [args.pop(n, None) for n in names]
    return next((v for v in values if v is not None), None)


def load_source_trunk(path: str | Path, trunk_cfg: Mapping[str, Any]) -> nn.Module:
    """The trunk of a trained model file, rebuilt from ``trunk_cfg`` (pretrained off) with the file's weights."""
    from agegender.models.package import load_bundle

    p = Path(path)
    if not p.is_file():
        raise AgeGenderError(
            f"cross_modal: the embedding network {p} does not exist; train it first (aminian_noubir §4.2: the "
            "gender net comes first, e.g. `agegender train configs/aminian_noubir/table2_gender_net.yaml`) "
            "and point model.composition_args.gender_checkpoint at its checkpoint",
            code="missing_file",
        )
    bundle = load_bundle(p)
    trunk = build_trunk({**dict(trunk_cfg), "pretrained": False})
    try:
        trunk.load_state_dict(bundle.model.trunk.state_dict())
    except RuntimeError as e:
        raise AgeGenderError(
            f"cross_modal: the trunk of {p} ({bundle.config['model']['trunk'].get('name')}) does not match "
            f"{dict(trunk_cfg)}; set model.composition_args.source_trunk to its trunk config ({e})".splitlines()[0],
            code="bad_config",
        ) from None
    return trunk


@COMPOSITIONS.register("cross_modal", paper="aminian_noubir", section="4.2")
def build_cross_modal(
    cfg: Mapping[str, Any], dims: Mapping[str, int], stats: Mapping[str, Any] | None = None, with_losses: bool = True
) -> CrossModalNet:
    """Build the cross-modal net. With ``with_losses`` (training) the embedding net's file is read; without
    (loading a trained model) its weights come from the state dict loaded next, so the file is not needed.

    Registered as composition ``cross_modal``. ``model.composition_args``:

    - ``gender_checkpoint``: the trained gender net (``.ckpt`` or package) whose embedding is fed in. The same
      machinery trains a gender net on an *age* net's embedding (iterative refinement, §4.5): give that
      net as ``source_checkpoint`` instead (exactly one of the two).
    - ``variant``: ``manual1`` (Fig. 3: the embedding joins the age net's FC2 as input of a new FC-512 layer, §4.2
      "Layer 6", before the softmax), ``manual2`` (Fig. 4: the new FC-512 layer sees only FC2; the embedding joins
      its output as input of the softmax layer) or ``e2e`` (Fig. 5: all four {FC1, FC2} × {FC layer, softmax
      layer} variants in parallel on shared convolutions, combined by one learned final layer).
    - ``embedding``: ``fc1`` or ``fc2`` (default ``fc2``) — which FC layer of the gender net (manual variants).
    - ``init_from_gender`` (alias ``init_from_source``, default true): start the age net's convolutions and FC
      layers from the gender net's weights (§4.3).
    - ``width`` (512) and ``dropout`` (0.5) of the new FC layer; ``init_std`` (0.01, §4.3's Gaussian; ``null``
      keeps PyTorch's init) for the new layers; ``e2e_share_fc`` (false), ``source_trunk`` (default: ``model.trunk``);
      ``refine``: options of :mod:`agegender.workflows.refine`, ignored when building the network.

    Where the paper is silent we chose:

    - The frozen net is used through its trunk's ``embed`` (``levi_hassner``, ``kang_gender``, ``kang_lenet``), in
      eval mode (dropout off) and under ``no_grad``; its weights travel in the age model's state dict, so a trained
      age model loads without the gender checkpoint file.
    - E2E: Fig. 5 splits the convolutional output "into four copies", so each branch has its own copy of the age
      FC1/FC2 (initialised like the trunk's); the text's "the number of parameters does not grow significantly"
      suggests sharing them, which ``e2e_share_fc: true`` does. "The last FC layer sets proper weights for each
      variation": the config's head is one layer over the concatenated outputs of the four branches — the same
      as four learned softmax layers whose logits are added.
    """
    args = dict(cfg.get("composition_args") or {})
    source_path = _pop_one(args, "gender_checkpoint", "source_checkpoint")
    init_from_source = _pop_one(args, "init_from_gender", "init_from_source")
    init_from_source = True if init_from_source is None else bool(init_from_source)
    variant = str(args.pop("variant", "manual2"))
    embedding = str(args.pop("embedding", "fc2"))
    width = int(args.pop("width", 512))
    dropout = float(args.pop("dropout", 0.5))
    init_std = args.pop("init_std", 0.01)
    share_fc = bool(args.pop("e2e_share_fc", False))
    source_trunk_cfg = dict(args.pop("source_trunk", None) or cfg["trunk"])
    if args.pop("refine", None) is not None and with_losses:
        log.info("cross_modal: composition_args.refine is run by `python -m agegender.workflows.refine CONFIG`; "
                 "this run trains one cross-modal net")
    if args:
        raise AgeGenderError(
            f"cross_modal: unknown composition_args {sorted(args)}; valid: gender_checkpoint (or "
            "source_checkpoint), variant, embedding, init_from_gender (or init_from_source), width, dropout, "
            "init_std, e2e_share_fc, source_trunk, refine",
            code="bad_config",
        )
    if variant not in VARIANTS:
        raise AgeGenderError(f"cross_modal: variant {variant!r} must be one of {', '.join(VARIANTS)}",
                             code="bad_config")
    if embedding not in EMBEDDINGS:
        raise AgeGenderError(f"cross_modal: embedding {embedding!r} must be fc1 or fc2", code="bad_config")
    if source_path is None and with_losses:
        raise AgeGenderError(
            "cross_modal needs model.composition_args.gender_checkpoint: the trained gender net whose embedding "
            "feeds the age net (aminian_noubir §4.2)",
            code="bad_config",
        )

    trunk = build_trunk(cfg["trunk"])
    _check_embedder(trunk, "age", cfg["trunk"]["name"])
    if with_losses:
        source_trunk = load_source_trunk(source_path, source_trunk_cfg)
        if init_from_source:  # §4.3: the age net starts from the gender net's weights
            try:
                trunk.load_state_dict(source_trunk.state_dict())
            except RuntimeError:
                raise AgeGenderError(
                    "cross_modal: init_from_gender needs the age trunk to be the gender trunk's architecture; "
                    f"got {dict(cfg['trunk'])} vs {source_trunk_cfg}",
                    code="bad_config",
                ) from None
    else:
        source_trunk = build_trunk({**source_trunk_cfg, "pretrained": False})
    _check_embedder(source_trunk, "embedding", source_trunk_cfg["name"])
    source = FrozenEmbedder(source_trunk)

    emb_dims = {name: layer[0].out_features for name, layer in source_trunk.fcs.items()}
    for name in EMBEDDINGS:
        if name not in emb_dims:
            raise AgeGenderError(
                f"cross_modal: the embedding trunk has FC layers {sorted(emb_dims)}, not fc1 and fc2", code="bad_config"
            )
    branches = []
    for i, (emb, place) in enumerate(VARIANT_BRANCHES[variant]):
        # E2E (Fig. 5): each branch after the first gets its own copy of the (initialised) age FC layers
        own = copy.deepcopy(trunk.fcs) if (i > 0 and not share_fc) else None
        branches.append(CrossModalBranch(emb or embedding, place, trunk.out_features, emb_dims[emb or embedding],
                                         width, dropout, own))
    heads, losses, weighting = build_heads(cfg, sum(b.out_features for b in branches), dims, stats, with_losses)
    if init_std is not None:
        for new in (*(b.fc3 for b in branches), *heads.values()):
            gaussian_init_(new, float(init_std))
    return CrossModalNet(trunk, source, branches, heads, losses, weighting)
