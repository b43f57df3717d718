"""Monte-Carlo average of an :class:`~dropstudy.models.MLP` that skips the dropped units.

When one sampled mask is shared by the whole batch, a subnetwork is a smaller dense
network: hidden layer ``l`` needs only the rows of ``W_l`` of the units kept in the layer
below and the columns of the units kept in its own layer. Each layer's kept units are
gathered into a block of fixed width ``bound`` (the kept count's mean plus ``Z_BOUND``
standard deviations, a multiple of 8, at most the layer width), padded with weight-zero
slots; a subnetwork whose count exceeds some bound (probability ~3e-5 per layer at
``Z_BOUND = 4``) is evaluated by the dense forward pass instead. At keep 0.5 a 512 x 512
product shrinks to about 304 x 304. Without input dropout the first layer's product is the
same for every subnetwork and is computed once.

The subnetworks run as a sequence (``lax.scan``) of dense products, one subnetwork per
step: their shapes differ from step to step only in which rows and columns are gathered.
Subnetwork ``i`` uses the same mask as the dense path (``sample_masks(spec, fold_in(key,
i))``), and every running sum is compensated (Kahan).
"""

from __future__ import annotations

import functools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from . import masks as M
from . import rng, sharding
from .average import kahan_add, weighted_terms
from .models import MLP, activation_fn
from .progress import masked_scan, run

Z_BOUND = 4.0  # standard deviations above the mean kept count: P(past the bound) ~ 3e-5
# Subnetworks past a bound one segment can list (per device); a segment with more is run
# again as two halves from the carry before it.
MAX_OVER = 64


def applies(model, spec: M.MaskSpec) -> bool:
    """Whether :func:`mc_sums` can average ``model``: a dropstudy MLP with droppable units.

    Args:
      model: the model.
      spec: its mask layout.

    Returns:
      True for an :class:`~dropstudy.models.MLP` whose dropout layers are the spec's and
      that has droppable units. Not for a subclass: it may compute something else (its own
      ``__call__``), which only the dense path runs.
    """
    return type(model) is MLP and spec.names == model.dropout_layers() and spec.n_droppable > 0


def bounds(spec: M.MaskSpec) -> tuple[int | None, ...]:
    """Gather width per dropout layer.

    The mean kept count plus ``Z_BOUND`` standard deviations, rounded up to a multiple of 8,
    at most the layer's width.

    Args:
      spec: the mask layout.

    Returns:
      One width per layer, ``None`` where nothing is droppable (every unit is used).
    """
    out = []
    for i, n in enumerate(spec.sizes):
        q = spec.layer_keep(i).reshape(-1)
        if np.all(q >= 1.0):
            out.append(None)
            continue
        b = math.ceil(q.sum() + Z_BOUND * math.sqrt(float(np.sum(q * (1 - q)))))
        out.append(int(min(n, -(-b // 8) * 8)))
    return tuple(out)


def _plan(mask, keep_scale, bound):
    """Kept units of one layer as ``(idx (bound,), weight (bound,), over)``: the indices of
    the kept units (padding repeats unit 0), their scale (0 on padding), and whether more
    units were kept than ``bound`` holds."""
    count = jnp.sum(mask > 0)
    idx = jnp.flatnonzero(mask > 0, size=bound, fill_value=0)
    valid = jnp.arange(bound) < count
    return idx, jnp.where(valid, keep_scale[idx], 0.0), count > bound


def mc_sums(
    model, spec, *, task, k, n_dev, dev, variables, x, key, first=0, steps=None, carry=None
):
    """Weighted sums over this device's share of the ``k`` subnetworks.

    Device ``dev`` takes subnetworks ``dev, dev + n_dev, ...``, one per scan step. The sums
    are as :func:`dropstudy.average.partial_sums` gives them.

    Args:
      model: a dropstudy :class:`~dropstudy.models.MLP`.
      spec: its mask layout.
      task: ``"classification"`` or ``"regression"``.
      k: the number of subnetworks.
      n_dev: the number of devices sharing the work.
      dev: this device's index in ``[0, n_dev)``.
      variables: the model's variables dict.
      x: inputs ``(B, d_in)``.
      key: the stream's PRNG key.
      first: the first scan step (:mod:`dropstudy.progress` runs the scan in segments).
      steps: scan steps to run (default: all ``ceil(k / n_dev)``).
      carry: the Kahan carry before step ``first`` (default: zeros).

    Returns:
      ``(carry, (over_idx, n_over))``: the carry ``((s1, s2), compensations)``, ``s1`` and
      ``s2`` each ``(B, n_out)``; the subnetworks these steps left out of the sums, past a
      bound: their number ``n_over`` and the first ``MAX_OVER`` of them, ``over_idx
      (MAX_OVER,)`` (``-1`` past ``n_over``).
    """
    dtype = model.dtype
    x = x.astype(dtype)
    act = activation_fn(model.activation)
    params = variables["params"]
    dense = [params[name] for name in model.dense_layers()]
    widths = bounds(spec)
    keep = [jnp.asarray(spec.layer_keep(i).reshape(-1), dtype) for i in range(len(spec.sizes))]
    scale = [1.0 / q if model.convention == "inverted" else jnp.ones_like(q) for q in keep]
    starts = np.cumsum([0, *spec.sizes])
    n_hidden = len(model.hidden)
    # Activations are kept transposed, (units, B): selecting kept units is then a gather of
    # whole rows, far cheaper on CPU than a gather of columns.
    kernels_t = [d["kernel"].T for d in dense]  # (out, in)
    # Without input dropout the first product is shared by every subnetwork.
    shared = act(x @ dense[0]["kernel"] + dense[0]["bias"]).T if widths[0] is None else None

    def gathered(plans):
        h, rows = x.T, None
        if widths[0] is not None:
            idx, w, _ = plans[0]
            h, rows = x.T[idx] * w[:, None], idx
        for layer in range(n_hidden):
            plan = plans[layer + 1]
            cols = plan[0] if plan is not None else None
            if layer == 0 and shared is not None:
                a = shared if cols is None else shared[cols]
            else:
                kern = kernels_t[layer] if cols is None else kernels_t[layer][cols]
                kern = kern if rows is None else kern[:, rows]
                bias = dense[layer]["bias"]
                a = act(kern @ h + (bias if cols is None else bias[cols])[:, None])
            h = a if plan is None else a * plan[1][:, None]
            rows = cols
        kern = kernels_t[-1] if rows is None else kernels_t[-1][:, rows]
        return (kern @ h).T + dense[-1]["bias"]

    def body(state, j):
        sums, (over_idx, n_over) = state
        i = j * n_dev + dev
        flat = spec.flatten(M.sample_masks(spec, rng.fold_in(key, i), (), x.dtype))
        plans = [
            None if b is None else _plan(flat[starts[j] : starts[j + 1]], scale[j], b)
            for j, b in enumerate(widths)
        ]
        over = jnp.any(jnp.stack([p[2] for p in plans if p is not None]))
        # Past the end, or past a bound (rare; added afterwards by the dense pass, see
        # mc_average): weight 0.
        w = jnp.where((i < k) & ~over, 1.0 / k, 0.0).astype(dtype)
        terms = weighted_terms(task, gathered(plans), w)
        flag = (i < k) & over
        at = jnp.minimum(n_over, MAX_OVER - 1)
        over_idx = jnp.where(flag & (n_over < MAX_OVER), over_idx.at[at].set(i), over_idx)
        return kahan_add(sums, terms), (over_idx, n_over + flag.astype(jnp.int32))

    n_steps = -(-k // n_dev)
    carry = zero_carry(model, x) if carry is None else carry
    steps = n_steps if steps is None else steps
    flags = (jnp.full((MAX_OVER,), -1, jnp.int32), jnp.zeros((), jnp.int32))
    return masked_scan(body, (carry, flags), n_steps=n_steps, first=first, steps=steps)


def zero_carry(model, x):
    """The carry :func:`mc_sums` starts from, ``((s1, s2), compensations)``: zeros
    ``(B, n_out)``."""
    z = jnp.zeros((x.shape[0], model.n_out), model.dtype)
    return (z, z), (z, z)


@partial(jax.jit, static_argnames=("model", "spec", "task"))
def _dense_terms(model, spec, *, task, variables, x, key, idx, w):
    """The dense pass's weighted sums over subnetworks ``idx (n,)`` of the stream (those past
    a bound), weighted ``w (n,)``."""
    masks = M.sample_mask_batch(spec, key, idx, x.dtype)
    out = jax.vmap(lambda m: M.apply(model, variables, x, m))(masks)
    s1, s2 = weighted_terms(task, out, w[:, None, None])
    return jnp.sum(s1, axis=0), jnp.sum(s2, axis=0)


def mc_average(model, spec, *, task, k, variables, x, key, mesh: Mesh | None = None, progress=None):
    """The MC sums ``(s1, s2)`` for :meth:`Average.from_sums`.

    Gathered subnetworks on one device or dealt out over ``mesh``, plus the dense pass for
    the rare subnetworks that kept more units than a bound holds.

    Args:
      model: a dropstudy :class:`~dropstudy.models.MLP`.
      spec: its mask layout.
      task: ``"classification"`` or ``"regression"``.
      k: the number of subnetworks.
      variables: the model's variables dict.
      x: inputs ``(B, d_in)``.
      key: the stream's PRNG key.
      mesh: a one-axis mesh to deal the subnetworks out over, or ``None``.
      progress: as :func:`dropstudy.progress.run` takes it.

    Returns:
      ``(s1, s2)``, each ``(B, n_out)``.
    """
    n_dev = 1 if mesh is None else mesh.size
    if mesh is None:
        kernel = partial(mc_segment, model, spec, task=task, k=k)

        def f(carry, first, steps):
            return kernel(steps=steps, variables=variables, x=x, key=key, first=first, carry=carry)

        carry0 = zero_carry(model, x)
    else:
        # Whole on every device, for the kernel and for the dense pass below: the sums it
        # adds must sit where the kernel's do (a net taken from a stack of seeds sharded
        # over the mesh lives on one device of it).
        variables, x, key = sharding.replicate((variables, jnp.asarray(x), key), mesh)
        kernel = _sharded_kernel(model, spec, task=task, k=k, mesh=mesh)

        def f(carry, first, steps):
            return kernel(variables, x, key, np.asarray([first, steps], np.int32), carry)

        carry0 = sharding.per_device(zero_carry(model, x), mesh)
    # each device's subnetworks past a bound, in the order its steps met them
    found: list[list[int]] = [[] for _ in range(n_dev)]

    def segment(carry, first, steps):
        new, (over_idx, n_over) = f(carry, first, steps)
        if int(np.max(sharding.gather(n_over))) > over_idx.shape[-1]:
            # more than a segment lists (one step flags at most one per device): the two
            # halves from the same carry
            half = steps // 2
            return segment(segment(carry, first, half), first + half, steps - half)
        rows = np.asarray(sharding.gather(over_idx)).reshape(n_dev, -1)
        for dev, row in enumerate(rows):
            found[dev].extend(row[row >= 0].tolist())
        return new

    carry = run(
        segment, carry0, -(-k // n_dev), desc=f"MC average over {k:,} subnetworks",
        progress=progress, subnetworks=(n_dev, k),
    )  # fmt: skip
    s1, s2 = carry[0] if mesh is None else sharding.psum_per_device(carry[0], mesh)
    idx = np.asarray([i for dev in found for i in dev], np.int64)
    if idx.size:
        # Padded to a power of two with weight-0 repeats, so few counts ever compile.
        n = 1 << (idx.size - 1).bit_length()
        w = np.zeros(n, np.float32)
        w[: idx.size] = 1.0 / k
        padded = np.concatenate([idx, np.full(n - idx.size, idx[0])])
        d1, d2 = _dense_terms(
            model, spec, task=task, variables=variables, x=x, key=key,
            idx=jnp.asarray(padded), w=jnp.asarray(w, x.dtype),
        )  # fmt: skip
        s1, s2 = s1 + d1, s2 + d2
    return s1, s2


@partial(jax.jit, static_argnames=("model", "spec", "task", "k"))
def mc_stream(model, spec, *, task, k, variables, x, key):
    """:func:`mc_sums` on one device.

    Args:
      model: a dropstudy :class:`~dropstudy.models.MLP`.
      spec: its mask layout.
      task: ``"classification"`` or ``"regression"``.
      k: the number of subnetworks.
      variables: the model's variables dict.
      x: inputs ``(B, d_in)``.
      key: the stream's PRNG key.

    Returns:
      ``(s1, s2, n_over)``: the sums, each ``(B, n_out)``, and the number of subnetworks
      past a bound (left out of the sums).
    """
    ((s1, s2), _), (_, n_over) = mc_sums(
        model, spec, task=task, k=k, n_dev=1, dev=0, variables=variables, x=x, key=key
    )
    return s1, s2, n_over


@partial(jax.jit, static_argnames=("model", "spec", "task", "k"))
def mc_segment(model, spec, *, task, k, steps, variables, x, key, first, carry):
    """Scan steps ``first .. first + steps - 1`` of :func:`mc_stream` from ``carry``.

    Args:
      model: a dropstudy :class:`~dropstudy.models.MLP`.
      spec: its mask layout.
      task: ``"classification"`` or ``"regression"``.
      k: the number of subnetworks.
      steps: scan steps in this segment (traced: one compile serves every segment).
      variables: the model's variables dict.
      x: inputs ``(B, d_in)``.
      key: the stream's PRNG key.
      first: the first step.
      carry: the carry before it (:func:`zero_carry` at step 0).

    Returns:
      ``(carry, (over_idx, n_over))``, as :func:`mc_sums` returns them.
    """
    return mc_sums(
        model, spec, task=task, k=k, n_dev=1, dev=0, variables=variables, x=x, key=key,
        first=first, steps=steps, carry=carry,
    )  # fmt: skip


@functools.lru_cache(maxsize=32)
def _sharded_kernel(model, spec, *, task, k, mesh):
    """The compiled, sharded segment (each device's carry and list its own), built once per
    set-up."""
    (axis,) = mesh.axis_names
    n_dev = mesh.shape[axis]

    def local(variables, x, key, span, carry):
        first, steps = span[0], span[1]  # one argument: local keeps to five positional ones
        return mc_sums(
            model, spec, task=task, k=k, n_dev=n_dev, dev=jax.lax.axis_index(axis),
            variables=variables, x=x, key=key, first=first, steps=steps, carry=carry,
        )  # fmt: skip

    return sharding.per_device_kernel(local, mesh, n_shared=4)
