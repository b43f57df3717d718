"""Resumable experiment cells.

A cell is one unit of work of an experiment (one configuration, with the seeds that are
trained together in one vmapped call). :meth:`CellStore.get` returns the stored result when
the cell's file exists and its configuration hash matches, and otherwise computes it and
writes it atomically (temporary file, then rename). An interrupted run therefore loses only
the cell in flight, and a changed configuration never reuses a stale cell. A store may also
read other folders' cells (``reuse``): one stored there under the same key is copied in
rather than computed, so a run that changes only what the cells do not depend on (a margin)
recomputes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dropstudy.io import atomic_write

from .results import clean, read_json, write_json

CELL_FORMAT = 1
log = logging.getLogger("dropstudy")


def changed(old: Any, new: dict) -> str:
    """Why a stored cell's key differs from ``new``, in words.

    Args:
      old: the stored cell's key (anything, as read from its file).
      new: the cell's key now (:meth:`.common.Cell.key`).

    Returns:
      The parts of the key that changed (``code``, ``args``, ``versions``, ``devices``,
      ``machine``, ``fn``), in words; ``"format"`` when none did, and a note when the stored
      cell has no key.
    """
    if not isinstance(old, dict):
        return "the stored cell has no key"
    # a part the stored key lacks came into keys after it was written: nothing is known to
    # have changed there
    older = [k for k in new if k not in old]
    parts = [k for k in new if k in old and clean(old[k]) != clean(new[k])]
    names = {"code": "the code it runs", "args": "its arguments", "fn": "its function",
             "machine": "the machine (CPU model or XLA flags)"}  # fmt: skip
    why = ["changed: " + ", ".join(names.get(k, k) for k in parts)] if parts else []
    why += [f"the stored key predates keys' {', '.join(older)}"] if older else []
    return "; ".join(why) or "format"


def config_hash(config: dict) -> str:
    """Stable digest of a JSON-able configuration.

    Args:
      config: the configuration (a cell's key); cleaned as results files are
        (:func:`.results.clean`).

    Returns:
      A 20-character hex digest.
    """
    blob = json.dumps(clean(config), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def read_cell(p: Path, config: dict, blob: bytes | None = None) -> tuple[bool, Any, str]:
    """The result stored in cell file ``p`` under ``config``, if valid.

    Args:
      p: a cell's file.
      config: the cell's key (:meth:`.common.Cell.key`).
      blob: the file's bytes, when already read (else ``p`` is read).

    Returns:
      ``(True, result, "")`` when the file reads, is of this cell format and has the hash of
      ``config``; else ``(False, None, why not)``.
    """
    if blob is None and not p.is_file():
        return False, None, "no stored result"
    try:
        stored = json.loads(blob) if blob is not None else read_json(p)
    except Exception:
        return False, None, "the stored file is unreadable"
    if stored.get("format") == CELL_FORMAT and stored.get("config_hash") == config_hash(config):
        return True, stored["result"], ""
    return False, None, changed(stored.get("config"), config)


class CellStore:
    """Cells of one experiment under ``root/cells/``."""

    def __init__(self, root: Path, reuse: list[Path] | tuple[Path, ...] = ()):
        """A store of cells under ``root/cells``, reading ``reuse`` too.

        Args:
          root: the experiment's folder; its cells go to ``root/cells``.
          reuse: other cell folders, read (never written) when a cell is not stored here: a
            cell stored there under the same key is copied here instead of computed.
        """
        self.dir = Path(root) / "cells"
        self.reuse = [Path(r) for r in reuse]
        self.computed: list[str] = []
        self.reused: list[str] = []
        # cells copied from a ``reuse`` folder (each is in ``reused`` too)
        self.copied: list[str] = []

    def path(self, name: str) -> Path:
        """The file of cell ``name``.

        Args:
          name: the cell's label.

        Returns:
          ``root/cells/NAME.json``, every character of the name other than letters, digits and
          ``-_.=`` replaced by ``_``.
        """
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
        return self.dir / f"{safe}.json"

    def stored_key(self, name: str) -> Any:
        """The key cell ``name`` was stored under (None when there is no readable file).

        Args:
          name: the cell's label.

        Returns:
          The stored ``config`` as read, or None.
        """
        try:
            return read_json(self.path(name)).get("config")
        except Exception:
            return None

    def lookup(self, name: str, config: dict) -> tuple[bool, Any, str]:
        """Cell ``name``'s stored result under ``config`` (:func:`read_cell` of its file).

        Args:
          name: the cell's label.
          config: the cell's key (:meth:`.common.Cell.key`).

        Returns:
          :func:`read_cell`'s ``(found, result, why not)``.
        """
        return read_cell(self.path(name), config)

    def get(self, name: str, config: dict, compute: Callable[[], Any]) -> Any:
        """The result of cell ``name`` under ``config``: reused when valid, else computed.

        A stored result is valid when its file reads, is of this cell format and has the hash of
        ``config``. When none is stored here, the ``reuse`` folders are read in turn, and the
        first valid file found is copied here; otherwise the result is computed. What is
        written is written atomically. Each name goes to ``reused`` or ``computed`` (and a
        copied one to ``copied`` too).

        Args:
          name: the cell's label.
          config: the cell's key (:meth:`.common.Cell.key`).
          compute: computes the result.

        Returns:
          The result, as plain JSON types (:func:`.results.clean`).
        """
        h = config_hash(config)
        p = self.path(name)
        found, stored, why = self.lookup(name, config)
        if found:
            self.reused.append(name)
            log.debug("%s: reused %s", name, p)
            return stored
        for other in self.reuse:
            if other.resolve() == self.dir.resolve():
                continue
            try:  # read once: the bytes checked are the bytes copied
                blob = (other / p.name).read_bytes()
            except OSError:
                continue
            found, result, _ = read_cell(other / p.name, config, blob)
            if found:
                p.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(p, blob)
                self.reused.append(name)
                self.copied.append(name)
                log.info("%s: copied from %s (stored there under the same key)", name, other)
                return result
        log.debug("%s: computing (%s)", name, why)
        result = clean(compute())
        write_json(p, {"format": CELL_FORMAT, "config_hash": h, "config": config, "result": result})
        self.computed.append(name)
        return result
