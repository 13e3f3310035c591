"""data.sampler: group-balanced training draws (ethnicity, age group, gender, identity)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agegender.errors import AgeGenderError
from agegender.labels import Sample
from agegender.training.datamodule import AgeGenderDataModule, age_bands, sampling_weights


def make_skewed_utkface(root: Path) -> None:
    """48 faces of ethnicity 0 and 8 of ethnicity 3 (6:1)."""
    i = 0
    for eth, n in ((0, 48), (3, 8)):
        for k in range(n):
            Image.new("RGB", (24, 24), (i * 7 % 256, 90, 40)).save(root / f"{20 + k % 40}_{k % 2}_{eth}_2017{i:09d}.jpg")
            i += 1


def datamodule(root: Path, sampler) -> AgeGenderDataModule:
    return AgeGenderDataModule({"dataset": "utkface", "root": str(root), "split": {"kind": "random", "val": 0.0, "test": 0.0, "seed": 1},
                                "input_size": 16, "batch_size": 8, "num_workers": 0, "cache": False, "sampler": sampler})


def test_weights_balance_the_named_groups():
    targets = {"ethnicity": np.array([0, 0, 0, 1, -1]), "gender": np.array([0, 1, 1, 0, 0])}
    samples = [Sample(path=f"{i}.jpg", identity=None) for i in range(5)]
    idx = np.arange(5)
    w = sampling_weights(samples, targets, idx, ["ethnicity"])
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 1, 1])  # a missing label is a group of its own
    # each group's total weight is the same
    assert np.isclose(w[:3].sum(), w[3]) and np.isclose(w[3], w[4])
    w = sampling_weights(samples, targets, idx, ["ethnicity", "gender"], power=0.5)
    assert np.allclose(w, [1, 2 ** -0.5, 2 ** -0.5, 1, 1])
    assert np.allclose(sampling_weights(samples, targets, idx, "ethnicity", power=0.0), 1.0)


def test_identity_weights_count_images_per_person():
    samples = [Sample(path=f"{i}.jpg", identity=p) for i, p in enumerate(["a", "a", "a", "a", "b", None, None])]
    w = sampling_weights(samples, {}, np.arange(7), ["identity"])
    assert np.allclose(w, [0.25, 0.25, 0.25, 0.25, 1, 1, 1])  # images without a person are their own


@pytest.mark.parametrize("spec, message", [
    ({"by": ["race"]}, "unknown label"),
    ({"by": []}, "unknown label"),
    ({"by": ["ethnicity"], "power": -1}, "power"),
    ({"by": ["ethnicity"], "mode": "x"}, "data.sampler takes"),
    ({"power": 1}, "data.sampler takes"),
    (["ethnicity"], "data.sampler takes"),
    ({"by": ["age_group"], "age_edges": [18, 13]}, "ascending"),
    ({"by": ["age_group"], "age_edges": ["x"]}, "list of ages"),
])
def test_bad_sampler_spec_is_refused_before_decoding(tmp_path, spec, message):
    make_skewed_utkface(tmp_path)
    with pytest.raises(AgeGenderError, match=message):
        datamodule(tmp_path, spec).prepare_samples()


def test_balanced_loader_draws_the_rare_group_as_often(tmp_path):
    make_skewed_utkface(tmp_path)
    plain = datamodule(tmp_path, None)
    plain.setup("fit")
    assert plain.train_sampler() is None

    dm = datamodule(tmp_path, {"by": ["ethnicity"]})
    dm.setup("fit")
    loader = dm.train_dataloader()
    torch.manual_seed(0)
    drawn = Counter()
    for _ in range(20):  # 20 epochs of 56 draws
        for _, y in loader:
            drawn.update(y["ethnicity"].tolist())
    assert sum(drawn.values()) == 20 * 56
    share = drawn[3] / sum(drawn.values())
    assert 0.42 < share < 0.58, drawn  # 1/7 of the images, half of the draws

    half = datamodule(tmp_path, {"by": ["ethnicity"], "power": 0.5})
    half.setup("fit")
    w = half.train_sampler().weights.numpy()
    e = half.targets["ethnicity"][half.split["train"]]
    rare = w[e == 3].sum() / w.sum()
    assert np.isclose(rare, np.sqrt(8) / (np.sqrt(8) + np.sqrt(48)))  # square-root balancing


def test_age_edges_make_bands_of_exact_ages():
    ages = np.array([2.0, 13.0, 17.9, 18.0, 40.0, np.nan, np.nan])
    groups = np.array([0, 2, 3, 3, 4, 1, -1])  # the scheme's groups; the last image has neither label
    assert age_bands(ages, [13, 18], groups).tolist() == [0, 1, 1, 2, 2, 1 + 3, -1]


def test_age_edges_give_a_band_its_own_share(tmp_path):
    # 48 faces aged 20-59 and 8 aged 14-15: balanced over bands [13, 18) and the rest, half the draws are teenagers
    i = 0
    for ages in ([20 + k % 40 for k in range(48)], [14 + k % 2 for k in range(8)]):
        for a in ages:
            Image.new("RGB", (24, 24), (i * 7 % 256, 90, 40)).save(tmp_path / f"{a}_{i % 2}_0_2017{i:09d}.jpg")
            i += 1
    dm = datamodule(tmp_path, {"by": ["age_group"], "age_edges": [13, 18]})
    dm.setup("fit")
    w = dm.train_sampler().weights.numpy()
    a = dm.targets["age"][dm.split["train"]]
    assert np.isclose(w[a < 18].sum() / w.sum(), 0.5)
    plain = datamodule(tmp_path, {"by": ["age_group"]})  # adience8 puts 14 in 8-13 and 15 with 20-22 in 15-20
    plain.setup("fit")
    w = plain.train_sampler().weights.numpy()
    assert not np.isclose(w[a < 18].sum() / w.sum(), 0.5)
