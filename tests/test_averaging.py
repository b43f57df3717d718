"""The averaging experiment's descriptive bounds: where weight scaling sits relative to the
exact means, robust to float32 rounding of E[log p]."""

import numpy as np
import pytest
from dropstudy_experiments import averaging

from dropstudy.average import Average


def _exact(log_g: np.ndarray, arith: np.ndarray) -> Average:
    """An Average from unnormalised log geometric means and arithmetic means ``(B, C)``."""
    return Average.from_sums(
        "classification", 1, np.asarray(arith, np.float32), np.asarray(log_g, np.float32)
    )


def test_rounding_of_the_log_geometric_mean_is_not_a_violation():
    """G equals NWGM when every subnetwork agrees; 2e-5 of rounding in log G (what float32
    leaves where logits reach ~100) must not count as G > NWGM, a 1% excess must, and tiny
    probabilities are compared as such, not all counted as ordered."""
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]])
    exact = _exact(np.log(p) + 2e-5, p)  # G a hair above NWGM = A = p
    assert averaging.bounds(p, exact)["frac_g_le_nwgm_le_a"] == 1.0
    assert averaging.bounds(p, exact)["frac_ws_between_nwgm_and_a"] == 1.0
    shifted = p.copy()
    shifted[0] = [0.65, 0.25, 0.1]  # A moves off NWGM in the first example
    off = _exact(np.log(p), shifted)
    assert averaging.bounds(p * 1.01, off)["frac_ws_between_nwgm_and_a"] < 1.0


def test_tiny_probabilities_are_compared_not_waved_through():
    """WS at 1e-8 beside exact means of 1e-6: outside [NWGM, A] by a factor 100, which an
    absolute tolerance on probabilities would have hidden."""
    p = np.array([[1 - 2e-6, 1e-6, 1e-6]])
    ws = np.array([[1 - 2e-8, 1e-8, 1e-8]])
    assert averaging.bounds(ws, _exact(np.log(p), p))["frac_ws_between_nwgm_and_a"] < 0.5


def _rows(seeds: int = 4, n: int = 30, gap: float = 0.0) -> list[dict]:
    """Fake per-seed rows with per-example values: weight scaling ``gap`` above the exact."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(seeds):
        base = {m: rng.uniform(0, 1, n) for m in ("nll", "err")}
        ex = {k: {m: (base[m] + (gap if k == "ws" else 0.0)).tolist() for m in base}
              for k in ("ws", "exact_a", "exact_g", "mc_a")}  # fmt: skip
        rows.append({"ex": ex})
    return rows


def test_margins_are_the_share_of_averagings_gain_on_validation():
    cfg = averaging.Config()
    val = [
        {"exact": {"err": 0.10, "nll": 0.30}, "subnetwork": {"err": 0.18, "nll": 0.50}},
        {"exact": {"err": 0.12, "nll": 0.34}, "subnetwork": {"err": 0.20, "nll": 0.54}},
    ]
    m = averaging.margins(cfg, {"validation": val})
    assert m["err"]["gain"] == pytest.approx(0.08) and m["nll"]["gain"] == pytest.approx(0.2)
    assert m["err"]["margin"] == pytest.approx(0.04) and m["nll"]["margin"] == pytest.approx(0.1)
    half = averaging.margins(averaging.Config(margin_share=0.25), {"validation": val})
    assert half["err"]["margin"] == pytest.approx(0.02)
    assert averaging.margins(cfg, {"seeds": []}) is None  # a fixed-budget net: the config's
    worse = [{"exact": {"err": 0.2, "nll": 0.3}, "subnetwork": {"err": 0.1, "nll": 0.5}}]
    assert averaging.margins(cfg, {"validation": worse})["err"]["margin"] == 1e-9


def test_the_tests_take_the_nets_margins():
    """Each test of a net runs at its validation margins, or the config's without them."""
    cfg = averaging.Config()
    net = averaging.NETS[0]
    m = {"err": {"margin": 0.03}, "nll": {"margin": 0.07}}
    tests = averaging._tests(cfg, net, _rows(gap=0.05), m)
    assert tests["primary err WS-A"]["margin"] == 0.03
    assert tests["primary err MC-A"]["margin"] == 0.03
    assert tests["primary nll WS-G"]["margin"] == 0.07
    assert tests["primary err WS-A"]["verdict"] == "contradicted"  # 0.05 beyond 0.03
    wide = averaging._tests(cfg, net, _rows(gap=0.05), {"err": {"margin": 0.2},
                                                        "nll": {"margin": 0.2}})  # fmt: skip
    assert wide["primary err WS-A"]["verdict"] == "supported"
    fixed = averaging._tests(cfg, net, _rows(), None)
    assert fixed["primary err WS-A"]["margin"] == cfg.margin
    assert fixed["primary nll WS-A"]["margin"] == cfg.nll_margin


def test_the_mean_subnetwork_is_every_subnetworks_mean():
    """_gain's sampled subnetworks against all 2^4 subnetworks of a 1x4 net, and its exact
    part against the exact average."""
    import jax
    import jax.numpy as jnp
    from dropstudy_experiments.evaluate import Evaluator

    from dropstudy import masks as M
    from dropstudy import predict as P
    from dropstudy.metrics import accuracy, nll
    from dropstudy.models import MLP

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = MLP(hidden=(4,), n_out=3, rate=0.5)
    v = model.init(jax.random.key(0), jnp.asarray(x))
    stacked = jax.tree.map(lambda a: a[None], v)
    ev = Evaluator(("test", "gain"), 10)
    got = averaging._gain(model, stacked, x, y, [0], ev, 20000)[0]
    masks, _ = M.all_masks(M.mask_spec(model, jnp.asarray(x)))
    probs = np.asarray(jax.nn.softmax(averaging._subnetworks(model, v, jnp.asarray(x), masks)))
    assert got["subnetwork"]["err"] == pytest.approx(
        np.mean([1 - accuracy(p, y) for p in probs]), abs=0.01
    )
    assert got["subnetwork"]["nll"] == pytest.approx(np.mean([nll(p, y) for p in probs]), rel=0.01)
    ex = P.exact(model, v, jnp.asarray(x)).arithmetic
    assert got["exact"]["nll"] == pytest.approx(nll(ex, y), rel=1e-5)
