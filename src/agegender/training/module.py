"""LightningModule: holds the model math (forward, masked multi-task loss, metrics, optimiser).

The Trainer owns the loop, devices, checkpoints and early stopping; this module only says what one
step computes. Everything needed to rebuild the network (config, task sizes, class statistics,
preprocessing, label names) is saved in the checkpoint's hyper-parameters.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch

from agegender.metrics import compute_metrics
from agegender.models import build_model
from agegender.training.datamodule import source_specs
from agegender.training.teacher import ModelTeacher, build_teachers, mix_batch

#: validation metrics logged each epoch when the task exists (monitorable by early stopping)
LOGGED_METRICS = (
    "age_mae",
    "age_cs5",
    "age_group_accuracy",
    "age_group_one_off",
    "gender_accuracy",
    "ethnicity_accuracy",
    "attributes_mA",
    "pedestrian_mA",
)
#: also logged per source of a multi-source run: the false-adult rate of minors and each gender's recall
SOURCE_EXTRA_METRICS = ("under18_false_adult_rate", "gender_recall_female", "gender_recall_male")


def _to_py(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Mapping):
        return {k: _to_py(v) for k, v in x.items()}
    return x


def _to_np(x: Any) -> Any:
    if isinstance(x, list) and x and all(isinstance(v, (int, float)) for v in x):
        return np.asarray(x, dtype=np.float64)
    if isinstance(x, Mapping):
        return {k: _to_np(v) for k, v in x.items()}
    return x


def model_inputs(model: torch.nn.Module, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Extra forward inputs a composition asks for in ``input_tasks``: target ``t`` passed as ``t_in``, missing
    entries (NaN) as 0 — e.g. the annotated attributes of chatzitzisi2020's ResNet+AE (§2.1)."""
    return {f"{t}_in": torch.nan_to_num(targets[t].float(), nan=0.0) for t in getattr(model, "input_tasks", ())}


class AgeGenderModule(L.LightningModule):
    def __init__(
        self,
        config: Mapping[str, Any],
        dims: Mapping[str, int],
        stats: Mapping[str, Any] | None = None,
        preprocess: Mapping[str, Any] | None = None,
        labels: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "config": _to_py(dict(config)),
                "dims": dict(dims),
                "stats": _to_py(dict(stats or {})),
                "preprocess": dict(preprocess or {}),
                "labels": _to_py(dict(labels or {})),
            }
        )
        self.config = config
        self.model = build_model(config["model"], dims, _to_np(self.hparams["stats"]))
        self.scheme = config["data"].get("age_scheme", "adience8")
        # a frozen teacher model (model.distill_model), built for fitting only (setup) and kept out of this
        # module's weights and checkpoints
        self._teacher: tuple[ModelTeacher, ...] = ()
        self._val: list[tuple[dict, dict]] = []

    # Training time accumulates across --resume: the checkpoint carries the seconds spent so far.
    train_seconds_prior: float = 0.0
    _fit_t0: float | None = None

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._teacher:
            self._teacher = build_teachers(self.config["model"].get("distill_model"), self.model,
                                           self.hparams["preprocess"])

    def on_fit_start(self) -> None:
        self._fit_t0 = time.time()

    def train_seconds(self) -> float:
        return self.train_seconds_prior + (time.time() - self._fit_t0 if self._fit_t0 else 0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["agegender_train_seconds"] = self.train_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_seconds_prior = float(checkpoint.get("agegender_train_seconds", 0.0))

    def forward(self, x: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(x, **extra)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.config["trainer"].get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.model(self._prep(x), **model_inputs(self.model, y))
        loss, parts = self.model.compute_loss(out, y)
        mixed: dict[float, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}  # one mixed batch per mixup setting
        for teacher in self._teacher:
            if teacher.mix is None:
                term, more = teacher.loss(out, x)
            else:
                if teacher.mix not in mixed:
                    xm = mix_batch(x, teacher.mix)
                    mixed[teacher.mix] = (xm, self.model(self._prep(xm), **model_inputs(self.model, y)))
                xm, out_m = mixed[teacher.mix]
                term, more = teacher.loss(out_m, xm)
            loss = loss + term
            parts = {**parts, **more}
        bs = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/loss_{k}", v, batch_size=bs)
        if self.model.weighting is not None and hasattr(self.model.weighting, "current_weights"):
            for k, v in self.model.weighting.current_weights().items():
                self.log(f"train/weight_{k}", float(v), batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        out = self.model(self._prep(x), **model_inputs(self.model, y))
        loss, _ = self.model.compute_loss(out, y)
        self.log("val/loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        dec = {k: v.detach().float().cpu().numpy() for k, v in self.model.decode(out).items()}
        self._val.append((dec, {k: v.cpu().numpy() for k, v in y.items()}))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        preds = {k: np.concatenate([p[k] for p, _ in self._val]) for k in self._val[0][0]}
        tgts = {k: np.concatenate([t[k] for _, t in self._val]) for k in self._val[0][1]}
        self._val.clear()
        source = tgts.pop("source", None)
        tgts["age_group_scheme"] = self.scheme
        m = compute_metrics(preds, tgts, self.scheme, model_scheme=self.scheme)
        for k in LOGGED_METRICS:
            if k in m and np.isfinite(m[k]):
                self.log(f"val/{k}", float(m[k]), prog_bar=k in ("age_group_accuracy", "gender_accuracy", "age_mae"),
                         sync_dist=True)
        if source is None:
            return
        # every head on every source (val/<source>/<metric>) beside the pooled figures above
        for k, name in enumerate(s["name"] for s in source_specs(self.config["data"])):
            rows = source == k
            if not rows.any():
                continue
            sub = {t: (v[rows] if isinstance(v, np.ndarray) else v) for t, v in tgts.items()}
            ms = compute_metrics({t: v[rows] for t, v in preds.items()}, sub, self.scheme, model_scheme=self.scheme)
            for key in LOGGED_METRICS + SOURCE_EXTRA_METRICS:
                if key in ms and np.isfinite(ms[key]):
                    self.log(f"val/{name}/{key}", float(ms[key]), sync_dist=True)

    def configure_optimizers(self):
        o = self.config["optim"]
        mult = float(o.get("trunk_lr_mult", 1.0))
        lr = float(o["lr"])
        trunk = [p for n, p in self.model.named_parameters() if n.startswith("trunk.") and p.requires_grad]
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("trunk.") and p.requires_grad]
        groups = [{"params": rest, "lr": lr}]
        if trunk:
            groups.append({"params": trunk, "lr": lr * mult})
        name = o["name"].lower()
        wd = float(o.get("weight_decay", 0.0))
        if name == "sgd":
            opt = torch.optim.SGD(groups, lr=lr, momentum=float(o.get("momentum", 0.9)), weight_decay=wd)
        elif name == "adam":
            opt = torch.optim.Adam(groups, lr=lr, weight_decay=wd)
        elif name == "adamw":
            opt = torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
        elif name == "rmsprop":
            opt = torch.optim.RMSprop(groups, lr=lr, momentum=float(o.get("momentum", 0.0)), weight_decay=wd)
        else:
            from agegender.errors import AgeGenderError

            raise AgeGenderError(f"unknown optimizer {name!r}; use sgd, adam, adamw or rmsprop", code="bad_config")
        sch = dict(o.get("scheduler") or {"name": "none"})
        kind = sch.pop("name", "none")
        if kind == "none":
            return opt
        interval = sch.pop("interval", "epoch")
        if kind == "step":
            # e.g. aminian_noubir: lr 1e-3 → 1e-4 after 10,000 iterations (step_size=10000, interval=step)
            s = torch.optim.lr_scheduler.StepLR(opt, step_size=int(sch.get("step_size", 10)), gamma=float(sch.get("gamma", 0.1)))
        elif kind == "cosine":
            total = int(sch.get("t_max") or self.trainer.estimated_stepping_batches)
            warm = int(sch.get("warmup_steps", 0))
            interval = "step"
            base = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warm),
                                                              eta_min=lr * float(sch.get("min_lr_ratio", 0.01)))
            if warm:
                w = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.05, total_iters=warm)
                s = torch.optim.lr_scheduler.SequentialLR(opt, [w, base], milestones=[warm])
            else:
                s = base
        elif kind == "plateau":
            s = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=float(sch.get("gamma", 0.1)),
                                                           patience=int(sch.get("patience", 2)))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "monitor": sch.get("monitor", "val/loss")}}
        else:
            from agegender.errors import AgeGenderError

            raise AgeGenderError(f"unknown scheduler {kind!r}; use none, step, cosine or plateau", code="bad_config")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": interval}}
