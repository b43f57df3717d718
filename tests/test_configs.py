"""Experiment configurations are checked when built, before any cell runs."""

import pytest
from dropstudy_experiments import runner

from dropstudy.validate import DropstudyError


@pytest.mark.parametrize("name", runner.NAMES)
def test_every_config_is_valid_and_refuses_one_seed(name):
    cfg = runner.module(name).Config()
    cfg.quick()  # the smoke-test variant builds too
    if hasattr(cfg, "seeds"):
        with pytest.raises(DropstudyError, match="seeds must be >= 2"):
            type(cfg)(seeds=1)
        with pytest.raises(DropstudyError, match="seeds must be an integer"):
            type(cfg)(seeds=2.5)


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("overfitting", {"rates": (0.0, 0.2)}, "must include the compared rates"),
        ("overfitting", {"typical_rates": (0.3, 0.9)}, "must include the typical rates"),
        ("shrinkage", {"test_rate": 0.7}, "must hold 0.0 and test_rate"),
        ("shrinkage", {"mlp_optimizers": ("rmsprop",)}, "must name sgd and/or adam"),
        ("coadaptation", {"compare_at": 0.55}, "must be one of fractions"),
    ],
)
def test_rules_of_a_config_are_checked_when_built(name, kw, match):
    with pytest.raises(DropstudyError, match=match):
        runner.module(name).Config(**kw)


def test_a_bad_training_config_in_an_experiment_is_refused_when_built():
    cfg = runner.module("scaling").Config()
    with pytest.raises(DropstudyError, match="steps must be >= 1"):
        cfg.train.replace(steps=0)
