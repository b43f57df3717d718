import numpy as np
import pytest

from dropstudy import metrics
from dropstudy.validate import DropstudyError


def test_perfect_and_uniform_predictions():
    y = np.array([0, 1, 2, 1])
    onehot = np.eye(3)[y]
    s = metrics.scores(onehot, y)
    assert s["accuracy"] == 1.0 and s["brier"] == 0.0 and s["ece"] == 0.0
    assert s["nll"] == pytest.approx(0.0, abs=1e-9)
    uni = np.full((4, 3), 1 / 3)
    assert metrics.nll(uni, y) == pytest.approx(np.log(3))
    assert metrics.brier(uni, y) == pytest.approx(2 / 3)


def test_ece_by_hand():
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bins: conf 0.9 -> acc 0.5 (gap 0.4, weight 0.5); conf 0.6 -> acc 1 (gap 0.4, weight 0.5)
    assert metrics.ece(p, y) == pytest.approx(0.4)


def test_gaps():
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    q = np.array([[0.6, 0.4], [0.6, 0.4]])
    g = metrics.gaps(p, q)
    assert g["max_abs_prob"] == pytest.approx(0.4)
    assert g["disagreement"] == 0.5
    kl = (
        0.6 * np.log(0.6 / 0.7)
        + 0.4 * np.log(0.4 / 0.3)
        + 0.6 * np.log(0.6 / 0.2)
        + 0.4 * np.log(0.4 / 0.8)
    ) / 2
    assert g["mean_kl"] == pytest.approx(kl)
    assert metrics.gaps(p, p)["mean_kl"] == pytest.approx(0.0, abs=1e-12)


def test_bad_metric_input():
    with pytest.raises(DropstudyError, match="labels must lie in"):
        metrics.accuracy(np.eye(3), np.array([0, 1, 3]))
    with pytest.raises(DropstudyError, match="NaN"):
        metrics.nll(np.array([[np.nan, 1.0]]), np.array([0]))


def test_kl_is_never_negative():
    """Nearly equal distributions: the float sum can come out below 0; it is clipped."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(10), size=200).astype(np.float32)
    q = p * (1 + 1e-7 * rng.standard_normal(p.shape).astype(np.float32))
    q /= q.sum(1, keepdims=True)
    assert metrics.gaps(p, q)["mean_kl"] >= 0.0


def test_no_negative_kl_in_any_results_file():
    import json
    from pathlib import Path

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "mean_kl" and isinstance(v, dict):  # an interval over seeds
                    assert v["mean"] >= 0, v
                elif k == "mean_kl":
                    assert v >= 0, v
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for f in (Path(__file__).parent.parent / "results").glob("*/results.json"):
        walk(json.loads(f.read_text()))
