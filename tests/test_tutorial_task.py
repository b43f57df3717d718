"""The tutorial's task: its data per seed, and how a fit is measured."""

import numpy as np
from dropstudy_experiments import tutorial
from dropstudy_experiments.tutorial_task import fit_measures, rough_grid, tutorial_sets


def test_slope_sets_the_data_and_the_risk():
    flat, _, ys0 = tutorial_sets([0, 1], slope=0.0)
    steep, _, ys1 = tutorial_sets([0, 1], slope=3.0)
    assert np.array_equal(flat[0].x_train, steep[0].x_train)  # the same draws
    xs = np.stack([d.x_train for d in steep])
    np.testing.assert_allclose(ys1 - ys0, 3.0 * xs, rtol=1e-5, atol=1e-5)  # noise shared
    d, grid = flat[0], rough_grid(11)
    assert grid.shape == (11, 1) and grid[0, 0] == -1.0 and grid[-1, 0] == 1.0
    line = 2.0 * grid  # a fitted straight line y = 2x
    m = fit_measures(d.y_train, d.y_test, line, d, slope=2.0)
    assert m["risk"] == 0.0 and m["roughness"] < 1e-5
    assert fit_measures(d.y_train, d.y_test, line, d, slope=0.0)["risk"] > 1.0


def test_the_config_reaches_both_implementations():
    cfg = tutorial.Config(slope=0.5, rough_points=51).quick()
    for c in tutorial.plan(cfg).values():
        assert (c.kwargs["slope"], c.kwargs["rough_points"]) == (0.5, 51)
