"""Files written so that a reader never sees half of one, and the versions they record."""

from __future__ import annotations

import os
from pathlib import Path

import flax
import jax
import numpy as np
import optax


def versions() -> dict[str, str]:
    """Library versions recorded in checkpoints and results files.

    Returns:
      ``{"jax": ..., "flax": ..., "optax": ..., "numpy": ...}``: each library's
      ``__version__``.
    """
    return {
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file beside ``path`` (flushed and synced to disk), which then
    replaces ``path``; a failed or interrupted write leaves no temporary file behind.

    Args:
      path: the file to write.
      data: its new contents.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed or interrupted write leaves nothing behind
        raise
