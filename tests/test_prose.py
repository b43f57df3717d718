"""No sentence about results that the code did not compute.

Every section of the report is rendered from a committed results file and again from copies
whose numbers were altered at random (statistics scaled and sign-flipped, flags flipped,
verdicts swapped, stopping steps and counts shifted; the configuration and the design values
left alone). A sentence that speaks of an outcome (fitting, agreement, convergence, a check
passing, one thing larger or better than another) and reads the same whatever the numbers is
text the code did not compute: it must be a statement of method, listed in :data:`METHOD`,
or be computed from the numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from dropstudy_experiments import runner

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = [ROOT / "results", ROOT / "results" / "mnist1d"]

# Words of a sentence that states an outcome.
OUTCOME = re.compile(
    r"\b(fit|fits|fitting|underfit\w*|overfit\w*|agree|agrees|agreed|disagrees?|converged|"
    r"converges|pass|passes|passed|fails?|failed|holds?|held|match|matches|matched|exceeds?|"
    r"reach(es)?|reached|smaller|larger|better|worse|higher|lower|far|close|near|helps?|"
    r"hurts?)\b",
    re.I,
)

# Sentences of method (how a test is read, what a measure means, what a paper found), by
# their openings: they state no outcome of this run, so they read the same for any numbers.
METHOD = (
    "A seed *settles* at its first validation NLL",
    "Warde-Farley et al. found dropout better.",
    "Train accuracy (on the 80% trained on) is in the rate sweep's table",
    "Through a nonlinearity they need not be:",
    "The tutorial's typical-rates claim",
    "The tests compare drop rate",
    "The primary test",
    "The other rates, the MC average, and weight scaling vs the MC average",
    "The claim is tested where it can fail:",
    "T is at least 1, since",
    "R = 0 when the effects of removing units add up;",
    "Plain SGD (keep 1) against least squares checks",
    "For a *linear* unit the expectation passes through",
    "Every test is on the nets selected within W",
    "Each net's norm is read at its own stop",
    "D_ij is second order",
    "Both nets train by the study's protocol",
    "Against bagging only the tying differs",
    "- *Plain net* vs *dropout*",
    "**Measures.** Removal-based measures mislead",
    "**At matched compute**",
    "(maxout nets) found weight scaling better",
    "The tutorial reports that",
    "The tests of the nets on the protocol are held inconclusive",
    "The replication is checked against the tutorial's own PyTorch code",
    "The data are the tutorial's own",
    "The CNN is the primary:",
    "Srivastava et al. 2014 (MNIST) found",
    "Overfitting is measured by test MSE and by roughness",
    "MC converges to the exact arithmetic mean",
    "K* is the smallest K",
    "Conventions as functions",
)

SWAP = {"supported": "contradicted", "contradicted": "supported", "inconclusive": "supported"}
# Fields that name the design (read as keys, or as the set-up), not outcomes.
DESIGN = {"config", "protocol", "versions", "machine", "data", "test_rate",
          "ks", "sizes", "fractions", "strengths", "widths"}  # fmt: skip
STEPS = {"stop_w", "stop_2w", "settle_2w"}
COUNTS = {"late", "at_w_end", "diverged"}


def alter(x, rng: np.random.Generator, key: str | None = None):
    """``x`` (a results file's dict) with its outcomes altered at random, its design kept."""
    if key in DESIGN:
        return x
    if isinstance(x, dict):
        return {k: alter(v, rng, k) for k, v in x.items()}
    if isinstance(x, list):
        if key in STEPS:
            return [v + 100 for v in x]
        return [alter(v, rng) for v in x]
    if isinstance(x, bool):
        return not x
    if isinstance(x, int) and key in COUNTS:
        return x + 1
    if isinstance(x, float):
        sign = -1.0 if rng.random() < 0.3 else 1.0
        return float(sign * x * np.exp(rng.uniform(-1.5, 1.5)) + rng.normal(0, 0.01))
    if isinstance(x, str) and x in SWAP:
        return SWAP[x]
    return x


def sentences(md: str) -> list[str]:
    """The prose sentences of a section (tables and figure lines left out)."""
    out = []
    for para in re.split(r"\n\s*\n", md):
        if para.lstrip().startswith(("|", "![")):
            continue
        para = " ".join(para.split())
        out += [s for s in re.split(r"(?<=[.;:])\s+(?=[A-Z*(\-])", para) if s]
    return out


def uncomputed(section, results: dict, draws: int = 6) -> list[str]:
    """The outcome sentences of ``section(results)`` that no alteration of the numbers changes
    and that are not method."""
    rng = np.random.default_rng(0)
    same = [s for s in sentences(section(results)) if OUTCOME.search(s)]
    for _ in range(draws):
        other = set(sentences(section(alter(results, rng))))
        same = [s for s in same if s in other]
    return [s for s in same if not s.startswith(METHOD)]


def _committed() -> list[tuple[Path, str]]:
    return [(f, f.parent.name) for folder in FOLDERS for f in sorted(folder.glob("*/results.json"))]


@pytest.mark.parametrize(
    "path,name", _committed(), ids=[f"{p.parent.parent.name}/{n}" for p, n in _committed()]
)
def test_every_outcome_sentence_comes_from_the_numbers(path, name):
    results = json.loads(path.read_text())
    found = uncomputed(runner.section(name).section, results)
    assert not found, (
        f"{name}'s section ({path}) states outcomes that read the same whatever the numbers: "
        f"{found}. Compute each from the results, or, if it states method, add its opening "
        "to METHOD"
    )


def test_the_audit_finds_a_typed_outcome_and_passes_a_computed_one():
    """A sentence typed into a section is found; the same sentence computed is not."""
    path = ROOT / "results" / "stayput" / "results.json"
    results = json.loads(path.read_text())
    section = runner.section("stayput").section

    def typed(r):
        return section(r) + "\n\nThe nets fit their training sets.\n"

    def computed(r):
        ok = r["rows"]["momentum"]["train_error"]["mean"] < 0.2
        return section(r) + f"\n\nThe nets {'fit' if ok else 'do not fit'} their training sets.\n"

    assert uncomputed(typed, results) == ["The nets fit their training sets."]
    assert uncomputed(computed, results) == []


def test_altering_keeps_the_design_and_changes_the_outcomes():
    results = json.loads((ROOT / "results" / "overfitting" / "results.json").read_text())
    altered = alter(results, np.random.default_rng(0))
    assert altered["config"] == results["config"]
    assert altered["tests"] != results["tests"]
    assert {t["verdict"] for t in altered["tests"].values()} != {
        t["verdict"] for t in results["tests"].values()
    }
