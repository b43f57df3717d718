"""The ensembles experiment's parts that need no training: the plain net as the dropout
architecture under its expected mask, the fixed masks, the tests and the section."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dropstudy_experiments import ensembles as E
from dropstudy_experiments.common import PREDICTOR_NAMES
from dropstudy_experiments.evaluate import seed_key
from dropstudy_experiments.sections.ensembles import section

from dropstudy import masks as M
from dropstudy.models import MLP
from dropstudy.train import TrainConfig
from dropstudy.validate import DropstudyError


@pytest.mark.parametrize("rate", [0.5, 0.3])
def test_expected_mask_is_the_plain_net(rate):
    x = jax.random.normal(jax.random.key(0), (7, 5))
    drop = MLP(hidden=(6, 4), n_out=3, rate=rate)
    v = drop.init(jax.random.key(1), x)
    spec = M.mask_spec(drop, x)
    got = M.apply(drop, {"params": v["params"]}, x, spec.unflatten(E.expected(spec, ())))
    want = drop.clone(rate=0.0).apply({"params": v["params"]}, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_fixed_masks_are_binary_per_seed_and_a_prefix_in_k():
    x = jnp.zeros((2, 5))
    drop = MLP(hidden=(8, 8), n_out=3, rate=0.5)
    spec = M.mask_spec(drop, x)
    m = np.asarray(E.fixed_masks(spec, [0, 3], 4))
    assert m.shape == (2, 4, spec.n_units) and set(np.unique(m)) <= {0.0, 1.0}
    np.testing.assert_array_equal(m[:, :2], E.fixed_masks(spec, [0, 3], 2))
    np.testing.assert_array_equal(m[1], E.fixed_masks(spec, [3], 4)[0])
    assert not np.array_equal(m[0], m[1])
    key = jax.random.fold_in(seed_key(("ensembles", "fixed_masks"), 3), 2)
    np.testing.assert_array_equal(m[1, 2], spec.flatten(M.sample_masks(spec, key)))


def _fake_raw(
    seeds: int, shift: dict[str, float], n: int = 50, np_net: bool = True, val_gain: float = 0.04
) -> dict:
    """Per-seed scores for every row: NLL 0.1 + shift + seed noise; per test example, the
    same plus an example effect shared by every row and seed (it cancels in paired
    differences) and a small residual. The ensemble's validation NLL gain over its members is
    ``val_gain`` per seed (the NLL margin is half of it: 0.02 by default)."""
    rng = np.random.default_rng(0)
    example = 0.05 * rng.standard_normal(n)
    wrong = (np.arange(n) % 30 == 0).astype(float)  # the same examples wrong in every row

    def table(names):
        rows = {}
        for name in names:
            rows[name] = []
            for _ in range(seeds):
                nll = 0.1 + shift.get(name, 0.0) + 1e-3 * rng.standard_normal()
                each = nll + example - example.mean() + 1e-4 * rng.standard_normal(n)
                s = {"accuracy": 0.97, "nll": float(each.mean()), "ece": 0.01, "brier": 0.05}
                rows[name].append(
                    {
                        "test": s,
                        "train": {**s, "nll": nll / 2},
                        "test_ex": {"nll": each.tolist(), "err": wrong.tolist()},
                    }
                )
        return rows

    def arm(n_seeds):  # a converged arm, every seed settled mid-run
        return {"recipe": "adam", "lr": 1e-3, "edge": False, "tuned_as": "x", "window": 100,
                "stop_w": [50] * n_seeds, "stop_2w": [60] * n_seeds,
                "settle_2w": [60] * n_seeds, "diverged": [False] * n_seeds, "converged": True,
                "tuning": {"adam": {"0.001": {"score": 1.0}}}}  # fmt: skip

    tuned = {
        "rows": table(E.TUNED_ROWS),
        "rows_2w": table(E.TUNED_ROWS),
        "arms": {"dropout": arm(seeds), "independent": arm(5 * seeds)},
        "val_gain": [{"nll": val_gain, "error": 0.01} for _ in range(seeds)],
    }
    out = {"cell=protocol": tuned, "cell=all": table(E.ROWS)}
    if np_net:  # the n/p dropout net: as good as the ensemble
        wide = {"rows": table(E.KINDS_WS_MC), "rows_2w": table(E.KINDS_WS_MC), "arm": arm(seeds)}
        out["cell=np"] = wide
    return out


def test_summarise_tests_findings_and_section():
    cfg = E.Config(seeds=6)
    raw = _fake_raw(6, {"dropout_ws": 0.05, "bagging": 0.2, "fixed_shared": 0.03, "plain": 0.3})
    r = E.summarise(cfg, raw)
    t = r["tests"]
    assert r["primary"] == "nll_equiv_mc" and next(iter(t)) == "nll_equiv_mc"
    assert t["nll_equiv_mc"]["verdict"] == "supported"  # MC equals the ensemble within noise
    assert t["nll_equiv_ws"]["verdict"] == "contradicted"  # 0.05 nats outside +-0.02
    assert t["bagging_mc"]["verdict"] == "supported" and t["sharing"]["verdict"] == "supported"
    assert t["overfit_ws"]["verdict"] == "supported"
    assert t["matched_nll_equiv_ws"]["verdict"] == "contradicted"  # the matched arms alike
    assert "within_2w" in t["nll_equiv_mc"] and "within_2w" not in t["matched_nll_equiv_mc"]
    assert set(t) == set(cfg.test_names())
    assert t["np_nll_equiv_mc"]["verdict"] == "supported" and "dropout n/p" in r["arms"]
    # np_width None: no wider net, no test of it
    bare = E.summarise(E.Config(seeds=6, np_width=None), _fake_raw(6, {}, np_net=False))
    assert not any(k.startswith("np_") for k in bare["tests"]) and "dropout n/p" not in bare["arms"]
    assert set(bare["tests"]) == set(E.Config(np_width=None).test_names())
    cells = E.plan(E.Config(np_width=96), _tiny())
    assert cells["cell=np"].kwargs["drop"].hidden == (96, 96)
    assert "cell=np" not in E.plan(E.Config(np_width=None), _tiny())
    assert all(x["predictor"] in PREDICTOR_NAMES and x["what"] for x in t.values())
    md = section({**r, "config": cfg.to_dict()})
    assert "nan" not in md.lower() and "| plain net |" in md and "| protocol: plain net |" in md


def _tiny():
    from dropstudy.data import digits

    return digits().subset(50, seed=0)


def _findings(cfg: E.Config, raw: dict) -> list[str]:
    """The report's findings on a summary of ``raw``."""
    from dropstudy_experiments.common import all_findings

    r = E.summarise(cfg, raw)
    assert "findings" not in r  # prose is the report's, computed from the numbers
    return all_findings({**r, "experiment": "ensembles", "config": cfg.to_dict()})


def test_sign_flip_between_predictors_is_a_finding():
    raw = _fake_raw(6, {"dropout_ws": 0.1, "dropout_mc": -0.1})
    assert any("plain minus dropout" in f for f in _findings(E.Config(seeds=6), raw))


def test_a_margin_as_wide_as_ensemblings_gain_is_a_finding():
    # members 0.05 nats worse than the whole on test; 0.12 on validation
    raw = _fake_raw(6, {"independent_member": 0.05}, val_gain=0.12)
    r = E.summarise(E.Config(seeds=6), raw)
    rows = raw["cell=protocol"]["rows"]
    nll = lambda row: np.mean([s["test"]["nll"] for s in rows[row]])  # noqa: E731
    assert r["member_gain"]["nll"]["mean"] == pytest.approx(
        nll("independent_member") - nll("independent")
    )
    assert r["member_gain"]["nll"]["mean"] == pytest.approx(0.05, abs=0.01)
    said = lambda share: [  # noqa: E731  (no cap: the derived margins stand)
        f
        for f in _findings(E.Config(seeds=6, margin_share=share, margin_nll_cap=1.0), raw)
        if "The NLL margin" in f
    ]
    assert said(0.5) and not said(0.25)  # margins 0.06 and 0.03 against a gain of 0.05


def test_the_nll_margin_is_a_share_of_the_validation_gain():
    """Every NLL equivalence takes the margin derived from the validation split, the share
    given; a gain of 0 (members that agree) is refused, as is a share outside (0, 1]."""
    raw = _fake_raw(6, {}, val_gain=0.04)
    for share in (0.5, 0.25):
        r = E.summarise(E.Config(seeds=6, margin_share=share), raw)
        m = r["margin_nll"]
        assert m["value"] == pytest.approx(share * 0.04) and m["share"] == share
        assert m["gain"]["mean"] == pytest.approx(0.04)
        nll_equivs = [t for k, t in r["tests"].items() if t["rule"] == "equivalence"
                      and t["metric"] == "nll" and not k.startswith("matched_")]  # fmt: skip
        assert len(nll_equivs) == 8  # by each predictor: protocol and n/p, each with twins
        assert [t["margin"] for t in nll_equivs] == pytest.approx([share * 0.04] * 8)
        assert r["tests"]["err_equiv_mc"]["margin"] == E.Config().margin_err
    # the matched-compute arms keep their own fixed margin
    for m in (0.02, 0.05):
        r = E.summarise(E.Config(seeds=6, margin_nll_matched=m), raw)
        assert r["tests"]["matched_nll_equiv_mc"]["margin"] == m
        said = [f for f in _findings(E.Config(seeds=6, margin_nll_matched=m), raw)
                if f.startswith("At matched compute the NLL margin")]  # fmt: skip
        assert said and f"(+-{m:g})" in said[0]  # the fake ensemble gains ~0 over its members
    with pytest.raises(DropstudyError, match="members agree"):
        E.summarise(E.Config(seeds=6), _fake_raw(6, {}, val_gain=0.0))
    for bad in (0.0, 1.5):
        with pytest.raises(DropstudyError, match="margin_share"):
            E.Config(margin_share=bad)


def test_member_gain_is_the_members_mean_minus_the_ensemble():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 20))  # (K, N, C)
    labels = rng.integers(0, 3, 20)
    g = E.member_gain(probs, labels)
    nll = lambda p: -np.mean(np.log(p[np.arange(20), labels]))  # noqa: E731
    err = lambda p: np.mean(p.argmax(-1) != labels)  # noqa: E731
    assert g["nll"] == pytest.approx(np.mean([nll(p) for p in probs]) - nll(probs.mean(0)), 1e-5)
    assert g["error"] == pytest.approx(np.mean([err(p) for p in probs]) - err(probs.mean(0)))
    assert g["nll"] > 0  # the log is concave: averaging never costs NLL


def test_config_needs_steps_divisible_by_k():
    with pytest.raises(DropstudyError, match="multiple of k"):
        E.Config(k=7, train=TrainConfig(steps=100))


@pytest.mark.slow  # compiles the cell's evaluation (about 20 s)
def test_protocol_cell_measures_the_gain_on_the_validation_split(monkeypatch):
    """The cell's validation gain is member_gain over each seed's own members (member j of
    seed i is row j * S + i of the plain arm) on the held-out 20%, never the test set."""
    from dropstudy_experiments import protocol as PR
    from dropstudy_experiments.evaluate import Evaluator

    ds, seeds, k = _tiny(), [0, 1], 3
    drop = MLP(hidden=(8, 8), n_out=ds.n_classes, rate=0.5)
    stack = lambda n: jax.vmap(lambda key: drop.init(key, jnp.asarray(ds.x_train[:1])))(  # noqa: E731
        jax.random.split(jax.random.key(7), n)
    )
    members = stack(len(seeds) * k)

    def arm(ds_, model, protocol, seeds_):  # untrained variables: no training in this test
        v = members if model.rate == 0.0 else stack(len(seeds_))
        return PR.Arm(v, v, {}, None)

    monkeypatch.setattr(E, "shared_arm", arm)
    out = E.protocol_cell(ds, drop, PR.QUICK_ENSEMBLE, k, seeds, Evaluator(("t", "c"), 4))
    _, (x_val, y_val) = PR.split(ds)
    plain = drop.clone(rate=0.0)
    n = len(seeds)
    for i in range(n):
        own = [jax.tree.map(lambda a, r=j * n + i: a[r], members) for j in range(k)]
        probs = np.stack([jax.nn.softmax(plain.apply(v, jnp.asarray(x_val))) for v in own])
        assert out["val_gain"][i] == pytest.approx(E.member_gain(probs, y_val), rel=1e-5)
    assert out["val_gain"][0] != pytest.approx(out["val_gain"][1])


def test_the_headline_says_when_the_design_cannot_show_equivalence():
    from dropstudy_experiments.sections.ensembles import headline_caveats

    t = {"mde": 0.04, "n": 10, "n_examples": 360, "verdict": "inconclusive", "se": 0.01,
         "df": 9.0}  # fmt: skip
    rep = {"value": 0.02, "verdict": "inconclusive", "verdict_w": "supported", "p": 0.01}
    m = {"value": 0.005, "derived": 0.005, "cap": 0.02, "replaced": rep}
    r = {"tests": {"p": t}, "primary": "p", "margin_nll": m}
    reach, cap = headline_caveats(r)
    assert "only within +-0.04 nats, 8.0x the margin (+-0.005)" in reach
    assert "its power within the margin is 0%" in reach  # a 90% interval wider than it
    assert "tightens it to +-0.005" in cap and "would be supported (p = 0.0100)" in cap
    assert len(headline_caveats({**r, "tests": {"p": {**t, "mde": 0.004}}})) == 1
    assert len(headline_caveats({**r, "tests": {"p": {**t, "verdict": "contradicted"}}})) == 1
    # the fixed margin stands where the rule derives a wider one
    (cap,) = headline_caveats({**r, "margin_nll": {**m, "derived": 0.03, "value": 0.02},
                               "tests": {"p": {**t, "mde": 0.01}}})  # fmt: skip
    assert "derives +-0.03, above that fixed margin, which stands" in cap
