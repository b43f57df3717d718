"""Runs of the same seeds on another CPU, set beside the report's (report.other_cpus)."""

import json

import pytest
from dropstudy_experiments.report import (
    cpu_comparison,
    found_table,
    noise_lines,
    other_cpus,
    paired_shift,
    tuning_noise,
)

from dropstudy.validate import DropstudyError

XEON = {"cpu": "Intel(R) Xeon(R) Processor", "arch": "x86_64", "xla_flags": ""}
EPYC = {"cpu": "AMD EPYC", "arch": "x86_64", "xla_flags": ""}


def _fake(effect, p, machine, verdict=None, own=None, dataset="digits", values=None):
    """A results file with one primary direction test, its interval 0.1 either side."""
    test = {"rule": "direction", "claimed": "> 0", "n": 3, "effect": effect, "lo": effect - 0.1,
            "hi": effect + 0.1, "level": 0.95, "p": p, "outcome": "supported",
            "verdict": verdict or ("supported" if p < 0.05 else "inconclusive"),
            "what": "x minus y", "predictor": "mc", "mde": 0.1, "seeds_needed": 5,
            "values": values or [effect - 0.1, effect, effect + 0.1]}  # fmt: skip
    if own is not None:  # held by the protocol (an arm not converged): its own verdict apart
        twin = {k: test[k] for k in ("rule", "claimed", "level", "effect", "lo", "hi", "p",
                                     "outcome", "verdict")}  # fmt: skip
        test.update(verdict_w=own, within_2w=twin, not_converged=["x late"], blocked=["late"])
    scale = {"quick": False, "seeds": None, "dataset": dataset}
    return {"claim": "c", "tests": {"t": test}, "primary": "t", "scale": scale,
            "config": {"a": 1}, "machine": machine}  # fmt: skip


def _folder(root, results):
    for n, r in results.items():
        (root / n).mkdir(parents=True)
        (root / n / "results.json").write_text(json.dumps(r))
    return root


def test_each_primary_is_classed_against_its_run_on_another_cpu(tmp_path):
    # experiments whose sections add no headline caveat of their own (a derived margin's)
    here = {"robustness": _fake(0.5, 0.001, EPYC, verdict="inconclusive", own="supported"),
            "overfitting": _fake(0.5, 0.001, EPYC, verdict="inconclusive", own="supported"),
            "averaging": _fake(0.5, 0.001, EPYC),
            "tutorial": _fake(0.1, 0.4, EPYC, verdict="inconclusive",
                               own="inconclusive")}  # fmt: skip
    there = {
        "robustness": _fake(0.1, 0.4, XEON),  # its evidence is inconclusive there
        "overfitting": _fake(0.5, 0.001, XEON),  # the same evidence, not held there
        "averaging": _fake(0.5, 0.001, XEON),
        "tutorial": _fake(0.1, 0.4, XEON),  # inconclusive on both, held here only
    }
    folder = _folder(tmp_path / "cpu-xeon", there)
    cpus = other_cpus([(tmp_path, here)], [folder])
    text = "\n".join(cpu_comparison(cpus))
    # overfitting: held here, supported there at the headline's level too: the guard alone
    # moved the headline, and the row says so (not "fragile")
    assert "The headline verdict differs by CPU: overfitting (digits). Of those, with the " in text
    assert "(the Holm adjustment alone): none." in text
    assert "The evidence differs: robustness (digits). The guard alone differs: overfitting" in text
    # a guard that holds on one CPU only where both are inconclusive: said, and moot
    assert "so that no verdict moves with it: tutorial (digits)." in text
    assert "| inconclusive on both; the protocol's guard holds on one CPU only (moot) |" in text
    assert "headline **inconclusive**; unadjusted inconclusive, held (before the hold: " in text
    assert "| same |" in text  # averaging
    cells = "\n".join(found_table(here, [], [], cpus))
    assert "*(another CPU: fragile: the evidence decides on one CPU only)*" in cells
    assert (
        "*(another CPU: evidence agrees; the protocol's guard holds on one CPU only, so the "
        "headline verdict differs by CPU)*" in cells
    )
    assert "gave another headline verdict, other evidence" in cells  # the legend names all
    # a configuration that differs is no rerun: left out
    changed = {**there, "averaging": {**there["averaging"], "config": {"a": 2}}}
    folder2 = _folder(tmp_path / "cpu-2", changed)
    ((_, mine, theirs, skipped),) = other_cpus([(tmp_path, here)], [folder2])
    assert "averaging" in mine and "averaging" not in theirs and skipped == ["averaging"]
    said = "\n".join(cpu_comparison(other_cpus([(tmp_path, here)], [folder2])))
    assert "Not compared (another configuration on the other CPU): averaging (digits)." in said


def test_a_headline_moved_by_the_holm_adjustment_alone_is_fragile(tmp_path):
    """Evidence and guard agree on both CPUs, yet the Holm-adjusted headline differs (a
    p-value near the level): that alone is classed "headline", and marked fragile."""
    here = {n: _fake(0.5, 0.001, EPYC) for n in ("robustness", "overfitting", "averaging")}
    there = {"averaging": _fake(0.5, 0.03, XEON), "overfitting": _fake(0.5, 0.03, XEON)}
    cpus = other_cpus([(tmp_path, here)], [_folder(tmp_path / "cpu-xeon", there)])
    text = "\n".join(cpu_comparison(cpus))
    for lead in ("differs by CPU: ", "(the Holm adjustment alone): "):
        assert (
            f"{lead}overfitting (digits), averaging (digits)." in text
            or f"{lead}averaging (digits), overfitting (digits)." in text
        )
    assert "The guard alone differs: none;" in text
    cells = "\n".join(found_table(here, [], [], cpus))
    assert "*(another CPU: fragile: the headline verdict differs by CPU)*" in cells


def test_the_shift_pairs_the_seeds():
    a = _fake(0.5, 0.001, EPYC, values=[1.0, 2.0, 3.0])["tests"]["t"]
    b = _fake(0.5, 0.001, XEON, values=[1.5, 2.5, 3.5])["tests"]["t"]
    assert paired_shift(a, b) == "0.5 [0.5, 0.5]"  # the same shift on every seed
    assert paired_shift(a, {**b, "values": [1.0, 2.0]}) == "-"


def test_other_cpu_folders_are_refused_when_they_cannot_compare(tmp_path):
    here = {"voting": _fake(0.5, 0.001, EPYC)}
    firsts = [(tmp_path / "here", here)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DropstudyError, match="no results there"):
        other_cpus(firsts, [tmp_path / "empty"])
    other_data = _folder(tmp_path / "d", {"voting": _fake(0.5, 0.001, XEON, dataset="mnist1d")})
    with pytest.raises(DropstudyError, match="holds results on mnist1d, which the report does"):
        other_cpus(firsts, [other_data])
    quick = _fake(0.5, 0.001, XEON)
    quick["scale"] = {**quick["scale"], "quick": True}
    with pytest.raises(DropstudyError, match="another scale or list of seeds"):
        other_cpus(firsts, [_folder(tmp_path / "q", {"voting": quick})])
    with pytest.raises(DropstudyError, match="made on the same CPU"):
        other_cpus(firsts, [_folder(tmp_path / "s", {"voting": _fake(0.4, 0.001, EPYC)})])


def test_second_lists_made_on_another_cpu_are_named():
    from dropstudy_experiments.report import Lists, replication

    first = {"voting": _fake(0.5, 0.001, EPYC)}
    second = {"voting": _fake(0.4, 0.002, XEON)}
    second["voting"]["scale"] = {**second["voting"]["scale"], "seed_start": 100}
    text = "\n".join(replication([Lists(first, second, "results/from100")]))
    assert "Lists made on different CPUs" in text
    assert "voting (digits: the first on AMD EPYC (x86_64), the second on Intel(R) Xeon" in text
    same = {"voting": {**second["voting"], "machine": EPYC}}
    assert "different CPUs" not in "\n".join(replication([Lists(first, same, "results/from100")]))


def test_the_code_digests_say_whether_the_cpu_alone_moved_the_numbers(tmp_path):
    """Two runs of equal code digests: the CPU alone; of other digests: the code too; a file
    without one (made before results files recorded it): the code may differ."""
    from dropstudy_experiments.common import code_record
    from dropstudy_experiments.report import code_note

    a, b = code_record({"rate=0.5": "1" * 16}, "s"), code_record({"rate=0.5": "2" * 16}, "s")
    assert list(code_record({"y": "2", "x": "1"})["cells"]) == ["x", "y"]  # sorted by label
    assert a["digest"] != b["digest"]
    assert code_record({"rate=0.5": "1" * 16}, "t")["digest"] != a["digest"]  # the summary's
    here = {"voting": {**_fake(0.5, 0.001, EPYC), "code": a},
            "conv": {**_fake(0.5, 0.001, EPYC), "code": a},
            "diversity": {**_fake(0.5, 0.001, EPYC), "code": a}}  # fmt: skip
    there = {"voting": {**_fake(0.5, 0.001, XEON), "code": a},
             "conv": {**_fake(0.5, 0.001, XEON), "code": b},
             "diversity": _fake(0.5, 0.001, XEON)}  # fmt: skip
    cpus = other_cpus([(tmp_path, here)], [_folder(tmp_path / "cpu-xeon", there)])
    note = code_note(cpus)
    assert "so the CPU alone moves their numbers: voting (digits)." in note
    assert "also come from them: conv (digits)." in note
    assert "changed between the two runs: diversity (digits)." in note
    assert note in "\n".join(cpu_comparison(cpus)).replace("\n", " ")
    bare_here = {"voting": _fake(0.5, 0.001, EPYC)}
    bare = other_cpus(
        [(tmp_path, bare_here)], [_folder(tmp_path / "bare", {"voting": _fake(0.5, 0.001, XEON)})]
    )
    assert code_note(bare).startswith("In each compared pair a results file records no digest")


def test_a_run_that_differs_in_its_margin_rule_alone_is_decided_at_this_margin():
    """maskmode on the Xeon ran with a fixed margin, here with a derived one: the same nets,
    so the Xeon's primary is decided again at this report's margin, not left out."""
    from pathlib import Path

    from dropstudy_experiments.report import margin_rule_only, read_results

    root = Path(__file__).resolve().parent.parent / "results"
    here = read_results(root)
    xeon = root / "cpu-xeon"
    assert margin_rule_only(here["maskmode"]["config"], read_results(xeon)["maskmode"]["config"])
    assert not margin_rule_only({"a": 1, "margin_share": 0.5}, {"a": 2})
    assert not margin_rule_only({"a": 1}, {"a": 1})
    ((_, _, there, skipped),) = other_cpus([(root, here)], [xeon])
    assert "maskmode" in there and "maskmode" not in skipped
    a = here["maskmode"]["tests"][here["maskmode"]["primary"]]
    b = there["maskmode"]["tests"][there["maskmode"]["primary"]]
    assert b["margin"] == a["margin"] and b["margin_own"] == 0.02
    text = "\n".join(cpu_comparison(other_cpus([(root, here)], [xeon])))
    assert f"(at this report's margin +-{a['margin']:.4g}; its own run's: +-0.02)" in text


def test_a_verdict_made_on_another_cpu_and_not_compared_is_marked(tmp_path):
    """Most results here on one CPU, one on another and not run on a second: its cell says
    so, and the legend names the main CPU; results all from one CPU carry no such mark."""
    here = {"robustness": _fake(0.5, 0.001, EPYC), "overfitting": _fake(0.5, 0.001, EPYC),
            "averaging": _fake(0.5, 0.001, XEON)}  # fmt: skip
    cells = "\n".join(found_table(here))
    assert cells.count("*(made on Intel(R) Xeon(R) Processor (x86_64) only: not compared") == 1
    assert 'A mark "made on" names a verdict made on another CPU than most of these results ' in (
        cells
    )
    assert "(AMD EPYC (x86_64))" in cells
    same = {n: _fake(0.5, 0.001, EPYC) for n in ("robustness", "averaging")}
    assert "made on" not in "\n".join(found_table(same))


def _arm(recipe, lr, scores):
    """An arm record as protocol.arm_summary writes it: its choice and the tuning grid."""
    return {"recipe": recipe, "lr": lr, "tuned_as": "hidden=(8,)", "tuning": scores}


def test_an_arm_tuned_otherwise_on_another_cpu_is_named_once(tmp_path):
    """A tuned choice that moves with the CPU: one entry per shared arm, naming where each
    experiment keeps it, with both candidates' pilot scores on both CPUs; an arm tuned alike
    gives none."""
    here_grid = {"adam": {"0.01": 0.5531}, "sgd": {"0.3": 0.5968}}
    there_grid = {"adam": {"0.01": 0.5532}, "sgd": {"0.3": 0.4871}}
    same = _arm("adam", 0.01, {"adam": {"0.01": 0.4}})
    wide = _arm("adam", 0.01, here_grid)
    here = {"robustness": {**_fake(0.5, 0.001, EPYC), "arms": {"wide": wide, "small": same}},
            "overfitting": {**_fake(0.5, 0.001, EPYC),
                          "nets": {"x": {"arm": _arm("adam", 0.01, here_grid)}}},
            "averaging": _fake(0.5, 0.001, EPYC)}  # fmt: skip
    there = {"robustness": {**here["robustness"], "machine": XEON,
                        "arms": {"wide": _arm("sgd", 0.3, there_grid), "small": same}},
             "overfitting": {**here["overfitting"], "machine": XEON,
                           "nets": {"x": {"arm": _arm("sgd", 0.3, there_grid)}}},
             "averaging": {**here["averaging"], "machine": XEON}}  # fmt: skip
    cpus = other_cpus([(tmp_path, here)], [_folder(tmp_path / "cpu-xeon", there)])
    text = "\n".join(cpu_comparison(cpus))
    assert "on the other CPU in 1 tuning (an entry names" in text
    # the findings table marks each primary that rests on an arm tuned otherwise there
    cells = "\n".join(found_table(here, [], [], cpus))
    assert (
        "*(another CPU: same verdict; arms of this experiment tuned otherwise there (wide: adam "
        "lr 0.01 here, sgd lr 0.3 there), its primary there 0.5 [0.4, 0.6] (95%))*" in cells
    )
    assert "tuned otherwise there (nets/x: adam lr 0.01 here" in cells  # overfitting's arm
    # a net of the same label tuned on other data (other grids) is an arm of its own
    other = {"adam": {"0.01": 0.7}, "sgd": {"0.3": 0.8}}
    here2 = {**here, "ensembles": {**_fake(0.5, 0.001, EPYC),
                                   "arms": {"digits[1v2]": _arm("adam", 0.01, other)}}}  # fmt: skip
    there2 = {**there, "ensembles": {**here2["ensembles"], "machine": XEON,
                                     "arms": {"digits[1v2]": _arm("sgd", 0.3, other)}}}  # fmt: skip
    two = other_cpus([(tmp_path, here2)], [_folder(tmp_path / "cpu-3", there2)])
    two = "\n".join(cpu_comparison(two))
    assert "on the other CPU in 2 tunings (an entry names" in two
    assert "- digits[1v2], hidden=(8,): adam lr 0.01 here" in two  # named by its part
    assert (
        "- digits, hidden=(8,): adam lr 0.01 here, sgd lr 0.3 there (the pilots' mean "
        "validation loss of the two: here 0.5531 and 0.5968, there 0.5532 and 0.4871; a "
        "results file records no code digest; in overfitting nets/x/arm, robustness arms/wide)."
    ) in text
    alike = other_cpus([(tmp_path, here)], [_folder(tmp_path / "cpu-2", {**there, **{
        n: {**here[n], "machine": XEON} for n in ("robustness", "overfitting")}})])  # fmt: skip
    assert "tuning chose another" not in "\n".join(cpu_comparison(alike))


def test_the_tolerance_rules_are_scored_on_the_tunings_made_on_both_cpus(tmp_path):
    """Every tuning made on both CPUs counts once: its candidates' moves, its lead, and the
    choices of the lowest score and of each tolerance rule (the first candidate in the
    grid's order within t of the best) on both CPUs."""

    def cpus(pairs, name):
        here = {"robustness": {**_fake(0.5, 0.001, EPYC), "arms": {}}}
        there = {"robustness": {**here["robustness"], "machine": XEON, "arms": {}}}
        for arm, (a, b) in pairs.items():
            here["robustness"]["arms"][arm] = _arm("adam", 0, a)
            there["robustness"]["arms"][arm] = _arm("adam", 0, b)
        return other_cpus([(tmp_path, here)], [_folder(tmp_path / name, there)])

    # a near-tie that a 0.5% tolerance holds; a clear choice; a single candidate (no choice)
    near = ({"adam": {"0.001": 1.0, "0.003": 1.004}}, {"adam": {"0.001": 1.006, "0.003": 1.003}})
    clear = ({"adam": {"0.001": 1.0, "0.003": 1.5}}, {"adam": {"0.001": 1.0, "0.003": 1.5}})
    single = ({"adam": {"0.001": 1.0}}, {"adam": {"0.001": 2.0}})
    noise = tuning_noise(cpus({"near": near, "clear": clear, "one": single}, "a"))
    assert noise["n"] == 2 and noise["differ"] == 1
    assert {t: r["differ"] for t, r in noise["rules"].items()} == {0.005: 0, 0.01: 0, 0.02: 0}
    assert noise["rules"][0.005] == {"differ": 0, "held": 1, "moved": 0}
    assert noise["lead"] == pytest.approx((0.004 + 0.5) / 2)
    # moves: near's 0.006 and 0.001 / 1.004, clear's 0 and 0
    assert noise["move"][0] == pytest.approx(0.001 / 1.004 / 2)
    text = " ".join(noise_lines(noise))
    assert "Over the 2 tunings made on both CPUs" in text
    assert "1 of the 2 choices differ" in text
    assert "the best of them (t = 0.5%) leaves 0 where the lowest score leaves 1" in text
    assert "the rule makes 1 of the lowest score's 1 agree and 0 that agreed differ" in text
    assert "Taking instead the smallest learning rate" in text
    assert "at least a tenth" not in text  # the moves stay below the median lead
    # a tie that moves by more than any tolerance: no rule holds it
    far = ({"adam": {"0.001": 1.0, "0.003": 1.05}}, {"adam": {"0.001": 1.1, "0.003": 1.0}})
    noise = tuning_noise(cpus({"far": far}, "b"))
    assert {t: r["differ"] for t, r in noise["rules"].items()} == {0.005: 1, 0.01: 1, 0.02: 1}
    text = " ".join(noise_lines(noise))
    assert "Over the 1 tuning made on both CPUs" in text
    assert "none of them leaves fewer choices different than the lowest score does" in text
    assert "at least a tenth of the moves exceed the median lead" in text
    # the preference is the smaller rate as a number, whatever the grid's text order
    # ("0.0001" before "1e-05") or recipe order (adam before sgd): either order would leave
    # these two choices different at 0.5%
    recipes = (
        {"adam": {"0.01": 1.0}, "sgd": {"0.003": 1.004}},
        {"adam": {"0.01": 1.006}, "sgd": {"0.003": 1.0}},
    )
    textual = ({"adam": {"0.0001": 1.006, "1e-05": 1.0}}, {"adam": {"0.0001": 1.0, "1e-05": 1.004}})
    noise = tuning_noise(cpus({"recipes": recipes, "text": textual}, "d"))
    assert noise["differ"] == 2 and noise["rules"][0.005]["differ"] == 0
    # a choice both CPUs agree on that the rule splits; a far candidate's move not counted
    split = ({"adam": {"0.001": 1.004, "0.003": 1.0}}, {"adam": {"0.001": 1.006, "0.003": 1.0}})
    far3 = ({"adam": {"0.001": 1.0, "0.003": 1.5, "0.01": 2.3}},
            {"adam": {"0.001": 1.0, "0.003": 1.5, "0.01": 9.9}})  # fmt: skip
    noise = tuning_noise(cpus({"split": split}, "e"))
    assert noise["differ"] == 0 and noise["rules"][0.005] == {"differ": 1, "held": 0, "moved": 1}
    assert tuning_noise(cpus({"far3": far3}, "f"))["move"] == (0.0, 0.0)
    assert tuning_noise(cpus({"one": single}, "c")) is None
    assert noise_lines(None) == []


def test_a_verdict_the_adjustment_alone_moves_shows_the_unadjusted_one():
    held = _fake(0.5, 0.001, EPYC, verdict="inconclusive", own="supported")
    here = {"robustness": _fake(0.5, 0.03, EPYC), "overfitting": _fake(0.5, 0.04, EPYC),
            "tutorial": held}  # fmt: skip
    cells = "\n".join(found_table(here))
    # Holm over the three claims: 0.003, 0.06, 0.06 (BH 0.003, 0.04, 0.04); the verdict the
    # protocol holds says so itself, without the unadjusted one
    assert "**inconclusive** (BH: supported) (unadjusted: supported, p = 0.0300)" in cells
    assert "**inconclusive** (BH: supported) (unadjusted: supported, p = 0.0400)" in cells
    assert cells.count("(unadjusted: ") == 2
