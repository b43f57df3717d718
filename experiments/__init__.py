"""The study: one script per claim. Each module defines ``NAME``, ``CLAIM``, ``run(ctx)``
(compute, write ``results/NAME/results.json`` and figures) and ``section(results)`` (the
report's Markdown and verdict, from the results file alone).

Run one with ``dropstudy run NAME`` or ``python -m experiments.NAME``; all with
``dropstudy run all``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

NAMES = ("overfitting", "scaling", "averaging", "ensembles", "coadaptation", "shrinkage")
REGISTRY = {n: f"experiments.{n}" for n in NAMES}


def module(name: str):
    return importlib.import_module(REGISTRY[name])


def run_experiment(
    name: str,
    out: Path = Path("results"),
    quick: bool = False,
    seeds: int | None = None,
    progress: bool = True,
    data=None,
    tensorboard: Path | None = None,
) -> Path:
    from .common import Context

    if seeds is not None and seeds < 2:
        from dropstudy.validate import DropstudyError

        raise DropstudyError(f"--seeds must be >= 2 for confidence intervals, got {seeds}")
    ctx = Context(
        name,
        Path(out),
        quick=quick,
        seeds=seeds,
        progress=progress,
        data=data,
        tensorboard=tensorboard,
    )
    t0 = time.perf_counter()
    results = module(name).run(ctx)
    return ctx.write(results, t0)


def main_for(name: str) -> None:
    """``python -m experiments.NAME [--quick] [--out DIR]``."""
    import sys

    from dropstudy.cli import main

    sys.exit(main(["run", name, *sys.argv[1:]]))
