"""Checkpoints: parameters in msgpack (flax.serialization), configuration in JSON. No pickle.

A checkpoint is a directory::

    DIR/config.json     {"format": "dropstudy-checkpoint", "version": 1, "model": {...MLP fields},
                         "train": {...}, "extra": {...}, "versions": {"jax": ...},
                         "params_sha256": "...", "param_shapes": {"out/kernel": [10, 10], ...}}
    DIR/params.msgpack  flax.serialization.to_bytes(params)

Loading checks the format tag, the digest (a truncated or corrupted file is refused), and
every parameter shape against the architecture in ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from .models import MLP
from .validate import DropstudyError

FORMAT = "dropstudy-checkpoint"
VERSION = 1


def versions() -> dict[str, str]:
    """Library versions recorded in checkpoints and results files."""
    return {
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }


def model_to_dict(model: MLP) -> dict:
    out = {}
    for f in fields(MLP):
        if f.name in ("parent", "name"):
            continue
        v = getattr(model, f.name)
        out[f.name] = (
            jnp.dtype(v).name
            if f.name == "dtype"
            else (list(v) if isinstance(v, (tuple, list)) else v)
        )
    return out


def model_from_dict(d: dict) -> MLP:
    known = {f.name for f in fields(MLP)} - {"parent", "name"}
    unknown = set(d) - known
    if unknown:
        raise DropstudyError(f"checkpoint model config has unknown fields {sorted(unknown)}")
    kw = dict(d)
    for k in ("hidden", "rate"):
        if isinstance(kw.get(k), list):
            kw[k] = tuple(kw[k])
    if "dtype" in kw:
        kw["dtype"] = jnp.dtype(kw["dtype"])
    return MLP(**kw).validate()


def _shapes(params) -> dict[str, list[int]]:
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
    return {k: list(np.shape(v)) for k, v in sorted(flat.items())}


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(
    directory,
    model: MLP,
    params: Any,
    train: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Save ``params`` of ``model`` with its configuration to ``directory`` (created)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    blob = serialization.to_bytes(jax.device_get(params))
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_to_dict(model),
        "train": train or {},
        "extra": extra or {},
        "versions": versions(),
        "params_sha256": hashlib.sha256(blob).hexdigest(),
        "param_shapes": _shapes(params),
    }
    atomic_write(d / "params.msgpack", blob)
    atomic_write(d / "config.json", json.dumps(config, indent=2, sort_keys=True).encode())
    return d


def load(directory) -> tuple[MLP, Any, dict]:
    """Load a checkpoint: ``(model, params, config)``; clear errors for anything malformed."""
    d = Path(directory)
    cfg_path, blob_path = d / "config.json", d / "params.msgpack"
    if not d.is_dir():
        raise DropstudyError(
            f"checkpoint {d} is not a directory (expected config.json + params.msgpack)"
        )
    for p in (cfg_path, blob_path):
        if not p.is_file():
            raise DropstudyError(f"checkpoint {d} is missing {p.name}: not a dropstudy checkpoint")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DropstudyError(f"{cfg_path} is not valid JSON ({e}): corrupted checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DropstudyError(f"{cfg_path} is not a dropstudy checkpoint (no format tag {FORMAT!r})")
    if config.get("version") != VERSION:
        raise DropstudyError(
            f"{cfg_path}: checkpoint version {config.get('version')} is not {VERSION}"
        )
    blob = blob_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config.get("params_sha256"):
        raise DropstudyError(
            f"{blob_path} does not match the digest in config.json: the file is truncated or "
            "corrupted; re-save the model"
        )
    model = model_from_dict(config["model"])
    n_in = config.get("extra", {}).get("n_inputs")
    if not isinstance(n_in, int):
        raise DropstudyError(f"{cfg_path} lacks extra.n_inputs: cannot rebuild the model")
    template = model.init(jax.random.key(0), jnp.zeros((1, n_in), model.dtype))["params"]
    expected = _shapes(template)
    if expected != config.get("param_shapes"):
        raise DropstudyError(
            f"{d}: parameter shapes {config.get('param_shapes')} do not fit the architecture "
            f"in config.json ({expected})"
        )
    try:
        params = serialization.from_bytes(template, blob)
    except Exception as e:
        raise DropstudyError(
            f"{blob_path} could not be decoded ({type(e).__name__}: {e})"
        ) from None
    if _shapes(params) != expected:
        raise DropstudyError(f"{blob_path} holds parameters of another architecture")
    return model, params, config


def check_compatible(config: dict, model: MLP, n_inputs: int, n_out: int, source: str) -> None:
    """A loaded model must fit the data it is evaluated on (input width and classes)."""
    if config["extra"]["n_inputs"] != n_inputs:
        raise DropstudyError(
            f"{source}: the checkpoint takes {config['extra']['n_inputs']} inputs, the data "
            f"have {n_inputs} features"
        )
    if model.n_out != n_out:
        raise DropstudyError(
            f"{source}: the model has {model.n_out} outputs, the data {n_out} classes"
        )
