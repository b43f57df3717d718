"""The factorised exact average: its exp-free products, the reference class and the low
part that keep any spread safe, its block sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import fast_exact as F
from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP


def _net(model, scale=1.0, batch=6):
    x = jax.random.normal(jax.random.key(3), (batch, 5))
    v, spec = M.init(model, jax.random.key(4), x)
    return x, jax.tree.map(lambda p: scale * p, v), spec


def test_table_rows_follow_the_enumeration_bit_order():
    """Row i of the doubled table multiplies kept[u] where bit u of i is set."""
    rng = np.random.default_rng(0)
    kept, dropped = rng.random((3, 2, 4)), rng.random((3, 2, 4))
    f0 = rng.random((2, 4))
    table = np.asarray(F.product_table(jnp.asarray(f0), jnp.asarray(kept), jnp.asarray(dropped)))
    for i in range(8):
        want = f0.copy()
        for u in range(3):
            want = want * (kept[u] if (i >> u) & 1 else dropped[u])
        np.testing.assert_allclose(table[i], want, rtol=1e-6)


def _kw(outer, inner, lo, v, x, task="classification"):
    """The kernels' keyword arguments (``task=None``: for the spread passes, which take none)."""
    kw = dict(outer=outer, inner=inner, lo=lo, variables=v, x=x)
    return kw if task is None else {**kw, "task": task}


def _kernel(model, x, v, spec, lo):
    """The kernel with ``lo`` low units (``"default"``: :func:`F.low_units`), or the
    exponential path (``None``)."""
    outer, inner = F.split_units(model, spec, F.inner_size(model.n_out, x.shape[0]))
    lo = F.low_units(len(inner)) if lo == "default" else lo
    return F.exact_sums(model, spec, **_kw(outer, inner, lo, v, x))


def test_exp_free_products_match_the_exponential_path():
    """The products of exponentials and the per-subnetwork max path agree to float rounding."""
    model = MLP(hidden=(4, 6), n_out=3, rate=0.4, input_rate=0.2)
    x, v, spec = _net(model, scale=2.0)
    a1, g1, spread = _kernel(model, x, v, spec, "default")
    a2, g2, _ = _kernel(model, x, v, spec, None)
    assert float(spread) < F.SAFE_SPREAD
    np.testing.assert_allclose(a1, a2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_out", [F.CONTRACT_CLASSES - 1, F.CONTRACT_CLASSES + 1])
def test_both_products_branches_match_the_exponential_path_and_generic(n_out):
    """Below CONTRACT_CLASSES the products build the values' table, from it on they
    contract over the classes: either way the exponential path's and the generic average's
    numbers, with a low part and a high part of several units each (6 inner units)."""
    model = MLP(hidden=(3, 6), n_out=n_out, rate=0.4, input_rate=0.2)
    x, v, spec = _net(model, scale=2.0, batch=7)
    outer, inner = F.split_units(model, spec, F.products_inner_size(n_out, 7))
    assert len(inner) == 6
    lo = F.low_units(len(inner))
    a1, g1, spread = F.exact_sums(model, spec, **_kw(outer, inner, lo, v, x))
    a2, g2, _ = F.exact_sums(model, spec, **_kw(outer, inner, None, v, x))
    assert float(spread) < F.SAFE_SPREAD
    np.testing.assert_allclose(a1, a2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-5)
    generic = P.exact(model, v, x, method="generic")
    np.testing.assert_allclose(P.exact(model, v, x).arithmetic, generic.arithmetic, atol=1e-6)


def test_a_shift_per_high_state_narrows_the_spread():
    """One unit of the high part moves every logit by 70: a shift per example would span
    it (spread >= 70, the exponential path), a shift per high state does not."""
    model = MLP(hidden=(3,), n_out=2, rate=0.5)
    x = jnp.ones((1, 1))
    v, spec = M.init(model, jax.random.key(0), x)
    v = {
        "params": {
            "dense_0": {"kernel": jnp.ones((1, 3)), "bias": jnp.zeros(3)},
            "out": {"kernel": jnp.array([[0.5, 0.0], [0.0, 0.5], [-70.0, -71.0]]),
                    "bias": jnp.zeros(2)},
        }
    }  # fmt: skip
    outer, inner = F.split_units(model, spec, 3)
    lo = F.low_units(len(inner))
    assert (len(inner), lo) == (3, 2)  # the 70-unit is the high part's
    spread = float(F.max_spread(model, spec, **_kw(outer, inner, lo, v, x, task=None)))
    assert spread < 2.0
    exact = P.exact(model, v, x).arithmetic
    generic = P.exact(model, v, x, method="generic").arithmetic
    np.testing.assert_allclose(exact, generic, rtol=1e-6, atol=1e-7)


def _spread_to(model, v, spec, x, target):
    """``v`` with a random output layer (its units push different classes) scaled so that
    the default low part's spread is ``target`` (the spread is linear in that layer)."""
    n_out = model.n_out
    width = model.hidden[-1]
    out = {"kernel": jax.random.normal(jax.random.key(0), (width, n_out)), "bias": jnp.zeros(n_out)}
    v = {"params": {**v["params"], "out": out}}
    outer, inner = F.split_units(model, spec, F.products_inner_size(n_out, x.shape[0]))
    base = float(
        F.max_spread(model, spec, **_kw(outer, inner, F.low_units(len(inner)), v, x, task=None))
    )
    assert base > 1.0
    scaled = jax.tree.map(lambda p: p * target / base, out)
    return {"params": {**v["params"], "out": scaled}}, outer, inner


@pytest.mark.parametrize(
    ("target", "products"),
    [(100.0, True), pytest.param(3000.0, False, marks=pytest.mark.slow)],  # slow: over 10 s
)
def test_huge_logits_move_units_to_the_high_part(monkeypatch, target, products):
    """The kernel measures the spread; past SAFE_SPREAD exact_mlp reruns the products with
    fewer low units (the widest units moved to the high part), or, when fewer than
    MIN_LOW_UNITS would stay, takes the exponential path; below it the default low part runs
    once."""
    model = MLP(hidden=(4, 10), n_out=3, rate=0.5)
    x, v, spec = _net(model)
    v, outer, inner = _spread_to(model, v, spec, x, target)
    lo = F.low_units(len(inner))
    kernel_spread = float(F.exact_sums(model, spec, **_kw(outer, inner, lo, v, x))[2])
    np.testing.assert_allclose(kernel_spread, target, rtol=1e-4)  # the pass and the kernel agree
    calls = []
    real = F.segmented_sums

    def spy(*args, **kw):
        calls.append((kw["inner"], kw["lo"]))
        return real(*args, **kw)

    monkeypatch.setattr(F, "segmented_sums", spy)
    avg = P.exact(model, v, x)
    first, (inner_used, lo_used) = calls  # the default low part, then another path
    assert first == (inner, lo)
    if products:
        assert F.MIN_LOW_UNITS <= lo_used <= lo  # reordering alone may make it safe
        assert sorted(inner_used) == sorted(inner) and inner_used != inner  # reordered
        spread = F.max_spread(model, spec, **_kw(outer, inner_used, lo_used, v, x, task=None))
        assert float(spread) < F.SAFE_SPREAD
    else:
        assert lo_used is None  # the exponential path
    generic = P.exact(model, v, x, method="generic")
    np.testing.assert_allclose(avg.arithmetic, generic.arithmetic, rtol=0, atol=1e-6)
    calls.clear()
    P.exact(model, jax.tree.map(lambda p: p * 30.0 / target, v), x)
    assert calls == [(inner, lo)]


def test_no_low_unit_means_no_spread():
    """With every inner unit in the high part each inner subnetwork has its own shift: no
    spread, and the exponential path's numbers on a net whose logits reach thousands."""
    model = MLP(hidden=(4, 5), n_out=3, rate=0.5)
    x, v, spec = _net(model, scale=40.0)
    outer, inner = F.split_units(model, spec, 5)
    assert float(F.max_spread(model, spec, **_kw(outer, inner, 0, v, x, task=None))) == 0.0
    a, g, spread = F.exact_sums(model, spec, **_kw(outer, inner, 0, v, x))
    assert float(spread) == 0.0
    a2, g2, _ = F.exact_sums(model, spec, **_kw(outer, inner, None, v, x))
    np.testing.assert_allclose(a, a2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(g, g2, rtol=1e-5, atol=1e-4)


@pytest.mark.slow  # compile-heavy: `make test-slow`
def test_a_safe_low_part_with_a_keep_probability_per_unit(monkeypatch):
    """Distinct keep probabilities per inner unit (a hand-made spec, standard convention so
    the masks carry no scale): the rerun's reordered units keep their own probabilities."""
    model = MLP(hidden=(2, 10), n_out=3, rate=0.5, convention="standard")
    x, v, spec = _net(model, batch=5)
    keep = (1.0,) * 5 + (0.9, 0.6) + (0.95, 0.8, 0.7, 0.5, 0.35, 0.85, 0.6, 0.75, 0.9, 0.55)
    spec = M.MaskSpec(paths=spec.paths, shapes=spec.shapes, keep=keep)  # inputs kept
    v, _, _ = _spread_to(model, v, spec, x, 100.0)
    los = []
    real = F.segmented_sums
    monkeypatch.setattr(
        F, "segmented_sums", lambda *a, **kw: los.append(kw["lo"]) or real(*a, **kw)
    )
    got = F.exact_mlp(model, v, x, spec)
    assert los[0] == F.low_units(10) and F.MIN_LOW_UNITS <= los[1] <= los[0]  # a rerun
    masks, probs = M.all_masks(spec)
    z = np.asarray(jax.vmap(lambda m: M.apply(model, v, x, m))(masks), np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    w = np.asarray(probs, np.float64)[:, None, None]
    np.testing.assert_allclose(got.arithmetic, np.sum(w * np.exp(logp), 0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.log_geometric, np.sum(w * logp, 0), rtol=1e-5, atol=1e-4)


def test_fewer_low_units_keep_the_block_in_its_budget():
    """The block grows as low units leave (2^(D - lo) high states): inner units move to the
    outer ones until it fits, and never below the low part (or one unit)."""
    outer, inner = (0, 1), tuple(range(2, 14))  # D = 12
    for n_out, batch in ((10, 1000), (2, 300)):
        for lo in (0, 3, F.low_units(12)):
            o, i = F.fit_block(outer, inner, lo, n_out, batch)
            assert sorted(o + i) == list(range(14)) and i == inner[: len(i)]
            fits = F.products_floats(len(i), n_out, batch, lo) <= F.products_budget(n_out)
            assert fits or len(i) == max(lo, 1)
    assert F.fit_block(outer, inner, 8, 10, 100) == (outer, inner)  # already fits


def test_the_reference_class_cancels_a_confident_nets_spread():
    """Every inner unit pushes class 0 up by 80 (and the others by less): relative to the
    winning class no other class ever gains, so the spread is 0 where the raw logits of
    the low units alone span 320."""
    model = MLP(hidden=(6,), n_out=3, rate=0.5)
    x = jnp.ones((1, 1))
    v, spec = M.init(model, jax.random.key(0), x)
    w = jnp.tile(jnp.array([[40.0, 10.0, -5.0]]), (6, 1))
    v = {"params": {"dense_0": {"kernel": jnp.ones((1, 6)), "bias": jnp.zeros(6)},
                    "out": {"kernel": w, "bias": jnp.zeros(3)}}}  # fmt: skip
    outer, inner = F.split_units(model, spec, 6)
    assert (
        float(F.max_spread(model, spec, **_kw(outer, inner, F.low_units(6), v, x, task=None)))
        == 0.0
    )
    raw = F.max_spread(
        model, spec, **_kw(outer, inner, F.low_units(6), v, x, task=None), reference=False
    )
    assert float(raw) == 320.0  # four low units at 2 x 40 each (inverted scaling)
    generic = P.exact(model, v, x, method="generic")
    np.testing.assert_allclose(P.exact(model, v, x).arithmetic, generic.arithmetic, atol=1e-7)


def _reference64(model, v, x, spec):
    """E[p] and E[log p] ``(B, C)`` in float64 from every subnetwork's float32 logits."""
    masks, w = M.all_masks(spec)
    logits = np.asarray(
        jax.vmap(lambda m: M.apply(model, v, x, m))(masks), np.float64
    )  # (2^n, B, C)
    logp = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))[..., None]
        - logits.max(-1, keepdims=True)
    )
    w = np.asarray(w, np.float64)[:, None, None]
    return np.sum(w * np.exp(logp), 0), np.sum(w * logp, 0), np.abs(logits).max(0)


@pytest.mark.parametrize("target", [3.0, 65.0, 120.0, 250.0])
@pytest.mark.parametrize("n_out", [2, 10])
def test_exact_at_any_spread(target, n_out, monkeypatch):
    """Nets whose spread (as max_spread measures it at the default low part) is 3, 65, 120
    and 250: probabilities within 1e-6 of the generic path and a float64 reference, the
    geometric mean's log-probabilities within 1e-5 x max(1, |logit|) of the reference.
    The output layer is scaled to reach the spread (the spread is linear in it)."""
    model = MLP(hidden=(4, 6), n_out=n_out, rate=0.5)
    x, v, spec = _net(model, batch=9)
    # an output layer whose units push different classes (spread 2.0 and 5.7 at scale 1)
    out = {"kernel": jax.random.normal(jax.random.key(0), (6, n_out)), "bias": jnp.zeros(n_out)}
    v = {"params": {**v["params"], "out": out}}
    outer, inner = F.split_units(model, spec, F.products_inner_size(n_out, 9))
    lo = F.low_units(len(inner))
    base = float(F.max_spread(model, spec, **_kw(outer, inner, lo, v, x, task=None)))
    assert base > 1.0
    v = {"params": {**v["params"], "out": jax.tree.map(lambda p: p * target / base, out)}}
    np.testing.assert_allclose(
        float(F.max_spread(model, spec, **_kw(outer, inner, lo, v, x, task=None))),
        target,
        rtol=1e-4,
    )
    calls = []
    real = F.segmented_sums

    def spy(*args, **kw):
        calls.append(kw["lo"])
        return real(*args, **kw)

    monkeypatch.setattr(F, "segmented_sums", spy)
    avg = P.exact(model, v, x)
    # the default low part once when it is safe, else once more with a safe low part of at
    # least MIN_LOW_UNITS, or the exponential path (None)
    assert calls[0] == F.low_units(len(inner))
    assert len(calls) == (1 if target < F.SAFE_SPREAD else 2)
    assert len(calls) == 1 or calls[1] is None or calls[1] >= F.MIN_LOW_UNITS
    arith, logg, size = _reference64(model, v, x, spec)
    size = size.max(-1, keepdims=True)  # an error in log p comes with the largest logit
    generic = P.exact(model, v, x, method="generic")
    np.testing.assert_allclose(avg.arithmetic, generic.arithmetic, rtol=0, atol=1e-6)
    np.testing.assert_allclose(avg.arithmetic, arith, rtol=0, atol=1e-6)
    err = np.abs(np.asarray(avg.log_geometric, np.float64) - logg)
    assert np.all(err <= 1e-5 * np.maximum(1.0, size)), float(np.max(err / np.maximum(1, size)))


def test_the_products_block_fits_its_budget():
    """Normalisers and both tables with many classes, the values' table with few; at least
    one inner unit whatever the size."""
    assert F.products_inner_size(10, 1000) == 11  # 1000 x (2^11 + (2^7 + 2^4) x 10) floats
    for n_out, batch in ((10, 1000), (10, 360), (2, 208), (1000, 500), (3, 10**7)):
        d = F.products_inner_size(n_out, batch)
        assert F.products_floats(d, n_out, batch) <= F.products_budget(n_out) or d == 1
        if d < F.MAX_INNER_UNITS:
            assert F.products_floats(d + 1, n_out, batch) > F.products_budget(n_out)
    # with many classes the tables, not the normalisers, bound the block
    assert F.products_inner_size(1000, 500) < F.products_inner_size(10, 500)


def test_inner_parts_follow_the_enumeration_order():
    """Inner mask l + Nl h: its probability is p_pair[h, l] and its high units are m_high[h],
    with a different keep probability per unit (so a swapped layout shows)."""
    keep = (0.9, 0.8, 0.7, 0.6, 0.5)
    spec = M.MaskSpec(paths=(("drop", "mask"),), shapes=((5,),), keep=keep)
    inner = (0, 1, 2, 3, 4)
    lo = F.low_units(5)
    assert lo == 3
    m_high, p_pair = F.inner_parts(spec, inner, lo, jnp.float32)
    flat, p = M.enumerate_units(spec, inner, jnp.arange(32), jnp.float32)
    for i in range(32):
        h, low = divmod(i, 2**lo)
        np.testing.assert_allclose(p_pair[h, low], p[i], rtol=1e-6)
        np.testing.assert_array_equal(m_high[h], flat[i, lo:])
        want = np.prod([k if (i >> u) & 1 else 1 - k for u, k in enumerate(keep)])
        np.testing.assert_allclose(p[i], want, rtol=1e-6)


@pytest.mark.parametrize(
    ("hidden", "n_out"),
    [
        ((2, 1), 4),
        pytest.param((2, 2), 4, marks=pytest.mark.slow),
        pytest.param((3, 4), 2, marks=pytest.mark.slow),
    ],
)
def test_products_with_one_or_two_inner_units_and_four_classes(hidden, n_out):
    """The smallest inner blocks (D = 1: no low part; D = 2) and exactly CONTRACT_CLASSES
    classes match the generic average."""
    model = MLP(hidden=hidden, n_out=n_out, rate=0.4)
    x, v, spec = _net(model, scale=1.5, batch=5)
    for d in (1, 2):
        outer, inner = F.split_units(model, spec, d)
        a2, g2, _ = F.exact_sums(model, spec, **_kw(outer, inner, None, v, x))
        for lo in {F.low_units(len(inner)), 0, len(inner)}:  # default, all high, all low
            a, g, spread = F.exact_sums(model, spec, **_kw(outer, inner, lo, v, x))
            assert float(spread) < F.SAFE_SPREAD
            np.testing.assert_allclose(a, a2, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(g, g2, rtol=1e-5, atol=1e-5)
    generic = P.exact(model, v, x, method="generic").arithmetic
    np.testing.assert_allclose(P.exact(model, v, x).arithmetic, generic, atol=1e-6)


def test_inner_block_fits_the_table_budget():
    assert F.inner_size(10, 360) == 8  # 2^8 x 10 x 360 floats <= 2^20
    assert F.inner_size(2, 4) == F.MAX_INNER_UNITS
    assert F.inner_size(10, 10**6) == 1
    for n_out, batch in ((10, 360), (3, 1000), (1, 50)):
        d = F.inner_size(n_out, batch)
        assert 2**d * n_out * batch <= F.TABLE_FLOATS or d == 1


@pytest.mark.parametrize("method", ["factorised", "generic"])
def test_exact_rows_sum_to_one_within_1e_6(method):
    """Compensated sums: a 3,4,2 ReLU net (drop 0.35, input drop 0.2, 5 inputs)."""
    model = MLP(hidden=(3, 4), n_out=2, rate=0.35, input_rate=0.2)
    x, v, _ = _net(model, scale=3.0, batch=64)
    avg = P.exact(model, v, x, method=method)
    assert float(jnp.max(jnp.abs(avg.arithmetic.sum(-1) - 1))) <= 1e-6


def test_a_spread_just_below_the_old_threshold_loses_no_probability():
    """Spread 79: one shift per example would flush class 1's numerator (probability ~1e-4)
    to zero; such a spread must move low units to the high part."""
    model = MLP(hidden=(2,), n_out=3, rate=0.5)
    x = jnp.zeros((1, 1))
    v, spec = M.init(model, jax.random.key(0), x)
    p = {
        "dense_0": {"kernel": jnp.zeros((1, 2)), "bias": jnp.ones(2)},
        "out": {
            "kernel": jnp.array([[0.0, 0.0, 44.75], [0.0, 0.0, 44.75]]),
            "bias": jnp.array([0.0, -9.0, -100.0]),
        },
    }
    v = {"params": p}
    assert F.SAFE_SPREAD <= float(_kernel(model, x, v, spec, "default")[2]) < 80
    exact = P.exact(model, v, x).arithmetic
    generic = P.exact(model, v, x, method="generic").arithmetic
    assert float(exact[0, 1]) > 1e-5
    np.testing.assert_allclose(exact, generic, rtol=1e-5, atol=1e-7)
