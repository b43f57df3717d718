"""Second lists of seeds: pooling both lists, the difference between them, matching each
second list to its data set's first, and a second list trained at its first list's tuning."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dropstudy_experiments import protocol as PR
from dropstudy_experiments.report import (
    between,
    both_str,
    found_table,
    pool,
    pooled_primary,
    read_results,
    replication,
    second_lists,
)
from dropstudy_experiments.stats import direction, equivalence
from scipy.stats import t as student

from dropstudy.data import digits
from dropstudy.models import MLP
from dropstudy.validate import DropstudyError

ROOT = Path(__file__).resolve().parent.parent / "results"


def _lists(rng, shift=0.0, n=6, m=30):
    """Two lists' two-level values of one effect, (n, m) each, the second shifted."""
    a = 0.02 + 0.05 * rng.standard_normal((n, m))
    return a, 0.02 + shift + 0.05 * rng.standard_normal((n, m))


def test_pool_is_the_rule_on_the_lists_stacked_and_refuses_other_rules():
    rng = np.random.default_rng(0)
    a, b = _lists(rng)
    ta, tb = direction(a), direction(b)
    both = pool([ta, tb], [a, b])
    want = direction(np.concatenate([a, b]))
    assert both["n"] == 12 and both["n_examples"] == 30
    for k in ("effect", "lo", "hi", "p", "se", "df", "seeds_needed"):
        assert both[k] == want[k], k
    # the side of a direction test and the margin of an equivalence test are the first's
    neg = direction(a, positive_supports=False)
    assert pool([neg, direction(b, positive_supports=False)], [a, b])["claimed"] == "< 0"
    eq = [equivalence(a, 0.1), equivalence(b, 0.1)]
    assert pool(eq, [a, b])["margin"] == 0.1 and pool(eq, [a, b])["rule"] == "equivalence"
    with pytest.raises(DropstudyError, match="differ in rule, side, margin"):
        pool([equivalence(a, 0.1), equivalence(b, 0.2)], [a, b])
    with pytest.raises(DropstudyError, match="test examples"):
        pool([ta, direction(b[:, :20])], [a, b[:, :20]])
    assert pool([ta, tb], [a, None]) is None  # a list that keeps no values


def test_pooled_primary_sums_late_seeds_and_holds_like_the_guard():
    rng = np.random.default_rng(1)
    a, b = _lists(rng)
    a2, b2 = a + 0.001, b + 0.001

    def results(v, v2, late):
        t, twin = direction(v.mean(1)), direction(v2.mean(1))
        # the counts a results file keeps
        arms = {"dropout": {"converged": late < PR.LATE_SHARE * 6, "late": late, "seeds": 6}}
        g = PR.hold(t, twin, arms, [])
        return {"x": {"primary": "p", "tests": {"p": g, "p" + PR.TWICE: twin}}}

    # one late seed on each list: each list converged (1 < 1.2), both lists too (2 < 2.4)
    first, second = results(a, a2, 1), results(b, b2, 1)
    both = pooled_primary("x", [(None, first), (None, second)])
    assert both["arms"]["dropout"] == {"converged": True, "late": 2, "seeds": 12}
    assert both["verdict"] == both["verdict_w"] and "not_converged" not in both
    np.testing.assert_allclose(both["effect"], np.concatenate([a, b]).mean())
    assert both["within_2w"]["effect"] == pytest.approx(np.concatenate([a2, b2]).mean())
    assert both["n"] == 12 and both["n_examples"] is None  # per-seed values
    # lists that differ in the guard (other code) are refused, not pooled as if alike
    unguarded = {"x": {"primary": "p", "tests": {"p": direction(b.mean(1))}}}
    with pytest.raises(DropstudyError, match="differ in the protocol's guard"):
        pooled_primary("x", [(None, first), (None, unguarded)])
    # two late seeds on one list, one on the other: 3 of 12 reach 20%, held
    first = results(a, a2, 2)
    both = pooled_primary("x", [(None, first), (None, second)])
    assert both["arms"]["dropout"]["converged"] is False
    assert "3 of 12 seeds of both lists" in both["not_converged"][0]
    assert both["verdict"] == "inconclusive"
    # a held verdict asks for convergence, not seeds: no seed count is offered
    assert "seeds needed: - (held by the protocol's guard" in both_str(both)


def test_between_is_welch_on_the_lists_per_seed_values():
    """The test set's term, common to both lists, cancels in their difference: the interval
    is a Welch t interval on the per-seed values alone."""
    rng = np.random.default_rng(2)
    va, vb = rng.normal(1.0, 0.3, 10), rng.normal(1.5, 0.6, 14)
    a = {"rule": "direction", "values": va.tolist(), "effect": va.mean(), "se": 9.0, "df": 3}
    b = {"rule": "direction", "values": vb.tolist(), "effect": vb.mean(), "se": 9.0, "df": 3}
    ta, tb = va.var(ddof=1) / 10, vb.var(ddof=1) / 14
    df = (ta + tb) ** 2 / (ta**2 / 9 + tb**2 / 13)
    d, half = vb.mean() - va.mean(), student.ppf(0.975, df) * np.sqrt(ta + tb)
    assert between(a, b) == f"{d:.4g} [{d - half:.4g}, {d + half:.4g}]"  # se, df unused
    assert between({**a, "values": None}, b) == "-"
    assert between({"rule": "exact"}, {"rule": "exact"}) == "-"


def _second(tmp_path, name="robustness", start=100, root=ROOT):
    """A copy of a committed first list's experiment, marked as a second list."""
    folder = tmp_path / f"from{start}"
    shutil.copytree(root / name, folder / name)
    path = folder / name / "results.json"
    r = json.loads(path.read_text())
    r["scale"]["seed_start"] = start
    path.write_text(json.dumps(r))
    return folder


def test_second_lists_are_matched_to_their_data_sets_and_refused_where_they_do_not_fit(tmp_path):
    first, mnist = read_results(ROOT), read_results(ROOT / "mnist1d")
    firsts = [(ROOT, first), (ROOT / "mnist1d", mnist)]
    d = _second(tmp_path / "d")
    m = _second(tmp_path / "m", root=ROOT / "mnist1d")
    lists = second_lists(firsts, [m, d])  # the report's own data set first
    assert [ls.second_dir for ls in lists] == [d, m]
    assert [ls.first_dir for ls in lists] == [ROOT, ROOT / "mnist1d"]
    assert second_lists(firsts, d)[0].folder == str(d)  # one folder, not a list
    assert second_lists(firsts, None) == []
    with pytest.raises(DropstudyError, match="both hold digits"):
        second_lists(firsts, [d, _second(tmp_path / "d2")])
    with pytest.raises(DropstudyError, match="given twice"):
        second_lists(firsts, [d, d])
    with pytest.raises(DropstudyError, match="neither --results nor --compare holds"):
        second_lists(firsts[:1], [m])
    with pytest.raises(DropstudyError, match="is a first list of seeds"):
        second_lists(firsts, [ROOT / "mnist1d"])
    with pytest.raises(DropstudyError, match="no results there"):
        second_lists(firsts, [tmp_path / "empty"])
    # the same experiment copied as a second list: it pools to the first list's twice
    ls = lists[0]
    both = ls.both("robustness")
    t = first["robustness"]["tests"][first["robustness"]["primary"]]
    assert both["n"] == 2 * t["n"] and both["effect"] == pytest.approx(t["effect"])
    assert both["arms"]["dropout"]["seeds"] == 2 * t["arms"]["dropout"]["seeds"]


def test_the_report_sets_both_lists_beside_each_data_sets_first(tmp_path):
    first, mnist = read_results(ROOT), read_results(ROOT / "mnist1d")
    d = _second(tmp_path / "d")
    m = _second(tmp_path / "m", name="conv", root=ROOT / "mnist1d")
    lists = second_lists([(ROOT, first), (ROOT / "mnist1d", mnist)], [d, m])
    text = "\n".join(replication(lists))
    rows = [x for x in text.splitlines() if x.startswith("| digits") or x.startswith("| mnist1d")]
    assert [r.split(" | ")[1] for r in rows] == ["robustness", "conv"]
    n = 2 * first["robustness"]["tests"][first["robustness"]["primary"]]["n"]
    assert f"{n} seeds: **" in rows[0] and "seeds needed" in rows[0]
    assert "On digits and mnist1d" in text
    # one data set: no data set column, and the rule's missing primaries are named
    one = "\n".join(replication(lists[:1]))
    assert "| experiment | primary test |" in one and "not yet run on a second list" in one
    # the findings table marks each data set's column from its own second list
    flipped = json.loads((m / "conv" / "results.json").read_text())
    t = flipped["tests"][flipped["primary"]]
    t["verdict_w"] = "contradicted" if t["verdict_w"] != "contradicted" else "inconclusive"
    (m / "conv" / "results.json").write_text(json.dumps(flipped))
    lists = second_lists([(ROOT, first), (ROOT / "mnist1d", mnist)], [d, m])
    text = "\n".join(replication(lists))
    pooled = lists[1].both("conv")
    assert (
        "Fragile on mnist1d: conv (" in text
        and f"({pooled['n']} seeds together, unadjusted" in text
    )
    lines = found_table(first, [mnist], lists)
    table, legend = lines[0], lines[-1]  # the second lists' legend comes last
    conv = next(x for x in table.splitlines() if x.startswith("| conv"))
    cell = conv.split(" | ")[-1]
    assert "fragile" in cell and "both lists together (exploratory), 20 seeds" in cell
    assert "digits and mnist1d columns" in legend


@pytest.mark.slow  # about a minute on 2 cores: `make test-slow`
def test_a_second_list_trains_at_its_first_lists_tuning_without_tuning_again(tmp_path):
    from dropstudy_experiments.common import Context, cell

    small = digits().subset(200, seed=0)
    tiny = PR.Protocol(
        window=10, eval_every=10, recipes=(replace(PR.ADAM, lrs=(1e-3, 1e-2)),),
        pilot_seeds=(1000, 1001),
    )  # fmt: skip
    cells = {"c": cell(PR.tune, ds=small, model=MLP(hidden=(8,), n_out=10, rate=0.5),
                       protocol=tiny)}  # fmt: skip
    first = Context("x", tmp_path / "first", progress=False, data=small)
    choice = first.run_cells(cells)["c"]
    assert first.tuned == {"computed": 1, "reused": 0}
    tuned = tmp_path / "first" / "tuning"
    assert len(list(tuned.glob("*.json"))) == 1
    before = {p: p.read_bytes() for p in tuned.glob("*")}
    second = Context("x", tmp_path / "second", progress=False, data=small, tuning=tuned)
    assert second.run_cells(cells)["c"] == choice
    assert second.tuned == {"computed": 0, "reused": 1}
    assert not (tmp_path / "second" / "tuning").exists()
    # what a second list makes (another arm) goes to its own folder; the first's is read only
    other = {"c": cell(PR.tune, ds=small, model=MLP(hidden=(8,), n_out=10, rate=0.2),
                       protocol=tiny)}  # fmt: skip
    second.run_cells(other)
    assert second.tuned == {"computed": 1, "reused": 1}
    assert len(list((tmp_path / "second" / "tuning").glob("*.json"))) == 1
    assert {p: p.read_bytes() for p in tuned.glob("*")} == before
    alone = Context("x", tmp_path / "third", progress=False, data=small)  # its own folder
    alone.run_cells(cells)
    assert alone.tuned == {"computed": 1, "reused": 0}


def test_a_second_list_that_overlaps_another_second_list_is_refused(tmp_path, capsys):
    from dropstudy_experiments import runner
    from dropstudy_experiments.cli import main

    d = _second(tmp_path, name="robustness", start=100)  # seeds 100..109 of robustness
    span = runner.config("robustness").seed_span()
    check = lambda out, names, start, quick=False: runner.check_other_lists(  # noqa: E731
        out, names, quick, None, start, tmp_path
    )
    for start in (100 - span + 1, 105, 100 + span - 1):
        with pytest.raises(DropstudyError, match=f"overlap the second list in {d}"):
            check(tmp_path / f"from{start}", ["robustness"], start)
    for start in (100 - span, 100 + span):  # disjoint on either side
        check(tmp_path / f"from{start}", ["robustness"], start)
    check(tmp_path / "x", ["voting"], 105)  # not run there
    check(d, ["robustness"], 105)  # its own folder
    check(tmp_path / "x", ["robustness"], 105, quick=True)  # another scale
    # a list elsewhere (--out anywhere) is still checked against the first list's folder
    with pytest.raises(DropstudyError, match="overlap the second list"):
        check(tmp_path / "elsewhere" / "deeper" / "from105", ["robustness"], 105)
    out = tmp_path / "from105"
    argv = ["run", "robustness", "--seed-start", "105", "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    assert "overlap the second list" in capsys.readouterr().err and not out.exists()


def test_replicate_refuses_a_second_list_as_the_first_and_its_own_folder(tmp_path, capsys):
    from dropstudy_experiments.cli import main

    second = _second(tmp_path, name="robustness", start=100)
    assert main(["replicate", "--results", str(second), "--dry-run"]) == 2
    assert "holds a second list of seeds (from 100)" in capsys.readouterr().err
    assert main(["replicate", "--results", str(ROOT), "--out", str(ROOT), "--dry-run"]) == 2
    assert "is the first list's folder" in capsys.readouterr().err
    # a folder holding another list's results (here a first list's) is refused, dry run too
    other = tmp_path / "other"
    shutil.copytree(ROOT / "robustness", other / "robustness")
    assert main(["replicate", "--results", str(ROOT), "--out", str(other), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "holds results of `dropstudy run robustness`" in err and "--force" not in err
    assert "Give --out another folder" in err
    assert main(["replicate", "--results", str(ROOT), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "robustness (Holm p " in err or "robustness (held by the protocol" in err


def test_a_second_list_is_decided_at_the_first_lists_derived_margin(tmp_path):
    """A margin derived from a list's own seeds differs between lists: the second list's
    primary (and twin) is decided again at the first list's, its own margin beside it, and the
    lists pool at one margin."""
    first = read_results(ROOT)
    folder = _second(tmp_path, "maskmode")
    path = folder / "maskmode" / "results.json"
    r = json.loads(path.read_text())
    key = r["primary"]
    a = first["maskmode"]["tests"][key]
    for k in (key, key + PR.TWICE):  # as if its own seeds had derived twice the margin
        r["tests"][k] = {**r["tests"][k], "margin": 2 * a["margin"], "verdict": "supported"}
    path.write_text(json.dumps(r))
    (ls,) = second_lists([(ROOT, first)], [folder])
    b = ls.second["maskmode"]["tests"][key]
    assert b["margin"] == a["margin"] and b["margin_own"] == 2 * a["margin"]
    assert b["verdict"] == a["verdict"] and b["effect"] == pytest.approx(a["effect"])
    assert (
        b["within_2w"]["margin"]
        == a["margin"]
        == ls.second["maskmode"]["tests"][key + PR.TWICE]["margin"]
    )
    assert ls.both("maskmode")["margin"] == a["margin"]  # pools at one margin
    text = "\n".join(replication([ls]))
    assert f"(at the first list's margin +-{a['margin']:.4g}; its own run's: +-" in text


def test_run_seed_start_reads_its_first_lists_tuning(tmp_path, monkeypatch, capsys):
    """`run --seed-start K --out FIRST/fromK` trains at FIRST's tuned settings, as
    `replicate` does; without a first list's tuning there, it says it tunes again."""
    from dropstudy_experiments import runner
    from dropstudy_experiments.cli import main

    seen = []
    monkeypatch.setattr(
        runner, "run_experiment", lambda n, **kw: seen.append(kw["tuning"]) or tmp_path / "x"
    )
    monkeypatch.setattr("dropstudy_experiments.cli.outcome_lines", lambda *a: [])
    (tmp_path / "first" / "tuning").mkdir(parents=True)
    out = tmp_path / "first" / "from100"
    assert main(["run", "overfitting", "--quick", "--seed-start", "100", "--out", str(out)]) == 0
    assert seen == [tmp_path / "first" / "tuning"]
    capsys.readouterr()
    alone = tmp_path / "none" / "from100"
    assert main(["run", "stayput", "--quick", "--seed-start", "100", "--out", str(alone)]) == 0
    assert seen[-1] is None and "no first list's tuning" not in capsys.readouterr().err
    # an experiment that tunes its arms (overfitting) is told it will tune again
    assert main(["run", "overfitting", "--quick", "--seed-start", "100", "--out", str(alone)]) == 0
    assert seen[-1] is None and "no first list's tuning in" in capsys.readouterr().err


def test_a_second_list_of_another_config_names_the_fields(tmp_path):
    first = read_results(ROOT)
    folder = _second(tmp_path, "voting")
    path = folder / "voting" / "results.json"
    r = json.loads(path.read_text())
    r["config"]["margin_err"] = 0.5
    path.write_text(json.dumps(r))
    with pytest.raises(DropstudyError, match=r"by field: \{'margin_err': \(0\.005, 0\.5\)\}"):
        second_lists([(ROOT, first)], [folder])
