"""Experiment configurations are checked when built, before any cell runs."""

import json
from pathlib import Path

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
        ("shrinkage", {"trajectory_every": 300}, "trajectory_every=300 must divide 2W=16000"),
        ("coadaptation", {"compare_at": 0.55}, "must be one of fractions"),
        ("conv", {"mc_k": 0}, "mc_k must be an integer >= 1"),
        ("conv", {"mc_k": 1.5}, "mc_k must be an integer, got 1.5"),
        ("scaling", {"rate": 1.5}, r"rate must be in \[0, 1\) \(a drop rate\)"),
        ("conv", {"dense_rate": float("nan")}, "dense_rate must be finite"),
        ("tutorial", {"rates": (0.0, 1.0)}, r"rates must be in \[0, 1\)"),
        ("tutorial", {"rates": ()}, "rates must not be empty"),
        ("ensembles", {"width": 0}, "width must be an integer >= 1"),
        ("voting", {"hidden": (16, 0)}, "hidden must be integers >= 1"),
        ("maskmode", {"margin_err": -0.1}, "margin_err must be > 0"),
        ("maskmode", {"margin_share": 1.5}, r"margin_share=1.5 must be a number in \(0, 1\]"),
        ("maskmode", {"margin_share": "0.5"}, r"margin_share='0.5' must be a number in"),
        ("ensembles", {"margin_share": True}, r"margin_share=True must be a number in"),
        ("voting", {"margin_err": "0.005"}, r"margin_err must be a number, got '0.005'"),
        ("voting", {"members": 1}, "members=1 must be at least 2"),
        ("diversity", {"members": 1}, "members=1 must be at least 2"),
        ("diversity", {"margin": "0.05"}, r"margin must be a number, got '0.05'"),
        ("conv", {"dense_rate": "0.5"}, r"dense_rate must be a number, got '0.5'"),
        ("conv", {"margin_nll_cap": True}, r"margin_nll_cap must be a number, got True"),
        ("coadaptation", {"protocol": None}, "protocol"),
        ("diversity", {"seeds": 300}, "would reach the pilot seeds"),
        ("ensembles", {"seeds": 300}, r"seeds x k = 1500 plain nets would reach the pilot"),
        ("robustness", {"missing": (0.5, 1.6)}, r"missing must be in \[0, 1\)"),
        ("shrinkage", {"keeps": (2.0,)}, r"keeps must be in \(0, 1\]"),
        ("stayput", {"lr_sgd": 0.0}, "lr_sgd must be > 0"),
        ("conv", {"rates": (0.0, 0.25), "primary_rate": 0.1}, "primary_rate .* must be one of"),
        ("regression", {"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\)"),
        ("regression", {"validation_fraction": 0.0}, r"validation_fraction must be in"),
        ("regression", {"length_scale": -1.0}, "length_scale must be > 0"),
        ("tutorial", {"rough_points": 2}, "rough_points must be an integer >= 3"),
        ("tutorial", {"slope": float("nan")}, "slope must be finite"),
    ],
)
def test_rules_of_a_config_are_checked_when_built(name, kw, match):
    with pytest.raises(DropstudyError, match=match):
        runner.module(name).Config(**kw)


def test_a_bad_training_config_in_an_experiment_is_refused_when_built():
    cfg = runner.module("scaling").Config()
    with pytest.raises(DropstudyError, match="steps must be >= 1"):
        cfg.train.replace(steps=0)


MC_EXPERIMENTS = [n for n in runner.NAMES if hasattr(runner.module(n).Config(), "mc_k")]


def test_every_experiment_with_an_mc_average_names_its_k():
    assert set(MC_EXPERIMENTS) >= {
        "tutorial", "overfitting", "averaging", "ensembles", "coadaptation", "shrinkage",
        "maskmode", "conv", "robustness",
    }  # fmt: skip


@pytest.mark.parametrize("name", MC_EXPERIMENTS)
def test_mc_k_reaches_every_cell(name):
    """``Config.mc_k`` is what each cell's evaluator (or the PyTorch reference) averages."""
    from dropstudy_experiments.evaluate import Evaluator

    from dropstudy.data import digits

    cfg = runner.module(name).Config(mc_k=7).quick()
    got = []
    for c in runner.module(name).plan(cfg, digits()).values():
        got += [v.k for v in c.kwargs.values() if isinstance(v, Evaluator)]
        got += [c.kwargs["k"]] if c.fn.__name__ == "torch_reference_cell" else []
    assert got and set(got) == {7}


def test_the_evaluator_averages_k_subnetworks_with_keys_from_its_stream(monkeypatch):
    import jax
    import numpy as np
    from dropstudy_experiments import evaluate

    from dropstudy import masks as M
    from dropstudy.models import MLP

    seen = []
    real = evaluate.P.mc

    def spy(*a, **kw):
        seen.append((kw["k"], kw["key"]))
        return real(*a, **kw)

    monkeypatch.setattr(evaluate.P, "mc", spy)
    model = MLP(hidden=(4,), n_out=3, rate=0.5)
    x = np.ones((2, 5), np.float32)
    v, _ = M.init(model, jax.random.key(0), x)
    ev = evaluate.Evaluator(("exp", "cell"), k=9)
    out = ev.predict(model, v, x, seed=3)
    assert set(out) == {"ws", "mc"} and seen[0][0] == 9
    want = evaluate.seed_key(("exp", "cell", "mc"), 3)
    assert np.array_equal(jax.random.key_data(seen[0][1]), jax.random.key_data(want))
    ev.sub("arm").predict(model, v, x, seed=3)
    assert not np.array_equal(jax.random.key_data(seen[1][1]), jax.random.key_data(want))


def test_derived_keys_differ_by_every_name_and_seed():
    import jax
    import numpy as np
    from dropstudy_experiments.evaluate import seed_key

    keys = [
        seed_key(("a", "b"), 0), seed_key(("a", "c"), 0), seed_key(("b", "b"), 0),
        seed_key(("a", "b"), 1), seed_key(("a", "b", "mc"), 0),
    ]  # fmt: skip
    data = {tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in keys}
    assert len(data) == len(keys)
    again = seed_key(("a", "b"), 0)
    assert np.array_equal(jax.random.key_data(again), jax.random.key_data(keys[0]))


def test_reports_name_the_k_the_results_file_records():
    from dropstudy_experiments.common import predictor_name, stamp_k

    cfg = runner.module("conv").Config(mc_k=250)
    tests = {"a": {"predictor": "mc"}, "b": {"predictor": "ws"}, "c": {"predictor": "mc",
             "predictor_label": "own"}}  # fmt: skip
    out = stamp_k(tests, cfg)
    assert [predictor_name(t) for t in out.values()] == [
        "MC average, K = 250", "weight scaling", "own"
    ]  # fmt: skip
    assert stamp_k(tests, runner.module("scaling").Config()) == tests  # no MC average there


def test_the_report_header_states_the_k_its_results_ran():
    from dropstudy_experiments.report import k_words

    same = {"a": {"config": {"mc_k": 500}}, "b": {"config": {"mc_k": 500}}, "c": {"config": {}}}
    assert k_words(same) == "K = 500"
    mixed = {**same, "d": {"config": {"mc_k": 1000}}}
    assert k_words(mixed) == "K (stated per section)"


def test_primary_findings_survive_the_k_stamp():
    from dropstudy_experiments.common import primary_findings, stamp_k

    cfg = runner.module("conv").Config()
    t = {"what": "test NLL", "predictor": "mc", "verdict": "supported", "rule": "direction",
         "claimed": "> 0", "level": 0.95, "effect": 1.0, "lo": 0.5, "hi": 1.5}  # fmt: skip
    ws = {**t, "predictor": "ws", "effect": -1.0, "lo": -1.5, "hi": -0.5, "verdict": "contradicted"}
    r = {"tests": stamp_k({"p": t, "p_ws": ws}, cfg), "primary": "p"}
    (found,) = primary_findings(r)
    assert found.startswith("The sign of *test NLL* flips") and f"K = {cfg.mc_k}" in found


# --- the primary test names a test of the experiment, checked when the config is built ----

RESULTS = Path(__file__).resolve().parent.parent / "results"
# The committed results: the full study on digits (results/NAME) and on MNIST-1D
# (results/mnist1d/NAME), both from the default Config (`--dataset` changes the data a run
# reads, never its Config: runner.config), except the experiments on data of their own,
# which run once, on digits' command.
RESULT_FILES = [
    (folder, name)
    for folder in ("", "mnist1d")
    for name in runner.NAMES
    if folder == "" or runner.own_data(name) is None
]
# Tests a summary adds only on some data or outcomes, so a results file may lack them.
SOMETIMES = {
    # the regenerated-MNIST-1D shift exists on MNIST-1D only (robustness.shifts_of)
    "robustness": {"retention_mc_generator"},
    # only when a seed's net diverged (tutorial._tutorial)
    "tutorial": {
        "tutorial test MSE MC, divergences counted",
        "pytorch test MSE MC, divergences counted",
    },
}


@pytest.mark.parametrize("folder,name", RESULT_FILES)
def test_a_results_file_has_the_tests_its_config_names(folder, name):
    results = json.loads((RESULTS / folder / name / "results.json").read_text())
    cfg = runner.config(name)
    names = cfg.test_names()
    assert len(set(names)) == len(names), "a test name twice"
    got = set(results["tests"])
    assert got <= set(names), f"tests the config does not name: {got - set(names)}"
    assert set(names) - got <= SOMETIMES.get(name, set())
    assert results["primary"] == cfg.primary and results["primary"] in names


def refused(cfg_class, primary: str, good: str | None = None, **kw) -> None:
    """Building ``cfg_class(primary=primary, **kw)`` is refused, listing the names of the
    configuration with the primary ``good`` (None: the default)."""
    valid = sorted(cfg_class(**kw, **({"primary": good} if good else {})).test_names())
    with pytest.raises(DropstudyError, match=f"^primary {primary!r} is not a test") as e:
        cfg_class(primary=primary, **kw)
    assert str(e.value).endswith(f"it must be one of {valid}")


@pytest.mark.parametrize("name", runner.NAMES)
def test_a_primary_that_names_no_test_is_refused_when_built(name):
    cfg_class = runner.module(name).Config
    assert cfg_class().primary in cfg_class().test_names()
    refused(cfg_class, "no such test")


@pytest.mark.parametrize(
    "name,kw,new,old",
    [
        ("conv", {"rates": (0.0, 0.25, 0.75)}, "nll_mc_0.75", "nll_mc_0.5"),
        ("conv", {"rates": (0.0, 0.1, 0.25)}, "ws_vs_mc_0.1", "ws_vs_mc_0.5"),
        (
            "overfitting",
            {"rates": (0.0, 0.3, 0.5, 0.9), "size_rates": (0.0, 0.5)},
            "typical rates vs 0.9 MC",
            "typical rates vs 0.8 MC",
        ),
        ("regression", {"depths": (1, 3)}, "rmse_3", "rmse_2"),
        ("shrinkage", {"keeps": (0.6,)}, "ridge_dd_keep=0.6", "ridge_dd_keep=0.5"),
        ("shrinkage", {"mlp_optimizers": ("adam",)}, "mlp_adam_frob", "mlp_sgd_frob"),
        ("shrinkage", {"logistic": None}, "sanity_ols", "sanity_mle"),
        ("robustness", {"noise": ()}, "retention_mc_missing", "retention_mc_noise"),
    ],
)
def test_a_primary_is_checked_against_the_names_its_fields_give(name, kw, new, old):
    cfg_class = runner.module(name).Config
    cfg_class(primary=new, **kw)  # a test of this configuration
    refused(cfg_class, old, new, **kw)  # a test of the default configuration only
    assert old in cfg_class().test_names()


def test_the_names_of_averaging_follow_its_nets():
    averaging = runner.module("averaging")
    nets = (*averaging.QUICK_NETS, averaging.Net("tanh 1x4, drop 0.5", (4,), "tanh"))
    averaging.Config(nets=nets, primary="stress err WS-A tanh 1x4, drop 0.5")
    refused(averaging.Config, "stress err WS-A tanh 2x10, drop 0.5", nets=nets)
    refused(
        averaging.Config,
        "primary err WS-A",
        "multiclass err WS-A relu 1x8, drop 0.5",
        nets=averaging.QUICK_NETS[1:],
    )  # no primary net: no primary tests


def test_averaging_nets_name_a_role_and_a_multiclass_net_no_pairs():
    averaging = runner.module("averaging")
    with pytest.raises(DropstudyError, match="role must be one of"):
        averaging.Net("relu 1x8", (8,), role="fits")
    with pytest.raises(DropstudyError, match="takes no pair tasks"):
        averaging.Net("relu 1x8", (8,), role="multiclass", tasks=((1, 8),))
    with pytest.raises(DropstudyError, match="MC-only"):
        averaging.Net("relu 2x64", (64, 64), role="wide")


def test_averaging_trains_by_role():
    """The primary and multiclass nets' cells get the protocol, the others the fixed budget."""
    from dropstudy_experiments.protocol import Protocol

    from dropstudy.data import digits
    from dropstudy.train import TrainConfig

    averaging = runner.module("averaging")
    cfg = averaging.Config()
    for n in cfg.nets:
        how = averaging.plan(cfg, digits())[f"net={n.tag}"].kwargs["how"]
        on = n.role in averaging.PROTOCOL_ROLES
        assert (how is cfg.protocol) if on else (how is cfg.train), n.tag
        assert isinstance(how, Protocol if on else TrainConfig)
    assert {n.role for n in cfg.nets} == set(averaging.ROLES)


def test_the_quick_variant_is_checked_too():
    cfg = runner.module("conv").Config(primary="nll_mc_0.5")  # QUICK drops rate 0.5
    with pytest.raises(DropstudyError, match="primary 'nll_mc_0.5' is not a test"):
        cfg.quick()


def test_the_rules_between_fields_come_before_the_primary():
    # mlp_optimizers names the tests: its own rule speaks first
    with pytest.raises(DropstudyError, match="must name sgd and/or adam"):
        runner.module("shrinkage").Config(mlp_optimizers=("rmsprop",))


PROTOCOL_EXPERIMENTS = [n for n in runner.NAMES if hasattr(runner.module(n).Config(), "protocol")]


@pytest.mark.parametrize("name", PROTOCOL_EXPERIMENTS)
def test_the_protocol_reaches_every_cell_that_trains(name):
    """``Config.protocol`` is what each cell trains its nets by (directly, or in the config
    a cell is given)."""
    from dataclasses import replace

    from dropstudy_experiments.protocol import Protocol

    from dropstudy.data import digits

    cfg = runner.module(name).Config().quick()
    mine = replace(cfg.protocol, window=300, eval_every=30)
    cfg = replace(cfg, protocol=mine)
    got = []
    for c in runner.module(name).plan(cfg, digits()).values():
        ps = [v for v in c.kwargs.values() if isinstance(v, Protocol)]
        ps += [v.protocol for v in c.kwargs.values() if getattr(v, "protocol", None) is not None]
        got += ps
    assert got and all(p.window == 300 and p.eval_every == 30 for p in got)


def test_the_protocol_experiments_include_the_converted_ones():
    assert set(PROTOCOL_EXPERIMENTS) >= {
        "overfitting", "robustness", "conv", "coadaptation", "voting", "maskmode", "diversity",
        "averaging",
    }  # fmt: skip
