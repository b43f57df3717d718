"""jax.random's numbers for training's inner loop, in forms XLA:CPU runs fast.

On CPU, ``jax.random`` hashes with Threefry-2x32 through a rolled five-iteration loop (to
keep compile times short). Inside a training step that loop is a dozen tiny kernels run
one after another, every step. Here the same hash is written out unrolled, so XLA fuses
counter, hash, conversion and comparison with the keep probabilities into one loop, and
only the counters of droppable units are hashed. Each epoch's permutation of the training
set is sorted by single-array integer sorts instead of a key-value sort (:func:`permutation`).

The numbers are ``jax.random``'s own: :func:`fold_in`, :func:`uniform` and
:func:`permutation` equal ``jax.random.fold_in``, ``jax.random.uniform`` and
``jax.random.permutation`` bit for bit (``tests/test_rng.py``), so using them changes no
result. Keys of another PRNG implementation, a non-partitionable threefry configuration, or
arrays of 2^32 or more elements fall back to ``jax.random`` (:func:`permutation` keeps
``jax.random``'s own bits for any key, and falls back for a batch of keys).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k1, k2, x1, x2) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block cipher (20 rounds), unrolled.

    Args:
      k1: first word of the key, a uint32 scalar.
      k2: second word of the key, a uint32 scalar.
      x1: first words of the counters, uint32, of any shape matching ``x2``'s.
      x2: second words of the counters, uint32, of any shape matching ``x1``'s.

    Returns:
      ``(y1, y2)``: the two words of the cipher's output, uint32, of the counters' shape.
    """
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x1 = x1 + x2
            x2 = _rotl(x2, r) ^ x1
        x1 = x1 + ks[(block + 1) % 3]
        x2 = x2 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x1, x2


def _fast(key: jax.Array) -> bool:
    return (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
    )


def fold_in(key: jax.Array, data) -> jax.Array:
    """``jax.random.fold_in(key, data)`` for a scalar key and a non-negative int32 ``data``.

    Args:
      key: a scalar PRNG key; a batched key, or one that is not threefry with the
        partitionable configuration, goes to ``jax.random.fold_in`` itself.
      data: a non-negative int32.

    Returns:
      The new key, bit for bit ``jax.random.fold_in(key, data)``.
    """
    if not _fast(key) or key.shape:
        return jax.random.fold_in(key, data)
    k = jax.random.key_data(key)
    y1, y2 = threefry2x32(k[0], k[1], jnp.uint32(0), jnp.asarray(data).astype(jnp.uint32))
    return jax.random.wrap_key_data(jnp.stack([y1, y2]), impl="threefry2x32")


def uniform(key: jax.Array, shape: tuple[int, ...], columns=None) -> jax.Array:
    """``jax.random.uniform(key, shape)`` restricted to the last-axis positions ``columns``.

    Args:
      key: a scalar PRNG key.
      shape: the shape of the whole draw.
      columns: the last-axis positions to return, a sorted sequence of ints (default: all).

    Returns:
      float32 values in [0, 1), ``(*shape[:-1], len(columns))``: each the value that
      ``jax.random.uniform(key, shape)`` puts at that position.
    """
    cols = np.arange(shape[-1]) if columns is None else np.asarray(columns, dtype=np.int64)
    size = int(np.prod(shape))
    if not _fast(key) or key.shape or size >= 2**32:
        return jax.random.uniform(key, shape)[..., cols]
    k = jax.random.key_data(key)
    # The counter of an element is its row-major position in ``shape``.
    lead = shape[:-1]
    rows = jnp.arange(int(np.prod(lead)), dtype=jnp.uint32).reshape(*lead, 1)
    counter = rows * np.uint32(shape[-1]) + jnp.asarray(cols, jnp.uint32)
    b1, b2 = threefry2x32(k[0], k[1], jnp.zeros_like(counter), counter)
    bits = (b1 ^ b2) >> np.uint32(9) | np.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(bits, jnp.float32) - jnp.float32(1.0)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)``, its stable sorts done as sorts of plain integers.

    ``jax.random.permutation`` sorts the indices by fresh 32-bit random keys, one stable
    key-value sort per round. XLA:CPU runs a key-value sort through a comparator function
    called for every comparison, far slower than its sort of one array of unsigned integers.
    Here each round's stable sort is a least-significant-digit radix sort whose passes sort
    single ``uint32`` arrays: a pass packs a digit of the keys above the position the index
    holds so far, so equal digits keep their order (the passes together are the stable
    sort). Training draws one permutation per epoch, which costs a small net as much as
    its epoch's steps (``benchmarks/TRAINING.md``).

    Args:
      key: a scalar typed PRNG key (``jax.random.key``, any implementation: the random bits
        are ``jax.random``'s). Raw ``uint32`` key data, a batch of keys, and ``n`` below 2
        or above 2^21 (four passes or more a round) go to ``jax.random.permutation`` itself.
      n: the number of indices, a Python int.

    Returns:
      ``(n,)`` of JAX's default integer type (int32; int64 under ``jax_enable_x64``): a
      permutation of ``0 .. n - 1``, bit for bit ``jax.random.permutation(key, n)``.
    """
    typed = jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)
    if not typed or key.shape or not isinstance(n, int) or not 2 <= n <= MAX_RADIX:
        return jax.random.permutation(key, n)
    # jax.random.permutation's own rounds: enough 32-bit keys that ties are unlikely
    rounds = int(np.ceil(3 * np.log(n) / np.log(np.iinfo(np.uint32).max)))
    x = jnp.arange(n)
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        x = x[stable_order(jax.random.bits(subkey, (n,), jnp.uint32))]
    return x


# Above 2^21 indices a round takes four passes or more, each with two gathers: not measured
# to beat one key-value sort there, so permutation leaves those to jax.random.
MAX_RADIX = 2**21


def stable_order(keys: jax.Array) -> jax.Array:
    """The indices that sort ``keys`` stably, by single-array ``uint32`` sorts.

    Args:
      keys: uint32 ``(n,)``, ``2 <= n < 2^31`` (the passes grow with ``n``: two up to
        2^16, three up to 2^21).

    Returns:
      int32 ``(n,)``: ``order`` with ``keys[order]`` ascending and equal keys in index
      order (``np.argsort(keys, kind="stable")``).
    """
    n = keys.shape[0]
    width = (n - 1).bit_length()  # bits of a position
    digit = 32 - width  # bits of the key sorted per pass
    order = jnp.arange(n, dtype=jnp.uint32)
    position = order
    for low in range(0, 32, digit):
        d = (keys[order] >> np.uint32(low)) & np.uint32((1 << digit) - 1)
        packed = jax.lax.sort((d << np.uint32(width)) | position)
        order = order[packed & np.uint32((1 << width) - 1)]
    return order.astype(jnp.int32)
