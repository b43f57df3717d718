"""NNX models through the same predictors: parity with the linen MLP on the same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dropstudy import masks as M
from dropstudy import models as L
from dropstudy import predict as P
from dropstudy.nnx import MLP, MaskedDropout, Pure, pure
from dropstudy.validate import DropstudyError

# One worker runs this file: its module-scoped fixture is built once (pytest-xdist).
pytestmark = pytest.mark.xdist_group("test_nnx")

D_IN, HIDDEN, N_OUT = 3, (4, 4), 3
RATES, INPUT_RATE = (0.3, 0.5), 0.2  # 3 + 4 + 4 = 11 droppable units: 2048 subnetworks
TOL = {"rtol": 0, "atol": 1e-6}


@pytest.fixture(scope="module")
def twins() -> tuple[L.MLP, dict, Pure, dict, nnx.Module, jax.Array]:
    """A linen MLP and an NNX MLP holding the same weights, and inputs ``x (6, D_IN)``.

    Returns ``(linen model, linen variables, Pure, NNX variables, NNX model, x)``.
    """
    x = jax.random.normal(jax.random.key(1), (6, D_IN))
    lin = L.MLP(hidden=HIDDEN, n_out=N_OUT, rate=RATES, input_rate=INPUT_RATE)
    lin_vars, _ = M.init(lin, jax.random.key(0), x)
    # Larger weights make the nonlinearity matter, so agreement is not trivial.
    lin_vars = jax.tree.map(lambda p: 2.0 * p, lin_vars)
    model = MLP(
        D_IN, HIDDEN, N_OUT, RATES, input_rate=INPUT_RATE, rngs=nnx.Rngs(7)
    )  # other weights
    nnx.update(model, lin_vars["params"])  # copy the linen weights in
    net, variables = pure(model)
    return lin, lin_vars, net, variables, model, x


def test_copied_weights_are_the_linen_weights(twins) -> None:
    _, lin_vars, _, variables, _, _ = twins
    assert set(variables) == {"params"}
    assert jax.tree.structure(variables) == jax.tree.structure(lin_vars)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(lin_vars), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weight_scaling_matches_linen(twins) -> None:
    lin, lin_vars, net, variables, model, x = twins
    a = P.weight_scaling(lin, lin_vars, x)
    b = P.weight_scaling(net, variables, x)
    np.testing.assert_allclose(b.arithmetic, a.arithmetic, **TOL)
    np.testing.assert_allclose(b.geometric, a.geometric, **TOL)
    # The model called directly (masks at their initial value, the expectation) agrees too.
    np.testing.assert_allclose(jax.nn.softmax(model(x)), a.arithmetic, **TOL)


def test_mc_matches_linen(twins) -> None:
    lin, lin_vars, net, variables, _, x = twins
    key = jax.random.key(3)
    a = P.mc(lin, lin_vars, x, key=key, k=64)
    b = P.mc(net, variables, x, key=key, k=64)
    assert b.count == a.count == 64
    np.testing.assert_allclose(b.arithmetic, a.arithmetic, **TOL)
    np.testing.assert_allclose(b.geometric, a.geometric, **TOL)


def test_exact_matches_linen(twins) -> None:
    lin, lin_vars, net, variables, _, x = twins
    a = P.exact(lin, lin_vars, x, method="generic")
    b = P.exact(net, variables, x, method="generic")
    assert b.count == a.count == 2**11
    np.testing.assert_allclose(b.arithmetic, a.arithmetic, **TOL)
    np.testing.assert_allclose(b.geometric, a.geometric, **TOL)
    # Different subnetworks do give different outputs: the average is not weight scaling.
    ws = P.weight_scaling(net, variables, x)
    assert np.abs(np.asarray(b.arithmetic - ws.arithmetic)).max() > 1e-3


def test_mask_spec_lists_layers_in_call_order(twins) -> None:
    lin, _, net, _, _, x = twins
    spec = M.mask_spec(net, x)
    assert spec.names == ("drop_input", "drop_0", "drop_1")  # not alphabetical: input first
    assert spec == M.mask_spec(lin, x)


def test_call_order_comes_from_running_the_model() -> None:
    """Attribute names sort against the call order; a layer that does not run is left out."""

    class Model(nnx.Module):
        def __init__(self) -> None:
            self.z_first = MaskedDropout(0.5, features=2, deterministic=None)
            self.unused = MaskedDropout(0.5, features=2, deterministic=None)
            self.a_second = MaskedDropout(0.25, features=2, deterministic=None)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.a_second(self.z_first(x))

    net, variables = pure(Model())
    x = jnp.ones((3, 2))
    spec = M.mask_spec(net, x)
    assert spec.names == ("z_first", "a_second")
    assert spec.keep == (0.5, 0.5, 0.75, 0.75)
    assert variables == {}  # no parameters at all
    assert list(net.dropout_rates(x).items()) == [(("z_first",), 0.5), (("a_second",), 0.25)]


def test_layer_without_explicit_mask_is_weight_scaling() -> None:
    x = jax.random.normal(jax.random.key(0), (5, 4))
    np.testing.assert_allclose(
        MaskedDropout(0.4, features=4, deterministic=None)(x), x, rtol=1e-6
    )  # inverted: identity
    std = MaskedDropout(0.4, features=4, deterministic=None, convention="standard")
    np.testing.assert_allclose(std(x), 0.6 * x, rtol=1e-6)  # standard: scaled by keep
    np.testing.assert_allclose(std.mask[...], np.full(4, 0.6, np.float32))


def test_pure_apply_without_masks_is_weight_scaling(twins) -> None:
    _, _, net, variables, model, x = twins
    np.testing.assert_allclose(net.apply(variables, x), model(x), **TOL)


@pytest.mark.parametrize("convention", ["inverted", "standard"])
@pytest.mark.parametrize("per_example", [False, True])
def test_layer_matches_linen_layer(convention: str, per_example: bool) -> None:
    """Feature maps ``(B, H, W, C)`` with one mask entry per channel, ``C`` or ``(B, C)``."""
    x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
    shape = (2, 4) if per_example else (4,)
    mask = jax.random.bernoulli(jax.random.key(1), 0.7, shape).astype(jnp.float32)
    lin = L.MaskedDropout(0.3, broadcast_dims=(1, 2), convention=convention)
    want = lin.apply({"masks": {"mask": mask}}, x)
    layer = MaskedDropout(
        0.3, features=4, deterministic=None, broadcast_dims=(1, 2), convention=convention
    )
    net, variables = pure(layer)
    got = net.apply({**variables, "masks": {"mask": mask}}, x)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    nnx.update(layer, {"mask": mask})  # the same subnetwork, set on the stateful layer
    np.testing.assert_allclose(layer(x), want, rtol=1e-6)


def test_pure_is_hashable_and_compares_by_structure(twins) -> None:
    _, _, net, _, _, _ = twins
    other, _ = pure(MLP(D_IN, HIDDEN, N_OUT, RATES, input_rate=INPUT_RATE, rngs=nnx.Rngs(123)))
    assert other == net and hash(other) == hash(net)
    wider, _ = pure(MLP(D_IN, (4, 5), N_OUT, RATES, input_rate=INPUT_RATE, rngs=nnx.Rngs(0)))
    assert wider != net


def test_mutable_collections_come_back() -> None:
    class Model(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.norm = nnx.BatchNorm(3, use_running_average=False, rngs=rngs)
            self.drop = MaskedDropout(0.5, features=3, deterministic=None)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.drop(self.norm(x))

    net, variables = pure(Model(nnx.Rngs(0)))
    assert set(variables) == {"params", "batch_stats"}
    x = jnp.arange(12.0).reshape(4, 3)
    out, new = net.apply(variables, x, mutable="batch_stats")
    assert out.shape == (4, 3) and set(new) == {"batch_stats"}
    assert not np.allclose(new["batch_stats"]["norm"]["mean"], 0.0)
    np.testing.assert_array_equal(variables["batch_stats"]["norm"]["mean"], 0.0)  # unchanged


def test_bad_input_raises_dropstudy_error(twins) -> None:
    _, _, net, variables, _, x = twins
    with pytest.raises(DropstudyError, match="rate"):
        MaskedDropout(1.0, features=3, deterministic=None)
    with pytest.raises(DropstudyError, match="rate"):
        MaskedDropout(-0.1, features=3, deterministic=None)
    with pytest.raises(DropstudyError, match="convention"):
        MaskedDropout(0.5, features=3, deterministic=None, convention="paper")
    with pytest.raises(DropstudyError, match="batch axis"):
        MaskedDropout(0.5, features=3, deterministic=None, broadcast_dims=(0,))
    with pytest.raises(DropstudyError, match="unit shape"):
        MaskedDropout(0.5, features=3, deterministic=None)(
            jnp.ones((2, 4))
        )  # built for 3 features, given 4
    with pytest.raises(DropstudyError, match="activation"):
        MLP(D_IN, HIDDEN, N_OUT, activation="gelu", rngs=nnx.Rngs(0))
    with pytest.raises(DropstudyError, match="drop rates for 2 hidden layers"):
        MLP(D_IN, HIDDEN, N_OUT, rate=(0.1, 0.2, 0.3), rngs=nnx.Rngs(0))
    bad = {"drop_input": {"mask": jnp.ones((2,))}}  # the input has 3 units
    with pytest.raises(DropstudyError, match=r"mask for dropout layer \(NNX\) has shape"):
        net.apply({**variables, "masks": bad}, x)
    with pytest.raises(DropstudyError, match="rngs"):
        net.apply(variables, x, rngs={"dropout": jax.random.key(0)})
    with pytest.raises(DropstudyError, match="no entry"):
        net.apply({"params": {}}, x)
    with pytest.raises(DropstudyError, match="nnx.Module"):
        pure(L.MLP())


def test_what_pure_adds_to_split_and_merge(twins) -> None:
    """Pure rebuilds the model with ``nnx.merge`` from ``nnx.split``'s graph; what it keeps
    beyond those two is what they cannot do:

    - a linen-style ``{"params": ...}`` dict, collections by name: ``merge`` takes the state
      keyed by path, every variable in it;
    - no ``"masks"`` (or some layers' only): ``merge`` refuses a state without every mask;
      Pure runs those layers at their expectation, weight scaling;
    - which dropout layers run on ``x``, in call order: ``split`` lists every layer, run or
      not, in attribute order.
    """
    _, _, net, variables, model, x = twins
    graphdef, params, _ = nnx.split(model, nnx.Param, ...)
    for state in (variables, params):
        with pytest.raises(ValueError, match="leaves"):
            nnx.merge(graphdef, state)
    np.testing.assert_allclose(net.apply(variables, x), model(x), **TOL)
    one = {"drop_0": {"mask": jnp.zeros(4)}}  # one layer's mask given, the rest expected
    want = nnx.merge(*nnx.split(model))
    nnx.update(want, {"drop_0": {"mask": jnp.zeros(4)}})
    np.testing.assert_allclose(net.apply({**variables, "masks": one}, x), want(x), **TOL)

    class Model(nnx.Module):
        def __init__(self) -> None:
            self.b = MaskedDropout(0.5, features=2, deterministic=None)
            self.unused = MaskedDropout(0.5, features=2, deterministic=None)
            self.a = MaskedDropout(0.25, features=2, deterministic=None)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.a(self.b(x))

    masks = nnx.to_pure_dict(nnx.split(Model())[1])
    assert list(masks) == ["a", "b", "unused"]  # every layer, sorted
    assert list(pure(Model())[0].dropout_rates(jnp.ones((1, 2)))) == [("b",), ("a",)]


class _UserNet(nnx.Module):
    """A user's NNX net written for nnx.Dropout; ``drop`` is nnx.Dropout or MaskedDropout."""

    def __init__(self, drop, rngs):
        self.l1 = nnx.Linear(5, 8, rngs=rngs)
        self.d1 = drop(0.3, rngs=rngs)
        self.l2 = nnx.Linear(8, 6, rngs=rngs)
        self.d2 = drop(0.6, broadcast_dims=(2,), rngs=rngs)
        self.l3 = nnx.Linear(18, 4, rngs=rngs)

    def __call__(self, x):
        h = self.d1(nnx.relu(self.l1(x)))
        h = self.d2(self.l2(h)[:, :, None].repeat(3, axis=2))  # 6 units of 3 values
        return self.l3(h.reshape(h.shape[0], -1))


def test_nnx_drop_in_draws_as_nnx_dropout_bitwise_and_masks_win_under_pure():
    x = jax.random.normal(jax.random.key(0), (6, 5))
    theirs = _UserNet(nnx.Dropout, nnx.Rngs(0, dropout=1))
    ours = _UserNet(MaskedDropout, nnx.Rngs(0, dropout=1))
    first = ours(x)
    np.testing.assert_array_equal(first, theirs(x))  # train mode by default, as nnx.Dropout
    np.testing.assert_array_equal(ours(x), theirs(x))  # the stream advances alike
    assert not np.array_equal(first, ours(x))  # a fresh draw every call
    ours.eval()
    theirs.eval()
    np.testing.assert_array_equal(ours(x), theirs(x))  # eval: the input unchanged
    # under pure the given masks win, whatever the mode: weight scaling is the eval net
    ours.train()
    net, variables = pure(ours)
    ws = P.weight_scaling(net, variables, x)
    np.testing.assert_allclose(ws.arithmetic, jax.nn.softmax(theirs(x)), rtol=1e-5, atol=1e-7)
    mc = P.mc(net, variables, x, key=jax.random.key(2), k=8)
    assert mc.count == 8 and not np.allclose(mc.arithmetic, ws.arithmetic)


def test_nnx_drop_in_features_inferred_and_refusals():
    x = jnp.arange(1.0, 7.0).reshape(2, 3)
    with pytest.raises(DropstudyError, match="no rngs"):  # nnx.Dropout's default: it draws
        MaskedDropout(0.5)(x)
    layer = MaskedDropout(0.5, deterministic=None)  # the stored expectation, as MLP's layers
    np.testing.assert_allclose(layer(x), x, rtol=1e-6)
    assert layer.unit_shape == (3,)  # taken from the first call
    with pytest.raises(DropstudyError, match="rate first"):
        MaskedDropout(3, 0.5)
    with pytest.raises(DropstudyError, match="no rngs"):
        layer(x, deterministic=False)
    drawn = layer(x, deterministic=False, rngs=jax.random.key(0))
    kept = np.asarray(drawn) != 0
    np.testing.assert_allclose(np.asarray(drawn)[kept], 2 * np.asarray(x)[kept])

    class Lazy(nnx.Module):
        def __init__(self):
            self.d = MaskedDropout(0.5, deterministic=None)

        def __call__(self, x):
            return self.d(x)

    with pytest.raises(DropstudyError, match="call the model once"):
        pure(Lazy())


def test_nnx_plain_models_are_one_subnetwork_and_nnx_dropout_is_refused():
    class Plain(nnx.Module):
        def __init__(self, drop, rngs):
            self.l1 = nnx.Linear(4, 3, rngs=rngs)
            self.drop = drop

        def __call__(self, x):
            return self.drop(self.l1(x)) if self.drop is not None else self.l1(x)

    x = jnp.ones((2, 4))
    net, variables = pure(Plain(None, nnx.Rngs(0)))
    for avg in (P.weight_scaling(net, variables, x), P.exact(net, variables, x)):
        assert avg.count == 1
    flax_only = Plain(nnx.Dropout(0.5, deterministic=True), nnx.Rngs(0))
    net, variables = pure(flax_only)
    with pytest.raises(DropstudyError, match=r"Dropout layers \['drop'\].*dropstudy.nnx"):
        P.weight_scaling(net, variables, x)


def test_nnx_one_layer_at_two_sites_warns():
    class TwoSites(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
            self.d = MaskedDropout(0.5, features=3, deterministic=None)

        def __call__(self, x):
            h = self.lin(self.d(x))
            return self.d(h)  # a second line calls the same layer

    net, variables = pure(TwoSites())
    with pytest.warns(UserWarning, match=r"\{'d': 2\}"):
        P.weight_scaling(net, variables, jnp.ones((2, 3)))


def test_nnx_integer_rate_with_features_is_a_rate_refusal():
    with pytest.raises(DropstudyError, match=r"drop rate in \[0, 1\)"):
        MaskedDropout(1, features=3)
