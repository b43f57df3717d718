"""The study's seeds: ``0 .. n - 1``, or a second, disjoint list from another first seed.

A verdict that another list of seeds would flip is fragile. ``dropstudy run --seed-start K``
runs the same code on seeds ``K .. K + n - 1`` (into a folder of its own), and ``dropstudy
report --replicate`` sets each primary's verdict on that list beside the first list's. A
module of its own, as :mod:`.tuning` is, so that the runner sets the first seed without
importing the experiments, and every experiment's ``plan`` reads it through
:func:`study_seeds`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

SEED_START: contextvars.ContextVar[int] = contextvars.ContextVar("seed_start", default=0)


def study_seeds(n: int) -> list[int]:
    """The run's ``n`` seeds, from its first seed (0 unless a run sets another).

    Args:
      n: how many.

    Returns:
      ``[start, ..., start + n - 1]``.
    """
    start = SEED_START.get()
    return list(range(start, start + n))


@contextlib.contextmanager
def seed_start(start: int) -> Iterator[None]:
    """Plans made in the block draw their seeds from ``start`` (:func:`study_seeds`).

    Args:
      start: the first seed, >= 0.
    """
    token = SEED_START.set(start)
    try:
        yield
    finally:
        SEED_START.reset(token)
