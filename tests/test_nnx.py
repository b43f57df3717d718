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
            self.z_first = MaskedDropout(2, 0.5)
            self.unused = MaskedDropout(2, 0.5)
            self.a_second = MaskedDropout(2, 0.25)

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
    np.testing.assert_allclose(MaskedDropout(4, 0.4)(x), x, rtol=1e-6)  # inverted: identity
    std = MaskedDropout(4, 0.4, convention="standard")
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
    layer = MaskedDropout(4, 0.3, broadcast_dims=(1, 2), convention=convention)
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
            self.drop = MaskedDropout(3, 0.5)

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
        MaskedDropout(3, 1.0)
    with pytest.raises(DropstudyError, match="rate"):
        MaskedDropout(3, -0.1)
    with pytest.raises(DropstudyError, match="convention"):
        MaskedDropout(3, 0.5, convention="paper")
    with pytest.raises(DropstudyError, match="batch axis"):
        MaskedDropout(3, 0.5, broadcast_dims=(0,))
    with pytest.raises(DropstudyError, match="unit shape"):
        MaskedDropout(3, 0.5)(jnp.ones((2, 4)))  # built for 3 features, given 4
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
            self.b = MaskedDropout(2, 0.5)
            self.unused = MaskedDropout(2, 0.5)
            self.a = MaskedDropout(2, 0.25)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.a(self.b(x))

    masks = nnx.to_pure_dict(nnx.split(Model())[1])
    assert list(masks) == ["a", "b", "unused"]  # every layer, sorted
    assert list(pure(Model())[0].dropout_rates(jnp.ones((1, 2)))) == [("b",), ("a",)]
