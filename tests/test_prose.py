"""No sentence about results that the code did not compute.

Every section of the report is rendered from a committed results file and again from copies
whose numbers were altered at random (statistics scaled and sign-flipped, flags flipped,
verdicts swapped, stopping steps and counts shifted; the configuration and the design values
left alone). A sentence that speaks of an outcome (fitting, agreement, convergence, a check
passing, one thing larger or better than another) and reads the same whatever the numbers is
text the code did not compute: it must be computed from the numbers, or be a statement of
method a reader has checked, listed in :data:`REVIEWED`. Numbers are masked before sentences
are compared, so a typed claim with a computed number in it is still found. What it cannot
find: a typed claim inside a branch the numbers choose, or beside a computed clause in the
same sentence. The report's own paragraphs (outside the sections) are audited the same way,
from altered copies of every results folder of the study.
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
    r"hurts?|equivalent|supported|contradicted|tracks?|comparable|reduces|improves|increases|"
    r"shrinks|fragile)\b",
    re.I,
)
NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?%?")

# Sentences a reader has checked, by their openings, per section ("*": the protocol's text
# in every section that has it): statements of method (how a test is read, what a measure
# means, what a paper found), which read the same for any numbers, and a few computed
# sentences whose wording no alteration happens to change (a list of arms named by numbers).
REVIEWED = {
    "*": (
        "A seed *settles* at its first validation NLL",
        "Each seed trains 2W steps and keeps its variables",
        "The primary test",
        "Both nets train by the study's protocol",
    ),
    "averaging": (
        "**The margins' scale.** What averaging does",
        "K* is the smallest K",
        "MC converges to the exact arithmetic mean",
        "Srivastava et al. 2014 (MNIST) found",
        "Test error changes only where a top class flips",
        "The stress cases (nets too small",
        "The tests of the nets on the protocol are held inconclusive",
        "Warde-Farley et al. 2014 enumerated",
    ),
    "baselines": (
        "A model reproduces its published figure when",
        "The CNN is the primary:",
    ),
    "coadaptation": (
        "(2014) give only visual evidence",
        "**Measures.** Removal-based measures mislead",
        "D_ij is second order",
        "R = 0 when the effects of removing units add up;",
        "T is at least 1, since",
    ),
    "conv": (
        "(maxout nets) found weight scaling better",
        "Not converged, so its tests are held: conv",
        "The other rates, the MC average, and weight scaling vs the MC average",
    ),
    "diversity": ("The error correlation is the mean over the pairs of members",),
    "ensembles": (
        "**At matched compute**",
        "- *Plain net* vs *dropout*",
        "Against bagging only the tying differs",
        "An exploratory dropout net of 128 units",
        "Warde-Farley et al. found dropout better.",
        # the margin's derivation: the gain is never negative (the log is concave)
        "**The NLL margin, from the validation split.**",
        "The margin is",
        "The n/p net's NLL equivalence takes this margin too",
        # what the margin means, whatever its value (method)
        'Within it, "equivalent" says the dropout net',
    ),
    "maskmode": ('Within it, "equivalent" says switching the mask mode',),
    "overfitting": (
        "Srivastava et al. 2014 report that error is flat",
        "The tutorial's typical-rates claim",
        "Train accuracy (on the 80% trained on) is in the rate sweep's table",
    ),
    "shrinkage": (
        "**Linear part: dropout's penalty is a data-dependent ridge.**",
        "**Logistic part (Wager et al. 2013).**",
        "**MLP part.**",
        "Adam: each net's training",
        "SGD: each net's training",
        "At matched steps, each at its own learning rate",
        "Each net's norm is read at its own stop",
        "Plain SGD (keep 1) against least squares checks",
        "SGD's distance to a ridge divides by that ridge's norm",
        "The approximation is second order",
        "The tests compare drop rate",
    ),
    "stayput": (
        "A dropped unit's gradient is exactly zero",
        "The measure: the mean movement of the units dropped",
    ),
    "tutorial": (
        "Overfitting is measured by test MSE and by roughness",
        "The data are the tutorial's own",
        "The replication is checked against the tutorial's own PyTorch code",
        "The tutorial reports that",
    ),
    "voting": (
        "Every test is on the nets selected within W",
        # the margin's derivation: a measured quantity, its interval and seeds beside it
        "**The primary's margin, from the validation split.**",
    ),
    "scaling": (
        # the margin's derivation: a measured quantity, its interval and pairs beside it
        "**The expectation test's margin, from the validation split.**",
        "The rule reads equivalence as:",
        "For a *linear* unit the expectation passes through",
        "Through a nonlinearity they need not be:",
        "Conventions as functions",
        "The claim is tested where it can fail:",
        "Per test example, the mean over classes of |expected - weight scaling|",
    ),
}

SWAP = {"supported": "contradicted", "contradicted": "supported", "inconclusive": "supported"}
# Fields that name the design (read as keys, or as the set-up), not outcomes.
DESIGN = {"config", "protocol", "versions", "machine", "data", "test_rate",
          "ks", "sizes", "fractions", "strengths", "widths"}  # fmt: skip
STEPS = {"stop_w", "stop_2w", "settle_2w"}
COUNTS = {"late", "at_w_end", "diverged"}


def alter(x, rng: np.random.Generator, key: str | None = None, depth: int = 0):
    """``x`` (a results file's dict) with its outcomes altered at random, its design (the
    top-level fields of :data:`DESIGN`) kept."""
    if depth == 1 and key in DESIGN:
        return x
    if isinstance(x, dict):
        return {k: alter(v, rng, k, depth + 1) for k, v in x.items()}
    if isinstance(x, list):
        if key in STEPS:
            return [v + 100 for v in x]
        return [alter(v, rng, None, depth + 1) for v in x]
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


def wording(sentence: str) -> str:
    """A sentence with its numbers replaced by ``#``: what is left is its wording."""
    return NUMBER.sub("#", sentence)


def uncomputed(section, results: dict, method=(), draws: int = 6) -> list[str]:
    """The outcome sentences of ``section(results)`` whose wording no alteration of the
    numbers changes (a number that moves does not make a claim computed) and that do not
    open as one of ``method``."""
    rng = np.random.default_rng(0)
    same = [s for s in sentences(section(results)) if OUTCOME.search(s)]
    for _ in range(draws):
        other = {wording(s) for s in sentences(section(alter(results, rng)))}
        same = [s for s in same if wording(s) in other]
    return [s for s in same if not s.startswith(tuple(method))]


def _committed() -> list[tuple[Path, str]]:
    return [(f, f.parent.name) for folder in FOLDERS for f in sorted(folder.glob("*/results.json"))]


@pytest.mark.parametrize(
    "path,name", _committed(), ids=[f"{p.parent.parent.name}/{n}" for p, n in _committed()]
)
def test_every_outcome_sentence_comes_from_the_numbers(path, name):
    from dropstudy_experiments.common import all_findings

    results = json.loads(path.read_text())
    reviewed = REVIEWED["*"] + REVIEWED.get(name, ())

    def section(r: dict) -> str:  # the section and the findings the report adds to it
        return runner.section(name).section(r) + "\n\n" + "\n\n".join(all_findings(r))

    found = uncomputed(section, results, reviewed)
    assert not found, (
        f"{name}'s section ({path}) states outcomes whose wording is the same whatever the "
        f"numbers: {found}. Compute each from the results, or, once read and found to state "
        "method, add its opening to REVIEWED"
    )


def test_the_audit_finds_a_typed_outcome_and_passes_a_computed_one():
    """A sentence typed into a section is found, with a computed number in it or not; the same
    sentence computed is not."""
    path = ROOT / "results" / "stayput" / "results.json"
    results = json.loads(path.read_text())
    section = runner.section("stayput").section
    known = REVIEWED["*"] + REVIEWED["stayput"]

    def err(r):
        return r["rows"]["momentum"]["train_error"]["mean"]

    typed = [
        "The nets fit their training sets.",
        "Weight scaling is equivalent to the exact mean on every net.",
    ]
    for sentence in typed:
        got = uncomputed(lambda r, t=sentence: section(r) + f"\n\n{t}\n", results, known)
        assert got == [sentence]
    with_number = lambda r: section(r) + f"\n\nThe nets fit (train error {err(r):.3f}).\n"  # noqa: E731
    (found,) = uncomputed(with_number, results, known)
    assert found.startswith("The nets fit (train error 0.")

    def computed(r):
        ok = err(r) < 0.2
        return section(r) + f"\n\nThe nets {'fit' if ok else 'do not fit'} their training sets.\n"

    assert uncomputed(computed, results, known) == []
    fit = lambda r: section(r) + "\n\nThe nets fit.\n"  # noqa: E731
    assert uncomputed(fit, results, known) == ["The nets fit."]
    assert uncomputed(fit, results, (*known, "The nets")) == []


def test_altering_keeps_the_design_and_changes_the_outcomes():
    results = json.loads((ROOT / "results" / "overfitting" / "results.json").read_text())
    altered = alter(results, np.random.default_rng(0))
    assert altered["config"] == results["config"]
    assert altered["tests"] != results["tests"]
    assert {t["verdict"] for t in altered["tests"].values()} != {
        t["verdict"] for t in results["tests"].values()
    }


def _copy_results(dst: Path, rng: np.random.Generator | None) -> list[Path]:
    """The committed study's results folders (each data set's first and second lists) copied
    under ``dst``, their numbers altered when ``rng`` is given (margins and scales kept, so
    the lists still pair; the per-example values scaled, so pooled tests move too).

    Returns:
      The copied folders, in :data:`FOLDERS`' order, each followed by its second lists and
      its runs on another CPU.
    """
    out = []
    for folder in FOLDERS:
        for src in [folder, *sorted(folder.glob("from*")), *sorted(folder.glob("cpu-*"))]:
            if not any(src.glob("*/results.json")):
                continue
            to = dst / src.relative_to(ROOT)
            for path in src.glob("*/results.json"):
                (to / path.parent.name).mkdir(parents=True, exist_ok=True)
                r = json.loads(path.read_text())
                if rng is not None:
                    margins = {k: t.get("margin") for k, t in r["tests"].items()}
                    r = {**alter(r, rng), "scale": r["scale"]}
                    for k, m in margins.items():
                        if m is not None:
                            r["tests"][k]["margin"] = m
                (to / path.parent.name / "results.json").write_text(json.dumps(r))
                for npz in path.parent.glob("*.npz"):
                    with np.load(npz) as z:
                        arrays = {k: z[k] for k in z.files}
                    if rng is not None:
                        arrays = {k: v * rng.uniform(-2, 2) + rng.normal(0, 0.01, v.shape)
                                  for k, v in arrays.items()}  # fmt: skip
                    np.savez(to / path.parent.name / npz.name, **arrays)
            out.append(to)
    return out


# The report's own paragraphs (before its sections) that a reader has checked: how the
# verdicts are read, what the protocol and the second lists are, and Scope's history of the
# study's design (which decisions came after which results were seen).
REVIEWED_REPORT = (
    "Lists made on different CPUs",
    "Numbers repeat bitwise only on one CPU model",
    "A verdict decided on one data set and inconclusive",
    "The same experiments, configuration and seeds, run on another CPU",
    # shown only where a choice differs, its count computed; the altered copies leave the
    # tuned choices alone, so its wording stays
    "The protocol's tuning chose another recipe",
    # computed from the tuned grids, which the altered copies leave alone: both of the
    # verdict's branches are tested on grids made for them (test_other_cpu)
    "Could a fixed preference among near-ties hold these choices?",
    "The protocol keeps the lowest score: a tolerance moves a near-tie",
    "Each cell gives the headline verdict",
    "*Fragile*: the headline differs",
    '*A mark "another CPU" says',
    "*Marks in the",
    "*fragile* where the evidence",
    "The nets of ",
    "A test held to the protocol is inconclusive when",
    "In part:",
    "*Direction* tests",
    "*Equivalence* tests",
    "*detects*: the smallest effect",
    "Two parts are not bitwise reproducible",
    "Shrinkage's primary was first",
    "The tutorial's regression example was overfitting's primary",
    "With the training protocol",
    "The first three were seen under the fixed budget",
    "The tutorial's primary, which the same rule names",
    "Scaling's primary (trained nets'",
    "Ensembles' primary moved",
    "Averaging's primary and multiclass nets moved",
    "Coadaptation's temperature was bounded below by 1",
    "Scaling's exact check of the matched conventions moved",
    "A primary is *fragile* when",
    "The difference between the lists' effects",
    "*Both lists* runs the primary's rule",
    "Each mark ends with the verdict on both lists' seeds together",
    "A row that agrees or differs on a fragile verdict",
    "Each list's cell gives its verdict",
    "A fragile verdict is one that does not repeat",
    "On digits, the primaries with results in",
    "On digits and mnist1d, the primaries with results in",
    # the derived margins' disclosure and the shared nets: method, whatever the numbers
    "For all six the cap holds",
    # which CPU made which file: computed from the machine records, which no alteration moves
    "**Made on more than one CPU:**",
    "Ensembles', voting's, maskmode's (a mask per example) and diversity's primaries read",
    "*Fragile*: the evidence (the verdict before the guard) differs",
)


def test_the_reports_own_paragraphs_come_from_the_numbers(tmp_path):
    """The report's paragraphs outside its sections (what we found, how to read it, scope,
    where the data sets agree, the second lists) audited as the sections are: rendered from
    the committed results and from altered copies, every outcome sentence must change with
    the numbers or open as reviewed method. The findings among them are computed from the
    numbers when the report is written, so they are audited too."""
    from dropstudy_experiments.report import build_report

    def head(root: Path, rng: np.random.Generator | None) -> str:
        first, *rest = _copy_results(root, rng)
        firsts = [f for f in (first, *rest) if not f.name.startswith(("from", "cpu-"))]
        seconds = [f for f in rest if f.name.startswith("from")]
        cpus = [f for f in rest if f.name.startswith("cpu-")]
        out = build_report(
            firsts[0], root / "R.md", compare=firsts[1:], replicate=seconds, other_cpu=cpus
        )
        text = out.read_text()
        return text[: text.index("\n## 1. ")]

    def outcome(s: str) -> bool:
        return bool(OUTCOME.search(s)) and not s.startswith("#")

    same = [s for s in sentences(head(tmp_path / "committed", None)) if outcome(s)]
    rng = np.random.default_rng(0)
    for i in range(3):
        other = {wording(s) for s in sentences(head(tmp_path / f"altered{i}", rng))}
        same = [s for s in same if wording(s) in other]
    found = [s for s in same if not s.startswith(REVIEWED_REPORT)]
    assert not found, (
        f"the report's own paragraphs state outcomes whose wording is the same whatever the "
        f"numbers: {found}. Compute each from the results, or, once read and found to state "
        "method, add its opening to REVIEWED_REPORT"
    )
