"""The scaling experiment's primary margin: the gap retraining opens on the validation split."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dropstudy_experiments import scaling
from fakes import arm_record, shared_arm_calls

from dropstudy.validate import DropstudyError


def test_retrain_gap_is_the_primarys_measure_between_two_nets():
    """Per example: the mean over classes of |a - b| over the two nets' mean per-mask sd,
    each example in its own unit (not a ratio of means)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 4))
    sd_a = rng.uniform(0.5, 2.0, (5, 4))
    sd_b = rng.uniform(0.5, 2.0, (5, 4))
    b = a.copy()
    b[:, 0] += 1.0  # one class one logit up: the mean over 4 classes moves 1/4
    want = 0.25 / (0.5 * (sd_a.mean(1) + sd_b.mean(1)))
    np.testing.assert_allclose(scaling.retrain_gap(a, sd_a, b, sd_b), want)
    np.testing.assert_allclose(scaling.retrain_gap(a, sd_a, a, sd_b), 0)
    # uncentred, as the primary's gap: a common shift is a gap too
    np.testing.assert_allclose(scaling.retrain_gap(a, sd_a, a + 2.0, sd_a), 2 / sd_a.mean(1))


def test_margin_cell_compares_disjoint_pairs_of_seeds_on_the_validation_split(monkeypatch):
    from dropstudy_experiments.evaluate import seed_key
    from dropstudy_experiments.protocol import split

    from dropstudy import masks as M
    from dropstudy.data import digits
    from dropstudy.models import MLP

    ds = digits().subset(300, seed=0)
    model = MLP(hidden=(8,), n_out=10, rate=0.5)
    vs = [model.init(jax.random.key(i), ds.x_train[:1]) for i in range(5)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *vs)
    seen = []
    monkeypatch.setattr(scaling, "shared_arm",
                        lambda *a: seen.append(a) or SimpleNamespace(within_w=stacked))  # fmt: skip
    seeds = [3, 4, 5, 6, 7]
    out = scaling.margin_cell(ds=ds, model=model, protocol=None, seeds=seeds, k=5)
    assert [a[3] for a in seen] == [seeds]
    _, (x, _) = split(ds)
    spec = M.mask_spec(model, ds.x_train[:1])
    mom = [
        [np.asarray(a, np.float64) for a in scaling.logit_moments(
            model, spec, 5, vs[i], jnp.asarray(x), seed_key(("scaling", "margin"), seeds[i]))]
        for i in range(5)
    ]  # fmt: skip
    # seeds 3 and 4, 5 and 6; the odd last seed is left out, so no net is in two pairs
    assert [r["seeds"] for r in out["pairs"]] == [[3, 4], [5, 6]]
    for row, (i, j) in zip(out["pairs"], ((0, 1), (2, 3)), strict=True):
        want = scaling.retrain_gap(mom[i][0], mom[i][2], mom[j][0], mom[j][2]).mean()
        assert row["retrain"] == pytest.approx(want, rel=1e-6)


def test_plan_scores_the_margin_on_the_very_nets_the_primary_tests(monkeypatch):
    from dropstudy.data import digits

    cfg = scaling.Config(expect_seeds=3)
    cells = scaling.plan(cfg, digits().subset(50, seed=0))
    calls = shared_arm_calls(monkeypatch, scaling, cells, {"margin": 1, "expectation": 1})
    assert calls[0] == calls[1] and calls[0][3] == [0, 1, 2]


def _fake_raw(gap: float, retrain: float) -> dict:
    """Part C at a gap of ``gap`` per-mask sd on every test example (plus a little spread),
    retraining opening ``retrain`` on validation, and the demo and conventions cells."""
    rng = np.random.default_rng(1)
    sel = {"gap": (gap + 0.002 * rng.standard_normal((4, 30))).tolist(),
           "sd": np.ones((4, 30)).tolist(), "test_acc": [0.9] * 4, "train_acc": [0.95] * 4,
           "disagree": [0.01] * 4}  # fmt: skip
    demo = scaling.demo_cell("inverted", 0.5, 20, 9)
    same = {"max_abs_logit": 1e-5, "max_abs_prob": 1e-6, "mean_kl": 0.0, "disagreement": 0.0,
            "acc_inverted": 0.9, "acc_standard": 0.9}  # fmt: skip
    conv = {t: same for t in ("matched_lr", "same_lr", "control")}
    return {
        "demo_inverted": demo,
        "demo_standard": scaling.demo_cell("standard", 0.5, 20, 9),
        "conventions": {**conv, "at_check": {"steps": 200, **conv}},
        "expectation": {"within_w": sel, "within_2w": sel, "arm": arm_record(0.1, 4)},
        "margin": {
            "pairs": [
                {"seeds": [2 * i, 2 * i + 1], "retrain": retrain + 0.01 * i} for i in range(2)
            ]
        },
    }


def test_the_margin_is_a_share_of_the_retraining_gap_capped_and_shown():
    from dropstudy_experiments.sections.scaling import headline_caveats, section

    cfg = scaling.Config(expect_seeds=4)
    # retraining opens ~0.1: half is ~0.05, tighter than the 0.1 cap; a gap of 0.07 is then
    # outside the derived margin and inside the replaced one
    r = scaling.summarise(cfg, _fake_raw(0.07, 0.1))
    m, t = r["margin"], r["tests"]["expectation"]
    assert m["value"] == pytest.approx(0.5 * 0.105) and m["cap"] == cfg.expect_margin
    assert m["pairs"] == 2
    assert t["margin"] == t["within_2w"]["margin"] == pytest.approx(m["value"])
    assert t["verdict"] == "contradicted" and m["replaced"]["verdict_w"] == "supported"
    r = {**r, "config": cfg.to_dict(), "experiment": "scaling"}
    r |= {"data": {"name": "digits", "features": 64, "classes": 10}}
    md = section(r)
    assert "The expectation test's margin, from the validation split" in md
    assert "nan" not in md.lower() and "2 disjoint pairs of seeds" in md
    assert "+-0.0525 of those units (derived from the validation split" in md
    assert "tightens it to +-0.0525" in " ".join(headline_caveats(r))
    # another primary, named in the config: the margin's caveats are not its own
    assert headline_caveats({**r, "primary": "demo_standard"}) == []
    # where retraining opens more than twice the cap, the cap stands and says so
    wide = scaling.summarise(cfg, _fake_raw(0.07, 0.5))
    assert wide["tests"]["expectation"]["margin"] == cfg.expect_margin
    assert wide["margin"]["at_rule"]["verdict_w"] == "supported"
    with pytest.raises(DropstudyError, match="no margin can be derived"):
        scaling.summarise(cfg, _fake_raw(0.07, -0.03))
    # a margin within 3x the expectation's own sampling error is said to be hard to show
    near = scaling.summarise(cfg, _fake_raw(0.07, 0.05))
    near = {**near, "config": cfg.to_dict(), "experiment": "scaling"}
    assert near["margin"]["value"] < 3 * near["expectation"]["mc_floor"]
    assert any("sampling error" in c for c in headline_caveats(near))
    assert not any("sampling error" in c for c in headline_caveats(r))


def test_one_pair_is_said_to_be_one_and_text_fields_are_refused():
    from dropstudy_experiments.sections.scaling import section

    raw = _fake_raw(0.07, 0.1)
    raw["margin"]["pairs"] = raw["margin"]["pairs"][:1]
    cfg = scaling.Config(expect_seeds=3)  # three seeds: one pair, the third in none
    r = scaling.summarise(cfg, raw)
    r = {**r, "config": cfg.to_dict(), "experiment": "scaling"}
    r |= {"data": {"name": "digits", "features": 64, "classes": 10}}
    r["expectation"]["ratio"]["n"] = 3
    md = section(r)
    assert "the one pair of seeds (0 and 1)" in md and "one pair: no interval" in md
    assert "seed 2, the odd last, is in no pair" in md and "each of 1 " not in md
    # a second list's pairs are its own seeds
    later = section({**r, "scale": {"seed_start": 100}})
    assert "the one pair of seeds (100 and 101)" in later and "seed 102, the odd last" in later
    for field in ("expect_margin", "demo_margin", "same_function"):
        with pytest.raises(DropstudyError, match=field):
            scaling.Config(**{field: "0.1"})
