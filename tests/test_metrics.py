import json
from pathlib import Path

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


RESULTS = Path(__file__).resolve().parent.parent / "results"
NONNEGATIVE = ("mean_kl", "max_abs_prob")  # per-seed values that cannot be negative


def results_problems(root: Path) -> tuple[int, list[str]]:
    """Every ``results.json`` below ``root``, at any depth: how many, and what is wrong in
    them: a KL (or other non-negative gap) below 0, as a value or an interval's mean, and an
    interval whose bounds do not hold its mean."""
    problems: list[str] = []

    def walk(o, where):
        if isinstance(o, dict):
            if {"lo", "mean", "hi"} <= o.keys() and None not in (o["lo"], o["hi"]):
                # one interval, or one per point of a curve (shrinkage's norm trajectories)
                triples = (
                    zip(o["lo"], o["mean"], o["hi"], strict=True)
                    if isinstance(o["mean"], list)
                    else [(o["lo"], o["mean"], o["hi"])]
                )
                if not all(lo - 1e-12 <= m <= hi + 1e-12 for lo, m, hi in triples):
                    problems.append(f"{where}: interval {o}")
            for k, v in o.items():
                if k in NONNEGATIVE:
                    value = v["mean"] if isinstance(v, dict) else v
                    if isinstance(value, (int, float)) and value < 0:
                        problems.append(f"{where}/{k}: {value}")
                walk(v, f"{where}/{k}")
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{where}[{i}]")

    files = sorted(root.rglob("results.json"))
    for f in files:
        walk(json.loads(f.read_text()), str(f.relative_to(root)))
    return len(files), problems


def test_no_negative_kl_in_any_results_file():
    """The committed study (both data sets' folders) holds no negative KL and no interval
    that misses its mean."""
    n, problems = results_problems(RESULTS)
    assert n >= len(list(RESULTS.glob("*/results.json"))) + 10, n  # MNIST-1D's too
    assert list(RESULTS.glob("mnist1d/*/results.json")), "no MNIST-1D results"
    assert problems == []


def test_results_check_reaches_every_depth(tmp_path):
    """A results file two folders down with a negative KL, and one with a broken interval,
    are found."""
    deep = tmp_path / "mnist1d" / "averaging"
    deep.mkdir(parents=True)
    (deep / "results.json").write_text(json.dumps({"gaps": {"mean_kl": -0.1}}))
    (tmp_path / "x").mkdir()
    bad = {"gap": {"mean_kl": {"lo": 0.0, "mean": 0.5, "hi": 0.2, "n": 3}}}
    (tmp_path / "x" / "results.json").write_text(json.dumps(bad))
    n, problems = results_problems(tmp_path)
    assert n == 2
    assert any("mnist1d/averaging" in p and "mean_kl" in p for p in problems)
    assert any(p.startswith("x/results.json") and "interval" in p for p in problems)


def test_temperature_search_options_bound_and_refine_it():
    from dropstudy.metrics import fit_temperature

    rng = np.random.default_rng(1)
    z = rng.normal(size=(2000, 4)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=q) for q in p])
    t = fit_temperature(3.0 * z, y)
    assert abs(t - 3.0) < 0.3
    assert fit_temperature(3.0 * z, y, log_t_range=(-1.0, 0.5)) == np.exp(0.5)  # clipped
    coarse = fit_temperature(3.0 * z, y, bisections=2)
    assert coarse != t and abs(np.log(coarse) - np.log(t)) < 10 / 4  # a quarter of the bracket


def test_per_example_terms_average_to_the_scores():
    """Each score is the mean of its per-example terms; bad input is refused as the scores'."""
    from dropstudy.metrics import accuracy, brier, nll, per_example

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), 50)
    y = np.arange(50) % 4
    ex = per_example(p, y)
    assert {k: v.shape for k, v in ex.items()} == {"nll": (50,), "err": (50,), "brier": (50,)}
    assert ex["nll"].mean() == nll(p, y) and ex["brier"].mean() == brier(p, y)
    assert 1.0 - ex["err"].mean() == pytest.approx(accuracy(p, y), abs=1e-15)
    assert set(np.unique(ex["err"])) <= {0.0, 1.0}
    with pytest.raises(DropstudyError, match="labels must lie"):
        per_example(p, y + 4)
