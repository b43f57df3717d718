import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import checkpoint
from dropstudy.models import MLP
from dropstudy.validate import DropstudyError


@pytest.fixture
def saved(tmp_path):
    model = MLP(hidden=(4, 3), n_out=5, rate=(0.2, 0.5), input_rate=0.1)
    params = model.init(jax.random.key(0), jnp.ones((1, 6)))["params"]
    d = checkpoint.save(tmp_path / "ck", model, params, train={"steps": 3}, extra={"n_inputs": 6})
    return d, model, params


def test_roundtrip(saved):
    d, model, params = saved
    m2, p2, cfg = checkpoint.load(d)
    assert m2 == model
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(a, b)
    assert cfg["versions"]["jax"] == jax.__version__
    assert not list(d.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_truncated_params(saved):
    d = saved[0]
    blob = (d / "params.msgpack").read_bytes()
    (d / "params.msgpack").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DropstudyError, match="truncated or corrupted"):
        checkpoint.load(d)


def test_flipped_byte(saved):
    d = saved[0]
    blob = bytearray((d / "params.msgpack").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (d / "params.msgpack").write_bytes(bytes(blob))
    with pytest.raises(DropstudyError, match="digest"):
        checkpoint.load(d)


def test_other_architecture(saved, tmp_path):
    d = saved[0]
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["hidden"] = [4, 4]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DropstudyError, match="do not fit the architecture"):
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
    from dropstudy.cli import main

    assert main(["compare", "--checkpoint", str(saved[0]), "--samples", "1"]) == 2
