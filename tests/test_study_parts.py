"""The study's framework in-process: cells keyed by their arguments, results files,
configurations, and a quick run of every experiment with its report section."""

import json
import re
from pathlib import Path

import numpy as np
import optax
import pytest
from dropstudy_experiments import common, runner
from dropstudy_experiments.codekey import code_key
from dropstudy_experiments.common import PREDICTOR_NAMES, all_findings, cell_text, verdict_table
from dropstudy_experiments.report import build_report
from dropstudy_experiments.results import clean, dumps
from dropstudy_experiments.runner import NAMES
from dropstudy_experiments.stats import VERDICTS

from dropstudy.data import digits
from dropstudy.train import TrainConfig
from dropstudy.validate import DropstudyError


def _double(x, cfg):
    return {"y": 2 * x, "steps": cfg.steps}


def test_cell_key_comes_from_the_arguments():
    ds = digits()
    a = common.cell(_double, x=1, cfg=TrainConfig(steps=3)).key()
    assert a == common.cell(_double, x=1, cfg=TrainConfig(steps=3)).key()
    assert a != common.cell(_double, x=1, cfg=TrainConfig(steps=4)).key()
    assert a != common.cell(_double, x=2, cfg=TrainConfig(steps=3)).key()
    k = common.cell_key(ds)
    assert k == {"dataset": "digits", "digest": ds.digest()}
    assert common.cell_key(ds.subset(100)) != k  # other content, other key
    with pytest.raises(TypeError, match="no stable key"):
        common.cell_key(object())
    with pytest.raises(TypeError, match="names its optimisers"):
        common.cell_key(TrainConfig(optimizer=optax.sgd(0.1)))


def test_cells_are_reused_only_for_the_same_key(tmp_path):
    ctx = common.Context("shrinkage", tmp_path, progress=False)
    calls = []

    def work(v):
        calls.append(v)
        return {"v": v}

    assert ctx.run_cells({"a": common.cell(work, v=1)}) == {"a": {"v": 1}}
    assert ctx.run_cells({"a": common.cell(work, v=1)}) == {"a": {"v": 1}}
    assert ctx.run_cells({"a": common.cell(work, v=2)}) == {"a": {"v": 2}}
    assert calls == [1, 2]


def test_a_cell_made_on_another_machine_is_made_again(tmp_path, monkeypatch, caplog):
    """A folder shared by two machines (CPU model or XLA flags) never reuses the other's
    cells: the results file records one machine."""
    import logging

    ctx = common.Context("shrinkage", tmp_path, progress=False)
    calls = []

    def work(v):
        calls.append(v)
        return {"v": v}

    here = common.machine()
    assert ctx.run_cells({"a": common.cell(work, v=1)}) == {"a": {"v": 1}}
    monkeypatch.setattr(common, "machine", lambda: {**here, "cpu": "another CPU"})
    with caplog.at_level(logging.DEBUG, logger="dropstudy"):
        assert ctx.run_cells({"a": common.cell(work, v=1)}) == {"a": {"v": 1}}
    assert calls == [1, 1] and "changed: the machine (CPU model or XLA flags)" in caplog.text
    monkeypatch.setattr(common, "machine", lambda: {**here, "xla_flags": "--xla_other=1"})
    ctx.run_cells({"a": common.cell(work, v=1)})
    assert calls == [1, 1, 1]
    # a key from before machines were keyed: nothing is said to have changed
    from dropstudy_experiments.cells import changed

    key = common.cell(work, v=1).key()
    old = {k: v for k, v in key.items() if k != "machine"}
    assert changed(old, key) == "the stored key predates keys' machine"
    assert changed({**old, "code": "x"}, key) == (
        "changed: the code it runs; the stored key predates keys' machine"
    )


def test_the_machine_tells_cpus_of_one_name_apart_by_their_features(monkeypatch):
    info = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx2\n"
    monkeypatch.setattr(common, "cpuinfo", lambda: info)
    a = common.machine()
    assert a["cpu"] == "Intel(R) Xeon(R) Processor" and len(a["features"]) == 12
    monkeypatch.setattr(common, "cpuinfo", lambda: info.replace("avx2", "avx512f"))
    b = common.machine()
    assert b["cpu"] == a["cpu"] and b["features"] != a["features"]
    monkeypatch.setattr(common, "cpuinfo", lambda: info + info.replace("avx2", "avx512f"))
    assert common.machine() == a  # the first core's lines
    monkeypatch.setattr(common, "cpuinfo", lambda: "")
    assert "features" not in common.machine() and common.machine()["cpu"]


def test_a_second_list_takes_its_first_lists_tuning_from_another_machine(
    tmp_path, monkeypatch, caplog
):
    """A tuned choice is the design a second list repeats: read from the first list's
    folder whatever machine made it (its other key parts must match); its own arms are
    keyed by this machine."""
    import logging

    calls = []

    def tune(v):
        calls.append(v)
        return {"lr": v}

    first = common.TuningStore(tmp_path / "first" / "tuning")
    assert first(tune, {"v": 1}, "t") == {"lr": 1}
    here = common.machine()
    monkeypatch.setattr(common, "machine", lambda: {**here, "cpu": "another CPU"})
    second = common.TuningStore(tmp_path / "second" / "tuning", first=tmp_path / "first" / "tuning")
    with caplog.at_level(logging.INFO, logger="dropstudy"):
        assert second(tune, {"v": 1}, "t") == {"lr": 1}
    assert calls == [1] and "taking the first list's tuning, made on " + here["cpu"] in caplog.text
    assert second(tune, {"v": 2}, "t") == {"lr": 2} and calls == [1, 2]  # another key: made


def test_a_cell_stored_elsewhere_under_the_same_key_is_copied_not_computed(tmp_path):
    """``reuse`` folders are read, never written: a cell stored there under the same key is
    copied in byte for byte; one under another key (or none) is computed here."""
    from dropstudy_experiments.cells import CellStore

    calls = []
    f = lambda v: (calls.append(v), {"v": v})[1]  # noqa: E731
    base = CellStore(tmp_path / "base")
    base.get("a", {"k": 1}, lambda: f(1))
    base.get("b", {"k": 2}, lambda: f(2))
    before = {p.name: p.read_bytes() for p in base.dir.iterdir()}
    store = CellStore(tmp_path / "new", reuse=[base.dir, tmp_path / "missing"])
    assert store.get("a", {"k": 1}, lambda: f(10)) == {"v": 1}
    assert store.path("a").read_bytes() == base.path("a").read_bytes()
    assert store.get("b", {"k": 3}, lambda: f(30)) == {"v": 30}  # another key: computed
    assert store.get("c", {"k": 4}, lambda: f(40)) == {"v": 40}  # stored nowhere
    assert calls == [1, 2, 30, 40]
    assert store.copied == ["a"] and store.reused == ["a"] and store.computed == ["b", "c"]
    assert {p.name: p.read_bytes() for p in base.dir.iterdir()} == before  # never written
    # a copied cell is the store's own from then on
    again = CellStore(tmp_path / "new")
    assert again.get("a", {"k": 1}, lambda: f(11)) == {"v": 1} and calls[-1] == 40


def test_a_tuned_arm_stored_elsewhere_is_copied_only_from_the_same_machine(tmp_path, monkeypatch):
    calls = []

    def tune(v):
        calls.append(v)
        return {"lr": v}

    base = tmp_path / "base" / "tuning"
    assert common.TuningStore(base)(tune, {"v": 1}, "t") == {"lr": 1}
    store = common.TuningStore(tmp_path / "new" / "tuning", reuse=base)
    assert store(tune, {"v": 1}, "t") == {"lr": 1} and calls == [1]
    assert store.cells.copied and (tmp_path / "new" / "tuning").is_dir()
    here = common.machine()
    monkeypatch.setattr(common, "machine", lambda: {**here, "cpu": "another CPU"})
    other = common.TuningStore(tmp_path / "other" / "tuning", reuse=base)
    assert other(tune, {"v": 1}, "t") == {"lr": 1} and calls == [1, 1]  # tuned again


def test_results_are_deterministic_and_finite():
    assert dumps({"b": np.float32(0.1), "a": [1, np.int64(2)]}) == dumps(
        {"a": [1, 2], "b": 0.10000000149011612}
    )
    assert clean(1.23456789012345) == 1.23456789
    with pytest.raises(DropstudyError, match="non-finite"):
        clean({"x": float("inf")})


@pytest.mark.parametrize("name", NAMES)
def test_configs_have_a_quick_variant_and_seeds(name):
    full, quick = runner.config(name), runner.config(name, quick=True)
    assert quick != full and type(quick) is type(full)
    assert runner.config(name, seeds=3).to_dict() != full.to_dict() or name == "scaling"
    with pytest.raises(DropstudyError, match="--seeds must be >= 2"):
        runner.config(name, seeds=1)


@pytest.fixture(scope="session")
def quick_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("quick")


# The quick runs, dealt to two pytest-xdist workers (groups quick0 and quick1, alternating
# by the experiments' order); each worker's runs share that worker's quick_dir. The twelve
# heaviest (each about 25-60 s on 2 cores, most of it compiling) run in `make test-slow`, to
# keep the default suite under 10 minutes; their sections still render from the committed
# results in the report tests, and every cell's code is covered by `make study`.
SLOW_QUICK_RUNS = (  # overfitting's (the protocol end to end), regression's, shrinkage's stay
    "maskmode",  # four tuned arms (about 2 minutes)
    "stayput",  # test_resume.py runs it end to end (its section: the report tests)
    "scaling",
    "robustness",
    "averaging",
    "tutorial",
    "conv",
    "coadaptation",
    "ensembles",
    "diversity",
    "voting",
    "baselines",
)
QUICK_RUNS = [
    pytest.param(
        n,
        marks=[pytest.mark.xdist_group(f"quick{i % 2}")]
        + ([pytest.mark.slow] if n in SLOW_QUICK_RUNS else []),
    )
    for i, n in enumerate(NAMES)
]


# Experiments whose primary is a mean over test examples: its interval covers their noise.
TWO_LEVEL = ("overfitting", "ensembles", "maskmode", "conv", "averaging", "robustness",
             "voting", "diversity")  # fmt: skip


@pytest.mark.parametrize("name", QUICK_RUNS)
def test_quick_run_and_section(name, quick_dir):
    path = runner.run_experiment(name, out=quick_dir, quick=True, progress=False)
    res = json.loads(path.read_text())
    assert res["claim"] == runner.module(name).CLAIM and res["quick"] is True
    assert res["config"] == json.loads(dumps(runner.config(name, quick=True).to_dict()))
    assert res["primary"] == res["config"]["primary"] and res["primary"] in res["tests"]
    for t in res["tests"].values():
        assert t["verdict"] in VERDICTS and t["what"] and t["predictor"] in PREDICTOR_NAMES
    assert "findings" not in res and isinstance(all_findings(res), list)  # the report's prose
    assert res["figures"]
    for fig in res["figures"]:
        assert (path.parent / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = runner.section(name).section(res)
    assert isinstance(md, str) and "nan" not in md.lower()
    assert cell_text(res["tests"][res["primary"]]["what"]) in verdict_table(res)
    assert "nan" not in path.read_text().lower()
    # every cell's and the experiment's wall time went to the untracked timing log
    log = [json.loads(x) for x in (quick_dir / "timing.jsonl").read_text().splitlines()]
    mine = [e for e in log if e["experiment"] == name]
    assert {e["cell"] for e in mine} - {None} and mine[-1]["cell"] is None
    # the code that made each cell, by its digest (a reused cell's code had the same digest)
    assert set(res["code"]["cells"]) == {e["cell"] for e in mine} - {None}
    assert all(len(d) == 16 for d in res["code"]["cells"].values()) and res["code"]["digest"]
    summarise = runner.module(name).summarise
    assert res["code"]["summary"] == code_key(summarise, {"cfg": runner.config(name, quick=True)})
    assert all(e["seconds"] >= 0 and isinstance(e["computed"], bool) for e in mine)
    assert "seconds" not in path.read_text()  # the results file carries no timing
    assert res["machine"]["cpu"] and "xla_flags" in res["machine"]
    # two-level tests keep their (S, N) values in the npz beside the results, and only they
    two = {k: t for k, t in res["tests"].items() if t.get("per_example")}
    npz = path.parent / "per_example.npz"
    assert npz.is_file() == bool(two)
    if two:
        with np.load(npz) as z:
            assert set(z.files) == set(two)
            for k, t in two.items():
                assert z[k].shape == (t["n"], t["n_examples"])
                np.testing.assert_allclose(z[k].mean(1), t["values"])
    if name in TWO_LEVEL:  # a primary that is a mean over test examples covers their noise
        assert res["tests"][res["primary"]]["n_examples"], name


@pytest.mark.xdist_group("quick0")
def test_report_from_the_quick_results(quick_dir, tmp_path):
    # The quick runs of this worker's group (in the default suite overfitting's and
    # regression's; run alone, this test makes overfitting's, about 40 s).
    done = [n for n in NAMES if (quick_dir / n / "results.json").is_file()]
    if not done:
        runner.run_experiment("overfitting", out=quick_dir, quick=True, progress=False)
    done = [n for n in NAMES if (quick_dir / n / "results.json").is_file()]
    report = build_report(quick_dir, tmp_path / "REPORT.md")
    text = report.read_text()
    for name in done:
        assert f". {name}\n" in text
    missing = [n for n in NAMES if n not in done]
    assert not missing or f"Not yet run: {', '.join(missing)}." in text
    # the header and each section name the commands that made this folder, --out included
    assert ("for NAME in " + ", ".join(done)) in text if missing else "run all --quick" in text
    assert f"*Made by `dropstudy run {done[0]} --quick --out {quick_dir}`.*" in text
    assert "Quick (smoke-test) scale" in text
    assert "How to read the verdicts" in text
    assert "| p (Holm) | p (BH) | verdict | detects |" in text
    for link in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (report.parent / link).is_file(), link
    # from the command line, a report of another folder goes beside its results
    from dropstudy_experiments.cli import main

    assert main(["report", "--results", str(quick_dir), "-q"]) == 0
    beside = (quick_dir / "REPORT.md").read_text()
    assert "How to read the verdicts" in beside and f"](./{done[0]}/" in beside


def test_report_refuses_results_of_another_version(tmp_path):
    (tmp_path / "scaling").mkdir()
    (tmp_path / "scaling" / "results.json").write_text(json.dumps({"claim": "x", "verdict": "?"}))
    with pytest.raises(DropstudyError, match="another version of the study"):
        build_report(tmp_path, tmp_path / "REPORT.md")


def test_report_names_a_stale_field_and_one_experiments_folder(tmp_path):
    """A section that needs a field an older file lacks names the field (not a Python repr)
    and the command with the folder's --out; one experiment's folder given as --results is
    refused with its parent to pass."""
    committed = Path(__file__).resolve().parent.parent / "results" / "ensembles"
    r = json.loads((committed / "results.json").read_text())
    del r["margin_nll"]
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "ensembles" / "results.json").write_text(json.dumps(r))
    with pytest.raises(DropstudyError) as e:
        build_report(tmp_path, tmp_path / "REPORT.md")
    said = str(e.value)
    assert "needs 'margin_nll', which it lacks" in said and "KeyError" not in said
    assert f"dropstudy run ensembles --out {tmp_path}`" in said
    with pytest.raises(
        DropstudyError, match=f"pass the folder that holds it, --results {tmp_path}$"
    ):
        build_report(tmp_path / "ensembles", tmp_path / "R.md")


@pytest.mark.parametrize("name", NAMES)
def test_every_config_field_is_read(name):
    """No accepted-and-ignored option: every field of an experiment's Config is read by its
    module, its parts or its report section (``cfg.field``, ``cfg["field"]``) beyond its
    definition."""
    import dataclasses
    import inspect

    mod = runner.module(name)
    here = Path(inspect.getfile(mod)).parent
    # the module, its parts (shrinkage_linear.py, ...) and its report section
    parts = sorted(here.glob(f"{name}_*.py"))
    files = [here / f"{name}.py", *parts, here / "sections" / f"{name}.py"]
    src = "\n".join(f.read_text() for f in files)
    unread = [
        f.name
        for f in dataclasses.fields(mod.Config)
        if not re.search(rf"\.{f.name}\b|\[\"{f.name}\"\]|\b{f.name}=cfg\.", src)
    ]
    assert not unread, f"{name}.Config fields never read: {unread}"


def test_averaging_pairs_come_from_the_training_set():
    from dropstudy_experiments import averaging

    assert averaging.PAIRS == averaging.closest_pairs(digits(), len(averaging.PAIRS))


def _fake(dataset: str, effect: float, p: float) -> dict:
    """A minimal results file: one primary direction test, at the full scale on ``dataset``."""
    test = {"rule": "direction", "claimed": "> 0", "n": 10, "effect": effect, "lo": effect - 1,
            "hi": effect + 1, "level": 0.95, "p": p, "outcome": "supported",
            "verdict": "supported" if p < 0.05 else "inconclusive", "what": "x minus y",
            "predictor": "mc", "mde": 0.1, "seeds_needed": 5}  # fmt: skip
    scale = {"quick": False, "seeds": None, "dataset": dataset}
    return {"claim": "c", "tests": {"t": test}, "primary": "t", "scale": scale}


def test_the_family_is_the_claims_with_bh_beside_holm():
    """Checks (identities, the published baselines) are decided alone at their own p-value;
    Holm and Benjamini-Hochberg run over the claims only, and a verdict that depends on the
    correction shows both."""
    from dropstudy_experiments.report import adjusted, check

    assert check("stayput") and check("baselines")
    assert check("voting") is None and check("scaling") is None  # scaling's primary can fail
    res = {"baselines": _fake("digits", 0.2, 1e-20), "stayput": _fake("digits", 0.2, 1e-20),
           "voting": _fake("digits", 0.5, 0.02), "conv": _fake("digits", 0.5, 0.03),
           "robustness": _fake("digits", 0.5, 0.04)}  # fmt: skip
    d = adjusted(res)
    assert d["stayput"]["p_holm"] == d["stayput"]["p_bh"] == 1e-20 and d["stayput"]["check"]
    # Holm over the three claims only: 0.02 * 3, 0.03 * 2, 0.04 * 1 -> 0.06, 0.06, 0.06
    assert [d[n]["p_holm"] for n in ("voting", "conv", "robustness")] == pytest.approx([0.06] * 3)
    assert [d[n]["p_bh"] for n in ("voting", "conv", "robustness")] == pytest.approx([0.04] * 3)
    assert {d[n]["verdict"] for n in ("voting", "conv", "robustness")} == {"inconclusive"}
    assert {d[n]["verdict_bh"] for n in ("voting", "conv", "robustness")} == {"supported"}


def test_agreement_table_and_compare_refusals(tmp_path):
    from dropstudy_experiments.report import agreement

    digits = {
        "scaling": _fake("digits", 0.2, 0.001),
        "voting": _fake("digits", 0.5, 0.001),
        "conv": _fake("digits", 0.5, 0.001),
        "stayput": _fake("digits", 0.5, 0.001),
    }
    other = {
        "scaling": _fake("mnist1d", 0.2, 0.001),  # a primary that does not read the data
        "voting": _fake("mnist1d", 0.6, 0.002),
        "conv": _fake("mnist1d", 0.1, 0.6),
    }
    text = "\n".join(agreement(digits, [other], [("results/mnist1d", True)]))
    assert "| voting | x minus y | supported" in text and "| conv |" in text
    # conv is decided on digits only: no shown difference
    assert "Agree: voting. Differ: none. Decided on one data set only: conv. Same test: " in text
    assert "| decided on one data set only |" in text
    flipped = {**other, "voting": _fake("mnist1d", -0.6, 0.002)}
    flipped["voting"]["tests"]["t"]["outcome"] = "supported"  # same word, opposite sign
    text = "\n".join(agreement(digits, [flipped], [("results/mnist1d", True)]))
    assert "same verdict, opposite effects" in text and "Differ: voting. Decided" in text
    contra = {**other, "voting": _fake("mnist1d", -0.6, 0.002)}  # supported, contradicted
    contra["voting"]["tests"]["t"]["outcome"] = "contradicted"
    text = "\n".join(agreement(digits, [contra], [("results/mnist1d", True)]))
    assert "| **no**: opposite verdicts |" in text and "Differ: voting." in text
    # three data sets: supported, contradicted and inconclusive still oppose
    third = {"voting": _fake("other", 0.1, 0.6)}
    rels = [("results/mnist1d", True), ("results/other", True)]
    text = "\n".join(
        agreement({"voting": digits["voting"]}, [{"voting": contra["voting"]}, third], rels)
    )
    assert "| **no**: opposite verdicts |" in text and "Differ: voting." in text
    # opposite sides of 0, each interval excluding it, one verdict left open by Holm
    held_open = {**other, "conv": _fake("mnist1d", -0.5, 0.3)}  # its p beyond the level
    held_open["conv"]["tests"]["t"].update(lo=-0.9, hi=-0.1, outcome="contradicted")
    sure = {**digits, "conv": _fake("digits", 0.5, 0.001)}
    sure["conv"]["tests"]["t"].update(lo=0.1, hi=0.9)
    text = "\n".join(agreement(sure, [held_open], [("results/mnist1d", True)]))
    assert "| **no**: opposite effects, each interval excluding 0 |" in text
    assert "[mnist1d](results/mnist1d/REPORT.md)" in text
    assert "not run on mnist1d: stayput" in text and "among the 3 claims both have" in text
    # equivalence shown on both data sets: negligible effects of opposite sign agree
    equiv = {
        k: _fake(d, e, 0.001) for k, d, e in (("a", "digits", 0.001), ("b", "mnist1d", -0.002))
    }
    for r in equiv.values():
        r["tests"]["t"].update(rule="equivalence", margin=0.01)
    text = "\n".join(
        agreement({"voting": equiv["a"]}, [{"voting": equiv["b"]}], [("results/mnist1d", True)])
    )
    assert "Agree: voting." in text and "| **no**" not in text
    # inconclusive on both: no sign was shown, so opposite point estimates do not differ,
    # and nothing agrees either
    unsure = {"voting": _fake("digits", 0.3, 0.4)}
    text = "\n".join(
        agreement(unsure, [{"voting": _fake("mnist1d", -0.3, 0.4)}], [("results/mnist1d", True)])
    )
    assert "Agree: none. Differ: none. Inconclusive on both: voting." in text
    assert "| **no**" not in text and "| both inconclusive |" in text

    def folder(name, results):
        for n, r in results.items():
            (tmp_path / name / n).mkdir(parents=True)
            (tmp_path / name / n / "results.json").write_text(json.dumps(r))
        return tmp_path / name

    a, b = folder("a", digits), folder("b", digits)
    with pytest.raises(DropstudyError, match="a data set the report has already"):
        build_report(a, tmp_path / "R.md", compare=[b])
    c = folder("c", {"robustness": _fake("mnist1d", 0.1, 0.5)})
    with pytest.raises(DropstudyError, match="no experiment in common"):
        build_report(a, tmp_path / "R.md", compare=[c])


def test_the_committed_study_links_to_the_repository_report(tmp_path, monkeypatch):
    """results/ has no REPORT.md of its own: make study writes it to the repository root,
    and a compared report links there; another folder's report is its own."""
    from dropstudy_experiments.report import report_of

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "mnist1d").mkdir(parents=True)
    assert report_of(Path("results")) == Path("results") / "REPORT.md"  # none yet anywhere
    (tmp_path / "REPORT.md").write_text("x")
    assert report_of(Path("results")).resolve() == (tmp_path / "REPORT.md").resolve()
    assert report_of(Path("results/mnist1d")) == Path("results/mnist1d") / "REPORT.md"


def test_the_findings_table_puts_a_margin_that_differs_in_each_cell():
    """A primary decided at another margin on each data set shows each margin beside its
    verdict, not the first data set's for both."""
    from copy import deepcopy

    from dropstudy_experiments.common import rule_str
    from dropstudy_experiments.report import found_table

    root = Path(__file__).resolve().parent.parent / "results"
    one = {"maskmode": json.loads((root / "maskmode" / "results.json").read_text())}
    two = deepcopy({"maskmode": json.loads((root / "mnist1d" / "maskmode" / "results.json")
                                           .read_text())})  # fmt: skip
    m = one["maskmode"]["tests"][one["maskmode"]["primary"]]["margin"]
    two["maskmode"]["tests"][two["maskmode"]["primary"]]["margin"] = m
    (row,) = [x for x in found_table(one, [two])[0].splitlines() if x.startswith("| maskmode")]
    within = lambda v: rule_str({"rule": "equivalence", "margin": v})  # noqa: E731
    assert row.count(within(m)) == 1  # the same margin: once, in the primary test's column
    two["maskmode"]["tests"][two["maskmode"]["primary"]]["margin"] = 2.5 * m
    (row,) = [x for x in found_table(one, [two])[0].splitlines() if x.startswith("| maskmode")]
    cells = row.split(" | ")
    assert within(m) in cells[-2] and within(2.5 * m) in cells[-1] and "+-" not in cells[2]


def test_primaries_moved_after_their_result_was_seen_are_marked_post_hoc():
    from dropstudy_experiments.report import found_table, post_hoc

    assert post_hoc("robustness").startswith(" *(post hoc: ") and post_hoc("regression") == ""
    res = {"regression": _fake("digits", 0.5, 0.001), "robustness": _fake("digits", 0.5, 0.001)}
    rows = {line.split(" | ")[0].strip("| "): line for line in found_table(res)[0].splitlines()}
    assert "post hoc" in rows["robustness"] and "post hoc" not in rows["regression"]
    assert any("marked post hoc was set or changed" in line for line in found_table(res))
    alone = found_table({"regression": _fake("digits", 0.5, 0.001)})
    assert not any("post hoc" in line for line in alone)


def test_the_report_says_when_its_results_come_from_more_than_one_cpu():
    from dropstudy_experiments.report import machines_str

    a, b = {"cpu": "Intel(R) Xeon(R) Processor", "arch": "x86_64"}, {"cpu": "AMD EPYC"}
    one = {"voting": {"machine": a}, "conv": {"machine": a}}
    assert machines_str([("digits", one)]) == ""
    two = {**one, "ensembles": {"machine": {**b, "arch": "x86_64"}}}
    said = machines_str([("digits", two), ("mnist1d", {"voting": {"machine": a}})])
    assert "ensembles (digits) on AMD EPYC (x86_64)" in said
    assert "every other results file on Intel(R) Xeon(R) Processor (x86_64)" in said
    # a file that records no machine is left out, not counted as another CPU
    assert machines_str([("digits", {**one, "old": {}})]) == ""
    flags = machines_str([("digits", {**one, "maskmode": {"machine": {**a, "xla_flags": "--x"}}})])
    assert "XLA_FLAGS '--x'" in flags


def test_the_data_sets_table_says_when_margins_differ():
    """An equivalence primary decided at another margin on each data set: the table says so
    beside the comparison (the verdicts are not the data's alone)."""
    from dropstudy_experiments.report import agreement

    def equiv(dataset, margin, effect):  # another effect on each: not the same test
        r = _fake(dataset, effect, 0.4)
        r["tests"]["t"].update(rule="equivalence", margin=margin, claimed=None)
        return {"maskmode": r}

    text = "\n".join(agreement(equiv("digits", 0.002, 0.001), [equiv("mnist1d", 0.02, 0.003)],
                               [("results/mnist1d", True)]))  # fmt: skip
    assert "(margins differ: +-0.002, +-0.02) |" in text
    same = "\n".join(agreement(equiv("digits", 0.02, 0.001), [equiv("mnist1d", 0.02, 0.003)],
                               [("results/mnist1d", True)]))  # fmt: skip
    assert "margins differ" not in same and "| both inconclusive |" in same
