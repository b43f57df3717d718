"""Selection on validation data inside the compiled run, checked against a Python loop over
snapshots; the max-norm constraint as a TrainConfig field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, make_train, seed_keys, train, train_grid, train_seeds
from dropstudy.validate import DropstudyError

MODEL = MLP(hidden=(16,), rate=0.5)
BASE = dict(steps=60, batch_size=32, lr=3e-2, snapshot_every=10)  # lr high: val loss moves


def _split(d):
    """Training and validation halves of the digits training set."""
    n = len(d.x_train) // 2
    return (d.x_train[:n], d.y_train[:n]), (d.x_train[n:], d.y_train[n:])


def _nll(probs, y):
    return float(-np.mean(np.log(np.asarray(probs, np.float64)[np.arange(len(y)), y])))


def _by_loop(hist, val, loss_of):
    """Each snapshot's validation loss, computed outside the run."""
    n = hist.loss.shape[0] // 10
    snaps = [jax.tree.map(lambda a, i=i: a[i], hist.params) for i in range(n)]
    return [loss_of({"params": p}, *val) for p in snaps], snaps


@pytest.mark.parametrize("select_by", ["ws", pytest.param("mc", marks=pytest.mark.slow)])
def test_selection_is_the_loop_over_snapshots(digits_data, select_by):
    """The validation loss every 10 steps and the best variables within 30 and within 60
    steps are what a loop over the snapshots finds: the same losses (to float rounding),
    the same steps, the snapshot's parameters bitwise."""
    (x, y), val = _split(digits_data)
    kw = dict(select_k=6) if select_by == "mc" else {}
    cfg = TrainConfig(**BASE, eval_every=10, windows=(30,), select_by=select_by, **kw)
    key = jax.random.key(0)
    _, hist = train(MODEL, key, x, y, cfg, validation=val)
    spec = M.mask_spec(MODEL, jnp.asarray(val[0]))
    if select_by == "ws":
        loss_of = lambda v, xv, yv: _nll(P.weight_scaling(MODEL, v, xv).arithmetic, yv)  # noqa: E731
    else:  # the fixed subnetworks the run draws from its key, as its docstring says
        masks = M.sample_mask_batch(spec, jax.random.fold_in(key, 0x53_45_4C), jnp.arange(6))
        loss_of = lambda v, xv, yv: _nll(  # noqa: E731
            P.over_masks(MODEL, v, xv, masks=masks).arithmetic, yv
        )
    losses, snaps = _by_loop(hist, val, loss_of)
    got = np.asarray(hist.val_loss)
    np.testing.assert_allclose(got[9::10], losses, rtol=2e-5)
    assert np.all(np.isnan(np.delete(got, np.arange(9, 60, 10))))
    assert len(set(np.round(losses, 4))) == len(losses)  # no ties: the argmin is clear
    w30, w60 = hist.selected
    for sel, n in ((w30, 3), (w60, 6)):
        best = int(np.argmin(losses[:n]))
        assert int(sel.step) == 10 * (best + 1)
        np.testing.assert_allclose(float(sel.loss), losses[best], rtol=2e-5)
        for a, b in zip(jax.tree.leaves(sel.variables["params"]), jax.tree.leaves(snaps[best])):
            np.testing.assert_array_equal(a, b)


def test_selection_leaves_training_alone(digits_data):
    """Scoring validation data changes no training number: the same final variables and
    losses, bitwise, with and without it; the one-program path selects as the segments do."""
    (x, y), val = _split(digits_data)
    key = jax.random.key(1)
    plain_v, plain_h = train(MODEL, key, x, y, TrainConfig(**BASE))
    cfg = TrainConfig(**BASE, eval_every=20)
    v, h = train(MODEL, key, x, y, cfg, validation=val)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(plain_v), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h.loss, plain_h.loss)
    assert plain_h.val_loss is None and plain_h.selected is None
    spec = M.mask_spec(MODEL, jnp.asarray(x))
    _, h1 = jax.jit(make_train(MODEL, spec, cfg))(key, jnp.asarray(x), jnp.asarray(y), val=val)
    np.testing.assert_array_equal(h1.loss, h.loss)
    np.testing.assert_array_equal(h1.val_loss, h.val_loss)
    assert int(h1.selected[0].step) == int(h.selected[0].step)


@pytest.mark.slow
def test_selection_over_seeds(digits_data):
    """Vmapped over seeds, each seed selects its own step; a seed alone selects the same."""
    (x, y), val = _split(digits_data)
    cfg = TrainConfig(**BASE, eval_every=10)
    _, hs = train_seeds(MODEL, seed_keys([2, 3]), x, y, cfg, validation=val)
    assert hs.val_loss.shape == (2, 60) and hs.selected[0].step.shape == (2,)
    _, h3 = train(MODEL, jax.random.key(3), x, y, cfg, validation=val)
    assert int(hs.selected[0].step[1]) == int(h3.selected[0].step)
    np.testing.assert_allclose(hs.selected[0].loss[1], h3.selected[0].loss, rtol=1e-4)


def test_selection_options_are_refused_where_they_would_do_nothing(digits_data):
    (x, y), val = _split(digits_data)
    with pytest.raises(DropstudyError, match="pass validation"):
        train(MODEL, jax.random.key(0), x, y, TrainConfig(**BASE, eval_every=10))
    with pytest.raises(DropstudyError, match="set eval_every"):
        train(MODEL, jax.random.key(0), x, y, TrainConfig(**BASE), validation=val)
    with pytest.raises(DropstudyError, match="set eval_every"):
        TrainConfig(**BASE, windows=(30,))
    with pytest.raises(DropstudyError, match="set eval_every"):
        TrainConfig(**BASE, select_by="mc")
    with pytest.raises(DropstudyError, match="select_by='mc'"):
        TrainConfig(**BASE, eval_every=10, select_k=4)
    with pytest.raises(DropstudyError, match="does not divide 25"):
        TrainConfig(**BASE, eval_every=10, windows=(25,))
    with pytest.raises(DropstudyError, match="windows must be"):
        TrainConfig(**BASE, eval_every=10, windows=(60,))
    with pytest.raises(DropstudyError, match="examples of shape"):
        cfg = TrainConfig(**BASE, eval_every=10)
        train(MODEL, jax.random.key(0), x, y, cfg, validation=(val[0][:, :10], val[1]))


def test_max_norm_bounds_every_unit(digits_data):
    """With max_norm every unit's incoming weights stay within the ball after every step;
    without it the same training leaves some outside."""
    (x, y), _ = _split(digits_data)
    c = 0.8
    norms = lambda v: [  # noqa: E731
        np.linalg.norm(np.asarray(v["params"][k]["kernel"]), axis=-2) for k in ("dense_0", "out")
    ]
    every = {**BASE, "snapshot_every": 1}
    _, free = train(MODEL, jax.random.key(0), x, y, TrainConfig(**every))
    _, bound = train(MODEL, jax.random.key(0), x, y, TrainConfig(**every, max_norm=c))
    assert max(n.max() for n in norms({"params": free.params})) > c
    # every step's parameters, not only the last
    assert max(n.max() for n in norms({"params": bound.params})) <= c * (1 + 1e-5)


@pytest.mark.slow
def test_a_learning_rate_grid_is_one_program(digits_data, monkeypatch):
    """Each (rate, seed) run of the grid is that run trained alone (to float rounding), the
    rates give different nets, and the grid traces the trainer once, not once per rate."""
    import dropstudy.train as T

    (x, y), val = _split(digits_data)
    cfg = TrainConfig(steps=40, batch_size=32, eval_every=20)
    lrs = (1e-3, 3e-2, 1e-1)
    traced = []
    real = T.make_trainer
    monkeypatch.setattr(T, "make_trainer", lambda *a, **k: traced.append(1) or real(*a, **k))
    v, h = T.train_grid(MODEL, seed_keys([5, 6]), x, y, cfg, lrs=lrs, validation=val)
    assert len(traced) <= 3  # start, one segment, the selection's read-out
    monkeypatch.setattr(T, "make_trainer", real)
    assert h.loss.shape == (3, 2, 40) and h.selected[0].step.shape == (3, 2)
    for i, lr in enumerate(lrs):
        alone, ha = train(MODEL, jax.random.key(6), x, y, cfg.replace(lr=lr), validation=val)
        for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i, 1], b, rtol=1e-3, atol=1e-4)  # rounding, amplified
        np.testing.assert_allclose(h.val_loss[i, 1], ha.val_loss, rtol=1e-3)
    assert not np.allclose(v["params"]["out"]["kernel"][0], v["params"]["out"]["kernel"][1])


def test_a_grid_needs_a_named_optimizer_at_a_constant_rate(digits_data):
    import optax

    (x, y), _ = _split(digits_data)
    keys = seed_keys([0])
    for cfg in (
        TrainConfig(steps=10, optimizer=optax.adam(1e-3)),
        TrainConfig(steps=10, schedule="cosine"),
    ):
        with pytest.raises(DropstudyError, match="named optimizer"):
            train_grid(MODEL, keys, x, y, cfg, lrs=(1e-3,))
    with pytest.raises(DropstudyError, match="at least one"):
        train_grid(MODEL, keys, x, y, TrainConfig(steps=10), lrs=())
    with pytest.raises(DropstudyError, match=r"lrs\[1\]"):
        train_grid(MODEL, keys, x, y, TrainConfig(steps=10), lrs=(1e-3, -1.0))


def test_selection_refuses_what_it_cannot_score(digits_data):
    """Models that draw randomness or update collections when applied, validation labels
    the model has no class for, validation losses that are never finite, windows that are
    not a tuple of distinct step counts, a custom loss: each refused with what to do."""
    import flax.linen as nn

    from dropstudy.models import MaskedDropout

    (x, y), val = _split(digits_data)
    cfg = TrainConfig(**BASE, eval_every=10)
    key = jax.random.key(0)
    with pytest.raises(DropstudyError, match="rng streams"):
        train(MODEL, key, x, y, cfg.replace(rng_streams=("dropout",)), validation=val)

    class Normed(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.BatchNorm(use_running_average=False)(nn.Dense(8)(x))
            return nn.Dense(10)(MaskedDropout(0.5)(x))

    with pytest.raises(DropstudyError, match="batch_stats"):
        train(Normed(), key, x, y, cfg, validation=val)
    with pytest.raises(DropstudyError, match="labels must be class indices"):
        train(MODEL, key, x, y, cfg, validation=(val[0], val[1] + 10))
    xs, ys = np.stack([x, x]), np.stack([y, y])  # per-seed data: one validation set per seed
    bad = (np.stack([val[0]] * 2), np.stack([val[1], val[1] + 10]))  # seed 1's labels bad
    with pytest.raises(DropstudyError, match="labels must be class indices"):
        train_seeds(MODEL, seed_keys([0, 1]), xs, ys, cfg, per_seed_data=True, validation=bad)
    with pytest.raises(DropstudyError, match="no finite validation loss"):
        # finite inputs whose logits overflow: every validation loss is NaN
        train(MODEL, key, x, y, cfg, validation=(val[0] * 1e37 + 1e37, val[1]))
    for windows in ([30], (30, 30)):
        with pytest.raises(DropstudyError, match="windows must be"):
            TrainConfig(**BASE, eval_every=10, windows=windows)
    assert TrainConfig(**BASE, eval_every=10, windows=(np.int64(30),)).windows == (30,)
    with pytest.raises(DropstudyError, match="custom loss"):
        TrainConfig(**BASE, eval_every=10, loss=lambda out, y: jnp.mean(out))


@pytest.mark.slow  # bfloat16 grid: a compile of its own
def test_a_grid_in_bfloat16_keeps_adam_finite(digits_data):
    """Only the learning rate becomes optimiser state: Adam's b2 = 0.999 stays a Python
    number (in bfloat16 it would round to 1 and divide by zero)."""
    (x, y), _ = _split(digits_data)
    model = MLP(hidden=(16,), rate=0.5, dtype=jnp.bfloat16)
    cfg = TrainConfig(steps=20, batch_size=32)
    _, h = train_grid(model, seed_keys([0]), x, y, cfg, lrs=(1e-3,))
    _, alone = train(model, jax.random.key(0), x, y, cfg.replace(lr=1e-3))
    assert np.all(np.isfinite(np.asarray(h.loss, np.float32)))
    np.testing.assert_allclose(
        np.asarray(h.loss[0, 0], np.float32), np.asarray(alone.loss, np.float32), rtol=2e-2
    )
    with pytest.raises(DropstudyError, match="leave it unset"):
        train_grid(model, seed_keys([0]), x, y, cfg.replace(lr=1e-3), lrs=(1e-3,))
