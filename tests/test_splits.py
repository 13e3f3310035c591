"""Splits: deterministic for a seed, disjoint and complete, with the promised proportions,
stratification and identity separation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agegender.data.splits import (
    PETA_PAPER_FRACTIONS,
    SPLIT_KINDS,
    identity_disjoint,
    kfold_subject_exclusive,
    make_split,
    peta_paper_partition,
    random_split,
    strata,
    stratified_holdout,
)
from agegender.errors import AgeGenderError
from agegender.labels import Sample, SampleSet


def synthetic(n: int = 2000, seed: int = 0, identities: bool = True) -> list[Sample]:
    """Faces with ages 0-90, genders (some unknown) and identities owning 1-8 images each."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    person = 0
    while len(out) < n:
        k = int(rng.integers(1, 9))
        age = float(rng.integers(0, 91))
        gender = None if rng.random() < 0.05 else int(rng.integers(0, 2))
        for _ in range(min(k, n - len(out))):
            ident = f"p{person}" if identities and rng.random() > 0.02 else None  # a few without identity
            out.append(Sample(path=f"img{len(out)}.jpg", age=age, gender=gender, identity=ident))
        person += 1
    return out


def assert_partition(parts, n: int, complete: bool = True) -> None:
    allidx = np.concatenate([np.asarray(p) for p in parts])
    assert len(allidx) == len(set(allidx.tolist())), "a sample is in two parts"
    assert all(np.asarray(p).dtype == np.int64 for p in parts)
    if complete:
        assert sorted(allidx.tolist()) == list(range(n))


def identity_sets(samples, parts):
    # a sample without identity is its own identity
    return [{samples[i].identity or f"solo{i}" for i in p} for p in parts]


# -- stratified hold-out


def test_stratified_holdout_proportions_and_determinism():
    samples = synthetic()
    n = len(samples)
    tr, va, te = stratified_holdout(samples, test=0.2, val=0.15, seed=7)
    assert_partition((tr, va, te), n)
    assert len(te) == round(0.2 * n)
    assert len(va) == round(0.15 * (n - len(te)))
    again = stratified_holdout(samples, test=0.2, val=0.15, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = stratified_holdout(samples, test=0.2, val=0.15, seed=8)
    assert not np.array_equal(te, other[2])


def test_stratified_holdout_keeps_each_stratum_share():
    samples = synthetic(4000, seed=3)
    labels = strata(samples, "adience8")
    tr, va, te = stratified_holdout(samples, seed=1)
    total, in_test = Counter(labels.tolist()), Counter(labels[te].tolist())
    for stratum, count in total.items():
        if count >= 50:
            assert abs(in_test[stratum] / count - 0.2) < 0.03, stratum
    rest = np.concatenate([tr, va])
    in_val, in_rest = Counter(labels[va].tolist()), Counter(labels[rest].tolist())
    for stratum, count in in_rest.items():
        if count >= 50:
            assert abs(in_val[stratum] / count - 0.15) < 0.03, stratum


def test_unlabelled_samples_form_their_own_stratum():
    samples = [Sample(path=f"{i}", age=30.0, gender=i % 2) for i in range(40)]
    samples += [Sample(path=f"x{i}") for i in range(10)]  # no age, no gender
    labels = strata(samples)
    assert set(labels[40:]) == {"na_na"}
    _, _, te = stratified_holdout(samples, test=0.2, val=0.0, seed=0)
    assert sum(1 for i in te if i >= 40) == 2  # 20 % of the unlabelled stratum


def test_stratified_holdout_tiny_and_singleton_strata():
    # strata of one sample (sklearn refuses those) and a set too small to stratify must still split
    samples = [Sample(path=str(i), age=float(a), gender=0) for i, a in enumerate([1, 5, 10, 18, 30, 40, 50, 70])]
    tr, va, te = stratified_holdout(samples, test=0.25, val=0.2, seed=0)
    assert_partition((tr, va, te), len(samples))
    assert len(te) == 2
    pairs = [Sample(path=str(i), age=float(a), gender=0) for i, a in enumerate([1, 5, 10, 18, 30, 40, 50, 70] * 2)]
    with pytest.warns(UserWarning, match="not stratified"):  # 3 test samples cannot cover 8 strata
        tr, va, te = stratified_holdout(pairs, test=0.2, val=0.0, seed=0)
    assert_partition((tr, va, te), len(pairs))
    many = [Sample(path=str(i), age=30.0, gender=i % 2) for i in range(30)] + [Sample(path="odd", age=80.0, gender=0)]
    tr, va, te = stratified_holdout(many, seed=0)
    assert_partition((tr, va, te), len(many))


def test_stratified_holdout_on_real_utkface(utkface_dir):
    from agegender.data.readers import read_dataset

    ss = read_dataset("utkface", utkface_dir, verify_images=False)
    tr, va, te = stratified_holdout(ss, seed=20261122)
    assert_partition((tr, va, te), len(ss))
    assert (len(tr), len(va), len(te)) == (12541, 2213, 3689)
    gender = np.array([s.gender for s in ss.samples])
    assert abs(gender[te].mean() - gender.mean()) < 0.01


# -- identity-disjoint and k-fold


def test_identity_disjoint_has_no_shared_identity():
    samples = synthetic(3000, seed=5)
    n = len(samples)
    tr, va, te = identity_disjoint(samples, val=0.1, test=0.2, seed=4)
    assert_partition((tr, va, te), n)
    a, b, c = identity_sets(samples, (tr, va, te))
    assert not (a & b or a & c or b & c)
    assert abs(len(te) / n - 0.2) < 0.01 and abs(len(va) / n - 0.1) < 0.01
    again = identity_disjoint(samples, val=0.1, test=0.2, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip((tr, va, te), again))


def test_identity_disjoint_on_real_peta(peta_dir):
    from agegender.data.readers import read_dataset

    ss = read_dataset("peta", peta_dir, verify_images=False)
    parts = identity_disjoint(ss, val=0.1, test=0.2, seed=0)
    assert_partition(parts, len(ss))
    a, b, c = identity_sets(ss.samples, parts)
    assert not (a & b or a & c or b & c)
    assert abs(len(parts[2]) / len(ss) - 0.2) < 0.01


def test_kfold_by_identity():
    samples = synthetic(1500, seed=2)
    folds = kfold_subject_exclusive(samples, k=5, seed=3)
    assert len(folds) == 5
    tests = [te for _, te in folds]
    assert_partition(tests, len(samples))
    ids = identity_sets(samples, tests)
    for i in range(5):
        for j in range(i + 1, 5):
            assert not ids[i] & ids[j]
    for tr, te in folds:
        assert_partition((tr, te), len(samples))
        assert abs(len(te) - len(samples) / 5) < 20  # near-equal folds
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, kfold_subject_exclusive(samples, k=5, seed=3)))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, kfold_subject_exclusive(samples, k=5, seed=4)))


def test_kfold_uses_official_adience_folds():
    samples = [Sample(path=str(i), identity=f"u{i // 3}", extra={"fold": (i // 7) % 5}) for i in range(100)]
    folds = kfold_subject_exclusive(samples, k=5)
    for f, (tr, te) in enumerate(folds):
        assert {samples[i].extra["fold"] for i in te} == {f}
        assert f not in {samples[i].extra["fold"] for i in tr}
    with pytest.raises(AgeGenderError) as err:
        kfold_subject_exclusive(samples, k=4)
    assert err.value.code == "bad_config"


# -- random and the PETA paper partition


def test_random_split_sizes_and_determinism():
    samples = synthetic(1001)
    parts = random_split(samples, (0.7, 0.2, 0.1), seed=1)
    assert_partition(parts, 1001)
    assert [len(p) for p in parts] == [701, 200, 100]
    assert all(np.array_equal(a, b) for a, b in zip(parts, random_split(samples, (0.7, 0.2, 0.1), seed=1)))
    half = random_split(samples, (0.25, 0.25), seed=1)
    assert_partition(half, 1001, complete=False)
    assert sum(len(p) for p in half) == 500
    with pytest.raises(AgeGenderError):
        random_split(samples, (0.8, 0.3))


def test_peta_paper_partition_proportions():
    samples = [Sample(path=str(i)) for i in range(19000)]
    tr, va, te = peta_paper_partition(samples, seed=0)
    assert (len(tr), len(va), len(te)) == (9500, 1900, 7600)
    assert_partition((tr, va, te), 19000)
    tr, va, te = peta_paper_partition(samples[:9500], seed=0)
    assert (len(tr), len(va), len(te)) == (4750, 950, 3800)
    assert abs(sum(PETA_PAPER_FRACTIONS) - 1) < 1e-12


# -- make_split


@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_make_split_every_kind(kind):
    samples = synthetic(600)
    ss = SampleSet("synthetic", samples)
    parts = make_split(kind, ss, seed=3)
    assert set(parts) == {"train", "val", "test"}
    assert_partition(list(parts.values()), len(samples))
    assert len(parts["train"]) > len(parts["test"]) > 0
    again = make_split(kind, samples, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


def test_make_split_options():
    samples = synthetic(800)
    p = make_split("kfold", samples, k=4, fold=2, val=0.1, seed=0)
    assert_partition(list(p.values()), len(samples))
    assert np.array_equal(p["test"], kfold_subject_exclusive(samples, k=4, seed=0)[2][1])
    a, b, c = identity_sets(samples, (p["train"], p["val"], p["test"]))
    assert not (a & b or a & c or b & c)
    p = make_split("random", samples, val=0.1, test=0.3, seed=0)
    assert (len(p["val"]), len(p["test"])) == (80, 240)
    p = make_split("stratified", samples, test=0.1, val=0.1, scheme="kang4", seed=0)
    assert len(p["test"]) == 80


@pytest.mark.parametrize("kind", ["identity", "stratified", "kfold"])
def test_test_in_train_moves_the_test_part_and_keeps_validation(kind):
    samples = synthetic(800)
    opts = {"val": 0.1, "seed": 2} if kind != "kfold" else {"val": 0.1, "k": 4, "seed": 2}
    plain = make_split(kind, samples, **opts)
    refit = make_split(kind, samples, test_in_train=True, **opts)
    assert np.array_equal(refit["val"], plain["val"])  # the same validation images
    assert len(refit["test"]) == 0
    assert np.array_equal(refit["train"], np.sort(np.concatenate([plain["train"], plain["test"]])))
    with pytest.raises(AgeGenderError) as err:
        make_split(kind, samples, test_in_train="yes", **opts)
    assert err.value.code == "bad_config" and "test_in_train" in str(err.value)


@pytest.mark.parametrize(
    ("kind", "opts"),
    [("shuffle", {}), ("stratified", {"tests": 0.2}), ("kfold", {"fold": 5}), ("peta_paper", {"val": 0.1}),
     ("random", {"fractions": (0.5, 0.5)}), ("identity", {"val": 0.6, "test": 0.5})],
)
def test_make_split_bad_config(kind, opts):
    with pytest.raises(AgeGenderError) as err:
        make_split(kind, synthetic(100), **opts)
    assert err.value.code == "bad_config"


def test_split_like_follows_the_reference_and_holds_out_duplicates():
    from agegender.data.splits import split_like

    ref_keys = ["a", "b", "c", "d", "d", "e", "e"]
    ref = {"train": np.array([0, 3, 5]), "val": np.array([1, 6]), "test": np.array([2, 4])}
    parts = split_like(["e", "x", "c", "a", "d", "b"], ref_keys, ref)
    # d is in train and test there, e in train and val: each goes to the held-out part; x has no copy: no part
    assert {k: v.tolist() for k, v in parts.items()} == {"train": [3], "val": [0, 5], "test": [2, 4]}
