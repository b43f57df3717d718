"""The worked examples in examples/ run, briefly, and learn."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (linen modules) look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested():
    assert {f.stem for f in EXAMPLES.glob("*.py")} == {*NAMES}


NAMES = ("own_linen_model", "nnx_model", "binary_classifier")


# the user's own linen model in the default suite; the binary and NNX examples (their
# library paths tested in test_binary.py and test_nnx.py) in `make test-slow`
@pytest.mark.parametrize(
    "name", [n if n == "own_linen_model" else pytest.param(n, marks=pytest.mark.slow)
             for n in NAMES]
)  # fmt: skip
def test_example_trains_and_scores_every_average(name):
    scores = _load(name).main(steps=300, k=50)
    assert len(scores) == 3 and {n.split()[0] for n in scores} == {"weight", "MC", "exact"}
    floor = 0.8 if name == "binary_classifier" else 0.6  # chance: 0.5 for two digits, 0.1 for ten
    assert all(floor < acc <= 1.0 for acc in scores.values()), scores
