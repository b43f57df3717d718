"""Where the study's tuned arms are cached: set by the run, read by :func:`.protocol.tune`.

A module of its own so that the run context (:mod:`.common`) and the protocol can both reach
the store without importing each other.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

# The store of the run in flight (None outside a run: tuning is then computed, not cached).
STORE: contextvars.ContextVar[Callable[..., dict] | None] = contextvars.ContextVar(
    "tuning", default=None
)


@contextlib.contextmanager
def tuning_store(store: Callable[..., dict] | None) -> Iterator[None]:
    """Cache the arms' choices through ``store`` while the block runs (None: no cache).

    Args:
      store: ``store(fn, kwargs, prefix) -> result``: ``fn(**kwargs)``, reused when stored
        under the same key (the study's is :class:`.common.TuningStore`, one file per arm
        under ``<scale folder>/tuning``, keyed as a cell is).
    """
    token = STORE.set(store)
    try:
        yield
    finally:
        STORE.reset(token)
