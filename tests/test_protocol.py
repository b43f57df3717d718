"""The study's training protocol: the validation split, tuning, in-run stops and the guard."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from dropstudy_experiments import protocol as PR
from dropstudy_experiments.stats import (
    INCONCLUSIVE,
    SUPPORTED,
    decide,
    direction,
    equivalence,
    held_reasons,
)

from dropstudy.data import digits
from dropstudy.models import MLP
from dropstudy.train import seed_keys, train_seeds
from dropstudy.validate import DropstudyError

# A tiny arm: 300 digits, two recipes of two rates each, W = 20 steps.
TINY = PR.Protocol(
    window=20,
    eval_every=10,
    recipes=(
        replace(PR.ADAM, lrs=(1e-3, 1e-2)),
        PR.Recipe("sgd+max-norm", PR.SRIVASTAVA.train, (0.05, 1e4)),
    ),
    pilot_seeds=(1000, 1001),
)


@pytest.fixture(scope="module")
def small():
    return digits().subset(300, seed=0)


def test_split_is_fixed_disjoint_and_whole(small):
    train, (xv, _yv) = PR.split(small)
    again, (xv2, _) = PR.split(small)
    assert len(xv) == round(PR.VAL_FRACTION * 300) and len(train.x_train) + len(xv) == 300
    np.testing.assert_array_equal(xv, xv2)
    np.testing.assert_array_equal(train.x_train, again.x_train)
    rows = lambda a: {r.tobytes() for r in a}  # noqa: E731
    assert rows(train.x_train) | rows(xv) == rows(small.x_train)
    assert len(rows(train.x_train) & rows(xv)) <= 300 - len(rows(small.x_train))  # duplicates only
    np.testing.assert_array_equal(train.x_test, small.x_test)


@pytest.mark.slow  # about a minute on 2 cores: `make test-slow`
def test_tune_scores_every_candidate_as_its_own_run_does_and_picks_the_lowest(small):
    model = MLP(hidden=(16,), n_out=10, rate=0.5)
    choice = PR.tune(small, model, TINY)
    scores = {
        (rc, float(lr)): c["score"] for rc, g in choice["grid"].items() for lr, c in g.items()
    }
    assert scores[("sgd+max-norm", 1e4)] == np.inf or scores[("sgd+max-norm", 1e4)] > 10
    assert (choice["recipe"], choice["lr"]) == min(scores, key=scores.get)
    # Adam at 1e-2, trained on its own: the same best validation loss within W (float rounding).
    train, val = PR.split(small)
    cfg = TINY.config(TINY.recipes[0], model, lr=1e-2)
    _, hist = train_seeds(
        model, seed_keys(list(TINY.pilot_seeds)), train.x_train, train.y_train, cfg, validation=val
    )
    own = float(np.mean(np.asarray(hist.selected[0].loss)))
    assert scores[("adam", 1e-2)] == pytest.approx(own, rel=1e-4)
    # the same best within W, from the curve of validation losses in Python
    curve = np.asarray(hist.val_loss)[:, : TINY.window]
    assert own == pytest.approx(float(np.mean(np.nanmin(curve, axis=1))), rel=1e-6)


def test_train_arm_stops_within_its_windows_and_takes_a_tuned_choice(small, tmp_path):
    from dropstudy_experiments.common import TuningStore

    model = MLP(hidden=(16,), n_out=10, rate=0.3)
    ref = MLP(hidden=(16,), n_out=10, rate=0.5)
    # one tuning of ref for the three arms below (each would tune it again without a store)
    with PR.tuning_store(TuningStore(tmp_path / "tuning")):
        arm = PR.train_arm(small, model, TINY, [0, 1, 2], tune_as=ref)
        rec = arm.record
        # the choice is the tuned grid's best (test_the_tuning_store_reuses_a_choice_and_
        # recomputes_none checks tune itself)
        scores = {
            (r, float(lr)): c["score"]
            for r, lrs in rec["tuning"].items()
            for lr, c in lrs.items()
            if c["score"] is not None
        }  # fmt: skip  a diverged: None
        assert (rec["recipe"], rec["lr"]) == min(scores, key=scores.get)
        assert "rate=0.5" in rec["tuned_as"]
        assert all(10 <= s <= 20 for s in rec["stop_w"])
        assert all(10 <= s <= 40 for s in rec["stop_2w"])
        assert all(10 <= s <= 40 for s in rec["settle_2w"]) and rec["diverged"] == [False] * 3
        assert all(b <= a + 1e-7 for a, b in zip(rec["val_w"], rec["val_2w"], strict=True))
        assert rec["n_train"] == len(PR.split(small)[0].x_train)
        assert rec["converged"] == PR.converged(rec["settle_2w"], 20)
        with pytest.raises(DropstudyError, match="also pilot seeds"):
            PR.train_arm(small, model, TINY, [0, 1000], tune_as=ref)
        sub = PR.train_arm(small, model, TINY, [0, 1], tune_as=ref, subsets=50)
        assert sub.record["n_train"] == 50 and sub.record["lr"] == rec["lr"]


def test_a_seed_settles_at_its_first_loss_within_a_hundredth_of_its_minimum():
    nan = np.nan
    curves = np.array(
        [
            [nan, 1.0, nan, 0.5, nan, 0.504, nan, 0.5001],  # flat from step 4: settles there
            [nan, 1.0, nan, 0.8, nan, 0.6, nan, 0.5],  # still improving: settles at the end
        ]
    )
    assert PR.settle_steps(curves, 8) == [4, 8]


def test_converged_is_fewer_than_a_fifth_of_seeds_settling_in_the_last_tenth():
    assert PR.converged([100] * 9 + [400], 200)  # one of ten late (> 360 of 2W = 400)
    assert not PR.converged([100] * 8 + [380, 400], 200)  # two of ten
    assert PR.converged([360] * 10, 200)  # at the boundary: not late


def _test(effect: float, sd: float = 0.01) -> dict:
    rng = np.random.default_rng(0)
    return direction(effect + sd * rng.standard_normal(10), what="x")


def _arm(late: int, seeds: int = 10, window: int = 200) -> dict:
    settle = [2 * window] * late + [window] * (seeds - late)
    return {"converged": PR.converged(settle, window), "settle_2w": settle, "window": window}


def test_guard_blocks_an_arm_not_converged_or_a_budget_dependent_verdict():
    ok, late = {"a": _arm(0)}, {"a": _arm(3)}
    strong, weak = _test(1.0), _test(0.0)
    assert strong["verdict"] == SUPPORTED
    kept = PR.guard(strong, strong, ok)
    assert "blocked" not in kept and decide(kept, kept["p"]) == SUPPORTED
    assert kept["within_2w"]["verdict"] == SUPPORTED and kept["verdict_w"] == SUPPORTED
    assert kept["arms"] == {"a": {"converged": True, "late": 0, "seeds": 10}}
    blocked = PR.guard(strong, strong, late)
    assert blocked["verdict"] == INCONCLUSIVE and decide(blocked, blocked["p"]) == INCONCLUSIVE
    assert blocked["verdict_w"] == SUPPORTED  # its own verdict is kept beside the guarded one
    assert blocked["blocked"] == [
        "a not converged (3 of 10 seeds still improving in the last 10% of 2W = 400)"
    ]
    budget = PR.guard(strong, weak, ok)
    assert budget["verdict"] == INCONCLUSIVE and decide(budget, budget["p"]) == INCONCLUSIVE
    assert budget["blocked"][0].startswith("budget-dependent: supported within W, inconclusive")


def test_the_budget_rule_compares_verdicts_at_the_level_they_are_decided():
    ok = {"a": _arm(0)}
    w, twin = _test(0.02, sd=0.02), _test(0.02, sd=0.03)  # both significant alone, p ~ 0.01-0.05
    assert w["p"] < twin["p"] < 0.05
    g = PR.guard(w, twin, ok)
    assert g["verdict"] == SUPPORTED and "blocked" not in g  # same verdict at the raw level
    # Holm scales the test's p: the twin's by the same factor crosses 0.05 first
    p_adj = 0.049
    assert twin["p"] * p_adj / w["p"] > 0.05
    assert decide(g, p_adj) == INCONCLUSIVE
    assert "budget-dependent" in held_reasons(g, p_adj)[0]


@pytest.mark.slow  # about 20 s; train_arm's test tunes under a store in the default suite
def test_the_tuning_store_reuses_a_choice_and_recomputes_none(small, tmp_path):
    import json

    from dropstudy_experiments.common import TuningStore

    model = MLP(hidden=(16,), n_out=10, rate=0.0)
    with PR.tuning_store(TuningStore(tmp_path / "tuning")):
        first = PR.tune(small, model, TINY)
        (path,) = (tmp_path / "tuning").glob("*.json")
        stored = json.loads(path.read_text())
        stored["result"]["lr"] = 123.0  # marked: a reused choice comes back with the mark
        path.write_text(json.dumps(stored))
        assert PR.tune(small, model, TINY) == {**first, "lr": 123.0}
        other = PR.tune(small, replace(model, rate=0.5), TINY)  # another arm: its own file
    assert other["lr"] != 123.0 and len(list((tmp_path / "tuning").glob("*.json"))) == 2
    assert PR.tune(small, model, TINY) == first  # no store: computed, the same values


def test_a_diverged_candidate_scores_none_and_is_never_chosen(small):
    choice = PR.tune(small, MLP(hidden=(16,), n_out=10, rate=0.5), TINY)
    assert choice["grid"]["sgd+max-norm"]["10000"]["score"] is None or (
        choice["grid"]["sgd+max-norm"]["10000"]["score"] > 10
    )
    assert (choice["recipe"], choice["lr"]) != ("sgd+max-norm", 1e4)


def test_a_plain_arm_is_scored_by_weight_scaling_whatever_select_by_says():
    p = replace(TINY, select_by="mc", select_k=8)
    plain = p.config(TINY.recipes[0], MLP(hidden=(4,), rate=0.0), lr=1e-3)
    drop = p.config(TINY.recipes[0], MLP(hidden=(4,), rate=0.5), lr=1e-3)
    assert (plain.select_by, plain.select_k) == ("ws", None)
    assert (drop.select_by, drop.select_k, drop.steps, drop.windows) == ("mc", 8, 40, (20,))


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"window": 25}, "must divide the window"),
        ({"select_by": "exact"}, "select_by"),
        ({"recipes": ()}, "at least one"),
        ({"pilot_seeds": (1,)}, "two distinct seeds"),
        ({"select_k": 8}, "use select_by='mc'"),
        ({"select_by": "mc", "select_k": 0}, "select_k must be an integer >= 1"),
        ({"eval_every": 0}, "eval_every must be an integer >= 1"),
        ({"window": -40}, "window must be an integer >= 1"),
        ({"pilot_seeds": (1000, 1000)}, "two distinct seeds"),
        ({"recipes": (PR.ADAM, replace(PR.ADAM, lrs=(0.1,)))}, "recipe names"),
    ],
)
def test_a_protocol_no_run_could_use_is_refused(kw, words):
    with pytest.raises(DropstudyError, match=words):
        replace(TINY, **kw)


def test_a_recipe_with_its_own_lr_or_no_rates_is_refused():
    with pytest.raises(DropstudyError, match="leave train.lr unset"):
        PR.Recipe("x", PR.ADAM.train.replace(lr=1e-3), (1e-3,))
    with pytest.raises(DropstudyError, match="lrs"):
        PR.Recipe("x", PR.ADAM.train, ())
    with pytest.raises(DropstudyError, match="ascending"):
        PR.Recipe("x", PR.ADAM.train, (1e-2, 1e-3))
    with pytest.raises(DropstudyError, match="constant schedule"):
        PR.Recipe("x", PR.ADAM.train.replace(schedule="cosine"), (1e-3,))
    with pytest.raises(DropstudyError, match="not the recipe's to set"):
        PR.Recipe("x", PR.ADAM.train.replace(mask_mode="cycle"), (1e-3,))
    for lrs in ((1e-3, 1e-3), (1e-3, 1.0000001e-3), (1e-3, float("inf"))):
        with pytest.raises(DropstudyError, match="strictly ascending"):
            PR.Recipe("x", PR.ADAM.train, lrs)
    with pytest.raises(DropstudyError, match="are the protocol's"):
        PR.Recipe("x", PR.ADAM.train.replace(steps=7), (1e-3,))


def test_a_conv_net_with_dense_dropout_is_not_plain():
    from dropstudy.models import ConvNet

    p = replace(TINY, select_by="mc", select_k=8)
    conv = ConvNet(channels=(2,), rate=0.0, dense_rate=0.5)
    assert p.config(TINY.recipes[0], conv, lr=1e-3).select_by == "mc"
    plain = ConvNet(channels=(2,), rate=0.0, dense_rate=0.0)
    assert p.config(TINY.recipes[0], plain, lr=1e-3).select_by == "ws"


def test_a_held_verdict_says_why_in_the_tables():
    from dropstudy_experiments.common import blocked_str, p_str, verdict_table

    late = {"a": _arm(3)}
    strong = _test(1.0)
    held = PR.guarded({"t": strong}, {"t": strong}, late)
    assert list(held) == ["t", "t" + PR.TWICE] and "within 2W" in held["t" + PR.TWICE]["what"]
    assert "blocked" not in held["t" + PR.TWICE]
    assert (
        blocked_str(held["t"])
        == " (held by the protocol, its own verdict supported: a not converged (3 of 10 seeds "
        "still improving in the last 10% of 2W = 400))"
    )
    assert blocked_str(strong) == ""
    # a twin that Holm's factor moves across the level: its p at that factor is shown
    ok = {"a": _arm(0)}
    w, w2 = _test(0.01, sd=0.01), _test(0.006, sd=0.01)  # p 0.0017 within W, 0.022 in 2W
    twin = PR.guarded({"t": w}, {"t": w2}, ok)["t"]
    factor = 4.0  # the twin's interval excludes 0, yet at 4 x 0.022 it is inconclusive
    text = blocked_str(twin, min(1.0, twin["p"] * factor))
    assert "budget-dependent" in text and "within 2W decided at p = 0.0869" in text
    # unadjusted, the twin's own interval says how it is decided: no clause
    w3 = _test(0.004, sd=0.01)  # p 0.08: inconclusive within 2W at its own p
    held_own = PR.guarded({"t": w}, {"t": w3}, ok)["t"]
    assert "budget-dependent" in blocked_str(held_own)
    assert "within 2W decided" not in blocked_str(held_own)
    # an equivalence twin whose 90% interval lies inside the margin, held after adjustment
    rng = np.random.default_rng(3)
    e = equivalence(0.002 * rng.standard_normal(10), 0.01, what="x")
    e2 = equivalence(0.0075 + 0.002 * rng.standard_normal(10), 0.01, what="x")
    assert -0.01 < e2["lo"] and e2["hi"] < 0.01  # supported on its own
    held_eq = PR.guarded({"t": e}, {"t": e2}, ok)["t"]
    f = 0.05 / e2["p"] * 1.5  # a factor that lifts the twin's p past the level
    assert e["p"] * f < 0.05  # and leaves the primary's below it
    text = blocked_str(held_eq, min(1.0, held_eq["p"] * f))
    assert f"within 2W decided at p = {p_str(min(1.0, e2['p'] * f))}" in text
    md = verdict_table({"tests": held, "primary": "t"})
    assert "**inconclusive** (held by the protocol, its own verdict supported: a not" in md


def test_empty_seeds_and_a_choice_no_better_than_chance_are_refused(small):
    model = MLP(hidden=(16,), n_out=10, rate=0.0)
    with pytest.raises(DropstudyError, match="seeds is empty"):
        PR.train_arm(small, model, TINY, [])
    # SGD without max-norm at absurd rates: finite but useless losses, never a choice
    wild = replace(TINY, recipes=(PR.Recipe("sgd", PR.ADAM.train.replace(optimizer="sgd",
                   momentum=0.9), (1e4, 1e5)),))  # fmt: skip
    with pytest.raises(DropstudyError, match="no candidate beat chance"):
        PR.tune(small, model, wild)


def test_a_shared_arm_is_trained_once_and_comes_back_bit_for_bit(small, tmp_path):
    import jax
    from dropstudy_experiments.common import TuningStore

    model, seeds = MLP(hidden=(16,), n_out=10, rate=0.5), [0, 1]
    fresh = PR.train_arm(small, model, TINY, seeds)
    with PR.tuning_store(TuningStore(tmp_path / "tuning")):
        first = PR.shared_arm(small, model, TINY, seeds)
        arms = sorted((tmp_path / "tuning").glob("arm_*.json"))
        again = PR.shared_arm(small, model, TINY, seeds)  # another experiment: reused
        assert sorted((tmp_path / "tuning").glob("arm_*.json")) == arms and len(arms) == 1
        PR.shared_arm(small, model, TINY, [0, 2])  # other seeds: another arm
        assert len(list((tmp_path / "tuning").glob("arm_*.json"))) == 2
    for arm in (first, again):
        for a, b in zip(jax.tree.leaves(arm.within_w), jax.tree.leaves(fresh.within_w)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(arm.within_2w), jax.tree.leaves(fresh.within_2w)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert arm.record["stop_w"] == fresh.record["stop_w"]
    # no store (outside a run): train_arm itself
    alone = PR.shared_arm(small, model, TINY, seeds)
    assert alone.history is not None and alone.record["stop_2w"] == fresh.record["stop_2w"]


def test_a_plain_net_tunes_under_the_weight_scaling_protocol_whatever_the_dropout_nets_use():
    plain = PR.plain_protocol(PR.ENSEMBLE)
    assert plain == PR.NET_AS_USED  # the same tuning key as a net-as-used experiment's
    assert (plain.select_by, plain.select_k) == ("ws", None)
    assert PR.ENSEMBLE.select_by == "mc" and PR.ENSEMBLE.select_k == PR.SELECT_K <= 32


def test_maskmode_trains_each_arm_with_its_mode_and_per_example_is_the_shared_arm():
    from dropstudy_experiments.maskmode import MODES, with_mode

    for mode in MODES:
        p = with_mode(PR.ENSEMBLE, mode)
        assert {r.train.mask_mode for r in p.recipes} == {mode}
        assert [r.lrs for r in p.recipes] == [r.lrs for r in PR.ENSEMBLE.recipes]
    assert with_mode(PR.ENSEMBLE, "per_example") == PR.ENSEMBLE
    assert with_mode(PR.ENSEMBLE, "per_batch") != PR.ENSEMBLE


def test_caveats_name_arms_not_converged_and_seeds_stopped_at_the_end_of_w():
    def summary(stops, settle, window=100):
        rec = {"recipe": "adam", "lr": 1e-3, "edge": False, "tuned_as": "x", "window": window,
               "stop_w": stops, "stop_2w": stops, "settle_2w": settle, "diverged": [False] * 4,
               "converged": PR.converged(settle, window),
               "tuning": {"adam": {"0.001": {"score": 1.0}}}}  # fmt: skip
        return PR.arm_summary(rec)

    fine = summary([40, 50, 50, 60], [40, 50, 50, 60])
    assert PR.caveats({"a": fine}, 10) == ""
    late = summary([95, 100, 50, 60], [195, 200, 50, 60])
    text = PR.caveats({"a": late}, 10)
    assert "Not converged, so its tests are held: a (2 of 4 seeds" in text
    assert (
        "Seeds stopped in the last 10% of W, still improving there" in text and "a 2 of 4" in text
    )


def test_stopped_by_names_the_selecting_predictor():
    assert PR.stopped_by(PR.NET_AS_USED.to_dict()).startswith("weight scaling")
    assert PR.stopped_by(PR.ENSEMBLE.to_dict()) == "the MC average of 32 fixed subnetworks"


def test_study_seeds_that_reach_the_pilot_seeds_are_refused_when_the_config_is_built():
    from dropstudy_experiments import runner

    with pytest.raises(DropstudyError, match=r"voting's seeds 0..1000 include the pilot seeds "
                       r"\[1000\] of its protocol"):  # fmt: skip
        runner.config("voting", seeds=1001)
    with pytest.raises(DropstudyError, match="scaling's seeds .* of its expect_protocol"):
        runner.config("scaling", seeds=1002)
    assert runner.config("voting", seeds=1000).seeds == 1000  # 0 .. 999: clear of them


def test_a_guarded_primary_keeps_its_twin_beside_it():
    from dropstudy_experiments.common import primary_first

    tests = {"a": 1, "a" + PR.TWICE: 2, "b": 3, "b" + PR.TWICE: 4}
    assert list(primary_first(tests, "b")) == ["b", "b" + PR.TWICE, "a", "a" + PR.TWICE]
    assert list(primary_first({"a": 1, "b": 2}, "b")) == ["b", "a"]


def test_the_reports_protocol_paragraph_says_who_is_on_it_in_whole_or_part_and_stopped_by_what():
    from dropstudy_experiments.report import protocol_paragraph

    res = {
        "voting": {"protocol": PR.ENSEMBLE.to_dict()},
        "scaling": {"protocol": PR.NET_AS_USED.to_dict()},
        "ensembles": {},
        "tutorial": {},
    }
    text = protocol_paragraph(res)
    assert "The nets of voting, scaling are trained by the study's protocol" in text
    assert "for the dropout nets of voting (claims about the ensemble)" in text
    assert "In part: scaling (its trained nets of part C" in text
    assert "The nets of ensembles are not yet on the protocol" in text
    assert "tutorial (the tutorial's own training) keep their own protocols" in text
    assert "the dropout nets of" not in protocol_paragraph({"scaling": res["scaling"]})


def test_caveats_say_when_arms_tuned_apart_chose_the_same_setting():
    a = {"recipe": "adam", "lr": 3e-3, "at_w_end": 0, "converged": True, "late": 0,
         "stop_w": [50], "settle_2w": [50], "tuning": {"adam": {"0.003": 1.0}}}  # fmt: skip
    assert "chose the same setting (adam at lr 0.003)" in PR.caveats({"x": a, "y": a}, 10)
    assert "chose the same" not in PR.caveats({"x": a}, 10)


def test_a_primarys_findings_are_its_own_not_a_longer_quantitys():
    from dropstudy_experiments.common import primary_findings

    def test(what, predictor, verdict):
        return {"what": what, "predictor": predictor, "rule": "direction", "claimed": "> 0",
                "level": 0.95, "effect": 0.1, "lo": 0.01, "hi": 0.2,
                "verdict": verdict}  # fmt: skip

    short, long = "test NLL (nats)", "test NLL (nats) at matched compute"
    tests = {
        "p": test(short, "mc", "supported"), "p_ws": test(short, "ws", "inconclusive"),
        "q": test(long, "mc", "supported"), "q_ws": test(long, "ws", "inconclusive"),
    }  # fmt: skip
    found = primary_findings({"tests": tests, "primary": "p"})
    assert len(found) == 1 and f"*{short}*" in found[0] and long not in found[0]
