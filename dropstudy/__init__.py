"""dropstudy: is a network trained with dropout an ensemble of its subnetworks?

A subnetwork is a pure function of ``(params, x, masks)``; see :mod:`dropstudy.models`
(``MaskedDropout``, ``MLP``), :mod:`dropstudy.masks` (sampling, expectation, enumeration),
:mod:`dropstudy.predict` (weight scaling, Monte-Carlo and exact averages) and
:mod:`dropstudy.train` (one jitted ``lax.scan``, vmapped over seeds).

The submodules and the main names are reachable from the package, loaded on first use, so
``import dropstudy`` stays cheap (it imports no JAX)::

    import dropstudy as ds

    model = ds.MLP(hidden=(10, 10), rate=0.5)
    avg = ds.predict.mc(model, variables, x, key=key, k=1000)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

SUBMODULES = (
    "average", "checkpoint", "data", "fast_exact", "fast_mc", "io", "masks", "metrics",
    "models", "nnx", "optim", "predict", "progress", "rng", "sharding", "train", "validate",
)  # fmt: skip

# name -> the submodule that defines it
NAMES = {
    "MaskedDropout": "models",
    "MLP": "models",
    "ConvNet": "models",
    "MaskSpec": "masks",
    "Average": "average",
    "TrainConfig": "train",
    "DropstudyError": "validate",
}

__all__ = [*SUBMODULES, *NAMES, "__version__"]


def __getattr__(name: str) -> Any:
    """Load a submodule or a main name on first use (PEP 562)."""
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in NAMES:
        return getattr(importlib.import_module(f"{__name__}.{NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
