"""The published MNIST-1D baselines' models (experiments/baselines.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from dropstudy_experiments.baselines import ConvBaseline


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
