"""Flax linen models whose dropout masks are explicit arrays.

A subnetwork is a pure function of ``(params, x, masks)``::

    model.apply({"params": params, "masks": masks}, x)

:class:`MaskedDropout` reads its mask from the ``"masks"`` collection instead of drawing
one from an RNG stream, so training (sampled masks), weight scaling (masks at their
expectation), Monte-Carlo and exact averaging (batches of masks) and ablation (a zero at
unit j) are all the same call with different mask arrays. ``model.init`` stores the
*expected* mask (the keep probability of each unit) in that collection, which is where
:func:`dropstudy.masks.mask_spec` reads the layer names, unit shapes and keep
probabilities from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .validate import (
    ACTIVATIONS,
    CONVENTIONS,
    DropstudyError,
    check_choice,
    check_positive_int,
    check_rate,
    check_widths,
)

MASKS = "masks"

_ACT = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda z: z,
}


def activation_fn(name: str):
    """The elementwise nonlinearity called ``name`` (relu, tanh, sigmoid, linear)."""
    return _ACT[check_choice("activation", name, ACTIVATIONS)]


class MaskedDropout(nn.Module):
    """Dropout whose Bernoulli mask is an input, not hidden RNG state.

    Attributes:
      rate: probability of *dropping* a unit (keep probability ``p = 1 - rate``).
      broadcast_dims: axes of ``x`` that share one mask entry (e.g. ``(1, 2)`` for NHWC
        feature maps: one mask value per channel), as in ``flax.linen.Dropout``.
      convention: ``"inverted"`` multiplies by ``mask / p`` (Flax, PyTorch, Keras: the
        expected mask gives the identity); ``"standard"`` multiplies by ``mask`` (the 2014
        paper: the expected mask scales activations by ``p``, i.e. weight scaling).

    The mask for ``x`` of shape ``(B, *rest)`` has the *unit shape* ``U``: ``rest`` with the
    broadcast axes removed. It is either ``U`` (one subnetwork for the whole batch) or
    ``(B, *U)`` (one subnetwork per example, as in training). Values are 0/1 for a
    subnetwork; the keep probability gives weight scaling.
    """

    rate: float = 0.5
    broadcast_dims: Sequence[int] = ()
    convention: str = "inverted"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        keep = 1.0 - check_rate(f"rate of layer {self.name}", self.rate)
        check_choice("convention", self.convention, CONVENTIONS)
        bdims = {d % x.ndim for d in self.broadcast_dims}
        if 0 in bdims:
            raise DropstudyError("broadcast_dims must not contain the batch axis 0")
        unit_axes = [d for d in range(1, x.ndim) if d not in bdims]
        unit_shape = tuple(x.shape[d] for d in unit_axes)
        if self.has_variable(MASKS, "mask"):
            mask = self.get_variable(MASKS, "mask")
        elif self.is_mutable_collection(MASKS):  # model.init: record the expected mask
            mask = self.variable(MASKS, "mask", jnp.full, unit_shape, keep, x.dtype).value
        else:
            raise DropstudyError(
                f"no mask given for dropout layer {'/'.join(self.path)}: call "
                "model.apply({'params': params, 'masks': masks}, x) with masks from "
                "dropstudy.masks (sample_masks, expected_masks, ...)"
            )
        mask = jnp.asarray(mask)
        if mask.shape == unit_shape:
            lead = (1,)
        elif mask.shape == (x.shape[0], *unit_shape):
            lead = (x.shape[0],)
        else:
            raise DropstudyError(
                f"mask for dropout layer {'/'.join(self.path)} has shape {mask.shape}; "
                f"expected {unit_shape} (one subnetwork for the batch) or "
                f"{(x.shape[0], *unit_shape)} (one per example)"
            )
        full = list(lead) + [1 if d in bdims else x.shape[d] for d in range(1, x.ndim)]
        mask = mask.reshape(full).astype(x.dtype)
        scale = 1.0 / keep if self.convention == "inverted" else 1.0
        return x * (mask * scale)


class MLP(nn.Module):
    """Multi-layer perceptron with a :class:`MaskedDropout` on the input and every hidden layer.

    ``x`` of shape ``(B, d_in)`` maps to outputs ``(B, n_out)``: logits for classification,
    predictions for regression. The input layer and each hidden layer always carry a dropout
    layer (rate 0 allowed), so a plain net has masks too and its units can be ablated.

    Attributes:
      hidden: hidden widths, e.g. ``(10, 10)``.
      n_out: output width (number of classes, or 1 for regression).
      activation: relu, tanh, sigmoid or linear.
      rate: drop rate of the hidden layers; one float, or one per hidden layer.
      input_rate: drop rate of the input layer.
      convention: ``"inverted"`` (default) or ``"standard"``, see :class:`MaskedDropout`.
      dtype: parameter and computation dtype.
      weight_init: ``"lecun"`` (Flax's default: normal, variance 1/fan_in) or ``"torch"``
        (PyTorch's ``nn.Linear`` default for weights: uniform, variance 1/(3 fan_in); biases
        start at zero), for reproducing PyTorch code.
    """

    hidden: Sequence[int] = (10, 10)
    n_out: int = 10
    activation: str = "relu"
    rate: float | Sequence[float] = 0.5
    input_rate: float = 0.0
    convention: str = "inverted"
    dtype: Any = jnp.float32
    weight_init: str = "lecun"

    def hidden_rates(self) -> tuple[float, ...]:
        rates = self.rate if isinstance(self.rate, Sequence) else [self.rate] * len(self.hidden)
        if len(rates) != len(self.hidden):
            raise DropstudyError(
                f"rate lists {len(rates)} drop rates for {len(self.hidden)} hidden layers; "
                "give one rate, or one per hidden layer"
            )
        return tuple(check_rate(f"rate[{i}]", r) for i, r in enumerate(rates))

    def validate(self) -> MLP:
        """Check every attribute; returns self so it can be chained."""
        check_widths("hidden", self.hidden)
        check_positive_int("n_out", self.n_out)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("convention", self.convention, CONVENTIONS)
        check_rate("input_rate", self.input_rate)
        check_choice("weight_init", self.weight_init, ("lecun", "torch"))
        self.hidden_rates()
        return self

    def setup(self) -> None:
        self.validate()
        self.drop_input = MaskedDropout(self.input_rate, convention=self.convention)
        self.dense = [nn.Dense(w, dtype=self.dtype, param_dtype=self.dtype) for w in self.hidden]
        self.drop = [MaskedDropout(r, convention=self.convention) for r in self.hidden_rates()]
        self.out = nn.Dense(self.n_out, dtype=self.dtype, param_dtype=self.dtype)

    def features(self, x: jax.Array, upto: int | None = None) -> jax.Array:
        """Activations entering the output layer (after the last dropout), ``(B, hidden[-1])``.

        With ``upto=l`` stops *before* hidden layer ``l``'s dropout: the activation of layer
        ``l`` is returned unmasked (used by the factorised exact average).
        """
        act = activation_fn(self.activation)
        h = self.drop_input(x.astype(self.dtype))
        for i, (dense, drop) in enumerate(zip(self.dense, self.drop, strict=True)):
            h = act(dense(h))
            if upto is not None and i == upto:
                return h
            h = drop(h)
        return h

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.features(x))


class ConvNet(nn.Module):
    """A small conv net whose dropout masks whole channels: any linen model works the same.

    ``x`` of shape ``(B, H, W, C_in)`` (8 x 8 x 1 for digits) maps to logits ``(B, n_out)``.
    The conv dropout layers broadcast over height and width (``broadcast_dims=(1, 2)``), so
    their unit shape is the channel count: a subnetwork keeps or drops entire feature maps.
    """

    channels: Sequence[int] = (8, 16)
    n_out: int = 10
    rate: float = 0.25
    dense_rate: float = 0.5
    dense_width: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for c in self.channels:
            x = jax.nn.relu(nn.Conv(c, (3, 3))(x))
            x = MaskedDropout(self.rate, broadcast_dims=(1, 2))(x)
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(nn.Dense(self.dense_width)(x))
        x = MaskedDropout(self.dense_rate)(x)
        return nn.Dense(self.n_out)(x)
