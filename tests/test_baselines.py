"""The published MNIST-1D baselines' models (experiments/baselines.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from dropstudy_experiments.baselines import ConvBaseline


class _LinenCNN(nn.Module):
    """ConvBaseline as nn.Conv layers: the reference for its parameters and initial values."""

    @nn.compact
    def __call__(self, x):
        from dropstudy.models import MaskedDropout, TorchDense

        def torch_uniform(fan_in):  # PyTorch's default bias: uniform in +-1/sqrt(fan in)
            bound = 1.0 / np.sqrt(fan_in)
            return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                key, shape, dtype, -bound, bound
            )

        h, c_in = MaskedDropout(0.0)(x)[..., None], 1
        for k in (5, 3, 3):
            conv = nn.Conv(
                25, (k,), strides=(2,), padding=((1, 1),),
                kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                bias_init=torch_uniform(k * c_in),
            )  # fmt: skip
            h, c_in = jax.nn.relu(conv(h)), 25
        return TorchDense(10)(h.reshape(h.shape[0], -1))


def test_the_cnn_starts_where_its_linen_conv_form_starts():
    """The same parameter tree and bitwise the same initial values as the CNN written with
    nn.Conv, and its outputs to float rounding."""
    x = jax.random.normal(jax.random.key(0), (4, 40))
    a, b = ConvBaseline(25).init(jax.random.key(1), x), _LinenCNN().init(jax.random.key(1), x)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b))
    np.testing.assert_allclose(
        ConvBaseline(25).apply(a, x), _LinenCNN().apply(b, x), rtol=1e-5, atol=1e-5
    )


def test_the_cnn_is_the_repositorys_strided_conv1d_stack():
    """Three 1-D convolutions (kernels 5, 3, 3; stride 2; padding 1) as nn.Conv computes them
    on the same parameters, then a linear head on 25 x 5 features: the repository's CNN."""
    m = ConvBaseline(25)
    x = jax.random.normal(jax.random.key(0), (4, 40))
    v = m.init(jax.random.key(1), x)
    p = v["params"]
    shapes = [p[f"Conv_{i}"]["kernel"].shape for i in range(3)]
    assert shapes == [(5, 1, 25), (3, 25, 25), (3, 25, 25)]
    assert p["TorchDense_0"]["kernel"].shape == (125, 10)
    h = x[..., None]
    for i, k in enumerate((5, 3, 3)):
        conv = nn.Conv(25, (k,), strides=(2,), padding=((1, 1),))
        h = jax.nn.relu(conv.apply({"params": p[f"Conv_{i}"]}, h))
    d = p["TorchDense_0"]
    want = h.reshape(4, -1) @ d["kernel"] + d["bias"]
    np.testing.assert_allclose(m.apply(v, x), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(want, 0)
    # PyTorch's initialisation: every kernel entry within +-1/sqrt(fan in)
    for i, fan_in in enumerate((5, 75, 75)):
        assert float(jnp.max(jnp.abs(p[f"Conv_{i}"]["kernel"]))) <= 1 / np.sqrt(fan_in)
