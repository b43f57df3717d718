"""Intervals and every verdict rule, each with a case that must not be supported."""

import numpy as np
import pytest
from dropstudy_experiments import stats as S

from dropstudy.validate import DropstudyError


def ci(lo, hi):
    return {"mean": (lo + hi) / 2, "lo": lo, "hi": hi, "n": 5}


def test_mean_ci_matches_student_t():
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    c = S.mean_ci(v)
    half = 2.7764451051977987 * v.std(ddof=1) / np.sqrt(5)  # t(0.975, 4)
    assert c["mean"] == 3.0 and c["n"] == 5
    np.testing.assert_allclose([c["lo"], c["hi"]], [3 - half, 3 + half])
    with pytest.raises(DropstudyError, match="NaN or inf"):
        S.mean_ci([1.0, np.nan])


def test_paired_is_the_interval_of_differences():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.5, 2.5, 3.0])
    p = S.paired(a, b)
    assert p == {**S.mean_ci(a - b), "frac_positive": 2 / 3}


def test_direction_verdict():
    assert S.direction_verdict(ci(0.1, 0.3)) == S.SUPPORTED
    assert S.direction_verdict(ci(-0.3, -0.1), positive_supports=False) == S.SUPPORTED
    assert S.direction_verdict(ci(-0.3, -0.1)) == S.NOT_SUPPORTED
    # a null effect: the interval straddles 0, never "supported"
    assert S.direction_verdict(ci(-0.2, 0.2)) != S.SUPPORTED
    rng = np.random.default_rng(0)
    nulls = [S.direction_verdict(S.mean_ci(rng.normal(size=5))) for _ in range(400)]
    assert nulls.count(S.SUPPORTED) / 400 < 0.05  # the 95% interval's false-positive rate


def test_equivalence_verdict():
    assert S.equivalence_verdict(ci(-0.005, 0.008), 0.01) == S.SUPPORTED
    assert S.equivalence_verdict(ci(0.02, 0.05), 0.01) == S.NOT_SUPPORTED
    assert S.equivalence_verdict(ci(-0.03, 0.03), 0.01) == S.PARTLY  # too wide to tell


def test_all_hold_combine_and_choice():
    assert S.all_hold(True, True) == S.SUPPORTED
    assert S.all_hold(True, False) == S.NOT_SUPPORTED
    assert S.combine(S.SUPPORTED, S.SUPPORTED) == S.SUPPORTED
    assert S.combine(S.SUPPORTED, S.NOT_SUPPORTED) == S.PARTLY
    assert S.combine(S.PARTLY, S.NOT_SUPPORTED) == S.PARTLY
    assert S.combine(S.NOT_SUPPORTED, S.NOT_SUPPORTED) == S.NOT_SUPPORTED
    assert S.choice_verdict(0.5, (0.3, 0.5), (0.2,)) == S.SUPPORTED
    assert S.choice_verdict(0.2, (0.3, 0.5), (0.2,)) == S.PARTLY
    assert S.choice_verdict(0.0, (0.3, 0.5), (0.2,)) == S.NOT_SUPPORTED
