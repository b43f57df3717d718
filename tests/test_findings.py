"""The report's findings: computed from a results file's numbers when the report is written."""

import numpy as np
import pytest
from dropstudy_experiments.common import all_findings, flips, predictor_pairs
from dropstudy_experiments.sections import averaging, diversity, voting


def _test(effect, lo, hi, verdict, what="test NLL", predictor="mc", **kw):
    return {"what": what, "predictor": predictor, "rule": "direction", "claimed": "> 0",
            "level": 0.95, "effect": effect, "lo": lo, "hi": hi, "verdict": verdict,
            **kw}  # fmt: skip


def _equiv(effect, lo, hi, verdict, what, predictor="ws", **kw):
    return {**_test(effect, lo, hi, verdict, what, predictor), "rule": "equivalence",
            "level": 0.9, "margin": 0.02, **kw}  # fmt: skip


def test_pairs_are_tests_of_one_quantity_by_two_predictors():
    tests = {
        "a_mc": _test(1, 0.5, 1.5, "supported"),
        "a_ws": _test(1, 0.5, 1.5, "supported", predictor="ws"),
        "a_mc within 2W": _test(1, 0.5, 1.5, "supported", what="test NLL, within 2W"),
        "a_ws within 2W": _test(1, 0.5, 1.5, "supported", "test NLL, within 2W", "ws"),
        "cmp": _test(1, 0.5, 1.5, "supported", predictor="mc", predictor_label="ws vs mc"),
        "b": _test(1, 0.5, 1.5, "supported", what="train NLL"),
    }
    assert predictor_pairs(tests) == [("a_mc", "a_ws")]
    # one quantity by one predictor twice is no pair
    assert predictor_pairs({"x": tests["a_mc"], "y": tests["a_mc"]}) == []


def test_a_sign_flips_only_when_both_intervals_exclude_zero():
    both = {"mc": _test(1, 0.5, 1.5, "supported"),
            "ws": _test(-1, -1.5, -0.5, "contradicted", predictor="ws")}  # fmt: skip
    (f,) = flips(both)
    assert f.startswith("The sign of *test NLL* flips") and "both intervals excluding 0" in f
    # conv's case: one interval holds 0, the verdicts differ
    one = {"mc": _test(0.06, 0.03, 0.09, "supported"),
           "ws": _test(-0.005, -0.03, 0.02, "inconclusive", predictor="ws")}  # fmt: skip
    (f,) = flips(one)
    assert "flips" not in f and f.startswith("The verdict on *test NLL* depends on the predictor")
    assert "opposite signs, and only the interval by MC average excludes 0" in f
    # the same verdict, opposite point estimates, one interval excluding 0: nothing to add
    # (an inconclusive equivalence with a real difference is real_differences' to say)
    same = {"mc": _equiv(0.015, 0.005, 0.025, "inconclusive", "d", "mc"),
            "ws": _equiv(-0.001, -0.01, 0.008, "inconclusive", "d")}  # fmt: skip
    assert flips(same) == []
    # agreement in sign and verdict: nothing to say
    alike = {"mc": _test(1, 0.5, 1.5, "supported"),
             "ws": _test(0.5, 0.1, 0.9, "supported", predictor="ws")}  # fmt: skip
    assert flips(alike) == []


def test_guarded_tests_compare_their_own_verdicts():
    held = {"mc": _test(1, 0.5, 1.5, "inconclusive", verdict_w="supported"),
            "ws": _test(1, 0.5, 1.5, "inconclusive", predictor="ws",
                        verdict_w="inconclusive")}  # fmt: skip
    (f,) = flips(held)
    assert "(each its own, before the protocol's hold): supported by MC average" in f


def _voting(w, small, w2, small2, blocked=None):
    what = "test error, majority vote minus arithmetic mean"
    a = _equiv(0.003, 0.001, 0.005, "inconclusive", f"{what}, wide", "mc", verdict_w=w)
    if blocked:
        a["blocked"] = [blocked]
    return {
        "config": {"members": 5},
        "tests": {
            "vote_5": a,
            "vote_5 within 2W": _equiv(0.001, 0.0, 0.002, w2, f"{what}, wide, 2W", "mc"),
            "vote_5_small": _equiv(0.2, 0.1, 0.3, small, f"{what}, small", "mc", verdict_w=small),
            "vote_5_small within 2W": _equiv(0.2, 0.1, 0.3, small2, f"{what}, small, 2W", "mc"),
        },
    }


def test_votings_finding_reads_both_budgets_and_the_hold():
    assert voting.findings(_voting("contradicted", "contradicted", "contradicted",
                                   "contradicted")) == []  # fmt: skip
    # the same within W, apart within 2W: said, with both budgets
    (f,) = voting.findings(_voting("contradicted", "contradicted", "supported", "contradicted"))
    assert "being contradicted" in f and "within 2W, supported" in f
    (f,) = voting.findings(
        _voting("supported", "contradicted", "supported", "contradicted", blocked="wide net late")
    )
    assert "*test error, majority vote minus arithmetic mean, wide* being supported" in f
    assert "(each test's own, before the protocol's hold)" in f and "late" not in f


def _averaging(err, nll):
    tests = {}
    for m, name in averaging.MEANS.items():
        tests[f"primary err WS-{m}"] = _equiv(0.0, -0.001, 0.001, err[m], f"error, {name}")
        tests[f"primary nll WS-{m}"] = _equiv(0.1, 0.05, 0.15, nll[m], f"NLL, {name}")
    return {"tests": tests, "nets": {}, "config": {"ks": [1, 1000], "margin": 0.01}}


def test_averagings_nll_finding_covers_every_mean():
    sup = {"A": "supported", "G": "supported"}
    assert averaging.findings(_averaging(sup, sup)) == []
    (f,) = averaging.findings(_averaging(sup, {"A": "contradicted", "G": "contradicted"}))
    assert "not equivalent to the exact arithmetic mean (contradicted" in f
    assert "not equivalent to the exact normalised geometric mean (contradicted" in f
    assert f.endswith("although in test error it is equivalent to both.")
    assert "the primary net" in f  # the report's summary picks it up
    (f,) = averaging.findings(_averaging(sup, {"A": "inconclusive", "G": "supported"}))
    assert "not shown equivalent to the exact arithmetic mean" in f
    assert " equivalent to the exact normalised geometric mean (supported" in f
    # error not shown equivalent either: nothing that NLL alone says
    inc = {"A": "inconclusive", "G": "inconclusive"}
    assert averaging.findings(_averaging(inc, inc)) == []


@pytest.mark.parametrize(
    "mc,found", [(0.265, "2.80 pp above"), (0.30, "0.70 pp"), (0.31, "1.70 pp below")]
)
def test_averagings_wide_net_finding_needs_a_gap_past_the_margin(mc, found):
    sup = {"A": "supported", "G": "supported"}
    r = _averaging(sup, sup)
    curve = [{"mean": 0.5, "lo": 0.4, "hi": 0.6}, {"mean": mc, "lo": mc - 0.01, "hi": mc + 0.01}]
    r["nets"] = {
        "wide": {"config": {"exact": False}, "n_seeds": 5, "mc": {"a_err": curve},
                 "ws": {"err": {"mean": 0.293, "lo": 0.283, "hi": 0.303}}},
        "small": {"config": {"exact": True}, "n_seeds": 5, "mc": {"a_err": curve},
                  "ws": {"err": {"mean": 0.293, "lo": 0.283, "hi": 0.303}}},  # tested
    }  # fmt: skip
    got = averaging.findings(r)
    if found == "0.70 pp":  # within the margin: nothing to say
        assert got == []
        return
    (f,) = got
    assert f.startswith(f"On the net wide, weight scaling's mean test error lies {found} its MC")
    assert (
        "K = 1000" in f
        and "29.30% [28.30, 30.30]" in f
        and "+-1 pp margin: an exploratory observation" in f
    )


@pytest.mark.parametrize("effect,word", [(0.3, "more"), (-0.1, "less")])
def test_diversitys_finding_says_which_way_the_share_fails(effect, word):
    curve = lambda e: [{"mean": 0.9}, {"mean": e}]  # noqa: E731  at K = 2 and K = 5
    r = {
        "config": {"members": 5},
        "grids": {"dropout": ["2", "5"], "independent": ["2", "5"]},
        "shares": {"dropout": {"mean": 0.4}, "independent": {"mean": 0.1}},
        "curves": {
            k: {"test": {"member_error": curve(e)}}
            for k, e in (("dropout", 0.06), ("independent", 0.03))
        },
        "tests": {
            "share_equiv": _equiv(effect, effect - 0.01, effect + 0.01, "contradicted", "share")
        },
    }
    (f,) = diversity.findings(r)
    assert f.startswith(f"Averaging removes {word}") and "is 0.0600, against 0.0300" in f
    r["tests"]["share_equiv"]["verdict"] = "supported"
    assert diversity.findings(r) == []


def test_all_findings_joins_the_shared_and_the_sections():
    r = _voting("supported", "contradicted", "supported", "contradicted")
    r["experiment"] = "voting"
    assert all_findings(r) == voting.findings(r)
    assert all_findings({"tests": r["tests"]}) == []  # no experiment: only the shared ones


@pytest.mark.parametrize("centre", [0.04, -0.03, 0.003, -0.004])
def test_a_fixed_margins_caveat_gives_where_the_verdict_would_change(centre):
    """Supported at any margin above the interval's farther end; contradicted below its
    nearer end when the interval excludes 0, at none when it includes 0: checked against
    the equivalence test itself at margins on both sides of each threshold."""
    from dropstudy_experiments.common import fixed_margin_caveats, margin_range
    from dropstudy_experiments.stats import equivalence

    values = centre + 0.01 * np.random.default_rng(1).standard_normal(10)
    t = equivalence(values, 0.02, what="x", predictor="ws")
    got = margin_range(t)
    above, below = got["supported_above"], got["contradicted_below"]
    assert above == pytest.approx(max(abs(t["lo"]), abs(t["hi"])))
    assert (below is None) == (t["lo"] <= 0 <= t["hi"])
    for m in (above * 0.99, above * 1.01, *(() if below is None else (below * 0.99, below * 1.01))):
        verdict = equivalence(values, m, what="x", predictor="ws")["verdict"]
        assert (verdict == "supported") == (m > above), (m, verdict)
        assert (verdict == "contradicted") == (below is not None and m < below), (m, verdict)
    r = {"tests": {"p": t}, "primary": "p"}
    (words,) = fixed_margin_caveats(r, "pp", "why", 100)
    assert "+-2 pp, is fixed by design (why)" in words
    # its own verdict at the fixed margin; in the claims' family, Holm asks for more
    assert f"so at its fixed margin it is {t['verdict']}; the Holm-adjusted" in words
    threshold = words.split("above +-")[1].split(" pp")[0]
    assert words.endswith(f"needs a margin wider than +-{threshold} pp to be supported")
    (alone,) = fixed_margin_caveats(r, "pp", "why", 100, family=False)
    assert alone.endswith(f"so at its fixed margin it is {t['verdict']}")
    assert "protocol's guard" not in alone  # an unguarded test
    # thresholds rounded outward at 4 digits: never onto the wrong side of the margin
    shown = float(words.split("above +-")[1].split(" pp")[0])
    assert shown >= 100 * above and shown == pytest.approx(100 * above, rel=1e-3)
    if below is None:
        assert "contradicted at no margin" in words
    else:
        cut = float(words.split("below +-")[1].split(" pp")[0])
        assert cut <= 100 * below and cut == pytest.approx(100 * below, rel=1e-3)
    # only an equivalence primary has such margins
    assert fixed_margin_caveats({"tests": {"p": _test(1, 0, 2, "supported")}, "primary": "p"},
                                "pp", "why") == []  # fmt: skip


def test_a_sections_fixed_margin_headline_speaks_of_its_own_primary_only():
    from dropstudy_experiments.common import fixed_margin_headline
    from dropstudy_experiments.stats import equivalence

    t = equivalence(0.003 + 0.001 * np.random.default_rng(0).standard_normal(10), 0.01, what="x")
    caveats = fixed_margin_headline("a", "pp", "stated", 100)
    (own,) = caveats({"tests": {"a": t, "b": t}, "primary": "a"})
    (other,) = caveats({"tests": {"a": t, "b": t}, "primary": "b"})
    assert "+-1 pp, is fixed by design (stated)" in own
    assert "+-0.01, is fixed by design (set in the config)" in other and " pp" not in other


def test_a_margin_set_from_the_command_line_is_not_called_fixed_by_design():
    from dropstudy_experiments.common import fixed_margin_headline
    from dropstudy_experiments.stats import equivalence

    t = equivalence(0.003 + 0.001 * np.random.default_rng(0).standard_normal(10), 0.03, what="x")
    caveats = fixed_margin_headline("a", "pp", "stated", 100, design=0.01)
    r = {"tests": {"a": t}, "primary": "a", "scale": {"set": {"margin": "0.03"}}}
    (own,) = caveats(r)
    assert "fixed by design" not in own and "its fixed margin" not in own
    assert (
        "+-3 pp, was set from the command line (--set margin=0.03), not by the study's design "
        "(which fixes +-1 pp: stated)"
    ) in own and f"so at this margin it is {t['verdict']}" in own
    # another field set: the margin is the design's
    (kept,) = caveats({**r, "scale": {"set": {"mc_k": "50"}}})
    assert "is fixed by design (stated)" in kept
    # the field a section names
    (named,) = fixed_margin_headline("a", "pp", "stated", 100, field="mc_k")(
        {**r, "scale": {"set": {"mc_k": "50"}}}
    )
    assert "(--set mc_k=50), not by the study's design (stated)" in named


@pytest.mark.parametrize(
    ("name", "design"),
    [("baselines", "+-2 points"), ("regression", "+-0.02")],
)
def test_a_section_says_where_its_margin_came_from(name, design):
    """A section that gives its margin's reason says the run set it, where it did."""
    import importlib
    import json
    from pathlib import Path

    section = importlib.import_module(f"dropstudy_experiments.sections.{name}").section
    path = Path(__file__).resolve().parent.parent / "results" / name / "results.json"
    r = json.loads(path.read_text())
    assert "(fixed before the run" in section(r)
    r["scale"] = {**r.get("scale", {}), "set": {"margin": "0.03"}}
    text = section(r)
    assert "fixed before the run" not in text
    assert f"set from the command line (--set margin=0.03); the study's design fixes {design}" in (
        " ".join(text.split())
    )
