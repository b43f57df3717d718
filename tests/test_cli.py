import json
import subprocess
import sys

import numpy as np
import pytest
from dropstudy_experiments.cli import main

SMALL = ["compare", "--hidden", "4,4", "--steps", "60", "--samples", "1,10"]


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dropstudy_experiments.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_compare_json_save_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main([*SMALL, "--json", str(out), "--save", str(tmp_path / "ck")]) == 0
    table = capsys.readouterr().out
    for row in (
        "weight_scaling",
        "mc_arithmetic_10",
        "mc_geometric_1",
        "exact_arithmetic",
        "exact_geometric",
    ):
        assert row in table
    res = json.loads(out.read_text())
    assert set(res["predictors"]["weight_scaling"]) == {"accuracy", "nll", "ece", "brier"}
    for g in (
        "weight_scaling__vs__exact_arithmetic",
        "weight_scaling__vs__exact_geometric",
        "mc_arithmetic_10__vs__exact_arithmetic",
    ):
        assert set(res["gaps"][g]) == {"max_abs_prob", "mean_kl", "disagreement"}
    assert res["config"]["model"]["hidden"] == [4, 4]
    # the saved model evaluates to the same numbers
    out2 = tmp_path / "r2.json"
    assert (
        main(
            [
                "compare",
                "--samples",
                "1,10",
                "--checkpoint",
                str(tmp_path / "ck"),
                "--json",
                str(out2),
            ]
        )
        == 0
    )
    res2 = json.loads(out2.read_text())
    assert res2["predictors"] == res["predictors"]


def test_no_exact(tmp_path):
    out = tmp_path / "r.json"
    assert main([*SMALL, "--no-exact", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert "exact_arithmetic" not in res["predictors"]
    assert "weight_scaling__vs__mc_arithmetic_10" in res["gaps"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rate", "1.5"], "--rate must be a drop rate in [0, 1)"),
        (["--rate", "abc"], "--rate"),
        (["--samples", "0,10"], "samples (K) must be >= 1"),
        (["--hidden", "10,x"], "--hidden must be comma-separated integers"),
        (["--activation", "gelu"], "invalid choice: 'gelu'"),
        (["--hidden", "20,10"], "2^30 = 1,073,741,824 subnetworks"),
        (["--hidden", "20,10"], "pass --no-exact"),
        (["--max-units", "-1"], "--max-units must be >= 1"),
        (["--save", __file__, "--steps", "1"], "is a file; give a folder"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--checkpoint", "/nonexistent/ck"], "is not a directory"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(args, message, capsys):
    """The error is one line, the last; before it only argparse's usage block (for the
    options argparse checks), nothing at all for the library's own errors."""
    by_argparse = False
    try:
        code = main(["compare", *args])
    except SystemExit as e:  # argparse's own errors
        code, by_argparse = e.code, True
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert sum("error:" in line for line in lines) == 1 and "error:" in lines[-1]
    if by_argparse:
        usage = lines[:-1]
        assert usage[0].startswith("usage: dropstudy compare")
        assert all(line.startswith(" ") for line in usage[1:])
    else:
        assert lines == [lines[-1]] and lines[-1].startswith("dropstudy: error:")


def test_a_process_prints_no_traceback():
    """The same, end to end in a fresh process, for an error raised deep in the library."""
    r = run_cli("compare", "--hidden", "20,10")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("dropstudy: error:")


@pytest.mark.slow  # a compare run of its own; `make test-slow`
def test_compare_per_layer_rates_and_checkpoint_seed(tmp_path, capsys):
    out, ck = tmp_path / "a.json", tmp_path / "ck"
    small = ["compare", "--hidden", "3,2", "--steps", "20", "--samples", "5"]
    assert (
        main([*small, "--rate", "0.2,0.5", "--seed", "3", "--json", str(out), "--save", str(ck)])
        == 0
    )
    a = json.loads(out.read_text())
    assert a["config"]["model"]["rate"] == [0.2, 0.5] and a["config"]["seed"] == 3
    capsys.readouterr()
    # the checkpoint reproduces its own run: the saved seed's MC masks, the saved settings
    assert main(["compare", "--samples", "5", "--checkpoint", str(ck), "--json", str(out)]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "loaded" in head and "train" not in head
    b = json.loads(out.read_text())
    assert b["config"]["seed"] == 3 and b["config"]["loaded"] is True
    assert b["config"]["model"] == a["config"]["model"]
    assert b["predictors"] == a["predictors"]
    # another --seed draws other MC subnetworks
    assert main(["compare", "--samples", "5", "--checkpoint", str(ck), "--seed", "4",
                 "--json", str(out)]) == 0  # fmt: skip
    assert (
        json.loads(out.read_text())["predictors"]["mc_arithmetic_5"]
        != a["predictors"]["mc_arithmetic_5"]
    )
    # flags that would be ignored are refused
    assert main(["compare", "--checkpoint", str(ck), "--hidden", "20,20"]) == 2
    assert "--hidden would be ignored" in capsys.readouterr().err


def test_no_exact_gaps_against_the_largest_mc(capsys):
    assert main([*SMALL, "--no-exact"]) == 0
    table = capsys.readouterr().out
    assert "gaps against mc_arithmetic_10" in table and "max|dp| vs MC K=10" in table
    row = next(line for line in table.splitlines() if line.startswith("weight_scaling"))
    assert row.split()[-1] != "-"


def test_compare_progress_promises_no_time_left(capsys):
    """The evaluation bar counts subnetworks without an estimate of the time left: the first
    predictors' few subnetworks run at compiling speed and once promised hundreds of hours."""
    import jax
    import jax.numpy as jnp
    from dropstudy_experiments.compare import predictor_probs

    from dropstudy import masks as M
    from dropstudy.models import MLP

    model, x = MLP(hidden=(3,), n_out=2), jnp.ones((2, 4))
    variables, _ = M.init(model, jax.random.key(0), x)
    key = jax.random.key(1)
    out = predictor_probs(model, variables, x, [2], key, True, 10, progress=True)
    err = capsys.readouterr().err
    assert "subnetworks [" in err and "<" not in err  # tqdm writes its estimate as elapsed<left
    assert set(out) >= {"weight_scaling", "mc_arithmetic_2", "exact_geometric"}


@pytest.mark.slow  # a compare run of its own; `make test-slow`
def test_compare_pair_is_a_binary_task_with_one_logit(tmp_path, capsys):
    """--pair 1,8: the two digits' examples, 8 as label 1, a one-logit net trained with the
    sigmoid cross-entropy, every predictor scored as two classes; saved and loaded again."""
    from dropstudy.data import digits

    out = tmp_path / "r.json"
    args = [*SMALL, "--pair", "1,8", "--json", str(out), "--save", str(tmp_path / "ck")]
    assert main(args) == 0
    assert "digits 1-vs-8" in capsys.readouterr().out
    res = json.loads(out.read_text())
    conf = res["config"]
    y = digits().y_test
    assert conf["pair"] == [1, 8] and conf["model"]["n_out"] == 1
    assert conf["train"]["task"] == "binary" and conf["n_test"] == int(np.sum((y == 1) | (y == 8)))
    assert 0.5 < res["predictors"]["exact_arithmetic"]["accuracy"] <= 1
    out2 = tmp_path / "r2.json"
    load = ["compare", "--samples", "1,10", "--pair", "1,8", "--checkpoint", str(tmp_path / "ck")]
    assert main([*load, "--json", str(out2)]) == 0
    assert json.loads(out2.read_text())["predictors"] == res["predictors"]
    for bad in ("1,1", "1,10"):
        assert main([*SMALL, "--pair", bad]) == 2
        assert "pair must be two distinct classes" in capsys.readouterr().err
    for bad in ("3", "a,b", "1,8,3"):
        with pytest.raises(SystemExit):
            main([*SMALL, "--pair", bad])
        assert "--pair needs two class indices like 1,8" in capsys.readouterr().err
    # a checkpoint knows the pair it was trained on
    ck = ["compare", "--samples", "1", "--checkpoint", str(tmp_path / "ck")]
    for given, fix in (([], "--pair 1,8"), (["--pair", "8,1"], "--pair 1,8")):
        assert main([*ck, *given]) == 2
        assert fix in capsys.readouterr().err


def test_compare_refuses_an_average_past_the_bound_before_training(monkeypatch, capsys):
    from dropstudy_experiments import compare as C

    from dropstudy import progress

    monkeypatch.setattr(C, "train_with_progress", lambda *a, **kw: pytest.fail("trained"))
    monkeypatch.setattr(progress, "MAX_WORK", 100 * 360)  # digits: 360 test images
    assert main(["compare", "--samples", "1,101", "--no-exact"]) == 2
    assert "--samples 101" in capsys.readouterr().err
    assert main(["compare", "--hidden", "8", "--samples", "1"]) == 2  # 2^8 x 360
    assert "pass --no-exact" in capsys.readouterr().err


def test_the_study_folders_take_their_defaults_by_any_path(tmp_path, monkeypatch):
    """`report --results /abs/results` from another folder reads the other data set, the
    second lists and the cpu-* folders as `report --results results` does."""
    from pathlib import Path

    from dropstudy_experiments.cli import main, study_sets

    root = Path(__file__).resolve().parent.parent / "results"
    assert study_sets(root) == (root, root / "mnist1d")
    assert study_sets(root / "mnist1d") == (root, root / "mnist1d")
    assert study_sets(Path("results")) == (Path("results"), Path("results/mnist1d"))
    assert study_sets(root / "quick") is None and study_sets(tmp_path) is None
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--results", str(root), "--out", "R.md", "-q"]) == 0
    text = (tmp_path / "R.md").read_text()
    for heading in ("## Data sets", "## A second list of seeds", "## Another CPU"):
        assert heading in text, heading
