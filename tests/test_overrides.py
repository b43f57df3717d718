"""Config fields set from the command line (``dropstudy run NAME --set FIELD=VALUE``)."""

import json
import shutil
from pathlib import Path

import pytest
from dropstudy_experiments import cli, runner
from dropstudy_experiments.overrides import apply_sets, canonical, parse_sets

from dropstudy.validate import DropstudyError

ROOT = Path(__file__).resolve().parent.parent / "results"


def test_each_type_is_parsed_from_its_default_and_checked():
    cfg = runner.config("scaling")
    new = apply_sets(cfg, {"margin_share": "0.25", "expect_k": "100", "hidden": "32,16",
                           "primary": "same_function", "train.lr": "0.1"})  # fmt: skip
    assert new.margin_share == 0.25 and new.expect_k == 100 and new.hidden == (32, 16)
    assert (
        new.primary == "same_function"
        and new.train.lr == 0.1
        and new.train.steps == cfg.train.steps
    )
    assert apply_sets(cfg, {}) is cfg and apply_sets(cfg, None) is cfg
    assert apply_sets(cfg, {"hidden": "(8, 8)"}).hidden == (8, 8)
    assert apply_sets(runner.config("maskmode"), {"protocol.window": "100"}).protocol.window == 100


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        ({"margin_shar": "0.3"}, "Config has no field 'margin_shar'; it has check_steps"),
        (
            {"margin_share": "abc"},
            r"margin_share=abc: margin_share takes a number \(its value here: 0.5\)",
        ),
        ({"expect_k": "2.5"}, "expect_k takes an integer"),
        ({"hidden": "8,x"}, "hidden=8,x: hidden takes a comma-separated list"),
        ({"margin_share": "-1"}, "margin_share must be > 0, got -1.0"),  # the Config's check
        ({"train": "3"}, "it holds settings of its own; set one: train.steps"),
        ({"train.lrr": "3"}, "TrainConfig has no field 'lrr'"),
        ({"hidden.x": "3"}, "hidden holds no fields"),
        ({"seeds": "3"}, "use --seeds instead"),
        ({"expect_seeds": "3"}, "expect_seeds: it counts the seeds; use --seeds instead"),
        ({"hidden": "(8,8"}, "hidden takes a comma-separated list"),
        ({"hidden": "[[8,8]]"}, "hidden takes a comma-separated list"),
        ({"hidden": "8,,8"}, "hidden takes a comma-separated list"),
        ({"primary": "nothing"}, "primary 'nothing' is not a test of this experiment"),
    ],
)
def test_a_field_that_cannot_take_the_value_is_named(sets, match):
    with pytest.raises(DropstudyError, match=match):
        apply_sets(runner.config("scaling"), sets)


def test_one_value_has_one_spelling_and_a_default_is_no_set():
    cfg = runner.config("scaling")
    assert canonical(cfg, {"margin_share": ".250", "hidden": "( 32 , 16 )"}) == {
        "hidden": "32,16", "margin_share": "0.25"}  # fmt: skip
    assert canonical(cfg, {"margin_share": "0.5", "hidden": "64,64,"}) == {}  # the defaults
    assert canonical(cfg, {"hidden": "8,"}) == {"hidden": "8"}
    assert canonical(cfg, None) == {}
    with pytest.raises(DropstudyError, match="splits: it counts the seeds"):
        canonical(runner.config("regression"), {"splits": "4"})
    # a nested list of seeds is a field like any other; the pilots' own check still holds
    cfg = runner.config("overfitting", sets={"protocol.pilot_seeds": "500,501,502"})
    assert cfg.protocol.pilot_seeds == (500, 501, 502)
    with pytest.raises(DropstudyError, match="include the pilot seeds"):
        runner.config("overfitting", sets={"protocol.pilot_seeds": "1,2,3"})


def test_items_are_field_equals_value_once_each():
    assert parse_sets(["b=2", " a = x,y "]) == {"a": "x,y", "b": "2"}
    assert parse_sets(None) == {}
    with pytest.raises(DropstudyError, match="write FIELD=VALUE"):
        parse_sets(["margin"])
    with pytest.raises(DropstudyError, match="gives a twice"):
        parse_sets(["a=1", "a=2"])


def test_the_scale_records_them_and_names_their_folder_and_command():
    s = runner.scale(True, None, "digits", 0, {"margin": "0.2", "hidden": "8,8"})
    assert s["set"] == {"hidden": "8,8", "margin": "0.2"}
    assert runner.scale_folder(s) == runner.RESULTS / "quick-set-hidden=8,8+margin=0.2"
    assert runner.scale_command(s, "stayput") == (
        "dropstudy run stayput --quick --set hidden=8,8 --set margin=0.2"
    )
    assert "set" not in runner.scale(True) and runner.config("stayput", sets={}) == (
        runner.config("stayput")
    )
    cfg = runner.config("stayput", quick=True, sets={"margin": "0.2"})
    assert cfg.margin == 0.2 and cfg.hidden == runner.config("stayput", quick=True).hidden


def test_the_command_line_takes_one_experiment_and_replicate_sets_them_again(
    tmp_path, monkeypatch, capsys
):
    assert cli.main(["run", "all", "--quick", "--set", "margin=0.2"]) == 2
    assert "--set applies to one experiment" in capsys.readouterr().err
    assert cli.main(["run", "stayput", "--quick", "--set", "margn=0.2"]) == 2
    assert "has no field 'margn'" in capsys.readouterr().err
    # a first list made with --set: its second list sets the same fields
    from dropstudy_experiments import report

    first = tmp_path / "first"
    shutil.copytree(ROOT / "robustness", first / "robustness",
                    ignore=shutil.ignore_patterns("*.png"))  # fmt: skip
    path = first / "robustness" / "results.json"
    r = json.loads(path.read_text())
    r["scale"]["set"] = {"mc_k": "50"}
    path.write_text(json.dumps(r))
    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda name, **kw: calls.append((name, kw)))
    monkeypatch.setattr(report, "near_level_reasons", lambda results: {"robustness": "p 0.04"})
    monkeypatch.setattr(cli, "load_data", lambda args: None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "from100" / "tuning").mkdir(parents=True)
    assert cli.main(["replicate", "--results", str(first), "--out", str(tmp_path / "o")]) == 0
    assert [(n, kw["sets"]) for n, kw in calls] == [("robustness", {"mc_k": "50"})]
    # ... and copies no cells from the second list without them (their keys do not record
    # the first list's tuned choices they trained at)
    assert "reuse" not in calls[0][1]


def test_a_set_run_reads_the_unset_folders_cells_and_reuse_names_another(
    tmp_path, monkeypatch, capsys
):
    """``--set`` copies the cells stored under the same key in the folder the run without
    it writes to; ``--reuse FOLDER`` names another; a missing one is refused."""
    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda name, **kw: calls.append(kw["reuse"]))
    monkeypatch.chdir(tmp_path)
    run = ["run", "stayput", "--quick", "--no-progress"]
    assert cli.main([*run, "--set", "margin=0.2"]) == 0  # no folder without --set yet
    (tmp_path / "results" / "quick").mkdir(parents=True)  # one with no cells (as committed)
    assert cli.main([*run, "--set", "margin=0.2"]) == 0
    (tmp_path / "results" / "quick" / "stayput" / "cells").mkdir(parents=True)
    assert cli.main([*run, "--set", "margin=0.2"]) == 0
    assert cli.main(run) == 0  # without --set: its own cells only
    (tmp_path / "elsewhere" / "tuning").mkdir(parents=True)
    assert cli.main([*run, "--reuse", "elsewhere"]) == 0
    (tmp_path / "results" / "quick" / "tuning").mkdir()
    assert cli.main([*run, "--reuse", "results/quick"]) == 0  # its own folder: nothing more
    capsys.readouterr()
    assert cli.main([*run, "--set", "margin=0.2", "--reuse", "elsewhere"]) == 0  # says so
    assert "--reuse elsewhere: cells are copied from there, not from results/quick" in (
        capsys.readouterr().err
    )
    calls.pop()
    assert calls == [None, None, Path("results/quick"), None, Path("elsewhere"), None]
    for folder in calls:  # what the command line passes, run_experiment takes
        runner.check_reuse(folder, 0, runner.scale(True))
    # refused: no folder, a folder of no results (an experiment's own), a second list
    (tmp_path / "elsewhere" / "stayput" / "cells").mkdir(parents=True)
    for folder in ("nowhere", "elsewhere/stayput"):
        assert cli.main([*run, "--reuse", folder]) == 2
        assert f"--reuse {folder}: no results folder" in capsys.readouterr().err
    # a folder of another data set or of full scale: no key of this run matches its cells
    for scale in (runner.scale(True, dataset="mnist1d"), runner.scale(False)):
        (tmp_path / "elsewhere" / "stayput" / "results.json").write_text(
            json.dumps({"scale": scale})
        )
        assert cli.main([*run, "--reuse", "elsewhere"]) == 2
        assert "cannot use (" in capsys.readouterr().err
    (tmp_path / "elsewhere" / "stayput" / "results.json").unlink()
    assert cli.main([*run, "--reuse", "elsewhere", "--seed-start", "100"]) == 2
    assert "a second list of seeds (--seed-start 100) copies no cells" in capsys.readouterr().err
    assert cli.main([*run, "--set", "margin=0.2", "--seed-start", "100"]) == 0  # no default
    assert len(calls) == 7 and calls[-1] is None
