"""Person mode (agegender.inference.person): face + body per person, the log-odds fusion and its guards."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import agegender
from agegender.errors import AgeGenderError
from agegender.inference.person import (
    BODY_MAX_FACE_SHARE,
    FACE_RAMP,
    PersonPredictor,
    face_reliability,
    fuse_gender,
)
from agegender.inference.predictor import load
from agegender.inference.records import to_records
from agegender.inference.results import AgeEstimate, PersonResult


@pytest.fixture(scope="module")
def person() -> PersonPredictor:
    return agegender.load("default-person")


def test_fuse_gender_is_bayes_for_independent_views() -> None:
    # agreeing views grow more certain; a view at 0.5 or with weight 0 leaves the other unchanged
    assert fuse_gender(0.8, 0.8) == pytest.approx(0.8 * 0.8 / (0.8 * 0.8 + 0.2 * 0.2))
    assert fuse_gender(0.9, 0.5) == pytest.approx(0.9)
    assert fuse_gender(0.9, 0.2, w_face=0.0) == pytest.approx(0.2)
    # a confident view outweighs an unsure one, in either direction
    assert fuse_gender(0.95, 0.4) > 0.5 and fuse_gender(0.05, 0.6) < 0.5
    assert fuse_gender(0.7, 0.3) == pytest.approx(0.5)
    assert math.isfinite(fuse_gender(1.0, 0.0))


def test_face_reliability_ramp() -> None:
    lo, hi = FACE_RAMP
    assert face_reliability(lo - 1) == 0.0 and face_reliability(hi + 50) == 1.0
    assert face_reliability((lo + hi) / 2) == pytest.approx(0.5)


def _result(box, p_female: float, years: float | None = None, attrs: bool = False) -> PersonResult:
    age = None if years is None else AgeEstimate(years=years, interval=None, interval_mass=None, group="25-32",
                                                  group_probs={"25-32": 1.0}, scheme="adience8")
    return PersonResult(box=box, detector_score=0.9, age=age, gender="female" if p_female >= 0.5 else "male",
                        gender_probs={"male": 1 - p_female, "female": p_female},
                        attributes={"hairLong": 0.7} if attrs else None)


def test_fuse_rules(person: PersonPredictor) -> None:
    body = _result((0, 0, 200, 600), 0.3, attrs=True)
    big = _result((60, 20, 150, 110), 0.95, years=30.0)  # 90 px: full weight; 90/600 of the height
    fused = person.fuse(big, body)
    assert sorted(fused.views) == ["body", "face"] and fused.box == body.box
    assert fused.gender_probs["female"] == pytest.approx(fuse_gender(0.95, 0.3), abs=1e-4)
    assert fused.gender == "female" and fused.age.years == 30.0 and fused.attributes == {"hairLong": 0.7}
    small = _result((90, 20, 110, 40), 0.95, years=30.0)  # 20 px: too small to read
    alone = person.fuse(small, body)
    assert list(alone.views) == ["body"] and alone.gender == "male" and alone.age is None
    portrait = _result((0, 0, 200, 0.5 * 600), 0.9, years=40.0)  # the face fills half the "person"
    assert 0.5 > BODY_MAX_FACE_SHARE
    face_only = person.fuse(portrait, body)
    assert list(face_only.views) == ["face"] and face_only.gender == "female" and face_only.box == portrait.box
    assert list(person.fuse(None, body).views) == ["body"]
    with pytest.raises(AgeGenderError):
        person.fuse(None, None)


def test_portrait_is_read_from_the_face(person: PersonPredictor, grace_hopper) -> None:
    people = person.predict(str(grace_hopper))
    assert len(people) == 1
    assert list(people[0].views) == ["face"] and people[0].gender == "female"
    assert people[0].age.years > 50 and people[0].ethnicity is not None


def test_small_face_on_a_tall_person_gives_both_views(grace_hopper) -> None:
    """A pedestrian-like tall image (detector none: the whole image is the person) whose head is a real face
    of ~80 px: the face is found in the head region and fused with the body."""
    face = Image.open(grace_hopper).convert("RGB").crop((150, 110, 380, 360)).resize((90, 98))
    canvas = Image.new("RGB", (240, 720), (90, 90, 110))
    canvas.paste(face, (75, 30))
    pp = PersonPredictor(load("default-body", detector="none"), load("default"))
    people = pp.predict(np.asarray(canvas))
    assert len(people) == 1
    p = people[0]
    assert sorted(p.views) == ["body", "face"]
    assert p.box == (0.0, 0.0, 240.0, 720.0)
    fb = p.views["face"].box
    assert 40 < fb[0] < 120 and fb[1] < 160  # the face's own box, in the image's pixels
    expect = fuse_gender(p.views["face"].gender_probs["female"], p.views["body"].gender_probs["female"],
                         face_reliability(fb[2] - fb[0]), 1.0)
    assert p.gender_probs["female"] == pytest.approx(expect, abs=1e-4)
    row = to_records(agegender.ImageResult(source="x", status="ok", people=people), pp.record_schema())[1]
    assert row["views"] == "face+body" and "attr_hairLong" in row


def test_bad_input_and_options(person: PersonPredictor, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    results = person.predict_batch([str(bad), str(tmp_path / "missing.jpg"), np.zeros((50, 50, 3), np.uint8)])
    assert [r.status for r in results][:2] != ["ok", "ok"]
    assert all(r.message for r in results[:2]) and results[2].status in ("ok", "no_face")
    with pytest.raises(AgeGenderError):
        person.predict(str(bad))
    with pytest.raises(AgeGenderError) as err:
        agegender.load("default-person", detector="haar")
    assert err.value.code == "bad_option"
    with pytest.raises(AgeGenderError) as err:
        PersonPredictor(load("default"), load("default"))
    assert "body model" in str(err.value)
    with pytest.raises(AgeGenderError) as err:
        from agegender.inference.video import process_video

        process_video(person, "nothing.mp4")
    assert "person mode" in str(err.value)


def test_mode_person_pairs_a_named_model() -> None:
    p = agegender.load("default-fast", mode="person")
    assert isinstance(p, PersonPredictor) and p.face.name.startswith("default-fast") and p.body.mode == "body"
    q = agegender.load("default-body", mode="person")
    assert q.body.mode == "body" and q.face.mode == "face"
    assert q.body.scheme.name == q.face.scheme.name  # one age-group scheme per result
