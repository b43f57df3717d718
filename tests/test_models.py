"""Model options change what they claim to change."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy.models import MLP, mlp_from_config, model_config


def _params(weight_init: str, fan_in: int = 400, width: int = 300):
    model = MLP(hidden=(width,), n_out=1, rate=0.0, weight_init=weight_init)
    return model.init(jax.random.key(0), jnp.ones((1, fan_in)))["params"]["dense_0"]


def test_torch_init_is_pytorch_linear_default():
    """nn.Linear: weights and biases uniform on [-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    fan_in = 400
    p = _params("torch", fan_in)
    bound = 1 / np.sqrt(fan_in)
    for name in ("kernel", "bias"):
        v = np.asarray(p[name]).ravel()
        assert v.min() >= -bound and v.max() <= bound
        assert v.min() < -0.9 * bound and v.max() > 0.9 * bound  # fills the interval
    k = np.asarray(p["kernel"]).ravel()
    np.testing.assert_allclose(k.var(), bound**2 / 3, rtol=0.05)  # uniform's variance
    assert np.asarray(p["bias"]).std() > bound / 3  # biases are drawn, not zero


def test_lecun_init_differs_from_torch():
    p = _params("lecun")
    np.testing.assert_array_equal(p["bias"], 0.0)
    k = np.asarray(p["kernel"]).ravel()
    np.testing.assert_allclose(k.var(), 1 / 400, rtol=0.1)  # normal, variance 1/fan_in
    assert np.abs(k).max() > 1 / np.sqrt(400)  # not bounded like the uniform


def test_layer_names_are_the_parameter_and_mask_names():
    model = MLP(hidden=(3, 4), n_out=2, input_rate=0.1)
    variables, spec = M.init(model, jax.random.key(0), jnp.ones((1, 5)))
    assert tuple(variables["params"]) == model.dense_layers() == ("dense_0", "dense_1", "out")
    assert spec.names == model.dropout_layers() == ("drop_input", "drop_0", "drop_1")


@pytest.mark.parametrize("weight_init", ["lecun", "torch"])
def test_config_round_trip(weight_init):
    model = MLP(hidden=(3, 4), rate=(0.1, 0.2), weight_init=weight_init)
    assert mlp_from_config(model_config(model)) == model


def test_conv_net_in_one_dimension_from_flat_inputs():
    from dropstudy.models import ConvNet
    from dropstudy.validate import DropstudyError

    model = ConvNet(channels=(3, 5), kernel=(5,), input_shape=(40, 1), dense_width=6)
    x = jnp.ones((4, 40))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (4, 10)
    assert M.mask_spec(model, x).sizes == (3, 5, 6)  # whole channels, then dense units
    with pytest.raises(DropstudyError, match="input_shape"):
        model.apply(variables, jnp.ones((4, 30)))
    with pytest.raises(DropstudyError, match="1-D kernel needs inputs"):
        ConvNet(kernel=(5,)).init(jax.random.key(0), jnp.ones((2, 8, 8, 1)))
    with pytest.raises(DropstudyError, match="kernel must be a tuple"):
        ConvNet(kernel=5, input_shape=(40, 1)).init(jax.random.key(0), x)
    with pytest.raises(DropstudyError, match="then the channel count"):
        ConvNet(kernel=(5,), input_shape=(40,)).init(jax.random.key(0), x)
    img = jnp.ones((2, 8, 8, 1))
    for bad in ((0, 0), (-1, 3), (3.5, 3), "33"):
        with pytest.raises(DropstudyError, match="kernel must be positive whole numbers"):
            ConvNet(kernel=bad).init(jax.random.key(0), img)
    with pytest.raises(DropstudyError, match="channels must be positive whole numbers"):
        ConvNet(channels=(0,)).init(jax.random.key(0), img)
    with pytest.raises(DropstudyError, match="dense_width"):
        ConvNet(dense_width=0).init(jax.random.key(0), img)


@pytest.mark.parametrize(
    "kernel, shape",
    [((3, 3), (4, 8, 8, 2)), ((5,), (3, 40, 3)), ((4,), (2, 11, 2)), ((2, 3), (2, 6, 7, 1))],
)
def test_patch_conv_is_linen_conv(kernel, shape):
    """Same parameter tree, same initial values and the same outputs as nn.Conv (odd and
    even windows: "SAME" padding puts an even window's extra one after)."""
    import flax.linen as nn

    from dropstudy.models import PatchConv

    x = jax.random.normal(jax.random.key(0), shape)
    a, b = PatchConv(6, kernel), nn.Conv(6, kernel)
    va, vb = a.init(jax.random.key(1), x), b.init(jax.random.key(1), x)
    assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), va, vb))
    v = jax.tree.map(lambda u: u + 0.3 * jax.random.normal(jax.random.key(2), u.shape), va)
    np.testing.assert_allclose(a.apply(v, x), b.apply(v, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kernel, strides, padding, shape",
    [
        ((5,), (2,), ((1, 1),), (3, 40, 1)),  # the MNIST-1D baseline's first layer
        ((3,), (2,), ((1, 1),), (3, 19, 25)),  # its second, on an odd length
        ((3, 3), (2, 1), "SAME", (2, 7, 8, 2)),  # SAME with a stride: ceil(n / s) outputs
        ((3,), (2,), "SAME", (2, 8, 2)),  # an uneven total: (0, 1)
        ((4,), (3,), "SAME", (2, 10, 2)),  # (1, 2)
        ((3, 2), (2, 3), "SAME", (2, 8, 10, 1)),  # both axes strided, both uneven
        ((4,), (3,), "VALID", (2, 13, 2)),
        ((4,), (3,), "VALID", (2, 14, 2)),  # a leftover the stride skips
        ((2, 3), (1, 2), ((0, 2), (1, 0)), (2, 6, 7, 1)),
        (3, 2, 1, (2, 9, 2)),  # ints, as nn.Conv reads them: every axis, every side
        ((3, 3), 2, (1, 0), (2, 7, 7, 1)),  # an int per axis: both sides
    ],
)
def test_strided_patch_conv_is_linen_conv(kernel, strides, padding, shape):
    """Strides, "SAME", "VALID" and explicit padding, and initialisers of one's own: the same
    parameters and initial values as nn.Conv, the same output shape and values."""
    import flax.linen as nn

    from dropstudy.models import PatchConv

    inits = {
        "kernel_init": nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
        "bias_init": nn.initializers.normal(0.5),
    }
    x = jax.random.normal(jax.random.key(0), shape)
    a = PatchConv(6, kernel, strides=strides, padding=padding, **inits)
    b = nn.Conv(6, kernel, strides=strides, padding=padding, **inits)
    va, vb = a.init(jax.random.key(1), x), b.init(jax.random.key(1), x)
    assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), va, vb))
    ya, yb = a.apply(va, x), b.apply(va, x)
    assert ya.shape == yb.shape
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"strides": (0,)}, "strides must be whole numbers >= 1, 1 of them"),
        ({"strides": (1, 1)}, "strides must be whole numbers"),
        ({"strides": (1.5,)}, "strides must be whole numbers"),
        ({"kernel_size": "3"}, "kernel_size must be whole numbers"),
        ({"padding": ((1,),)}, "padding must be 'SAME', 'VALID', one"),
        ({"padding": ((1, 1), (1, 1))}, "padding must be"),
        ({"padding": "CIRCULAR"}, "padding must be"),  # nn.Conv's, not computed here
        ({"padding": -1}, "padding must be"),
        ({"padding": "VALID", "kernel_size": (9,)}, "is wider than the padded input"),
        ({"kernel_size": (3, 3)}, "a 2-D kernel takes inputs"),
    ],
)
def test_patch_conv_refuses_what_does_not_fit(kw, match):
    from dropstudy.models import PatchConv
    from dropstudy.validate import DropstudyError

    args = {"features": 2, "kernel_size": (3,), **kw}
    with pytest.raises(DropstudyError, match=match):
        PatchConv(**args).init(jax.random.key(0), jnp.zeros((1, 5, 1)))
    with pytest.raises(DropstudyError, match="a 1-D kernel takes inputs"):  # unbatched
        PatchConv(2, (3,)).init(jax.random.key(0), jnp.zeros((5, 1)))
