"""Knowledge distillation: a teacher's soft labels (data.teacher) and the loss term (model.distill)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agegender.data.soft_labels import read_soft_labels
from agegender.errors import AgeGenderError
from agegender.labels import Sample
from agegender.models import build_model

DIMS = {"gender": 2, "age_group": 8, "ethnicity": 5, "attributes": 0, "pedestrian": 9}


def _samples(tmp_path, n=4):
    return [Sample(path=str(tmp_path / "img" / f"{i}.jpg"), gender=i % 2) for i in range(n)]


def test_read_soft_labels_matches_paths_and_normalises(tmp_path, monkeypatch):
    samples = _samples(tmp_path)
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "t.csv"
    # a relative path and an absolute one both match; an unknown path is ignored; rows are normalised
    f.write_text(f"path,p_male,p_female\nimg/0.jpg,0.2,0.8\n{tmp_path}/img/2.jpg,1,1\nimg/other.jpg,0.5,0.5\n")
    name, soft, matched = read_soft_labels({"task": "gender", "file": str(f)}, samples)
    assert name == "gender_teacher" and matched == 2 and soft.shape == (4, 2)
    np.testing.assert_allclose(soft[0], [0.2, 0.8], rtol=1e-6)
    np.testing.assert_allclose(soft[2], [0.5, 0.5])
    assert np.isnan(soft[1]).all() and np.isnan(soft[3]).all()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("path,p_female\nimg/0.jpg,0.8\n", "missing column"),
        ("path,p_male,p_female\nimg/0.jpg,0.2,1.8\n", "[0, 1]"),
        ("path,p_male,p_female\nimg/0.jpg,x,0.5\n", "numbers"),
        ("path,p_male,p_female\nimg/0.jpg,0.2,0.8\nimg/0.jpg,0.3,0.7\n", "twice"),
        ("path,p_male,p_female\nimg/nobody.jpg,0.2,0.8\n", "none of its paths"),
    ],
)
def test_bad_teacher_files_are_one_line_errors(tmp_path, monkeypatch, text, needle):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(AgeGenderError) as err:
        read_soft_labels({"task": "gender", "file": str(f)}, _samples(tmp_path))
    assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AgeGenderError):
        read_soft_labels({"task": "age", "file": str(f)}, _samples(tmp_path))
    with pytest.raises(AgeGenderError) as err:
        read_soft_labels({"task": "gender", "file": str(tmp_path / "none.csv")}, _samples(tmp_path))
    assert err.value.code == "missing_file"


def _model(distill):
    cfg = {"trunk": {"name": "small_cnn"}, "heads": {"gender": {"type": "classification"}}, "distill": distill}
    torch.manual_seed(0)
    return build_model(cfg, DIMS, stats=None, with_losses=True)


def test_distill_term_is_hinton_soft_cross_entropy_on_covered_rows():
    net = _model({"task": "gender", "weight": 0.5, "temperature": 2.0})
    x = torch.randn(3, 3, 64, 64)
    out = net(x)
    soft = torch.tensor([[0.1, 0.9], [float("nan"), float("nan")], [0.7, 0.3]])
    targets = {"gender": torch.tensor([1, 0, 0]), "gender_teacher": soft}
    total, parts = net.compute_loss(out, targets)
    logp = torch.log_softmax(out["gender"][[0, 2]] / 2.0, dim=-1)
    expect = 4.0 * -(soft[[0, 2]] * logp).sum(-1).mean()
    assert torch.allclose(parts["distill_gender"], expect)
    assert torch.allclose(total, parts["gender"] + 0.5 * expect)
    total.backward()
    assert net.heads["gender"].net[-1].weight.grad is not None
    # no teacher label in the batch: the plain loss
    t2, p2 = net.compute_loss(out, {"gender": targets["gender"], "gender_teacher": torch.full((3, 2), math.nan)})
    assert "distill_gender" not in p2 and torch.allclose(t2, parts["gender"])


@pytest.mark.parametrize("distill", [{"task": "age"}, {"task": "gender", "weight": -1},
                                     {"task": "gender", "temperature": 0}, {"task": "gender", "alpha": 1}])
def test_bad_distill_config(distill):
    with pytest.raises(AgeGenderError) as err:
        _model(distill)
    assert err.value.code == "bad_config"


def test_datamodule_adds_the_teacher_target(utkface_dir, tmp_path):
    from agegender.training.config import load_config
    from agegender.training.datamodule import AgeGenderDataModule

    cfg = load_config(None, [f"data.root={utkface_dir}", "data.limit=40", "data.dataset=utkface"])
    dm = AgeGenderDataModule(cfg["data"])
    dm.prepare_samples()
    f = tmp_path / "teacher.csv"
    f.write_text("path,p_male,p_female\n" + "".join(f"{s.path},0.25,0.75\n" for s in dm.samples[:10]))
    cfg = load_config(None, [f"data.root={utkface_dir}", "data.limit=40", "data.dataset=utkface"],
                      data={"teacher": {"task": "gender", "file": str(f)}})
    dm = AgeGenderDataModule(cfg["data"])
    dm.prepare_samples()
    soft = dm.targets["gender_teacher"]
    assert soft.shape == (40, 2) and int((~np.isnan(soft).any(1)).sum()) == 10


def test_embedding_teacher_file(tmp_path, monkeypatch):
    samples = _samples(tmp_path)
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "e.csv"
    f.write_text("path,e_0,e_1,e_2\nimg/1.jpg,0.5,-1.5,2\nimg/3.jpg,0,0,1e-3\n")
    name, emb, matched = read_soft_labels({"task": "embedding", "file": str(f)}, samples)
    assert name == "embedding_teacher" and matched == 2 and emb.shape == (4, 3)
    np.testing.assert_allclose(emb[1], [0.5, -1.5, 2.0])  # as given: embeddings are not normalised
    assert np.isnan(emb[0]).all() and np.isnan(emb[2]).all()
    for text, needle in (("path,e_0,e_2\nimg/1.jpg,1,2\n", "e_0, e_1"), ("path,p_male\nimg/1.jpg,1\n", "e_0, e_1"),
                         ("path,e_0,e_1\nimg/1.jpg,1,inf\n", "finite"), ("path,e_0,e_1\nimg/1.jpg,0,0\n", "not all 0"),
                         ("path,e_0,e_1\nimg/1.jpg,1,x\n", "numbers")):
        f.write_text(text)
        with pytest.raises(AgeGenderError) as err:
            read_soft_labels({"task": "embedding", "file": str(f)}, samples)
        assert needle in str(err.value) and "\n" not in str(err.value), text


def _embedding_model(spec, with_losses=True):
    cfg = {"trunk": {"name": "small_cnn"}, "heads": {"gender": {"type": "classification"}}, "distill_embedding": spec}
    torch.manual_seed(0)
    return build_model(cfg, DIMS, stats=None, with_losses=with_losses)


def test_embedding_distillation_is_a_training_only_cosine_term():
    net = _embedding_model({"dim": 4, "weight": 2.0})
    x = torch.randn(3, 3, 64, 64)
    out = net(x)  # training mode: the projected features are an extra output
    emb = out["_embedding"]
    assert emb.shape == (3, 4)
    teacher = torch.tensor([[1.0, 0.0, 0.0, 0.0], [math.nan] * 4, [0.0, 2.0, 0.0, 1.0]])
    total, parts = net.compute_loss(out, {"gender": torch.tensor([1, 0, 0]), "embedding_teacher": teacher})
    cos = torch.nn.functional.cosine_similarity(emb[[0, 2]], teacher[[0, 2]], dim=-1)
    assert torch.allclose(parts["distill_embedding"], (1 - cos).mean())
    assert torch.allclose(total, parts["gender"] + 2.0 * parts["distill_embedding"])
    total.backward()
    assert net.embed_proj.weight.grad is not None and net.embed_proj.weight.grad.abs().sum() > 0
    # a teacher pointing where the student already points costs nothing, whatever its length
    t0, p0 = net.compute_loss(out, {"gender": torch.tensor([1, 0, 0]), "embedding_teacher": 3 * emb.detach()})
    assert float(p0["distill_embedding"]) == pytest.approx(0.0, abs=1e-6)
    # evaluation, prediction and export see the heads only
    net.eval()
    assert set(net(x)) == {"gender"}
    wrong = torch.ones(3, 5)
    net.train()
    with pytest.raises(AgeGenderError, match="dim"):
        net.compute_loss(net(x), {"gender": torch.tensor([1, 0, 0]), "embedding_teacher": wrong})


def test_embedding_projection_loads_into_a_package_model_and_configs_are_checked():
    trained = _embedding_model({"dim": 4})
    package_side = _embedding_model({"dim": 4}, with_losses=False)  # how a package is rebuilt
    package_side.load_state_dict(trained.state_dict())  # strict: the projection's weights have a place
    for bad in ({"dim": 0}, {"dim": 4, "weight": -1}, {"dim": 4, "temperature": 2}, {"dim": "x"}):
        with pytest.raises(AgeGenderError) as err:
            _embedding_model(bad)
        assert err.value.code == "bad_config"


def test_datamodule_takes_a_list_of_teachers(utkface_dir, tmp_path):
    from agegender.training.config import load_config
    from agegender.training.datamodule import AgeGenderDataModule

    base = [f"data.root={utkface_dir}", "data.limit=20", "data.dataset=utkface"]
    dm = AgeGenderDataModule(load_config(None, base)["data"])
    dm.prepare_samples()
    g, e = tmp_path / "g.csv", tmp_path / "e.csv"
    g.write_text("path,p_male,p_female\n" + "".join(f"{s.path},0.25,0.75\n" for s in dm.samples[:5]))
    e.write_text("path,e_0,e_1\n" + "".join(f"{s.path},1,2\n" for s in dm.samples[:8]))
    teachers = [{"task": "gender", "file": str(g)}, {"task": "embedding", "file": str(e)}]
    dm = AgeGenderDataModule(load_config(None, base, data={"teacher": teachers})["data"])
    dm.prepare_samples()
    assert dm.targets["gender_teacher"].shape == (20, 2) and dm.targets["embedding_teacher"].shape == (20, 2)
    assert int((~np.isnan(dm.targets["embedding_teacher"]).any(1)).sum()) == 8
    dm = AgeGenderDataModule(load_config(None, base, data={"teacher": [teachers[0], teachers[0]]})["data"])
    with pytest.raises(AgeGenderError, match="twice"):
        dm.prepare_samples()


def test_a_model_trained_with_teachers_is_evaluated_without_their_files(utkface_dir, tmp_path):
    """Teacher files are training-only: the split a package's config makes (evaluate, package) must not need them."""
    from agegender.evaluation.evaluate import split_samples
    from agegender.training.config import load_config

    missing = tmp_path / "absent" / "teacher.csv"
    base = [f"data.root={utkface_dir}", "data.limit=60", "data.dataset=utkface"]
    with_teacher = load_config(None, base, data={"teacher": [{"task": "gender", "file": str(missing)}]})["data"]
    plain = load_config(None, base)["data"]
    got = split_samples("utkface", utkface_dir, "test", with_teacher)[0]
    want = split_samples("utkface", utkface_dir, "test", plain)[0]
    assert [s.path for s in got] == [s.path for s in want] and got
