"""A persistent cache of XLA's compiled programs for the study's commands.

Much of an experiment's time can be XLA compiling its training and evaluation programs
(``benchmarks/compile_cache.py`` measures how much). JAX can keep the compiled programs on
disk and load them when the same program is compiled again: in a second list of seeds, a
re-run after an edit that left a cell's program as it was, or the next ``make study``. A
loaded program is the one XLA would compile, so no number changes.

The cache is kept per machine (:func:`.common.machine`: CPU model, its features, the
architecture and ``XLA_FLAGS``): XLA compiles for the host CPU, and a folder shared by two
machines must not hand one machine's program to another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

ENV = "DROPSTUDY_XLA_CACHE"
OFF = ("0", "off", "no", "false", "none", "disable", "disabled")
ON = ("", "1", "on", "yes", "true")
log = logging.getLogger("dropstudy")


def setting() -> str:
    """What ``$DROPSTUDY_XLA_CACHE`` asks for.

    Returns:
      ``"off"`` (``0``, ``off``, ``no``, ``false``, ``none``, ``disable``, ``disabled``),
      ``"on"`` (unset, empty, ``1``, ``on``, ``yes``, ``true``), else ``"folder"``: a folder
      it names. Case and surrounding spaces do not count.
    """
    given = os.environ.get(ENV, "").strip().lower()
    return "off" if given in OFF else "on" if given in ON else "folder"


def cache_folder() -> Path | None:
    """Where the study's commands keep compiled programs, if anywhere.

    Returns:
      None when ``$DROPSTUDY_XLA_CACHE`` turns the cache off (:func:`setting`); else
      ``BASE/MACHINE``: ``BASE`` the folder the variable names, or (when it asks for the
      cache without naming a folder) ``xla`` under the data cache
      (:func:`dropstudy.data.cache_dir`), and ``MACHINE`` a digest of
      :func:`.common.machine`, so that one folder given to two machines keeps their
      programs apart.
    """
    from dropstudy.data import cache_dir

    from .common import machine

    mode = setting()
    if mode == "off":
        return None
    base = cache_dir() / "xla" if mode == "on" else Path(os.environ[ENV].strip()).expanduser()
    digest = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:12]
    return base / digest


def use_compile_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_folder`.

    Every program is cached whatever its size and compile time: a study compiles hundreds
    of small programs, many under JAX's default threshold of one second. A cache folder
    JAX has already been given (``JAX_COMPILATION_CACHE_DIR``, or in-process: the test
    suite's own) is left as it is, with its thresholds, unless the cache is turned off.
    A folder that cannot be made (no home folder, no permission) is warned about, and the
    run goes on without the cache: it only saves time.

    Returns:
      The folder used; None when the cache is off.
    """
    import jax

    mode = setting()
    if mode == "off":
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    already = jax.config.jax_compilation_cache_dir
    if already:
        if mode == "folder":
            log.warning("%s is set, and JAX was given a cache folder already (%s): that one "
                        "is used", ENV, already)  # fmt: skip
        return Path(already)
    try:
        folder = cache_folder()
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".writable"
        probe.write_bytes(b"")
        probe.unlink()
    except (OSError, RuntimeError) as e:  # RuntimeError: Path.home() without a home
        log.warning("no compile cache (%s): programs are compiled afresh; set %s to a "
                    "folder you can write, or to off", e, ENV)  # fmt: skip
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    log.debug("compiled programs are cached in %s (%s=off: none)", folder, ENV)
    return folder
