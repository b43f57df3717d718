"""TensorBoard as the tutorial used it, read back with TensorBoard's own reader."""

import logging

import pytest
from dropstudy_experiments import common, runner, tutorial
from dropstudy_experiments.evaluate import Evaluator
from dropstudy_experiments.tensorboard import tutorial_events

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "histograms": 0}
    )
    acc.Reload()
    return acc


@pytest.mark.slow  # an optional extra's writer, two runs
def test_a_run_per_net_and_seed_replaced_on_rerun(tmp_path):
    cfg = tutorial.Config().quick()
    train = tutorial.tutorial_config(40, 20)
    label = f"tutorial_rate={cfg.rates[1]}"
    ev = Evaluator(("tutorial", label), 10, "regression")
    result = tutorial.tutorial_cell(cfg.rates[1], train, [0, 1], ev, cfg.slope, cfg.rough_points)
    tb = tmp_path / "tb"
    tutorial_events(cfg, label, result, tb)
    assert sorted(str(p.relative_to(tb)) for p in tb.glob("*/*")) == [
        "dropout/seed0",
        "dropout/seed1",
    ]
    acc = _read(tb / "dropout" / "seed1")
    loss = acc.Scalars("loss/train_dropout_active")
    assert [e.step for e in loss] == list(range(1, 41))  # every step
    assert [e.step for e in acc.Scalars("mse/test_weight_scaling")] == [20, 40]
    assert [e.step for e in acc.Histograms("gradients/out")] == [20, 40]
    assert "weights/dense_0" in acc.Tags()["histograms"]
    tutorial_events(cfg, label, result, tb)  # a re-run replaces, never appends
    assert len(list((tb / "dropout" / "seed1").glob("events.*"))) == 1
    assert len(_read(tb / "dropout" / "seed1").Scalars("loss/train_dropout_active")) == 40
    tutorial_events(cfg, "pytorch_rate=0.5", {}, tb)  # cells without curves: nothing


def test_events_are_written_as_each_cell_finishes_or_is_reused(tmp_path):
    ctx = common.Context("shrinkage", tmp_path, progress=False)
    cells = {"a": common.cell(dict, v=1), "b": common.cell(dict, v=2)}
    seen = []
    ctx.run_cells(cells, lambda label, result: seen.append(label))
    ctx.run_cells(cells, lambda label, result: seen.append(label))  # reused
    assert seen == ["a", "b", "a", "b"] and ctx.store.reused == ["a", "b"]


def test_experiments_without_curves_say_they_ignore_the_flag(tmp_path, caplog, monkeypatch):
    import types
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Config(common.ExperimentConfig):
        seeds: int = 2

    fake = types.SimpleNamespace(
        NAME="shrinkage",  # any experiment without a tensorboard hook
        CLAIM="c",
        Config=Config,
        plan=lambda cfg, ds: {},
        summarise=lambda cfg, raw: {"verdict": "supported"},
    )
    monkeypatch.setattr(runner, "module", lambda name: fake)
    sections = types.SimpleNamespace(figures=lambda cfg, raw, r, ctx: None)
    monkeypatch.setattr(runner, "section", lambda name: sections)
    with caplog.at_level(logging.WARNING, logger="dropstudy"):
        runner.run_experiment("shrinkage", out=tmp_path / "r", progress=False, tensorboard=tmp_path)
    assert "shrinkage: --tensorboard ignored" in caplog.text
    from dropstudy_experiments.tensorboard import WRITERS

    assert list(WRITERS) == ["tutorial"] and set(WRITERS) <= set(runner.NAMES)
