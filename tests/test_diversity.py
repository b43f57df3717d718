"""The diversity experiment: the ambiguity identity, its pair measures, and the primary's margin
from the validation split."""

import jax
import jax.numpy as jnp
import numpy as np
from dropstudy_experiments import diversity
from fakes import arm_record, shared_arm_calls


def test_ensemble_brier_is_member_brier_minus_ambiguity():
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (7, 50, 4)) * 2)
    labels = jax.random.randint(jax.random.key(1), (50,), 0, 4)
    d = diversity.decompose(probs, labels)
    np.testing.assert_allclose(d["ensemble"], d["member"] - d["ambiguity"], rtol=1e-5)
    assert 0 < float(d["ambiguity"]) and 0 <= float(d["disagreement"]) <= 1


def test_identical_members_have_no_diversity():
    one = jax.nn.softmax(jax.random.normal(jax.random.key(2), (1, 40, 3)))
    labels = jnp.zeros(40, jnp.int32)
    d = diversity.decompose(jnp.repeat(one, 4, axis=0), labels)
    assert float(d["ambiguity"]) < 1e-7 and float(d["disagreement"]) == 0
    assert abs(float(d["error_corr"]) - 1) < 1e-5  # identical errors: correlation 1
    np.testing.assert_allclose(d["ensemble"], d["member"], rtol=1e-6)


def test_error_correlation_averages_the_pairs_where_it_is_defined():
    """A member that is always right has no error correlation with anyone: the mean is over
    the other pairs, not diluted by zeros, and the share of defined pairs says so."""
    labels = jnp.array([0, 1, 0, 1, 0, 1])
    right = jax.nn.one_hot(labels, 2)
    flaky = jax.nn.one_hot(jnp.array([1, 1, 0, 0, 0, 1]), 2)  # wrong on examples 0 and 3
    probs = jnp.stack([right, flaky, flaky])
    d = diversity.decompose(probs, labels)
    assert abs(float(d["error_corr"]) - 1) < 1e-6  # the two flaky members: identical errors
    np.testing.assert_allclose(float(d["corr_defined"]), 2 / 6)  # 2 of 6 ordered pairs


def _fake_raw(seeds: int, share_gap: float, val_share: float) -> dict:
    """Every member's per-example Brier 0.2 (plus noise); averaging removes a share 0.1 of it
    for the independent nets and ``0.1 + share_gap`` for dropout's subnetworks on test; on the
    validation split the independent nets' share is ``val_share``."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 60
    stats = {s: 0.1 for s in diversity.STATS}

    def kind(share):
        member = 0.2 + 0.01 * rng.standard_normal(n)
        terms = {"member": member.tolist(), "ambiguity": (share * member).tolist(),
                 "member_error": [0.1] * n, "ensemble_error": [0.08] * n}  # fmt: skip
        return {"test": {"2": stats, "5": stats}, "train": {"2": stats, "5": stats},
                "test_ex": terms}  # fmt: skip

    def rows():
        return [{"dropout": kind(0.1 + share_gap), "independent": kind(0.1)}
                for _ in range(seeds)]  # fmt: skip

    margin = [{"ambiguity": (val_share + 0.002 * (i - (seeds - 1) / 2)) * 0.3, "member": 0.3}
              for i in range(seeds)]  # fmt: skip
    return {
        "diversity": {"seeds": rows(), "seeds_2w": rows(),
                      "arms": {k: arm_record(0.1, seeds) for k in ("dropout", "independent")}},
        "margin": {"seeds": margin},
    }  # fmt: skip


def test_the_margin_is_a_share_of_the_independent_nets_validation_share_capped():
    import pytest
    from dropstudy_experiments.sections.diversity import headline_caveats, section

    from dropstudy.validate import DropstudyError

    for share, val, margin in ((0.5, 0.04, 0.02), (0.25, 0.04, 0.01), (0.5, 0.3, 0.05)):
        cfg = diversity.Config(seeds=6, margin_share=share)
        r = diversity.summarise(cfg, _fake_raw(6, 0.0, val))
        m = r["margin"]
        assert m["value"] == pytest.approx(margin, abs=1e-4) and m["cap"] == cfg.margin
        t = r["tests"]["share_equiv"]
        assert t["margin"] == t["within_2w"]["margin"] == pytest.approx(m["value"])
        assert m["replaced"]["value"] == cfg.margin
    # dropout's share 0.03 above: equivalent within 0.05, not within 0.01
    cfg = diversity.Config(seeds=6)
    assert diversity.summarise(cfg, _fake_raw(6, 0.03, 0.3))["tests"]["share_equiv"][
        "verdict"] == "supported"  # fmt: skip
    narrow = diversity.summarise(cfg, _fake_raw(6, 0.03, 0.02))
    assert narrow["tests"]["share_equiv"]["verdict"] == "contradicted"
    assert narrow["margin"]["replaced"]["verdict"] == "supported"
    r = {**narrow, "config": cfg.to_dict(), "experiment": "diversity"}
    r |= {"data": {"name": "digits", "features": 64, "classes": 10}}
    md = section(r)
    assert "The primary's margin, from the validation split" in md and "nan" not in md.lower()
    assert "+-0.01 (derived from the validation split" in md
    assert "tightens it to +-0.01" in " ".join(headline_caveats(r))
    with pytest.raises(DropstudyError, match="no margin can be derived"):
        diversity.summarise(cfg, _fake_raw(6, 0.0, 0.0))
    with pytest.raises(DropstudyError, match=r"margin_share=-1 must be|margin_share must be"):
        diversity.Config(margin_share=-1)


def test_margin_cell_decomposes_the_members_on_the_validation_split(monkeypatch):
    """The members of seed i are the plain nets i + j * S; their ambiguity and mean Brier on
    the validation split are :func:`decompose`'s."""
    from types import SimpleNamespace

    import pytest
    from dropstudy_experiments.protocol import split

    from dropstudy.data import digits
    from dropstudy.models import MLP

    ds = digits().subset(300, seed=0)
    model = MLP(hidden=(8,), n_out=10, rate=0.5)
    vs = [model.init(jax.random.key(i), ds.x_train[:1]) for i in range(6)]  # 2 seeds x 3
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *vs)
    seen = []
    monkeypatch.setattr(diversity, "shared_arm",
                        lambda *a: seen.append(a) or SimpleNamespace(within_w=stacked))  # fmt: skip
    out = diversity.margin_cell(ds=ds, model=model, protocol=diversity.Config().protocol,
                                members=3, seeds=[0, 1])  # fmt: skip
    ((_, plain, _, member_seeds),) = seen
    assert plain.rate == 0.0 and member_seeds == [0, 1, 2, 3, 4, 5]
    _, (x, y) = split(ds)
    for i, row in enumerate(out["seeds"]):
        probs = jnp.stack([jax.nn.softmax(plain.apply(vs[i + 2 * j], x)) for j in range(3)])
        d = diversity.decompose(probs, jnp.asarray(y))
        assert row["ambiguity"] == pytest.approx(float(d["ambiguity"]), rel=1e-6)
        assert row["member"] == pytest.approx(float(d["member"]), rel=1e-6)


def test_plan_scores_the_margin_on_the_very_members_the_test_uses(monkeypatch):
    """The margin cell's ``shared_arm`` call for the plain members is the diversity cell's
    (same net, protocol and member seeds), so the members train once."""

    from dropstudy.data import digits

    cfg = diversity.Config()
    cells = diversity.plan(cfg, digits().subset(50, seed=0))
    # the margin's members; the diversity cell's second call
    calls = shared_arm_calls(monkeypatch, diversity, cells, {"margin": 1, "diversity": 2})
    assert calls[0] == calls[2]  # the diversity cell's first call trains the dropout net
    assert calls[0][1].rate == 0.0 and calls[1][1].rate == cfg.rate


def test_members_that_fit_every_validation_example_are_refused():
    import pytest

    from dropstudy.validate import DropstudyError

    raw = _fake_raw(6, 0.0, 0.1)
    raw["margin"]["seeds"][2] = {"ambiguity": 0.0, "member": 0.0}
    with pytest.raises(DropstudyError, match=r"Brier score is 0 for seed index\(es\) \[2\]"):
        diversity.summarise(diversity.Config(seeds=6), raw)
