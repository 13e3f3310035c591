"""Compositions beyond multi-task: aminian_noubir's cross-modal age nets (§4.2) with iterative refinement (§4.5),
and chatzitzisi2020's ResNet+AE (§2.1, eqs. 6-8) in its annotated and predicted variants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

import agegender  # noqa: F401  (torchvision compat first)
from agegender.errors import AgeGenderError
from agegender.models import COMPOSITIONS, build_model
from agegender.models.attribute_ae import AE_OUTPUT, ResNetAENet
from agegender.models.cross_modal import VARIANT_BRANCHES, CrossModalNet
from agegender.models.package import ModelBundle, load_bundle, save_package
from agegender.training.module import model_inputs

K = 6  # appearance attributes in these tests
DIMS = {"age_group": 8, "gender": 2, "ethnicity": 5, "attributes": K, "pedestrian": 6}
SIZE = 64  # Levi-Hassner needs ~64 px to keep its three max-pools non-empty


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# --------------------------------------------------------------------------------------------------
# Cross-modal (aminian_noubir §4.2)
# --------------------------------------------------------------------------------------------------

GENDER_MODEL = {"trunk": {"name": "levi_hassner"}, "heads": {"gender": {"type": "classification"}}}


@pytest.fixture(scope="module")
def gender_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Levi-Hassner gender net package with random weights (stands in for the trained gender net)."""
    torch.manual_seed(1)
    model = build_model(GENDER_MODEL, DIMS, with_losses=False)
    bundle = ModelBundle(model, {"model": GENDER_MODEL, "data": {}}, DIMS, {})
    return save_package(bundle, tmp_path_factory.mktemp("gender") / "gender.safetensors")


def cross_modal(gender: Path, **args: Any) -> CrossModalNet:
    cfg = {"composition": "cross_modal", "composition_args": {"gender_checkpoint": str(gender), **args},
           "trunk": {"name": "levi_hassner"}, "heads": {"age_group": {"type": "classification", "loss": "ce"}}}
    torch.manual_seed(0)
    return build_model(cfg, DIMS)


def test_compositions_are_registered():
    assert {"multitask", "cross_modal", "resnet_ae"} <= set(COMPOSITIONS.names())


@pytest.mark.parametrize(
    ("variant", "embedding", "width"),
    [("manual1", "fc1", 512), ("manual1", "fc2", 512), ("manual2", "fc1", 1024), ("manual2", "fc2", 1024),
     ("e2e", "fc2", 512 + 512 + 1024 + 1024)],
)
def test_cross_modal_output_shapes(gender_net, variant, embedding, width):
    m = cross_modal(gender_net, variant=variant, embedding=embedding).eval()
    x = torch.randn(3, 3, SIZE, SIZE)
    out = m(x)
    assert set(out) == {"age_group"} and out["age_group"].shape == (3, 8)
    assert m.features(x).shape == (3, width) and m.heads["age_group"].net[-1].in_features == width
    probs = m.decode(out)["age_group_probs"]
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    loss, parts = m.compute_loss(out, {"age_group": torch.tensor([0, 7, -1])})  # -1: masked, as MultiTaskNet
    assert set(parts) == {"age_group"} and torch.isfinite(loss)


def test_manual_variants_join_the_embedding_where_the_paper_says(gender_net):
    x = torch.randn(2, 3, SIZE, SIZE)
    m1 = cross_modal(gender_net, variant="manual1", embedding="fc1").eval()
    (b1,) = m1.branches
    assert b1.fc3[0].in_features == 512 + 512  # Fig. 3: [age FC2, gender FC1] -> new FC-512 -> softmax
    g = m1.source.trunk.embed(x)["fc1"]
    age = m1.trunk(x)
    want = m1.heads["age_group"](b1.fc3(torch.cat([age, g], 1)))
    assert torch.allclose(m1(x)["age_group"], want, atol=1e-5)

    m2 = cross_modal(gender_net, variant="manual2", embedding="fc2").eval()
    (b2,) = m2.branches
    assert b2.fc3[0].in_features == 512  # Fig. 4: age FC2 -> new FC-512; [that, gender FC2] -> softmax
    g = m2.source.trunk.embed(x)["fc2"]
    want = m2.heads["age_group"](torch.cat([b2.fc3(m2.trunk(x)), g], 1))
    assert torch.allclose(m2(x)["age_group"], want, atol=1e-5)


def test_gradients_reach_the_age_net_but_not_the_frozen_gender_net(gender_net):
    m = cross_modal(gender_net, variant="e2e")
    m.train()  # Lightning does this every epoch: the gender net must stay in eval mode (dropout off)
    assert not m.source.training and not any(mod.training for mod in m.source.modules())
    x = torch.randn(4, 3, SIZE, SIZE)
    assert torch.equal(m.source(x)["fc2"], m.source(x)["fc2"])  # deterministic: no dropout in the frozen net
    loss, _ = m.compute_loss(m(x), {"age_group": torch.tensor([0, 1, 2, 3])})
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in m.source.parameters())
    learners = [m.trunk, *m.branches, m.heads]
    for part in learners:
        for name, p in part.named_parameters():
            assert p.requires_grad and p.grad is not None, name
    assert any(float(p.grad.abs().sum()) > 0 for p in m.trunk.features.parameters())
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {f"source.{n}" for n, _ in m.source.named_parameters()}


def test_init_from_gender_copies_the_gender_weights(gender_net):
    gender = load_bundle(gender_net).model.trunk.state_dict()
    m = cross_modal(gender_net, variant="e2e", init_from_gender=True)
    for name, value in m.trunk.state_dict().items():
        assert torch.equal(value, gender[name]), name
    for b in m.branches[1:]:  # E2E (Fig. 5): each branch's own age FC1/FC2, initialised the same way
        for name, value in b.fcs.state_dict().items():
            assert torch.equal(value, gender[f"fcs.{name}"]), name
    for name, value in m.source.trunk.state_dict().items():
        assert torch.equal(value, gender[name])
    scratch = cross_modal(gender_net, variant="manual1", init_from_gender=False)
    assert not torch.equal(scratch.trunk.state_dict()["fcs.fc1.0.weight"], gender["fcs.fc1.0.weight"])


def test_e2e_combines_all_four_branches(gender_net):
    m = cross_modal(gender_net, variant="e2e")
    pairs = {(b.embedding, b.place) for b in m.branches}
    assert pairs == {("fc1", "fc"), ("fc2", "fc"), ("fc1", "softmax"), ("fc2", "softmax")} == set(
        VARIANT_BRANCHES["e2e"])
    assert m.branches[0].fcs is None and all(b.fcs is not None for b in m.branches[1:])
    # one learned layer over the four branch outputs: each branch gets gradient through it
    x = torch.randn(2, 3, SIZE, SIZE)
    m(x)["age_group"].sum().backward()
    for b in m.branches:
        assert float(b.fc3[0].weight.grad.abs().sum()) > 0
    shared = cross_modal(gender_net, variant="e2e", e2e_share_fc=True)
    assert all(b.fcs is None for b in shared.branches)
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in m.parameters())


def test_trained_cross_modal_model_loads_without_the_gender_file(gender_net, tmp_path):
    import shutil

    gender_copy = tmp_path / "gender.safetensors"
    shutil.copy(gender_net, gender_copy)
    m = cross_modal(gender_copy, variant="manual2").eval()
    cfg = {"model": {"composition": "cross_modal", "trunk": {"name": "levi_hassner"},
                     "composition_args": {"gender_checkpoint": str(gender_copy), "variant": "manual2"},
                     "heads": {"age_group": {"type": "classification"}}}, "data": {}}
    pkg = save_package(ModelBundle(m, cfg, DIMS, {}), tmp_path / "age.safetensors")
    gender_copy.unlink()
    loaded = load_bundle(pkg).model
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.allclose(loaded(x)["age_group"], m(x)["age_group"], atol=1e-6)


def test_cross_modal_user_errors(gender_net, tmp_path):
    with pytest.raises(AgeGenderError) as e:
        cross_modal(tmp_path / "missing.ckpt")
    assert e.value.code == "missing_file" and "train it first" in str(e.value)
    for bad in ({"variant": "manual3"}, {"embedding": "fc7"}, {"colour": "red"}):
        with pytest.raises(AgeGenderError) as e:
            cross_modal(gender_net, **bad)
        assert e.value.code == "bad_config"
    with pytest.raises(AgeGenderError):  # a backbone without named FC layers cannot give FC1/FC2
        build_model({"composition": "cross_modal", "composition_args": {"gender_checkpoint": str(gender_net)},
                     "trunk": {"name": "small_cnn"}, "heads": {"age_group": {"type": "classification"}}}, DIMS)


# --------------------------------------------------------------------------------------------------
# ResNet+AE (chatzitzisi2020 §2.1)
# --------------------------------------------------------------------------------------------------


def resnet_ae(variant: str, heads: dict[str, Any] | None = None, **args: Any) -> ResNetAENet:
    cfg = {"composition": "resnet_ae", "composition_args": {"variant": variant, **args},
           "trunk": {"name": "small_cnn"}, "heads": heads or {"gender": {"type": "binary", "loss": "bce"}}}
    torch.manual_seed(0)
    return build_model(cfg, DIMS)


def _attributes(n: int) -> torch.Tensor:
    a = torch.tensor(np.random.default_rng(0).integers(0, 2, (n, K)), dtype=torch.float32)
    a[1, 2] = float("nan")  # one unannotated entry
    a[2] = float("nan")  # one sample with no annotation at all
    return a


def _bce_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 6 by hand: -sum_k [y_k log s(r_k) + (1 - y_k) log(1 - s(r_k))], NaN entries skipped."""
    p = torch.sigmoid(logits.double())
    seen = ~torch.isnan(y)
    yy = torch.nan_to_num(y.double())
    terms = -(yy * torch.log(p) + (1 - yy) * torch.log(1 - p))
    return (terms * seen).sum(-1)


@pytest.mark.parametrize(
    ("heads", "shape"),
    [({"gender": {"type": "binary", "loss": "weighted_bce"}}, (4,)),  # Fig. 1(a)
     ({"age_group": {"type": "classification", "loss": "focal"}}, (4, 8)),  # Fig. 1(b)
     ({"pedestrian": {"type": "multilabel", "loss": "ml_weighted_bce"}}, (4, 6))],  # Fig. 1(c)
)
@pytest.mark.parametrize("variant", ["annotated", "predicted"])
def test_resnet_ae_shapes(variant, heads, shape):
    stats = {"gender": {"counts": np.array([3.0, 1.0])}, "pedestrian": {"pos_rate": np.full(6, 0.3)},
             "attributes": {"pos_rate": np.full(K, 0.5)}}
    cfg = {"composition": "resnet_ae", "composition_args": {"variant": variant},
           "trunk": {"name": "small_cnn"}, "heads": heads}
    m = build_model(cfg, DIMS, stats).eval()
    x, a = torch.randn(4, 3, 64, 64), _attributes(4)
    out = m(x, **model_inputs(m, {"attributes": a}))
    (task,) = heads
    assert out[task].shape == shape and out[AE_OUTPUT].shape == (4, K)
    if variant == "predicted":
        assert out["attributes"].shape == (4, K) and m.input_tasks == ()
        assert "attributes_probs" in m.decode(out)  # the attribute head is a by-product of the practical variant
    else:
        assert m.input_tasks == ("attributes",) and set(out) == {task, AE_OUTPUT}
    ae = m.autoencoder  # one hidden layer, bottleneck K (§2.1)
    assert (ae.encoder[0].in_features, ae.encoder[0].out_features, ae.decoder.out_features) == (K, K, K)
    assert m.heads[task].net[-1].in_features == m.trunk.out_features + K


def test_resnet_ae_loss_is_eq8_sum_of_autoencoder_and_trunk_losses():
    m = resnet_ae("annotated")
    x, a = torch.randn(4, 3, 64, 64), _attributes(4)
    y = {"gender": torch.tensor([0, 1, 1, -1]), "attributes": a}
    out = m(x, attributes_in=a)
    total, parts = m.compute_loss(out, y)
    g = out["gender"][:3].double()
    l_trunk = F.binary_cross_entropy_with_logits(g, y["gender"][:3].double())  # eq. 1, mean over the batch
    rows = ~torch.isnan(a).all(-1)
    l_ae = _bce_sum(out[AE_OUTPUT][rows], a[rows]).mean()  # eq. 6 over the rows with annotations
    assert float(parts["gender"]) == pytest.approx(float(l_trunk), rel=1e-5)
    assert float(parts["ae"]) == pytest.approx(float(l_ae), rel=1e-5)
    assert float(total) == pytest.approx(float(l_trunk + l_ae), rel=1e-5)  # eq. 8

    focal = resnet_ae("annotated", ae_loss="ml_focal")  # eq. 7
    out = focal(x, attributes_in=a)
    _, parts = focal.compute_loss(out, y)
    p = torch.sigmoid(out[AE_OUTPUT][rows].double())
    t = a[rows].double()
    seen = ~torch.isnan(t)
    t = torch.nan_to_num(t)
    eq7 = -(t * (1 - p) ** 2 * torch.log(p) + (1 - t) * p**2 * torch.log(1 - p))
    assert float(parts["ae"]) == pytest.approx(float((eq7 * seen).sum(-1).mean()), rel=1e-5)


def test_resnet_ae_predicted_adds_the_attribute_head_loss_and_trains_end_to_end():
    m = resnet_ae("predicted")
    x, a = torch.randn(4, 3, 64, 64), _attributes(4)
    out = m(x)
    total, parts = m.compute_loss(out, {"gender": torch.tensor([0, 1, 1, 0]), "attributes": a})
    assert set(parts) == {"gender", "attributes", "ae"}
    assert float(total) == pytest.approx(float(sum(parts.values())), rel=1e-6)
    m.zero_grad()
    parts["ae"].backward()  # L_ae reaches the attribute head through the predicted probabilities
    assert float(m.heads["attributes"].net[-1].weight.grad.abs().sum()) > 0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.trunk.parameters())


def test_resnet_ae_dropout_01_after_the_concatenation():
    m = resnet_ae("annotated")
    assert isinstance(m.dropout, nn.Dropout) and m.dropout.p == pytest.approx(0.1)
    seen: list[torch.Tensor] = []
    m.heads["gender"].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
    x, a = torch.randn(8, 3, 64, 64), torch.ones(8, K)
    m.eval()
    m(x, attributes_in=a)
    m.dropout.train()  # only the dropout in training mode, so the trunk's batch norm does not change
    torch.manual_seed(3)
    m(x, attributes_in=a)
    clean, dropped = seen
    f = m.trunk(x)
    code = m.autoencoder.encoder(a)
    assert torch.allclose(clean, torch.cat([f, code], 1), atol=1e-6)  # heads see [trunk features, bottleneck]
    kept = dropped != 0
    assert 0 < int((~kept & (clean != 0)).sum())  # some features dropped ...
    assert torch.allclose(dropped[kept], clean[kept] / 0.9, atol=1e-5)  # ... the rest scaled by 1 / (1 - 0.1)


def test_resnet_ae_annotated_needs_attributes_and_module_passes_them():
    m = resnet_ae("annotated")
    with pytest.raises(AgeGenderError) as e:
        m(torch.randn(2, 3, 64, 64))
    assert e.value.code == "needs_attributes" and "predicted" in str(e.value)
    a = _attributes(3)
    extra = model_inputs(m, {"attributes": a, "gender": torch.zeros(3, dtype=torch.long)})
    assert set(extra) == {"attributes_in"} and not torch.isnan(extra["attributes_in"]).any()
    assert torch.equal(extra["attributes_in"], torch.nan_to_num(a))  # missing annotations enter as 0
    assert model_inputs(resnet_ae("predicted"), {"attributes": a}) == {}
    with pytest.raises(AgeGenderError) as e:
        build_model({"composition": "resnet_ae", "trunk": {"name": "small_cnn"},
                     "heads": {"gender": {"type": "binary"}}}, {**DIMS, "attributes": 0})
    assert e.value.code == "bad_config" and "attributes" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Iterative refinement (aminian_noubir §4.5) on tiny data, through its command
# --------------------------------------------------------------------------------------------------


def _utkface(root: Path, n: int = 32) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        age, gender = (3, 10, 18, 28, 40, 50, 58, 70)[i % 8], (i // 8) % 2
        arr = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{age}_{gender}_{i % 5}_2017011{i:09d}.jpg.chip.jpg")


def test_iterative_refinement_runs_one_round(tmp_path):


    data = tmp_path / "utk"
    data.mkdir()
    _utkface(data)
    common = {
        "data": {"dataset": "utkface", "root": str(data), "input_size": 32, "batch_size": 8, "num_workers": 0,
                 "split": {"kind": "random", "fractions": [0.5, 0.25, 0.25], "seed": 0}},
        "trainer": {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1, "progress_bar": False},
        "optim": {"name": "sgd", "lr": 0.01},
    }
    gender = {**common, "name": "g", "model": {"trunk": {"name": "kang_gender"},
                                              "heads": {"gender": {"type": "classification"}}}}
    age = {**common, "name": "a", "model": {
        "composition": "cross_modal", "trunk": {"name": "kang_gender"},
        "composition_args": {"gender_checkpoint": "unused-by-refine.ckpt", "variant": "manual2", "embedding": "fc2",
                             "refine": {"gender_config": "gender.yaml", "rounds": 1, "final": "gender"}},
        "heads": {"age_group": {"type": "classification"}}}}
    (tmp_path / "gender.yaml").write_text(yaml.safe_dump(gender))
    (tmp_path / "age.yaml").write_text(yaml.safe_dump(age))
    out = tmp_path / "run"
    from typer.testing import CliRunner

    from agegender.cli import app

    r = CliRunner().invoke(app, ["refine", str(tmp_path / "age.yaml"), "--output", str(out)])
    assert r.exit_code == 0, r.output

    summary = json.loads((out / "refinement.json").read_text())
    steps = summary["steps"]
    assert [(s["task"], s["round"]) for s in steps] == [("gender", 1), ("age", 1), ("gender", 2)]  # Table 4
    assert steps[1]["fed_by"] == steps[0]["best_checkpoint"] and steps[2]["fed_by"] == steps[1]["best_checkpoint"]
    for s in steps:  # every step is a full run: best checkpoint and test metrics of its own task
        assert Path(s["best_checkpoint"]).is_file()
        assert {"gender": "gender_accuracy", "age": "age_group_accuracy"}[s["task"]] in s["test"]
    g1, a1, g2 = (load_bundle(s["best_checkpoint"]).model for s in steps)
    assert isinstance(a1, CrossModalNet) and isinstance(g2, CrossModalNet) and set(g2.heads) == {"gender"}
    for name, value in a1.trunk.state_dict().items():  # Gender 2 is fed the embedding of Age 1 ...
        assert torch.equal(g2.source.trunk.state_dict()[name], value), name
    for name, value in g1.trunk.state_dict().items():  # ... and Age 1 that of Gender 1
        assert torch.equal(a1.source.trunk.state_dict()[name], value), name


def test_refinement_config_in_the_repo_is_valid():
    repo = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "configs" / "aminian_noubir" / "table4_iterative_refinement.yaml").read_text())
    refine = cfg["model"]["composition_args"]["refine"]
    assert (repo / "configs" / "aminian_noubir" / refine["gender_config"]).is_file()
    assert refine["final"] in ("age", "gender") and int(refine["rounds"]) >= 0
