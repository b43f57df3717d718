"""Fake results shared by the tests of the experiments' summaries (no training)."""

import numpy as np


def arm_record(val: float, seeds: int, late: int = 0) -> dict:
    """An arm's training record whose validation NLL within W is ``val`` (plus seed noise),
    ``late`` of its seeds settling in the last tenth of 2W (converged when fewer than a
    fifth), as :func:`dropstudy_experiments.protocol.train_arm` writes it.

    Args:
      val: the validation NLL about which each seed's lies.
      seeds: the number of seeds.
      late: the seeds still improving at the end of 2W.

    Returns:
      The record.
    """
    rng = np.random.default_rng(int(1000 * val) % 97)
    settle = [200] * late + [60] * (seeds - late)
    return {"recipe": "adam", "lr": 1e-3, "edge": False, "tuned_as": "x", "window": 100,
            "stop_w": [50] * seeds, "stop_2w": [60] * seeds, "settle_2w": settle,
            "diverged": [False] * seeds, "converged": late < 0.2 * seeds,
            "val_w": (val + 1e-4 * rng.standard_normal(seeds)).tolist(),
            "tuning": {"adam": {"0.001": {"score": 1.0}}}}  # fmt: skip


def shared_arm_calls(monkeypatch, module, cells: dict, stops: dict[str, int]) -> list[tuple]:
    """The arguments of the ``shared_arm`` calls that some of a plan's cells make, each cell
    run until its ``stops[name]``-th call (the calls before it return None), nothing trained.

    Args:
      monkeypatch: pytest's fixture; ``module.shared_arm`` is replaced.
      module: the experiment's module.
      cells: its plan's cells.
      stops: ``{cell name: the call at which it stops}``, run in this order.

    Returns:
      Every call's positional arguments, in order.
    """
    import pytest

    calls: list[tuple] = []

    class Stop(Exception):
        pass

    for name, at in stops.items():
        seen = len(calls)

        def record(*a, _seen=seen, _at=at):
            calls.append(a)
            if len(calls) - _seen == _at:
                raise Stop

        monkeypatch.setattr(module, "shared_arm", record)
        with pytest.raises(Stop):
            cells[name].fn(**cells[name].kwargs)
    return calls
