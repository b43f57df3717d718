"""The seed axis and the mask axis over a device mesh.

The same computations as :func:`dropstudy.train.train_seeds`, :func:`dropstudy.predict.mc`
and :func:`dropstudy.predict.exact`, spread over the devices of a 1-D mesh: seeds are
sharded (each device trains its share, GSPMD partitions the vmapped scan), and subnetworks
are dealt out in chunks (each device reduces its chunks, then one ``psum``). Works the same
on 8 GPUs, a TPU slice, or several hosts after ``jax.distributed.initialize()`` (then
``jax.devices()`` lists every host's devices and the mesh spans them).

Results equal the single-device ones up to float summation order.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import masks as M
from . import predict as PR
from .train import TrainConfig, _check_data, check_diverged, make_train
from .validate import DropstudyError, check_positive_int


def mesh(axis: str = "d", devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices, every host's)."""
    devices = list(devices if devices is not None else jax.devices())
    # Auto axes: XLA partitions the vmapped training loop itself (GSPMD).
    return jax.make_mesh((len(devices),), (axis,), axis_types=(AxisType.Auto,), devices=devices)


def train_seeds_sharded(
    model: nn.Module, keys: jax.Array, x, y, cfg: TrainConfig, mesh: Mesh
) -> tuple[Any, Any]:
    """:func:`~dropstudy.train.train_seeds` with the seed axis sharded over ``mesh``.

    ``keys (S,)``: S is padded up to a multiple of the device count (the padding seeds are
    trained and dropped). Returns parameters and history with a leading axis of S.
    """
    (axis,) = mesh.axis_names
    x, y = _check_data(x, y, cfg)
    spec = M.mask_spec(model, x)
    s = keys.shape[0]
    n_dev = mesh.shape[axis]
    pad = (-s) % n_dev
    if pad:
        keys = jnp.concatenate([keys, keys[:pad]])
    f = jax.vmap(make_train(model, spec, cfg), in_axes=(0, None, None))
    sharded = NamedSharding(mesh, P(axis))
    rep = NamedSharding(mesh, P())
    run = jax.jit(f, in_shardings=(sharded, rep, rep), out_shardings=sharded)
    params, hist = run(jax.device_put(keys, sharded), x, y)
    params, hist = jax.tree.map(lambda a: a[:s], (params, hist))
    check_diverged(hist.loss, list(range(s)), model, cfg)
    return params, hist


def average_sharded(
    model: nn.Module,
    params: Any,
    x,
    mesh: Mesh,
    *,
    source: str,
    k: int | None = None,
    key: jax.Array | None = None,
    task: str = "classification",
    chunk: int | None = None,
    max_units: int = M.MAX_EXACT_UNITS,
) -> PR.Average:
    """MC (``source="mc"``, ``k`` subnetworks from ``key``) or exact (``source="exact"``)
    averaging with the subnetworks dealt out over the devices of ``mesh``."""
    (axis,) = mesh.axis_names
    x = PR._check_inputs(model, x, task)
    spec = M.mask_spec(model, x)
    if source == "mc":
        if key is None:
            raise DropstudyError("source='mc' needs a key")
        total = check_positive_int("k (number of Monte-Carlo samples)", k)
    elif source == "exact":
        total = 2 ** M.check_enumerable(spec, max_units)
        key = jax.random.key(0)
    else:
        raise DropstudyError(f"unknown source {source!r}; choose mc or exact")
    chunk = PR.resolve_chunk(model, params, x, spec, total, chunk)
    n_dev = mesh.shape[axis]

    def local(params, x, key):
        s1, s2 = PR.partial_sums(
            model, spec, task, source, total, chunk, n_dev, params, x, key, jax.lax.axis_index(axis)
        )
        return jax.lax.psum(s1, axis), jax.lax.psum(s2, axis)

    f = jax.jit(
        jax.shard_map(
            local, mesh=mesh, in_specs=(P(), P(), P()), out_specs=(P(), P()), check_vma=False
        )
    )
    s1, s2 = f(params, x, key)
    return PR._average(task, total, s1, s2)
