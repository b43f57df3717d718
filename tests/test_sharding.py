"""Sharded seeds and subnetworks match single-device results (8 simulated CPU devices, in a
subprocess so the rest of the suite keeps its two)."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    assert len(jax.devices()) == 8, jax.devices()
    from dropstudy import masks as M, predict as P, sharding as S
    from dropstudy.data import digits
    from dropstudy.models import MLP
    from dropstudy.train import TrainConfig, seed_keys, train_seeds

    d = digits()
    mesh = S.mesh()
    model = MLP(hidden=(6, 5), rate=0.5)
    cfg = TrainConfig(steps=40, batch_size=64, lr=3e-3)
    keys = seed_keys(range(5))  # not a multiple of 8: padded
    one = S.mesh(devices=jax.devices()[:1])
    placed = []
    shard_leading = S.shard_leading
    def spy(tree, mesh):
        out, n = shard_leading(tree, mesh)
        placed.append(len(jax.tree.leaves(out)[0].sharding.device_set))
        return out, n
    S.shard_leading = spy
    p1, h1 = train_seeds(model, keys, d.x_train, d.y_train, cfg, mesh=one)
    p8, h8 = train_seeds(model, keys, d.x_train, d.y_train, cfg)  # all 8 devices by default
    assert placed == [1, 8], placed
    assert h8.loss.shape == (5, 40)
    # Padded to 8 seeds, one per device: each is bitwise the seed trained alone on one
    # device, and agrees with the 5-seed batch on one device to float rounding.
    for i in range(5):
        pi, hi = train_seeds(model, keys[i : i + 1], d.x_train, d.y_train, cfg, mesh=one)
        for a, b in zip(jax.tree.leaves((pi, hi)), jax.tree.leaves((p8, h8))):
            np.testing.assert_array_equal(a[0], b[i])
    for a, b in zip(jax.tree.leaves((p1, h1)), jax.tree.leaves((p8, h8))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # Per-seed data and per-seed cycle masks are split with their seeds.
    xs = np.stack([d.x_train[i::3][:300] for i in range(3)])
    ys = np.stack([d.y_train[i::3][:300] for i in range(3)])
    spec = M.mask_spec(model, d.x_train)
    cyc = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.5, (3, 4, spec.n_units)), np.float32)
    ccfg = cfg.replace(mask_mode="cycle")
    b = train_seeds(model, keys[:3], xs, ys, ccfg, cycle_masks=cyc, per_seed_data=True)
    for i in range(3):
        a = train_seeds(
            model, keys[i : i + 1], xs[i : i + 1], ys[i : i + 1], ccfg,
            cycle_masks=cyc[i : i + 1], per_seed_data=True, mesh=one,
        )
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(u[0], v[i])

    p = jax.tree.map(lambda a: a[0], p1)
    x = d.x_test[:50]
    ex = P.exact(model, p, x, method="generic", chunk=64)
    ex8 = P.exact(model, p, x, chunk=64, mesh=mesh)
    np.testing.assert_allclose(ex8.arithmetic, ex.arithmetic, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex8.log_geometric, ex.log_geometric, rtol=1e-5, atol=1e-5)
    key = jax.random.key(3)
    mc = P.mc(model, p, x, key=key, k=300, chunk=16)
    mc8 = P.mc(model, p, x, key=key, k=300, chunk=16, mesh=mesh)
    np.testing.assert_allclose(mc8.arithmetic, mc.arithmetic, rtol=1e-5, atol=1e-6)
    # The fast paths dealt over 8 devices, uneven shares included: the factorised exact
    # average's outer masks, and gathered MC with low bounds, so that many subnetworks are
    # past them and come back through the flags.
    fac8 = P.exact(model, p, x, mesh=mesh)
    np.testing.assert_allclose(fac8.arithmetic, ex.arithmetic, rtol=1e-5, atol=1e-6)
    from dropstudy import fast_mc
    fast_mc.Z_BOUND = -1.0
    wide = MLP(hidden=(24, 20), rate=0.5, input_rate=0.2)
    vw, _ = M.init(wide, jax.random.key(5), x)
    # as a net taken from a stack of seeds sharded over the mesh: on one device of it, not
    # the first (the dense pass's sums must still land where the kernel's are)
    vw = jax.device_put(vw, jax.devices()[3])
    dense = P.mc(wide, vw, x, key=key, k=61, method="dense")
    g8 = P.mc(wide, vw, x, key=key, k=61, method="gathered", mesh=mesh)
    np.testing.assert_allclose(g8.arithmetic, dense.arithmetic, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g8.log_geometric, dense.log_geometric, rtol=1e-5, atol=1e-5)
    print("SHARDED OK")
""")


@pytest.mark.slow  # 8 devices in a subprocess; tests/test_two_devices.py runs on 2 in-process
def test_sharded_equals_single_device():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "SHARDED OK" in r.stdout
