"""The README's Python blocks run, in order, in one namespace: the README cannot drift from
the code."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the README writes a checkpoint folder
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
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
    head = re.search(r"\| experiment \|(.*)\|\n\|[-|]+\|\n((?:\| .*\|\n)+)", text)
    names = [c.strip() for c in head.group(1).split("|")]
    table = {}
    for row in head.group(2).splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {n: v for n, v in zip(names, cells[1:], strict=True) if v != "-"}
    assert table == measured
