"""Lightning data module: reads a dataset, filters and splits it, builds per-task targets and the
class statistics weighted losses need (always from the training split), and serves cached images.

Images are decoded once and resized to the model's input (or ``data.resize``) in RAM when
``data.cache`` is on: on a 2-core machine JPEG decoding otherwise dominates an epoch.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from agegender.data.images import load_image
from agegender.data.preprocess import resize_rgb
from agegender.data.readers import OUTSIDE_ROOT_OPTION, read_dataset
from agegender.data.splits import make_split
from agegender.data.transforms import eval_transform, train_transform
from agegender.errors import AgeGenderError
from agegender.labels import ETHNICITIES, GENDERS, Sample, SampleSet, get_scheme

log = logging.getLogger(__name__)


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def build_targets(samples: Sequence[Sample], scheme_name: str, num_attributes: int) -> dict[str, np.ndarray]:
    """Per-task target arrays: NaN / -1 where a sample lacks that label."""
    sch = get_scheme(scheme_name)
    n = len(samples)
    age = np.full(n, np.nan, dtype=np.float32)
    group = np.full(n, -1, dtype=np.int64)
    gender = np.full(n, -1, dtype=np.int64)
    eth = np.full(n, -1, dtype=np.int64)
    attrs = np.full((n, num_attributes), np.nan, dtype=np.float32)
    for i, s in enumerate(samples):
        if s.age is not None:
            age[i] = s.age
        g = s.group_in(sch)
        if g is not None:
            group[i] = g
        if s.gender is not None:
            gender[i] = s.gender
        if s.ethnicity is not None:
            eth[i] = s.ethnicity
        if s.attributes is not None and num_attributes:
            attrs[i] = np.asarray(s.attributes, dtype=np.float32)
    # chatzitzisi §2.3: gender and the M age groups as M+1 sigmoid units.
    ped = np.full((n, 1 + sch.num_groups), np.nan, dtype=np.float32)
    ped[gender >= 0, 0] = gender[gender >= 0]
    has_g = group >= 0
    ped[has_g, 1:] = np.eye(sch.num_groups, dtype=np.float32)[group[has_g]]
    return {"age": age, "age_group": group, "gender": gender, "ethnicity": eth, "attributes": attrs, "pedestrian": ped}


def task_stats(targets: Mapping[str, np.ndarray], idx: np.ndarray, dims: Mapping[str, int]) -> dict[str, Any]:
    """Class counts / positive rates of the training split, for weighted losses."""
    out: dict[str, Any] = {}
    for task in ("age_group", "gender", "ethnicity"):
        t = targets[task][idx]
        t = t[t >= 0]
        out[task] = {"counts": np.bincount(t, minlength=dims[task]).astype(np.float64)}
    for task in ("attributes", "pedestrian"):
        t = targets[task][idx]
        if t.shape[1] == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rate = np.nanmean(t, axis=0)
        out[task] = {"pos_rate": np.nan_to_num(rate, nan=0.5)}
    a = targets["age"][idx]
    a = a[~np.isnan(a)]
    out["age"] = {"counts": np.bincount(np.clip(a.round().astype(int), 0, 100), minlength=101).astype(np.float64)}
    return out


#: labels a training draw can be balanced over (``data.sampler.by``)
SAMPLER_KEYS = ("gender", "ethnicity", "age_group", "identity")


def sampling_weights(samples: Sequence[Sample], targets: Mapping[str, np.ndarray], idx: np.ndarray,
                     by: Sequence[str], power: float = 1.0) -> np.ndarray:
    """Draw weight of each training sample: 1 / (size of its group) ** ``power``.

    A group is one combination of the labels named in ``by`` (a missing label is a value of its own;
    ``identity`` falls back to the image, so unlabelled images are their own person). ``power`` 1
    draws every group equally often, 0.5 is the softer square-root balancing, 0 is a plain shuffle.
    """
    if isinstance(by, str):
        by = [by]
    unknown = [k for k in by if k not in SAMPLER_KEYS]
    if unknown or not by:
        raise AgeGenderError(f"data.sampler.by: unknown label(s) {unknown or by}; choose from {list(SAMPLER_KEYS)}",
                             code="bad_config")
    if power < 0:
        raise AgeGenderError(f"data.sampler.power must be >= 0, got {power}", code="bad_config")
    cols = []
    for k in by:
        if k == "identity":
            cols.append([samples[i].identity or f"image:{i}" for i in idx])
        else:
            cols.append(targets[k][idx].tolist())
    keys = list(zip(*cols))
    sizes = Counter(keys)
    return np.asarray([sizes[key] for key in keys], dtype=np.float64) ** -float(power)


def age_bands(ages: np.ndarray, edges: Sequence[float], groups: np.ndarray) -> np.ndarray:
    """``data.sampler.age_edges``: the band of each exact age between ascending edges (``[13, 18]`` gives under 13,
    13–17 and 18 or over), so a draw balanced over ``age_group`` can give a band the age scheme splits (adience8's
    8–14 and 15–22 both hold teenagers) its own share. Images without an exact age keep their scheme group, offset
    past the bands, so they stay groups of their own."""
    try:
        e = np.asarray([float(x) for x in edges], dtype=np.float64)
    except (TypeError, ValueError):
        raise AgeGenderError(f"data.sampler.age_edges must be a list of ages, got {edges!r}", code="bad_config") from None
    if not len(e) or np.any(np.diff(e) <= 0) or np.any(~np.isfinite(e)):
        raise AgeGenderError(f"data.sampler.age_edges must be ascending ages, e.g. [3, 7, 13, 18, 26, 41, 61]; got "
                             f"{list(edges)}", code="bad_config")
    known = ~np.isnan(ages)
    out = np.where(groups >= 0, groups + len(e) + 1, -1).astype(np.int64)
    out[known] = np.searchsorted(e, ages[known], side="right")
    return out


def read_resized(sample: Sample, size_hw: tuple[int, int] | None, margin: float = 0.0) -> np.ndarray:
    """Decode one sample's image (cropping its box, if any, with a margin) and resize to ``size_hw`` (None: as it
    is)."""
    img = load_image(sample.path)
    if sample.box is not None:
        x1, y1, x2, y2 = sample.box
        bw, bh = x2 - x1, y2 - y1
        x1, y1 = max(0, int(x1 - margin * bw)), max(0, int(y1 - margin * bh))
        x2, y2 = min(img.shape[1], int(x2 + margin * bw)), min(img.shape[0], int(y2 + margin * bh))
        if x2 > x1 and y2 > y1:
            img = img[y1:y2, x1:x2]
    if size_hw is None:
        return img
    return resize_rgb(img, size_hw)


class ImageTable:
    """Images of a list of samples, decoded on demand or all at once into one uint8 array."""

    def __init__(self, samples: Sequence[Sample], size_hw: tuple[int, int], cache: bool, margin: float = 0.0,
                 threads: int = 4) -> None:
        self.samples = list(samples)
        self.size = size_hw
        self.margin = margin
        self.array: np.ndarray | None = None
        self.bad: list[int] = []
        if cache:
            self.array = np.zeros((len(self.samples), size_hw[0], size_hw[1], 3), dtype=np.uint8)

            def work(i: int) -> None:
                try:
                    self.array[i] = read_resized(self.samples[i], self.size, self.margin)
                except AgeGenderError as e:
                    self.bad.append(i)
                    log.debug("skipping %s: %s", self.samples[i].path, e)

            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(work, range(len(self.samples))))

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, i: int) -> np.ndarray:
        if self.array is not None:
            return self.array[i]
        return read_resized(self.samples[i], self.size, self.margin)


class TaskDataset(Dataset):
    """(image tensor, {task: target}) pairs over a subset of an :class:`ImageTable`."""

    def __init__(self, table: ImageTable, indices: np.ndarray, targets: Mapping[str, np.ndarray], transform) -> None:
        self.table = table
        self.indices = np.asarray(indices)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        try:
            img = self.table.get(i)
        except AgeGenderError:
            # Unreadable without a cache: substitute a blank image with every label masked out.
            img = np.zeros((*self.table.size, 3), dtype=np.uint8)
            return self.transform(img), _masked(self.targets, i)
        return self.transform(img), {t: torch.as_tensor(v[i]) for t, v in self.targets.items()}


def _masked(targets: Mapping[str, np.ndarray], i: int) -> dict[str, torch.Tensor]:
    out = {}
    for t, v in targets.items():
        x = torch.as_tensor(v[i]).clone()
        out[t] = x.fill_(-1) if x.dtype == torch.int64 else x.fill_(float("nan"))
    return out


#: keys of one entry of ``data.sources`` (the rest of the data section is shared by every source)
SOURCE_KEYS = ("name", "dataset", "root", "options", "allow_outside_root", "split", "filter", "limit", "weight")


def source_specs(data_cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sources a data section reads: ``data.sources`` with each entry's missing keys taken from the section
    itself, or the section's one dataset. Names default to the dataset's and must be unique."""
    base = {k: data_cfg.get(k) for k in SOURCE_KEYS if k in data_cfg}
    raw = data_cfg.get("sources")
    if not raw:
        return [{**base, "name": base.get("name") or data_cfg.get("dataset")}]
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not all(isinstance(r, Mapping) for r in raw):
        raise AgeGenderError("data.sources is a list of mappings, e.g. [{dataset: utkface, root: DIR}, ...]",
                             code="bad_config")
    specs = []
    for r in raw:
        unknown = sorted(set(r) - set(SOURCE_KEYS))
        if unknown:
            raise AgeGenderError(f"data.sources: unknown key(s) {unknown}; a source takes {list(SOURCE_KEYS)}",
                                 code="bad_config")
        spec = {**base, "options": {}, "weight": 1.0, **dict(r)}
        spec["name"] = str(r.get("name") or spec.get("dataset"))
        specs.append(spec)
    names = [s["name"] for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AgeGenderError(f"data.sources: names must be unique; give a name to each of {dup}", code="bad_config")
    return specs


def one_source(data_cfg: Mapping[str, Any], dataset: str, root: str) -> dict[str, Any]:
    """The data section narrowed to the source a (dataset, root) pair is, so that its split is the one training
    made (each source is split on its own); unchanged when the section has no sources. The source is matched by
    its root (the same folder), else by its dataset when only one source reads that dataset."""
    cfg = {k: v for k, v in data_cfg.items() if k != "sources"}
    specs = source_specs(data_cfg) if data_cfg.get("sources") else []
    if not specs:
        return cfg

    def same(a: Any, b: Any) -> bool:
        try:
            return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()
        except OSError:
            return False

    match = [s for s in specs if same(s.get("root"), root)] or [s for s in specs if s.get("dataset") == dataset]
    if len(match) != 1:
        names = [s["name"] for s in specs]
        raise AgeGenderError(f"the model was trained on sources {names}; none is ({dataset}, {root}) alone, so it "
                             "has no split of that data: use --split all", code="bad_config")
    cfg.update({k: v for k, v in match[0].items() if k not in ("name", "weight")})
    cfg.update({"dataset": dataset, "root": str(root)})
    return cfg


def reader_options(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The reader's options from a ``data`` config section: ``data.options`` plus ``data.allow_outside_root``
    (passed only when true, so readers of other projects that lack the option keep working)."""
    opts = dict(data_cfg.get("options") or {})
    if data_cfg.get(OUTSIDE_ROOT_OPTION) and OUTSIDE_ROOT_OPTION not in opts:
        opts[OUTSIDE_ROOT_OPTION] = True
    return opts


class AgeGenderDataModule(L.LightningDataModule):
    """Builds everything data-related from the ``data`` section of a config."""

    def __init__(self, cfg: Mapping[str, Any], trunk_meta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        meta = dict(trunk_meta or {})
        self.input_hw = as_hw(self.cfg.get("input_size") or meta.get("input_size", 224))
        self.resize_hw = as_hw(self.cfg.get("resize") or self.input_hw)
        from agegender.data.transforms import IMAGENET_MEAN, IMAGENET_STD

        self.mean = tuple(self.cfg.get("mean") or meta.get("mean") or IMAGENET_MEAN)
        self.std = tuple(self.cfg.get("std") or meta.get("std") or IMAGENET_STD)
        self.scheme = get_scheme(self.cfg.get("age_scheme") or "adience8").name
        self._prepared = False

    # -- reading, splitting, statistics (cheap; no image decoding)
    def prepare_samples(self) -> None:
        if self._prepared:
            return
        specs = source_specs(self.cfg)
        parts = [self._read_source(spec, labelled=len(specs) > 1) for spec in specs]
        self.source_names = tuple(spec["name"] for spec in specs)
        self.read_summary = "; ".join(summary for _, _, summary, _ in parts)
        names = [n for _, _, _, n in parts]
        self.attribute_names = max(names, key=len)
        if len(set(names) - {()}) > 1:
            raise AgeGenderError(f"data.sources name different attributes ({sorted(set(names))}); train attribute "
                                 "heads on one source at a time", code="bad_config")
        samples = [s for part, _, _, _ in parts for s in part]
        # the source of every sample (an index into source_names) and each source's split, offset into the pool
        self.source_index = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, (p, _, _, _) in enumerate(parts)])
        self.split = {part: [] for part in ("train", "val", "test")}
        offset = 0
        for part_samples, split, _, _ in parts:
            for part in self.split:
                self.split[part].append(np.asarray(split.get(part, []), dtype=np.int64) + offset)
            offset += len(part_samples)
        self.split = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in self.split.items()}
        self.samples = samples
        self.dims = {
            "age_group": get_scheme(self.scheme).num_groups,
            "gender": len(GENDERS),
            "ethnicity": len(ETHNICITIES),
            "attributes": len(self.attribute_names),
            "pedestrian": 1 + get_scheme(self.scheme).num_groups,
        }
        self.targets = build_targets(samples, self.scheme, len(self.attribute_names))
        young = [(s.extra or {}).get("young") for s in samples]
        if any(v is not None for v in young):  # CelebA's 0/1 "Young" flag, a weak age label (model.young_age)
            self.targets["young"] = np.array([np.nan if v is None else float(v) for v in young], dtype=np.float32)
        teachers = self.cfg.get("teacher") or []
        for spec in [teachers] if isinstance(teachers, Mapping) else teachers:  # one mapping or a list of them
            from agegender.data.soft_labels import read_soft_labels

            if not isinstance(spec, Mapping):
                raise AgeGenderError("data.teacher must be a mapping {task, file} or a list of them", code="bad_config")
            name, soft, matched = read_soft_labels(spec, samples)
            if name in self.targets:
                raise AgeGenderError(f"data.teacher lists task {spec.get('task')!r} twice", code="bad_config")
            self.targets[name] = soft
            log.info("teacher targets %s for %d of %d images (%s)", name, matched, len(samples), spec["file"])
        if len(self.source_names) > 1:
            self.targets["source"] = self.source_index
        if len(self.split["train"]) == 0:
            raise AgeGenderError("the split left no training samples", code="bad_config")
        self.stats = task_stats(self.targets, self.split["train"], self.dims)
        self._sampler_weights()  # checks data.sampler before any image is decoded
        self._prepared = True

    def _read_source(self, spec: Mapping[str, Any], labelled: bool
                     ) -> tuple[list[Sample], dict[str, np.ndarray], str, tuple[str, ...]]:
        """One source read, filtered, limited and split on its own: (samples, split, summary, attribute names);
        ``labelled``: one of several sources, whose summary is prefixed by its name."""
        if not spec.get("root"):
            where = f"data.sources entry {spec['name']!r}: " if self.cfg.get("sources") else ""
            raise AgeGenderError(f"{where}no data folder given: pass --data DIR (or set data.root)", code="missing_path")
        ss: SampleSet = read_dataset(spec["dataset"], spec["root"], **reader_options(spec))
        log.info(ss.summary())
        samples = ss.samples
        flt = dict(spec.get("filter") or {})
        if flt:
            lo, hi = flt.get("min_age"), flt.get("max_age")
            samples = [s for s in samples if s.age is None or ((lo is None or s.age >= lo) and (hi is None or s.age <= hi))]
        if spec.get("limit"):
            rng = np.random.default_rng(int((spec.get("split") or {}).get("seed", 42)))
            keep = np.sort(rng.permutation(len(samples))[: int(spec["limit"])])
            samples = [samples[i] for i in keep]
        if not samples:
            raise AgeGenderError(f"no usable samples in {spec['root']} ({ss.summary()})", code="empty_dataset")
        split_cfg = dict(spec.get("split") or {"kind": "stratified"})
        if split_cfg.get("kind") == "same_as":
            split = self._split_same_as(spec, samples, split_cfg)
        else:
            split = self._split(samples, split_cfg)
        summary = f"{spec['name']}: {ss.summary()}" if labelled else ss.summary()
        return samples, split, summary, tuple(ss.attribute_names)

    @staticmethod
    def _split(samples: list[Sample], split_cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
        split_cfg = dict(split_cfg)
        kind = split_cfg.pop("kind", "stratified")
        if kind == "stratified":
            split_cfg.setdefault("scheme", "adience8")
        return {k: np.asarray(v, dtype=np.int64) for k, v in make_split(kind, samples, **split_cfg).items()}

    def _split_same_as(self, spec: Mapping[str, Any], samples: list[Sample], split_cfg: Mapping[str, Any]
                       ) -> dict[str, np.ndarray]:
        """``split: {kind: same_as, root: OTHER, split: {...}}``: each sample in the part its copy in OTHER (the same
        dataset read the same way, e.g. a crop cache of the same photos cut another way) is in under OTHER's split,
        so a model trained on one copy can go on training, and be compared, on the other without its held-out
        images leaking (:func:`~agegender.data.splits.split_like`). OTHER is read whole (the source's ``filter`` and
        ``limit`` apply to this copy only). Samples with no copy in OTHER are left out."""
        from agegender.data.splits import sample_key, split_like

        unknown = sorted(set(split_cfg) - {"kind", "root", "split"})
        if unknown or not split_cfg.get("root") or not isinstance(split_cfg.get("split"), Mapping):
            raise AgeGenderError(f"split 'same_as' needs root (another copy of the data) and split (that copy's "
                                 f"split) and takes nothing else{f', not {unknown}' if unknown else ''}",
                                 code="bad_config")
        other_root = str(split_cfg["root"])
        if not Path(other_root).exists():
            raise AgeGenderError(f"split 'same_as': {other_root} not found; give the folder of the copy whose split "
                                 "this source follows", code="missing_path")
        if dict(split_cfg["split"]).get("kind") == "same_as":
            raise AgeGenderError("split 'same_as' must name a split computed from that copy, not another same_as",
                                 code="bad_config")
        other = read_dataset(spec["dataset"], other_root, **reader_options(spec)).samples
        split = split_like([sample_key(s, spec["root"]) for s in samples], [sample_key(s, other_root) for s in other],
                           self._split(other, split_cfg["split"]))
        kept = sum(len(v) for v in split.values())
        log.info("%s: split as in %s; %d of %d samples have a copy there", spec.get("name", spec["root"]), other_root,
                 kept, len(samples))
        return split

    def setup(self, stage: str | None = None) -> None:
        self.prepare_samples()
        if getattr(self, "table", None) is None:
            self.table = ImageTable(self.samples, self.resize_hw, bool(self.cfg.get("cache", True)),
                                    float(self.cfg.get("crop_margin") or 0.0))
            if self.table.bad:
                bad = set(self.table.bad)
                warnings.warn(f"{len(bad)} image(s) could not be decoded and are left out", stacklevel=2)
                for part, idx in self.split.items():
                    self.split[part] = np.asarray([i for i in idx if i not in bad], dtype=np.int64)

    def preprocess(self) -> dict[str, Any]:
        """What inference needs to feed the model exactly as in training."""
        return {
            "input_size": list(self.input_hw),
            "resize": list(self.resize_hw),
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": "RGB",
            "crop_margin": float(self.cfg.get("crop_margin") or 0.0),
        }

    def _loader(self, part: str, train: bool) -> DataLoader:
        tf = (
            train_transform(self.input_hw, self.mean, self.std, self.cfg.get("augment", "standard"),
                            self.cfg.get("degradation"))
            if train
            else eval_transform(self.input_hw, self.mean, self.std)
        )
        ds = TaskDataset(self.table, self.split[part], self.targets, tf)
        nw = int(self.cfg.get("num_workers", 0))
        sampler = self.train_sampler() if train else None
        return DataLoader(
            ds,
            batch_size=int(self.cfg["batch_size"] if train else self.cfg.get("eval_batch_size", 128)),
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(ds) > int(self.cfg["batch_size"]),
            num_workers=nw,
            persistent_workers=nw > 0,
        )

    def _sampler_weights(self) -> np.ndarray | None:
        """Draw weight of each training sample, or None for a plain shuffle. ``data.sampler`` balances groups within
        each source (the source keeps its share of the draw); a source's ``weight`` multiplies that share."""
        spec = self.cfg.get("sampler")
        if spec and (not isinstance(spec, Mapping) or set(spec) - {"by", "power", "age_edges"} or "by" not in spec):
            raise AgeGenderError(f"data.sampler takes {{by: [labels], power: number, age_edges: [ages]}}; got "
                                 f"{spec!r}", code="bad_config")
        targets = self.targets
        if spec and spec.get("age_edges") is not None:
            targets = dict(targets, age_group=age_bands(targets["age"], spec["age_edges"], targets["age_group"]))
        weights = [float(s.get("weight", 1.0)) for s in source_specs(self.cfg)]
        if any(not np.isfinite(w) or w < 0 for w in weights) or not any(weights):
            raise AgeGenderError(f"data.sources: every weight must be a number >= 0 and one above 0; got {weights}",
                                 code="bad_config")
        if not spec and all(w == 1.0 for w in weights):
            return None
        train = self.split["train"]
        src = self.source_index[train]
        w = np.ones(len(train), dtype=np.float64)
        for k, weight in enumerate(weights):
            rows = np.flatnonzero(src == k)
            if not len(rows):
                continue
            if spec:
                b = sampling_weights(self.samples, targets, train[rows], spec["by"], float(spec.get("power", 1.0)))
                w[rows] = b / b.mean()
            w[rows] *= weight
        if not w.any():
            raise AgeGenderError("data.sources: the sources with a weight above 0 have no training samples",
                                 code="bad_config")
        return w

    def train_sampler(self) -> WeightedRandomSampler | None:
        """``data.sampler``: a group-balanced draw (with replacement, one training-set size per epoch)."""
        w = self._sampler_weights()  # of the training split as it is now (less any undecodable image)
        if w is None:
            return None
        return WeightedRandomSampler(torch.as_tensor(w), num_samples=len(w), replacement=True)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
