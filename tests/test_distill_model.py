"""Distillation from a trained model (model.distill_model): the frozen teacher, its loss and its config errors."""

from __future__ import annotations

import pytest
import torch

from agegender.errors import AgeGenderError
from agegender.models import build_model
from agegender.training.teacher import build_teacher, build_teachers, mix_batch
from helpers_models import TINY_DIMS, tiny_bundle, write_tiny_package

FACE_HEADS = {"age": {"type": "age_distribution"}, "gender": {"type": "classification"},
              "ethnicity": {"type": "classification"}}
PRE = {"input_size": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channel_order": "RGB"}


def _student(seed=3, heads=None):
    torch.manual_seed(seed)
    return build_model({"trunk": {"name": "small_cnn"}, "heads": heads or FACE_HEADS}, TINY_DIMS, stats=None)


def test_teacher_loss_is_zero_for_its_own_outputs_and_trains_the_student(tmp_path):
    pkg = write_tiny_package(tmp_path / "t.safetensors", "face", seed=1)
    student = _student()
    teacher = build_teacher({"from": str(pkg), "weight": 0.5, "temperature": 2.0}, student, PRE)
    assert teacher is not None and teacher.heads == ["age", "gender", "ethnicity"]
    assert not any(p.requires_grad for p in teacher.model.parameters())
    x = torch.randn(4, 3, 64, 64)
    # the teacher against itself: KL 0
    same, parts = teacher.loss(teacher.outputs(x), x)
    assert float(same) == pytest.approx(0.0, abs=1e-5) and set(parts) == {f"distill_model_{h}" for h in teacher.heads}
    out = student.train()(x)
    total, parts = teacher.loss(out, x)
    t_out = teacher.outputs(x)
    logq = torch.log_softmax(t_out["gender"] / 2.0, -1)
    kl = (logq.exp() * (logq - torch.log_softmax(out["gender"] / 2.0, -1))).sum(-1).mean() * 4.0
    assert torch.allclose(parts["distill_model_gender"], kl, atol=1e-5)
    assert torch.allclose(total, 0.5 * torch.stack(list(parts.values())).mean())
    assert float(total.detach()) > 0
    total.backward()
    assert student.heads["age"].net[-1].weight.grad is not None
    # a batch at another size reaches the teacher at its own input size
    assert teacher.outputs(torch.randn(2, 3, 80, 80))["age"].shape == (2, 101)


def test_heads_can_be_chosen(tmp_path):
    pkg = write_tiny_package(tmp_path / "t.safetensors", "face", seed=1)
    teacher = build_teacher({"from": str(pkg), "heads": ["gender"]}, _student(), PRE)
    _, parts = teacher.loss(_student()(torch.randn(2, 3, 64, 64)), torch.randn(2, 3, 64, 64))
    assert list(parts) == ["distill_model_gender"]


def test_a_list_gives_each_head_its_own_teacher(tmp_path):
    """Two teachers, one for age and ethnicity and one for gender: each term comes from its own model and is
    logged under its own name; the total is the sum of the two teachers' weighted means."""
    a = write_tiny_package(tmp_path / "a.safetensors", "face", seed=1)
    b = write_tiny_package(tmp_path / "b.safetensors", "face", seed=2)
    teachers = build_teachers([{"from": str(a), "heads": ["age", "ethnicity"], "weight": 1.0},
                               {"from": str(b), "heads": ["gender"], "weight": 3.0}], _student(), PRE)
    assert [t.heads for t in teachers] == [["age", "ethnicity"], ["gender"]]
    x = torch.randn(2, 3, 64, 64)
    out = _student()(x)
    (ta, pa), (tb, pb) = (t.loss(out, x) for t in teachers)
    assert set(pa) == {"distill_model_age", "distill_model_ethnicity"} and set(pb) == {"distill_model2_gender"}
    alone = build_teacher({"from": str(b), "heads": ["gender"]}, _student(), PRE)
    assert torch.allclose(pb["distill_model2_gender"], alone.loss(out, x)[1]["distill_model_gender"])
    assert torch.allclose(tb, 3.0 * pb["distill_model2_gender"])
    assert torch.allclose(ta, torch.stack(list(pa.values())).mean())
    # one mapping is one teacher; none is none
    assert len(build_teachers({"from": str(a)}, _student(), PRE)) == 1
    assert build_teachers(None, _student(), PRE) == ()
    with pytest.raises(AgeGenderError, match="a mapping .* or a list of them") as e:
        build_teachers([str(a)], _student(), PRE)
    assert e.value.code == "bad_config"


def test_flip_teacher_averages_its_logits_on_the_batch_and_its_mirror(tmp_path):
    pkg = write_tiny_package(tmp_path / "t.safetensors", "face", seed=1)
    plain = build_teacher({"from": str(pkg)}, _student(), PRE)
    flip = build_teacher({"from": str(pkg), "flip": True}, _student(), PRE)
    x = torch.randn(3, 3, 64, 64)
    a, b, both = plain.outputs(x), plain.outputs(x.flip(-1)), flip.outputs(x)
    for h in flip.heads:
        assert torch.allclose(both[h], (a[h] + b[h]) / 2, atol=1e-5)
    assert not torch.allclose(a["age"], both["age"])  # the mirror image changes the tiny model's answer
    # a mirror-symmetric batch gives the plain teacher's outputs
    sym = torch.cat([x[..., :32], x[..., :32].flip(-1)], dim=-1)
    assert all(torch.allclose(flip.outputs(sym)[h], plain.outputs(sym)[h], atol=1e-5) for h in flip.heads)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"from": "PKG", "alpha": 1}, "unknown key"),
        ({"from": "PKG", "flip": "yes"}, "flip must be true or false"),
        ({"from": "PKG", "mix": 0}, "mix is mixup's Beta parameter"),
        ({"from": "PKG", "mix": True}, "mix is mixup's Beta parameter"),
        ({"from": "PKG", "mix": "1"}, "mix is mixup's Beta parameter"),
        ({"weight": 1.0}, "needs from"),
        ({"from": "PKG", "temperature": 0}, "temperature > 0"),
        ({"from": "PKG", "weight": "x"}, "numbers"),
        ({"from": "PKG", "heads": ["pedestrian"]}, "not in both models"),
    ],
)
def test_bad_distill_model_config_is_a_one_line_error(tmp_path, cfg, needle):
    pkg = write_tiny_package(tmp_path / "t.safetensors", "face", seed=1)
    cfg = {k: (str(pkg) if v == "PKG" else v) for k, v in cfg.items()}
    with pytest.raises(AgeGenderError) as err:
        build_teacher(cfg, _student(), PRE)
    assert err.value.code == "bad_config" and needle in str(err.value) and "\n" not in str(err.value)


def test_teacher_without_shared_softmax_heads_or_of_another_channel_order_is_refused(tmp_path):
    body = write_tiny_package(tmp_path / "body.safetensors", "body", seed=1)
    with pytest.raises(AgeGenderError, match="not in both models"):
        build_teacher({"from": str(body)}, _student(), PRE)
    face = write_tiny_package(tmp_path / "face.safetensors", "face", seed=1)
    with pytest.raises(AgeGenderError, match="channel order"):
        build_teacher({"from": str(face)}, _student(), dict(PRE, channel_order="BGR"))
    assert build_teacher(None, _student(), PRE) is None


def test_teacher_normalised_otherwise_sees_the_batch_in_its_own_normalisation(tmp_path):
    """A student normalised with another mean/std (another trunk) hands the teacher the same pixels in the
    teacher's normalisation: its outputs equal those of a student normalised like the teacher."""
    face = write_tiny_package(tmp_path / "face.safetensors", "face", seed=1)
    alike = build_teacher({"from": str(face)}, _student(), PRE)
    other_pre = dict(PRE, mean=[0.48, 0.46, 0.41], std=[1.0, 1.0, 1.0])
    other = build_teacher({"from": str(face)}, _student(), other_pre)
    assert alike.adapter is None and other.adapter is not None
    pixels = torch.rand(2, 3, 64, 64)

    def norm(pre):
        return (pixels - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)

    a, b = alike.outputs(norm(PRE)), other.outputs(norm(other_pre))
    assert all(torch.allclose(a[h], b[h], atol=1e-4) for h in alike.heads)
    assert not torch.allclose(alike.outputs(norm(other_pre))["age"], a["age"], atol=1e-4)
    with pytest.raises(AgeGenderError, match="normalises 3 channels and the student 1") as e:
        build_teacher({"from": str(face)}, _student(), dict(PRE, mean=[0.5], std=[0.5]))
    assert e.value.code == "bad_config"


def test_mix_batch_blends_each_image_with_another_of_the_batch():
    """Each mixed image is λ·x_i + (1-λ)·x_j for another j of the batch and λ in [0, 1]; a small Beta parameter puts λ
    near 0 or 1 (mostly one image), a large one near 0.5."""
    torch.manual_seed(0)
    n = 64
    x = torch.eye(n).view(n, n, 1, 1)  # image i: one-hot on channel i, so a blend shows its two images and weights

    def weights(alpha):
        out = mix_batch(x, alpha).view(n, n)
        assert torch.all(out >= 0) and torch.allclose(out.sum(1), torch.ones(n))
        assert torch.all((out > 0).sum(1) <= 2)  # at most two images in each blend
        own = out[torch.arange(n), torch.arange(n)]
        assert torch.all(own > 0)  # each blend keeps its own image
        return torch.minimum(own, 1 - own)  # the smaller of the two weights

    assert not torch.equal(mix_batch(x, 1.0), x)
    assert weights(0.02).median() < 0.01  # λ near 0 or 1: mostly one image
    assert (weights(50.0) - 0.5).abs().median() < 0.1  # λ ~ Beta(50, 50): about even blends


def test_mix_teacher_is_built_with_its_beta_parameter(tmp_path):
    pkg = write_tiny_package(tmp_path / "t.safetensors", "face", seed=1)
    assert build_teacher({"from": str(pkg)}, _student(), PRE).mix is None
    assert build_teacher({"from": str(pkg), "mix": 1}, _student(), PRE).mix == 1.0


def test_training_step_gives_a_mix_teacher_the_mixed_batch_and_the_student_outputs_on_it(tmp_path, monkeypatch):
    """With mix set, the teacher's term is computed on a mixed batch with the student's outputs on that batch (not
    on the training batch); two teachers of the same mix share one mixed batch; the labels' loss stays on the
    batch."""
    from agegender.training import module as module_mod

    pkg = write_tiny_package(tmp_path / "t.safetensors", "face", seed=1)
    cfg = {"data": {"age_scheme": "adience8"}, "trainer": {},
           "model": {"trunk": {"name": "small_cnn"}, "heads": FACE_HEADS,
                     "distill_model": [{"from": str(pkg), "heads": ["age"], "mix": 1.0},
                                       {"from": str(pkg), "heads": ["gender"], "mix": 1.0},
                                       {"from": str(pkg), "heads": ["ethnicity"]}]}}
    m = module_mod.AgeGenderModule(cfg, TINY_DIMS, preprocess=PRE)
    m.setup("fit")
    seen = []
    for t in m._teacher:
        orig = t.loss
        monkeypatch.setattr(t, "loss", lambda out, xb, _o=orig, _t=t: seen.append((_t.name, xb, out)) or _o(out, xb))
    m.log = lambda *a, **k: None
    torch.manual_seed(0)
    x = torch.randn(6, 3, 64, 64)
    y = {"age": torch.tensor([3.0, 20, 30, 40, 50, 60]), "gender": torch.tensor([0, 1, 0, 1, 0, 1]),
         "ethnicity": torch.tensor([0, 1, 2, 3, 4, 0])}
    loss = m.training_step((x, y), 0)
    assert torch.isfinite(loss)
    (n1, x1, o1), (n2, x2, o2), (n3, x3, _) = seen
    assert x3 is x and not torch.equal(x1, x)  # the plain teacher sees the batch, the mix teachers a blend of it
    assert x2 is x1 and o2 is o1  # one mixed batch and one student pass for both
    assert o1["age"].shape == (6, 101) and o1["age"].requires_grad  # the student's outputs on it, trained through


def test_training_with_a_teacher_model_logs_its_terms(utkface_dir, tmp_path):
    """A short run distilling from a package: the per-head distillation terms are logged and the checkpoint
    holds the student alone."""
    import csv

    from typer.testing import CliRunner

    from agegender.cli import app
    from agegender.models.package import save_package

    pkg = save_package(tiny_bundle("face", seed=1), tmp_path / "teacher.safetensors")
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [
        "train", str(_config(tmp_path, pkg)), "--data", str(utkface_dir), "--output", str(out),
        "--set", "data.limit=96", "--set", "data.num_workers=0", "--set", "trainer.progress_bar=false",
        "--set", "data.batch_size=32", "--set", "trainer.max_epochs=1", "--set", "trainer.log_every_n_steps=1",
    ])
    assert r.exit_code == 0, r.output
    with open(next(out.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"train/loss_distill_model_age", "train/loss_distill_model_gender"} <= logged
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("_teacher") or ".teacher" in k for k in ck["state_dict"])


def _config(tmp_path, pkg):
    import yaml

    cfg = {
        "name": "distill-model-test",
        "data": {"dataset": "utkface", "age_scheme": "adience8", "input_size": 64,
                 "split": {"kind": "stratified", "test": 0.2, "val": 0.2, "seed": 1}},
        "model": {"trunk": {"name": "small_cnn"}, "heads": FACE_HEADS,
                  "distill_model": {"from": str(pkg), "weight": 1.0, "temperature": 2.0}},
        "optim": {"name": "adam", "lr": 1e-3},
        "trainer": {"max_epochs": 1, "early_stopping": None},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
