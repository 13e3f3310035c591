"""Age-group schemes and the sample schema."""

import numpy as np
import pytest

from agegender.errors import AgeGenderError
from agegender.labels import SCHEMES, Sample, get_scheme

# The adience8 mapping of exact ages stated in the foundation issue / UTKFace README.
ADIENCE_BINS = [(0, 3), (4, 7), (8, 14), (15, 22), (23, 35), (36, 45), (46, 56), (57, 116)]


@pytest.mark.parametrize("group,bounds", list(enumerate(ADIENCE_BINS)))
def test_adience8_exact_ages(group, bounds):
    s = get_scheme("adience8")
    lo, hi = bounds
    for age in range(lo, hi + 1):
        assert s.group_of(age) == group, age


def test_adience8_matches_utkface_labels_csv(utkface_dir):
    import csv

    s = get_scheme("adience8")
    with open(utkface_dir / "labels.csv") as f:
        rows = list(csv.DictReader(f))[:3000]
    for r in rows:
        assert s.group_of(int(r["age"])) == int(r["age_group"])
        assert s.labels[int(r["age_group"])] == r["age_group_label"]


@pytest.mark.parametrize(
    "name,age,label",
    [("kang4", 30, "0-30"), ("kang4", 31, "31-45"), ("kang4", 61, "61+"), ("peta5", 15, "0-15"), ("peta5", 16, "16-30"),
     ("fairface9", 2, "0-2"), ("fairface9", 3, "3-9"), ("fairface9", 70, "70+"), ("fairface9", 69, "60-69")],
)
def test_integer_schemes(name, age, label):
    s = get_scheme(name)
    assert s.labels[s.group_of(age)] == label


def test_probs_from_years_sums_groups():
    s = get_scheme("kang4")
    p = np.zeros((1, 101))
    p[0, 20] = 0.25
    p[0, 40] = 0.5
    p[0, 90] = 0.25
    np.testing.assert_allclose(s.probs_from_years(p), [[0.25, 0.5, 0.0, 0.25]])


def test_groups_of_nan_is_missing():
    assert list(get_scheme("adience8").groups_of([np.nan, 30])) == [-1, 4]


def test_parse_labels():
    s = get_scheme("adience8")
    assert s.parse("(25, 32)") == 4
    assert s.parse("60+") == 7
    assert s.parse("(60, 100)") == 7
    with pytest.raises(AgeGenderError):
        s.parse("(8, 23)")


def test_unknown_scheme():
    with pytest.raises(AgeGenderError, match="adience8"):
        get_scheme("nope")


def test_sample_group_in_any_scheme():
    s = Sample("x.jpg", age=33)
    assert s.group_in("adience8") == 4 and s.group_in("kang4") == 1
    g = Sample("y.jpg", age_group=2, age_scheme="peta5")
    assert g.group_in("peta5") == 2 and g.group_in("adience8") is None
    assert set(SCHEMES) == {"adience8", "kang4", "peta5", "fairface9"}
