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
from .predict import CHUNK_ELEMENTS, Average, _average

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
    n_inner = 2 ** len(inner)
    if outer_chunk is None:
        per = n_inner * model.n_out * x.shape[0]
        outer_chunk = int(max(1, min(2 ** len(outer), CHUNK_ELEMENTS // per)))
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

    def body(sums, c):
        idx = c * outer_chunk + jnp.arange(outer_chunk)
        flat_o, p_o = M.enumerate_units(spec, outer, idx, dtype)
        p_o = jnp.where(idx < total_outer, p_o, 0.0)
        a = jax.vmap(hidden)(flat_o)  # (O, B, H)
        base = jnp.einsum("obh,hc->ocb", jnp.where(is_inner, 0.0, a), w_out) + b_out[:, None]
        t = jnp.einsum("obd,dc->odcb", a[..., inner_local], w_out[inner_local])  # (O, D, C, B)
        z = jnp.einsum("md,odcb->omcb", m_in, t) + base[:, None]  # (O, Mi, C, B)
        if task == "classification":
            mx = jnp.max(z, axis=2, keepdims=True)
            e = jnp.exp(z - mx)
            se = jnp.sum(e, axis=2, keepdims=True)
            wt = (p_o[:, None] * p_in[None, :])[..., None, None]  # (O, Mi, 1, 1)
            arith = jnp.sum(e * (wt / se), axis=(0, 1))  # (C, B)
            lse = jnp.sum(wt * (mx + jnp.log(se)), axis=(0, 1))  # (1, B)
            # E[z] needs no per-mask product: the mask enters z linearly.
            ez = jnp.einsum("d,odcb->ocb", mean_m_in, t) + base
            geo = jnp.einsum("o,ocb->cb", p_o, ez) - lse
            return (sums[0] + arith, sums[1] + geo), None
        wt = (p_o[:, None] * p_in[None, :])[..., None, None]
        return (
            sums[0] + jnp.sum(wt * z, axis=(0, 1)),
            sums[1] + jnp.sum(wt * z * z, axis=(0, 1)),
        ), None

    z0 = jnp.zeros((model.n_out, x.shape[0]), dtype)
    (s1, s2), _ = jax.lax.scan(body, (z0, z0), jnp.arange(n_chunks))
    return s1.T, s2.T
