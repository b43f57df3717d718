import hashlib
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from dropstudy import checkpoint
from dropstudy.models import MLP
from dropstudy.validate import DropstudyError

X = jnp.ones((2, 6))


@pytest.fixture
def saved(tmp_path):
    model = MLP(hidden=(4, 3), n_out=5, rate=(0.2, 0.5), input_rate=0.1)
    variables = {"params": model.init(jax.random.key(0), X)["params"]}
    d = checkpoint.save(tmp_path / "ck", model, variables, example_input=X, train={"steps": 3})
    return d, model, variables


def test_roundtrip(saved):
    d, model, variables = saved
    m2, v2, cfg = checkpoint.load(d)
    assert m2 == model
    assert jax.tree.structure(v2) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(v2)):
        np.testing.assert_array_equal(a, b)
    assert cfg["versions"]["jax"] == jax.__version__
    assert cfg["input_shape"] == [1, 6] and cfg["model_class"] == checkpoint.MLP_CLASS
    assert not list(d.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_version_1_checkpoints_still_load(tmp_path):
    """The format written before version 2: MLP params only, extra.n_inputs."""
    model = MLP(hidden=(4,), n_out=3, rate=0.5)
    params = model.init(jax.random.key(1), X)["params"]
    blob = serialization.to_bytes(params)
    d = tmp_path / "v1"
    d.mkdir()
    (d / "params.msgpack").write_bytes(blob)
    config = {
        "format": "dropstudy-checkpoint",
        "version": 1,
        "model": {
            "hidden": [4],
            "n_out": 3,
            "activation": "relu",
            "rate": 0.5,
            "input_rate": 0.0,
            "convention": "inverted",
            "dtype": "float32",
            "weight_init": "lecun",
        },
        "train": {},
        "extra": {"n_inputs": 6},
        "params_sha256": hashlib.sha256(blob).hexdigest(),
        "param_shapes": {
            "dense_0/bias": [4],
            "dense_0/kernel": [6, 4],
            "out/bias": [3],
            "out/kernel": [4, 3],
        },
    }
    (d / "config.json").write_text(json.dumps(config))
    m2, v2, _ = checkpoint.load(d)
    assert m2 == model
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(v2["params"])):
        np.testing.assert_array_equal(a, b)


def test_save_refuses_what_load_would_refuse(tmp_path, saved):
    _, model, variables = saved
    with pytest.raises(DropstudyError, match="do not fit MLP on inputs of shape"):
        checkpoint.save(tmp_path / "bad", model, variables, example_input=jnp.ones((2, 7)))
    with pytest.raises(DropstudyError, match="variables dict"):
        checkpoint.save(tmp_path / "bad", model, variables["params"], example_input=X)
    assert not (tmp_path / "bad").exists()


def test_other_models_need_a_matching_template(tmp_path):
    from dropstudy.models import ConvNet

    model = ConvNet(channels=(2,), n_out=3, dense_width=4)
    x = jnp.ones((2, 8, 8, 1))
    v = {"params": model.init(jax.random.key(0), x)["params"]}
    d = checkpoint.save(tmp_path / "conv", model, v, example_input=x)
    with pytest.raises(DropstudyError, match="only its own code can rebuild"):
        checkpoint.load(d)
    with pytest.raises(DropstudyError, match="is not the saved"):
        checkpoint.load(d, model=ConvNet(channels=(3,), n_out=3, dense_width=4))
    _, v2, _ = checkpoint.load(d, model=model)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v2)):
        np.testing.assert_array_equal(a, b)


def test_truncated_variables(saved):
    d = saved[0]
    blob = (d / "variables.msgpack").read_bytes()
    (d / "variables.msgpack").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DropstudyError, match="truncated or corrupted"):
        checkpoint.load(d)


def test_flipped_byte(saved):
    d = saved[0]
    blob = bytearray((d / "variables.msgpack").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (d / "variables.msgpack").write_bytes(bytes(blob))
    with pytest.raises(DropstudyError, match="digest"):
        checkpoint.load(d)


def test_other_architecture(saved, tmp_path):
    d = saved[0]
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["hidden"] = [4, 4]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DropstudyError, match="do not fit the model"):
        checkpoint.load(d)


def test_not_a_checkpoint(tmp_path, saved):
    with pytest.raises(DropstudyError, match="not a directory"):
        checkpoint.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DropstudyError, match="missing config.json"):
        checkpoint.load(tmp_path / "empty")
    d = saved[0]
    (d / "config.json").write_text("{not json")
    with pytest.raises(DropstudyError, match="not valid JSON"):
        checkpoint.load(d)
    (d / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(DropstudyError, match="not a dropstudy checkpoint"):
        checkpoint.load(d)


def test_checkpoint_must_fit_data(saved):
    from dropstudy_experiments.cli import main

    assert main(["compare", "--checkpoint", str(saved[0]), "--samples", "1"]) == 2


def _net_class(module: str, name: str = "Net"):
    """A user's model class as another script or module defines it."""
    from dropstudy.models import MaskedDropout

    class Net(nn.Module):
        width: int = 4

        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(MaskedDropout(0.5)(nn.relu(nn.Dense(self.width)(x))))

    Net.__module__, Net.__name__, Net.__qualname__ = module, name, name
    return Net


def test_a_class_of_the_same_name_from_another_module_loads_with_a_warning(tmp_path):
    saved_from = _net_class("__main__")
    v = {"params": saved_from().init(jax.random.key(0), X)["params"]}
    d = checkpoint.save(tmp_path / "n", saved_from(), v, example_input=X)
    with pytest.warns(UserWarning, match="saved from __main__.Net into mymodels.Net"):
        _, v2, _ = checkpoint.load(d, model=_net_class("mymodels")())
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v2)):
        np.testing.assert_array_equal(a, b)
    # other attributes, or another class name: refused, naming strict=False
    with pytest.raises(DropstudyError, match="strict=False"):
        checkpoint.load(d, model=_net_class("mymodels")(width=5))
    renamed = _net_class("mymodels", name="Renamed")()
    with pytest.raises(DropstudyError, match="strict=False"):
        checkpoint.load(d, model=renamed)
    # strict=False loads knowingly into a class of another name; shapes must still fit
    _, v3, _ = checkpoint.load(d, model=renamed, strict=False)
    np.testing.assert_array_equal(
        v3["params"]["Dense_0"]["kernel"], v["params"]["Dense_0"]["kernel"]
    )
    with pytest.raises(DropstudyError, match="do not fit the template"):
        checkpoint.load(d, model=_net_class("mymodels")(width=5), strict=False)
