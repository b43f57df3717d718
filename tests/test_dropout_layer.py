"""MaskedDropout as a drop-in for flax.linen.Dropout: a given mask wins, its own draws are
nn.Dropout's bit for bit, deterministic is its expectation, and an ambiguous call is refused."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP, MaskedDropout
from dropstudy.train import TrainConfig, train
from dropstudy.validate import DropstudyError


class Net(nn.Module):
    """A user's net written for nn.Dropout: ``layer`` is nn.Dropout or MaskedDropout. The
    layers are named, since flax folds a module's name into its rng (an auto-name,
    ``Dropout_0`` against ``MaskedDropout_0``, would draw other bits)."""

    layer: type
    rate: float = 0.3
    channels_rate: float = 0.6

    @nn.compact
    def __call__(self, x, train: bool):
        h = nn.relu(nn.Dense(16)(x))
        h = self.layer(self.rate, deterministic=not train, name="drop_h")(h)
        h = nn.Dense(8)(h)[:, :, None].repeat(3, axis=2)  # (B, 8, 3): 8 units of 3 values
        h = self.layer(self.channels_rate, broadcast_dims=(2,), name="drop_c")(
            h, deterministic=not train
        )
        return nn.Dense(4)(h.reshape(h.shape[0], -1))


@pytest.fixture(scope="module")
def setup():
    x = jax.random.normal(jax.random.key(1), (6, 5))
    variables = Net(nn.Dropout).init(jax.random.key(0), x, train=False)
    return x, variables


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_own_draws_are_nn_dropout_bitwise(setup, seed):
    x, v = setup
    rngs = {"dropout": jax.random.key(seed)}
    ours = Net(MaskedDropout).apply(v, x, train=True, rngs=rngs)
    theirs = Net(nn.Dropout).apply(v, x, train=True, rngs=rngs)
    np.testing.assert_array_equal(ours, theirs)
    # and a different key gives a different net: the layer really draws
    other = Net(MaskedDropout).apply(v, x, train=True, rngs={"dropout": jax.random.key(99)})
    assert not np.array_equal(ours, other)


def test_deterministic_is_nn_dropout_bitwise_and_the_expectation(setup):
    x, v = setup
    ours = Net(MaskedDropout).apply(v, x, train=False)
    np.testing.assert_array_equal(ours, Net(nn.Dropout).apply(v, x, train=False))
    # the same as the masks at their expectation, given explicitly (to rounding: 1/p * p)
    spec = M.mask_spec(_Fixed(Net(MaskedDropout), train=False), x)
    ws = M.apply(_Fixed(Net(MaskedDropout), train=True), _nested(v), x, M.expected_masks(spec))
    np.testing.assert_allclose(ours, ws, rtol=1e-6, atol=1e-6)


class _Fixed(nn.Module):
    """The user's net with ``train`` bound, as the predictors call a model on ``x`` alone
    (its variables: :func:`_nested`)."""

    net: nn.Module
    train: bool

    @nn.compact
    def __call__(self, x):
        return self.net(x, self.train)


def _nested(variables):
    return {"params": {"net": variables["params"]}}


def test_a_given_mask_wins_over_deterministic_and_rngs(setup):
    x, v = setup
    model = _Fixed(Net(MaskedDropout), train=True)
    spec = M.mask_spec(model, x)
    ones = M.ones_masks(spec)
    a = M.apply(model, _nested(v), x, ones, rngs={"dropout": jax.random.key(5)})
    b = M.apply(model, _nested(v), x, ones, rngs={"dropout": jax.random.key(6)})
    np.testing.assert_array_equal(a, b)  # no draw: the given mask is used
    zero = jax.tree.map(jnp.zeros_like, ones)
    c = M.apply(_Fixed(Net(MaskedDropout), train=False), _nested(v), x, zero)
    out = v["params"]["Dense_2"]["bias"]
    np.testing.assert_allclose(c, np.broadcast_to(out, c.shape), atol=1e-7)


def test_a_plain_init_records_no_mask_to_win_over_the_draws(setup):
    x, _ = setup
    variables = Net(MaskedDropout).init(jax.random.key(0), x, train=False)
    assert set(variables) == {"params"}
    a = Net(MaskedDropout).apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = Net(MaskedDropout).apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.array_equal(a, b)
    # the library's own reading of the layout still sees both layers
    spec = M.mask_spec(_Fixed(Net(MaskedDropout), train=True), x)
    assert spec.names == ("net/drop_h", "net/drop_c") and spec.shapes == ((16,), (8,))


def test_the_library_predictors_run_a_drop_in_net(setup):
    x, v = setup
    model = _Fixed(Net(MaskedDropout), train=True)
    ws = P.weight_scaling(model, _nested(v), x)
    mc = P.mc(model, _nested(v), x, key=jax.random.key(0), k=64)
    assert ws.arithmetic.shape == mc.arithmetic.shape == (6, 4)
    assert mc.count == 64


def test_drawing_without_an_rng_says_what_to_pass(setup):
    x, v = setup
    with pytest.raises(DropstudyError, match=r"rngs=\{'dropout': key\}"):
        Net(MaskedDropout).apply(v, x, train=True)


def test_unset_deterministic_with_an_rng_is_refused_not_guessed():
    x = jnp.ones((2, 3))
    model = MLP(hidden=(4,), n_out=2)
    variables, _ = M.init(model, jax.random.key(0), x)
    with pytest.raises(DropstudyError, match="deterministic is not set"):
        model.apply(variables, x, rngs={"dropout": jax.random.key(0)})
    # without an rng, an unset layer is weight scaling, as it always was
    ws = model.apply(variables, x)
    spec = M.mask_spec(model, x)
    np.testing.assert_array_equal(ws, M.apply(model, variables, x, M.expected_masks(spec)))


@pytest.mark.parametrize("convention", ["inverted", "standard"])
def test_explicit_rng_argument_and_standard_convention(convention):
    x = jnp.arange(1.0, 9.0).reshape(2, 4)
    layer = MaskedDropout(0.5, convention=convention)
    out = layer.apply({}, x, deterministic=False, rng=jax.random.key(3))
    kept = np.asarray(out) != 0
    scale = 2.0 if convention == "inverted" else 1.0
    np.testing.assert_array_equal(np.asarray(out)[kept], np.asarray(x)[kept] * scale)
    assert 0 < kept.sum() < x.size
    det = layer.apply({}, x, deterministic=True)
    np.testing.assert_allclose(det, x if convention == "inverted" else x * 0.5)


def test_the_trainer_trains_a_drop_in_net(setup):
    """The trainer gives masks, so the user's deterministic flag does not matter there."""
    x, _ = setup
    y = jnp.arange(6) % 4
    model = _Fixed(Net(MaskedDropout), train=True)
    cfg = TrainConfig(steps=3, batch_size=6, lr=0.1)
    variables, history = train(model, jax.random.key(0), x, y, cfg)
    assert np.all(np.isfinite(np.asarray(history.loss)))
    assert set(variables) == {"params"}


class _Plain(nn.Module):
    """A baseline without dropout."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(nn.relu(nn.Dense(8)(x)))


def test_a_plain_net_is_its_own_one_subnetwork_for_every_predictor(setup):
    x, _ = setup
    y = jnp.arange(6) % 4
    variables, history = train(_Plain(), jax.random.key(0), x, y, TrainConfig(steps=30, lr=0.05))
    assert float(history.loss[-1]) < float(history.loss[0])  # the trainer trains it
    spec = M.mask_spec(_Plain(), x)
    assert spec.n_units == 0
    plain = jax.nn.softmax(_Plain().apply(variables, x))
    for avg in (
        P.weight_scaling(_Plain(), variables, x),
        P.mc(_Plain(), variables, x, key=jax.random.key(1), k=50),
        P.exact(_Plain(), variables, x),
        P.over_masks(_Plain(), variables, x, masks={}),
    ):
        assert avg.count == 1
        np.testing.assert_allclose(avg.arithmetic, plain, rtol=1e-6)
    curve = P.mc_curve(_Plain(), variables, x, key=jax.random.key(1), ks=[1, 5])
    assert [a.count for a in curve.values()] == [1, 1]


@pytest.mark.parametrize("deterministic", [False, True])
def test_nn_dropout_models_are_refused_naming_the_layers_and_the_fix(setup, deterministic):
    x, _ = setup

    class FlaxOnly(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dropout(0.5, deterministic=deterministic, name="my_drop")(nn.Dense(8)(x))
            return nn.Dense(4)(h)

    with pytest.raises(DropstudyError, match=r"Dropout layers \['my_drop'\].*MaskedDropout"):
        P.weight_scaling(FlaxOnly(), {"params": {}}, x)


def test_a_subclass_of_mlp_takes_the_generic_paths_with_its_own_forward():
    """The fast paths compute the MLP's own forward pass: a subclass with another
    __call__ must not take them (it did: exact and gathered MC ignored the override)."""

    class TempMLP(MLP):
        temperature: float = 5.0

        def __call__(self, x):
            return super().__call__(x) / self.temperature

    x = jax.random.normal(jax.random.key(0), (4, 5))
    for hidden in ((4, 3), (64,)):
        model = TempMLP(hidden=hidden, n_out=3)
        variables, _ = M.init(model, jax.random.key(1), x)
        if len(hidden) == 2:
            auto = P.exact(model, variables, x)
            generic = P.exact(model, variables, x, method="generic")
        else:
            auto = P.mc(model, variables, x, key=jax.random.key(2), k=16)
            generic = P.mc(model, variables, x, key=jax.random.key(2), k=16, method="dense")
        np.testing.assert_allclose(auto.arithmetic, generic.arithmetic, rtol=1e-5, atol=1e-7)


def test_one_layer_at_two_sites_warns_that_the_sites_share_its_mask():
    class TwoSites(nn.Module):
        @nn.compact
        def __call__(self, x):
            drop = MaskedDropout(0.5, name="shared")
            h = drop(nn.relu(nn.Dense(6)(x)))
            return nn.Dense(3)(drop(nn.relu(nn.Dense(6)(h))))

    x = jnp.ones((2, 4))
    with pytest.warns(UserWarning, match=r"\{'shared': 2\}.*shares the layer's one mask"):
        spec = M.mask_spec(TwoSites(), x)
    assert spec.n_units == 6  # one mask for both sites, as the warning says


def test_models_the_predictors_cannot_call_on_x_alone_get_the_fix(setup):
    import functools

    x, v = setup
    with pytest.raises(DropstudyError, match="make it an attribute"):
        P.weight_scaling(functools.partial(Net(MaskedDropout), train=True), v, x)
    with pytest.raises(DropstudyError, match="cannot be called on x alone"):
        P.weight_scaling(Net(MaskedDropout), v, x)  # __call__(self, x, train) needs train


def test_rate_refusals_name_the_layer():
    with pytest.raises(DropstudyError, match=r"rate of dropout layer MaskedDropout must be"):
        MaskedDropout(1.0).apply({}, jnp.ones((1, 2)))


def test_labels_that_look_one_hot_are_told_to_take_argmax():
    x = jnp.ones((4, 3))
    y = jax.nn.one_hot(jnp.arange(4) % 2, 2)
    with pytest.raises(DropstudyError, match=r"one-hot: pass the class indices, y.argmax\(1\)"):
        train(MLP(hidden=(4,), n_out=2), jax.random.key(0), x, y, TrainConfig(steps=1))
    with pytest.raises(DropstudyError, match="task='regression'"):
        train(MLP(hidden=(4,), n_out=2), jax.random.key(0), x, y * 0.5, TrainConfig(steps=1))


def test_metrics_refuse_an_average_naming_its_probabilities():
    from dropstudy import metrics

    x = jnp.ones((3, 4))
    model = MLP(hidden=(4,), n_out=2)
    variables, _ = M.init(model, jax.random.key(0), x)
    avg = P.weight_scaling(model, variables, x)
    with pytest.raises(DropstudyError, match=r"avg.probs\(\)"):
        metrics.accuracy(avg, jnp.zeros(3, int))
    assert metrics.accuracy(avg.probs(), jnp.zeros(3, int)) in (0.0, 1.0)


@pytest.mark.parametrize("flag", [False, np.False_, jnp.array(False)])
def test_numpy_and_jax_bools_draw_as_python_false(flag):
    """nn.Dropout reads deterministic by truth value: a NumPy or JAX False draws too."""
    x = jnp.ones((4, 6))
    rngs = {"dropout": jax.random.key(0)}
    ours = MaskedDropout(0.5, deterministic=flag).apply({}, x, rngs=rngs)
    theirs = nn.Dropout(0.5, deterministic=False).apply({}, x, rngs=rngs)
    np.testing.assert_array_equal(ours, theirs)


def test_a_convention_passed_where_deterministic_now_sits_is_refused():
    # the old positional order (rate, broadcast_dims, convention) would set deterministic
    with pytest.raises(DropstudyError, match="convention='standard'"):
        MaskedDropout(0.5, (), "standard").apply({}, jnp.ones((2, 3)))


def test_a_scanned_layer_is_one_site_not_two_traces():
    """nn.scan traces its body twice: one line of code is still one site, no warning."""
    import warnings

    class Cell(nn.Module):
        @nn.compact
        def __call__(self, h, _):
            return MaskedDropout(0.5)(nn.tanh(nn.Dense(4)(h))), None

    class Scanned(nn.Module):
        @nn.compact
        def __call__(self, x):
            scan = nn.scan(
                Cell, variable_broadcast=["params", "masks"], split_rngs={"params": False},
                length=5,
            )  # fmt: skip
            return scan()(x, None)[0]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = M.mask_spec(Scanned(), jnp.ones((2, 4)))
    assert spec.n_units == 4


def test_only_the_models_own_call_signature_is_translated():
    class Bug(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense()(MaskedDropout(0.5)(x))  # a bug in the model, not its signature

    with pytest.raises(TypeError, match="features"):
        M.mask_spec(Bug(), jnp.ones((2, 3)))


def test_a_rate_zero_nn_dropout_is_no_mask_source_an_eval_mode_one_is():
    """nn.Dropout(0.0) never drops: the net is plain. One in eval mode still holds masks
    that no predictor can vary: refused (averaging it as one net would be silent)."""

    class Flax(nn.Module):
        rate: float
        deterministic: bool

        @nn.compact
        def __call__(self, x):
            x = nn.Dropout(self.rate, deterministic=self.deterministic)(nn.Dense(4)(x))
            return nn.Dense(2)(x)

    x = jnp.ones((2, 3))
    variables, spec = M.init(Flax(0.0, False), jax.random.key(0), x)
    assert spec.n_units == 0
    assert P.mc(Flax(0.0, False), variables, x, key=jax.random.key(1), k=3).count == 1
    with pytest.raises(DropstudyError, match=r"has flax Dropout layers \['Dropout_0'\]"):
        M.mask_spec(Flax(0.3, True), x)


def test_plain_networks_still_refuse_what_they_cannot_take(setup):
    x, _ = setup
    variables, _ = M.init(_Plain(), jax.random.key(0), x)
    with pytest.raises(DropstudyError, match="gathered"):
        P.mc(_Plain(), variables, x, key=jax.random.key(1), k=3, method="gathered")
    with pytest.raises(DropstudyError, match="takes no masks or weights"):
        P.over_masks(_Plain(), variables, x, masks={"junk": {"mask": jnp.ones((7, 3))}})
