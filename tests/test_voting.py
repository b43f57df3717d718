"""The voting experiment's rules: its means are the library's, and its tie rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dropstudy_experiments import voting
from fakes import arm_record, shared_arm_calls

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP


@pytest.fixture(scope="module")
def net(digits_data):
    model = MLP(hidden=(4, 4), rate=0.5)
    variables = model.init(jax.random.key(0), digits_data.x_test[:1])
    return model, variables, jnp.asarray(digits_data.x_test[:50])


def test_mc_sums_are_the_library_mc_average(net):
    model, v, x = net
    spec = M.mask_spec(model, x)
    key = jax.random.key(5)
    sums = voting.mc_sums(model, spec, 40, (7, 40), v, x, key)
    for j, k in enumerate((7, 40)):
        avg = P.mc(model, v, x, key=key, k=k, method="dense")
        np.testing.assert_allclose(sums["probs"][j] / k, avg.arithmetic, atol=1e-5)
        np.testing.assert_allclose(jax.nn.softmax(sums["logp"][j] / k), avg.geometric, atol=1e-5)
        np.testing.assert_allclose(sums["votes"][j].sum(-1), k)


def test_mc_sums_at_k_alone_are_the_cumulative_sums_last_row(net):
    """The training set's path (one total, no cumulative sum) gives the same sums."""
    model, v, x = net
    spec = M.mask_spec(model, x)
    key = jax.random.key(5)
    whole = voting.mc_sums(model, spec, 40, (7, 40), v, x, key)
    alone = voting.mc_sums(model, spec, 40, (40,), v, x, key)
    for n in ("probs", "logp", "votes"):
        assert alone[n].shape == (1, *whole[n].shape[1:])
        np.testing.assert_allclose(alone[n][0], whole[n][1], rtol=1e-5, atol=1e-5)


def test_exact_sums_are_the_library_exact_average(net):
    model, v, x = net
    spec = M.mask_spec(model, x)
    sums = voting.exact_sums(model, spec, v, x)
    ex = P.exact(model, v, x, method="generic")
    np.testing.assert_allclose(sums["probs"], ex.arithmetic, atol=1e-5)
    np.testing.assert_allclose(jax.nn.softmax(sums["logp"]), ex.geometric, atol=1e-5)
    np.testing.assert_allclose(sums["votes"].sum(-1), 1.0, atol=1e-5)


def test_a_tied_vote_goes_to_the_higher_mean_then_the_lower_class():
    # Two subnetworks, one vote each for classes 0 and 1 (a tie).
    logits = jnp.array([[[2.0, 0.0, -5.0]], [[0.0, 9.0, -5.0]]])  # (K=2, B=1, C=3)
    pred = voting.decide(voting.combine(logits, jnp.ones(2)), 2.0)
    assert bool(pred["tie"][0]) and int(pred["vote"][0]) == 1  # class 1's mean is higher
    even = jnp.array([[[1.0, 0.0, -5.0]], [[0.0, 1.0, -5.0]]])  # equal means: lower index
    assert int(voting.decide(voting.combine(even, jnp.ones(2)), 2.0)["vote"][0]) == 0
    clear = jnp.concatenate([logits, logits[:1]])  # 2 votes to 1: no tie, class 0
    pred = voting.decide(voting.combine(clear, jnp.ones(3)), 3.0)
    assert not bool(pred["tie"][0]) and int(pred["vote"][0]) == 0


def test_a_tied_vote_counts_as_breaking_it_at_random():
    """Neither rule is handed the ties: a two-way tie holding the true class is half an
    error, one without it a whole error; an untied vote is scored as its class."""
    logits = jnp.array([[[2.0, 0.0, -5.0]], [[0.0, 9.0, -5.0]]])  # a 0-1 tie
    pred = voting.decide(voting.combine(logits, jnp.ones(2)), 2.0)
    assert voting.errors(pred, np.array([0]))["vote"] == 0.5
    assert voting.errors(pred, np.array([1]))["vote"] == 0.5
    assert voting.errors(pred, np.array([2]))["vote"] == 1.0
    clear = voting.decide(voting.combine(jnp.concatenate([logits, logits[:1]]), jnp.ones(3)), 3.0)
    assert voting.errors(clear, np.array([0]))["vote"] == 0.0
    assert voting.errors(clear, np.array([1]))["vote"] == 1.0


def test_margin_cell_scores_members_and_their_mean_on_the_validation_split(monkeypatch):
    """One subnetwork's error (the mean over the members) and their arithmetic mean's, from a
    loop over the members' masks, on the validation split (never the test split)."""
    from types import SimpleNamespace

    from dropstudy_experiments.evaluate import seed_key
    from dropstudy_experiments.protocol import split

    from dropstudy.data import digits
    from dropstudy.train import take

    ds = digits().subset(300, seed=0)
    model = MLP(hidden=(8,), n_out=10, rate=0.5)
    v0 = model.init(jax.random.key(0), ds.x_train[:1])
    v1 = model.init(jax.random.key(1), ds.x_train[:1])
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), v0, v1)
    monkeypatch.setattr(voting, "shared_arm", lambda *a: SimpleNamespace(within_w=both))
    out = voting.margin_cell(ds, model, None, 3, [0, 7], ("voting", "net=wide"))
    _, (x, y) = split(ds)
    spec = M.mask_spec(model, ds.x_train[:1])
    for i, (s, row) in enumerate(zip([0, 7], out["seeds"], strict=True)):
        v = take(both, i)
        masks = M.sample_mask_batch(spec, seed_key(("voting", "net=wide", "validation"), s),
                                    jnp.arange(3))  # fmt: skip
        one = [jax.tree.map(lambda a, j=j: a[j], masks) for j in range(3)]
        probs = [jax.nn.softmax(M.apply(model, v, jnp.asarray(x), m)) for m in one]
        member = np.mean([np.mean(np.asarray(p.argmax(-1)) != y) for p in probs])
        mean = np.mean(np.asarray(sum(probs).argmax(-1)) != y)
        assert row["member"] == pytest.approx(member) and row["mean"] == pytest.approx(mean)
    assert out["seeds"][0] != out["seeds"][1]


def _fake_raw(seeds: int, vote_shift: float, gain: float, members: int = 5, k: int = 64) -> dict:
    """Rows of both nets: each test example's error 0.1 (plus noise) for every rule, the vote
    ``vote_shift`` above the mean at ``members``; combining ``members`` subnetworks lowers
    the validation error by ``gain``."""
    rng = np.random.default_rng(0)
    n = 60

    def row():
        def each(shift=0.0):
            return (0.1 + shift + 0.002 * rng.standard_normal(n)).tolist()

        rules = {"vote": 0.1, "arithmetic": 0.1, "geometric": 0.1, "ws": 0.1}
        return {"test": rules, "train": rules, "exact_test": rules,
                "exact_test_ex": {r: each() for r in rules}, "exact_tie": 0.01,
                "test_curve": {r: [0.1, 0.1] for r in ("vote", "arithmetic", "geometric", "tie")},
                "test_ex": {str(members): {"vote": each(vote_shift), "arithmetic": each(),
                                           "geometric": each()},
                            str(k): {r: each() for r in rules}}}  # fmt: skip

    def net():
        return {"grid": [members, k], "arm": arm_record(0.1, seeds),
                "seeds": [row() for _ in range(seeds)],
                "seeds_2w": [row() for _ in range(seeds)]}  # fmt: skip

    margin = [{"member": 0.2 + gain + 0.001 * (i - (seeds - 1) / 2), "mean": 0.2}
              for i in range(seeds)]  # fmt: skip
    return {"net=wide": net(), "net=small": net(), "margin": {"seeds": margin}}


def test_the_primarys_margin_is_a_share_of_what_combining_does_capped():
    """The primary and its twin take share x the validation gain, at most the fixed margin;
    every other equivalence keeps the fixed margin; a net whose subnetworks gain nothing
    from being combined is refused."""
    from dropstudy.validate import DropstudyError

    base = dict(seeds=6, k=64, k_grid=(5, 64))
    for share, gain, margin in ((0.5, 0.004, 0.002), (0.25, 0.004, 0.001), (0.5, 0.1, 0.005)):
        cfg = voting.Config(margin_share=share, **base)
        r = voting.summarise(cfg, _fake_raw(6, 0.0, gain))
        m = r["margin_err"]
        assert m["value"] == pytest.approx(margin, abs=1e-4) and m["cap"] == cfg.margin_err
        t = r["tests"]["vote_5"]
        assert t["margin"] == t["within_2w"]["margin"] == pytest.approx(m["value"])
        for name in ("vote_5_small", "vote_mc", "vote_vs_ws", "vote_exact_small"):
            assert r["tests"][name]["margin"] == cfg.margin_err
        assert m["replaced"]["value"] == cfg.margin_err
    # a vote 0.003 above the mean: equivalent within 0.005, not within 0.001
    wide = voting.summarise(voting.Config(**base), _fake_raw(6, 0.003, 0.1))
    narrow = voting.summarise(voting.Config(**base), _fake_raw(6, 0.003, 0.002))
    assert wide["tests"]["vote_5"]["verdict"] == "supported"
    assert narrow["tests"]["vote_5"]["verdict"] == "contradicted"
    assert narrow["margin_err"]["replaced"]["verdict"] == "supported"  # at the fixed 0.005
    with pytest.raises(DropstudyError, match="no margin can be derived"):
        voting.summarise(voting.Config(**base), _fake_raw(6, 0.0, -0.05))
    with pytest.raises(DropstudyError, match=r"margin_share=2 must be a number in \(0, 1\]"):
        voting.Config(margin_share=2)


def test_section_shows_the_margins_derivation():
    from dropstudy_experiments.sections.voting import headline_caveats, section

    cfg = voting.Config(seeds=6, k=64, k_grid=(5, 64))
    r = {**voting.summarise(cfg, _fake_raw(6, 0.0, 0.004)), "config": cfg.to_dict()}
    r |= {"experiment": "voting", "data": {"name": "digits", "features": 64, "classes": 10}}
    md = section(r)
    assert "The primary's margin, from the validation split" in md and "nan" not in md.lower()
    flat = md.replace("\n", " ")
    assert "+-0.002 of test error (0.20 pp; derived from the validation split" in flat
    said = " ".join(headline_caveats(r))
    assert "tightens it to +-0.002" in said and "at +-0.005" in said


def test_plan_scores_the_margin_on_the_very_net_the_votes_use(monkeypatch):
    """The margin cell names the wide net's model, protocol, seeds and stream, so its
    ``shared_arm`` call is the vote cell's (one trained net, read from the store)."""
    from dropstudy.data import digits

    cfg = voting.Config()
    cells = voting.plan(cfg, digits().subset(50, seed=0))
    margin, wide = cells["margin"].kwargs, cells["net=wide"].kwargs
    for k in ("ds", "model", "protocol", "seeds", "stream"):
        assert margin[k] == wide[k], k
    assert margin["members"] == cfg.members and margin["model"].hidden == cfg.hidden
    calls = shared_arm_calls(monkeypatch, voting, cells, {"margin": 1, "net=wide": 1})
    assert calls[0] == calls[1]


def test_a_results_file_without_the_margin_is_refused_by_name():
    """The headline's caveats of a file an older version wrote (no derived margin): a clear
    error naming the field and the command, not a KeyError."""
    from dropstudy_experiments.report import headline_caveats

    from dropstudy.validate import DropstudyError

    old = {"tests": {"vote_5": {"verdict": "inconclusive"}}, "primary": "vote_5"}
    with pytest.raises(DropstudyError, match=r"needs 'margin_err'.*`dropstudy run voting`"):
        headline_caveats("voting", old)
