"""Monte-Carlo that computes only the kept units: same subnetworks as the dense pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import fast_mc as FM
from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy import sharding as S
from dropstudy.models import MLP, ConvNet
from dropstudy.validate import DropstudyError

X = jax.random.normal(jax.random.key(0), (7, 6))


@pytest.fixture
def gathered_spy(monkeypatch):
    seen: list[bool] = []
    real = FM.mc_average

    def spy(*args, **kw):
        seen.append(True)
        return real(*args, **kw)

    monkeypatch.setattr(FM, "mc_average", spy)
    return seen


def _compare(model, spy, task="classification", k=40, mesh=None):
    """The gathered MC against the dense one; ``spy`` (the ``gathered_spy`` fixture) shows
    which ran, so a gathered call that fell through to the dense path fails."""
    v, _ = M.init(model, jax.random.key(1), X)
    key = jax.random.key(2)
    spy.clear()
    dense = P.mc(model, v, X, key=key, k=k, task=task, method="dense")
    assert spy == []
    fast = P.mc(model, v, X, key=key, k=k, task=task, method="gathered", mesh=mesh)
    assert spy == [True]
    for a, b in zip(
        (fast.arithmetic, fast.log_geometric, fast.mean, fast.var),
        (dense.arithmetic, dense.log_geometric, dense.mean, dense.var),
        strict=True,
    ):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        MLP(hidden=(16, 16), n_out=3, rate=0.5),  # first product shared
        MLP(hidden=(16, 8), n_out=3, rate=(0.3, 0.6), input_rate=0.2),  # input gathered
        MLP(hidden=(16, 12), n_out=3, rate=(0.0, 0.5), activation="tanh"),  # a layer kept
        MLP(hidden=(9,), n_out=4, rate=0.5, convention="standard"),
    ],
)
def test_gathered_mc_is_the_dense_mc(model, gathered_spy):
    _compare(model, gathered_spy)


def test_gathered_mc_regression(gathered_spy):
    model = MLP(hidden=(16, 16), n_out=2, rate=0.5, input_rate=0.1)
    _compare(model, gathered_spy, task="regression")


def test_subnetworks_past_the_bound_are_added_by_the_dense_pass(monkeypatch, gathered_spy):
    """With bounds far below the kept counts most subnetworks overflow; the dense pass adds
    them, on one device and dealt over a mesh."""
    monkeypatch.setattr(FM, "Z_BOUND", -3.0)
    model = MLP(hidden=(16, 16), n_out=3, rate=0.5, input_rate=0.2)
    v, spec = M.init(model, jax.random.key(1), X)
    *_, over = FM.mc_stream(
        model, spec, task="classification", k=40, variables=v, x=X, key=jax.random.key(2)
    )
    assert 0 < int(np.sum(over)) < 40
    _compare(model, gathered_spy)
    _compare(model, gathered_spy, mesh=S.mesh())


def test_bounds_cover_the_binomial_count():
    model = MLP(hidden=(512, 8), rate=(0.5, 0.0), input_rate=0.2)
    _, spec = M.init(model, jax.random.key(0), jnp.zeros((1, 64)))
    b_in, b0, b1 = FM.bounds(spec)
    assert b1 is None  # nothing droppable: every unit used, no gather
    assert b0 == 304  # 256 + 4 * sqrt(128) = 301.3, up to a multiple of 8
    assert b_in == 64  # 51.2 + 4 * 3.2 = 64: capped at the layer width


def test_auto_takes_the_gathered_path_for_wide_mlps(gathered_spy):
    key = jax.random.key(0)
    wide = MLP(hidden=(P.GATHER_MIN_WIDTH, 8), n_out=3)
    narrow = MLP(hidden=(P.GATHER_MIN_WIDTH - 1, 8), n_out=3)
    for model, chunk, taken in ((wide, None, 1), (wide, 5, 0), (narrow, None, 0)):
        v, _ = M.init(model, jax.random.key(1), X)
        P.mc(model, v, X, key=key, k=10, chunk=chunk)
        assert len(gathered_spy) == taken
        gathered_spy.clear()


def test_gathered_refuses_what_it_cannot_do():
    model = MLP(hidden=(16,), n_out=3)
    v, _ = M.init(model, jax.random.key(1), X)
    with pytest.raises(DropstudyError, match="chunk"):
        P.mc(model, v, X, key=jax.random.key(0), k=4, method="gathered", chunk=2)
    conv = ConvNet(channels=(2,), dense_width=4)
    xc = jnp.zeros((2, 8, 8, 1))
    vc, _ = M.init(conv, jax.random.key(1), xc)
    with pytest.raises(DropstudyError, match="MLP"):
        P.mc(conv, vc, xc, key=jax.random.key(0), k=4, method="gathered")
    with pytest.raises(DropstudyError, match="method"):
        P.mc(model, v, X, key=jax.random.key(0), k=4, method="sparse")
