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
    """The README's time per experiment is the study row `benchmarks/run.py` wrote from the
    timing log, not typed in."""
    results = (README.parent / "benchmarks" / "RESULTS.md").read_text()
    row = next(line for line in results.splitlines() if "study wall time" in line)
    measured = dict(re.findall(r"(\w+) (\d+) s", row.split("|")[3]))
    text = README.read_text()
    head = re.search(r"\| experiment \|(.*)\|\n\|[-|]+\|\n\| seconds \|(.*)\|", text)
    names = [c.strip() for c in head.group(1).split("|")]
    secs = [c.strip() for c in head.group(2).split("|")]
    assert dict(zip(names, secs, strict=True)) == measured
