import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy.models import MLP, ConvNet
from dropstudy.validate import DropstudyError


def _spec(model, d_in=5):
    return M.init(model, jax.random.key(0), jnp.ones((2, d_in)))


def test_spec_reads_names_shapes_and_keep():
    model = MLP(hidden=(3, 4), n_out=2, rate=(0.25, 0.5), input_rate=0.1)
    _, spec = _spec(model)
    # in the order the layers run: the input's dropout first
    assert spec.names == ("drop_input", "drop_0", "drop_1") == model.dropout_layers()
    assert spec.shapes == ((5,), (3,), (4,))
    np.testing.assert_allclose(spec.layer_keep(0), 0.9)
    np.testing.assert_allclose(spec.layer_keep(1), 0.75)
    np.testing.assert_allclose(spec.layer_keep(2), 0.5)
    assert M.mask_spec(model, jnp.ones((2, 5))) == spec  # traced only, same spec
    assert spec.n_droppable == 12
    assert hash(spec) == hash(
        _spec(MLP(hidden=(3, 4), n_out=2, rate=(0.25, 0.5), input_rate=0.1))[1]
    )


def test_rate_zero_layers_are_not_droppable():
    _, spec = _spec(MLP(hidden=(3, 4), n_out=2, rate=(0.0, 0.5)))
    assert spec.n_droppable == 4
    assert all(spec.keep[u] == 0.5 for u in spec.droppable)


def test_same_key_same_masks_different_key_different_masks():
    _, spec = _spec(MLP(hidden=(50, 50)))
    a = M.sample_masks(spec, jax.random.key(1), (8,))
    b = M.sample_masks(spec, jax.random.key(1), (8,))
    c = M.sample_masks(spec, jax.random.key(2), (8,))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(spec.flatten(a), spec.flatten(c))
    # per-example masks differ across the batch, shared masks have no batch axis
    flat = np.asarray(spec.flatten(a))
    assert flat.shape == (8, spec.n_units)
    assert len({row.tobytes() for row in flat}) == 8
    assert np.asarray(spec.flatten(M.sample_masks(spec, jax.random.key(1)))).shape == (
        spec.n_units,
    )


def test_sampled_masks_have_keep_frequency():
    _, spec = _spec(MLP(hidden=(200,), rate=0.3))
    flat = np.asarray(spec.flatten(M.sample_masks(spec, jax.random.key(3), (500,))))
    units = M.layer_units(spec, "drop_0")
    freq = flat[:, units].mean()
    se = np.sqrt(0.7 * 0.3 / flat[:, units].size)
    assert abs(freq - 0.7) < 5 * se
    assert np.all(flat[:, M.layer_units(spec, "drop_input")] == 1)  # input rate 0: always kept


def test_flatten_unflatten_roundtrip():
    _, spec = _spec(MLP(hidden=(3, 4), input_rate=0.2))
    m = M.sample_masks(spec, jax.random.key(0), (6,))
    back = spec.unflatten(spec.flatten(m))
    assert jax.tree.structure(back) == jax.tree.structure(m)
    for a, b in zip(jax.tree.leaves(m), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)


def test_enumeration_every_mask_once_probabilities_sum_to_one():
    _, spec = _spec(MLP(hidden=(3, 2), n_out=2, rate=(0.3, 0.6), input_rate=0.0))
    masks, probs = M.all_masks(spec, jnp.float64 if jax.config.x64_enabled else jnp.float32)
    flat = np.asarray(spec.flatten(masks))[:, list(spec.droppable)]
    assert flat.shape == (32, 5)
    assert len({tuple(r) for r in flat}) == 32
    np.testing.assert_allclose(np.sum(probs), 1.0, rtol=1e-6)
    keep = np.asarray(spec.keep)[list(spec.droppable)]
    for row, p in zip(flat, np.asarray(probs)):
        np.testing.assert_allclose(p, np.prod(np.where(row == 1, keep, 1 - keep)), rtol=1e-6)
    # brute-force: every binary vector appears
    assert {tuple(r) for r in flat} == set(itertools.product([0.0, 1.0], repeat=5))


def test_enumeration_refuses_too_many_units_with_count():
    _, spec = _spec(MLP(hidden=(20, 10)))
    with pytest.raises(DropstudyError, match=r"2\^30 = 1,073,741,824 subnetworks.*Monte-Carlo"):
        M.enumerate_masks(spec, jnp.arange(3))
    with pytest.raises(DropstudyError, match="max_units"):
        M.check_enumerable(spec, max_units=10)


def test_mask_of_wrong_shape_is_refused():
    model = MLP(hidden=(3,), n_out=2)
    params, spec = _spec(model)
    bad = spec.unflatten(jnp.ones(spec.n_units))
    bad["drop_0"]["mask"] = jnp.ones(4)
    with pytest.raises(DropstudyError, match=r"drop_0.*shape \(4,\).*expected \(3,\)"):
        M.apply(model, params, jnp.ones((2, 5)), bad)


def test_layers_listed_in_call_order_past_ten():
    """Sorted names would put drop_10 before drop_2 and the input last."""
    model = MLP(hidden=(2,) * 12, n_out=2, rate=0.5, input_rate=0.2)
    _, spec = _spec(model)
    assert spec.names == model.dropout_layers()
    assert spec.names[:3] == ("drop_input", "drop_0", "drop_1")
    assert M.layer_units(spec, "drop_input").tolist() == list(range(5))


def test_no_mask_given_is_weight_scaling():
    model = MLP(hidden=(3,), n_out=2, rate=0.5, input_rate=0.2)
    variables, spec = _spec(model)
    x = jax.random.normal(jax.random.key(3), (2, 5))
    np.testing.assert_array_equal(
        model.apply(variables, x), M.apply(model, variables, x, M.expected_masks(spec))
    )
    sub = M.sample_masks(spec, jax.random.key(4))
    assert not np.allclose(model.apply(variables, x), M.apply(model, variables, x, sub))


def test_ablation_is_a_zero_in_the_expected_mask():
    model = MLP(hidden=(4,), n_out=3, rate=0.5)
    params, spec = _spec(model)
    x = jax.random.normal(jax.random.key(1), (7, 5))
    unit = int(M.layer_units(spec, "drop_0")[2])
    ablated = M.ablate(M.expected_masks(spec), spec, jnp.array([unit]))
    out = M.apply(model, params, x, ablated)
    # by hand: hidden activations with unit 2 zeroed (inverted: expected mask is identity)
    p = params["params"]
    h = jax.nn.relu(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
    h = h.at[:, 2].set(0)
    ref = h @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_conv_net_masks_whole_channels():
    model = ConvNet(channels=(4,), dense_width=6)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    params, spec = M.init(model, jax.random.key(1), x)
    assert spec.shapes[0] == (4,)  # one mask entry per channel
    p = params["params"]

    def conv(m):
        z = jax.lax.conv_general_dilated(
            x,
            p["Conv_0"]["kernel"],
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return jax.nn.relu(z + p["Conv_0"]["bias"]) * m

    m = jnp.array([1.0, 0.0, 1.0, 0.0])
    masks = M.expected_masks(spec)
    masks["MaskedDropout_0"]["mask"] = m
    masks["MaskedDropout_1"]["mask"] = jnp.ones(6)
    got = M.apply(model, params, x, masks)
    h = conv(m / 0.75).reshape(3, -1)
    h = jax.nn.relu(h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]) / 0.5
    ref = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # per-example channel masks broadcast over height and width
    per = M.sample_masks(spec, jax.random.key(2), (3,))
    assert M.apply(model, params, x, per).shape == (3, 10)


@pytest.mark.parametrize("batch_shape", [(), (3,)])
def test_masks_with_droppable_runs_apart_are_jax_uniform_at_those_units(batch_shape):
    """Droppable units in three separate runs (a layer at rate 0 between droppable ones,
    inputs kept): each mask is jax.random.uniform's draw at the droppable units and 1
    elsewhere, so the runs are stitched in place."""
    model = MLP(hidden=(4, 3, 5), n_out=2, rate=(0.5, 0.0, 0.3), input_rate=0.0)
    _, spec = _spec(model)
    cols = np.asarray(spec.droppable)
    assert len(np.flatnonzero(np.diff(cols) != 1)) >= 1  # not one contiguous run
    for seed in range(3):
        key = jax.random.key(seed)
        got = np.asarray(spec.flatten(M.sample_masks(spec, key, batch_shape)))
        u = np.asarray(jax.random.uniform(key, (*batch_shape, spec.n_units)))
        keep = np.asarray(spec.keep)
        want = np.where(keep < 1.0, (u < keep).astype(np.float32), 1.0)
        np.testing.assert_array_equal(got, want)
