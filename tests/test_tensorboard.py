"""TensorBoard as the tutorial used it, read back with TensorBoard's own reader."""

import logging

import pytest
from dropstudy_experiments import runner

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "histograms": 0}
    )
    acc.Reload()
    return acc


def test_overfitting_writes_a_run_per_net_and_seed(tmp_path, caplog):
    tb = tmp_path / "tb"
    runner.run_experiment("overfitting", out=tmp_path / "r", quick=True, progress=False,
                          tensorboard=tb)  # fmt: skip
    cfg = runner.config("overfitting", quick=True)
    runs = sorted(str(p.relative_to(tb)) for p in tb.glob("*/seed*"))
    assert runs == [f"{n}/seed{s}" for n in ("dropout", "plain") for s in range(3)]
    acc = _read(tb / "dropout" / "seed0")
    loss = acc.Scalars("loss/train_dropout_active")
    assert [e.step for e in loss] == list(range(1, cfg.tutorial.steps + 1))  # every step
    every = cfg.tutorial.snapshot_every
    snaps = list(range(every, cfg.tutorial.steps + 1, every))
    assert [e.step for e in acc.Scalars("mse/test_weight_scaling")] == snaps
    assert "weights/dense_0" in acc.Tags()["histograms"]
    assert [e.step for e in acc.Histograms("gradients/out")] == snaps
    # a re-run (every cell reused) replaces the events instead of appending to them
    runner.run_experiment("overfitting", out=tmp_path / "r", quick=True, progress=False,
                          tensorboard=tb)  # fmt: skip
    assert len(list((tb / "dropout" / "seed0").glob("events.*"))) == 1
    assert len(_read(tb / "dropout" / "seed0").Scalars("loss/train_dropout_active")) == len(loss)
    # an experiment without training curves says so
    with caplog.at_level(logging.WARNING, logger="dropstudy"):
        runner.run_experiment("shrinkage", out=tmp_path / "r", quick=True, progress=False,
                              tensorboard=tb)  # fmt: skip
    assert "--tensorboard ignored" in caplog.text
