"""Optimiser pieces as optax transformations: the max-norm constraint of Srivastava et al.

Srivastava et al. (2014, section 5.1) train dropout nets with a bound ``c`` on the norm of
each hidden unit's incoming weight vector: after every update, a unit whose incoming
weights left the ball of radius ``c`` is projected back onto it. Here every kernel is
bounded, the output layer's too (each output unit's incoming weights). :func:`max_norm` is that
projection as an ``optax.GradientTransformation``, so it chains after any optimiser::

    opt = optax.chain(optax.sgd(0.1, momentum=0.95), max_norm(3.0))

and ``TrainConfig(max_norm=3.0)`` chains it after the configured optimiser.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from .validate import check_positive_float


def _is_kernel(path, leaf) -> bool:
    """A weight matrix or filter bank: a leaf named ``kernel`` of two or more axes."""
    name = str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1]))) if path else ""
    return name == "kernel" and jnp.ndim(leaf) >= 2


def project_max_norm(params: Any, c: float) -> Any:
    """``params`` with every unit's incoming weight vector projected onto the ball of radius ``c``.

    Args:
      params: a parameter pytree. Each leaf named ``kernel`` with shape ``(..., d_out)`` holds
        ``d_out`` units' incoming weights, one unit per index of the last axis (a dense
        ``(d_in, d_out)`` kernel, a conv ``(kh, kw, c_in, c_out)`` one); other leaves (biases,
        scales) are left alone.
      c: the radius, > 0.

    Returns:
      The same tree; in each kernel, a unit whose weights have norm ``n > c`` is scaled by
      ``c / n``, the others unchanged.
    """

    def one(path, w):
        return w * _scale(w, c) if _is_kernel(path, w) else w

    return jax.tree_util.tree_map_with_path(one, params)


def _scale(w: jax.Array, c: float) -> jax.Array:
    """Each unit's factor ``min(1, c / ||w_unit||)``, shaped ``(1, ..., 1, d_out)``."""
    norm = jnp.sqrt(jnp.sum(w * w, axis=tuple(range(w.ndim - 1)), keepdims=True))
    return jnp.minimum(1.0, c / jnp.maximum(norm, jnp.finfo(w.dtype).tiny))


def max_norm(c: float) -> optax.GradientTransformation:
    """The max-norm constraint as the last link of an optimiser chain.

    Args:
      c: the largest norm of a unit's incoming weight vector, > 0.

    Returns:
      A stateless transformation whose updates take ``params + updates`` onto the constraint
      set: a unit that would leave the ball gets ``project(params + updates) - params``, every
      other update passes unchanged (bitwise). It needs ``params`` in ``update``.

    Raises:
      DropstudyError: if ``c`` is not a positive number.
    """
    c = check_positive_float("max_norm", c)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("max_norm needs params: call update(updates, state, params)")

        def one(path, u, p):
            if not _is_kernel(path, p):
                return u
            new = p + u
            s = _scale(new, c)
            return jnp.where(s < 1.0, new * s - p, u)

        return jax.tree_util.tree_map_with_path(one, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


__all__ = ["max_norm", "project_max_norm"]
