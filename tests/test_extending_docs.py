"""docs/extending.md is true: its ``python`` blocks run as they are and register working parts, and its YAML
config and ``agegender`` commands build, train and use them.

Each python block is executed as its own module (a block is one new file of the guide), which registers the
example parts in the live registries; the module fixture removes them again afterwards so that tests which
iterate over a registry never see them. Only generated images are used; the file runs in about 10 s.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import agegender  # noqa: F401  (torchvision compat first)
from agegender.cli import app
from agegender.data.readers import DATASETS, SkippedEntriesWarning, describe_datasets, read_dataset
from agegender.errors import AgeGenderError
from agegender.inference.detectors import DETECTORS, build_detector
from agegender.models.registry import COMPOSITIONS, HEADS, LOSSES, TRUNKS, WEIGHTINGS
from agegender.registry import Registry
from agegender.training.config import load_config
from agegender.training.train import build

pytest_plugins = ["fixtures_models"]  # tiny_face_model
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "extending.md"
REGISTRIES: dict[str, Registry] = {
    "trunk": TRUNKS, "loss": LOSSES, "dataset": DATASETS, "detector": DETECTORS,
    "head": HEADS, "weighting": WEIGHTINGS, "composition": COMPOSITIONS,
}
#: what each python block of the guide registers, in order
EXPECTED_BLOCKS = [
    {"trunk": ["my_tiny_trunk"]},
    {"loss": ["my_poly_loss"]},
    {"dataset": ["my_folders"]},
    {"detector": ["my_bright_blobs"]},
]


def doc_blocks(lang: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def doc_commands(prefix: str) -> list[list[str]]:
    """The commands of the guide's bash blocks that start with ``prefix``, split into words."""
    lines = [line for block in doc_blocks("bash") for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.startswith(prefix)]


@pytest.fixture(scope="module")
def blocks() -> Any:
    """Run each python block of the guide as its own module; yields [(namespace, {kind: [new names]})]."""
    initial = {kind: set(reg.names()) for kind, reg in REGISTRIES.items()}
    done: list[tuple[dict[str, Any], dict[str, list[str]]]] = []
    try:
        for i, source in enumerate(doc_blocks("python")):
            before = {kind: set(reg.names()) for kind, reg in REGISTRIES.items()}
            namespace: dict[str, Any] = {"__name__": f"extending_md_block_{i}"}
            code = compile(source, f"{DOC}#python-block-{i}", "exec")
            exec(code, namespace)  # noqa: S102 - the repository's own guide
            added = {kind: sorted(set(reg.names()) - before[kind]) for kind, reg in REGISTRIES.items()}
            done.append((namespace, {kind: names for kind, names in added.items() if names}))
        yield done
    finally:
        for _, added in done:
            for kind, names in added.items():
                for name in names:
                    REGISTRIES[kind].unregister(name)
    # the rest of the test session sees the registries exactly as before this module
    assert {kind: set(reg.names()) for kind, reg in REGISTRIES.items()} == initial


def block_defining(blocks: Any, name: str) -> dict[str, Any]:
    return next(ns for ns, added in blocks if any(name in names for names in added.values()))


def save_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG")
    return path


def noise(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


#: ages covering every adience8 group, so a stratified split of the tiny dataset has every group
AGES = (1, 5, 10, 17, 28, 40, 50, 70)


@pytest.fixture(scope="module")
def my_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-image dataset in the guide's my_folders layout."""
    root = tmp_path_factory.mktemp("my_faces")
    i = 0
    for rep in range(3):
        for age in AGES:
            for gender in ("male", "female"):
                save_png(root / gender / f"{age}_{rep}.png", noise(i))
                i += 1
    return root


def scene() -> np.ndarray:
    """Black 160×200 image: a white 50×60 rectangle, a white L-shape in a 40×40 box (700 of its 1600
    pixels), a white 8×8 square and a dim grey 40×50 rectangle."""
    img = np.zeros((160, 200, 3), dtype=np.uint8)
    img[30:90, 20:70] = 255  # box (20, 30, 70, 90), score 1
    img[10:50, 100:110] = 255  # L-shape: box (100, 10, 140, 50), score 700 / 1600
    img[40:50, 100:140] = 255
    img[100:108, 100:108] = 255  # 8 px: below min_face_size 30
    img[100:150, 150:190] = 100  # grey: only found with a threshold under 100
    return img


BOX_A = (20.0, 30.0, 70.0, 90.0)
BOX_L = (100.0, 10.0, 140.0, 50.0)
BOX_TINY = (100.0, 100.0, 108.0, 108.0)
BOX_GREY = (150.0, 100.0, 190.0, 150.0)


# --------------------------------------------------------------------------------------------------


def test_python_blocks_register_exactly_the_documented_parts(blocks) -> None:
    assert [added for _, added in blocks] == EXPECTED_BLOCKS
    text = DOC.read_text(encoding="utf-8")
    for added in EXPECTED_BLOCKS:
        for name in next(iter(added.values())):
            assert f"{name}.py" in text, f"the guide's table names no file for {name}"


def test_trunk_builds_and_gives_b_by_out_features(blocks) -> None:
    meta = TRUNKS.meta("my_tiny_trunk")
    assert isinstance(meta["input_size"], int) and meta["pretrained"] is False and "paper" in meta
    torch.manual_seed(0)
    trunk = TRUNKS.build("my_tiny_trunk")
    assert trunk.out_features == 32
    out = trunk(torch.randn(3, 3, 40, 40))
    assert out.shape == (3, trunk.out_features)
    out.sum().backward()
    first = next(m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert TRUNKS.build("my_tiny_trunk", width=8)(torch.randn(2, 3, 64, 64)).shape == (2, 16)
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build("my_tiny_trunk", pretrained=True)
    assert err.value.code == "bad_config"


def test_loss_is_poly1_on_a_small_batch(blocks) -> None:
    meta = LOSSES.meta("my_poly_loss")
    assert meta["kind"] == "multiclass" and meta["eq"]
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 1, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    p_t = torch.softmax(logits, -1)[torch.arange(6), target]
    assert torch.allclose(LOSSES.build("my_poly_loss", epsilon=0.0)(logits, target), ce.mean())
    loss = LOSSES.build("my_poly_loss", stats=None)(logits, target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.allclose(loss, (ce + (1 - p_t)).mean())
    counts = np.array([10.0, 30.0, 20.0, 20.0])  # w = mean / count = [2, 2/3, 1, 1]
    weighted = LOSSES.build("my_poly_loss", stats={"counts": counts}, weighted=True)(logits, target)
    w = torch.tensor([2.0, 2 / 3, 1.0, 1.0])[target]
    assert torch.allclose(weighted, (w * (ce + (1 - p_t))).mean())
    with pytest.raises(AgeGenderError) as err:
        LOSSES.build("my_poly_loss", stats=None, weighted=True)
    assert err.value.code == "bad_config"
    big = (100 * logits).requires_grad_(True)  # log-softmax, so huge logits stay finite
    value = LOSSES.build("my_poly_loss")(big, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(big.grad).all()


def test_loss_kind_is_checked_against_the_head(blocks) -> None:
    from agegender.models.heads import BinaryHead, ClassificationHead
    from agegender.models.multitask import build_loss

    cfg = {"loss": "my_poly_loss", "loss_args": {"epsilon": 2.0}}
    assert build_loss(cfg, ClassificationHead("gender", 8, 2), None).epsilon == 2.0
    with pytest.raises(AgeGenderError, match="multiclass"):
        build_loss({"loss": "my_poly_loss"}, BinaryHead("gender", 8), None)


def test_reader_reads_the_documented_layout(blocks, tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for i, rel in enumerate(["male/25_a.png", "male/40_b.png", "female/3_c.png", "female/70_d.png",
                             "female/abc_e.png", "female/130_f.png", "other/33_g.png"]):
        save_png(root / rel, noise(i))
    (root / "female" / "31_broken.jpg").write_bytes(b"not a jpeg")
    (root / "male" / "notes.txt").write_text("ignored")

    with pytest.warns(SkippedEntriesWarning):
        ss = read_dataset("my_folders", root)
    got = sorted((Path(s.path).name, s.age, s.gender) for s in ss.samples)
    assert got == [("25_a.png", 25.0, 0), ("3_c.png", 3.0, 1), ("40_b.png", 40.0, 0), ("70_d.png", 70.0, 1)]
    assert all(Path(s.path).is_file() for s in ss.samples)
    assert ss.name == "my_folders" and ss.age_scheme == "adience8"
    reasons = {entry: why.split(":")[0] for entry, why in ss.skipped}
    assert reasons == {"abc_e.png": "bad_age", "130_f.png": "bad_age", "31_broken.jpg": "unreadable_image"}
    with pytest.warns(SkippedEntriesWarning):  # without the header check the broken file is kept
        assert len(read_dataset("my_folders", root, verify_images=False)) == 5

    with pytest.raises(AgeGenderError) as err:
        read_dataset("my_folders", root, verify=False)
    assert err.value.code == "bad_config"
    with pytest.raises(AgeGenderError) as err:
        read_dataset("my_folders", tmp_path / "nowhere")
    assert err.value.code == "missing_path" and DATASETS.meta("my_folders")["layout"] in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgeGenderError) as err:
        read_dataset("my_folders", tmp_path / "empty")
    assert err.value.code == "bad_layout"
    d = next(d for d in describe_datasets() if d["name"] == "my_folders")
    assert d["options"] == {"verify_images": True} and d["default_detector"] == "none"
    assert set(d["tasks"]) == {"age", "age_group", "gender"}


def test_detector_finds_the_expected_boxes(blocks) -> None:
    det = build_detector("my_bright_blobs")
    assert det.name == "my_bright_blobs" and "description" in DETECTORS.meta("my_bright_blobs")
    found = det.detect(scene())
    assert [d.box for d in found] == [BOX_A, BOX_L]
    assert [d.score for d in found] == pytest.approx([1.0, 700 / 1600])

    def boxes(**options: Any) -> list[tuple[float, ...]]:
        return [d.box for d in build_detector("my_bright_blobs", **options).detect(scene())]

    assert boxes(threshold=50) == [BOX_A, BOX_GREY, BOX_L]  # equal scores: the larger first
    assert boxes(min_face_size=5) == [BOX_A, BOX_TINY, BOX_L]
    assert boxes(max_faces=1) == [BOX_A]
    assert build_detector("my_bright_blobs").detect(np.zeros((50, 50, 3), dtype=np.uint8)) == []
    with pytest.raises(AgeGenderError) as err:
        build_detector("my_bright_blobs", treshold=50)
    assert err.value.code == "bad_config"


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def test_predict_command_uses_the_detector(blocks, tiny_face_model: Path, tmp_path: Path) -> None:
    (cmd,) = doc_commands("agegender predict")
    photos = tmp_path / "photos"
    save_png(photos / "scene.png", scene())
    args = [str(photos) if a == "photos/" else a for a in cmd[1:]]
    assert str(photos) in args and "my_bright_blobs" in args
    out = run_cli([*args, "--model", str(tiny_face_model), "--format", "json", "--no-progress"])
    (image,) = json.loads(out)  # one object per image, its people nested
    people = image["people"]
    assert [tuple(r["box"]) for r in people] == [BOX_A, BOX_L]
    assert [r["detector_score"] for r in people] == pytest.approx([1.0, 0.4375])
    assert all(0 <= r["age"]["years"] <= 100 and r["gender"] in ("male", "female") for r in people)


def test_models_and_datasets_commands_list_the_new_parts(blocks) -> None:
    models = run_cli(["models"])
    trunk_line = next(line for line in models.splitlines() if line.strip().startswith("my_tiny_trunk"))
    assert "input 64" in trunk_line
    assert "my_poly_loss" in next(line for line in models.splitlines() if line.startswith("losses:"))
    detector_line = next(line for line in models.splitlines() if line.strip().startswith("my_bright_blobs"))
    assert "bright regions on a dark background" in detector_line
    datasets = run_cli(["datasets"])
    assert "\nmy_folders\n" in "\n" + datasets and DATASETS.meta("my_folders")["layout"] in datasets


# -- the guide's config and train commands


def one_step(cfg: dict[str, Any]) -> tuple[Any, Any, float]:
    """Build from ``cfg`` (tiny and single-process) and run one training step; returns (dm, module, loss)."""
    import lightning as L  # after agegender: its torchvision compat fix must come first

    cfg["data"].update(num_workers=0, batch_size=8, eval_batch_size=16)
    cfg["trainer"].update(progress_bar=False)
    L.seed_everything(0, verbose=False)
    dm, module = build(cfg)
    before = [p.detach().clone() for p in module.model.trunk.parameters()]
    trainer = L.Trainer(max_steps=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1
    trunk_changed = any(not torch.equal(b, p) for b, p in zip(before, module.model.trunk.parameters()))
    assert trunk_changed, "the step changed no trunk weight"
    return dm, module, float(trainer.callback_metrics["train/loss"])


def parse_train(cmd: list[str]) -> tuple[str, list[str], str | None]:
    """``agegender train CONFIG [--data DIR] [--set K=V ...]`` → (CONFIG, [K=V, ...], DIR)."""
    assert cmd[:2] == ["agegender", "train"], cmd
    config, sets, data = cmd[2], [], None
    rest = iter(cmd[3:])
    for arg in rest:
        if arg == "--set":
            sets.append(next(rest))
        elif arg == "--data":
            data = next(rest)
        else:
            raise AssertionError(f"unexpected argument {arg!r} in {cmd}")
    return config, sets, data


@pytest.mark.filterwarnings("ignore:split not stratified")  # 48 images, 16 strata
def test_yaml_config_trains_with_the_new_parts(blocks, my_faces: Path, tmp_path: Path) -> None:
    (yaml_text,) = doc_blocks("yaml")
    path = tmp_path / "my_experiment.yaml"
    path.write_text(yaml_text)
    commands = [parse_train(c) for c in doc_commands("agegender train")]
    assert ("configs/my_experiment.yaml", [], None) in commands
    cfg = load_config(path, data={"root": str(my_faces)})  # what `agegender train` does with --data
    assert cfg["data"]["dataset"] == "my_folders" and cfg["model"]["trunk"]["name"] == "my_tiny_trunk"

    dm, module, loss = one_step(cfg)
    assert dm.input_hw == (64, 64)  # the trunk's input_size, as the guide says
    assert isinstance(module.model.trunk, block_defining(blocks, "my_tiny_trunk")["TinyTrunk"])
    gender_loss = module.model.losses["gender"]
    assert isinstance(gender_loss, block_defining(blocks, "my_poly_loss")["PolyLoss"])
    counts = dm.stats["gender"]["counts"]
    assert torch.allclose(gender_loss.weights, torch.as_tensor(counts.mean() / counts, dtype=torch.float32))
    assert np.isfinite(loss)


@pytest.mark.filterwarnings("ignore:split not stratified")  # 48 images, 16 strata
def test_set_command_switches_a_paper_config_to_the_new_parts(blocks, my_faces: Path) -> None:
    [(config, sets, data)] = [c for c in map(parse_train, doc_commands("agegender train")) if c[1]]
    assert (REPO / config).is_file() and data is not None
    cfg = load_config(REPO / config, sets, data={"root": str(my_faces)})
    assert cfg["model"]["trunk"] == {"name": "my_tiny_trunk"}
    assert cfg["data"]["dataset"] == "my_folders"
    _, module, loss = one_step(cfg)
    assert isinstance(module.model.trunk, block_defining(blocks, "my_tiny_trunk")["TinyTrunk"])
    assert type(module.model.losses["gender"]).__name__ == "PolyLoss"
    assert np.isfinite(loss)

