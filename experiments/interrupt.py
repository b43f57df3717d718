"""Ctrl-C during a run: stop at the next cell boundary even if Python lost the exception."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

INTERRUPTED = threading.Event()  # set by Ctrl-C; the cell loop checks it between cells


def _on_sigint(signum, frame):
    INTERRUPTED.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def sticky_interrupt() -> Iterator[None]:
    """Ctrl-C that cannot be lost: Python swallows a KeyboardInterrupt raised while a
    finaliser (``__del__``, a weakref callback) runs, and the run would go on to the end.
    The handler also sets :data:`INTERRUPTED`, which :meth:`Context.run_cells` checks
    after every cell. Installed only where SIGINT has Python's default handler (not where
    it is ignored, as for a background job), and only in the main thread."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    INTERRUPTED.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        INTERRUPTED.clear()
