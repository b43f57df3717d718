"""Which experiments exist, their configurations, and running one: plan -> cells ->
summary -> figures -> results file."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

NAMES = ("overfitting", "scaling", "averaging", "ensembles", "coadaptation", "shrinkage")
REGISTRY = {n: f"{__package__}.{n}" for n in NAMES}


def module(name: str):
    """The experiment module called ``name``."""
    return importlib.import_module(REGISTRY[name])


def config(name: str, quick: bool = False, seeds: int | None = None):
    """The experiment's configuration: its defaults, shrunk by ``quick``, with ``seeds``."""
    from dropstudy.validate import DropstudyError

    cfg = module(name).Config()
    if quick:
        cfg = cfg.quick()
    if seeds is not None:
        if seeds < 2:
            raise DropstudyError(f"--seeds must be >= 2 for confidence intervals, got {seeds}")
        cfg = cfg.with_seeds(seeds)
    return cfg


def run_experiment(
    name: str,
    out: Path = Path("results"),
    quick: bool = False,
    seeds: int | None = None,
    progress: bool = True,
    data=None,
    tensorboard: Path | None = None,
) -> Path:
    """Plan, compute (or reuse) every cell, summarise, draw and write ``out/NAME``."""
    from .common import Context

    mod = module(name)
    cfg = config(name, quick, seeds)
    ctx = Context(name, Path(out), quick=quick, progress=progress, data=data)
    t0 = time.perf_counter()
    cells = mod.plan(cfg, ctx.dataset())
    raw = ctx.run_cells(cells)
    results = mod.summarise(cfg, raw)
    mod.figures(cfg, raw, results, ctx)
    if tensorboard is not None:
        hook = getattr(mod, "tensorboard", None)
        if hook is None:
            print(f"{name}: --tensorboard ignored: this experiment logs no training curves")
        else:
            hook(cfg, raw, results, Path(tensorboard))
    return ctx.write(mod.CLAIM, cfg, results, t0)
