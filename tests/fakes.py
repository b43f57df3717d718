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
