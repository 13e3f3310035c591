"""Dataset readers: each official layout read from a small generated (or real) sample, malformed
entries skipped with a reason and one summary warning, and user errors raised with a code."""

from __future__ import annotations

import csv
import os
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.data.readers import (
    DATASETS,
    SkippedEntriesWarning,
    describe_datasets,
    read_dataset,
)
from agegender.data.readers.peta import AGE_TAGS, GENDER_TAGS
from agegender.errors import AgeGenderError
from agegender.labels import ETHNICITIES, MAX_VALID_AGE, SCHEMES

ALL_DATASETS = ("utkface", "peta", "adience", "imdb_wiki", "rap", "fairface", "csv")
#: the five malformed names of the full UTKFace release (see shared/data/utkface/excluded.csv)
UTK_MALFORMED = (
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "24_0_1_20170116220224657 .jpg.chip.jpg",
    "55_0_0_20170116232725357jpg.chip.jpg",
)


# -- fixture helpers: tiny images and label files written in tmp_path at test time


def write_image(path: Path, size: tuple[int, int] = (12, 16), color: tuple[int, int, int] = (120, 80, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".bmp": "BMP"}.get(path.suffix.lower(), "JPEG")
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def write_garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_quietly(name: str, root: Path, **options):
    """Read and return (SampleSet, list of SkippedEntriesWarnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ss = read_dataset(name, root, **options)
    return ss, [w for w in caught if issubclass(w.category, SkippedEntriesWarning)]


def reasons(ss) -> dict[str, str]:
    return {entry: why.split(":")[0] for entry, why in ss.skipped}


# -- registry and user errors


def test_registry_lists_every_reader_with_a_layout():
    assert set(ALL_DATASETS) <= set(DATASETS.names())
    described = {d["name"]: d for d in describe_datasets()}
    for name in ALL_DATASETS:
        d = described[name]
        assert len(d["layout"]) > 80, name  # a real, user-facing paragraph
        assert d["tasks"] and set(d["tasks"]) <= {"age", "age_group", "gender", "ethnicity", "attributes"}
        assert d["default_detector"] in ("none", "haar")
        assert "verify_images" in d["options"]
    assert described["fairface"]["default_detector"] == "haar"
    assert described["utkface"]["default_detector"] == "none"


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_missing_root_says_what_layout_is_expected(tmp_path, name):
    with pytest.raises(AgeGenderError) as err:
        read_dataset(name, tmp_path / "nowhere")
    assert err.value.code == "missing_path"
    assert "Expected layout" in str(err.value)
    assert DATASETS.meta(name)["layout"] in str(err.value)


@pytest.mark.parametrize("name", ["utkface", "peta", "adience", "imdb_wiki", "rap", "fairface", "csv"])
def test_empty_folder_is_a_bad_layout(tmp_path, name):
    with pytest.raises(AgeGenderError) as err:
        read_dataset(name, tmp_path)
    assert err.value.code == "bad_layout"


def test_unknown_dataset_and_option(tmp_path):
    with pytest.raises(AgeGenderError) as err:
        read_dataset("no_such_set", tmp_path)
    assert err.value.code == "unknown_dataset"
    with pytest.raises(AgeGenderError) as err:
        read_dataset("utkface", tmp_path, verfy_images=False)
    assert err.value.code == "bad_config" and "verify_images" in str(err.value)


# -- UTKFace


def make_utkface_folder(root: Path) -> dict[str, str]:
    """The official file-name layout with good and bad entries; returns {bad entry: expected code}."""
    good = [
        "1_0_2_20161219140530307.jpg.chip.jpg",
        "26_1_0_20170116171048641.jpg.chip.jpg",
        "116_1_3_20170120134921760.jpg.chip.jpg",
        "45_0_4_20170117202836258.jpg",  # the in-the-wild (non-chip) variant
    ]
    for n in good:
        write_image(root / n)
    write_image(root / "part2" / "80_1_1_20170110183726390.jpg.chip.jpg")  # searched recursively
    bad = {n: "bad_name" for n in UTK_MALFORMED}
    bad.update(
        {
            "121_0_0_20170112213500903.jpg.chip.jpg": "bad_age",
            "30_2_0_20170112213500904.jpg.chip.jpg": "bad_gender",
            "30_0_5_20170112213500905.jpg.chip.jpg": "bad_ethnicity",
            "30_0_1_20170112213500906.jpg.chip.jpg": "unreadable_image",
        }
    )
    for n, code in bad.items():
        (write_garbage if code == "unreadable_image" else write_image)(root / n)
    (root / "README.txt").write_text("not an entry")
    return bad


def test_utkface_folder_of_names(tmp_path):
    bad = make_utkface_folder(tmp_path)
    ss, warned = read_quietly("utkface", tmp_path)
    assert len(ss) == 5
    assert len(warned) == 1, "one summary warning, not one per file"
    assert reasons(ss) == bad
    assert f"skipped {len(bad)}" in ss.summary() and "bad_name: 5" in ss.summary()
    by_name = {Path(s.path).name: s for s in ss.samples}
    s = by_name["116_1_3_20170120134921760.jpg.chip.jpg"]
    assert (s.age, s.gender, s.ethnicity, s.identity) == (116.0, 1, 3, None)
    assert by_name["45_0_4_20170117202836258.jpg"].ethnicity == ETHNICITIES.index("other")
    assert "80_1_1_20170110183726390.jpg.chip.jpg" in by_name
    assert ss.age_scheme == "adience8"


def test_utkface_without_verification_keeps_unreadable_files(tmp_path):
    make_utkface_folder(tmp_path)
    ss, _ = read_quietly("utkface", tmp_path, verify_images=False)
    assert len(ss) == 6  # the garbage file is only caught by the header check


def test_utkface_labels_csv_layout(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    write_image(tmp_path / "images" / "b.jpg")
    write_image(tmp_path / "images" / "c.jpg")
    write_csv(
        tmp_path / "labels.csv",
        ["file", "age", "gender", "race", "age_group", "age_group_label"],
        [["a.jpg", 25, 1, 2, 4, "25-32"], ["b.jpg", 130, 0, 0, 7, "60+"], ["c.jpg", 40, 3, 0, 5, "38-43"],
         ["gone.jpg", 20, 0, 0, 3, "15-20"]],
    )
    ss, warned = read_quietly("utkface", tmp_path)
    assert [(s.age, s.gender, s.ethnicity) for s in ss.samples] == [(25.0, 1, 2)]
    assert reasons(ss) == {"b.jpg": "bad_age", "c.jpg": "bad_gender", "gone.jpg": "missing_file"}
    assert len(warned) == 1


def test_utkface_csv_missing_column(tmp_path):
    write_csv(tmp_path / "labels.csv", ["file", "age", "gender"], [["a.jpg", 1, 0]])
    with pytest.raises(AgeGenderError) as err:
        read_dataset("utkface", tmp_path)
    assert err.value.code == "bad_labels" and "race" in str(err.value)


def test_utkface_real_sample_in_official_layout(tmp_path, utkface_dir):
    # Real files under their real names (symlinks, nothing copied), plus the release's malformed names.
    real = sorted(os.listdir(utkface_dir / "images"))[::400]
    for n in real:
        os.symlink(utkface_dir / "images" / n, tmp_path / n)
    for n in UTK_MALFORMED:
        os.symlink(utkface_dir / "images" / real[0], tmp_path / n)
    ss, warned = read_quietly("utkface", tmp_path)
    assert len(ss) == len(real) and len(ss.skipped) == 5 and len(warned) == 1
    for s in ss.samples:
        age, gender, race = Path(s.path).name.split("_")[:3]
        assert (s.age, s.gender, s.ethnicity) == (float(age), int(gender), int(race))


def test_utkface_real_labels_csv(utkface_dir):
    ss, warned = read_quietly("utkface", utkface_dir)
    assert len(ss) == 18443 and not ss.skipped and not warned
    with open(utkface_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(s.path).name for s in ss.samples] == [r["file"] for r in rows]
    sch = SCHEMES["adience8"]
    for s, r in zip(ss.samples[::97], rows[::97]):
        assert (s.age, s.gender, s.ethnicity) == (float(r["age"]), int(r["gender"]), int(r["race"]))
        assert s.group_in(sch) == int(r["age_group"])
    assert all(0 <= s.age <= MAX_VALID_AGE for s in ss.samples)


# -- PETA

#: PETA's development distribution (shared/data/peta/README.md): (age group label, gender) → images
PETA_TABLE = {
    ("0-15", 0): 56, ("0-15", 1): 9, ("16-30", 0): 2827, ("16-30", 1): 2150, ("31-45", 0): 1728,
    ("31-45", 1): 1298, ("46-60", 0): 441, ("46-60", 1): 550, ("61+", 0): 242, ("61+", 1): 172,
    (None, 0): 5, (None, 1): 22,
}


def test_peta_real_labels_csv(peta_dir):
    ss, warned = read_quietly("peta", peta_dir)
    assert len(ss) == 9500 and not ss.skipped and not warned
    assert len({s.identity for s in ss.samples}) == 4516
    labels = SCHEMES["peta5"].labels
    counts: dict = {}
    for s in ss.samples:
        key = (None if s.age_group is None else labels[s.age_group], s.gender)
        counts[key] = counts.get(key, 0) + 1
    assert counts == PETA_TABLE
    assert not set(ss.attribute_names) & (set(GENDER_TAGS) | set(AGE_TAGS))
    assert list(ss.attribute_names) == sorted(ss.attribute_names)
    assert all(len(s.attributes) == len(ss.attribute_names) for s in ss.samples)
    cuhk = [s for s in ss.samples if s.extra["subset"] == "CUHK"]
    assert len({s.identity for s in cuhk}) == len(cuhk), "each CUHK image is its own identity"
    first = ss.samples[0]  # 3DPeS__1_12_FRAME_48_RGB.png: personalLess45, personalMale, hairBlack, ...
    assert (first.identity, first.gender, labels[first.age_group]) == ("3DPeS/1", 0, "31-45")
    assert first.attributes[ss.attribute_names.index("hairBlack")] == 1
    assert first.attributes[ss.attribute_names.index("hairLong")] == 0


def test_peta_release_layout_matches_labels_csv(tmp_path, peta_dir):
    """Rebuild the official layout for part of the real data (symlinks + Label.txt per identity):
    both readers must give the same labels."""
    with open(peta_dir / "labels.csv", newline="") as fh:
        rows = [r for i, r in enumerate(csv.DictReader(fh)) if i % 9 == 0]
    labels: dict[tuple[str, str], str] = {}
    for r in rows:
        archive = tmp_path / "PETA dataset" / r["subset"] / "archive"
        archive.mkdir(parents=True, exist_ok=True)
        original = r["file"].split("__", 1)[1]
        os.symlink(peta_dir / "images" / r["file"], archive / original)
        labels[(r["subset"], r["person_id"])] = r["attributes"]
    for (subset, pid), tags in labels.items():
        with open(tmp_path / "PETA dataset" / subset / "archive" / "Label.txt", "a") as fh:
            fh.write(f"{pid} {tags}\n")
    release, _ = read_quietly("peta", tmp_path)
    assert len(release) == len(rows) and not release.skipped
    want = {(r["subset"], r["file"].split("__", 1)[1]): r for r in rows}
    sch = SCHEMES["peta5"]
    for s in release.samples:
        r = want[(s.extra["subset"], Path(s.path).name)]
        assert s.identity == f"{r['subset']}/{r['person_id']}"
        assert s.gender == int(r["gender"])
        assert s.age_group == (sch.parse(r["age_group"]) if r["age_group"] else None)
        tags = {release.attribute_names[i] for i, v in enumerate(s.attributes) if v}
        assert tags == set(r["attributes"].split()) - set(GENDER_TAGS) - set(AGE_TAGS)


def test_peta_release_layout_generated(tmp_path):
    base = tmp_path / "PETA dataset"
    a = base / "3DPeS" / "archive"
    write_image(a / "1_12_FRAME_48_RGB.bmp")
    write_image(a / "1_15_FRAME_21_RGB.bmp")
    write_image(a / "100_3_FRAME_26_RGB.bmp")
    write_image(a / "7_1_FRAME_1_RGB.bmp")  # no line in Label.txt
    write_garbage(a / "2_1_FRAME_1_RGB.bmp")
    (a / "Label.txt").write_text(
        "1 upperBodyBlue hairBlack personalLess45 personalMale\n"
        "100 upperBodyRed personalLess30 personalLess45 personalFemale\n"  # conflicting age tags
        "2 hairBlack personalMale personalLess30\n"
        "\n"
    )
    c = base / "CUHK" / "archive"
    write_image(c / "0001.png")
    write_image(c / "0002.png")
    (c / "Label.txt").write_text("0001.png carryingBackpack personalLarger60 personalFemale\n"
                                 "0002.png carryingBackpack personalLess15\n")  # no gender tag
    g = base / "GRID" / "archive"
    write_image(g / "0006_1_25200_157_32_78_218.jpeg")
    (g / "Label.txt").write_text("6 lowerBodyJeans personalLess60 personalMale\n")  # id without its zeros
    ss, warned = read_quietly("peta", tmp_path)
    assert len(warned) == 1
    assert reasons(ss) == {"3DPeS/7_1_FRAME_1_RGB.bmp": "no_label", "3DPeS/2_1_FRAME_1_RGB.bmp": "unreadable_image"}
    assert ss.attribute_names == ("carryingBackpack", "hairBlack", "lowerBodyJeans", "upperBodyBlue", "upperBodyRed")
    by = {Path(s.path).name: s for s in ss.samples}
    sch = SCHEMES["peta5"]
    s = by["1_15_FRAME_21_RGB.bmp"]
    assert (s.identity, s.gender, sch.labels[s.age_group], s.attributes) == ("3DPeS/1", 0, "31-45", (0, 1, 0, 1, 0))
    assert by["100_3_FRAME_26_RGB.bmp"].age_group is None and by["100_3_FRAME_26_RGB.bmp"].gender == 1
    assert by["0001.png"].identity == "CUHK/0001.png" and sch.labels[by["0001.png"].age_group] == "61+"
    assert by["0002.png"].gender is None and by["0002.png"].age_group == 0
    assert by["0006_1_25200_157_32_78_218.jpeg"].identity == "GRID/6"


def test_peta_csv_bad_rows(tmp_path):
    for n in ("a.png", "b.png", "c.png", "d.png"):
        write_image(tmp_path / "images" / n)
    write_csv(
        tmp_path / "labels.csv",
        ["file", "subset", "person_id", "gender", "age_group", "age_attr_raw", "attributes"],
        [["a.png", "VIPeR", "001", 1, "16-30", "personalLess30", "hairLong personalFemale personalLess30"],
         ["b.png", "VIPeR", "002", 2, "16-30", "", "hairLong"],
         ["c.png", "VIPeR", "003", 0, "99-100", "", "hairShort"],
         ["d.png", "VIPeR", "004", "", "", "", "hairShort"]],
    )
    ss, warned = read_quietly("peta", tmp_path)
    assert reasons(ss) == {"b.png": "bad_gender", "c.png": "bad_age_group"} and len(warned) == 1
    assert ss.attribute_names == ("hairLong", "hairShort")
    assert [(s.identity, s.gender, s.age_group) for s in ss.samples] == [("VIPeR/001", 1, 1), ("VIPeR/004", None, None)]


# -- Adience

ADIENCE_HEADER = ["user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy", "tilt_ang",
                  "fiducial_yaw_angle", "fiducial_score"]


def adience_row(user: str, image: str, face: int, age: str, gender: str) -> list[object]:
    return [user, image, face, age, gender, 0, 414, 1086, 1383, -115, 30, 17]


def make_adience(root: Path) -> None:
    rows0 = [
        adience_row("30601258@N03", "10399646885_67c7d20df9_o.jpg", 1, "(25, 32)", "f"),
        adience_row("30601258@N03", "10424815813_e94629b1ec_o.jpg", 2, "(8, 23)", "m"),
        adience_row("30601258@N03", "10437979845_5985be4b26_o.jpg", 1, "35", "u"),
        adience_row("30601258@N03", "11816644924_075c3d8d59_o.jpg", 3, "None", "m"),
        adience_row("30601258@N03", "missing_image_o.jpg", 4, "(60, 100)", "f"),
        adience_row("30601258@N03", "10644_bad_o.jpg", 5, "(25, 32)", "x"),
    ]
    rows1 = [
        adience_row("7153718@N04", "11835435575_6ad8b5a4cd_o.jpg", 7, "(38, 42)", ""),
        adience_row("7153718@N04", "11835460725_5a5a2b1d4f_o.jpg", 8, "(0, 2)", "f"),
    ]
    write_csv(root / "fold_0_data.txt", ADIENCE_HEADER, rows0, delimiter="\t")
    write_csv(root / "fold_1_data.txt", ADIENCE_HEADER, rows1, delimiter="\t")
    for r in rows0 + rows1:
        if "missing" in r[1]:
            continue
        if r[1].startswith("11835460725"):  # only the coarse crop exists for this one
            write_image(root / "faces" / r[0] / f"coarse_tilt_aligned_face.{r[2]}.{r[1]}")
        else:
            write_image(root / "aligned" / r[0] / f"landmark_aligned_face.{r[2]}.{r[1]}")


def test_adience_folds_ages_and_genders(tmp_path):
    make_adience(tmp_path)
    ss, warned = read_quietly("adience", tmp_path)
    assert len(warned) == 1
    assert reasons(ss) == {"fold_0_data.txt:5": "missing_age", "fold_0_data.txt:6": "missing_file",
                           "fold_0_data.txt:7": "bad_gender"}
    labels = SCHEMES["adience8"].labels
    got = [(labels[s.age_group], s.gender, s.extra["fold"], s.extra["age_raw"]) for s in ss.samples]
    assert got == [
        ("25-32", 1, 0, "(25, 32)"),
        ("15-20", 0, 0, "(8, 23)"),  # stray range → its midpoint 15.5
        ("25-32", None, 0, "35"),  # exact age → group_of(35), the 25-32 side of the 35.0 cut
        ("38-43", None, 1, "(38, 42)"),
        ("0-2", 1, 1, "(0, 2)"),
    ]
    assert all(s.age is None and s.age_scheme == "adience8" for s in ss.samples)
    assert ss.samples[0].identity == "30601258@N03"
    assert "/faces/" in ss.samples[-1].path and "/aligned/" in ss.samples[0].path


def test_adience_folds_option_and_style(tmp_path):
    make_adience(tmp_path)
    ss, _ = read_quietly("adience", tmp_path, folds=[1])
    assert {s.extra["fold"] for s in ss.samples} == {1} and len(ss) == 2
    ss, _ = read_quietly("adience", tmp_path, folds=[1], image_style="aligned")
    assert len(ss) == 1 and reasons(ss) == {"fold_1_data.txt:3": "missing_file"}
    with pytest.raises(AgeGenderError) as err:
        read_dataset("adience", tmp_path, image_style="tilted")
    assert err.value.code == "bad_config"


@pytest.mark.parametrize(
    ("label", "group"),
    [("(0, 2)", "0-2"), ("(4, 6)", "4-6"), ("(8, 12)", "8-13"), ("(15, 20)", "15-20"), ("(27, 32)", "25-32"),
     ("(38, 48)", "38-43"), ("(48, 53)", "48-53"), ("(60, 100)", "60+"), ("13", "8-13"), ("57", "60+"),
     ("3", "0-2"), ("22", "15-20")],
)
def test_adience_age_mapping(label, group):
    from agegender.data.readers.adience import age_group_of

    assert SCHEMES["adience8"].labels[age_group_of(label)] == group


# -- IMDB-WIKI


def datenum(d: date) -> float:
    """Matlab serial date number of a date (Matlab day 1 = 1 Jan year 0)."""
    return float(d.toordinal() + 366)


def make_imdb(folder: Path, kind: str = "imdb") -> dict[str, str]:
    """A faithful <kind>.mat (a 1x1 struct whose fields are 1xN arrays or cells, as DEX ships it) and
    its images; returns {entry: expected skip code}."""
    from scipy.io import savemat

    entries = [
        # (full_path, dob, photo_taken, gender, face_score, second_face_score, name, expectation)
        ("01/nm0000001_rm1_1980-3-15_2010.jpg", datenum(date(1980, 3, 15)), 2010, 1.0, 4.5, np.nan, "Fred Astaire", "ok"),
        ("01/nm0000002_rm2_1980-9-1_2010.jpg", datenum(date(1980, 9, 1)), 2010, 0.0, 2.0, np.nan, "Lauren Bacall", "ok"),
        ("02/nm0000003_rm3_1990-1-1_2000.jpg", datenum(date(1990, 1, 1)), 2000, np.nan, 3.0, np.nan, "X", "missing_gender"),
        ("02/nm0000004_rm4_1800-1-1_2000.jpg", datenum(date(1800, 1, 1)), 2000, 1.0, 3.0, np.nan, "Y", "bad_age"),
        ("03/nm0000005_rm5_1970-1-1_2000.jpg", datenum(date(1970, 1, 1)), 2000, 1.0, -np.inf, np.nan, "Z", "low_face_score"),
        ("03/nm0000006_rm6_1970-1-1_2000.jpg", datenum(date(1970, 1, 1)), 2000, 1.0, 0.5, np.nan, "Z", "low_face_score"),
        ("04/nm0000007_rm7_1970-1-1_2000.jpg", datenum(date(1970, 1, 1)), 2000, 1.0, 3.0, 1.7, "W", "second_face"),
        ("04/nm0000008_rm8_1970-1-1_2000.jpg", datenum(date(1970, 1, 1)), 2000, 0.0, 3.0, np.nan, "V", "missing_file"),
        ("05/nm0000009_rm9_0-0-0_2000.jpg", 0.0, 2000, 0.0, 3.0, np.nan, "U", "bad_dob"),
    ]
    n = len(entries)

    def cell(values: list) -> np.ndarray:  # a 1xN Matlab cell array
        return np.array(values, dtype=object).reshape(1, n)

    locations = np.empty((1, n), dtype=object)
    for i in range(n):
        locations[0, i] = np.array([[11.0, 21.0, 60.0, 80.0]])
    struct = {
        "dob": np.array([[e[1] for e in entries]]),
        "photo_taken": np.array([[e[2] for e in entries]], dtype=np.uint16),
        "full_path": cell([e[0] for e in entries]),
        "gender": np.array([[e[3] for e in entries]]),
        "name": cell([e[6] for e in entries]),
        "face_location": locations,
        "face_score": np.array([[e[4] for e in entries]]),
        "second_face_score": np.array([[e[5] for e in entries]]),
    }
    if kind == "imdb":
        struct["celeb_names"] = cell([e[6] for e in entries])
        struct["celeb_id"] = np.arange(1, n + 1, dtype=np.uint16).reshape(1, n)
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / f"{kind}.mat", {kind: struct})
    for e in entries:
        if e[7] != "missing_file":
            write_image(folder / e[0])
    return {f"{kind}:{e[0]}": e[7] for e in entries if e[7] != "ok"}


def test_imdb_wiki_generated_mat(tmp_path):
    expected = make_imdb(tmp_path / "imdb_crop", "imdb")
    ss, warned = read_quietly("imdb_wiki", tmp_path)
    assert len(warned) == 1
    assert reasons(ss) == expected
    a, b = ss.samples
    assert (a.age, a.gender, a.identity) == (30.0, 0, "Fred Astaire")  # born in March: 2010 - 1980
    assert (b.age, b.gender, b.identity) == (29.0, 1, "Lauren Bacall")  # born after June: one less
    assert a.box is None and a.extra["face_location"] == (10.0, 20.0, 60.0, 80.0)  # crops: box is not theirs
    assert a.extra["celeb_id"] == 1 and a.path.endswith("imdb_crop/01/nm0000001_rm1_1980-3-15_2010.jpg")


def test_imdb_wiki_options_and_full_images(tmp_path):
    make_imdb(tmp_path / "wiki", "wiki")
    ss, _ = read_quietly("imdb_wiki", tmp_path, min_face_score=0.0, skip_second_face=False)
    assert len(ss) == 4  # + the 0.5 face score and the second-face entry
    assert ss.samples[0].box == (10.0, 20.0, 60.0, 80.0)  # full images: 1-based Matlab box → 0-based
    assert "celeb_id" not in ss.samples[0].extra
    with pytest.raises(AgeGenderError) as err:
        read_dataset("imdb_wiki", tmp_path, subset="imdb")
    assert err.value.code == "bad_layout"


def test_imdb_wiki_dex_age():
    from agegender.data.readers.imdb_wiki import dex_age

    assert dex_age(datenum(date(1950, 6, 30)), 2000) == 50
    assert dex_age(datenum(date(1950, 7, 1)), 2000) == 49
    assert dex_age(730486.0, 2010) == 10  # MATLAB: datenum(2000, 1, 1) == 730486


# -- RAP v2

RAP_COLUMNS = ["Femal", "AgeLess16", "Age17-30", "Age31-45", "Age46-60", "BodyFat", "hs-LongHair", "ub-Jacket"]


def make_rap(root: Path) -> None:
    from scipy.io import savemat

    images = ["CAM01_2014-02-15_20140215161032-20140215162620_tarid0_frame218_line1.png",
              "CAM01_2014-02-15_20140215161032-20140215162620_tarid1_frame2_line1.png",
              "CAM02_2014-03-04_20140304100004-20140304100524_tarid5_frame1_line2.png",
              "CAM02_missing.png"]
    data = np.array([
        [1, 0, 1, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1, 1, 0, 1],
        [2, 0, 1, 1, 0, 0, 0, 1],  # uncertain gender, two age columns
        [0, 1, 0, 0, 0, 0, 0, 0],
    ], dtype=np.uint8)
    names = np.empty((len(images), 1), dtype=object)
    names[:, 0] = images
    attrs = np.empty((len(RAP_COLUMNS), 1), dtype=object)
    attrs[:, 0] = RAP_COLUMNS
    part = np.empty((1, 2), dtype=object)
    part[0, 0] = {"train_index": np.array([[1, 2]]), "val_index": np.array([[3]]), "test_index": np.array([[4]])}
    part[0, 1] = {"train_index": np.array([[3, 4]]), "val_index": np.array([[1]]), "test_index": np.array([[2]])}
    ann = {"name": names, "attribute": attrs, "data": data,
           "person_identity": np.array([[7], [7], [-1], [9]]), "partition_attribute": part,
           "selected_attribute": np.arange(1, len(RAP_COLUMNS) + 1).reshape(1, -1)}
    (root / "RAP_annotation").mkdir(parents=True)
    savemat(root / "RAP_annotation" / "RAP_annotation.mat", {"RAP_annotation": ann})
    for n in images[:3]:
        write_image(root / "RAP_dataset" / n, size=(20, 50))


def test_rap_generated_mat(tmp_path):
    make_rap(tmp_path)
    ss, warned = read_quietly("rap", tmp_path)
    assert len(warned) == 1 and len(ss) == 3
    assert [why.split(":")[0] for _, why in ss.skipped] == ["missing_file"]
    assert ss.attribute_names == ("BodyFat", "hs-LongHair", "ub-Jacket")
    labels = SCHEMES["peta5"].labels
    a, b, c = ss.samples
    assert (a.gender, labels[a.age_group], a.attributes, a.identity) == (1, "16-30", (0, 1, 0), "7")
    assert (b.gender, labels[b.age_group], b.attributes) == (0, "46-60", (1, 0, 1))
    assert (c.gender, c.age_group, c.identity) == (None, None, None)
    assert [s.extra["split"] for s in ss.samples] == ["train", "train", "val"]
    ss1, _ = read_quietly("rap", tmp_path, partition=1)
    assert [s.extra["split"] for s in ss1.samples] == ["val", "test", "train"]
    ss2, _ = read_quietly("rap", tmp_path, partition=None)
    assert "split" not in ss2.samples[0].extra
    with pytest.raises(AgeGenderError) as err:
        read_dataset("rap", tmp_path, partition=7)
    assert err.value.code == "bad_config"


# -- FairFace


def test_fairface_csvs(tmp_path):
    header = ["file", "age", "gender", "race", "service_test"]
    train = [
        ["train/1.jpg", "50-59", "Male", "East Asian", "True"],
        ["train/2.jpg", "30-39", "Female", "Indian", "False"],
        ["train/3.jpg", "more than 70", "Female", "Latino_Hispanic", "False"],
        ["train/4.jpg", "", "", "", ""],
        ["train/5.jpg", "3-9", "Male", "Martian", "False"],
        ["train/6.jpg", "25-35", "Male", "White", "False"],
    ]
    val = [["val/1.jpg", "0-2", "Male", "Southeast Asian", "True"], ["val/2.jpg", "20-29", "Male", "Black", "True"]]
    write_csv(tmp_path / "fairface_label_train.csv", header, train)
    write_csv(tmp_path / "fairface_label_val.csv", header, val)
    for r in train + val[:1]:
        write_image(tmp_path / r[0])
    ss, warned = read_quietly("fairface", tmp_path)
    assert len(warned) == 1
    assert reasons(ss) == {"train/5.jpg": "bad_race", "train/6.jpg": "bad_age", "val/2.jpg": "missing_file"}
    labels = SCHEMES["fairface9"].labels
    got = [(None if s.age_group is None else labels[s.age_group], s.gender,
            None if s.ethnicity is None else ETHNICITIES[s.ethnicity], s.extra.get("race7"), s.extra["split"])
           for s in ss.samples]
    assert got == [
        ("50-59", 0, "asian", "East Asian", "train"),
        ("30-39", 1, "indian", "Indian", "train"),
        ("70+", 1, "other", "Latino_Hispanic", "train"),
        (None, None, None, None, "train"),
        ("0-2", 0, "asian", "Southeast Asian", "val"),
    ]
    assert ss.samples[0].extra["service_test"] is True
    one, _ = read_quietly("fairface", tmp_path / "fairface_label_val.csv")
    assert len(one) == 1


def test_fairface_missing_column(tmp_path):
    write_csv(tmp_path / "fairface_label_train.csv", ["file", "age", "gender"], [["train/1.jpg", "3-9", "Male"]])
    with pytest.raises(AgeGenderError) as err:
        read_dataset("fairface", tmp_path)
    assert err.value.code == "bad_labels"


# -- generic CSV


def test_generic_csv(tmp_path):
    for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"):
        write_image(tmp_path / "images" / n)
    write_image(tmp_path / "top.jpg")
    write_csv(
        tmp_path / "mine.csv",
        ["path", "age", "age_group", "gender", "ethnicity", "identity", "notes"],
        [["images/a.jpg", "31", "25-32", "F", "asian", "p1", "x"],
         ["b.jpg", "", "7", "male", "3", "", ""],  # found under images/
         ["top.jpg", "4.5", "", "0", "", "p2", ""],
         ["images/c.jpg", "", "", "x", "", "", ""],
         ["images/d.jpg", "", "", "", "martian", "", ""],
         ["images/e.jpg", "", "99", "", "", "", ""],
         ["", "3", "", "", "", "", ""],
         ["images/none.jpg", "", "", "1", "", "", ""]],
    )
    ss, warned = read_quietly("csv", tmp_path / "mine.csv", age_scheme="adience8")
    assert len(warned) == 1
    assert reasons(ss) == {"images/c.jpg": "bad_gender", "images/d.jpg": "bad_ethnicity",
                           "images/e.jpg": "bad_age_group", "mine.csv:8": "missing_file",
                           "images/none.jpg": "missing_file"}
    got = [(s.age, s.age_group, s.gender, s.ethnicity, s.identity) for s in ss.samples]
    assert got == [(31.0, 4, 1, 2, "p1"), (None, 7, 0, 3, None), (4.5, None, 0, None, "p2")]
    assert ss.samples[1].path.endswith("images/b.jpg") and ss.samples[1].age_scheme == "adience8"


def test_generic_csv_errors(tmp_path):
    write_csv(tmp_path / "labels.csv", ["image", "age"], [["a.jpg", 3]])
    with pytest.raises(AgeGenderError) as err:
        read_dataset("csv", tmp_path)
    assert err.value.code == "bad_labels" and "image" in str(err.value) and "file" in str(err.value)
    write_csv(tmp_path / "labels.csv", ["file", "notes"], [["a.jpg", 3]])
    with pytest.raises(AgeGenderError) as err:
        read_dataset("csv", tmp_path)
    assert err.value.code == "bad_labels"
    write_csv(tmp_path / "labels.csv", ["file", "age_group"], [["a.jpg", "25-32"]])
    with pytest.raises(AgeGenderError) as err:
        read_dataset("csv", tmp_path)
    assert err.value.code == "bad_config" and "age_scheme" in str(err.value)
