"""Every YAML under configs/ builds its model and runs one training step on a tiny generated dataset of its kind.

Each config keeps its own split, heads, losses, weighting, optimiser and scheduler; the test swaps in a few
dozen generated images (UTKFace names, a PETA labels.csv, Adience folds, a RAP v2 .mat, an IMDB-WIKI .mat),
forces ``pretrained: false`` and shrinks the input so heavy backbones take one CPU step in about a second.
The whole file runs in about two minutes on one core.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import agegender  # noqa: F401  (torchvision compat first)
from agegender.models.registry import TRUNKS
from agegender.training.config import load_config
from agegender.training.train import build

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
GENDER_NET = REPO / "configs" / "aminian_noubir" / "table2_gender_net.yaml"
#: short side of the input in this test, and the trunks that need more (pooling stacks that run out of pixels)
SMALL = 32
MIN_SIZE = {"inception_v3": 80, "levi_hassner": 64, "alexnet": 64, "xception": 64, "dlib_resnet": 142}

# --------------------------------------------------------------------------------------------------
# Tiny datasets, each in its reader's own layout
# --------------------------------------------------------------------------------------------------


def _image(path: Path, i: int, size: tuple[int, int] = (24, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


#: ages that cover every adience8 group and every kang4 interval, 10-65 included (dey_aggarwal's filter)
AGES = (1, 5, 10, 17, 28, 40, 50, 70)


def make_utkface(root: Path) -> None:
    i = 0
    for rep in range(3):
        for age in AGES:
            for gender in (0, 1):
                _image(root / f"{age}_{gender}_{i % 5}_20170116{i:09d}.jpg.chip.jpg", i)
                i += 1


PETA_GROUPS = ("0-15", "16-30", "31-45", "46-60", "61+")
PETA_TAGS = ("upperBodyBlack", "lowerBodyJeans", "hairLong", "carryingBackpack", "accessoryHat", "footwearSneakers")


def make_peta(root: Path) -> None:
    rows = ["file,subset,person_id,gender,age_group,attributes"]
    for i in range(40):
        name = f"TownCentre__{i}.png"
        _image(root / "images" / name, i, (16, 32))
        tags = [t for k, t in enumerate(PETA_TAGS) if (i >> k) % 2 or (i + k) % 3 == 0]
        tags.append("personalFemale" if i % 2 else "personalMale")
        rows.append(f"{name},TownCentre,{i // 2},{i % 2},{PETA_GROUPS[(i // 2) % 5]},{' '.join(tags)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


ADIENCE_AGES = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")
ADIENCE_HEADER = ("user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\t"
                  "fiducial_score")


def make_adience(root: Path) -> None:
    for fold in range(5):
        lines = [ADIENCE_HEADER]
        for j in range(8):
            user, image, face = f"{fold}{j // 2}@N0{fold}", f"{fold}{j}_o.jpg", j + 1
            lines.append(f"{user}\t{image}\t{face}\t{ADIENCE_AGES[j]}\t{'mf'[j % 2]}\t0\t0\t10\t10\t0\t0\t1")
            _image(root / "aligned" / user / f"landmark_aligned_face.{face}.{image}", fold * 8 + j)
        (root / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n")


RAP_COLUMNS = ("Femal", "AgeLess16", "Age17-30", "Age31-45", "Age46-60", "AgeBiger60",
               "hs-LongHair", "ub-Jacket", "lb-Jeans", "attachment-Backpack")


def make_rap(root: Path) -> None:
    from scipy.io import savemat

    n = 40
    names = np.empty((n, 1), dtype=object)
    data = np.zeros((n, len(RAP_COLUMNS)), dtype=np.uint8)
    for i in range(n):
        names[i, 0] = f"CAM01_tarid{i}_frame1_line1.png"
        _image(root / "RAP_dataset" / names[i, 0], i, (16, 40))
        data[i, 0] = i % 2
        data[i, 1 + (i // 2) % 5] = 1
        data[i, 6:] = [(i >> k) % 2 for k in range(4)]
    attrs = np.empty((len(RAP_COLUMNS), 1), dtype=object)
    attrs[:, 0] = RAP_COLUMNS
    ann = {"name": names, "attribute": attrs, "data": data,
           "person_identity": (np.arange(n) // 2).reshape(n, 1).astype(np.float64)}
    (root / "RAP_annotation").mkdir(parents=True)
    savemat(root / "RAP_annotation" / "RAP_annotation.mat", {"RAP_annotation": ann})


def make_imdb(root: Path) -> None:
    from scipy.io import savemat

    folder = root / "imdb_crop"
    n = 40
    paths, dobs, years, genders, names = [], [], [], [], []
    for i in range(n):
        age = (20, 40, 50, 70)[i % 4]
        paths.append(f"{i % 3:02d}/nm{i:07d}_rm{i}_2010.jpg")
        dobs.append(float(date(2010 - age, 1, 1).toordinal() + 366))  # Matlab datenum
        years.append(2010)
        genders.append(float((i // 4) % 2))
        names.append(f"Person {i // 2}")
        _image(folder / paths[-1], i)

    def cell(values: list[Any]) -> np.ndarray:
        return np.array(values, dtype=object).reshape(1, n)

    locations = np.empty((1, n), dtype=object)
    for i in range(n):
        locations[0, i] = np.array([[1.0, 1.0, 20.0, 20.0]])
    struct = {"dob": np.array([dobs]), "photo_taken": np.array([years], dtype=np.uint16),
              "full_path": cell(paths), "gender": np.array([genders]), "name": cell(names),
              "face_location": locations, "face_score": np.full((1, n), 3.0),
              "second_face_score": np.full((1, n), np.nan)}
    savemat(folder / "imdb.mat", {"imdb": struct})


def make_csv(root: Path) -> None:
    """The csv layout the extra faces and crop caches use: some rows with ages, some with only gender and a person."""
    (root / "images").mkdir()
    lines = ["file,age,gender,identity"]
    for i in range(40):
        _image(root / "images" / f"{i:03d}.jpg", i)
        lines.append(f"{i:03d}.jpg,{(i * 9) % 70 + 2 if i % 2 else ''},{'female' if i % 4 < 2 else 'male'},{i // 4}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


MAKERS = {"utkface": make_utkface, "peta": make_peta, "adience": make_adience, "rap": make_rap,
          "imdb_wiki": make_imdb, "csv": make_csv}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="session")
def tiny_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny-datasets")
    roots = {}
    for name, make in MAKERS.items():
        roots[name] = base / name
        roots[name].mkdir()
        make(roots[name])
    return roots


# --------------------------------------------------------------------------------------------------
# Config shrinking and the one-step run
# --------------------------------------------------------------------------------------------------


def small_input(cfg: dict[str, Any]) -> int | list[int]:
    """The config's input size (or its trunk's) scaled down to a SMALL short side, aspect kept."""
    trunk = cfg["model"]["trunk"]["name"]
    size = cfg["data"].get("input_size") or TRUNKS.meta(trunk).get("input_size", 224)
    short = max(SMALL, MIN_SIZE.get(trunk, 0))
    if isinstance(size, (list, tuple)):
        h, w = size
        scale = short / min(h, w)
        return [round(h * scale), round(w * scale)]
    return short


def tiny_config(path: Path, roots: dict[str, Path], gender_net: Path | None = None) -> dict[str, Any]:
    cfg = load_config(path)
    d = cfg["data"]
    if d["dataset"] not in roots:
        pytest.fail(f"{path.name}: no tiny generator for dataset {d['dataset']!r}; add one to MAKERS")
    size = small_input(cfg)
    d.update(root=str(roots[d["dataset"]]), num_workers=0, batch_size=4, eval_batch_size=8, limit=None,
             input_size=size)
    for src in d.get("sources") or []:  # data.sources: each source on the tiny dataset of its kind
        kind = src.get("dataset", d["dataset"])
        if kind not in roots:
            pytest.fail(f"{path.name}: no tiny generator for source dataset {kind!r}; add one to MAKERS")
        src.update(root=str(roots[kind]), limit=None)
        if (src.get("split") or {}).get("kind") == "same_as":  # the copy it follows: the same tiny dataset
            src["split"] = {**src["split"], "root": str(roots[kind])}
    if d.get("resize"):
        d["resize"] = (size if isinstance(size, int) else min(size)) + 8
    if d.get("teacher"):  # distillation: a teacher file over every tiny image of the sources
        kinds = {src.get("dataset", d["dataset"]) for src in d.get("sources") or []} or {d["dataset"]}
        files = sorted(f for k in kinds for f in roots[k].rglob("*") if f.suffix.lower() in (".jpg", ".png"))
        specs = [d["teacher"]] if isinstance(d["teacher"], dict) else list(d["teacher"])
        for k, spec in enumerate(specs):  # one file per teacher, in the columns of its task
            teacher = roots[next(iter(kinds))].parent / f"teacher-{path.stem}-{k}.csv"
            if spec["task"] == "embedding":
                dim = int(cfg["model"]["distill_embedding"]["dim"])
                head = ",".join(f"e_{j}" for j in range(dim))
                teacher.write_text(f"path,{head}\n" + "".join(f"{f}," + ",".join(["0.5"] * dim) + "\n" for f in files))
            else:
                teacher.write_text("path,p_male,p_female\n" + "".join(f"{f},0.3,0.7\n" for f in files))
            specs[k] = {**spec, "file": str(teacher)}
        d["teacher"] = specs if isinstance(d["teacher"], list) else specs[0]
    cfg["model"]["trunk"]["pretrained"] = False
    if cfg["model"].get("composition") == "cross_modal":
        args = cfg["model"]["composition_args"]
        args.pop("source_checkpoint", None)
        args["gender_checkpoint"] = str(gender_net)
    cfg["trainer"].update(progress_bar=False, max_epochs=1, max_steps=1)
    return cfg


@pytest.fixture(scope="session")
def tiny_gender_net(tiny_roots: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aminian_noubir's gender net (random weights, tiny input) saved as a package, for the cross-modal configs."""
    from agegender.models.package import ModelBundle, save_package

    cfg = tiny_config(GENDER_NET, tiny_roots)
    dm, module = build(cfg)
    bundle = ModelBundle(module.model, cfg, dict(dm.dims), dm.preprocess())
    return save_package(bundle, tmp_path_factory.mktemp("gender-net") / "gender.safetensors")


def test_every_paper_has_configs_with_a_citing_header():
    folders = {p.parent.name for p in CONFIGS}
    assert {"aminian_noubir", "chatzitzisi2020", "dey_aggarwal", "jamoliddin2022", "kang2019"} <= folders
    for p in CONFIGS:
        if p.parent.name == "default":
            continue
        header = "\n".join(line for line in p.read_text().splitlines() if line.startswith("#"))
        assert header.startswith("# " + p.parent.name.split("2")[0].rstrip("_")), p
        assert re.search(r"Table|Fig\.|§", header), p


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_builds_and_trains_one_step(path: Path, tiny_roots, request, tmp_path_factory):
    cfg = load_config(path)
    gender_net = request.getfixturevalue("tiny_gender_net") if cfg["model"]["composition"] == "cross_modal" else None
    cfg = tiny_config(path, tiny_roots, gender_net)
    import lightning as L  # after agegender: its torchvision compat fix must come first

    if cfg["model"].get("init_from"):  # a staged config: start from a tiny package of the same network
        from agegender.models.package import ModelBundle, save_package

        first = {**cfg, "model": {**cfg["model"], "init_from": None}}
        dm0, m0 = build(first)
        start = tmp_path_factory.mktemp("init") / "stage1.safetensors"
        save_package(ModelBundle(m0.model, first, dict(dm0.dims), dm0.preprocess()), start)
        cfg["model"]["init_from"] = str(start)
        teachers = cfg["model"].get("distill_model") or []

        def local(t):  # a teacher file outside the repository (not in CI) -> the tiny package
            return {**t, "from": str(start)} if str(t.get("from", "")).endswith(".safetensors") else t

        cfg["model"]["distill_model"] = ([local(t) for t in teachers] if isinstance(teachers, list)
                                         else local(teachers) if teachers else None)

    L.seed_everything(0, verbose=False)
    dm, module = build(cfg)
    heads_before = torch.cat([p.detach().flatten().clone() for p in module.model.heads.parameters()])
    trainer = L.Trainer(max_steps=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)

    assert trainer.global_step == 1
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss), f"{path.name}: loss {loss}"
    assert "val/loss" in trainer.callback_metrics and torch.isfinite(trainer.callback_metrics["val/loss"])
    heads_after = torch.cat([p.detach().flatten() for p in module.model.heads.parameters()])
    assert not torch.equal(heads_before, heads_after), f"{path.name}: the step changed no head weight"
    if cfg["model"]["composition"] == "cross_modal":
        assert not any(p.requires_grad for p in module.model.source.parameters())
