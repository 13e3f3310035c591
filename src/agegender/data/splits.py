"""Train/validation/test splits of a SampleSet as index arrays: stratified hold-out, subject-exclusive
k-fold, identity-disjoint, random and the PETA paper partition; ``make_split`` is the config door.

Every split is a pure function of the samples and the seed, so a run can be repeated exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from agegender.errors import AgeGenderError
from agegender.labels import Sample, SampleSet, get_scheme

Samples = SampleSet | Sequence[Sample]
#: chatzitzisi2020's PETA partition: 9,500 / 1,900 / 7,600 of 19,000 images
PETA_PAPER_FRACTIONS: tuple[float, float, float] = (9500 / 19000, 1900 / 19000, 7600 / 19000)


def _samples(samples: Samples) -> list[Sample]:
    return list(samples.samples if isinstance(samples, SampleSet) else samples)


def _sorted(idx: Any) -> np.ndarray:
    return np.sort(np.asarray(idx, dtype=np.int64))


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise AgeGenderError(f"split fraction {name}={value} must be in [0, 1)", code="bad_config")
    return value


def strata(samples: Samples, scheme: str = "adience8") -> np.ndarray:
    """Stratum label per sample: ``"<age group>_<gender>"``; an unknown part is ``"na"``, so samples
    lacking a label form strata of their own rather than being dropped."""
    sch = get_scheme(scheme)
    out = []
    for s in _samples(samples):
        g = s.group_in(sch)
        out.append(f"{'na' if g is None else g}_{'na' if s.gender is None else s.gender}")
    return np.asarray(out)


def _stratified_cut(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, cut) with ``fraction`` of ``idx`` in ``cut``, stratified by ``labels`` where possible."""
    if fraction <= 0 or len(idx) == 0:
        return idx, idx[:0]
    n_cut = round(fraction * len(idx))
    if n_cut == 0 or n_cut == len(idx):
        return (idx, idx[:0]) if n_cut == 0 else (idx[:0], idx)
    labels = labels.copy()
    # sklearn refuses strata with one member: pool those, and fold a lone leftover into the largest
    values, counts = np.unique(labels, return_counts=True)
    rare = set(values[counts < 2])
    if rare:
        labels = np.where(np.isin(labels, list(rare)), "__rare__", labels)
        values, counts = np.unique(labels, return_counts=True)
        if counts[values == "__rare__"].sum() == 1:
            labels[labels == "__rare__"] = values[np.argmax(np.where(values == "__rare__", -1, counts))]
    try:
        rest, cut = train_test_split(idx, test_size=n_cut, random_state=seed, stratify=labels)
    except ValueError as exc:  # more strata than samples in a part: too small to stratify
        warnings.warn(f"split not stratified ({exc}); using a plain random split", stacklevel=3)
        rest, cut = train_test_split(idx, test_size=n_cut, random_state=seed)
    return np.asarray(rest), np.asarray(cut)


def stratified_holdout(
    samples: Samples, test: float = 0.2, val: float = 0.15, seed: int = 0, scheme: str = "adience8"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices stratified by age group × gender (jamoliddin_yoo2022's protocol).

    ``test`` is a fraction of all samples; ``val`` a fraction of what remains (20 % test, then 15 %
    of the other 80 % for validation by default). Age groups come from ``scheme``.
    """
    test, val = _check_fraction("test", test), _check_fraction("val", val)
    labels = strata(samples, scheme)
    idx = np.arange(len(labels))
    rest, test_idx = _stratified_cut(idx, labels, test, seed)
    train_idx, val_idx = _stratified_cut(rest, labels[rest], val, seed + 1)
    return _sorted(train_idx), _sorted(val_idx), _sorted(test_idx)


def _groups(samples: Samples) -> np.ndarray:
    """Identity per sample; one without an identity is its own group."""
    return np.asarray([s.identity if s.identity is not None else f"__sample_{i}" for i, s in
                       enumerate(_samples(samples))], dtype=object)


def _assign_groups_to_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per sample: whole groups, largest first, each to the currently smallest fold
    (GroupKFold's balancing) with ties among equal-size groups broken by the seed."""
    uniq, inverse, counts = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]
    sizes = np.zeros(k, dtype=np.int64)
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return fold_of_group[inverse]


def kfold_subject_exclusive(samples: Samples, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) pairs in which no identity is on both sides.

    When every sample carries ``extra["fold"]`` (Adience's official subject-exclusive folds) those
    folds are used as they are, in sorted order, and ``k`` must match their number; otherwise
    identities are distributed over ``k`` folds of near-equal size.
    """
    items = _samples(samples)
    if k < 2:
        raise AgeGenderError(f"k-fold needs k >= 2, got {k}", code="bad_config")
    if items and all("fold" in s.extra for s in items):
        fold = np.asarray([int(s.extra["fold"]) for s in items])
        names = np.unique(fold)
        if len(names) != k:
            raise AgeGenderError(
                f"the data carry {len(names)} official folds {names.tolist()} but k={k} was asked", code="bad_config"
            )
        fold = np.searchsorted(names, fold)
    else:
        fold = _assign_groups_to_folds(_groups(items), k, seed)
    idx = np.arange(len(items))
    return [(_sorted(idx[fold != f]), _sorted(idx[fold == f])) for f in range(k)]


def identity_disjoint(
    samples: Samples, val: float = 0.1, test: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices with no identity in two parts (e.g. PETA, where a person has many
    images). Fractions count samples: shuffled identities fill test, then val, the rest is train."""
    val, test = _check_fraction("val", val), _check_fraction("test", test)
    if val + test >= 1:
        raise AgeGenderError(f"val + test = {val + test} leaves nothing to train on", code="bad_config")
    groups = _groups(samples)
    uniq, inverse, counts = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    n = len(groups)
    part_of_group = np.zeros(len(uniq), dtype=np.int64)  # 0 train, 1 val, 2 test
    filled = {1: 0, 2: 0}
    want = {2: test * n, 1: val * n}
    for g in order:
        for part in (2, 1):
            # take a group while it brings the part closer to its target size
            if filled[part] < want[part] and abs(filled[part] + counts[g] - want[part]) <= abs(filled[part] - want[part]):
                part_of_group[g] = part
                filled[part] += counts[g]
                break
    part = part_of_group[inverse]
    idx = np.arange(n)
    return _sorted(idx[part == 0]), _sorted(idx[part == 1]), _sorted(idx[part == 2])


def random_split(samples: Samples, fractions: Sequence[float], seed: int = 0) -> tuple[np.ndarray, ...]:
    """One index array per fraction, from one shuffle. Fractions may sum to less than 1 (the rest
    is left out); part sizes are rounded so that they add up to ``round(sum * n)``."""
    n = len(_samples(samples))
    fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if len(fr) == 0 or np.any(fr < 0) or fr.sum() > 1 + 1e-9:
        raise AgeGenderError(f"split fractions {list(fractions)} must be >= 0 and sum to at most 1", code="bad_config")
    exact = fr * n
    sizes = np.floor(exact).astype(np.int64)
    # largest remainder: hand out the samples lost to flooring
    missing = round(min(fr.sum(), 1.0) * n) - int(sizes.sum())
    for i in np.argsort(-(exact - sizes), kind="stable")[: max(missing, 0)]:
        sizes[i] += 1
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return tuple(_sorted(perm[bounds[i]: bounds[i + 1]]) for i in range(len(fr)))


def peta_paper_partition(samples: Samples, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) by image at random in chatzitzisi2020's proportions 9,500/1,900/7,600 of
    19,000 (0.5/0.1/0.4), scaled to the data given. As in the paper, a person's images may fall in
    several parts; use :func:`identity_disjoint` for an honest estimate."""
    train, val, test = random_split(samples, PETA_PAPER_FRACTIONS, seed)
    return train, val, test


def sample_key(sample: Sample, root: str | Path | None = None) -> str:
    """What identifies a sample's image across two copies of one dataset (say, crop caches of the same photos cut
    two ways): the fingerprint of the original image when the reader gives one (``extra["fingerprint"]``, which
    ``agegender crops`` records), else the image's path relative to ``root``."""
    fp = (sample.extra or {}).get("fingerprint")
    if fp is not None:
        return f"fingerprint:{fp}"
    path = Path(sample.path)
    if root is not None:
        try:
            path = path.resolve().relative_to(Path(root).resolve())
        except ValueError:
            pass
    return f"path:{path.as_posix()}"


def split_like(keys: Sequence[str], reference_keys: Sequence[str], reference_split: dict[str, np.ndarray]
               ) -> dict[str, np.ndarray]:
    """(train, val, test) indices into ``keys`` that put each sample in the part its copy (the same key,
    :func:`sample_key`) is in under ``reference_split`` of ``reference_keys``; samples with no copy there are left
    out of every part (the reference's split may be by identity, and a sample it never saw could share a person with
    any part). A key the reference has in several parts (the same image twice under two names) goes to the held-out
    one, test before validation, so that no image held out there is trained on here."""
    part_of: dict[str, str] = {}
    for part in ("train", "val", "test"):  # later parts win
        for i in reference_split.get(part, []):
            part_of[reference_keys[int(i)]] = part
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, key in enumerate(keys):
        part = part_of.get(key)
        if part is not None:
            out[part].append(i)
    return {part: np.asarray(idx, dtype=np.int64) for part, idx in out.items()}


#: split kinds :func:`make_split` computes from the samples alone; a training config may also name ``same_as`` (the
#: parts of another copy of the data, :func:`split_like`), which the training data module resolves by reading that copy
SPLIT_KINDS: tuple[str, ...] = ("stratified", "identity", "random", "kfold", "peta_paper")


def make_split(kind: str, samples: Samples, **opts: Any) -> dict[str, np.ndarray]:
    """Split by name, for configs: returns ``{"train", "val", "test"}`` index arrays (possibly empty).

    - ``stratified``: test=0.2, val=0.15, seed, scheme → :func:`stratified_holdout`
    - ``identity``: val=0.1, test=0.2, seed → :func:`identity_disjoint`
    - ``random``: fractions=(0.7, 0.15, 0.15) for (train, val, test) or val=/test=, seed → :func:`random_split`
    - ``kfold``: k=5, fold=0 (the test fold), seed, val=0.0 (an identity-disjoint share of the
      training folds) → :func:`kfold_subject_exclusive`
    - ``peta_paper``: seed → :func:`peta_paper_partition`
    - ``same_as`` (in a training config only): root (another copy of the data, read by the same reader), split (that
      copy's split, one of the kinds above) → :func:`split_like`

    Every kind also takes ``test_in_train`` (default false): the test part joins the training part and
    the test part is left empty. It is for the final fit of a recipe already chosen on the validation part,
    which stays exactly the one the plain split gives (so runs with and without it compare on the same
    validation images); the model then has no held-out test figure of its own.

    >>> parts = make_split("kfold", samples, k=5, fold=2)      # doctest: +SKIP
    """
    opts = dict(opts)
    seed = int(opts.pop("seed", 0))
    test_in_train = opts.pop("test_in_train", False)
    if not isinstance(test_in_train, bool):
        raise AgeGenderError(f"split option test_in_train must be true or false, not {test_in_train!r}",
                             code="bad_config")
    if kind == "stratified":
        train, val, test = stratified_holdout(samples, seed=seed, **_only(kind, opts, "test", "val", "scheme"))
    elif kind == "identity":
        train, val, test = identity_disjoint(samples, seed=seed, **_only(kind, opts, "val", "test"))
    elif kind == "random":
        opts = _only(kind, opts, "fractions", "val", "test")
        if "fractions" in opts:
            fr = list(opts["fractions"])
        else:
            v, t = float(opts.get("val", 0.15)), float(opts.get("test", 0.15))
            fr = [1.0 - v - t, v, t]
        parts = random_split(samples, fr, seed)
        if len(parts) != 3:
            raise AgeGenderError("a random split for training needs 3 fractions (train, val, test)", code="bad_config")
        train, val, test = parts
    elif kind == "kfold":
        opts = _only(kind, opts, "k", "fold", "val")
        k, fold, val_frac = int(opts.get("k", 5)), int(opts.get("fold", 0)), float(opts.get("val", 0.0))
        if not 0 <= fold < k:
            raise AgeGenderError(f"fold={fold} must be in 0..{k - 1}", code="bad_config")
        train, test = kfold_subject_exclusive(samples, k=k, seed=seed)[fold]
        val = train[:0]
        if val_frac > 0:
            items = _samples(samples)
            tr, va, _ = identity_disjoint([items[i] for i in train], val=val_frac, test=0.0, seed=seed)
            train, val = train[tr], train[va]
    elif kind == "peta_paper":
        _only(kind, opts)
        train, val, test = peta_paper_partition(samples, seed=seed)
    elif kind == "same_as":
        raise AgeGenderError("split 'same_as' takes its parts from another copy of the data: use it in a training "
                             "config's data section (split: {kind: same_as, root: OTHER_COPY, split: {...}})",
                             code="bad_config")
    else:
        raise AgeGenderError(f"unknown split kind {kind!r}; choose one of: {', '.join(SPLIT_KINDS)} (or same_as in a "
                             "training config)", code="bad_config")
    if test_in_train:
        train, test = np.sort(np.concatenate([train, test])), test[:0]
    return {"train": train, "val": val, "test": test}


def _only(kind: str, opts: dict[str, Any], *allowed: str) -> dict[str, Any]:
    """``opts`` when every key is allowed for this split kind; a config typo is a user error."""
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise AgeGenderError(
            f"split {kind!r} has no option(s) {unknown}; its options are: seed, test_in_train, {', '.join(allowed)}".rstrip(", "),
            code="bad_config",
        )
    return opts
