"""The command line keeps results apart by scale, one run per folder at a time, starts
without JAX, and speaks through logging."""

import json
import os
import re
import subprocess
import sys
import time

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
