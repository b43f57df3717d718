"""Device placement: meshes, and arrays split along a leading axis. Nothing else.

:func:`dropstudy.train.train_seeds` shards its seeds over every device by itself (each
device trains its share of the vmapped seeds; bitwise reproducible for the same device
count, and to float rounding what one device computes for that batch);
the ``mc`` and ``exact`` predictors take ``mesh=`` and deal subnetworks out in chunks
(each device reduces its chunks, then one ``psum``). Works the same on 8 GPUs, a TPU
slice, or several hosts after ``jax.distributed.initialize()`` (then ``jax.devices()``
lists every host's devices and the mesh spans them). On a CPU, :func:`use_cpu_cores`
makes one device per core, so seeds train on all cores at once.
"""

from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .validate import check_positive_int

CPU_DEVICES_ENV = "DROPSTUDY_CPU_DEVICES"


def use_cpu_cores(n: int | None = None, warn: bool = True) -> int:
    """Split the CPU into ``n`` JAX devices so that sharded seeds train in parallel.

    Call it right after ``import jax``, before any JAX operation: the CPU backend reads the
    setting once when it starts. Results agree across device counts to float rounding; they
    are bitwise reproducible for the same count (the seeds a device trains together form one
    batch, and XLA's batched kernels may round differently for another batch size).

    Args:
      n: the number of devices (default: ``$DROPSTUDY_CPU_DEVICES`` when set, else the cores
        this process may use).
      warn: log a warning when the backend had already started with another device count.

    Returns:
      The number of devices asked for, or 0 when the setting was left alone (the backend
      already started, or ``XLA_FLAGS`` already sets a device count).

    Raises:
      DropstudyError: if the number of devices is not an integer >= 1.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 0
    if n is None:
        env = os.environ.get(CPU_DEVICES_ENV)
        n = int(env) if env else len(os.sched_getaffinity(0))
    n = check_positive_int("number of CPU devices", n)
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backend already started: keep its devices
        if warn and len(jax.devices()) != n and jax.default_backend() == "cpu":
            logging.getLogger("dropstudy").warning(
                "use_cpu_cores(%d) came after JAX started: keeping %d device(s); call it "
                "right after `import jax`",
                n,
                len(jax.devices()),
            )
        return 0
    return n


def mesh(axis: str = "d", devices=None) -> Mesh:
    """A 1-D mesh over ``devices``.

    Args:
      axis: the mesh's axis name.
      devices: the devices (default: all devices, every host's).

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(len(devices),)``.
    """
    devices = list(devices if devices is not None else jax.devices())
    # Auto axes: XLA partitions the vmapped training loop itself (GSPMD).
    return jax.make_mesh((len(devices),), (axis,), axis_types=(AxisType.Auto,), devices=devices)


def shard_leading(tree, mesh: Mesh):
    """Put the arrays of ``tree`` on ``mesh``, split along their leading seed axis.

    The axis is padded up to a multiple of the device count with copies of the first row.
    Works across processes: every process passes the same values and places the shards its own
    devices hold.

    Args:
      tree: a pytree of arrays, each with a leading seed axis of the same length ``n``.
      mesh: a 1-D mesh.

    Returns:
      ``(placed, n)``: the placed tree, its leading axes padded, and ``n`` (slice results back
      with ``[:n]``).
    """
    (axis,) = mesh.axis_names
    n = jax.tree.leaves(tree)[0].shape[0]
    pad = (-n) % mesh.shape[axis]

    def place(a):
        a = jnp.asarray(a)
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)])
        return _place(a, NamedSharding(mesh, P(axis)))

    return jax.tree.map(place, tree), n


def replicate(tree, mesh: Mesh):
    """Every array of ``tree`` whole on every device of ``mesh``.

    Args:
      tree: a pytree of arrays; every process passes the same values.
      mesh: the mesh.

    Returns:
      The tree, each array replicated on every device of ``mesh``.
    """
    return jax.tree.map(lambda a: _place(jnp.asarray(a), NamedSharding(mesh, P())), tree)


def per_device(tree, mesh: Mesh):
    """A copy of ``tree`` for every device of a 1-D ``mesh``: each array gains a leading axis
    of the device count, split over the mesh (a carry each device runs on its own).

    Args:
      tree: a pytree of arrays; every process passes the same values.
      mesh: a 1-D mesh.

    Returns:
      The tree, each array ``(n_devices, *shape)``, row ``d`` on device ``d``.
    """
    (axis,) = mesh.axis_names
    spread = NamedSharding(mesh, P(axis))
    return jax.tree.map(lambda a: _place(jnp.broadcast_to(a, (mesh.size, *a.shape)), spread), tree)


def per_device_kernel(fn, mesh: Mesh, n_shared: int):
    """``fn(*shared, carry)`` compiled over a 1-D ``mesh``, each device with its own carry.

    The first ``n_shared`` arguments are whole on every device; the carry and the result
    are :func:`per_device` trees (one row per device), so a scan can be run in segments
    with each device's running sums kept apart until :func:`psum_per_device`. ``fn`` sees
    its own row and may call ``jax.lax.axis_index`` on the mesh's axis.

    Args:
      fn: ``fn(*shared, carry) -> out``, carry and out pytrees of one device's arrays.
      mesh: a 1-D mesh.
      n_shared: the number of arguments before the carry.

    Returns:
      The jitted ``f(*shared, carry) -> out``, carry and out ``(n_devices, ...)``.
    """
    (axis,) = mesh.axis_names

    def local(*args):
        *shared, carry = args
        out = fn(*shared, jax.tree.map(lambda a: a[0], carry))
        return jax.tree.map(lambda a: a[None], out)

    specs = (*([P()] * n_shared), P(axis))
    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(axis), check_vma=False)
    )


def psum_per_device(tree, mesh: Mesh):
    """The sum over the devices of a :func:`per_device` tree, by ``psum`` (replicated).

    Args:
      tree: a pytree of arrays ``(n_devices, *shape)``, split over a 1-D ``mesh``.
      mesh: the mesh.

    Returns:
      The tree, each array ``shape``, the sum of its rows.
    """
    return _psum_kernel(mesh)(tree)


@functools.lru_cache(maxsize=8)
def _psum_kernel(mesh: Mesh):
    (axis,) = mesh.axis_names

    def local(tree):
        return jax.tree.map(lambda a: jax.lax.psum(a[0], axis), tree)

    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=P(axis), out_specs=P(), check_vma=False)
    )


def _place(a: jax.Array, sharding: NamedSharding) -> jax.Array:
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    # Several processes: each builds the shards of its own devices from its copy
    # (device_put refuses devices of other processes). Keys travel as their raw data.
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(a)
        return jax.random.wrap_key_data(_place(jax.random.key_data(a), sharding), impl=impl)
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def gather(tree):
    """Every array of ``tree`` whole on this host, as numpy.

    With several processes (``jax.distributed``) each host holds only its devices' shards of a
    sharded result, and this collects the rest: a collective, every process must call it.

    Args:
      tree: a pytree of arrays, sharded or not.

    Returns:
      The tree with every array whole, as numpy.
    """
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
