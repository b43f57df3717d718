"""The tutorial's regression task: its data, drawn per seed, and how a fit is measured.

Shared by the replication (:mod:`.tutorial`) and the PyTorch reference
(:mod:`.torch_reference`), so that both are measured on the same data by the same code.
"""

from __future__ import annotations

import numpy as np

from dropstudy.data import tutorial_regression

from .evaluate import seed_key


def tutorial_sets(seeds, slope: float) -> tuple[list, np.ndarray, np.ndarray]:
    """One tutorial data set per seed.

    Args:
      seeds: the seeds, ``S`` of them.
      slope: the true line's slope.

    Returns:
      ``(sets, xs, ys)``: the data sets, and their training inputs ``(S, 10, 1)`` and targets
      ``(S, 10, 1)`` stacked.
    """
    sets = [tutorial_regression(seed_key(("tutorial", "data"), s), slope=slope) for s in seeds]
    return sets, np.stack([d.x_train for d in sets]), np.stack([d.y_train for d in sets])


def roughness(curve, spacing: float) -> float:
    """Total variation of the slope of a curve sampled at equal ``spacing``.

    ``sum |f[i+1] - 2 f[i] + f[i-1]| / spacing``. For a piecewise-linear (ReLU) fit it is the
    sum of the absolute slope changes at its kinks inside the grid; a straight line scores 0, a
    curve that bends through every noisy training point scores high.

    Args:
      curve: the curve's values, ``(P,)`` (flattened).
      spacing: the distance between neighbouring points.

    Returns:
      The roughness.
    """
    f = np.asarray(curve, np.float64).ravel()
    return float(np.sum(np.abs(np.diff(f, 2))) / spacing)


def rough_grid(points: int) -> np.ndarray:
    """Equally spaced points on the data's range [-1, 1].

    Args:
      points: the number of points.

    Returns:
      The grid, ``(points, 1)`` float32.
    """
    return np.linspace(-1.0, 1.0, points, dtype=np.float32)[:, None]


def fit_measures(out_train, out_test, out_grid, d, slope: float) -> dict:
    """Train and test MSE, risk and roughness of one predictor's outputs on one data set.

    The risk is the noise-free MSE against y = slope * x on the grid of ``len(out_grid)``
    points (:func:`rough_grid`).

    Args:
      out_train: the outputs on the training inputs, ``(N, 1)``.
      out_test: the outputs on the test inputs, ``(N, 1)``.
      out_grid: the outputs on the grid, ``(P, 1)``.
      d: the data set; its targets ``y_train`` and ``y_test``, ``(N, 1)``, are scored.
      slope: the true line's slope.

    Returns:
      ``{"train_mse", "test_mse", "risk", "roughness"}``.
    """
    mse = lambda a, y: float(np.mean((np.asarray(a, np.float64) - y) ** 2))  # noqa: E731
    return {
        "train_mse": mse(out_train, d.y_train),
        "test_mse": mse(out_test, d.y_test),
        "risk": mse(out_grid, slope * rough_grid(len(out_grid)).astype(np.float64)),
        "roughness": roughness(out_grid, 2.0 / (len(out_grid) - 1)),
    }
