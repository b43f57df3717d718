"""The multi-device paths in the default suite, on the two CPU devices conftest.py sets up:
seeds padded and split over devices, subnetworks dealt over a mesh, gathered MC's overflow
flags. (tests/test_sharding.py runs the same checks on 8 devices, in a slow subprocess.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import fast_exact as F
from dropstudy import fast_mc
from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy import sharding as S
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, train_seeds

REAL_FIT = F.fit_block


@pytest.fixture(scope="module")
def two():
    if len(jax.devices()) != 2:
        pytest.fail(f"the suite runs on two CPU devices (conftest.py), got {jax.devices()}")
    return S.mesh()


@pytest.mark.slow  # five compiles; padding also runs in every odd-seed quick run
def test_odd_seed_counts_are_padded_and_split(two, digits_data, monkeypatch):
    """Three seeds on two devices: padded to four, split two and two; bitwise the same when
    run again; a device's share, each seed alone and the whole batch on one device agree
    with it to float rounding (the segments' loops are compiled per batch and sharding)."""
    d = digits_data
    model = MLP(hidden=(6, 5), rate=0.5)
    cfg = TrainConfig(steps=20, batch_size=64, lr=3e-3)
    keys = seed_keys(range(3))
    placed = []
    real = S.shard_leading

    def spy(tree, mesh):
        out, n = real(tree, mesh)
        placed.append((len(jax.tree.leaves(out)[0].sharding.device_set), n))
        return out, n

    monkeypatch.setattr(S, "shard_leading", spy)
    one = S.mesh(devices=jax.devices()[:1])
    p2, h2 = train_seeds(model, keys, d.x_train, d.y_train, cfg)
    p1, h1 = train_seeds(model, keys, d.x_train, d.y_train, cfg, mesh=one)
    assert placed == [(2, 3), (1, 3)]
    assert h2.loss.shape == (3, 20)
    # each seed alone, and device 0's share (seeds 0 and 1) on one device: float rounding
    pi, hi = train_seeds(model, keys[:2], d.x_train, d.y_train, cfg, mesh=one)
    for a, b in zip(jax.tree.leaves((pi, hi)), jax.tree.leaves((p2, h2)), strict=True):
        np.testing.assert_allclose(a, b[:2], rtol=1e-5, atol=1e-7)
    again = train_seeds(model, keys, d.x_train, d.y_train, cfg)  # the same count: bitwise
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves((p2, h2)), strict=True):
        np.testing.assert_array_equal(a, b)
    for i in range(3):
        pi, hi = train_seeds(model, keys[i : i + 1], d.x_train, d.y_train, cfg, mesh=one)
        for a, b in zip(jax.tree.leaves((pi, hi)), jax.tree.leaves((p2, h2)), strict=True):
            np.testing.assert_allclose(a[0], b[i], rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves((p1, h1)), jax.tree.leaves((p2, h2)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_exact_and_mc_dealt_over_two_devices(two, digits_data):
    """Both exact paths and MC with their work dealt over the mesh: the sums come back from
    both devices and match one device's."""
    model = MLP(hidden=(6, 5), rate=0.5)
    x = digits_data.x_test[:40]
    v, _ = M.init(model, jax.random.key(0), x)
    ex = P.exact(model, v, x, method="generic", chunk=64)
    for dealt in (
        P.exact(model, v, x, method="generic", chunk=64, mesh=two),
        P.exact(model, v, x, mesh=two),  # factorised: outer masks dealt out
    ):
        assert len(dealt.arithmetic.sharding.device_set) == 2
        np.testing.assert_allclose(dealt.arithmetic, ex.arithmetic, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dealt.log_geometric, ex.log_geometric, rtol=1e-5, atol=1e-5)
    key = jax.random.key(3)
    mc = P.mc(model, v, x, key=key, k=301, chunk=16)
    mc2 = P.mc(model, v, x, key=key, k=301, chunk=16, mesh=two)
    np.testing.assert_allclose(mc2.arithmetic, mc.arithmetic, rtol=1e-5, atol=1e-6)


def test_factorised_rerun_with_fewer_low_units_over_two_devices(two, monkeypatch):
    """Logits spread past the limit: the products rerun with a safe low part, dealt over the
    mesh, and give the generic path's numbers."""
    model = MLP(hidden=(4, 10), n_out=3, rate=0.5)
    x = jax.random.normal(jax.random.key(3), (6, 5))
    v, _ = M.init(model, jax.random.key(4), x)
    out = {"kernel": 12.0 * jax.random.normal(jax.random.key(0), (10, 3)), "bias": jnp.zeros(3)}
    v = {"params": {**v["params"], "out": out}}
    los = []
    monkeypatch.setattr(
        F, "fit_block", lambda o, i, lo, *a: los.append(lo) or REAL_FIT(o, i, lo, *a)
    )
    gen = P.exact(model, v, x, method="generic")
    dealt = P.exact(model, v, x, mesh=two)
    assert len(los) == 1 and F.MIN_LOW_UNITS <= los[0] <= F.low_units(10)  # the rerun ran
    np.testing.assert_allclose(dealt.arithmetic, gen.arithmetic, rtol=0, atol=1e-6)
    np.testing.assert_allclose(dealt.log_geometric, gen.log_geometric, rtol=1e-5, atol=1e-3)


def test_factorised_outer_masks_fewer_than_devices(two):
    """One outer mask on two devices: the second device's share is all padding (weight 0)."""
    model = MLP(hidden=(1, 6), n_out=3, rate=0.5)
    x = jax.random.normal(jax.random.key(1), (5, 4))
    v, spec = M.init(model, jax.random.key(2), x)
    outer, _ = F.split_units(model, spec, 6)
    assert len(outer) == 1  # 2 outer masks: one per device
    model1 = MLP(hidden=(1, 6), n_out=3, rate=(0.0, 0.5))
    v1, spec1 = M.init(model1, jax.random.key(2), x)
    assert F.split_units(model1, spec1, 6)[0] == ()  # 1 outer mask: the other device pads
    for m, w in ((model, v), (model1, v1)):
        gen = P.exact(m, w, x, method="generic")
        np.testing.assert_allclose(
            P.exact(m, w, x, mesh=two).arithmetic, gen.arithmetic, rtol=1e-5, atol=1e-6
        )


@pytest.mark.slow  # compile-heavy: `make test-slow`
def test_gathered_mc_flags_come_back_over_the_mesh(two, monkeypatch):
    """With bounds below the mean kept count most subnetworks are past them (the flags, on
    one device), and dealt over the mesh they come back through the flags of both devices
    to the dense pass, on a net placed on the second device: without the flags most
    subnetworks would be missing from the sums."""
    monkeypatch.setattr(fast_mc, "Z_BOUND", -1.0)  # read when a kernel is traced
    wide = MLP(hidden=(24, 20), rate=0.5, input_rate=0.2)
    x = jax.random.normal(jax.random.key(0), (30, 8))
    v, spec = M.init(wide, jax.random.key(5), x)
    key = jax.random.key(3)
    *_, over = fast_mc.mc_stream(wide, spec, task="classification", k=61, variables=v, x=x, key=key)
    assert 30 < int(np.sum(over)) < 61
    v = jax.device_put(v, jax.devices()[1])
    dense = P.mc(wide, v, x, key=key, k=61, method="dense")
    g2 = P.mc(wide, v, x, key=key, k=61, method="gathered", mesh=two)
    np.testing.assert_allclose(g2.arithmetic, dense.arithmetic, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g2.log_geometric, dense.log_geometric, rtol=1e-5, atol=1e-5)
