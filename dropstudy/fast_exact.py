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

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import masks as M
from .average import Average
from .models import MLP

MAX_INNER_UNITS = 12  # 4096 inner subnetworks per matrix product
MIN_BLOCK = 1024  # subnetworks per scan step, at least
SAFE_SPREAD = 80.0  # exp(-80) ~ 2e-35 stays a normal float32


def _last_drop(model: MLP) -> str:
    return model.dropout_layers()[-1]


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
    variables: Any,
    x: jax.Array,
    spec: M.MaskSpec,
    *,
    task: str = "classification",
) -> Average:
    """Exact average over all subnetworks of an MLP, factorised as in the module docstring.

    One outer mask per scan step: the inner block ``(2^D, C, B)`` is the working set.
    """
    outer, inner = split_units(model, spec)
    # Decide once, outside the hot loop, whether one shift per example is safe for every
    # subnetwork (a lax.cond inside the loop blocks fusion and cost ~70% more time).
    shifted = (
        task == "classification"
        and float(_max_spread(model, spec, outer, inner, variables, x)) < SAFE_SPREAD
    )
    s1, s2 = exact_sums(model, spec, task, outer, inner, shifted, variables, x)
    return Average.from_sums(task, 2 ** (len(outer) + len(inner)), s1, s2)


def _setup(model, spec, inner, variables, x):
    """``hidden(flat_mask) -> a (B, H)`` and ``split(a) -> (base (C, B), t (D, C, B))``."""
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
    out = variables["params"][model.dense_layers()[-1]]
    w_out, b_out = out["kernel"], out["bias"]  # (H, C), (C,)

    def hidden(flat):
        """Last hidden activation for one flat mask, masked and scaled except inner units."""
        a = M.apply(
            model,
            variables,
            x,
            spec.unflatten(flat),
            upto=len(model.hidden) - 1,
            method=MLP.features,
        )
        return a * (flat[first_last : first_last + len(last)] * scale)

    def split(a):
        """Mask-free logits (bias and outer units) and each inner unit's contribution."""
        base = (jnp.where(is_inner, 0.0, a) @ w_out + b_out).T
        t = jnp.einsum("bd,dc->dcb", a[:, inner_local], w_out[inner_local])
        return base, t

    return hidden, split


def _spread(base, t):
    """Per-example shift (largest reachable logit) and the widest gap to the smallest
    reachable maximum over classes: below ``SAFE_SPREAD`` no subnetwork underflows exp."""
    upper = base + jnp.sum(jnp.maximum(t, 0.0), axis=0)
    lower = base + jnp.sum(jnp.minimum(t, 0.0), axis=0)
    shift = jnp.max(upper, axis=0)
    return shift, jnp.max(shift - jnp.max(lower, axis=0))


@partial(jax.jit, static_argnames=("model", "spec", "outer", "inner"))
def _max_spread(model, spec, outer, inner, variables, x):
    hidden, split = _setup(model, spec, inner, variables, x)

    total = 2 ** len(outer)
    chunk = min(total, 256)

    def body(mx, c):
        flat, _ = M.enumerate_units(spec, outer, c * chunk + jnp.arange(chunk), x.dtype)
        spread = jax.vmap(lambda f: _spread(*split(hidden(f)))[1])(flat)
        return jnp.maximum(mx, jnp.max(spread)), None  # padded indices repeat real masks

    init = jnp.asarray(-jnp.inf, x.dtype)
    return jax.lax.scan(body, init, jnp.arange(-(-total // chunk)))[0]


@partial(jax.jit, static_argnames=("model", "spec", "task", "outer", "inner", "shifted"))
def exact_sums(model, spec, task, outer, inner, shifted, variables, x):
    """The compiled kernel behind :func:`exact_mlp`: ``(s1, s2)`` for
    :meth:`Average.from_sums` (exposed for profiling with ``.lower(...)``)."""
    dtype = x.dtype
    hidden, split = _setup(model, spec, inner, variables, x)
    n_out, batch = model.n_out, x.shape[0]

    # Inner subnetworks: all 2^D states of the inner units, shared by every outer mask,
    # augmented with a column of ones so the matrix product also adds the mask-free part.
    flat_in, p_in = M.enumerate_units(spec, inner, jnp.arange(2 ** len(inner)), dtype)
    m_in = flat_in[:, np.asarray(inner)]  # (Mi, D)
    n_in = m_in.shape[0]
    m_aug = jnp.concatenate([m_in, jnp.ones((n_in, 1), dtype)], axis=1)  # (Mi, D + 1)
    mean_m_in = p_in @ m_in  # (D,) = E[m] over the inner units
    total_outer = 2 ** len(outer)
    # Few inner masks (a narrow last layer): take several outer masks per step so each
    # step's products stay large and the loop runs few iterations.
    outer_chunk = min(total_outer, max(1, MIN_BLOCK // n_in))

    def one_outer(a):
        """Sums over every inner mask for one outer mask's activation ``a (B, H)``."""
        base, t = split(a)  # (C, B), (D, C, B)
        shift = _spread(base, t)[0] if shifted else jnp.zeros((batch,), dtype)
        z = m_aug @ jnp.concatenate([t, (base - shift)[None]]).reshape(len(inner) + 1, -1)
        if task == "regression":
            return p_in @ z, p_in @ (z * z)
        z = z.reshape(n_in, n_out, batch)
        # Without a safe shift, every subnetwork's logits get their own max.
        mx = 0.0 if shifted else jnp.max(z, axis=1, keepdims=True)
        e = jnp.exp(z - mx)
        se = jnp.sum(e, axis=1, keepdims=True)
        # Reductions over the masks as matrix-vector products: far faster on CPU than a
        # strided reduce over the leading axis.
        arith = p_in @ (e / se).reshape(n_in, -1)
        lse = p_in @ (jnp.log(se) + mx).reshape(n_in, batch) + shift
        # E[z] needs no per-mask product: the inner mask enters z linearly.
        geo = jnp.einsum("d,dcb->cb", mean_m_in, t) + base - lse
        return arith, geo.reshape(-1)

    def body(sums, c):
        idx = c * outer_chunk + jnp.arange(outer_chunk)
        flat_o, p_o = M.enumerate_units(spec, outer, idx, dtype)
        p_o = jnp.where(idx < total_outer, p_o, 0.0)  # padding past the end weighs 0
        s1, s2 = jax.vmap(lambda f: one_outer(hidden(f)))(flat_o)
        return (sums[0] + p_o @ s1, sums[1] + p_o @ s2), None

    z0 = jnp.zeros((n_out * batch,), dtype)
    (s1, s2), _ = jax.lax.scan(body, (z0, z0), jnp.arange(-(-total_outer // outer_chunk)))
    return s1.reshape(n_out, batch).T, s2.reshape(n_out, batch).T
