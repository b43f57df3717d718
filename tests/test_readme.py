"""The README's and the docs' Python blocks run, in order, in one namespace: they cannot
drift from the code."""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
# The pages with Python blocks, in reading order: each continues the one before.
PAGES = (README, README.parent / "docs" / "library.md", README.parent / "docs" / "running.md")
CLI_DOC = README.parent / "docs" / "cli.md"


@pytest.mark.slow  # about a minute on 2 cores: `make test-slow`
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = [
        (page, code)
        for page in PAGES
        for code in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    ]
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the docs write a checkpoint folder
    namespace: dict = {}
    for i, (page, code) in enumerate(blocks):
        exec(compile(code, f"{page.name} python block {i + 1}", "exec"), namespace)
    # what the blocks claim
    np = __import__("numpy")
    np.testing.assert_array_equal(namespace["logits"], namespace["no_mask"])
    assert namespace["ex"].count == 2**10 and namespace["mc"].count == 1000
    for a, b in zip(
        __import__("jax").tree.leaves(namespace["conv_vars"]),
        __import__("jax").tree.leaves(namespace["loaded"]),
    ):
        np.testing.assert_array_equal(a, b)


def test_readme_study_times_are_the_benchmark_figures():
    """The README's time per experiment and data set is what `benchmarks/run.py --only study`
    wrote from the study's timing logs (benchmarks/STUDY.md), not typed in."""
    results = (README.parent / "benchmarks" / "STUDY.md").read_text()
    measured = {}
    for line in results.splitlines():
        m = re.match(r"\| study wall time on (\S+):", line)
        if m:
            measured[m.group(1)] = dict(re.findall(r"(\w+) (\d+) s", line.split("|")[3]))
    assert measured, "no study rows in benchmarks/STUDY.md"
    text = README.read_text()
    head = re.search(r"\| experiment \|(.*)\|\n\|[-|]+\|\n(\| digits \|.*\|\n(?:\| .*\|\n)*)", text)
    names = [c.strip() for c in head.group(1).split("|")]
    table = {}
    for row in head.group(2).splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {n: v for n, v in zip(names, cells[1:], strict=True) if v != "-"}
    assert table == measured


def test_readme_findings_are_the_committed_results():
    """The README's table of what the study found is what `dropstudy report --readme` writes
    from the committed results (both data sets), not typed in."""
    from dropstudy_experiments.report import (
        README_END,
        README_START,
        found_table,
        other_cpus,
        read_results,
        second_lists,
    )

    root = README.parent / "results"
    firsts = [(root, read_results(root)), (root / "mnist1d", read_results(root / "mnist1d"))]
    # make study's second lists of seeds, each data set's
    seconds = [f for d, _ in firsts for f in sorted(d.glob("from*")) if any(f.glob("*/*.json"))]
    lists = second_lists(firsts, seconds)
    # and the runs of the same seeds on another CPU (cpu-* folders), as make report reads them
    cpus = other_cpus(firsts, [f for d, _ in firsts for f in sorted(d.glob("cpu-*"))])
    want = "\n".join(found_table(firsts[0][1], [firsts[1][1]], lists, cpus))
    text = README.read_text()
    block = text.split(README_START, 1)[1].split(README_END, 1)[0].strip("\n")
    assert block == want, "README findings are stale: run `make report`"


def test_readme_block_is_replaced_between_its_markers_only(tmp_path):
    from dropstudy_experiments.report import README_END, README_START, write_readme_block

    from dropstudy.validate import DropstudyError

    f = tmp_path / "R.md"
    f.write_text(f"head\n{README_START}\nold\n{README_END}\ntail\n")
    write_readme_block(f, ["| a |", "| b |"])
    assert f.read_text() == f"head\n{README_START}\n| a |\n| b |\n{README_END}\ntail\n"
    for bad in ("no markers\n", f"{README_END}\nx\n{README_START}\n", f"{README_START}\nx\n"):
        f.write_text(bad)
        with pytest.raises(DropstudyError, match="no findings block"):
            write_readme_block(f, ["x"])
        assert f.read_text() == bad
    with pytest.raises(DropstudyError, match="no such file"):
        write_readme_block(tmp_path / "none.md", ["x"])


def test_readme_takes_the_full_study_only(tmp_path, capsys):
    """`report --readme` refuses quick (or --seeds) results and a README without a block
    before it writes anything: the README's table is what the full study found."""
    import json

    from dropstudy_experiments.cli import main
    from dropstudy_experiments.report import README_END, README_START

    src = README.parent / "results" / "voting" / "results.json"
    quick = json.loads(src.read_text())
    quick["scale"] = {**quick["scale"], "quick": True}
    (tmp_path / "q" / "voting").mkdir(parents=True)
    (tmp_path / "q" / "voting" / "results.json").write_text(json.dumps(quick))
    readme = tmp_path / "R.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    argv = ["report", "--results", str(tmp_path / "q"), "--out", str(tmp_path / "out.md")]
    assert main([*argv, "--readme", str(readme)]) == 2
    assert "full study's results only" in capsys.readouterr().err
    readme.write_text("no block\n")
    assert main([*argv, "--readme", str(readme)]) == 2
    assert not (tmp_path / "out.md").exists()  # refused before the report was written


def test_the_committed_reports_are_their_results_rendered(tmp_path, monkeypatch):
    """results/mnist1d/REPORT.md is what `make report` writes from the committed results
    (REPORT.md byte for byte: the next test): every section renders from the full study's
    results files (the quick runs of some experiments are in `make test-slow` only), and no
    report is stale."""
    from dropstudy_experiments.report import build_report

    monkeypatch.chdir(README.parent)  # as make runs it: the results named relatively
    res, mnist = Path("results"), Path("results/mnist1d")
    # each data set's second list of seeds, as make's
    second = [f for d in (res, mnist) for f in sorted({p.parent.parent for p in d.glob(
              "from*/*/results.json")})]  # fmt: skip
    # REPORT.md is rendered (and compared byte for byte) by the next test: each render of a
    # whole report costs about 20 s
    for results, committed, compare in ((mnist, mnist / "REPORT.md", [res]),):
        cpus = [f for d in (res, mnist) for f in sorted(d.glob("cpu-*"))]
        out = build_report(
            results, tmp_path / "R.md", compare=compare, replicate=second, other_cpu=cpus
        )
        # links are relative to their report's folder: compare what they point at
        assert _resolved_links(out) == _resolved_links(committed), (
            f"{committed} is stale: run `make report`"
        )


def _resolved_links(report: Path) -> str:
    """The report's text with every relative link replaced by the absolute path it names."""
    here = report.resolve().parent

    def absolute(m):
        target = m.group(1)
        if re.match(r"[a-z]+:|#", target):
            return m.group(0)
        return "](" + os.path.normpath(os.path.join(here, target)) + ")"

    return re.sub(r"\]\(([^)]+)\)", absolute, report.read_text())


def test_report_without_arguments_rewrites_the_committed_report(tmp_path, monkeypatch):
    """`dropstudy report` alone writes REPORT.md from results/, compared with
    results/mnist1d as make report compares them: the committed file, byte for byte."""
    from dropstudy_experiments.cli import main

    (tmp_path / "results").symlink_to(README.parent / "results")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-q"]) == 0
    assert (tmp_path / "REPORT.md").read_bytes() == (README.parent / "REPORT.md").read_bytes()


def _anchors(md: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for line in md.read_text().splitlines():
        m = re.match(r"#+ (.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "REPORT.md",
        "benchmarks/README.md",
        "results/mnist1d/REPORT.md",
        *(f"docs/{p.name}" for p in sorted((README.parent / "docs").glob("*.md"))),
    ],
)
def test_every_relative_link_and_anchor_exists(doc):
    """No dead link in the docs: each relative link names a file that exists, and each
    #anchor a heading of the file it points into."""
    path = README.parent / doc
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code is not a link
    dead = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (anchor and anchor not in _anchors(linked)):
            dead.append(target)
    assert not dead, f"{doc}: dead links {dead}"


def _compare_rows(text: str) -> list[str]:
    """The compare sample's table, without the first line's timings."""
    lines = _readme_compare().block(text).splitlines()
    return [re.sub(r"train [\d.]+ s, evaluate [\d.]+ s", "", lines[0]), *lines[1:]]


def test_readme_compare_sample_has_every_predictor_row():
    rows = _compare_rows(CLI_DOC.read_text())
    names = [r.split()[0] for r in rows[2:]]
    ks = (1, 10, 100, 1000)
    want = ["weight_scaling"] + [f"mc_{m}_{k}" for k in ks for m in ("arithmetic", "geometric")]
    assert names == [*want, "exact_arithmetic", "exact_geometric"]
    assert rows[0].startswith("digits: MLP [10, 10] relu, drop rate 0.5")


@pytest.mark.slow  # 20 s: trains and evaluates compare's net
def test_readme_compare_sample_is_the_command_output():
    """The sample is what `dropstudy compare` prints (on this machine: XLA's rounding on
    another CPU can move a digit; rerun benchmarks/readme_compare.py there)."""
    fresh = f"x\n{_readme_block(_readme_compare().run_compare())}"
    assert _compare_rows(fresh) == _compare_rows(CLI_DOC.read_text())


def _readme_block(output: str) -> str:
    rc = _readme_compare()
    return f"{rc.START}\n```\n{output}```\n{rc.END}"


def _readme_compare():
    """benchmarks/readme_compare.py as a module (benchmarks/ is not a package)."""
    import importlib.util

    path = README.parent / "benchmarks" / "readme_compare.py"
    spec = importlib.util.spec_from_file_location("readme_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_draw_from_the_committed_results_with_lines_in_order(tmp_path):
    """Every experiment's figures draw from its committed results file (the quick runs of
    some are in make test-slow only), and no line doubles back along x: the results list
    numeric keys (K, sizes) as sorted strings, "10" before "2", which drew zigzags."""
    import json

    import numpy as np
    from dropstudy_experiments import runner
    from dropstudy_experiments.common import plt
    from dropstudy_experiments.results import dumps

    class Ctx:
        out = tmp_path

        def savefig(self, fig, name):
            for ax in fig.axes:
                for line in ax.get_lines():
                    x = np.asarray(line.get_xdata(), float)
                    if len(x) > 2 and not np.all(x == x[0]):  # not a horizontal rule
                        steps = np.diff(x)
                        assert np.all(steps >= 0) or np.all(steps <= 0), (name, list(x))
            plt.close(fig)
            return name

    # these draw from their cells' results too (curves, snapshots), not kept in results files
    from_cells = {"coadaptation", "ensembles", "maskmode", "stayput", "tutorial"}
    drawn = [n for n in runner.NAMES if n not in from_cells]
    assert {"averaging", "diversity", "overfitting", "conv"} <= set(drawn)
    for name in drawn:
        r = json.loads((README.parent / "results" / name / "results.json").read_text())
        cfg = runner.config(name)  # the committed study's: the default scale
        assert json.loads(dumps(cfg.to_dict())) == r["config"], name
        runner.section(name).figures(cfg, {}, r, Ctx())
