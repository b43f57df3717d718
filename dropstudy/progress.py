"""Long averages in segments: a cost estimate, a progress bar and a bound on the work.

Every averaging kernel (the streamed average, the factorised exact average, the gathered
MC average) is one ``lax.scan`` over steps with a running carry. :func:`masked_scan` runs
steps ``first .. first + steps - 1`` of such a scan, and :func:`run` calls that segment
kernel over the whole range, passing the carry on: the result is bitwise the one long
scan's, and between segments the host can time, report and show progress. The segments
after the first (which compiles) are timed, which gives the estimate of the rest and sizes
the next one; a run whose estimate passes :data:`PROGRESS_AFTER` seconds shows a tqdm bar on
a terminal or in a notebook.

:func:`check_work` is the bound: averages of more than :data:`MAX_WORK` (subnetworks x
examples) are refused unless forced: minutes on the factorised exact path, hours on the
generic and MC paths of wider or convolutional nets, on a CPU.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .validate import DropstudyError

# Subnetworks x examples past which an average is refused unless forced: 2^36, about 7e10.
# On 2 CPU cores the factorised exact path runs about 3e8 (subnetwork, example) pairs a
# second on a 2x10 MLP (benchmarks/RESULTS.md: 2^20 x 360 in about 1 s), so this is
# minutes there, and hours on the generic and MC paths of wider or convolutional nets.
MAX_WORK = 2**36
# A run whose estimate passes this many seconds shows a progress bar (on a terminal).
PROGRESS_AFTER = 5.0
# Set in the environment, progress=None shows no bar: for a program that wants none on its
# stderr (the command line sets it for --no-progress and -q). Display only: no number moves.
QUIET_VARIABLE = "DROPSTUDY_NO_PROGRESS"
# Each segment is sized to take about this long: a call from the host costs a few
# milliseconds on a CPU (measured: ~7 ms for the exact kernel on 2 cores), a few percent of it.
SEGMENT_SECONDS = 0.25
# A segment shorter than this times the call as much as the work: no estimate from it.
MIN_TIMED = 0.05

log = logging.getLogger("dropstudy")


def check_work(what: str, subnetworks: int, examples: int, *, force: bool, fix: str) -> None:
    """Refuse an average of more than :data:`MAX_WORK` subnetwork-examples unless forced.

    Args:
      what: the average, for the message (``"the exact average"``).
      subnetworks: subnetworks averaged.
      examples: examples per subnetwork.
      force: run anyway.
      fix: what to do instead, for the message.

    Raises:
      DropstudyError: if ``subnetworks * examples > MAX_WORK`` and not ``force``.
    """
    work = subnetworks * examples
    if work > MAX_WORK and not force:
        raise DropstudyError(
            f"{what} evaluates {subnetworks:,} subnetworks x {examples:,} examples = "
            f"{work:.3g} subnetwork-examples, past the bound of {MAX_WORK:.3g} "
            f"(dropstudy.progress.MAX_WORK; minutes to hours on a CPU, by the net and the "
            f"path): {fix}, or pass force=True to run it anyway (progress=True shows how far "
            "it got and the time left)"
        )


def check_force(force: Any) -> bool:
    """``force`` as given, checked: a bool.

    Args:
      force: the argument.

    Returns:
      ``force``.

    Raises:
      DropstudyError: if it is not a bool.
    """
    if not isinstance(force, bool | np.bool_):
        raise DropstudyError(f"force must be True or False, got {force!r}")
    return bool(force)


def check_progress(progress: Any) -> bool | None:
    """``progress`` as given, checked: ``None`` (a bar when the estimate is long), or a bool.

    Args:
      progress: the argument.

    Returns:
      ``progress``.

    Raises:
      DropstudyError: if it is neither ``None`` nor a bool.
    """
    if progress is not None and not isinstance(progress, bool | np.bool_):
        raise DropstudyError(
            f"progress must be True, False or None (a bar when the run is long), got {progress!r}"
        )
    return None if progress is None else bool(progress)


def masked_scan(body: Callable, carry: Any, *, n_steps: int, first, steps):
    """Steps ``first, ..., min(first + steps, n_steps) - 1`` of a scan of ``n_steps``.

    A ``lax.while_loop`` whose trip count is known only at run time: one compiled segment
    serves every ``first`` and ``steps``, and XLA compiles its body as it compiles the one
    long loop's (a short loop of known length may be unrolled and fused otherwise, which
    moves sums at float rounding), so segments give the one long scan's carry bit for bit.

    Args:
      body: ``body(carry, j) -> carry`` for step ``j``.
      carry: the carry before step ``first``.
      n_steps: the scan's length.
      first: the first step (traced).
      steps: steps in this segment (traced).

    Returns:
      The carry after the segment.
    """
    first = jnp.asarray(first, jnp.int32)
    end = jnp.minimum(first + jnp.asarray(steps, jnp.int32), n_steps)

    def step(state):
        c, j = state
        return body(c, j), j + 1

    return jax.lax.while_loop(lambda state: state[1] < end, step, (carry, first))[0]


def run(
    segment: Callable[[Any, int, int], Any],
    carry: Any,
    n_steps: int,
    *,
    desc: str,
    progress: bool | None = None,
    subnetworks: tuple[int, int] | None = None,
) -> Any:
    """Run a segment kernel over ``n_steps`` steps, timing it and showing progress.

    The first segment is one step (it compiles), the second one step too (it times a step);
    then each segment is sized to take about :data:`SEGMENT_SECONDS` from the last one's
    rate (a rest estimated shorter than that runs as one segment), so the calls from the
    host cost little beside the work (with several processes,
    process 0's sizes, so every process makes the same calls). With ``progress=False`` the
    whole range is one segment.

    Args:
      segment: ``segment(carry, first, steps) -> carry``: steps ``first .. first + steps -
        1`` (a :func:`masked_scan`, compiled once for every ``first`` and ``steps``).
      carry: the carry before step 0.
      n_steps: the scan's length.
      desc: what runs, for the estimate and the bar (``"exact average over 16,777,216
        subnetworks"``).
      progress: ``None``: a bar once a timed segment's estimate of the rest passes
        :data:`PROGRESS_AFTER` seconds and stderr is a terminal or a notebook, unless
        ``DROPSTUDY_NO_PROGRESS`` is set (the estimate is logged then); ``True``: a bar
        after the first segment, which compiles (its rate gives the time left); ``False``:
        none. Bars show on process 0 only.
      subnetworks: ``(per step, total)``: the bar counts subnetworks, not steps; ``None``:
        steps.

    Returns:
      The carry after the last step.
    """
    per, total = subnetworks or (1, n_steps)
    unit = "step" if subnetworks is None else "subnetwork"
    # without a bar, one segment: the same compiled kernel and the same bits, no round trips
    first, size, calls, bar = 0, n_steps if progress is False else 1, 0, None
    several, shows = jax.process_count() > 1, jax.process_index() == 0
    try:
        while first < n_steps:
            steps = min(size, n_steps - first)
            start = time.perf_counter()
            carry = segment(carry, first, steps)
            jax.block_until_ready(carry)
            elapsed = time.perf_counter() - start
            first, calls = first + steps, calls + 1
            if bar is not None:
                bar.update(min(first * per, total) - bar.n)
            elif progress and shows:
                bar = _bar(total, desc, min(first * per, total), unit)
            if calls == 1:
                continue  # it compiled: its time says nothing of the rate
            rate = elapsed / steps
            estimate = rate * (n_steps - first)
            if (
                bar is None
                and progress is None
                and not os.environ.get(QUIET_VARIABLE)
                and shows
                and elapsed > MIN_TIMED
                and estimate > PROGRESS_AFTER
                and _interactive()
            ):
                log.info("%s: about %s to go", desc, _duration(estimate))
                bar = _bar(total, desc, min(first * per, total), unit)
            # at most 8x the last segment: its rate includes the call's own cost; a rest
            # shorter than one segment's time runs as one
            size = max(1, min(8 * steps, math.floor(SEGMENT_SECONDS / max(rate, 1e-9))))
            if estimate < SEGMENT_SECONDS:
                size = n_steps - first
            if several:
                # every process must make the same calls (the kernels' collectives): process
                # 0's clock sizes them all
                from jax.experimental import multihost_utils

                size = int(multihost_utils.broadcast_one_to_all(np.int64(size)))
    finally:
        if bar is not None:
            bar.close()
    return carry


def _interactive() -> bool:
    """A terminal, or a Jupyter kernel (whose stderr is no terminal but shows bars)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _bar(total: int, desc: str, initial: int, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, initial=initial)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{math.floor(seconds / 60)} min {seconds % 60:.0f} s"
    return f"{seconds / 3600:.1f} h"
