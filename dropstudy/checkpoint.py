"""Checkpoints for any linen model: variables in msgpack (flax.serialization), configuration
in JSON. No pickle.

A checkpoint is a directory::

    DIR/config.json         {"format": "dropstudy-checkpoint", "version": 2,
                             "model_class": "dropstudy.models.MLP", "model": {...fields},
                             "input_shape": [1, 64], "input_dtype": "float32",
                             "train": {...}, "extra": {...}, "versions": {"jax": ...},
                             "variables_sha256": "...",
                             "variable_shapes": {"params/out/kernel": [10, 10], ...}}
    DIR/variables.msgpack   flax.serialization.msgpack_serialize(variables)

``variables`` is the model's variables dict without the masks: ``"params"`` and any other
collection (a BatchNorm's ``"batch_stats"``). Loading checks the format tag, the digest (a
truncated or corrupted file is refused), and every shape against the model rebuilt from
``config.json`` (an :class:`~dropstudy.models.MLP`) or the template model the caller passes
(any other model). :func:`save` refuses what :func:`load` would refuse. Version 1
checkpoints (MLP parameters only, ``params.msgpack``) still load.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from . import masks as M
from .io import atomic_write, versions
from .models import MLP, mlp_from_config, model_class, model_config, recording_masks
from .validate import DropstudyError, check_array

FORMAT = "dropstudy-checkpoint"
VERSION = 2
MLP_CLASS = model_class(MLP())


def _shapes(tree) -> dict[str, list[int]]:
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")
    return {k: list(np.shape(v)) for k, v in sorted(flat.items())}


def _template_shapes(model: nn.Module, shape, dtype) -> dict[str, list[int]]:
    """Shapes of ``model``'s variables (without masks) for inputs of ``shape`` (traced)."""
    x = jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))
    with recording_masks():  # the layers' own draws need no rng here
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    return _shapes({k: v for k, v in variables.items() if k != M.MASKS})


def save(
    directory,
    model: nn.Module,
    variables: Any,
    *,
    example_input,
    train: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Save ``variables`` of ``model`` (any linen module) to ``directory`` (created).

    Refused, before anything is written, when the variables do not fit the model.

    Args:
      directory: the checkpoint's directory.
      model: a linen module.
      variables: the model's variables dict (masks, if present, are not saved).
      example_input: a batch like the model's inputs ``(B, ...)``; its shape (``B`` set to 1)
        and dtype are recorded so that :func:`load` can rebuild the variables' shapes.
      train: the training configuration to record, or ``None``.
      extra: anything else to record (JSON-ready), or ``None``.

    Returns:
      The directory, as a ``Path``.

    Raises:
      DropstudyError: if ``model`` is not a linen module, ``variables`` is not a variables
        dict or does not fit the model, ``example_input`` is not a numeric array, or the
        model's attributes have no stable JSON description.
    """
    if not isinstance(model, nn.Module):
        raise DropstudyError(
            f"checkpoint.save takes a linen module, got {type(model).__name__}; for an NNX "
            "model, save its state with nnx.state and orbax"
        )
    variables = {k: v for k, v in M.check_variables(variables).items() if k != M.MASKS}
    x = check_array("example_input", example_input)
    shape, dtype = [1, *x.shape[1:]], str(x.dtype)
    got, expected = _shapes(variables), _template_shapes(model, shape, dtype)
    if got != expected:
        raise DropstudyError(
            f"the variables do not fit {type(model).__name__} on inputs of shape {shape}: "
            f"{got} vs the model's {expected}"
        )
    described = model_config(model)
    text = json.dumps(described)
    if json.loads(text) != described or " at 0x" in text:
        raise DropstudyError(
            f"{type(model).__name__}'s attributes {described} have no stable description "
            "(JSON or memory addresses), so load could not check a template against them; "
            "give the model plain attributes"
        )
    blob = serialization.msgpack_serialize(jax.device_get(flax.core.unfreeze(variables)))
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": model_class(model),
        "model": described,
        "input_shape": shape,
        "input_dtype": dtype,
        "train": train or {},
        "extra": extra or {},
        "versions": versions(),
        "variables_sha256": hashlib.sha256(blob).hexdigest(),
        "variable_shapes": got,
    }
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / "variables.msgpack", blob)
    atomic_write(d / "config.json", json.dumps(config, indent=2, sort_keys=True).encode())
    return d


def _read_config(d: Path) -> dict:
    cfg_path = d / "config.json"
    if not d.is_dir():
        raise DropstudyError(
            f"checkpoint {d} is not a directory (expected config.json + variables.msgpack)"
        )
    if not cfg_path.is_file():
        raise DropstudyError(f"checkpoint {d} is missing config.json: not a dropstudy checkpoint")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DropstudyError(f"{cfg_path} is not valid JSON ({e}): corrupted checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DropstudyError(f"{cfg_path} is not a dropstudy checkpoint (no format tag {FORMAT!r})")
    if config.get("version") not in (1, VERSION):
        raise DropstudyError(
            f"{cfg_path}: checkpoint version {config.get('version')} is not 1 or {VERSION}"
        )
    return config


def _upgrade_v1(config: dict, cfg_path: Path) -> dict:
    """A version-1 config (MLP parameters only) in version 2's terms."""
    n_in = config.get("extra", {}).get("n_inputs")
    if not isinstance(n_in, int):
        raise DropstudyError(f"{cfg_path} lacks extra.n_inputs: cannot rebuild the model")
    return {
        **config,
        "model_class": MLP_CLASS,
        "input_shape": [1, n_in],
        "input_dtype": config.get("model", {}).get("dtype", "float32"),
        "variables_sha256": config.get("params_sha256"),
        "variable_shapes": {f"params/{k}": v for k, v in config.get("param_shapes", {}).items()},
    }


def load(
    directory, model: nn.Module | None = None, *, strict: bool = True
) -> tuple[nn.Module, dict, dict]:
    """Load a checkpoint, with clear errors for anything malformed.

    An :class:`~dropstudy.models.MLP` is rebuilt from ``config.json``. Any other model needs
    its template: ``load(dir, model=MyNet(...))``, whose class and attributes must match the
    saved ones (the variables' shapes are then rebuilt from the recorded input shape). A
    class of the same name from another module (saved from a script's ``__main__``, loaded
    from an importable module) is accepted with a warning when the attributes match.

    Args:
      directory: the checkpoint's directory.
      model: the template of a model that is not an MLP, or ``None``.
      strict: ``False`` skips the class and attribute check knowingly (the variables'
        shapes must still fit the template).

    Returns:
      ``(model, variables, config)``: the model, its variables dict (JAX arrays) and the
      contents of ``config.json``.

    Raises:
      DropstudyError: if a file is missing, unreadable or fails its digest, the format or
        version is not dropstudy's, the template does not match the saved model (or is
        missing for a model that is not an MLP), or the variables' shapes do not fit.
    """
    d = Path(directory)
    config = _read_config(d)
    cfg_path = d / "config.json"
    v1 = config["version"] == 1
    if v1:
        config = _upgrade_v1(config, cfg_path)
    blob_path = d / ("params.msgpack" if v1 else "variables.msgpack")
    if not blob_path.is_file():
        raise DropstudyError(
            f"checkpoint {d} is missing {blob_path.name}: not a dropstudy checkpoint"
        )
    blob = blob_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config.get("variables_sha256"):
        raise DropstudyError(
            f"{blob_path} does not match the digest in config.json: the file is truncated or "
            "corrupted; re-save the model"
        )
    saved_class = config.get("model_class")
    whose = "the model in config.json" if model is None else "the template"
    if model is None:
        if saved_class != MLP_CLASS:
            raise DropstudyError(
                f"{d} holds a {saved_class} model, which only its own code can rebuild: "
                "load(dir, model=<a template of that model>); dropstudy compare evaluates "
                "MLP checkpoints only"
            )
        model = mlp_from_config(config["model"])
    elif strict:
        _check_template(d, model, saved_class, config.get("model"))
    expected = _template_shapes(model, config["input_shape"], config["input_dtype"])
    if expected != config.get("variable_shapes"):
        raise DropstudyError(
            f"{d}: the saved variable shapes {config.get('variable_shapes')} do not fit "
            f"{whose} ({expected})"
        )
    try:
        state = serialization.msgpack_restore(blob)
    except Exception as e:
        raise DropstudyError(
            f"{blob_path} could not be decoded ({type(e).__name__}: {e})"
        ) from None
    variables = {"params": state} if v1 else state
    if not isinstance(variables, dict) or _shapes(variables) != expected:
        raise DropstudyError(f"{blob_path} holds variables of another architecture")
    return model, jax.tree.map(jnp.asarray, variables), config


def _check_template(d: Path, model: nn.Module, saved_class, saved_model) -> None:
    """Refuse a template of another class or attributes; a class of the same name from
    another module passes with a warning."""
    cls, described = model_class(model), model_config(model)
    same_name = str(saved_class).rsplit(".", 1)[-1] == cls.rsplit(".", 1)[-1]
    if described != saved_model or not same_name:
        raise DropstudyError(
            f"{d}: the template {cls} {described} is not the saved {saved_class} "
            f"{saved_model}; pass a template of that class and attributes, or "
            "load(..., strict=False) to load the variables into this template anyway (their "
            "shapes must fit)"
        )
    if cls != saved_class:
        warnings.warn(
            f"{d}: loading a checkpoint saved from {saved_class} into {cls} (same class name "
            "and attributes, another module)",
            stacklevel=3,
        )


def check_compatible(config: dict, model: nn.Module, n_inputs: int, n_out: int, source: str):
    """A loaded classifier must fit the data it is evaluated on (input width and classes).

    Args:
      config: the checkpoint's configuration, as :func:`load` returns it.
      model: the loaded model.
      n_inputs: the data's number of features.
      n_out: the data's number of classes.
      source: names the checkpoint in the messages.

    Raises:
      DropstudyError: if the checkpoint's input shape is not ``[n_inputs]``, or the model's
        ``n_out`` is not the data's number of classes.
    """
    saved = config["input_shape"][1:]
    if saved != [n_inputs]:
        raise DropstudyError(
            f"{source}: the checkpoint takes inputs of shape {saved}, the data have "
            f"{n_inputs} features"
        )
    if getattr(model, "n_out", n_out) != n_out:
        raise DropstudyError(
            f"{source}: the model has {model.n_out} outputs, the data {n_out} classes"
        )
