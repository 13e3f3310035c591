"""The label schema shared by every dataset, model and metric: tasks, label names and age-group schemes.

One place defines each fact (DESIGN.md): gender and ethnicity names, the age range of
distribution heads, and the age-group schemes used everywhere (`adience8`, `kang4`, `peta5`,
`fairface9`). A model that predicts years can be scored in any scheme through
:meth:`AgeScheme.group_of` / :meth:`AgeScheme.probs_from_years`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agegender.errors import AgeGenderError

#: the age of majority that the under-18 figures (false-adult rate, probability of a minor, the under-age guard) use
ADULT_AGE = 18

#: gender index → name (UTKFace/PETA convention: 0 = male, 1 = female)
GENDERS: tuple[str, ...] = ("male", "female")
#: ethnicity index → name (UTKFace's 5 classes)
ETHNICITIES: tuple[str, ...] = ("white", "black", "asian", "indian", "other")
#: ages covered by distribution heads: 0..MAX_AGE inclusive (DEX / DLDL style)
MAX_AGE: int = 100
AGE_BINS: int = MAX_AGE + 1
#: the maximum plausible age a reader accepts (UTKFace's oldest is 116)
MAX_VALID_AGE: int = 120
#: years an open top group ("60+") is taken to cover when its probability is spread over years (so its
#: typical age is its lower bound + 5, as in :meth:`AgeScheme.representative_age`)
OPEN_GROUP_YEARS: int = 10
#: task names used as keys for targets, model outputs, losses and metrics
TASKS: tuple[str, ...] = ("age", "age_group", "gender", "ethnicity", "attributes")


@dataclass(frozen=True)
class AgeScheme:
    """Age groups defined by their labels and the cut points between them.

    ``cuts[i]`` separates group ``i`` from ``i+1``: an age ``a`` falls into group
    ``#{cuts < a}``, so an age equal to a cut goes to the younger group.
    """

    name: str
    labels: tuple[str, ...]
    cuts: tuple[float, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.cuts) != len(self.labels) - 1:
            raise ValueError(f"scheme {self.name}: need {len(self.labels) - 1} cuts")

    @property
    def num_groups(self) -> int:
        return len(self.labels)

    def group_of(self, age: float) -> int:
        """Group index of one age in years (fractional ages allowed)."""
        return int(np.searchsorted(np.asarray(self.cuts), float(age), side="left"))

    def groups_of(self, ages: Sequence[float] | np.ndarray) -> np.ndarray:
        """Vectorised :meth:`group_of`; NaN ages map to -1."""
        a = np.asarray(ages, dtype=np.float64)
        out = np.searchsorted(np.asarray(self.cuts), a, side="left").astype(np.int64)
        out[np.isnan(a)] = -1
        return out

    def year_to_group_matrix(self, num_years: int = AGE_BINS) -> np.ndarray:
        """(num_years, num_groups) 0/1 matrix: year y belongs to group g."""
        groups = self.groups_of(np.arange(num_years))
        m = np.zeros((num_years, self.num_groups), dtype=np.float32)
        m[np.arange(num_years), groups] = 1.0
        return m

    def probs_from_years(self, year_probs: np.ndarray) -> np.ndarray:
        """Aggregate a distribution over years 0..N-1 (last axis) into group probabilities."""
        year_probs = np.asarray(year_probs)
        return year_probs @ self.year_to_group_matrix(year_probs.shape[-1])

    def year_weights(self, num_years: int = AGE_BINS) -> np.ndarray:
        """(num_groups, num_years): each group's probability spread evenly over the years it covers, the open
        top group over its first :data:`OPEN_GROUP_YEARS` years."""
        m = self.year_to_group_matrix(num_years).T.copy()
        top = m[-1]
        first = int(np.argmax(top))
        top[first + OPEN_GROUP_YEARS:] = 0.0
        return m / np.clip(m.sum(axis=1, keepdims=True), 1e-12, None)

    def transfer_matrix(self, dst: AgeScheme, num_years: int = AGE_BINS) -> np.ndarray:
        """(groups of this scheme × groups of ``dst``): group probabilities of this scheme re-expressed in ``dst``,
        each group spread over its years (:meth:`year_weights`) and regrouped. The one rule for every change of
        scheme, in prediction and in evaluation."""
        if dst.name == self.name:
            return np.eye(self.num_groups, dtype=np.float32)
        return (self.year_weights(num_years) @ dst.year_to_group_matrix(num_years)).astype(np.float32)

    def parse(self, label: str) -> int:
        """Index of a group label such as ``25-32``, ``(25, 32)``, ``60+`` or ``(60, 100)``."""
        text = str(label).strip()
        norm = re.sub(r"[()\s]", "", text).replace(",", "-")
        for i, lab in enumerate(self.labels):
            if norm == lab:
                return i
        m = re.fullmatch(r"(\d+)-(\d+)", norm)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            for i, lab in enumerate(self.labels):
                if lab.endswith("+") and lo == int(lab[:-1]):
                    return i
                lm = re.fullmatch(r"(\d+)-(\d+)", lab)
                if lm and (int(lm.group(1)), int(lm.group(2))) == (lo, hi):
                    return i
        raise AgeGenderError(
            f"age group {label!r} is not one of the {self.name} groups {list(self.labels)}", code="bad_label"
        )

    def representative_age(self) -> np.ndarray:
        """A typical age in years for each group (midpoint; open top group: lower bound + 5)."""
        reps = []
        for lab in self.labels:
            if lab.endswith("+"):
                reps.append(float(lab[:-1]) + 5.0)
            else:
                lo, hi = (float(x) for x in lab.split("-"))
                reps.append((lo + hi) / 2.0)
        return np.asarray(reps, dtype=np.float32)


def _integer_cuts(uppers: Sequence[int]) -> tuple[float, ...]:
    # Integer-labelled ranges ("0-30"): a fractional estimate is rounded to the nearest year.
    return tuple(u + 0.5 for u in uppers)


SCHEMES: dict[str, AgeScheme] = {
    # Adience's 8 groups with gaps; exact ages go to the nearest group edge, ties to the younger
    # group: 0–3, 4–7, 8–14, 15–22, 23–35, 36–45, 46–56, ≥57 (midpoints 3, 7, 14, 22.5, 35, 45.5, 56.5).
    "adience8": AgeScheme(
        "adience8",
        ("0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53", "60+"),
        (3.0, 7.0, 14.0, 22.5, 35.0, 45.5, 56.5),
        "Adience's 8 groups; exact ages by nearest edge (0-3,4-7,8-14,15-22,23-35,36-45,46-56,57+)",
    ),
    "kang4": AgeScheme("kang4", ("0-30", "31-45", "46-60", "61+"), _integer_cuts((30, 45, 60)), "kang2019 intervals"),
    "peta5": AgeScheme(
        "peta5", ("0-15", "16-30", "31-45", "46-60", "61+"), _integer_cuts((15, 30, 45, 60)), "PETA age groups"
    ),
    "fairface9": AgeScheme(
        "fairface9",
        ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"),
        _integer_cuts((2, 9, 19, 29, 39, 49, 59, 69)),
        "FairFace's 9 groups",
    ),
}


def get_scheme(name: str | AgeScheme) -> AgeScheme:
    if isinstance(name, AgeScheme):
        return name
    try:
        return SCHEMES[name]
    except KeyError:
        raise AgeGenderError(
            f"unknown age scheme {name!r}; choose one of: {', '.join(SCHEMES)}", code="unknown_scheme"
        ) from None


@dataclass
class Sample:
    """One labelled image. Every label is optional; losses and metrics skip missing ones.

    ``age_group`` is an index into the scheme named by ``age_scheme``. ``attributes`` is a
    multi-hot vector over the dataset's ``attribute_names``. ``box`` is an optional face/person
    box (x1, y1, x2, y2) in pixels inside ``path``'s image.
    """

    path: str
    age: float | None = None
    age_group: int | None = None
    age_scheme: str | None = None
    gender: int | None = None
    ethnicity: int | None = None
    attributes: tuple[int, ...] | None = None
    identity: str | None = None
    box: tuple[float, float, float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def group_in(self, scheme: str | AgeScheme) -> int | None:
        """Age group of this sample in ``scheme``: from the exact age when known, else the stored
        group when it is already in that scheme, else None."""
        sch = get_scheme(scheme)
        if self.age is not None:
            return sch.group_of(self.age)
        if self.age_group is not None and self.age_scheme == sch.name:
            return self.age_group
        return None


@dataclass
class SampleSet:
    """What a dataset reader returns: samples, dataset-level label names and what was skipped."""

    name: str
    samples: list[Sample]
    attribute_names: tuple[str, ...] = ()
    age_scheme: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)
    root: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for _, why in self.skipped:
            key = why.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        return f"{self.name}: loaded {len(self.samples)} samples, skipped {len(self.skipped)}" + (
            f" ({detail})" if detail else ""
        )

    def subset(self, indices: Sequence[int]) -> SampleSet:
        return SampleSet(
            self.name, [self.samples[i] for i in indices], self.attribute_names, self.age_scheme, [], self.root
        )
