"""One decoder for every reader of model outputs: `predict` and `evaluate` give the same age groups, gender and
ages for the same outputs, in every pair of age-group schemes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agegender.inference.backends import TorchBackend
from agegender.decode import OutputDecoder
from agegender.inference.predictor import Predictor
from agegender.labels import SCHEMES, get_scheme
from agegender.metrics import gender_probs, group_probs_in_scheme
from helpers_models import tiny_bundle

PAIRS = list(itertools.product(SCHEMES, SCHEMES))


def _predictor(model_scheme: str, scheme: str) -> Predictor:
    b = tiny_bundle("face")
    b.labels["age_scheme"] = model_scheme
    return Predictor(TorchBackend.from_bundle(b), detector="none", scheme=scheme)


@pytest.mark.parametrize("src,dst", PAIRS)
@pytest.mark.parametrize("output", ["age_group_probs", "pedestrian_probs", "age_probs", "age"])
def test_predict_and_evaluate_decode_alike(src, dst, output):
    rng = np.random.default_rng(0)
    n, k = 6, get_scheme(src).num_groups
    if output == "age_group_probs":
        p = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
        arrays = {output: p, "gender_probs": rng.dirichlet(np.ones(2), size=n).astype(np.float32)}
    elif output == "pedestrian_probs":
        arrays = {output: rng.random((n, k + 1)).astype(np.float32)}
    elif output == "age_probs":
        arrays = {output: rng.dirichlet(np.ones(101), size=n).astype(np.float32)}
    else:
        arrays = {output: rng.uniform(0, 90, n).astype(np.float32)}
    people = _predictor(src, dst).people_from_arrays(arrays, [(0, 0, 1, 1)] * n, [1.0] * n)
    from_predict = np.array([list(p.age.group_probs.values()) for p in people])
    from_evaluate = group_probs_in_scheme(arrays, get_scheme(dst), src)
    np.testing.assert_allclose(from_predict, from_evaluate, atol=1e-5)  # predict rounds to 5 decimals
    assert [p.age.group for p in people] == [get_scheme(dst).labels[i] for i in from_evaluate.argmax(1)]
    g = gender_probs(arrays)
    if g is not None:
        np.testing.assert_allclose([[p.gender_probs["male"], p.gender_probs["female"]] for p in people], g, atol=1e-5)


def test_open_top_group_is_spread_over_its_first_years():
    """adience8's "60+" (57 and up by nearest edge) spreads over 57-66: in fairface9 mostly 60-69, never 70+."""
    to_ff = get_scheme("adience8").transfer_matrix(get_scheme("fairface9"))
    ff = get_scheme("fairface9").labels
    top = dict(zip(ff, to_ff[-1]))
    assert top["70+"] == 0 and top["60-69"] == pytest.approx(0.7) and top["50-59"] == pytest.approx(0.3)
    for a, b in PAIRS:
        m = get_scheme(a).transfer_matrix(get_scheme(b))
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)  # every group's mass goes somewhere


def test_decoder_gives_years_interval_and_female():
    probs = np.zeros((1, 101), dtype=np.float32)
    probs[0, 30] = 0.5
    probs[0, 40] = 0.5
    dec = OutputDecoder("adience8")({"age_probs": probs, "gender_probs": np.array([[0.2, 0.8]])})
    assert dec.years[0] == pytest.approx(35.0) and dec.years_low[0] < 31 and dec.years_high[0] > 39
    assert dec.female[0] == pytest.approx(0.8) and dec.gender_probs[0].tolist() == pytest.approx([0.2, 0.8])


def test_probability_of_an_age_under_18():
    """The mass of the distribution below 18; None for a model without a distribution over years."""
    probs = np.zeros((3, 101), dtype=np.float32)
    probs[0, 17], probs[0, 19] = 0.3, 0.7  # 30 % under 18
    probs[1, 5] = 1.0
    probs[2, 40] = 1.0
    dec = OutputDecoder("adience8")({"age_probs": probs})
    assert dec.p_under_18.tolist() == pytest.approx([0.3, 1.0, 0.0])
    assert OutputDecoder("adience8")({"age": np.array([20.0])}).p_under_18 is None
    assert OutputDecoder("peta5")({"pedestrian_probs": np.full((1, 6), 0.5)}).p_under_18 is None
