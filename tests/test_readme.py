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
