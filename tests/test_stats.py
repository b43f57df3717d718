"""Intervals and every verdict rule, each with a case that must not be supported."""

import gc

import numpy as np
import pytest
from dropstudy_experiments import stats as S
from scipy.stats import ttest_1samp

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


def test_direction_rule_says_supported_contradicted_or_inconclusive():
    rng = np.random.default_rng(0)
    up, down, null = rng.normal(1, 1, 20), rng.normal(-1, 1, 20), np.array([-1.0, 1, -1, 1])
    assert S.direction(up)["verdict"] == S.SUPPORTED
    assert S.direction(up, positive_supports=False)["verdict"] == S.CONTRADICTED
    assert S.direction(down)["verdict"] == S.CONTRADICTED
    t = S.direction(null, what="x")
    assert t["verdict"] == S.INCONCLUSIVE and t["what"] == "x" and t["p"] == 1.0
    # the 95% interval and the two-sided p-value agree
    for v in (up, down, rng.normal(0.3, 1, 8)):
        t = S.direction(v)
        assert (t["p"] < 0.05) == (t["lo"] > 0 or t["hi"] < 0)


def test_direction_rule_is_calibrated_under_the_null():
    rng = np.random.default_rng(1)
    verdicts = [S.direction(rng.normal(size=5))["verdict"] for _ in range(300)]
    assert verdicts.count(S.SUPPORTED) / 300 < 0.045  # 0.025 expected: one side of 0.05
    assert verdicts.count(S.CONTRADICTED) / 300 < 0.045


def _t_test_power(rng, effect, sd, n, reps=4000) -> float:
    """Simulated power of the two-sided t test (vectorised; checks ``direction``'s maths)."""
    p = ttest_1samp(rng.normal(effect, sd, (reps, n)), 0.0, axis=1).pvalue
    return float(np.mean(p < 0.05))


def test_power_figures_match_simulation():
    """``mde`` is found 80% of the time; ``seeds_needed`` is the smallest such n."""
    rng = np.random.default_rng(2)
    x = rng.normal(0.4, 1.0, 10)
    t = S.direction(x)
    assert t["p"] == pytest.approx(ttest_1samp(x, 0.0).pvalue)
    assert abs(_t_test_power(rng, t["mde"], t["sd"], 10) - 0.8) < 0.03
    n = t["seeds_needed"]
    assert _t_test_power(rng, t["effect"], t["sd"], n) > 0.77
    assert _t_test_power(rng, t["effect"], t["sd"], max(2, int(0.8 * n))) < 0.79
    assert S.direction(np.array([-1.0, 1.0]))["seeds_needed"] is None  # a zero effect


def test_equivalence_rule_is_tost():
    rng = np.random.default_rng(3)
    tight = S.equivalence(rng.normal(0.0, 0.01, 25), 0.01)
    assert tight["verdict"] == S.SUPPORTED and tight["level"] == 0.9
    assert -0.01 < tight["lo"] and tight["hi"] < 0.01 and not tight["outside"]
    far = S.equivalence(rng.normal(0.05, 0.01, 25), 0.01)
    assert far["verdict"] == S.CONTRADICTED and far["lo"] > 0.01 and far["seeds_needed"] is None
    wide = S.equivalence(rng.normal(0.0, 0.05, 5), 0.01)
    assert wide["verdict"] == S.INCONCLUSIVE and wide["seeds_needed"] > 5
    # TOST rejects exactly when the 90% interval lies inside the margin
    for sd in (0.005, 0.01, 0.02):
        t = S.equivalence(rng.normal(0.004, sd, 12), 0.01)
        assert (t["p"] < 0.05) == (-0.01 < t["lo"] and t["hi"] < 0.01)
    with pytest.raises(DropstudyError, match="margin must be > 0"):
        S.equivalence([0.0, 1.0], 0.0)


def test_equivalence_is_calibrated_at_the_margin():
    rng = np.random.default_rng(4)
    wrong = [S.equivalence(rng.normal(0.01, 0.01, 10), 0.01)["verdict"] for _ in range(300)]
    assert wrong.count(S.SUPPORTED) / 300 < 0.075  # a true effect at the margin: <= 5%


def test_holm_bh_and_decide():
    adj = S.holm([0.01, 0.04, None, 0.03])
    assert adj == pytest.approx([0.03, 0.06, None, 0.06])  # monotone step-down
    # Benjamini-Hochberg by hand: p_(i) * m / i, made monotone from the largest down
    assert S.bh([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.04, None, 0.04])
    t = S.direction(np.array([1.0, 1.1, 0.9, 1.2]))
    assert S.decide(t, 0.01) == S.SUPPORTED and S.decide(t, 0.2) == S.INCONCLUSIVE
    e = S.exact_check(False, what="identity")
    assert S.decide(e, None) == S.CONTRADICTED and S.holm([None]) == [None]


@pytest.mark.parametrize("m", [1, 2, 7, 40])
def test_holm_is_statsmodels_holm_bit_for_bit(m, rng, monkeypatch):
    """The own Holm (statsmodels' runs a garbage collection per call) against
    ``multipletests``: ties, p-values whose adjustment passes 1, and None entries."""
    from statsmodels.stats.multitest import multipletests

    # its collection (a second each in a worker holding JAX's objects) changes no number
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    for _ in range(50):
        p = rng.uniform(0, 1, m) ** rng.uniform(0.5, 6)
        if m > 2:
            p[1] = p[2]  # a tie
        want = multipletests(p, alpha=S.ALPHA, method="holm")[1]
        assert S.holm(list(p)) == [float(a) for a in want]
        with_none = [None, *p.tolist(), None]
        assert S.holm(with_none) == [None, *[float(a) for a in want], None]


def test_equivalence_is_decided_by_tost_alone():
    """Only TOST's p enters a family; contradicted needs the 90% interval wholly outside the
    margin, whatever the adjusted p; otherwise an unadjusted-significant outside p does not
    make a contradiction."""
    rng = np.random.default_rng(5)
    far = S.equivalence(rng.normal(0.05, 0.01, 25), 0.01)
    assert far["outside"] and far["p"] > 0.5 and far["p_outside"] < 0.05
    assert S.decide(far, 1.0) == S.CONTRADICTED  # no p of its own enters the family
    # the mean beyond the margin, but the 90% interval reaching inside it: inconclusive
    edge = S.equivalence(np.array([0.005, 0.02, 0.008, 0.022, 0.012]), 0.01)
    assert edge["effect"] > 0.01
    assert not edge["outside"] and edge["verdict"] == S.INCONCLUSIVE
    tight = S.equivalence(rng.normal(0.0, 0.001, 25), 0.01)
    assert S.decide(tight, 0.01) == S.SUPPORTED and S.decide(tight, 0.2) == S.INCONCLUSIVE


def test_sign_flip_needs_both_intervals_to_exclude_zero():
    sup = S.direction(np.array([1.0, 1.1, 0.9, 1.2]))
    con = S.direction(np.array([-1.0, -1.1, -0.9, -1.2]))
    inc = S.direction(np.array([-1.0, 1.0, -1.0, 1.0]))
    assert S.sign_flip(sup, con) and not S.sign_flip(sup, sup)
    # one interval holds 0: that estimate may have either sign
    leaning = S.direction(np.array([-0.2, 0.1, -0.3, 0.05]))
    assert leaning["effect"] < 0 and not S.excludes_zero(leaning)
    assert not S.sign_flip(sup, leaning) and not S.sign_flip(leaning, sup)
    assert not S.sign_flip(inc, S.direction(np.array([0.1, -0.1, 0.2, 0.0])))
    # two equivalences shown on either side of 0: no flip to report
    a = S.equivalence(np.array([-0.005, 0.001, -0.004, 0.0]), 0.01)
    b = S.equivalence(np.array([0.004, -0.002, 0.003, 0.001]), 0.01)
    assert a["verdict"] == b["verdict"] == S.SUPPORTED
    assert a["effect"] < 0 < b["effect"] and not S.sign_flip(a, b)


def _crossed(rng, reps, s, n, sd_seed, sd_example, sd_resid, effect=0.3):
    """``reps`` simulated (S, N) samples of a crossed seed x example design."""
    return (effect + sd_seed * rng.standard_normal((reps, s, 1))
            + sd_example * rng.standard_normal((reps, 1, n))
            + sd_resid * rng.standard_normal((reps, s, n)))  # fmt: skip


@pytest.mark.parametrize(
    "sds",
    [(1.0, 0.1, 0.5), (0.05, 1.0, 0.5), (0.02, 0.02, 1.0), (0.3, 1.0, 1.0), (0.0, 1.0, 1.0)],
    ids=["seeds", "examples", "residual", "mixed", "no-seed-term"],
)
def test_two_level_intervals_cover_at_their_level(sds):
    """At 10 seeds x 360 examples, whichever term dominates, the 95% interval of a two-level
    direction test covers the known effect 95% +- 2% of the time."""
    from scipy.stats import t as student

    rng = np.random.default_rng(6)
    data = _crossed(rng, 1000, 10, 360, *sds)

    def interval(d):  # direction's 95% interval, from its spread (the power search skipped)
        sp = S.spread(d)
        half = student.ppf(0.975, sp.df()) * sp.se()
        return sp.mean - half, sp.mean + half

    first = S.direction(data[0])
    assert (first["lo"], first["hi"]) == pytest.approx(interval(data[0]), rel=1e-12)
    hits = [lo <= 0.3 <= hi for lo, hi in map(interval, data)]
    assert abs(np.mean(hits) - 0.95) <= 0.02, np.mean(hits)


def test_seed_only_intervals_miss_the_test_sets_noise():
    """The case the two-level variance exists for: with a large example term, the interval of
    the per-seed means alone covers far less than 95%."""
    rng = np.random.default_rng(7)
    data = _crossed(rng, 400, 10, 360, 0.05, 1.0, 0.5)
    hits = [t["lo"] <= 0.3 <= t["hi"] for t in (S.mean_ci(d.mean(1)) for d in data)]
    assert np.mean(hits) < 0.6


def test_spread_recovers_the_components_and_reduces_to_seeds():
    rng = np.random.default_rng(8)
    d = _crossed(rng, 1, 200, 1000, 0.5, 0.8, 1.0)[0]
    sp = S.spread(d)
    assert sp.n == 200 and sp.n_examples == 1000
    np.testing.assert_allclose([sp.var_seed, sp.var_example, sp.var_resid], [0.25, 0.64, 1.0],
                               rtol=0.25)  # fmt: skip
    # per-seed values: the variance of the values over n, n - 1 degrees of freedom
    v = d.mean(1)
    one = S.spread(v)
    assert one.se() == pytest.approx(v.std(ddof=1) / np.sqrt(200)) and one.df() == 199
    t = S.direction(v)
    assert t["p"] == pytest.approx(ttest_1samp(v, 0.0).pvalue) and t["n_examples"] is None
    bad_inputs = [([1.0], "at least 2 seeds"), (np.ones((3, 1)), "at least 2 examples"),
                  (np.ones((2, 2, 2)), "per-seed values"), ([1.0, np.inf], "diverged")]  # fmt: skip
    for bad, msg in bad_inputs:
        with pytest.raises(DropstudyError, match=msg):
            S.direction(bad)


def test_two_level_power_says_when_the_test_set_is_what_stands_in_the_way():
    """An effect smaller than the test set's own standard error cannot be reached by seeds:
    ``seeds_needed`` is None and ``examples_needed`` names the test examples that would
    reach it; where seeds are the bottleneck, ``seeds_needed`` is a number."""
    rng = np.random.default_rng(9)
    small = _crossed(rng, 1, 10, 100, 0.01, 1.0, 0.1, effect=0.05)[0]
    t = S.direction(small)
    assert t["seeds_needed"] is None and t["examples_needed"] > 100
    sp = S.spread(small)
    se_at = lambda m: sp.se(10, m)  # noqa: E731
    assert abs(t["effect"]) / se_at(t["examples_needed"]) > 2.4  # ~2.8 standard errors at 80%
    seeds = _crossed(rng, 1, 4, 2000, 1.0, 0.05, 0.1, effect=0.6)[0]
    t = S.direction(seeds)
    assert t["seeds_needed"] is not None and t["examples_needed"] is None


def test_every_committed_test_recomputes_from_its_values():
    """Each direction and equivalence test in the committed results files (both data sets)
    keeps its per-seed values (and a two-level test its per-example values in the npz beside
    the file), and the test recomputed from them is the one recorded; a test held to the
    protocol is recomputed with its twin within 2W (the budget-dependent rule)."""
    import json
    from pathlib import Path

    from dropstudy_experiments.protocol import TWICE
    from dropstudy_experiments.stats import INCONCLUSIVE, direction, equivalence

    root = Path(__file__).resolve().parent.parent / "results"
    checked, unkept, two_level, guarded = 0, [], 0, 0
    for f in sorted(root.rglob("results.json")):
        if "quick" in f.parts:
            continue
        tests = json.loads(f.read_text()).get("tests", {})
        for name, t in tests.items():
            if t.get("rule") not in ("direction", "equivalence"):
                continue
            assert "values" in t, f"{f.relative_to(root)}: {name} keeps no per-seed values"
            if t["values"] is None:  # from a sample too large to keep (equivalence_from)
                unkept.append(name)
                continue
            values = t["values"]
            if t.get("per_example"):
                with np.load(f.parent / t["per_example"]) as z:
                    values = z[name]
                assert np.allclose(values.mean(1), t["values"]), f"{f}: {name} per-seed values"
                two_level += 1
            if t["rule"] == "direction":
                again = direction(values, positive_supports=t["claimed"] == "> 0")
            else:
                again = equivalence(values, t["margin"])
            if "within_2w" in t:  # held to the protocol: its twin within 2W decides with it
                twin = tests[name + TWICE]
                for k in ("effect", "lo", "hi", "p", "verdict"):
                    assert t["within_2w"][k] == twin[k], f"{f}: {name} within_2w.{k}"
                budget = again["verdict"] != twin["verdict"]
                reasons = t.get("blocked", [])
                assert budget == any(b.startswith("budget-dependent") for b in reasons), name
                if reasons:
                    again["verdict"] = INCONCLUSIVE
                guarded += 1
            for k in ("n", "effect", "lo", "hi", "p", "verdict"):
                want, got = t[k], again[k]
                ok = want == got if isinstance(want, str | int) else np.isclose(want, got)
                assert ok, f"{f.relative_to(root)}: {name}.{k} {want} != {got}"
            checked += 1
    assert checked > 150 and two_level > 60 and guarded >= 20, (checked, two_level, guarded)
    assert set(unkept) <= {"demo_inverted", "demo_standard"}, unkept  # scaling's 10,000 draws


def test_seed_level_rules_agree_with_statsmodels():
    """On per-seed values the rules are the textbook tests: TOST is statsmodels'
    ``ttost_paired``, the direction test a one-sample t test, the power statsmodels'
    ``TTestPower`` (two-sided, noncentral t)."""
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(10)
    a, b = rng.normal(0.3, 0.1, 12), rng.normal(0.29, 0.1, 12)
    t = S.equivalence(a - b, 0.08)
    assert t["p"] == pytest.approx(ttost_paired(a, b, -0.08, 0.08)[0], rel=1e-9)
    d = S.direction(a - b + 0.05)
    power = TTestPower().power(effect_size=d["mde"] / d["sd"], nobs=12, alpha=0.05)
    assert power == pytest.approx(0.8, abs=1e-3)


def test_two_level_variance_is_never_below_the_seeds_alone():
    """A seed component estimated at 0 (clipped) must not shrink the variance below the
    per-seed means' own; when that floor decides, the seeds' S - 1 degrees of freedom do."""
    rng = np.random.default_rng(11)
    floored = 0
    for _ in range(50):
        d = _crossed(rng, 1, 10, 200, 0.0, 0.0, 1.0)[0]  # no seed or example term
        two, one = S.direction(d), S.direction(d.mean(1))
        assert two["se"] >= one["se"] * (1 - 1e-12)
        if two["se"] == pytest.approx(one["se"], rel=1e-12):
            floored += 1
            assert two["df"] == 9 and two["hi"] - two["lo"] == pytest.approx(one["hi"] - one["lo"])
    assert floored > 5  # the floor decides in some draws


def test_per_example_npz_is_byte_identical_and_loads(tmp_path):
    """The npz beside a results file repeats byte for byte (no member timestamps) and
    np.load reads every array back."""
    import time

    from dropstudy_experiments.common import write_npz

    arrays = {"test NLL MC": np.arange(6.0).reshape(2, 3), "err": np.ones((2, 2))}
    write_npz(tmp_path / "a.npz", arrays)
    time.sleep(1.1)  # zip times have a 2 s resolution; a stamped file would differ by now
    write_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        assert z.files == list(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(z[k], v)
