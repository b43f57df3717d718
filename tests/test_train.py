import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.metrics import accuracy
from dropstudy.models import MLP
from dropstudy.train import DivergenceError, TrainConfig, seed_keys, train, train_seeds
from dropstudy.validate import DropstudyError

CFG = TrainConfig(steps=60, batch_size=32, lr=3e-3)


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_same_key_bitwise_same_params(digits_data):
    model = MLP(hidden=(16,))
    d = digits_data
    p1, h1 = train(model, jax.random.key(0), d.x_train, d.y_train, CFG)
    p2, h2 = train(model, jax.random.key(0), d.x_train, d.y_train, CFG)
    p3, _ = train(model, jax.random.key(1), d.x_train, d.y_train, CFG)
    assert _leaves_equal(p1, p2) and np.array_equal(h1.loss, h2.loss)
    assert not _leaves_equal(p1, p3)


def test_vmapped_seeds_match_single_runs(digits_data):
    model = MLP(hidden=(16,))
    d = digits_data
    ps, hs = train_seeds(model, seed_keys([3, 4]), d.x_train, d.y_train, CFG)
    p4, _ = train(model, jax.random.key(4), d.x_train, d.y_train, CFG)
    for a, b in zip(jax.tree.leaves(ps), jax.tree.leaves(p4)):
        np.testing.assert_allclose(a[1], b, rtol=2e-5, atol=2e-6)
    assert hs.loss.shape == (2, CFG.steps)


def test_one_tiny_epoch_learns_digits(digits_data):
    d = digits_data
    model = MLP(hidden=(32,), rate=0.2)
    params, hist = train(
        model,
        jax.random.key(0),
        d.x_train,
        d.y_train,
        TrainConfig(steps=45, batch_size=32, lr=1e-2),
    )
    acc = accuracy(P.weight_scaling(model, params, d.x_test).arithmetic, d.y_test)
    assert acc > 0.6
    assert hist.loss[-5:].mean() < hist.loss[:5].mean()


def test_rate_zero_is_plain_training(digits_data):
    """With rate 0 every mask is ones: the per-example and per-batch modes coincide."""
    d = digits_data
    model = MLP(hidden=(8,), rate=0.0)
    a, _ = train(model, jax.random.key(0), d.x_train, d.y_train, CFG)
    b, _ = train(model, jax.random.key(0), d.x_train, d.y_train, CFG.replace(mask_mode="per_batch"))
    assert _leaves_equal(a, b)


def test_cycle_mode_trains_only_the_kept_units(digits_data):
    d = digits_data
    model = MLP(hidden=(6,), rate=0.5)
    spec = M.mask_spec(model, d.x_train)
    flat = jnp.ones(spec.n_units).at[M.layer_units(spec, "drop_0")[:3]].set(0)
    p0 = model.init(jax.random.split(jax.random.key(0), 3)[0], d.x_train[:1])["params"]
    p1, _ = train(
        model,
        jax.random.key(0),
        d.x_train,
        d.y_train,
        CFG.replace(mask_mode="cycle"),
        cycle_masks=flat[None],
    )
    # outgoing weights of the dropped units never receive a gradient
    p1 = p1["params"]
    np.testing.assert_array_equal(p1["out"]["kernel"][:3], p0["out"]["kernel"][:3])
    assert not np.array_equal(p1["out"]["kernel"][3:], p0["out"]["kernel"][3:])


def test_step_masks_are_the_masks_a_step_trains_with(digits_data):
    # Plain SGD, one mask per minibatch: every parameter touching a unit that step_masks says
    # was dropped at a step is bitwise unchanged by that step; the kept units move.
    from dropstudy.train import make_trainer, step_masks

    d = digits_data
    model = MLP(hidden=(12, 12), rate=0.5)
    spec = M.mask_spec(model, d.x_train[:1])
    cfg = CFG.replace(optimizer="sgd", lr=0.1, momentum=0.0, mask_mode="per_batch")
    t = make_trainer(model, spec, cfg)
    x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
    keys, carry = t.start(jax.random.key(3), x)
    for step in range(3):
        before = carry[0]
        carry, _ = t.steps(keys, carry, x, y, None, first=step, n=1)
        m = np.asarray(step_masks(spec, "per_batch", keys[1], step, 0)["drop_1"]["mask"])
        dropped = m == 0
        assert dropped.any() and (~dropped).any()
        moved_out = np.abs(carry[0]["out"]["kernel"] - before["out"]["kernel"]).sum(1)
        moved_in = np.abs(carry[0]["dense_1"]["kernel"] - before["dense_1"]["kernel"]).sum(0)
        assert (moved_out[dropped] == 0).all() and (moved_in[dropped] == 0).all()
        assert moved_out[~dropped].sum() > 0 and moved_in[~dropped].sum() > 0
    per_example = step_masks(spec, "per_example", keys[1], 0, 5)
    assert per_example["drop_1"]["mask"].shape == (5, 12)


def test_snapshots(digits_data):
    d = digits_data
    model = MLP(hidden=(8,))
    _, hist = train(model, jax.random.key(0), d.x_train, d.y_train, CFG.replace(snapshot_every=20))
    assert hist.params["out"]["kernel"].shape == (3, 8, 10)
    assert hist.grads["out"]["kernel"].shape == (3, 8, 10)


def test_regression_full_batch():
    x = jnp.linspace(-1, 1, 10)[:, None]
    y = 1.5 * x
    model = MLP(hidden=(20,), n_out=1, rate=0.0)
    cfg = TrainConfig(steps=300, batch_size=0, optimizer="sgd", lr=0.05, task="regression")
    _, hist = train(model, jax.random.key(0), x, y, cfg)
    assert hist.loss[-1] < 0.05


def test_divergence_names_step_and_seed(digits_data):
    d = digits_data
    model = MLP(hidden=(8,), rate=0.0)
    cfg = TrainConfig(steps=50, batch_size=0, optimizer="sgd", lr=1e6, task="regression")
    y = d.y_train.astype(np.float32)[:, None] * 1e3
    with pytest.raises(DivergenceError, match=r"at step \d+ for seed 5.*lower the learning rate"):
        train_seeds(model.clone(n_out=1), seed_keys([5]), d.x_train, y, cfg, seeds=[5])


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"steps": 10, "snapshot_every": 3}, "must divide"),
    ],
)
def test_bad_train_config_is_refused_when_built(kw, match):
    with pytest.raises(DropstudyError, match=match):
        TrainConfig(**kw)
    with pytest.raises(DropstudyError, match=match):
        CFG.replace(**kw)


def test_cycle_mode_needs_cycle_masks(digits_data):
    cfg = TrainConfig(mask_mode="cycle")
    with pytest.raises(DropstudyError, match="needs cycle_masks"):
        train(MLP(hidden=(4,)), jax.random.key(0), digits_data.x_train, digits_data.y_train, cfg)


def test_bad_data(digits_data):
    x = digits_data.x_train.copy()
    x[3, 2] = np.inf
    with pytest.raises(DropstudyError, match="x contains 1 NaN or infinite"):
        train(MLP(hidden=(4,)), jax.random.key(0), x, digits_data.y_train, CFG)
    with pytest.raises(DropstudyError, match="integer labels"):
        train(
            MLP(hidden=(4,)),
            jax.random.key(0),
            digits_data.x_train,
            digits_data.y_train.astype(float),
            CFG,
        )


def _one_program(model, key, d, cfg):
    """The run as :func:`make_train`'s one program, jitted here."""
    from dropstudy.train import make_train

    spec = M.mask_spec(model, d.x_train)
    f = jax.jit(make_train(model, spec, cfg))
    return f(key, jnp.asarray(d.x_train), jnp.asarray(d.y_train))


def test_progress_changes_no_bit_and_segments_match_one_program(digits_data):
    """One training path: the same compiled segments run with progress shown (as an
    argument or through a ``progress`` block) or not, bit for bit; and a single run's
    segments equal :func:`make_train`'s one program bitwise, losses and snapshots included."""
    from dropstudy.train import progress

    d = digits_data
    model = MLP(hidden=(6,), rate=0.5, input_rate=0.2)
    cfg = CFG.replace(steps=12, snapshot_every=4)
    seen, block = [], []
    a = train(model, jax.random.key(0), d.x_train, d.y_train, cfg)
    b = train(
        model, jax.random.key(0), d.x_train, d.y_train, cfg, progress=lambda *p: seen.append(p)
    )
    with progress(lambda *p: block.append(p)):
        c = train(model, jax.random.key(0), d.x_train, d.y_train, cfg)
    assert _leaves_equal(a, b) and _leaves_equal(a, c)
    assert seen == block == [(i, 12) for i in (2, 4, 6, 8, 10, 12)]  # pieces of 2 within 4
    assert _leaves_equal(a, _one_program(model, jax.random.key(0), d, cfg))


@pytest.mark.slow  # progress's bits over one seed stay in the default suite
def test_progress_of_seeds_changes_no_bit(digits_data):
    d = digits_data
    model = MLP(hidden=(8,), rate=0.5, input_rate=0.2)
    cfg = CFG.replace(steps=20, snapshot_every=10)
    keys = seed_keys([0, 1, 2])
    seen = []
    a = train_seeds(model, keys, d.x_train, d.y_train, cfg)
    b = train_seeds(model, keys, d.x_train, d.y_train, cfg, progress=lambda *p: seen.append(p))
    assert _leaves_equal(a, b) and seen[-1] == (20, 20) and len(seen) == 10


@pytest.mark.slow  # over 20 s; `make test-slow`
def test_segments_of_seeds_match_one_vmapped_program(digits_data):
    """For a vmapped batch of seeds, the segments agree with :func:`make_train` vmapped as
    one program to float rounding (not bitwise)."""
    from dropstudy.train import make_train

    d = digits_data
    model = MLP(hidden=(8,), rate=0.5, input_rate=0.2)
    cfg = CFG.replace(steps=60, snapshot_every=20)
    keys = seed_keys([0, 1, 2])
    a = train_seeds(model, keys, d.x_train, d.y_train, cfg)
    spec = M.mask_spec(model, d.x_train)
    f = jax.jit(jax.vmap(make_train(model, spec, cfg), in_axes=(0, None, None)))
    b = f(keys, jnp.asarray(d.x_train), jnp.asarray(d.y_train))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_step_masks_refuses_what_training_refuses(digits_data):
    from dropstudy.train import step_masks

    spec = M.mask_spec(MLP(hidden=(4,)), digits_data.x_train[:1])
    key = jax.random.key(0)
    with pytest.raises(DropstudyError, match="unknown mask_mode 'per-example'"):
        step_masks(spec, "per-example", key, 0, 8)
    with pytest.raises(DropstudyError, match="needs cycle_masks"):
        step_masks(spec, "cycle", key, 0, 8)
    with pytest.raises(DropstudyError, match="mask_key"):
        step_masks(spec, "per_batch", 0, 0, 8)


def test_batches_are_each_epochs_permutation_in_order():
    """Step t trains on slice t % E of the permutation drawn from fold_in(k_data, t // E)
    (E batches per epoch), also when snapshot segments start inside an epoch. The loss
    records the batch: labels are the example indices and the loss is sum(4 ** label), a
    different number for every set of examples."""
    n, bs, steps = 10, 3, 14  # E = 3 batches per epoch, one example left out of each
    x = jnp.zeros((n, 2))
    y = jnp.arange(n)
    model = MLP(hidden=(2,), n_out=2, rate=0.0)
    key = jax.random.key(5)
    k_data = jax.random.split(key, 3)[1]  # the trainer's data key
    want = []
    for s in range(steps):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_data, s // 3), n))
        want.append(float(np.sum(4.0 ** perm[(s % 3) * bs : (s % 3 + 1) * bs])))
    for seg in (0, 7):  # 0: one segment; 7: the second segment starts at step 7, inside an epoch
        cfg = TrainConfig(
            steps=steps, batch_size=bs, snapshot_every=seg,
            loss=lambda out, lab: jnp.sum(4.0**lab) + 0.0 * out.sum(),
        )  # fmt: skip
        _, hist = train(model, key, x, y, cfg)
        assert np.asarray(hist.loss).tolist() == want
