"""Input checks shared by the whole library.

Every public function validates what it is given and raises :class:`DropstudyError`
(a ``ValueError``) naming the argument, what was wrong and what to do, so that no
bad input reaches JAX and comes back as a deep traceback or a silent wrong number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
CONVENTIONS = ("inverted", "standard")
TASKS = ("classification", "binary", "regression")


class DropstudyError(ValueError):
    """A user-facing error: the message says which argument is wrong and why."""


def check_rate(name: str, rate: float) -> float:
    """Check a drop rate: a finite float in [0, 1) (1 would drop every unit).

    Args:
      name: the argument's name, for the message.
      rate: the value to check.

    Returns:
      ``rate`` as a float.

    Raises:
      DropstudyError: if ``rate`` is not a number, or not a finite number in [0, 1).
    """
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise DropstudyError(f"{name} must be a number in [0, 1), got {rate!r}") from None
    if not math.isfinite(r) or not 0.0 <= r < 1.0:
        raise DropstudyError(
            f"{name} must be a drop rate in [0, 1) (the probability of dropping a unit; "
            f"keep = 1 - rate), got {rate!r}"
        )
    return r


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices``.

    Args:
      name: what the value chooses, for the message.
      value: the value to check.
      choices: the allowed values.

    Returns:
      ``value`` unchanged.

    Raises:
      DropstudyError: if ``value`` is not in ``choices`` (the message lists them).
    """
    if value not in choices:
        raise DropstudyError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Check an integer that must be at least ``minimum``.

    Args:
      name: the argument's name, for the message.
      value: the value to check: a Python or numpy integer (a bool is refused).
      minimum: the smallest value allowed.

    Returns:
      ``value`` as an ``int``.

    Raises:
      DropstudyError: if ``value`` is not an integer, or is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DropstudyError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise DropstudyError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_float(name: str, value: float, allow_zero: bool = False) -> float:
    """Check a finite number that must be positive (or zero, with ``allow_zero``).

    Args:
      name: the argument's name, for the message.
      value: the value to check.
      allow_zero: whether 0 is allowed.

    Returns:
      ``value`` as a float.

    Raises:
      DropstudyError: if ``value`` is not a number, not finite, negative, or 0 without
        ``allow_zero``.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DropstudyError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise DropstudyError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    """Check a list of layer widths: integers >= 1.

    Args:
      name: the argument's name, for the message.
      widths: the widths.

    Returns:
      The widths as a tuple of ints.

    Raises:
      DropstudyError: if ``widths`` cannot be read as integers, or a width is below 1.
    """
    try:
        out = tuple(int(w) for w in widths)
    except (TypeError, ValueError):
        raise DropstudyError(f"{name} must be a list of layer widths, got {widths!r}") from None
    if any(w < 1 for w in out):
        raise DropstudyError(f"{name}: every layer width must be >= 1, got {list(out)}")
    return out


def check_array(
    name: str,
    x,
    *,
    ndim: int | None = None,
    finite: bool = True,
    dtype_kind: str = "fiu",
) -> np.ndarray:
    """Check an array-like on the host: rank, numeric dtype and (optionally) finiteness.

    Args:
      name: the argument's name, for the message.
      x: the array-like.
      ndim: the rank it must have (``None``: any).
      finite: refuse NaN and infinite values (of a float array).
      dtype_kind: the numpy dtype kinds allowed (default ``"fiu"``: float, signed and
        unsigned integer).

    Returns:
      ``x`` as a numpy array.

    Raises:
      DropstudyError: if ``x`` cannot be read as an array, has another dtype kind or rank, or
        (with ``finite``) holds NaN or infinite values.
    """
    try:
        arr = np.asarray(x)
    except Exception as e:
        raise DropstudyError(f"{name} could not be read as an array: {e}") from None
    if arr.dtype.kind not in dtype_kind:
        raise DropstudyError(f"{name} must be numeric, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise DropstudyError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DropstudyError(
            f"{name} contains {bad} NaN or infinite value(s); clean or impute the data first"
        )
    return arr


def parse_int_list(name: str, text: str) -> tuple[int, ...]:
    """Parse a CLI list like ``"10,10"``.

    Args:
      name: the option's name, for the message.
      text: comma-separated integers.

    Returns:
      The integers as a tuple.

    Raises:
      DropstudyError: if an item is not an integer, or the list is empty.
    """
    try:
        vals = tuple(int(t) for t in str(text).split(",") if t.strip() != "")
    except ValueError:
        raise DropstudyError(
            f"{name} must be comma-separated integers like 10,10, got {text!r}"
        ) from None
    if not vals:
        raise DropstudyError(f"{name} must list at least one integer, got {text!r}")
    return vals


def check_key(name: str, key, batched: bool = False):
    """Check a JAX PRNG key made with ``jax.random.key``.

    Args:
      name: the argument's name, for the message.
      key: the key.
      batched: whether one key per seed, ``(S,)``, is expected (else a scalar key, ``()``).

    Returns:
      ``key`` unchanged.

    Raises:
      DropstudyError: if ``key`` is not a typed PRNG key (e.g. a raw ``jax.random.PRNGKey``
        array), or has the wrong rank.
    """
    import jax  # local: validate is imported by modules that must not need JAX at import

    ok = hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not ok:
        raise DropstudyError(
            f"{name} must be a PRNG key from jax.random.key(seed), got {type(key).__name__} "
            f"{key!r:.40}"
        )
    want = 1 if batched else 0
    if key.ndim != want:
        what = "one key per seed, shape (S,)" if batched else "a single key, shape ()"
        raise DropstudyError(f"{name} must be {what}; got shape {key.shape}")
    return key


def check_hashable(name: str, obj) -> None:
    """Check that ``obj`` is hashable, as models and configurations are static jit arguments.

    Args:
      name: what ``obj`` is, for the message.
      obj: the object to check.

    Raises:
      DropstudyError: if ``hash(obj)`` fails (e.g. a list among its attributes).
    """
    try:
        hash(obj)
    except TypeError as e:
        raise DropstudyError(
            f"{name} must be hashable (it is a static argument of jax.jit): {e}; use tuples, "
            "not lists, for its attributes, e.g. hidden=(10, 10)"
        ) from None


def binary_shape_message(shape) -> str:
    """The refusal for a binary model whose outputs are not ``(B, 1)``.

    Args:
      shape: the model's output shape.

    Returns:
      The message.
    """
    return (
        f"task='binary' needs the model's logits of shape (B, 1), got {tuple(shape)}: return "
        "the one logit per example as (B, 1), e.g. nn.Dense(1)(x) without [:, 0]"
    )
