"""ResNet+AE (chatzitzisi2020 §2.1, Fig. 1, eqs. 6–8): a one-hidden-layer autoencoder over the K appearance
attributes whose bottleneck is concatenated with the trunk's features (dropout 0.1) before the task heads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from agegender.errors import AgeGenderError
from agegender.models.cross_modal import build_heads
from agegender.models.multitask import MultiTaskNet, build_trunk, valid_mask
from agegender.models.registry import COMPOSITIONS, LOSSES

VARIANTS: tuple[str, ...] = ("annotated", "predicted")
#: key of the autoencoder's reconstruction (logits) in the forward output
AE_OUTPUT = "attributes_reconstruction"
#: target (and ``<task>_in`` input) holding the K-dimensional appearance-attribute vector
ATTRIBUTES = "attributes"
_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


class AttributeAutoencoder(nn.Module):
    """K → bottleneck → K (§2.1): ``forward(a)`` returns (bottleneck code, reconstruction logits); the sigmoid of
    the output units is applied by the loss (eq. 6 / 7 on logits) and by :meth:`reconstruct`."""

    def __init__(self, num_attributes: int, bottleneck: int | None = None, activation: str = "relu") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise AgeGenderError(f"resnet_ae: activation {activation!r} must be relu or sigmoid", code="bad_config")
        width = int(bottleneck or num_attributes)
        self.encoder = nn.Sequential(nn.Linear(num_attributes, width), _ACTIVATIONS[activation]())
        self.decoder = nn.Linear(width, num_attributes)
        self.out_features = width

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(a)
        return code, self.decoder(code)

    def reconstruct(self, a: torch.Tensor) -> torch.Tensor:
        """Attribute probabilities the autoencoder reconstructs from ``a``."""
        return torch.sigmoid(self.forward(a)[1])


class ResNetAENet(MultiTaskNet):
    """Trunk + attribute autoencoder (Fig. 1): heads see dropout(concat(trunk features, AE bottleneck)).

    ``input_tasks`` names the targets the training loop must pass as ``<task>_in`` inputs (the annotated
    variant's attribute vector). ``compute_loss`` is :class:`MultiTaskNet`'s plus L_ae (eq. 8).
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        losses: Mapping[str, nn.Module] | None,
        weighting: nn.Module | None,
        autoencoder: AttributeAutoencoder,
        ae_loss: nn.Module | None,
        variant: str = "annotated",
        dropout: float = 0.1,
        attribute_head: str = ATTRIBUTES,
    ) -> None:
        super().__init__(trunk, heads, losses, weighting)
        self.autoencoder = autoencoder
        self.ae_loss = ae_loss
        self.variant = variant
        self.attribute_head = attribute_head if variant == "predicted" else None
        self.dropout = nn.Dropout(dropout)  # §3: "a dropout layer ... after the feature concatenation layer"

    @property
    def input_tasks(self) -> tuple[str, ...]:
        return (ATTRIBUTES,) if self.variant == "annotated" else ()

    def forward(
        self, x: torch.Tensor, attributes_in: torch.Tensor | None = None, **extra: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        f = self.trunk(x)
        out: dict[str, torch.Tensor] = {}
        if self.attribute_head is not None:
            out[self.attribute_head] = self.heads[self.attribute_head](f)
            a = torch.sigmoid(out[self.attribute_head])
        else:
            if attributes_in is None:
                raise AgeGenderError(
                    "this ResNet+AE model (variant 'annotated', chatzitzisi2020 §2.1) needs the annotated "
                    "attribute vector as input: call model(x, attributes_in=...) or train the 'predicted' variant, "
                    "which needs only the image",
                    code="needs_attributes",
                )
            a = torch.nan_to_num(attributes_in.to(f.dtype), nan=0.0)
        code, recon = self.autoencoder(a)
        out[AE_OUTPUT] = recon
        z = self.dropout(torch.cat([f, code], dim=1))
        for name, head in self.heads.items():
            if name != self.attribute_head:
                out[name] = head(z)
        return out

    def compute_loss(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 8: L_ae + L_trunk; rows without any annotated attribute are left out of L_ae."""
        total, parts = super().compute_loss(outputs, targets)
        t = targets.get(ATTRIBUTES)
        if self.ae_loss is not None and t is not None:
            m = valid_mask(t)
            if bool(m.any()):
                parts["ae"] = self.ae_loss(outputs[AE_OUTPUT][m], t[m])
                total = total + parts["ae"]
        return total, parts


@COMPOSITIONS.register("resnet_ae", paper="chatzitzisi2020", section="2.1, Fig. 1, eqs. 6-8")
def build_resnet_ae(
    cfg: Mapping[str, Any], dims: Mapping[str, int], stats: Mapping[str, Any] | None = None, with_losses: bool = True
) -> ResNetAENet:
    """Build ResNet+AE on ``model.trunk`` (chatzitzisi2020 uses resnet50) with ``model.heads``.

    Registered as composition ``resnet_ae``. ``model.composition_args``:

    - ``variant``: ``annotated`` (as written: the annotated attribute vector is a model *input*, at training and
      at prediction time; ``forward(x, attributes_in=...)``) or ``predicted`` (an attribute head — K sigmoid units
      on the trunk's features, trained on the annotations — predicts the attributes and its probabilities feed
      the autoencoder, so an image is all the model needs).
    - ``ae_loss``: ``ml_bce`` (eq. 6, default) or ``ml_focal`` (eq. 7), any multi-label loss; ``ae_loss_args``.
    - ``bottleneck``: width of the hidden layer (default K, "the size of the bottleneck layer ... the same as the
      size of the input vector"); ``activation`` of the hidden layer, ``relu`` (default) or ``sigmoid``.
    - ``dropout``: after the concatenation (0.1, §3); ``attribute_head``: the head that predicts the attributes in
      the ``predicted`` variant (default ``attributes``; added as a multilabel head with loss ``ml_bce`` when
      ``model.heads`` does not name it).

    The loss is eq. 8, L = L_ae + L_trunk, with L_trunk the heads' losses combined by ``model.weighting`` (a plain
    sum by default); the ``predicted`` variant adds its attribute head's loss to L_trunk. The autoencoder's target is
    the annotated vector in both variants (in ``predicted`` it learns to map predicted attributes onto annotated
    ones). Where the paper is silent: the hidden activation (ReLU), and missing annotations (NaN) are 0 as inputs
    and left out of the losses.
    """
    args = dict(cfg.get("composition_args") or {})
    variant = str(args.pop("variant", "annotated"))
    ae_loss_name = str(args.pop("ae_loss", "ml_bce"))
    ae_loss_args = dict(args.pop("ae_loss_args", None) or {})
    bottleneck = args.pop("bottleneck", None)
    activation = str(args.pop("activation", "relu"))
    dropout = float(args.pop("dropout", 0.1))
    attr_head = str(args.pop("attribute_head", ATTRIBUTES))
    if args:
        raise AgeGenderError(
            f"resnet_ae: unknown composition_args {sorted(args)}; valid: variant, ae_loss, ae_loss_args, "
            "bottleneck, activation, dropout, attribute_head",
            code="bad_config",
        )
    if variant not in VARIANTS:
        raise AgeGenderError(f"resnet_ae: variant {variant!r} must be annotated or predicted", code="bad_config")
    k = int(dims.get(ATTRIBUTES, 0))
    if k == 0:
        raise AgeGenderError(
            "resnet_ae needs a dataset with appearance attributes (e.g. peta, rap): this one gives none",
            code="bad_config",
        )
    if LOSSES.meta(ae_loss_name).get("kind") != "multilabel":
        raise AgeGenderError(f"resnet_ae: ae_loss {ae_loss_name!r} is not a multi-label loss (eq. 6: ml_bce, "
                             "eq. 7: ml_focal)", code="bad_config")

    trunk = build_trunk(cfg["trunk"])
    autoencoder = AttributeAutoencoder(k, bottleneck, activation)
    cfg = dict(cfg)
    heads_cfg = dict(cfg.get("heads") or {})
    if variant == "predicted":
        heads_cfg.setdefault(attr_head, {"type": "multilabel", "task": ATTRIBUTES, "loss": "ml_bce"})
        cfg["heads"] = heads_cfg
    elif attr_head in heads_cfg and (heads_cfg[attr_head] or {}).get("task", attr_head) == ATTRIBUTES:
        raise AgeGenderError("resnet_ae: an attribute head with variant 'annotated' would predict its own input; "
                             "use variant 'predicted'", code="bad_config")
    widths = {attr_head: trunk.out_features} if variant == "predicted" else {}
    heads, losses, weighting = build_heads(cfg, trunk.out_features + autoencoder.out_features, dims, stats,
                                           with_losses, in_features_of=widths)
    ae_loss = LOSSES.build(ae_loss_name, stats=(stats or {}).get(ATTRIBUTES), **ae_loss_args) if with_losses else None
    return ResNetAENet(trunk, heads, losses, weighting, autoencoder, ae_loss, variant, dropout, attr_head)
