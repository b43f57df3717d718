"""The command line keeps results apart by scale, one run per folder at a time, starts
without JAX, and speaks through logging."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dropstudy_experiments import runner
from dropstudy_experiments.cli import main
from dropstudy_experiments.report import build_report

from dropstudy.validate import DropstudyError


def _fake_results(folder, name, quick=False):
    p = folder / name / "results.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"quick": quick, "claim": "c", "verdict": "supported"}))
    return p


@pytest.mark.slow  # about a minute on 2 cores: `make test-slow`
def test_quick_run_goes_to_its_own_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    full = _fake_results(tmp_path / "results", "scaling")
    before = full.read_bytes()
    assert main(["run", "scaling", "--quick", "--no-progress"]) == 0
    assert full.read_bytes() == before  # the full-scale results are untouched
    res = json.loads((tmp_path / "results" / "quick" / "scaling" / "results.json").read_text())
    assert res["scale"] == {"quick": True, "seeds": None, "dataset": "digits"}
    err = capsys.readouterr().err
    assert "scaling: wrote results/quick/scaling/results.json" in err
    # the run ends with its primary's verdict and effect, and says a quick run is a smoke test
    t = res["tests"][res["primary"]]
    # (a quick run's nets are held by the protocol: too few steps to converge)
    assert re.search(rf"scaling: {t['verdict']} (\(held by the protocol[^\n]*\) )?\(unadjusted; "
                     r"equivalence within", err)  # fmt: skip
    assert t["what"] in err
    assert "quick results are a smoke test, not for conclusions" in err
    # into the full-scale folder only with --force
    assert main(["run", "scaling", "--quick", "--out", "results", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds results of `dropstudy run scaling`" in err and "--force" in err
    assert full.read_bytes() == before


def test_dataset_skips_or_refuses_experiments_on_their_own_data(tmp_path, monkeypatch, capsys):
    """``run all --dataset mnist1d`` runs the others and says it skips baselines, tutorial
    and regression; naming one of them with --dataset is refused before anything is
    written."""
    from dropstudy_experiments import cli

    ran = []
    monkeypatch.setattr(runner, "run_experiment", lambda name, **kw: ran.append(name))
    monkeypatch.setattr(cli, "load_data", lambda args: "data")
    out = tmp_path / "m"
    assert main(["run", "all", "--dataset", "mnist1d", "--out", str(out)]) == 0
    own = {n for n in cli.NAMES if runner.own_data(n)}
    assert own == {"baselines", "tutorial", "regression"}
    assert ran == [n for n in cli.NAMES if n not in own]
    err = capsys.readouterr().err
    assert "skipping" in err and "tutorial" in err and "regression (diabetes)" in err
    assert "baselines" in err
    ran.clear()
    other = tmp_path / "r"
    assert main(["run", "regression", "--dataset", "mnist1d", "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "regression runs on its own data (diabetes): --dataset does not apply" in err
    assert ran == [] and not other.exists()


@pytest.mark.slow  # two runs; the refusal without --force is in the default suite
def test_force_overwrites_another_scales_results(tmp_path, monkeypatch, capsys):
    """--force's success path: the full-scale results file is replaced by the quick run's."""
    monkeypatch.chdir(tmp_path)
    full = _fake_results(tmp_path / "results", "scaling")
    args = ["run", "scaling", "--quick", "--out", "results", "--no-progress"]
    assert main(args) == 2  # refused without --force
    assert main([*args, "--force"]) == 0
    res = json.loads(full.read_text())
    assert res["scale"] == {"quick": True, "seeds": None, "dataset": "digits"}
    assert res["experiment"] == "scaling"


def test_default_folders_per_scale():
    assert str(runner.scale_folder(runner.scale())) == "results"
    assert str(runner.scale_folder(runner.scale(quick=True))) == "results/quick"
    assert str(runner.scale_folder(runner.scale(False, 3, "mnist"))) == "results/mnist-seeds3"


def test_report_refuses_mixed_scales(tmp_path):
    _fake_results(tmp_path, "scaling", quick=True)
    _fake_results(tmp_path, "shrinkage", quick=False)
    with pytest.raises(DropstudyError, match="mixes results of different scales"):
        build_report(tmp_path, tmp_path / "R.md")


@pytest.mark.slow  # a subprocess run
def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    """Two processes: the second names the first; a dead process's lock is removed."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "dropstudy_experiments.cli", "run", "shrinkage", "--quick"]
    first = subprocess.Popen([*cmd, "--out", str(out), "--no-progress"], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / runner.LOCK).exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(
            [*cmd, "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"is in use by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
    # the killed run left its lock behind: stale, so the next run takes it over
    assert (out / runner.LOCK).exists()
    with runner.folder_lock(out):
        assert json.loads((out / runner.LOCK).read_text())["pid"] == os.getpid()
    assert not (out / runner.LOCK).exists()


def test_help_and_version_import_no_jax():
    code = (
        "import sys\n"
        "from dropstudy_experiments.cli import main\n"
        "for a in (['--help'], ['run', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(a)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'jax' not in sys.modules, 'jax was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "(default: 4000)" not in r.stdout  # compare's options are not in the top help
    assert "{all," + ",".join(runner.NAMES) + "}" in r.stdout
    assert "``" not in r.stdout and "dropstudy 0.1.0" in r.stdout


def test_quiet_silences_information(tmp_path, capsys):
    small = ["compare", "--hidden", "2", "--steps", "5", "--samples", "1"]
    assert main([*small, "--json", str(tmp_path / "a.json")]) == 0
    assert f"dropstudy: wrote {tmp_path / 'a.json'}" in capsys.readouterr().err
    assert main([*small, "-q", "--json", str(tmp_path / "b.json")]) == 0
    assert capsys.readouterr().err == ""
    assert runner.scale_command(runner.scale(True, 3)) == "dropstudy run all --quick --seeds 3"


def test_a_refused_option_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["run", "conv", "--seeds", "1", "--out", str(out)]) == 2
    assert "--seeds must be >= 2" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow  # two quick runs end to end (45 s); the parts are tested fast below
def test_a_second_list_of_seeds_runs_apart_and_is_set_beside_the_first(
    tmp_path, monkeypatch, capsys
):
    """`--seed-start K` runs the same experiment on seeds K.. into a folder of its own, and
    `report --replicate` sets its primary beside the first list's, naming a flipped verdict
    fragile."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "stayput", "--quick", "--no-progress"]) == 0
    first = json.loads((tmp_path / "results/quick/stayput/results.json").read_text())
    n = first["config"]["seeds"]
    # a list that overlaps the first is refused before anything is written
    assert main(["run", "stayput", "--quick", "--seed-start", "1", "--no-progress"]) == 2
    assert "disjoint" in capsys.readouterr().err
    assert not (tmp_path / "results/quick/from1").exists()
    assert main(["run", "stayput", "--quick", "--seed-start", str(n), "--no-progress"]) == 0
    path = tmp_path / f"results/quick/from{n}/stayput/results.json"
    second = json.loads(path.read_text())
    assert second["scale"] == {"quick": True, "seeds": None, "dataset": "digits", "seed_start": n}
    t1, t2 = (r["tests"][r["primary"]] for r in (first, second))
    assert t1["values"] != t2["values"]  # other seeds, other nets
    assert f"wrote results/quick/from{n}/stayput/results.json" in capsys.readouterr().err
    out = tmp_path / "R.md"
    build_report(tmp_path / "results/quick", out, replicate=path.parent.parent)
    text = out.read_text()
    (row,) = [x for x in text.splitlines() if x.startswith("| stayput | ") and "from seed" in x]
    assert f"from seed {n}: **{t2['verdict']}**" in row
    assert ("fragile" in row) == (t1["verdict"] != t2["verdict"])
    flipped = "supported" if t2["verdict"] != "supported" else "inconclusive"
    second["tests"][second["primary"]]["verdict"] = flipped
    path.write_text(json.dumps(second))
    build_report(tmp_path / "results/quick", out, replicate=path.parent.parent)
    text = out.read_text()
    assert ("Fragile here: stayput (" in text) == (flipped != t1["verdict"])
    # the first list's own folder is refused
    with pytest.raises(DropstudyError, match="is a first list of seeds"):
        build_report(tmp_path / "results/quick", out, replicate=tmp_path / "results/quick")


def test_seed_start_folders_commands_and_refusals():
    s = runner.scale(True, None, "digits", 200)
    assert str(runner.scale_folder(s)) == "results/quick/from200"  # inside its first list's
    assert runner.scale_command(s, "voting") == "dropstudy run voting --quick --seed-start 200"
    assert runner.scale() == {"quick": False, "seeds": None, "dataset": "digits"}  # as before
    # diversity's members take seeds s + j * seeds: its first list spans seeds x members
    div = runner.config("diversity")
    assert div.seed_span() == div.seeds * div.members
    with pytest.raises(DropstudyError, match="disjoint"):
        runner.config("diversity", seed_start=div.seeds)
    runner.config("diversity", seed_start=div.seeds * div.members)
    # a second list that reaches the pilot seeds is refused too
    with pytest.raises(DropstudyError, match="pilot seeds"):
        runner.config("overfitting", seed_start=995)
    with pytest.raises(DropstudyError, match="integer >= 0"):
        runner.config("overfitting", seed_start=-5)


def test_every_plan_draws_its_seeds_from_the_runs_first_seed():
    """Under `seed_start(K)` every experiment's cells get seeds K, K+1, ... (none keeps 0..)."""
    from dropstudy_experiments.seeds import seed_start

    from dropstudy.data import digits

    ds = digits()
    for name in runner.NAMES:
        cfg = runner.config(name, quick=True)
        lists = {}
        for start in (0, 5000):
            with seed_start(start):
                cells = runner.module(name).plan(cfg, ds)
            lists[start] = [v for c in cells.values() for k, v in c.kwargs.items()
                            if k in ("seeds", "splits")]  # fmt: skip
        assert lists[0], name
        for a, b in zip(lists[0], lists[5000], strict=True):
            assert b == [s + 5000 for s in a], name
        # a single fixed seed is a part's own design, named here: scaling's conventions
        fixed = [(name, label) for label, c in cells.items() if "seed" in c.kwargs]
        assert fixed in ([], [("scaling", "conventions")]), fixed


def _primary_only(verdict, p, start=0, blocked=False):
    """A results dict with one primary test (what the report's tables read)."""
    t = {"what": "w", "verdict": verdict, "effect": 0.1, "lo": 0.0, "hi": 0.2, "level": 0.9,
         "rule": "equivalence", "margin": 0.5, "p": p, "outcome": "supported", "n": 10,
         "se": 0.05, "df": 9}  # fmt: skip
    if blocked:
        t["blocked"] = ["not converged"]
    scale = {"quick": False, "seeds": None, "dataset": "digits"}
    return {"primary": "p", "tests": {"p": t}, "claim": "c", "config": {"seeds": 10},
            "scale": scale | ({"seed_start": start} if start else {})}  # fmt: skip


def test_the_rule_picks_the_primaries_near_their_level():
    from dropstudy_experiments.report import near_level

    first = {
        "stayput": _primary_only("contradicted", 1.0),  # far above: undisputed
        "voting": _primary_only("inconclusive", 0.06),  # near the level
        "tutorial": _primary_only("supported", 1e-6),  # far below
        "conv": _primary_only("inconclusive", 0.9, blocked=True),  # held by the protocol
    }
    assert near_level(first) == ["voting", "conv"]


def test_the_replication_table_names_fragile_verdicts():
    from dropstudy_experiments.report import Lists, replication

    first = {"stayput": _primary_only("supported", 0.01), "voting": _primary_only("supported",
             0.02), "conv": _primary_only("supported", 0.03),
             "overfitting": _primary_only("inconclusive", 0.3)}  # fmt: skip
    second = {"stayput": _primary_only("supported", 0.01, 100),
              "voting": _primary_only("inconclusive", 0.2, 100),
              "overfitting": _primary_only("inconclusive", 0.4, 100)}  # fmt: skip
    text = "\n".join(replication([Lists(first, second, "results/from100")]))
    assert "Fragile here: voting (a list keeps no values to pool)." in text
    assert "By the rule but not yet run on a second list: conv." in text
    row = lambda n: next(x for x in text.splitlines() if x.startswith(f"| {n} "))  # noqa: E731
    assert "from seed 100: **inconclusive**" in row("voting")
    assert "**fragile: the evidence decides on one list only**" in row("voting")
    assert row("stayput").endswith("| same |")
    assert "both inconclusive (neither decides)" in row("overfitting")  # not "replicated"
    second["voting"] = _primary_only("contradicted", 0.01, 100)
    text = "\n".join(replication([Lists(first, second, "results/from100")]))
    assert "**fragile: opposite verdicts**" in text
    # the same evidence, held by the protocol's guard on one list only: not fragile
    held = _primary_only("inconclusive", 0.01, 100, blocked=True)
    held["tests"]["p"]["verdict_w"] = "supported"
    second["voting"] = held
    text = "\n".join(replication([Lists(first, second, "results/from100")]))
    assert "The guard alone differs for voting." in text and "Fragile here" not in text


def test_replicate_names_its_experiments_and_report_refuses_bad_folders(tmp_path, capsys):
    """`dropstudy replicate --dry-run` names what the rule picks from the committed results;
    a missing, foreign or stale second list is refused with what to run."""
    import shutil

    from dropstudy_experiments.report import near_level, near_level_reasons, read_results

    root = Path(__file__).resolve().parent.parent / "results"
    assert main(["replicate", "--results", str(root), "--dry-run"]) == 0
    err = capsys.readouterr().err
    picked = near_level(read_results(root))
    reasons = near_level_reasons(read_results(root))
    assert list(reasons) == picked
    said = ", ".join(f"{n} ({why})" for n, why in reasons.items()) or "none"
    assert f"replicate: {said} on seeds from 100" in err
    with pytest.raises(DropstudyError, match="no results there"):
        build_report(root, tmp_path / "R.md", replicate=tmp_path / "empty")
    second = tmp_path / "from100"
    shutil.copytree(root / "stayput", second / "stayput")
    with pytest.raises(DropstudyError, match="second list of seeds"):  # not a second list
        build_report(root, tmp_path / "R.md", replicate=second)
    path = second / "stayput" / "results.json"
    r = json.loads(path.read_text())
    r["scale"]["seed_start"] = 100
    r["config"]["margin"] = r["config"]["margin"] * 2
    path.write_text(json.dumps(r))
    with pytest.raises(DropstudyError, match="another configuration"):
        build_report(root, tmp_path / "R.md", replicate=second)


def test_run_all_with_a_seed_start_names_the_widest_first_list(tmp_path, capsys):
    out = tmp_path / "second"
    assert main(["run", "all", "--seed-start", "20", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    need = max(runner.config(n).seed_span() for n in runner.NAMES)
    assert f"start at {need} or above" in err and not out.exists()


def test_the_findings_table_marks_a_fragile_verdict():
    from dropstudy_experiments.report import Lists, found_table

    first = {"robustness": _primary_only("supported", 0.01), "stayput": _primary_only("supported",
             0.01)}  # fmt: skip
    second = {"robustness": _primary_only("inconclusive", 0.2, 100),
              "stayput": _primary_only("supported", 0.01, 100)}  # fmt: skip
    rows = found_table(first, [], [Lists(first, second, "from100")])[0].splitlines()
    robustness = next(x for x in rows if x.startswith("| robustness"))
    stayput = next(x for x in rows if x.startswith("| stayput"))
    assert (
        "fragile: the evidence is supported on the first list of seeds, inconclusive on a "
        "second" in robustness
    )
    assert "fragile" not in stayput and "(supported, unadjusted) replicated on a second" in stayput
    assert "list of seeds" not in "".join(found_table(first, []))


def test_second_list_refusals_come_before_any_work(tmp_path, capsys):
    """replicate checks every list it would run (overlap, pilot seeds) before the first; a
    negative, overlapping or too large start is refused in one line; a report refuses a
    second list given as the first."""
    root = Path(__file__).resolve().parent.parent / "results"
    out = tmp_path / "second"
    for start, said in ((5, "disjoint"), (995, "pilot seeds")):
        args = ["replicate", "--results", str(root), "--seed-start", str(start)]
        assert main([*args, "--out", str(out), "--dry-run"]) == 2
        assert said in capsys.readouterr().err and not out.exists()
    assert main(["run", "stayput", "--seed-start", "-1", "--out", str(out)]) == 2
    assert "must be an integer >= 0" in capsys.readouterr().err
    assert main(["run", "stayput", "--seed-start", str(2**32), "--out", str(out)]) == 2
    assert "2^31" in capsys.readouterr().err and not out.exists()
    with pytest.raises(DropstudyError, match="is a first list of seeds"):
        build_report(root, tmp_path / "R.md", replicate=root)
