"""The averaging experiment's descriptive bounds: where weight scaling sits relative to the
exact means, robust to float32 rounding of E[log p]."""

import numpy as np
from dropstudy_experiments import averaging

from dropstudy.average import Average


def _exact(log_g: np.ndarray, arith: np.ndarray) -> Average:
    """An Average from unnormalised log geometric means and arithmetic means ``(B, C)``."""
    return Average.from_sums(
        "classification", 1, np.asarray(arith, np.float32), np.asarray(log_g, np.float32)
    )


def test_rounding_of_the_log_geometric_mean_is_not_a_violation():
    """G equals NWGM when every subnetwork agrees; 2e-5 of rounding in log G (what float32
    leaves where logits reach ~100) must not count as G > NWGM, a 1% excess must, and tiny
    probabilities are compared as such, not all counted as ordered."""
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]])
    exact = _exact(np.log(p) + 2e-5, p)  # G a hair above NWGM = A = p
    assert averaging.bounds(p, exact)["frac_g_le_nwgm_le_a"] == 1.0
    assert averaging.bounds(p, exact)["frac_ws_between_nwgm_and_a"] == 1.0
    shifted = p.copy()
    shifted[0] = [0.65, 0.25, 0.1]  # A moves off NWGM in the first example
    off = _exact(np.log(p), shifted)
    assert averaging.bounds(p * 1.01, off)["frac_ws_between_nwgm_and_a"] < 1.0


def test_tiny_probabilities_are_compared_not_waved_through():
    """WS at 1e-8 beside exact means of 1e-6: outside [NWGM, A] by a factor 100, which an
    absolute tolerance on probabilities would have hidden."""
    p = np.array([[1 - 2e-6, 1e-6, 1e-6]])
    ws = np.array([[1 - 2e-8, 1e-8, 1e-8]])
    assert averaging.bounds(ws, _exact(np.log(p), p))["frac_ws_between_nwgm_and_a"] < 0.5
