"""Factorised exact average for :class:`~dropstudy.models.MLP`.

The generic exact average runs a full forward pass per subnetwork. For an MLP most of that
work does not depend on the last dropout layer's mask: with ``a`` the last hidden
activation (``(B, H)``, which depends only on the earlier masks), the logits of the
subnetwork with last-layer mask ``m`` are

    z[m, c, b] = bias[c] + sum_j m_j * (s_j a[b, j] W[j, c])  =  base + (M @ T)[m, c, b]

with ``s`` the convention's scale. So for each *outer* mask (input and earlier layers),
all ``2^D`` inner masks come from one ``(2^D, D) @ (D, C*B)`` matrix product. Classes sit
on a major axis so the softmax reduces across contiguous rows of ``B`` examples (a minor
axis of 10 classes vectorises poorly on CPU), and the mean log-probability needs no
per-mask products at all: ``E[z] = E[m] @ T``, leaving only ``E[lse]`` to accumulate.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import masks as M
from .models import MLP
from .predict import Average, _average

MAX_INNER_UNITS = 12  # 4096 inner subnetworks per matrix product


def _last_drop(model: MLP) -> str:
    return f"drop_{len(model.hidden) - 1}"


def applies(model, spec: M.MaskSpec) -> bool:
    """Whether the factorised path can average ``model``: an MLP with droppable last-layer units."""
    if not isinstance(model, MLP) or _last_drop(model) not in spec.names:
        return False
    last = M.layer_units(spec, _last_drop(model))
    return any(spec.keep[u] < 1.0 for u in last)


def split_units(model: MLP, spec: M.MaskSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(outer, inner) droppable flat units: inner = up to 12 units of the last hidden layer."""
    last = set(M.layer_units(spec, _last_drop(model)).tolist())
    inner = tuple(u for u in spec.droppable if u in last)[:MAX_INNER_UNITS]
    outer = tuple(u for u in spec.droppable if u not in set(inner))
    return outer, inner


def exact_mlp(
    model: MLP,
    params: Any,
    x: jax.Array,
    spec: M.MaskSpec,
    *,
    task: str = "classification",
    outer_chunk: int | None = None,
) -> Average:
    """Exact average over all subnetworks of an MLP, factorised as in the module docstring."""
    outer, inner = split_units(model, spec)
    if outer_chunk is None:
        # One outer mask per step: the inner block (2^D x C x B) is the working set.
        outer_chunk = 1
    s1, s2 = _exact_mlp(model, spec, task, outer, inner, outer_chunk, params, x)
    return _average(task, 2 ** (len(outer) + len(inner)), s1, s2)


@partial(jax.jit, static_argnames=("model", "spec", "task", "outer", "inner", "outer_chunk"))
def _exact_mlp(model, spec, task, outer, inner, outer_chunk, params, x):
    dtype = x.dtype
    last = M.layer_units(spec, _last_drop(model))
    first_last = int(last[0])
    inner_local = np.asarray(inner) - first_last  # positions within the last layer
    scale = (
        1.0 / jnp.asarray(np.asarray(spec.keep)[last], dtype)
        if model.convention == "inverted"
        else jnp.ones(len(last), dtype)
    )
    is_inner = np.zeros(len(last), bool)
    is_inner[inner_local] = True
    w_out = params["out"]["kernel"]  # (H, C)
    b_out = params["out"]["bias"]  # (C,)

    # Inner subnetworks: all 2^D states of the inner units, shared by every outer mask.
    flat_in, p_in = M.enumerate_units(spec, inner, jnp.arange(2 ** len(inner)), dtype)
    m_in = flat_in[:, np.asarray(inner)]  # (Mi, D)
    mean_m_in = p_in @ m_in  # (D,)  = E[m] over the inner units

    total_outer = 2 ** len(outer)
    n_chunks = math.ceil(total_outer / outer_chunk)

    def hidden(
        flat,
    ):  # flat (n_units,) -> last hidden activation, masked except inner units
        masks = spec.unflatten(flat)
        a = model.apply(
            {"params": params, M.MASKS: masks},
            x,
            upto=len(model.hidden) - 1,
            method=MLP.features,
        )  # (B, H), before the last dropout layer
        return a * (flat[first_last : first_last + len(last)] * scale)

    n_out, batch = model.n_out, x.shape[0]
    n_in = m_in.shape[0]
    # Inner masks augmented with a column of ones: the matrix product adds the mask-free
    # part of the logits (bias, outer units, minus the shift) for free.
    m_aug = jnp.concatenate([m_in, jnp.ones((n_in, 1), dtype)], axis=1)  # (Mi, D + 1)

    def one_outer(a):
        """Sums over all inner masks for one outer mask; ``a (B, H)`` its last activation."""
        base = (jnp.where(is_inner, 0.0, a) @ w_out + b_out).T  # (C, B)
        t = jnp.einsum("bd,dc->dcb", a[:, inner_local], w_out[inner_local])  # (D, C, B)
        if task == "regression":
            z = m_aug @ jnp.concatenate([t, base[None]]).reshape(len(inner) + 1, -1)
            return p_in @ z, p_in @ (z * z)
        # A mask-independent shift per example is safe when no subnetwork can push every
        # class more than 80 below it (exp underflow); the bounds come from the signs of t.
        upper = base + jnp.sum(jnp.maximum(t, 0.0), axis=0)
        lower = base + jnp.sum(jnp.minimum(t, 0.0), axis=0)
        shift = jnp.max(upper, axis=0)  # (B,)
        safe = jnp.all(shift - jnp.max(lower, axis=0) < 80.0)

        def sums(per_mask_max: bool):
            z = m_aug @ jnp.concatenate([t, (base - shift)[None]]).reshape(len(inner) + 1, -1)
            z = z.reshape(n_in, n_out, batch)
            mx = jnp.max(z, axis=1, keepdims=True) if per_mask_max else 0.0
            e = jnp.exp(z - mx)
            se = jnp.sum(e, axis=1, keepdims=True)
            # Reductions over the masks as matrix-vector products: far faster on CPU than
            # a strided reduce over the leading axis.
            arith = p_in @ (e / se).reshape(n_in, -1)
            lse = p_in @ (jnp.log(se) + mx).reshape(n_in, batch) + shift
            return arith, lse

        arith, lse = jax.lax.cond(safe, lambda: sums(False), lambda: sums(True))
        # E[z] needs no per-mask product: the inner mask enters z linearly.
        geo = (jnp.einsum("d,dcb->cb", mean_m_in, t) + base - lse).reshape(-1)
        return arith, geo

    def body(sums, c):
        idx = c * outer_chunk + jnp.arange(outer_chunk)
        flat_o, p_o = M.enumerate_units(spec, outer, idx, dtype)
        p_o = jnp.where(idx < total_outer, p_o, 0.0)
        s1, s2 = jax.vmap(one_outer)(jax.vmap(hidden)(flat_o))  # (O, C * B) each
        return (
            sums[0] + (p_o @ s1).reshape(n_out, batch),
            sums[1] + (p_o @ s2).reshape(n_out, batch),
        ), None

    z0 = jnp.zeros((model.n_out, x.shape[0]), dtype)
    (s1, s2), _ = jax.lax.scan(body, (z0, z0), jnp.arange(n_chunks))
    return s1.T, s2.T
