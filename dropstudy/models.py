"""Flax linen models whose dropout masks are explicit arrays.

A subnetwork is a pure function of ``(params, x, masks)``::

    model.apply({"params": params, "masks": masks}, x)

:class:`MaskedDropout` reads its mask from the ``"masks"`` collection instead of drawing
one from an RNG stream, so training (sampled masks), weight scaling (masks at their
expectation), Monte-Carlo and exact averaging (batches of masks) and ablation (a zero at
unit j) are all the same call with different mask arrays. With no mask given it uses its
expectation, so ``model.apply({"params": params}, x)`` is weight scaling; with
``deterministic=False`` and a ``"dropout"`` rng it draws its own mask as ``nn.Dropout`` does,
so it replaces ``nn.Dropout`` in a training loop of one's own. :func:`dropstudy.masks.init`
and :func:`dropstudy.masks.mask_spec` read the layer names (in the order the layers run),
unit shapes and keep probabilities from the *expected* masks that init records (inside
:func:`recording_masks`) in that collection.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
    """The elementwise nonlinearity called ``name`` (relu, tanh, sigmoid, linear).

    Args:
      name: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"linear"``.

    Returns:
      The function, array to array of the same shape.

    Raises:
      DropstudyError: if ``name`` is none of these.
    """
    return _ACT[check_choice("activation", name, ACTIVATIONS)]


# Set while dropstudy.masks traces a model to read its layout: only then does init record
# each layer's expected mask in the "masks" collection. A plain ``model.init`` records
# nothing, so the variables it returns never carry a mask that would silently win over the
# layer's own draws when the model is later applied with ``deterministic=False``.
_RECORD_MASKS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dropstudy_record_masks", default=False
)


@contextlib.contextmanager
def recording_masks() -> Iterator[None]:
    """Inside this context ``model.init`` records each :class:`MaskedDropout` layer's
    expected mask in the ``"masks"`` collection (how :mod:`dropstudy.masks` reads a
    model's layout).

    Yields:
      Nothing.
    """
    token = _RECORD_MASKS.set(True)
    try:
        yield
    finally:
        _RECORD_MASKS.reset(token)


class MaskedDropout(nn.Module):
    """Dropout whose Bernoulli mask is an input, not hidden RNG state; a drop-in for
    ``flax.linen.Dropout``.

    The mask for ``x`` of shape ``(B, *rest)`` has the *unit shape* ``U``: ``rest`` with the
    broadcast axes removed. It is either ``U`` (one subnetwork for the whole batch) or
    ``(B, *U)`` (one subnetwork per example, as in training). Values are 0/1 for a
    subnetwork; the keep probability gives weight scaling. Which mask the layer uses:

    1. a mask in the ``"masks"`` collection, whatever ``deterministic`` says (how the
       trainer and every predictor run a chosen subnetwork);
    2. else, with ``deterministic`` false, its own draw from the ``rng_collection`` rng, as
       ``nn.Dropout`` draws it (same bits, same arithmetic: bitwise ``nn.Dropout``'s output
       under the inverted convention);
    3. else, with ``deterministic`` true, the expected mask (under the inverted convention
       the input unchanged, as ``nn.Dropout`` returns it);
    4. with ``deterministic`` unset and no rng given, the expected mask: so
       ``model.apply({"params": params}, x)`` is weight scaling. Unset with an rng given is
       an error (the layer cannot tell whether to draw).

    A layer called at several sites (one module applied twice) has one mask for all of them,
    where ``nn.Dropout`` draws anew at each call: :func:`dropstudy.masks.mask_spec` warns.

    Attributes:
      rate: probability of *dropping* a unit (keep probability ``p = 1 - rate``), in [0, 1):
        rate 1 (``nn.Dropout``'s zeros) leaves no subnetwork and is refused.
      broadcast_dims: axes of ``x`` that share one mask entry (e.g. ``(1, 2)`` for NHWC
        feature maps: one mask value per channel), as in ``flax.linen.Dropout``.
      deterministic: as in ``flax.linen.Dropout`` (the call's argument wins); ``None``: see
        above.
      rng_collection: the rng stream its own masks are drawn from.
      convention: ``"inverted"`` multiplies by ``mask / p`` (Flax, PyTorch, Keras: the
        expected mask gives the identity); ``"standard"`` multiplies by ``mask`` (the 2014
        paper: the expected mask scales activations by ``p``, i.e. weight scaling).
    """

    rate: float = 0.5
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    convention: str = "inverted"

    @nn.compact
    def __call__(
        self, x: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None
    ) -> jax.Array:
        """Multiply ``x`` by the layer's mask (the class docstring says which).

        Args:
          x: activations ``(B, *rest)``.
          deterministic: overrides the attribute, as in ``flax.linen.Dropout``.
          rng: a key for the layer's own draw instead of the ``rng_collection`` stream.

        Returns:
          ``x`` times the mask, broadcast over ``broadcast_dims`` and scaled by ``1/p`` under the
          inverted convention: ``(B, *rest)``.

        Raises:
          DropstudyError: if ``rate`` or ``convention`` is invalid, ``broadcast_dims`` holds the
            batch axis, the mask has neither shape ``U`` nor ``(B, *U)``, the layer must draw
            and has no rng, or ``deterministic`` is unset while an rng is given.
        """
        where = f"layer {'/'.join(self.path) or type(self).__name__}"
        keep = 1.0 - check_rate(f"rate of dropout {where}", self.rate)
        check_choice("convention", self.convention, CONVENTIONS)
        shape = unit_shape(x, self.broadcast_dims)
        deterministic = check_deterministic(
            self.deterministic if deterministic is None else deterministic, where
        )
        if self.has_variable(MASKS, "mask"):
            mask = self.get_variable(MASKS, "mask")
        elif self.is_mutable_collection(MASKS) and _RECORD_MASKS.get():
            # dropstudy.masks reads the layout: record the expected mask
            mask = self.variable(MASKS, "mask", jnp.full, shape, keep, x.dtype).value
        elif deterministic is False:
            return self._draw(x, keep, rng)
        elif (
            deterministic is None
            and not self.is_initializing()
            and (rng is not None or self.has_rng(self.rng_collection))
        ):
            raise DropstudyError(
                f"dropout {where} got a {self.rng_collection!r} rng but no mask, and "
                "deterministic is not set: pass deterministic=False (to the layer or its call) "
                "to draw masks from the rng as nn.Dropout does, deterministic=True for weight "
                "scaling, or give masks in the 'masks' collection (dropstudy.masks.apply)"
            )
        elif deterministic and self.convention == "inverted":
            return x  # the expected mask times 1/p, exactly, as nn.Dropout returns it
        else:  # the expectation, i.e. weight scaling
            mask = jnp.full(shape, keep, x.dtype)
        return apply_mask(
            x, mask, broadcast_dims=self.broadcast_dims, keep=keep, convention=self.convention,
            where=where,
        )  # fmt: skip

    def _draw(self, x: jax.Array, keep: float, rng: jax.Array | None) -> jax.Array:
        """The layer's own mask, drawn and applied exactly as ``nn.Dropout`` does."""
        if keep == 1.0:
            return x
        if rng is None:
            if not self.has_rng(self.rng_collection):
                raise DropstudyError(
                    f"dropout layer {'/'.join(self.path)} has deterministic=False and no mask, "
                    f"so it draws its own, but no {self.rng_collection!r} rng was given: pass "
                    f"rngs={{{self.rng_collection!r}: key}} to apply, or deterministic=True "
                    "for weight scaling"
                )
            rng = self.make_rng(self.rng_collection)
        shape = list(x.shape)
        for d in self.broadcast_dims:
            shape[d] = 1
        mask = jnp.broadcast_to(jax.random.bernoulli(rng, p=keep, shape=shape), x.shape)
        kept = x / keep if self.convention == "inverted" else x
        return jax.lax.select(mask, kept, jnp.zeros_like(x))


def unit_shape(x: jax.Array, broadcast_dims: Sequence[int]) -> tuple[int, ...]:
    """The mask's unit shape for ``x (B, *rest)``: ``rest`` without the broadcast axes.

    Args:
      x: activations ``(B, *rest)``.
      broadcast_dims: axes of ``x`` that share one mask entry (negative axes count from the
        end).

    Returns:
      The unit shape ``U``, a tuple of ints.

    Raises:
      DropstudyError: if ``broadcast_dims`` holds the batch axis 0.
    """
    bdims = {d % x.ndim for d in broadcast_dims}
    if 0 in bdims:
        raise DropstudyError("broadcast_dims must not contain the batch axis 0")
    return tuple(x.shape[d] for d in range(1, x.ndim) if d not in bdims)


def check_deterministic(value: Any, where: str) -> bool | None:
    """A dropout layer's ``deterministic`` as a Python bool (or ``None``, unset).

    ``nn.Dropout`` reads it by truth value, so a NumPy or concrete JAX bool counts as one;
    anything else is refused (a string here is the old positional ``convention``).

    Args:
      value: the flag.
      where: names the layer in the message.

    Returns:
      ``None`` or ``bool(value)``.

    Raises:
      DropstudyError: if ``value`` is neither None nor a boolean scalar.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, jax.core.Tracer):
        raise DropstudyError(
            f"deterministic of dropout {where} is a traced value: it decides which program "
            "runs, so pass it as a Python bool (a static argument of jax.jit)"
        )
    if isinstance(value, str) or np.ndim(value) != 0 or np.asarray(value).dtype != bool:
        raise DropstudyError(
            f"deterministic of dropout {where} must be a bool or None, got {value!r} (the "
            "convention is a keyword argument: convention='standard')"
        )
    return bool(value)


def apply_mask(
    x: jax.Array,
    mask,
    *,
    broadcast_dims: Sequence[int],
    keep: float,
    convention: str,
    where: str,
) -> jax.Array:
    """Multiply ``x`` by ``mask``, scaled under the inverted convention.

    Shared by the linen and NNX dropout layers.

    Args:
      x: activations ``(B, *rest)``.
      mask: of the unit shape ``U`` (one subnetwork for the batch) or ``(B, *U)`` (one per
        example); cast to ``x``'s dtype.
      broadcast_dims: axes of ``x`` that the mask is broadcast over.
      keep: the keep probability ``p``.
      convention: ``"inverted"`` scales by ``1/keep``; ``"standard"`` does not scale.
      where: names the layer in the error message.

    Returns:
      ``x`` times the (scaled) mask broadcast over ``broadcast_dims``: ``(B, *rest)``.

    Raises:
      DropstudyError: if ``mask`` has neither shape ``U`` nor ``(B, *U)``, or
        ``broadcast_dims`` holds the batch axis.
    """
    bdims = {d % x.ndim for d in broadcast_dims}
    shape = unit_shape(x, broadcast_dims)
    mask = jnp.asarray(mask)
    if mask.shape == shape:
        lead = (1,)
    elif mask.shape == (x.shape[0], *shape):
        lead = (x.shape[0],)
    else:
        raise DropstudyError(
            f"mask for dropout {where} has shape {mask.shape}; "
            f"expected {shape} (one subnetwork for the batch) or "
            f"{(x.shape[0], *shape)} (one per example)"
        )
    full = list(lead) + [1 if d in bdims else x.shape[d] for d in range(1, x.ndim)]
    mask = mask.reshape(full).astype(x.dtype)
    scale = 1.0 / keep if convention == "inverted" else 1.0
    return x * (mask * scale)


INPUT_DROPOUT = "drop_input"
OUTPUT = "out"


class TorchDense(nn.Module):
    """A dense layer initialised as PyTorch's ``nn.Linear``.

    ``kernel (fan_in, features)`` and ``bias (features,)`` are both uniform on
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``. Same parameter names and computation as
    ``flax.linen.Dense``.

    Attributes:
      features: output width.
      dtype: parameter and computation dtype.
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """The affine map ``x @ kernel + bias``.

        Args:
          x: inputs ``(B, fan_in)``.

        Returns:
          ``(B, features)``.
        """
        bound = 1.0 / math.sqrt(x.shape[-1])

        def init(key, shape, dtype):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        kernel = self.param("kernel", init, (x.shape[-1], self.features), self.dtype)
        bias = self.param("bias", init, (self.features,), self.dtype)
        return jnp.dot(x.astype(self.dtype), kernel) + bias


class MLP(nn.Module):
    """Multi-layer perceptron with a :class:`MaskedDropout` on the input and every hidden layer.

    ``x`` of shape ``(B, d_in)`` maps to outputs ``(B, n_out)``: logits for classification,
    predictions for regression. The input layer and each hidden layer always carry a dropout
    layer (rate 0 allowed), so a plain net has masks too and its units can be ablated.

    Layer names (:meth:`dropout_layers`, :meth:`dense_layers`): dropout layer ``i`` of
    ``dropout_layers()`` feeds dense layer ``i`` of ``dense_layers()``; the input's dropout
    comes first, the output layer last.

    Attributes:
      hidden: hidden widths, e.g. ``(10, 10)``.
      n_out: output width (number of classes, or 1 for regression).
      activation: relu, tanh, sigmoid or linear.
      rate: drop rate of the hidden layers; one float, or one per hidden layer.
      input_rate: drop rate of the input layer.
      convention: ``"inverted"`` (default) or ``"standard"``, see :class:`MaskedDropout`.
      dtype: parameter and computation dtype.
      weight_init: ``"lecun"`` (Flax's default: weights normal with variance 1/fan_in,
        biases zero) or ``"torch"`` (PyTorch's ``nn.Linear`` default: weights *and* biases
        uniform on [-1/sqrt(fan_in), 1/sqrt(fan_in)]), for reproducing PyTorch code.
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
        """The drop rate of each hidden layer.

        Returns:
          One rate per hidden layer: ``rate`` repeated, or the rates it lists.

        Raises:
          DropstudyError: if ``rate`` lists another number of rates than there are hidden
            layers, or a rate is not in [0, 1).
        """
        rates = self.rate if isinstance(self.rate, Sequence) else [self.rate] * len(self.hidden)
        if len(rates) != len(self.hidden):
            raise DropstudyError(
                f"rate lists {len(rates)} drop rates for {len(self.hidden)} hidden layers; "
                "give one rate, or one per hidden layer"
            )
        return tuple(check_rate(f"rate[{i}]", r) for i, r in enumerate(rates))

    def validate(self) -> MLP:
        """Check every attribute.

        Returns:
          ``self``, so that it can be chained.

        Raises:
          DropstudyError: naming the first attribute that is invalid.
        """
        check_widths("hidden", self.hidden)
        check_positive_int("n_out", self.n_out)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("convention", self.convention, CONVENTIONS)
        check_rate("input_rate", self.input_rate)
        check_choice("weight_init", self.weight_init, ("lecun", "torch"))
        self.hidden_rates()
        return self

    def dropout_layers(self) -> tuple[str, ...]:
        """Names of the dropout layers in the order they run.

        Returns:
          The input's, then each hidden layer's: ``("drop_input", "drop_0", "drop_1")`` for two
          hidden layers.
        """
        return (INPUT_DROPOUT, *(f"drop_{i}" for i in range(len(self.hidden))))

    def dense_layers(self) -> tuple[str, ...]:
        """Names of the dense layers in the order they run, the output layer last.

        Returns:
          ``("dense_0", "dense_1", "out")`` for two hidden layers; dense layer ``i`` reads
          dropout layer ``i``.
        """
        return (*(f"dense_{i}" for i in range(len(self.hidden))), OUTPUT)

    def _dense(self, width: int) -> nn.Module:
        if self.weight_init == "torch":
            return TorchDense(width, dtype=self.dtype)
        return nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype)

    def setup(self) -> None:
        """Check every attribute, then build the layers (flax's ``setup`` hook)."""
        self.validate()
        self.drop_input = MaskedDropout(self.input_rate, convention=self.convention)
        self.dense = [self._dense(w) for w in self.hidden]
        self.drop = [MaskedDropout(r, convention=self.convention) for r in self.hidden_rates()]
        self.out = self._dense(self.n_out)

    def features(self, x: jax.Array, upto: int | None = None) -> jax.Array:
        """Activations entering the output layer (after the last dropout).

        Args:
          x: inputs ``(B, d_in)``.
          upto: when given, stop *before* hidden layer ``upto``'s dropout: the activation of that
            layer is returned unmasked (used by the factorised exact average).

        Returns:
          ``(B, hidden[-1])``, or ``(B, hidden[upto])`` with ``upto``.
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
        """The network's outputs.

        Args:
          x: inputs ``(B, d_in)``.

        Returns:
          ``(B, n_out)``: logits for classification, predictions for regression.
        """
        return self.out(self.features(x))


class PatchConv(nn.Module):
    """A convolution written as patches times a matrix (im2col), with strides and padding.

    The same parameters (``kernel`` of shape ``(*kernel_size, C_in, features)``, ``bias``),
    initialisers and outputs as ``flax.linen.Conv(features, kernel_size, strides, padding)``,
    to float precision (tested), for batched inputs and the paddings below (not
    ``nn.Conv``'s circular, reflect or causal ones, nor dilation or groups). Why: XLA's CPU
    convolution is slow for these small kernels, and slower again under ``vmap`` over seeds
    (a grouped convolution) and in its gradient; strided slices and one matmul are what
    CPUs, GPUs and TPUs do fast, and batch over seeds.

    Attributes:
      features: output channels.
      kernel_size: the window, one size per spatial axis (an int: a 1-D window).
      strides: the step per spatial axis, or one int for every axis (None: 1).
      padding: ``"SAME"`` (as ``lax.conv_general_dilated`` pads: the extra one of an uneven
        total goes after), ``"VALID"``, ``(low, high)`` per spatial axis, one int per
        spatial axis (both sides), or one int for every side, as ``nn.Conv`` reads them.
      kernel_init: the kernel's initialiser (``nn.Conv``'s default).
      bias_init: the bias's initialiser (``nn.Conv``'s default).
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] | None = None
    padding: str | int | Sequence[int | tuple[int, int]] = "SAME"
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """The convolution of ``x``.

        Args:
          x: inputs ``(B, *spatial, C_in)``, one spatial axis per kernel axis.

        Returns:
          ``(B, *spatial_out, features)``: ``spatial`` itself for stride 1 and "SAME".

        Raises:
          DropstudyError: if ``x``, ``strides`` or ``padding`` do not fit ``kernel_size``, or
            a window is wider than its padded input.
        """
        ks = _whole_numbers("kernel_size", self.kernel_size, None, minimum=1)
        strides = _whole_numbers("strides", 1 if self.strides is None else self.strides, len(ks))
        if x.ndim != len(ks) + 2:
            raise DropstudyError(
                f"PatchConv: a {len(ks)}-D kernel takes inputs (batch, {len(ks)} spatial axes, "
                f"channels), got shape {tuple(x.shape)}"
            )
        spatial = x.shape[1:-1]
        if self.padding == "SAME":
            # lax's "SAME": ceil(n / s) outputs; the extra one of an uneven total goes after
            totals = [max((-(-n // s) - 1) * s + k - n, 0) for n, s, k in zip(spatial, strides, ks)]
            pad = [(t // 2, t - t // 2) for t in totals]
        elif self.padding == "VALID":
            pad = [(0, 0)] * len(ks)
        else:
            pad = _paddings(self.padding, len(ks))
        out = [(n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(spatial, pad, ks, strides)]
        if min(out, default=1) < 1:
            raise DropstudyError(
                f"PatchConv: window {ks} is wider than the padded input {tuple(spatial)} "
                f"(padding {pad})"
            )
        c_in = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (*ks, c_in, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        xp = jnp.pad(x, [(0, 0), *pad, (0, 0)])

        def window(o: int, n: int, s: int) -> slice:
            # a stride of 1 as a plain slice: the program stride-1 nets always compiled
            return slice(o, o + n) if s == 1 else slice(o, o + s * (n - 1) + 1, s)

        cols = [
            xp[(slice(None), *(window(o, n, s) for o, n, s in zip(off, out, strides)), slice(None))]
            for off in itertools.product(*(range(k) for k in ks))
        ]
        patches = jnp.concatenate(cols, axis=-1)  # (B, *out, prod(ks) * C_in)
        return patches @ kernel.reshape(-1, self.features) + bias


def _whole_numbers(name: str, v: Any, n: int | None, minimum: int = 1) -> tuple[int, ...]:
    """``v`` as a tuple of whole numbers >= ``minimum``: an int stands for ``n`` of them."""
    try:
        values = (operator.index(v),) * (n or 1) if not isinstance(v, Sequence) else v
        values = tuple(operator.index(x) for x in values)
    except TypeError:
        values = ()
    if (
        not values
        or (n is not None and len(values) != n)
        or any(isinstance(x, bool) or x < minimum for x in values)
    ):
        per = f", {n} of them (one per spatial axis of the kernel)" if n else ""
        raise DropstudyError(
            f"PatchConv: {name} must be whole numbers >= {minimum}{per}, or one int; got {v!r}"
        )
    return values


def _paddings(padding: Any, n: int) -> list[tuple[int, int]]:
    """Explicit padding as ``nn.Conv`` reads it: ``(low, high)`` per axis, an int per axis,
    or one int for every side."""
    try:
        if not isinstance(padding, Sequence) or isinstance(padding, str):
            p = operator.index(padding)
            pad = [(p, p)] * n
        else:
            pad = [
                (operator.index(a), operator.index(a))
                if not isinstance(a, Sequence)
                else tuple(operator.index(b) for b in a)
                for a in padding
            ]
    except TypeError:
        pad = []
    if len(pad) != n or any(len(p) != 2 or min(p) < 0 for p in pad):
        raise DropstudyError(
            f"PatchConv: padding must be 'SAME', 'VALID', one (low, high) pair of whole "
            f"numbers >= 0 per spatial axis ({n}), an int per axis, or one int; got {padding!r}"
        )
    return pad


class ConvNet(nn.Module):
    """A small conv net whose dropout masks whole channels: any linen model works the same.

    ``x`` of shape ``(B, *spatial, C_in)`` (8 x 8 x 1 for digits; 40 x 1 for MNIST-1D with a
    1-D ``kernel``), or flat ``(B, d)`` with ``input_shape`` giving the shape to restore,
    maps to logits ``(B, n_out)``. Each conv layer (``kernel``: its window, one entry per
    spatial axis; same padding) is followed by ReLU and a dropout layer that broadcasts over
    the spatial axes, so its unit shape is the channel count: a subnetwork keeps or drops
    entire feature maps. Then one hidden dense layer with its own dropout.

    Attributes:
      channels: output channels of each conv layer.
      n_out: number of classes.
      rate: drop rate of the conv layers' channels (0: no channel dropout).
      dense_rate: drop rate of the hidden dense layer.
      dense_width: width of the hidden dense layer.
      kernel: conv window, e.g. ``(3, 3)`` for images, ``(5,)`` for 1-D signals.
      input_shape: per-example shape ``(*spatial, C_in)`` to reshape a flat input to (None:
        the input arrives shaped).
    """

    channels: Sequence[int] = (8, 16)
    n_out: int = 10
    rate: float = 0.25
    dense_rate: float = 0.5
    dense_width: int = 32
    kernel: Sequence[int] = (3, 3)
    input_shape: Sequence[int] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """The network's logits.

        Args:
          x: inputs ``(B, *spatial, C_in)``, or flat ``(B, d)`` with ``input_shape`` set.

        Returns:
          Logits ``(B, n_out)``.

        Raises:
          DropstudyError: if ``kernel``, ``channels``, ``dense_width`` or ``input_shape`` is
            invalid, or ``x`` does not fit them.
        """
        if not isinstance(self.kernel, Sequence) or not self.kernel:
            raise DropstudyError(
                f"ConvNet: kernel must be a tuple, one size per spatial axis, e.g. (3, 3) or "
                f"(5,); got {self.kernel!r}"
            )
        for name, sizes in (("kernel", self.kernel), ("channels", self.channels)):
            if isinstance(sizes, str) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in sizes
            ):
                raise DropstudyError(
                    f"ConvNet: {name} must be positive whole numbers, e.g. "
                    f"{'(3, 3)' if name == 'kernel' else '(8, 16)'}; got {sizes!r}"
                )
        check_positive_int("ConvNet dense_width", self.dense_width)
        if self.input_shape is not None and len(self.input_shape) != len(self.kernel) + 1:
            raise DropstudyError(
                f"ConvNet: input_shape {tuple(self.input_shape)} must be the spatial sizes and "
                f"then the channel count ({len(self.kernel)} + 1 entries for a "
                f"{len(self.kernel)}-D kernel), e.g. (40, 1) for a 1-D signal"
            )
        if self.input_shape is not None:
            if math.prod(x.shape[1:]) != math.prod(self.input_shape):
                raise DropstudyError(
                    f"ConvNet: inputs of shape {tuple(x.shape[1:])} per example cannot take "
                    f"input_shape={tuple(self.input_shape)}"
                )
            x = x.reshape(x.shape[0], *self.input_shape)
        if x.ndim != len(self.kernel) + 2:
            raise DropstudyError(
                f"ConvNet with a {len(self.kernel)}-D kernel needs inputs (B, "
                f"{', '.join(['size'] * len(self.kernel))}, channels), got shape {x.shape}; "
                "pass input_shape to reshape flat inputs"
            )
        spatial = tuple(range(1, x.ndim - 1))
        for i, c in enumerate(self.channels):
            # Named as linen.Conv would name it: the same parameter tree and initial values.
            x = jax.nn.relu(PatchConv(c, tuple(self.kernel), name=f"Conv_{i}")(x))
            x = MaskedDropout(self.rate, broadcast_dims=spatial)(x)
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(nn.Dense(self.dense_width)(x))
        x = MaskedDropout(self.dense_rate)(x)
        return nn.Dense(self.n_out)(x)


def _jsonable(v: Any) -> Any:
    """A module attribute as plain JSON (deterministic: functions by qualified name)."""
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    try:
        return jnp.dtype(v).name
    except TypeError:
        pass
    if callable(v):
        return f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', type(v).__name__)}"
    return repr(v)


def model_config(model: nn.Module) -> dict:
    """The model's attributes (its dataclass fields) as a JSON-ready dict, for any linen module.

    What checkpoints and error messages record: every field but ``parent`` and ``name``,
    tuples as lists, dtypes by name and functions by qualified name.

    Args:
      model: a linen module.

    Returns:
      ``{field name: value}``.
    """
    return {
        f.name: _jsonable(getattr(model, f.name))
        for f in dataclasses.fields(model)
        if f.name not in ("parent", "name")
    }


def model_class(model: nn.Module) -> str:
    """``module.QualName`` of the model's class.

    Args:
      model: the model.

    Returns:
      The class's module and qualified name, dot-joined.
    """
    return f"{type(model).__module__}.{type(model).__qualname__}"


def mlp_from_config(d: dict) -> MLP:
    """Rebuild an :class:`MLP` from :func:`model_config`'s dict (checked).

    Args:
      d: the dict; its ``hidden`` and ``rate`` lists become tuples and its ``dtype`` name a
        dtype.

    Returns:
      The :class:`MLP`, validated.

    Raises:
      DropstudyError: if ``d`` has fields an :class:`MLP` does not, or an attribute is
        invalid (:meth:`MLP.validate`).
    """
    known = {f.name for f in dataclasses.fields(MLP)} - {"parent", "name"}
    unknown = set(d) - known
    if unknown:
        raise DropstudyError(f"MLP config has unknown fields {sorted(unknown)}")
    kw = dict(d)
    for k in ("hidden", "rate"):
        if isinstance(kw.get(k), list):
            kw[k] = tuple(kw[k])
    if "dtype" in kw:
        kw["dtype"] = jnp.dtype(kw["dtype"])
    return MLP(**kw).validate()
