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


def _rows(gap: float = 0.0, seeds: int = 4, n: int = 30) -> list[dict]:
    """Fake per-seed rows with per-example values: weight scaling ``gap`` above the exact."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(seeds):
        base = {m: rng.uniform(0, 1, n) for m in ("nll", "err")}
        ex = {k: {m: (base[m] + (gap if k == "ws" else 0.0)).tolist() for m in base}
              for k in ("ws", "exact_a", "exact_g", "mc_a")}  # fmt: skip
        rows.append({"ex": ex})
    return rows


def test_the_validation_scale_is_averagings_gain():
    val = [
        {"exact": {"err": 0.10, "nll": 0.30}, "subnetwork": {"err": 0.18, "nll": 0.50}},
        {"exact": {"err": 0.12, "nll": 0.34}, "subnetwork": {"err": 0.20, "nll": 0.54}},
    ]
    v = averaging.validation_scale({"validation": val})
    assert v["err"]["gain"] == pytest.approx(0.08) and v["nll"]["gain"] == pytest.approx(0.2)
    assert v["err"]["exact"] == pytest.approx(0.11)
    assert averaging.validation_scale({"seeds": []}) is None  # a fixed-budget net


def test_the_tests_take_the_configs_margins():
    net = averaging.NETS[0]
    tight = averaging.net_tests(averaging.Config(margin=0.03, nll_margin=0.07), net, _rows(0.05))
    assert tight["primary err WS-A"]["margin"] == 0.03
    assert tight["primary err MC-A"]["margin"] == 0.03
    assert tight["primary nll WS-G"]["margin"] == 0.07
    assert tight["primary err WS-A"]["verdict"] == "contradicted"  # 0.05 beyond 0.03
    wide = averaging.net_tests(averaging.Config(margin=0.2, nll_margin=0.2), net, _rows(0.05))
    assert wide["primary err WS-A"]["verdict"] == "supported"


def test_scale_k_is_refused_where_it_measures_nothing():
    from dropstudy.data import digits
    from dropstudy.validate import DropstudyError

    stress = averaging.NETS[3]
    with pytest.raises(DropstudyError, match="scale_k"):  # before anything trains
        averaging.net_cell(digits(), stress, averaging.Config().train, [1], 1, [0], None, 100)
    cfg = averaging.Config()
    for n in cfg.nets:
        kw = averaging.plan(cfg, digits())[f"net={n.tag}"].kwargs
        assert ("scale_k" in kw) == (n.role in averaging.PROTOCOL_ROLES and n.exact)


@pytest.mark.slow  # compile-heavy: `make test-slow`
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
    model = MLP(hidden=(4,), n_out=3, rate=0.2)  # unequal weights: 0.8^k 0.2^(4-k)
    v = model.init(jax.random.key(0), jnp.asarray(x))
    stacked = jax.tree.map(lambda a: a[None], v)
    ev = Evaluator(("test", "gain"), 10)
    got = averaging.validation_gain(model, stacked, x, y, [0], ev, 20000)[0]
    masks, w = M.all_masks(M.mask_spec(model, jnp.asarray(x)))
    probs = np.asarray(jax.nn.softmax(averaging.subnetwork_logits(model, v, jnp.asarray(x), masks)))
    w = np.asarray(w, np.float64)
    assert w.sum() == pytest.approx(1.0) and w.max() / w.min() > 100
    err = np.sum(w * [1 - accuracy(p, y) for p in probs])
    assert got["subnetwork"]["err"] == pytest.approx(err, abs=0.01)
    assert got["subnetwork"]["nll"] == pytest.approx(
        np.sum(w * [nll(p, y) for p in probs]), rel=0.01
    )
    # the same mean with every subnetwork weighted alike would be another number
    assert abs(np.mean([1 - accuracy(p, y) for p in probs]) - err) > 0.02
    ex = P.exact(model, v, jnp.asarray(x)).arithmetic
    assert got["exact"]["nll"] == pytest.approx(nll(ex, y), rel=1e-5)
