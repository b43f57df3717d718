"""``dropstudy report``: REPORT.md from the results files alone.

For every experiment: the claim, its figures, tables with 95% intervals over seeds, the
papers' numbers where they exist, and every test with its rule, predictor and power. Each
claim's verdict is its primary test's, decided at Holm-adjusted p-values across the
report's primaries (:func:`.stats.holm`).
"""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dropstudy.validate import DropstudyError

from .common import (
    blocked_str,
    detects_str,
    effect_str,
    n_str,
    own_verdict,
    p_eq,
    p_str,
    predictor_name,
    primary_findings,
    rule_str,
    table,
    verdict_table,
)
from .protocol import LATE_SHARE, TWICE, VAL_FRACTION, hold
from .results import read_json
from .runner import NAMES, RESULTS, module, own_data, scale_command, scale_of, section
from .stats import (
    ALPHA,
    MAX_SEEDS,
    POWER,
    bh,
    decide,
    decide_unguarded,
    direction,
    equivalence,
    held_reasons,
    holm,
    paired,
    sign_flip,
)


def adjusted(results: dict[str, dict]) -> dict[str, dict]:
    """Every experiment's primary test, decided at its adjusted p-value.

    The multiplicity family is the claims: a primary that is a check (its module's ``CHECK``:
    an identity, or a check of the set-up such as the published baselines) is decided alone
    at its own p-value, outside the family.

    Args:
      results: ``{name: results}`` (:func:`read_results`).

    Returns:
      ``{name: {"test", "p_holm", "p_bh", "verdict", "verdict_bh", "check"}}``: every
      experiment's primary test; its Holm- and Benjamini-Hochberg-adjusted p-values across the
      claims' primaries given (a check's own p-value for both); the verdict at Holm's p-value
      (the report's) and at BH's; and the check's description, or None for a claim.
    """
    names = [n for n in results if not check(n)]
    primary = {n: results[n]["tests"][results[n]["primary"]] for n in results}
    raw = [primary[n]["p"] for n in names]
    p_holm = dict(zip(names, holm(raw), strict=True))
    p_bh = dict(zip(names, bh(raw), strict=True))
    for n in results:
        if check(n):
            p_holm[n] = p_bh[n] = primary[n]["p"]
    return {
        n: {
            "test": primary[n],
            "p_holm": p_holm[n],
            "p_bh": p_bh[n],
            "verdict": decide(primary[n], p_holm[n]),
            "verdict_bh": decide(primary[n], p_bh[n]),
            "check": check(n),
        }
        for n in results
    }


# Experiments that keep the protocol of the source they replicate, or measure per step.
OWN_PROTOCOL = {
    "baselines": "the published baselines' own training",
    "tutorial": "the tutorial's own training",
    "regression": "Gal & Ghahramani's protocol",
    "stayput": "a per-step measurement",
}


# Experiments on the protocol in part only: what keeps its own set-up, and why.
PART_PROTOCOL = {
    "scaling": "its trained nets of part C; part B's two conventions train step-matched for "
    "a fixed budget by design, and part A is a demo with no training",
    "ensembles": "its primary's nets; the matched-compute arms (the same comparison at equal "
    "training cost, dropout bagging, tied fixed masks) keep a fixed budget by design",
    "averaging": "its primary and multiclass nets; the stress cases (small by design, "
    "exploratory tests) and the wide net (K* alone) keep a fixed budget",
    "shrinkage": "its MLP parts, each within its part's optimiser; the linear and logistic "
    "parts compare trained weights with their closed-form counterparts",
}


def protocol_paragraph(results: dict[str, dict]) -> str:
    """How the nets were trained: which experiments follow the study's protocol.

    Args:
      results: ``{name: results}``; an experiment trained by the protocol
        (:mod:`.protocol`) keeps it under ``"protocol"``.

    Returns:
      The paragraph.
    """
    on = [n for n, r in results.items() if "protocol" in r]
    mc = [n for n in on if results[n]["protocol"].get("select_by") == "mc"]
    own = [f"{n} ({OWN_PROTOCOL[n]})" for n in results if n in OWN_PROTOCOL and n not in on]
    off = [n for n in results if n not in on and n not in OWN_PROTOCOL]
    text = (
        "**Training protocol.** A fixed step budget and one shared learning rate measure "
        "where the budget falls, not dropout. "
    )
    if on:
        pilots = sorted({len(results[n]["protocol"]["pilot_seeds"]) for n in on})
        windows = ", ".join(f"{n} {results[n]['protocol']['window']:,}" for n in on)
        text += (
            f"The nets of {', '.join(on)} are trained by the study's protocol: each net on "
            f"{1 - VAL_FRACTION:.0%} of the training set; its recipe and learning rate chosen "
            f"by the mean, over {' or '.join(map(str, pilots))} pilot seeds (disjoint from the "
            "study's), of each run's lowest validation NLL on the other "
            f"{VAL_FRACTION:.0%} within a window W (steps: {windows}; the recipes are listed "
            "in each section; exploratory "
            "arms may take a tuned arm's choice, as the sections say); each seed stopped at "
            "its lowest validation NLL within W and, from the same run, within 2W, the NLL "
            "of the network as used (weight scaling)"
            + (
                f", or for the dropout nets of {', '.join(mc)} (claims about the ensemble) of "
                "the MC average of a fixed set of subnetworks"
                if mc
                else ""
            )
            + ". A test "
            "held to the protocol is inconclusive when one of its arms is *not converged* "
            "(at least a fifth of its seeds still improving in the last tenth of 2W) or its "
            "verdict on the nets selected within 2W differs from the one within W at the level "
            "the verdict is decided (*budget-dependent*), and the tables say why. "
        )
    part = [f"{n} ({PART_PROTOCOL[n]})" for n in on if n in PART_PROTOCOL]
    if part:
        text += f"In part: {', '.join(part)}. "
    if own:
        text += f"{', '.join(own)} keep their own protocols. "
    if off:
        text += (
            f"The nets of {', '.join(off)} are not yet on the protocol: they train for the "
            "fixed budget and learning rate their sections state, so their verdicts may "
            "depend on that budget."
        )
    return text.strip()


README_START = "<!-- findings:start (written by `dropstudy report --readme`) -->"
README_END = "<!-- findings:end -->"


def headline_caveats(name: str, r: dict) -> list[str]:
    """What a reader quoting ``name``'s primary verdict must know, computed by its section
    from the results (its ``headline_caveats``; none when it has no such function).

    Args:
      name: the experiment.
      r: its results file's dict.

    Returns:
      The caveats, as clauses.

    Raises:
      DropstudyError: if ``r`` lacks a field the caveats need (another version wrote it).
    """
    fn = getattr(section(name), "headline_caveats", None)
    if fn is None:
        return []
    try:
        return fn(r)
    except KeyError as e:  # a results file an older version wrote (a --compare folder's)
        raise DropstudyError(
            f"a results file of {name} was written by another version (this version's "
            f"headline needs {e.args[0]!r}, which it lacks): re-run `dropstudy run {name}` "
            "with this version into that folder"
        ) from None


def machines_str(sets: list[tuple[str, dict[str, dict]]]) -> str:
    """Which CPU made which results files, when they were not all made on one.

    Numbers repeat bitwise only on one CPU model (XLA compiles for the host and training
    amplifies its rounding), so a reader must know where results from two CPUs sit side by
    side: a net trained by two experiments may differ between them at float rounding, and a
    verdict near its level may differ.

    Args:
      sets: ``(label, {name: results})`` per results folder the report reads.

    Returns:
      ``""`` when every file that records its machine names the same one; else a sentence
      naming, per machine, the experiments made on it (all but the rest named, for the most
      frequent).
    """
    where: dict[str, list[str]] = {}
    for label, results in sets:
        for name, r in results.items():
            m = r.get("machine")
            if not m:  # a file from before machines were recorded: nothing to compare
                continue
            flags = f", XLA_FLAGS {m['xla_flags']!r}" if m.get("xla_flags") else ""
            where.setdefault(cpu_of(r) + flags, []).append(f"{name} ({label})")
    if len(where) < 2:
        return ""
    common = max(where, key=lambda k: len(where[k]))
    rest = [f"{', '.join(files)} on {k}" for k, files in where.items() if k != common]
    return (
        f" **Made on more than one CPU:** {'; '.join(rest)}; every other results file on "
        f"{common}. Numbers repeat bitwise only on one CPU model: a net that two experiments "
        "train may differ between them at float rounding, and a verdict near its level, or "
        "a convergence guard near its threshold, may differ."
    )


def post_hoc(name: str) -> str:
    """The mark of a primary set or changed after its own result was seen, from its section's
    ``POST_HOC`` (the report's Scope says more).

    Args:
      name: the experiment.

    Returns:
      ``" *(post hoc: WHY)*"``, or ``""`` when its section states none.
    """
    why = getattr(section(name), "POST_HOC", None)
    return f" *(post hoc: {why})*" if why else ""


def found_table(
    results: dict[str, dict],
    others: list[dict[str, dict]] = (),
    lists: list[Lists] = (),
    cpus: list[tuple[str, dict[str, dict], dict[str, dict]]] = (),
) -> list[str]:
    """What the study found: one row per claim, its primary verdict on each data set.

    Each data set's verdicts as its own report decides them (Holm-adjusted over that data
    set's claims; checks alone), each with the effect, its interval and the rule; a verdict
    that a second list of seeds finds fragile (:func:`replication`) says so in its cell,
    with the verdict on both lists' seeds together.

    Args:
      results: ``{name: results}`` of the report's folder.
      others: the same for each data set compared.
      lists: the data sets' second lists of seeds (:class:`Lists`), matched by data set.
      cpus: runs of the same seeds on another CPU (:func:`other_cpus`): a verdict whose
        evidence or guard differs there says so in its cell.

    Returns:
      Markdown lines: the table (experiment, claim, primary test, one column per data set);
      none when there are no results.
    """
    sets = [r for r in (results, *others) if r]
    if not sets:
        return []
    decided = [adjusted(r) for r in sets]
    replicated = {data_name(ls.first): ls for ls in lists}
    cpu_kinds_ = cpu_kinds(cpus)
    # a primary whose arms the other CPU tuned otherwise: its effect there beside the choices
    retuned = {}
    for data, n, _, there, arms in retunings(cpus):
        which = "; ".join(
            f"{arm_label(path)}: {x['recipe']} lr {x['lr']:g} here, {y['recipe']} lr "
            f"{y['lr']:g} there" for path, x, y in arms
        )  # fmt: skip
        retuned[(data, n)] = (
            f"; arms of this experiment tuned otherwise there ({which}), its primary there "
            f"{effect_str(there['tests'][there['primary']])}"
        )
    # the CPU that made most of these results: a verdict made on another and not compared
    # on a second CPU says so in its cell
    made = Counter(cpu_of(r[n]) for r in sets for n in r)
    main_cpu = made.most_common(1)[0][0] if len(made) > 1 else None
    rows = []
    for n in NAMES:
        if not any(n in r for r in sets):
            continue
        first = next(r[n] for r in sets if n in r)
        t0 = first["tests"][first["primary"]]
        # a rule (its margin) that differs between data sets goes in each data set's cell
        own_rule = len({rule_str(d[n]["test"]) for d in decided if n in d}) > 1
        cells = []
        for r, d in zip(sets, decided, strict=True):
            if n not in d:
                cells.append("-")
                continue
            t, v = d[n]["test"], d[n]["verdict"]
            bh = f" (BH: {d[n]['verdict_bh']})" if d[n]["verdict_bh"] != v else ""
            rule = f" ({rule_str(t)})" if own_rule else ""
            fragile = ""
            ls = replicated.get(data_name(r))
            if ls is not None and n in ls.second:
                b = ls.second[n]["tests"][ls.second[n]["primary"]]
                pooled = ls.both(n)
                both = "-" if pooled is None else pooled["verdict"] + (
                    " (held by the protocol)" if pooled.get("blocked") else ""
                )  # fmt: skip
                seeds = pooled["n"] if pooled else "-"
                both = f"; both lists together (exploratory), {seeds} seeds: {both}"
                kind = _compare(t, b)
                if kind in FRAGILE:
                    mark = (
                        f"fragile: the evidence is {own_verdict(t)} on the first list of seeds, "
                        f"{own_verdict(b)} on a second"
                    )
                elif kind == "neither":
                    mark = "inconclusive on both lists of seeds"
                elif kind == "guard":
                    held = "first" if t["verdict"] == "inconclusive" else "second"
                    mark = (
                        f"evidence ({own_verdict(t)}, unadjusted) replicated on a second list of "
                        f"seeds; the protocol's guard holds the {held} list only, each at its "
                        "own p-value"
                    )
                else:
                    mark = (
                        f"evidence ({own_verdict(t)}, unadjusted) replicated on a second list "
                        "of seeds"
                    )
                fragile = f" *({mark}{both})*"
            head = f"**{v}**" + (" (check)" if d[n]["check"] else "") + bh
            held = blocked_str(t, d[n]["p_holm"])
            # a verdict the multiplicity adjustment alone moves shows the unadjusted one (a
            # hold by the protocol's guard says so itself)
            if not d[n]["check"] and t["verdict"] != v and not held:
                head += f" (unadjusted: {t['verdict']}, {p_eq(t['p'])})"
            note = "".join(f" *(caveat: {c})*" for c in headline_caveats(n, r[n]))
            kind = cpu_kinds_.get((data_name(r), n), ("same",))[0]
            tuned = retuned.get((data_name(r), n), "")
            if kind in CPU_MARKED or tuned:
                words = "same verdict" if kind == "same" else CPU_AGREE[kind].strip("*")
                note += f" *(another CPU: {words}{tuned})*"
            elif main_cpu and cpu_of(r[n]) != main_cpu and (data_name(r), n) not in cpu_kinds_:
                note += f" *(made on {cpu_of(r[n])} only: not compared on another CPU)*"
            cells.append(head + held + f": {effect_str(t)}{rule}{fragile}{note}")
        own = own_data(n)  # runs once, on data of its own, in the first data set's folder
        col = next(data_name(r) for r in sets if n in r)
        where = f" *(on its own data: {own}; in the {col} column)*" if own else ""
        claim = first["claim"] + where
        rule = "" if own_rule else f" ({rule_str(t0)})"
        rows.append([n, claim, f"{t0['what']}{rule}{post_hoc(n)}", *cells])
    out = [table(["experiment", "claim", "primary test", *(data_name(r) for r in sets)], rows)]
    if any(post_hoc(row[0]) for row in rows):
        out += [
            "",
            "*A primary test marked post hoc was set or changed after its own result had been "
            "seen (the report's Scope says how); no other primary was changed after its own "
            "result was seen, though every primary was set after earlier rounds' results "
            "were known.*",
        ]
    if cpus:
        out += [
            "",
            '*A mark "another CPU" says that the same run\'s seeds on another CPU (the '
            'report\'s "Another CPU") gave another headline verdict, other evidence (the '
            "verdict before the protocol's guard) or another hold by the guard, or that the "
            "protocol's tuning chose another recipe or learning rate there for an arm of the "
            "experiment (*arms tuned otherwise*, with the primary's effect there: an arm the "
            "primary compares then trains another net there, and the same verdict can rest "
            "on another effect); an unmarked verdict there was the same, or was not compared "
            "on another CPU (that section lists what was).*",
        ]
    if main_cpu:
        out += [
            "",
            f'*A mark "made on" names a verdict made on another CPU than most of these '
            f"results ({main_cpu}) and not run on a second one: it shares the claims' family "
            "with the others, and how it would fare on their CPU is not known.*",
        ]
    if lists:
        cols = [data_name(r) for r in sets if data_name(r) in replicated]
        rest = [data_name(r) for r in sets if data_name(r) not in replicated]
        out += [
            "",
            f"*Marks in the {' and '.join(cols)} column{'s' if len(cols) > 1 else ''} come "
            "from a second, disjoint list of seeds, run for the primaries near their level or "
            'held by the protocol (the report\'s "A second list of seeds"): *fragile* where '
            "the evidence (each test's own verdict, before the protocol's convergence guard) "
            "is decided on one list only, or oppositely. Each mark ends with the verdict on "
            "both lists' seeds together: exploratory, at its own (unadjusted) p-value, and "
            "computed after both lists ran on primaries chosen for a first p-value near the "
            "level, so its error rate exceeds its nominal level; it never changes the "
            "headline. A verdict "
            "there without a mark was not run on a second list"
            + (f"; no {' or '.join(rest)} verdict was." if rest else ".")
            + "*",
        ]
    return out


def check_readme(readme: Path) -> str:
    """The text of ``readme``, once it is known to hold one findings block.

    Args:
      readme: the README to update.

    Returns:
      Its text.

    Raises:
      DropstudyError: if it is not a file, or lacks either marker, or has them out of order.
    """
    if not Path(readme).is_file():
        raise DropstudyError(f"--readme {readme}: no such file")
    text = Path(readme).read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start:
        raise DropstudyError(
            f"{readme} has no findings block: put the line {README_START!r} and, after it, "
            f"the line {README_END!r} where the table goes"
        )
    return text


def write_readme_block(readme: Path, lines: list[str]) -> Path:
    """Replace the text between :data:`README_START` and :data:`README_END` in ``readme``.

    Args:
      readme: the README to update.
      lines: the block's Markdown lines.

    Returns:
      ``readme``.

    Raises:
      DropstudyError: as :func:`check_readme` (nothing is written then).
    """
    text = check_readme(readme)
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = README_START + "\n" + "\n".join(lines) + "\n" + README_END
    Path(readme).write_text(head + block + tail)
    return Path(readme)


def check(name: str) -> str | None:
    """Why experiment ``name``'s primary is a check kept out of the claims' family, if it is.

    Args:
      name: an experiment's name.

    Returns:
      Its module's ``CHECK`` (a phrase, e.g. "an identity: ..."), else None.
    """
    return getattr(module(name), "CHECK", None)


def read_results(results_dir: Path) -> dict[str, dict]:
    """Every experiment's results in a folder, checked to be of one scale and of this version.

    Args:
      results_dir: the results folder.

    Returns:
      ``{name: results}`` of every experiment with a results file in ``results_dir``.

    Raises:
      DropstudyError: if the files are of different scales, or one lacks a field of this
        version of the study (``claim``, ``tests``, ``primary``, or its primary test).
    """
    found = [n for n in NAMES if (results_dir / n / "results.json").is_file()]
    results = {n: read_json(results_dir / n / "results.json") for n in found}
    scales = {n: scale_of(r) for n, r in results.items()}
    kinds = {scale_command(s) for s in scales.values()}
    if len(kinds) > 1:
        listing = "; ".join(f"{n}: `{scale_command(s, n)}`" for n, s in scales.items())
        raise DropstudyError(
            f"{results_dir} mixes results of different scales ({listing}); a report reads "
            "one scale: re-run the odd ones at the same scale, or keep each in its own --out"
        )
    for n, r in results.items():
        bad = [k for k in ("claim", "tests", "primary") if k not in r]
        if bad or r["primary"] not in r["tests"]:
            raise DropstudyError(
                f"{results_dir / n / 'results.json'} was written by another version of the "
                f"study (it lacks {bad or ['its primary test']}): re-run "
                f"`dropstudy run {n}` with this version"
            )
    return results


def data_name(results: dict[str, dict]) -> str:
    """The data set a folder's results were made on (``--dataset``).

    Args:
      results: ``{name: results}`` of one folder, not empty.

    Returns:
      The data set's name, from the scale of its first results file.
    """
    return scale_of(next(iter(results.values())))["dataset"]


def report_of(folder: Path) -> Path:
    """Where a results folder's report is.

    Args:
      folder: a results folder.

    Returns:
      Its own REPORT.md, or for the committed study's ``results/`` the repository's REPORT.md,
      where ``make study`` writes it (when that exists and the folder has none of its own).
    """
    own = folder / "REPORT.md"
    top = RESULTS.resolve().parent / "REPORT.md"
    if not own.is_file() and folder.resolve() == RESULTS.resolve() and top.is_file():
        return top
    return own


def agreement(
    results: dict[str, dict], others: list[dict[str, dict]], rel: list[tuple]
) -> list[str]:
    """The report's lines comparing each experiment's primary verdict across data sets.

    The verdicts are Holm-adjusted within each data set over the experiments that every data set
    has (one family size for all, so the columns compare); an experiment missing from one data
    set is listed as not run there. A primary that is the same test on every data set (it does
    not read the data set) is marked apart, as are effects of opposite sign under the same
    verdict, verdicts inconclusive everywhere, verdicts decided on some data sets only (a
    difference only when the effects lie on opposite sides of 0, each interval excluding it:
    :func:`.stats.sign_flip`), and verdicts the training protocol holds inconclusive on some
    data set (:func:`.stats.held_reasons`).

    Args:
      results: ``{name: results}`` of this report's folder.
      others: the same for each folder compared.
      rel: for each folder compared, ``(path, exists, file name)``: its report's folder relative
        to the report, whether the report exists, and its name (default ``REPORT.md``).

    Returns:
      The section's Markdown lines: a heading, its explanation, the table and the lists of
      experiments that agree and differ.
    """
    sets = [results, *others]
    names = [data_name(r) for r in sets]
    common = [n for n in NAMES if all(n in r for r in sets)]
    decided = [adjusted({n: r[n] for n in common}) for r in sets]
    rows, agree, differ, same_test, unsettled, held = [], [], [], [], [], []
    one_only = []
    for n in common:
        verdicts = [d[n]["verdict"] for d in decided]
        effects = [effect_str(d[n]["test"]) + blocked_str(d[n]["test"], d[n]["p_holm"])
                   for d in decided]  # fmt: skip
        identical = len({(d[n]["test"]["effect"], d[n]["test"]["p"]) for d in decided}) == 1
        tests = [d[n]["test"] for d in decided]
        apart = any(sign_flip(a, b) for i, a in enumerate(tests) for b in tests[i + 1 :])
        if identical:  # a primary that does not read the data set: the same test twice
            same_test.append(n)
            mark = "same test"
        elif apart and any(blocked_str(t, d[n]["p_holm"]) for t, d in zip(tests, decided)):
            # effects on opposite sides of 0, each interval excluding it: a difference the
            # protocol's hold does not undo (it holds a verdict, not the interval)
            differ.append(n)
            mark = "**no**: opposite effects, each interval excluding 0 (held by the protocol)"
        elif any(
            blocked_str(d[n]["test"], d[n]["p_holm"])
            and decide_unguarded(d[n]["test"], d[n]["p_holm"]) != "inconclusive"
            for d in decided
        ):
            # a verdict the protocol holds (an arm not converged, or budget-dependent) is no
            # evidence of a difference between data sets, nor of agreement; a hold that
            # changes nothing (its own verdict inconclusive too) counts as that verdict
            held.append(n)
            mark = "held by the protocol"
        elif all(v == "inconclusive" for v in verdicts):
            unsettled.append(n)  # no data set settles it: neither agreement nor difference
            mark = "both inconclusive" if len(verdicts) == 2 else "inconclusive on every one"
        elif len({v for v in verdicts if v != "inconclusive"}) > 1:
            differ.append(n)  # supported on one data set, contradicted on another
            mark = "**no**: opposite verdicts"
        elif "inconclusive" in verdicts:
            # decided on some data sets only: that is no shown difference (a smaller effect,
            # or less power, leaves a verdict open) unless the effects lie on opposite sides
            # of 0, each interval excluding it
            if apart:
                differ.append(n)
                mark = "**no**: opposite effects, each interval excluding 0"
            else:
                one_only.append(n)
                mark = "decided on " + ("one data set only" if len(verdicts) == 2 else "some only")
        elif (
            len({d[n]["test"]["effect"] > 0 for d in decided}) > 1
            # equivalence shown on both: both effects negligible, their signs mean nothing
            and not (decided[0][n]["test"]["rule"] == "equivalence" and verdicts[0] == "supported")
        ):
            differ.append(n)  # the same word for effects of opposite sign (e.g. both outside
            mark = "**no**: same verdict, opposite effects"  # an equivalence margin)
        else:
            agree.append(n)
            mark = "yes"
        margins = [t.get("margin") for t in tests]
        if not identical and len(set(margins)) > 1 and None not in margins:
            # a verdict at another margin on each data set: not the data alone
            mark += f" (margins differ: {', '.join(f'+-{m:.4g}' for m in margins)})"
        rows.append(
            [n, results[n]["tests"][results[n]["primary"]]["what"],
             *[f"{v} ({e})" for v, e in zip(verdicts, effects, strict=True)], mark]
        )  # fmt: skip
    not_run = {  # experiments on data of their own run once: not missing elsewhere
        name: [n for n in NAMES if n in results and n not in r and not own_data(n)]
        for name, r in zip(names[1:], others, strict=True)
    }
    links = ", ".join(
        f"[{name}]({r}/{file})" if exists else f"{name} (`{r}`, no {file} yet)"
        for name, (r, exists, *rest) in zip(names[1:], rel, strict=True)
        for file in [rest[0] if rest else "REPORT.md"]
    )
    missing = "; ".join(f"not run on {name}: {', '.join(ns)}" for name, ns in not_run.items() if ns)
    lines = [
        "## Data sets: where the verdicts agree",
        "",
        f"The same experiments on {' and '.join(names)}, each data set's primaries "
        f"Holm-adjusted among the {sum(not check(n) for n in common)} claims both have "
        f"(checks decided alone; so these verdicts can "
        f"differ from the summary's, adjusted over all of a data set's primaries; other "
        f"reports: {links}). A primary that does not read the data set is the same test on "
        "both: 'same test', not counted as agreement. A verdict decided on one data set "
        "and inconclusive on the other is no shown difference (the effect may be smaller "
        "there, or the test less powerful) unless the two effects lie on opposite sides of 0, "
        "each unadjusted interval excluding it. An experiment "
        "on data of its own (the published MNIST-1D baselines, the tutorial's example, the "
        "diabetes regression) runs once and is not here."
        + (f" Missing: {missing}." if missing else ""),
        "",
        table(["experiment", "primary test", *names, "agree"], rows),
        "",
        f"Agree: {', '.join(agree) or 'none'}. Differ: {', '.join(differ) or 'none'}."
        + (
            f" Decided on {'one data set' if len(sets) == 2 else 'some data sets'} only: "
            f"{', '.join(one_only)}."
            if one_only
            else ""
        )
        + (f" Inconclusive on both: {', '.join(unsettled)}." if unsettled else "")
        + (
            f" Held by the training protocol where the hold changes a verdict: {', '.join(held)}."
            if held
            else ""
        )
        + (f" Same test: {', '.join(same_test)}." if same_test else ""),
        "",
    ]
    return lines


def k_words(results: dict) -> str:
    """The MC average's K in words.

    Args:
      results: ``{name: results}``.

    Returns:
      ``K = 1000`` when every results file's MC average takes the same K (``mc_k`` in its
      config), else ``K (stated per section)``.
    """
    ks = {r["config"]["mc_k"] for r in results.values() if "mc_k" in r.get("config", {})}
    return f"K = {ks.pop()}" if len(ks) == 1 else "K (stated per section)"


NEAR = 10.0  # a primary within this factor of the level (or held) is replicated


def near_level(results: dict[str, dict]) -> list[str]:
    """The primaries a second list of seeds could flip: those it is replicated for.

    The rule, set after the first list's p-values were known and before any second list
    ran: a primary whose Holm-adjusted p-value (a check's own), decided or not, lies within
    a factor :data:`NEAR` of the level on either side, or whose verdict the training
    protocol holds (not converged, or budget-dependent; at its own p-value or at the
    Holm-adjusted one). An exact check is never picked. A verdict far from its level on
    either side, undisputed by the protocol, is one another list of seeds would not
    plausibly flip.

    Args:
      results: ``{name: results}`` of one data set's first list.

    Returns:
      Their names, in the study's order.
    """
    return list(near_level_reasons(results))


def near_level_reasons(results: dict[str, dict]) -> dict[str, str]:
    """:func:`near_level`'s primaries, each with why the rule picks it.

    Args:
      results: ``{name: results}`` of one data set's first list.

    Returns:
      ``{name: reason}`` in the study's order, e.g. ``"Holm p 0.13"`` or ``"held by the
      protocol"``.
    """
    out = {}
    for n, d in adjusted(results).items():
        t = d["test"]
        p = d["p_holm"] if d["p_holm"] is not None else t["p"]
        why = []
        if t["rule"] == "exact" or p is None:
            continue
        if ALPHA / NEAR < p < ALPHA * NEAR:
            why.append(f"{'Holm p' if d['p_holm'] is not None and not d['check'] else 'p'} {p:.3g}")
        if t.get("blocked") or held_reasons(t, p):
            why.append("held by the protocol")
        if why:
            out[n] = ", ".join(why)
    return out


# How two lists' primaries compare (:func:`_compare`), in words for the replication table.
AGREE = {
    "one list": "**fragile: the evidence decides on one list only**",
    "opposite": "**fragile: opposite verdicts**",
    "guard": "evidence agrees; the protocol's guard holds one list only",
    "same": "same",
    "neither": "both inconclusive (neither decides)",
}
FRAGILE = ("one list", "opposite")


def _compare(a: dict, b: dict) -> str:
    """How two lists' primaries compare, a key of :data:`AGREE`: their evidence (each test's
    own verdict, before the protocol's guard) first, then the guard."""
    ea, eb = own_verdict(a), own_verdict(b)
    if ea != eb:
        return "one list" if "inconclusive" in (ea, eb) else "opposite"
    if a["verdict"] != b["verdict"]:
        return "guard"
    return "same" if ea != "inconclusive" else "neither"


def _compare_lists(ls: Lists, name: str) -> str:
    """:func:`_compare` of ``name``'s primary on the first and the second list of ``ls``."""
    return _compare(*(r[name]["tests"][r[name]["primary"]] for r in (ls.first, ls.second)))


def between(a: dict, b: dict) -> str:
    """The second list's effect minus the first's, with a 95% interval.

    A Welch t interval on the two lists' per-seed values (a two-level test's per-seed means
    over the test examples): both lists are scored on the same test examples, so the test
    set's term cancels in the difference and only the seeds' variation is left.

    Returns:
      ``"d [lo, hi]"``, or ``"-"`` for an exact check or a list that keeps no per-seed values.
    """
    from scipy.stats import t as student

    if a["rule"] == "exact" or a.get("values") is None or b.get("values") is None:
        return "-"
    va, vb = (np.asarray(t["values"], np.float64) for t in (a, b))
    d = float(vb.mean() - va.mean())
    v2 = [np.var(v, ddof=1) / len(v) for v in (va, vb)]
    if sum(v2) == 0:
        return f"{d:.4g} [{d:.4g}, {d:.4g}]"
    df = sum(v2) ** 2 / sum(x**2 / (len(v) - 1) for x, v in zip(v2, (va, vb), strict=True))
    half = float(student.ppf(0.975, df)) * float(np.sqrt(sum(v2)))
    return f"{d:.4g} [{d - half:.4g}, {d + half:.4g}]"


def list_values(folder: Path | None, name: str, key: str, test: dict) -> np.ndarray | None:
    """A test's values as its results file keeps them.

    Args:
      folder: the results folder (None: the per-example file cannot be read).
      name: the experiment.
      key: the test's name in its ``tests``.
      test: the test dict.

    Returns:
      ``(S, N)`` from the per-example file beside the results for a two-level test, else
      the per-seed ``values`` ``(S,)``; None when neither is kept.
    """
    if test.get("per_example"):
        if folder is None:
            return None
        with np.load(Path(folder) / name / test["per_example"]) as z:
            return np.asarray(z[key], np.float64)
    return None if test.get("values") is None else np.asarray(test["values"], np.float64)


def pool(tests: list[dict], values: list[np.ndarray | None]) -> dict | None:
    """One test on several lists' seeds together: the first list's rule on their values stacked.

    Two-level values stack along the seeds, crossed with the test examples the lists share
    (their count is checked, not their identity), so the test set's term of the variance
    does not shrink with the added seeds; a ratio's values, linearised per example around
    each seed's own ratio, pool as the mean over all seeds of the per-seed ratios.

    Args:
      tests: the same test from each list (same rule, side and margin).
      values: their values (:func:`list_values`), each ``(S_i,)`` or ``(S_i, N)``.

    Returns:
      The pooled test dict (:func:`.stats.direction` or :func:`.stats.equivalence`), or None
      where a list keeps no values, or the test is an exact check.

    Raises:
      DropstudyError: if the lists' tests differ in rule, side, margin or test examples.
    """
    t = tests[0]
    if t["rule"] == "exact" or any(v is None for v in values):
        return None
    rule = lambda u: (u["rule"], u.get("claimed"), u.get("margin"))  # noqa: E731
    if len({rule(u) for u in tests}) > 1 or len({np.shape(v)[1:] for v in values}) > 1:
        raise DropstudyError(
            f"the lists' tests of {t.get('what', 'the primary')!r} differ in rule, side, margin "
            f"or test examples ({[rule(u) for u in tests]}): a second list must run the first "
            "list's config"
        )
    v = np.concatenate(values, axis=0)
    label = {k: t[k] for k in ("metric", "predictor", "what") if k in t}
    if t["rule"] == "direction":
        return direction(v, positive_supports=t["claimed"] == "> 0", **label)
    return equivalence(v, t["margin"], **label)


GUARD_KEYS = ("verdict_w", "within_2w", "arms", "not_converged", "blocked")


def at_margin(name: str, folder: Path | None, r: dict, margin: float) -> dict:
    """``name``'s results with its equivalence primary (and its twin within 2W) decided again
    at another margin, from the values its results file keeps.

    A margin derived from a list's own seeds (ensembles', maskmode's, conv's, voting's,
    diversity's, scaling's) differs between two lists of seeds; the design's margin is the
    first list's, so the report decides the second list at it. The protocol's guard is applied
    again from the arms' convergence counts the test keeps.

    Args:
      name: the experiment.
      folder: the results folder (its per-example file).
      r: the results file's dict.
      margin: the margin to decide at.

    Returns:
      A copy of ``r`` whose primary and twin are decided at ``margin``, the primary with
      ``margin_own``: the margin its own run derived.

    Raises:
      DropstudyError: if the results keep no values to decide again from.
    """
    key = r["primary"]
    t = r["tests"][key]
    label = {k: t[k] for k in ("metric", "predictor", "what") if k in t}

    def again(k: str, which: str) -> dict:  # the file keeps its per-example values' file name
        values = list_values(folder, name, k, r["tests"][k])
        if values is None:
            raise DropstudyError(
                f"{name}: its {which} keeps no values to decide at the first list's margin "
                f"+-{margin:g}: run it again with this version (`dropstudy replicate`)"
            )
        return {f: x for f, x in equivalence(values, margin, **label).items() if f != "per_example"}

    base = {k: x for k, x in t.items() if k not in GUARD_KEYS}
    new = {**base, **again(key, "primary"), "margin_own": t["margin"]}
    tests = {**r["tests"], key: new}
    if "within_2w" in t:
        tests[key + TWICE] = {**r["tests"][key + TWICE], **again(key + TWICE, "twin within 2W")}
        tests[key] = hold(new, tests[key + TWICE], t["arms"], t.get("not_converged", []))
    return {**r, "tests": tests}


def pooled_primary(name: str, lists: list[tuple[Path | None, dict[str, dict]]]) -> dict | None:
    """An experiment's primary on every list's seeds together, held to the protocol.

    The test and its twin within 2W are pooled by :func:`pool`; each arm's late seeds and
    seeds are summed over the lists, and an arm with at least :data:`.protocol.LATE_SHARE`
    of its seeds still improving is not converged (:func:`.protocol.hold`).

    Args:
      name: the experiment.
      lists: ``(folder, {name: results})`` per list, the first list first.

    Returns:
      The pooled test (guarded when the primary is), or None where a list keeps no values.
    """
    results = [r[name] for _, r in lists]
    key = results[0]["primary"]
    tests = [r["tests"][key] for r in results]
    pooled = pool(
        tests, [list_values(f, name, key, t) for (f, _), t in zip(lists, tests, strict=True)]
    )
    guarded = {"within_2w" in t for t in tests}
    names = {tuple(sorted(t.get("arms", {}))) for t in tests}
    if len(guarded) > 1 or len(names) > 1 or (guarded == {True} and any(
            key + TWICE not in r["tests"] for r in results)):  # fmt: skip
        raise DropstudyError(
            f"{name}: the lists' primaries differ in the protocol's guard (a twin within 2W, "
            f"or the arms {sorted(names)}): they ran other code; run the second list again "
            "with this version"
        )
    if pooled is None or guarded == {False}:
        return pooled
    twins = [r["tests"][key + TWICE] for r in results]
    twin = pool(twins, [list_values(f, name, key + TWICE, t)
                        for (f, _), t in zip(lists, twins, strict=True)])  # fmt: skip
    if twin is None:
        return None
    arms, reasons = {}, []
    for arm in tests[0]["arms"]:
        late = sum(t["arms"][arm]["late"] for t in tests)
        seeds = sum(t["arms"][arm]["seeds"] for t in tests)
        arms[arm] = {"converged": late < LATE_SHARE * seeds, "late": late, "seeds": seeds}
        if not arms[arm]["converged"]:
            reasons.append(
                f"{arm} not converged ({late} of {seeds} seeds of both lists still improving "
                "in the last 10% of 2W)"
            )
    return hold(pooled, twin, arms, reasons)


@dataclass(frozen=True)
class Lists:
    """A data set's first and second lists of seeds, as the report reads them.

    Attributes:
      first: ``{name: results}`` of the first list (seeds from 0).
      second: the same experiments at the same scale from another first seed.
      folder: the second list's folder, as the text names it.
      first_dir: the first list's folder (its per-example files), None if not read.
      second_dir: the second list's folder, None if not read.
    """

    first: dict[str, dict]
    second: dict[str, dict]
    folder: str
    first_dir: Path | None = None
    second_dir: Path | None = None
    # each primary pooled once, though the findings table and the section both show it
    _pooled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def both(self, name: str) -> dict | None:
        """``name``'s primary on both lists' seeds together (:func:`pooled_primary`)."""
        if name not in self._pooled:
            self._pooled[name] = pooled_primary(
                name, [(self.first_dir, self.first), (self.second_dir, self.second)]
            )
        return self._pooled[name]


def both_str(pooled: dict | None) -> str:
    """The primary on both lists' seeds together, in words: exploratory, unadjusted.

    Args:
      pooled: :meth:`Lists.both` (None: a list keeps no values).

    Returns:
      ``"{S} seeds: **verdict** (held ...): effect [lo, hi] (level%), p = P; seeds needed:
      N"``, decided at its own p-value, or ``"-"``.
    """
    if pooled is None:
        return "-"
    need = detects_str(pooled).split("; ", 1)[1]
    if pooled.get("blocked"):
        need = "seeds needed: - (held by the protocol's guard, which more seeds need not lift)"
    return (
        f"{pooled['n']} seeds: **{pooled['verdict']}**{blocked_str(pooled)}: "
        f"{effect_str(pooled)}, {p_eq(pooled['p'])}; {need}"
    )


def _settled(pooled: dict | None) -> str:
    """What both lists' seeds together say of a fragile verdict, in words (exploratory)."""
    if pooled is None:
        return " (a list keeps no values to pool)"
    v = pooled["verdict"]
    if v != "inconclusive":
        return f" ({pooled['n']} seeds together, unadjusted: {v})"
    if pooled.get("blocked"):
        why = f"held by the protocol: {'; '.join(pooled['blocked'])}"
    elif pooled.get("seeds_needed"):
        why = (
            f"inconclusive; {pooled['seeds_needed']} seeds would give the pooled effect 80% "
            "power at the unadjusted level"
        )
    else:
        why = "inconclusive; no number of seeds gives the pooled effect 80% power"
    return f" ({pooled['n']} seeds together, unadjusted: {why})"


def own_margin_str(t: dict, whose: str = "the first list") -> str:
    """Where a test is decided at another run's margin (:func:`at_margin`: a second list's at
    its first list's, another CPU's at this report's), the margin its own run had; else
    nothing."""
    if t.get("margin_own", t.get("margin")) == t.get("margin"):
        return ""
    return f" (at {whose}'s margin +-{t['margin']:.4g}; its own run's: +-{t['margin_own']:.4g})"


def replication(lists: list[Lists]) -> list[str]:
    """Each replicated primary's verdict on the first list of seeds beside a second list's.

    A primary whose evidence (each test's own verdict, unadjusted, before the protocol's
    guard) one list decides and the other does not, or the lists decide oppositely, is
    *fragile*; one whose evidence agrees but whose guard (convergence, twice the budget)
    holds one list only is said so apart. The difference between the lists' effects stands
    beside them, then the primary on both lists' seeds together (:meth:`Lists.both`), and
    the first list's headline (Holm-adjusted) verdict.

    Args:
      lists: one :class:`Lists` per data set with a second list.

    Returns:
      Markdown lines: a heading, the rule and what both lists share, the table (data set
      when there are several, experiment, primary test, the first list's headline verdict,
      each list's verdict with its effect and any hold, the difference between their
      effects, both lists together, and how they compare), and the rule's primaries not
      replicated.
    """
    many = len(lists) > 1
    rows, said, missing = [], [], []
    for ls in lists:
        decided = adjusted(ls.first)
        fragile, guard = [], []
        for n in (n for n in NAMES if n in ls.first and n in ls.second):
            a, b = (r[n]["tests"][r[n]["primary"]] for r in (ls.first, ls.second))
            kind = _compare(a, b)
            pooled = ls.both(n)
            if kind in FRAGILE:
                fragile.append(n + _settled(pooled))
            elif kind == "guard":
                guard.append(n)
            start = scale_of(ls.second[n]).get("seed_start", 0)
            both = both_str(pooled)
            check_tag = " (check)" if decided[n]["check"] else ""
            rows.append([*([data_name(ls.first)] if many else []), n, a["what"],
                         f"**{decided[n]['verdict']}**{check_tag}",
                         f"from seed 0: **{a['verdict']}**{blocked_str(a)}: {effect_str(a)}",
                         f"from seed {start}: **{b['verdict']}**{blocked_str(b)}: "
                         f"{effect_str(b)}{own_margin_str(b)}", between(a, b), both,
                         AGREE[kind]])  # fmt: skip
        where = f" on {data_name(ls.first)}" if many else ""
        if any(n in ls.second for n in ls.first):
            said.append(
                (
                    f"Fragile{where or ' here'}: {', '.join(fragile)}."
                    if fragile
                    else f"None is fragile{where}."
                )
                + (f" The guard alone differs{where} for {', '.join(guard)}." if guard else "")
            )
        missing += [f"{n}{where}" for n in near_level(ls.first) if n not in ls.second]
    names = " and ".join(dict.fromkeys(data_name(ls.first) for ls in lists))
    folders = ", ".join(f"`{ls.folder}`" for ls in lists)
    lines = [
        "## A second list of seeds",
        "",
        f"On {names}, the primaries with results in {folders} ran again on "
        "a second, disjoint list of seeds: the same code with other initialisations, masks, "
        "minibatch orders and plain members. `dropstudy replicate` (`make study`) picks "
        f"them by a rule: a Holm-adjusted p-value (a check's own) within a factor {NEAR:g} "
        f"of the level {ALPHA} (decided or not), or a verdict the protocol holds; the rule "
        "was set after the first list's p-values were known (it replaced a hand-picked list), "
        "before the second list ran, and amended after the digits list ran to read the hold "
        "at the Holm-adjusted level too and to leave exact checks out; a list made by hand, "
        "`dropstudy run NAME "
        "--seed-start K`, holds what its maker ran. Each list's cell gives its verdict at "
        "its own p-value (unadjusted), held by the protocol's guard where it is, with the "
        "test's own verdict before the guard in the parenthesis. Both lists share the "
        "data: they are scored on the same test examples, so a two-level interval's "
        "test-set term is common to both and the second list re-samples the seeds' term "
        "only; they share the settings the pilot seeds tuned, and any seed an experiment "
        "fixes for a part of its own (such as scaling's conventions check). A primary is "
        "*fragile* when its evidence (each test's own verdict, unadjusted, before the "
        "protocol's guard) is decided on one list and not on the other, or oppositely; "
        "the guard (convergence, twice the budget) is a count of late seeds against a "
        "threshold and can hold one list and not the other on the same evidence, which is "
        "said apart. A fragile verdict is one that does not repeat; it need not mean that "
        "the lists disagree: an effect near its level is often decided on one list and not "
        "the other. The difference between the lists' effects (second "
        "minus first, 95%: a Welch t interval on the two lists' per-seed values, in which "
        "the test set's term, common to both, cancels) stands beside them: an interval that "
        "covers 0 finds no difference between the lists, and its farther end is the largest "
        "difference it leaves plausible. *Both lists* runs the primary's rule on the two lists' "
        "values together (seeds crossed with the same test examples, so the test set's term "
        "does not shrink), held by the guard with each arm's late seeds summed, and decided "
        "at its own p-value: it is exploratory and unadjusted, a second look computed after "
        "both lists ran on primaries chosen because their first p-value lay near the level, "
        "so its error rate exceeds its nominal level; it never changes the headline verdict, "
        "which stays the first list's. Its *seeds needed* gives the seeds at which the "
        "pooled effect would have 80% power at the unadjusted level. A margin derived from "
        "the study's own seeds (ensembles', maskmode's, conv's, voting's, diversity's, "
        "scaling's) is the "
        "first list's "
        "for the second "
        "list too, and the pooled test's: the second list's test is decided again at it from "
        "the values its results file keeps, with the margin its own seeds derived beside it. "
        + (" ".join(said) if said else "No primary is replicated yet."),
        "",
    ]
    if rows:
        head = [*(["data set"] if many else []), "experiment", "primary test",
                "headline verdict", "first list", "second list", "second minus first (95%)",
                "both lists", "the two lists"]  # fmt: skip
        lines += [table(head, rows), ""]
    if missing:
        lines += [f"By the rule but not yet run on a second list: {', '.join(missing)}.", ""]
    apart = [
        f"{n} ({data_name(ls.first)}: the first on {cpu_of(ls.first[n])}, the second on "
        f"{cpu_of(ls.second[n])})"
        for ls in lists
        for n in NAMES
        if n in ls.first and n in ls.second and cpu_of(ls.first[n]) != cpu_of(ls.second[n])
    ]
    if apart:
        lines += [
            "Lists made on different CPUs, so their rows mix the CPU's rounding with the seeds "
            f'("Another CPU" shows what the CPU alone moves): {"; ".join(apart)}.',
            "",
        ]
    return lines


def second_lists(firsts: list[tuple[Path, dict[str, dict]]], replicate=()) -> list[Lists]:
    """The second lists of seeds, each matched to the first list of its data set.

    Args:
      firsts: ``(folder, {name: results})`` of each data set's first list, the report's own
        first.
      replicate: the second lists' folders (one folder, or None, is taken as a list).

    Returns:
      One :class:`Lists` per folder, in the order of ``firsts``.

    Raises:
      DropstudyError: if the report's own folder is a second list; a folder is a first list
        (or the report's), holds no results, results of a data set no first list has, of
        another scale, or of another configuration than its first list's; or two folders
        hold the same data set.
    """
    if replicate is None or isinstance(replicate, (str, os.PathLike)):
        replicate = [] if replicate is None else [replicate]
    if not replicate:
        return []
    own_dir, own = firsts[0]
    if own and scale_of(next(iter(own.values()))).get("seed_start"):
        raise DropstudyError(
            f"--replicate with --results {own_dir}: --results must hold the first list of "
            "seeds and --replicate another, second list"
        )
    by_data = {data_name(r): (d, r) for d, r in firsts}
    out, seen = [], {}
    for folder in map(Path, replicate):
        if folder.resolve() in [Path(f).resolve() for f in seen.values()]:
            raise DropstudyError(f"--replicate {folder} is given twice: give each folder once")
        if any(folder.resolve() == Path(d).resolve() for d, _ in firsts):
            raise DropstudyError(
                f"--replicate {folder} is a first list of seeds (--results or --compare): "
                "--replicate takes a second list, e.g. `results/from100`"
            )
        second = read_results(folder)
        if not second:
            first = next(str(d) for d, _ in firsts)
            raise DropstudyError(
                f"--replicate {folder}: no results there (a second list's folder holds one "
                f"folder per experiment); make them with `dropstudy replicate --results "
                f"{first} --out {folder}` (or --results another first list of the report)"
            )
        name = data_name(second)
        if name not in by_data:
            raise DropstudyError(
                f"--replicate {folder} holds results on {name}, which neither --results nor "
                "--compare holds: compare its first list too, or leave it out"
            )
        if name in seen:
            raise DropstudyError(
                f"--replicate {seen[name]} and {folder} both hold {name}: give one second "
                "list per data set"
            )
        seen[name] = folder
        first_dir, first = by_data[name]
        s = scale_of(next(iter(first.values())))
        for n, r in second.items():
            t = scale_of(r)
            if {**t, "seed_start": 0} != {**s, "seed_start": 0} or not t.get("seed_start"):
                want = scale_command({**s, "seed_start": "K"}, n)
                raise DropstudyError(
                    f"--replicate {folder}: {n} there is `{scale_command(t, n)}`, not this "
                    f"data set and scale from a second list of seeds (`{want}`)"
                )
            drop = lambda c: {k: v for k, v in c.items() if k != "seeds"}  # noqa: E731
            a, b = drop(first[n]["config"]) if n in first else None, drop(r["config"])
            if a is not None and a != b:
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
                        if a.get(k) != b.get(k)}  # fmt: skip
                raise DropstudyError(
                    f"--replicate {folder}: {n} there ran another configuration than in "
                    f"{first_dir}, (first list, second list) by field: {diff}. Run again the "
                    f"list that the current code's config does not match: the first with "
                    f"`dropstudy run {n} --out {first_dir}` (its cells are reused), the second "
                    f"with `dropstudy replicate --results {first_dir}`"
                )
        # a margin the first list derived from its own seeds is the second list's too
        for n, r in list(second.items()):
            a = first[n]["tests"][first[n]["primary"]] if n in first else None
            b = r["tests"][r["primary"]]
            if a is not None and a["rule"] == "equivalence" and a["margin"] != b["margin"]:
                second = {**second, n: at_margin(n, folder, r, a["margin"])}
        out.append(Lists(first, second, str(folder), Path(first_dir), folder))
    # the report's own data set first, then the compared ones in their order
    order = [data_name(r) for _, r in firsts]
    return sorted(out, key=lambda ls: order.index(data_name(ls.first)))


CPU_AGREE = {
    "headline": "**fragile: the headline verdict differs by CPU**",
    "one list": "**fragile: the evidence decides on one CPU only**",
    "opposite": "**fragile: opposite verdicts**",
    "guard": "evidence agrees; the protocol's guard holds on one CPU only",
    "guard moves": "**evidence agrees; the protocol's guard holds on one CPU only, so the "
    "headline verdict differs by CPU**",
    "same": "same",
    "neither": "inconclusive on both",
    "neither held": "inconclusive on both; the protocol's guard holds on one CPU only (moot)",
}
CPU_MARKED = ("headline", *FRAGILE, "guard", "guard moves", "neither held")  # the table marks


def cpu_of(r: dict) -> str:
    """The machine a results file was made on, in words (its ``machine`` record)."""
    m = r.get("machine") or {}
    return f"{m.get('cpu', 'unknown')} ({m.get('arch', '?')})"


def other_cpus(firsts: list[tuple[Path, dict[str, dict]]], folders=()) -> list[tuple]:
    """Results made on another CPU, each matched to the report's results of its data set.

    Args:
      firsts: ``(folder, {name: results})`` of each data set the report reads.
      folders: folders of results of the same experiments and seeds made on another CPU.

    Returns:
      ``(data set, {name: results here}, {name: results there}, skipped)`` per folder, in
      the order of ``firsts``' data sets: all
      of the report's results of that data set; those there of the same configuration and
      scale; the experiments there whose configuration differs (not compared).

    Raises:
      DropstudyError: if a folder holds no results, results of a data set the report lacks,
        of another scale or seed list, or none made on another CPU than the report's.
    """
    by_data = {data_name(r): r for _, r in firsts if r}
    out = []
    for folder in map(Path, folders or ()):
        there = read_results(folder)
        if not there:
            raise DropstudyError(
                f"--other-cpu {folder}: no results there (one folder per experiment, made by "
                "`dropstudy run NAME --out FOLDER` on another machine)"
            )
        name = data_name(there)
        if name not in by_data:
            raise DropstudyError(
                f"--other-cpu {folder} holds results on {name}, which the report does not: "
                "compare that data set's folder too, or leave it out"
            )
        here = by_data[name]
        both = [n for n in NAMES if n in here and n in there]
        if any(scale_of(here[n]) != scale_of(there[n]) for n in both):
            raise DropstudyError(
                f"--other-cpu {folder} holds another scale or list of seeds than the report's "
                f"{name} results: compare runs of the same command on two machines"
            )
        same = [n for n in both if here[n]["config"] == there[n]["config"]]
        # a run whose configuration differs in its equivalence margin's rule alone is the
        # same training: decided again at this report's margin from its stored values
        at = {}
        for n in both:
            a = here[n]["tests"][here[n]["primary"]]
            if (
                n not in same
                and a["rule"] == "equivalence"
                and margin_rule_only(here[n]["config"], there[n]["config"])
            ):
                at[n] = at_margin(n, folder, there[n], a["margin"])
        same += list(at)
        if all(cpu_of(here[n]) == cpu_of(there[n]) for n in same):
            raise DropstudyError(
                f"--other-cpu {folder}: its results were made on the same CPU as the "
                "report's (their numbers repeat bitwise there): give results of another CPU"
            )
        skipped = [n for n in both if n not in same]
        out.append((name, here, {n: at.get(n, there[n]) for n in same}, skipped))
    order = [data_name(r) for _, r in firsts if r]  # the report's data sets, its own first
    return sorted(out, key=lambda c: order.index(c[0]))


def same_code(a: dict, b: dict) -> bool | None:
    """Whether two results files were made by the same code and libraries: their code digests
    (cells and summary), library versions and devices match.

    Args:
      a: a results file's dict.
      b: another.

    Returns:
      True or False; None when either file records no code digest (made before results files
      recorded one).
    """
    ca, cb = a.get("code"), b.get("code")
    if not ca or not cb:
        return None
    keys = ("versions", "devices")
    return ca["digest"] == cb["digest"] and all(a.get(k) == b.get(k) for k in keys)


def code_note(cpus: list[tuple]) -> str:
    """Which compared runs the same code made, from their results files' code digests.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      One or more sentences: the runs the same code made (the CPU alone moves their numbers),
      those other code made, and those whose files record no digest.
    """
    by = {True: [], False: [], None: []}
    for data, here, there, _ in cpus:
        for n in there:
            by[same_code(here[n], there[n])].append(f"{n} ({data})")
    if not by[True] and not by[False]:
        return (
            "In each compared pair a results file records no digest of the code (it was made "
            "before results files recorded one), so a difference can also come from code that "
            "changed between the two runs."
        )
    words = []
    if by[True]:
        words.append(
            f"The same code, library versions and devices made both runs (their cells' and "
            f"summary's code digests match), so the CPU alone moves their numbers: "
            f"{', '.join(by[True])}."
        )
    if by[False]:
        words.append(
            f"Other code, library versions or devices made the two runs, so a difference can "
            f"also come from them: {', '.join(by[False])}."
        )
    if by[None]:
        words.append(
            f"A results file records no code digest, so a difference can also come from code "
            f"that changed between the two runs: {', '.join(by[None])}."
        )
    return " ".join(words)


# Config fields that set an equivalence margin (its rule, its share, its cap), not training
MARGIN_FIELDS = {"margin_nll", "margin_share", "margin_nll_cap", "margin_nll_matched",
                 "margin_err", "margin", "expect_margin"}  # fmt: skip


def margin_rule_only(a: dict, b: dict) -> bool:
    """Whether two configurations differ in their margins' fields alone (:data:`MARGIN_FIELDS`).

    Args:
      a: a results file's ``config``.
      b: another's.

    Returns:
      True when they differ, and only in those fields.
    """
    keys = (set(a) | set(b)) - MARGIN_FIELDS
    return a != b and all(a.get(k) == b.get(k) for k in keys)


def cpu_kinds(cpus: list[tuple]) -> dict[tuple[str, str], tuple[str, str, str]]:
    """How each primary compares with its run on another CPU.

    As two lists of seeds compare (:func:`_compare`): each test's evidence and guard at its
    own p-value; a headline verdict (Holm-adjusted over the data set's claims, held by the
    protocol's guard; the other CPU's decided with its runs in the family in place of this
    report's) that differs while both agree is classed ``"headline"``, and one that the guard
    alone moves ``"guard moves"``; a guard that holds on one CPU only where the evidence is
    inconclusive on both (no verdict moves) is ``"neither held"``.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      ``{(data set, name): (kind, headline here, headline there)}``, ``kind`` a key of
      :data:`CPU_AGREE`.
    """
    out = {}
    for data, here, there, _ in cpus:
        d_here, d_there = adjusted(here), adjusted({**here, **there})
        for n in there:
            a = here[n]["tests"][here[n]["primary"]]
            b = there[n]["tests"][there[n]["primary"]]
            hv, tv = d_here[n]["verdict"], d_there[n]["verdict"]
            kind = _compare(a, b)
            # a headline that moves with the evidence or the guard is classed by what moved it
            if hv != tv and kind in ("same", "neither"):
                kind = "headline"
            elif hv != tv and kind == "guard":
                kind = "guard moves"
            elif kind == "neither" and bool(a.get("blocked")) != bool(b.get("blocked")):
                kind = "neither held"  # the guard differs, but no verdict moves with it
            out[(data, n)] = (kind, hv, tv)
    return out


def paired_shift(a: dict, b: dict) -> str:
    """The other CPU's effect minus this one's, paired by seed, with a 95% interval.

    Both runs use the same seeds, so their per-seed values pair; what is left is the CPUs'
    rounding, amplified by training.

    Returns:
      ``"d [lo, hi]"``, or ``"-"`` without per-seed values of the same length.
    """
    if a.get("values") is None or b.get("values") is None or len(a["values"]) != len(b["values"]):
        return "-"
    d = paired(b["values"], a["values"])
    return f"{d['mean']:.4g} [{d['lo']:.4g}, {d['hi']:.4g}]"


def _cpu_cell(r: dict, t: dict, headline: str) -> str:
    """A primary's cell in :func:`cpu_comparison`: its headline, its unadjusted verdict (and
    the one before the protocol's hold), its CPU and its effect."""
    held = f", held (before the hold: {own_verdict(t)})" if t.get("blocked") else ""
    return (
        f"headline **{headline}**; unadjusted {t['verdict']}{held}; on {cpu_of(r)}: "
        f"{effect_str(t)}{own_margin_str(t, 'this report')}"
    )


def tuned_arms(r: dict, path: str = "") -> dict[str, dict]:
    """Every arm the protocol tuned in a results file, by where it sits.

    Args:
      r: a results file (or a part of one).
      path: where ``r`` sits in its file.

    Returns:
      ``{path: arm record}`` (:func:`.protocol.arm_summary`: a dict with ``recipe``, ``lr``
      and ``tuning``), the path's parts joined by "/".
    """
    if isinstance(r, dict):
        if {"recipe", "lr", "tuning"} <= set(r):
            return {path: r}
        return {k: v for key, val in r.items() for k, v in tuned_arms(val, f"{path}/{key}").items()}
    return {}


def arm_part(path: str, data: str) -> str:
    """The data an arm was tuned on: ``data``, or the part of it that its path names.

    Args:
      path: the arm's :func:`tuned_arms` path.
      data: the data set's name.

    Returns:
      ``data``, or the part an arm tuned on part of the data set is kept under (averaging's
      digit pairs: ``"mnist1d[4v9]"``).
    """
    last = path.strip("/").split("/")[-1]
    return last if last.startswith(f"{data}[") else data


def tuning_shifts(cpus: list[tuple]) -> list[str]:
    """The tuned arms whose recipe or learning rate differs on the other CPU.

    The pilot runs behind a choice are trained as every run is, so the CPU's rounding moves
    their validation losses too; where two candidates score close, it moves the choice, and
    every number trained on that arm with it. An arm that several experiments share (one
    tuning per data set, net and protocol) is one entry, naming where each keeps it.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      One entry per such arm: ``"DATA, NET: RECIPE lr LR here, ... there (the pilots' mean
      validation loss ...; in NAME PATH, ...)"``.
    """
    found: dict[tuple, dict] = {}
    for data, n, here, there, arms in retunings(cpus):
        for path, a, b in arms:
            # one tuning: the same net's label and the same grids on both CPUs (nets of one
            # label can be tuned on other data, such as averaging's digit pairs)
            grids = json.dumps([a["tuning"], b["tuning"]], sort_keys=True)
            key = (arm_part(path, data), cpu_of(there), a.get("tuned_as", path), grids)
            entry = found.setdefault(key, {"a": a, "b": b, "where": [], "code": set()})
            entry["where"].append(f"{n} {path.strip('/')}")
            entry["code"].add(same_code(here, there))
    out = []
    for (data, _, net, _), e in found.items():
        a, b = e["a"], e["b"]
        code = {True: "", False: "; other code made the two runs",
                None: "; a results file records no code digest"}  # fmt: skip
        code = "".join(code[c] for c in (False, None) if c in e["code"])
        out.append(
            f"{data}, {net}: {a['recipe']} lr {a['lr']:g} here, {b['recipe']} lr {b['lr']:g} "
            f"there (the pilots' mean validation loss of the two: here {_score(a, a)} and "
            f"{_score(a, b)}, there {_score(b, a)} and {_score(b, b)}{code}; in "
            f"{', '.join(e['where'])})"
        )
    return out


TOLERANCES = (0.005, 0.01, 0.02)  # the tolerance rules tuning_noise tries, relative


def tuning_noise(cpus: list[tuple]) -> dict | None:
    """How far the CPU's rounding moves the tuning's scores, against the gaps they decide.

    Every tuning made on both CPUs with at least two scored candidates counts once (one
    data set or part, net, grid and other CPU). A *move* is ``|there - here| / here`` of a
    candidate's pilots' mean validation loss, for the two candidates that decide the choice
    here (its best two: far candidates, such as a diverged rate at chance on both CPUs, move
    nothing that matters); a tuning's *lead* is its choice's margin over its runner-up here,
    relative. A tolerance rule takes the smallest
    learning rate (recipes by name where two share it) whose score is within ``t`` of the
    best, relative, instead of the lowest score: a fixed preference among near-ties, so
    where near-ties alone moved the choices, such a rule would hold them.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      ``{"n", "differ", "move" (median, 90th percentile), "lead" (median), "rules" {t:
      {"differ": the choices that differ under it, "held": of those the lowest score leaves
      different, the ones it makes agree, "moved": the ones it makes differ that agreed}}}``,
      or None where no tuning was made on both CPUs (or its scores are 0, with no relative
      move or lead).
    """

    def candidates(arm: dict) -> list[tuple[str, str, float]]:
        # in the rules' order of preference: the rate as a number (the grid's keys are
        # text, "1e-05" after "0.0001"), then the recipe's name
        found = [
            (recipe, lr, float(v))
            for recipe, grid in arm["tuning"].items()
            for lr, v in grid.items()
            if v is not None
        ]
        return sorted(found, key=lambda x: (float(x[1]), x[0]))

    def choice(arm: dict, t: float) -> tuple[str, str]:
        c = candidates(arm)
        best = min(v for *_, v in c)
        # within t of the best, relative to its size (the best itself always is; t = 0: the
        # lowest score, the first of equal ones in the order of preference)
        return next(x for x in c if x[2] - best <= t * abs(best))[:2]

    seen: dict[tuple, tuple[dict, dict]] = {}
    for data, here, there, _ in cpus:
        for n in there:
            mine, theirs = tuned_arms(here[n]), tuned_arms(there[n])
            for path, a in mine.items():
                if path not in theirs or len(candidates(a)) < 2:
                    continue
                grid = json.dumps(a["tuning"], sort_keys=True)
                key = (arm_part(path, data), a.get("tuned_as", path), grid, cpu_of(there[n]))
                seen.setdefault(key, (a, theirs[path]))
    if not seen:
        return None
    moves, leads = [], []
    for a, b in seen.values():
        theirs = {(r, lr): v for r, lr, v in candidates(b)}
        top = sorted(candidates(a), key=lambda x: x[2])[:2]  # the choice and its runner-up
        moves += [
            abs(theirs[(r, lr)] - v) / abs(v) for r, lr, v in top if (r, lr) in theirs and v != 0
        ]
        first, second = top[0][2], top[1][2]
        if first != 0:
            leads.append((second - first) / abs(first))
    if not moves or not leads:  # every score 0: no relative move or lead to give
        return None
    differ = lambda t: [choice(a, t) != choice(b, t) for a, b in seen.values()]  # noqa: E731
    lowest = differ(0)

    def rule(t: float) -> dict:
        d = differ(t)
        return {
            "differ": sum(d),
            "held": sum(x and not y for x, y in zip(lowest, d)),
            "moved": sum(y and not x for x, y in zip(lowest, d)),
        }

    return {
        "n": len(seen),
        "differ": sum(lowest),
        "move": (float(np.median(moves)), float(np.percentile(moves, 90))),
        "lead": float(np.median(leads)),
        "rules": {t: rule(t) for t in TOLERANCES},
    }


def tuned_otherwise(here: dict, there: dict) -> list[tuple[str, dict, dict]]:
    """The arms of one experiment tuned to another recipe or learning rate on another CPU.

    Args:
      here: its results file on this report's CPU.
      there: the same experiment's on the other CPU.

    Returns:
      ``(path, arm here, arm there)`` per such arm (:func:`tuned_arms`' paths).
    """
    mine, theirs = tuned_arms(here), tuned_arms(there)
    pick = {k: (arm["recipe"], arm["lr"]) for k, arm in theirs.items()}
    differ = [k for k in mine if k in pick and (mine[k]["recipe"], mine[k]["lr"]) != pick[k]]
    return [(k, mine[k], theirs[k]) for k in differ]


def retunings(cpus: list[tuple]) -> list[tuple[str, str, dict, dict, list]]:
    """Every compared experiment with an arm tuned otherwise on the other CPU.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      ``(data set, name, results here, results there, tuned_otherwise(...))`` per compared
      run whose list is not empty, in the order of ``cpus``.
    """
    out = []
    for data, here, there, _ in cpus:
        for n in there:
            arms = tuned_otherwise(here[n], there[n])
            if arms:
                out.append((data, n, here[n], there[n], arms))
    return out


def arm_label(path: str) -> str:
    """An arm's name from its :func:`tuned_arms` path (``arms/plain`` is ``plain``,
    ``mlp/sgd/rate=0.5/arm`` is ``mlp/sgd/rate=0.5``)."""
    label = path.strip("/").removeprefix("arms/")
    return label.removesuffix("/arm") or label


def _score(arm: dict, pick: dict) -> str:
    """``arm``'s tuning score of ``pick``'s recipe and learning rate (the grid's keys are the
    rates as text), or "-" where its grid lacks that candidate or it diverged."""
    # the grid's keys are the rates as protocol._tune writes them
    s = arm["tuning"].get(pick["recipe"], {}).get(f"{pick['lr']:g}")
    return "-" if s is None else f"{s:.5g}"


def cpu_comparison(cpus: list[tuple]) -> list[str]:
    """Each primary on this report's CPU beside another CPU's run of the same seeds.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      The section's Markdown lines (:func:`cpu_kinds` classes each row); none without
      comparisons.
    """
    if not cpus:
        return []
    kinds = cpu_kinds(cpus)
    rows, by_kind, skipped = [], {}, []
    for data, here, there, skip in cpus:
        skipped += [f"{n} ({data})" for n in skip]
        for n in there:
            kind, hv, tv = kinds[(data, n)]
            by_kind.setdefault(kind, []).append(f"{n} ({data})")
            a = here[n]["tests"][here[n]["primary"]]
            b = there[n]["tests"][there[n]["primary"]]
            rows.append(
                [n, data, a["what"], _cpu_cell(here[n], a, hv), _cpu_cell(there[n], b, tv),
                 paired_shift(a, b), CPU_AGREE[kind]]
            )  # fmt: skip
    names = lambda *ks: ", ".join(n for k in ks for n in by_kind.get(k, [])) or "none"  # noqa: E731
    # every headline that moves, whatever moved it (a guard difference can move it too)
    moved = ", ".join(f"{n} ({d})" for (d, n), (_, hv, tv) in kinds.items() if hv != tv)
    moved = moved or "none"
    return [
        "## Another CPU",
        "",
        "The same experiments, configuration and seeds, run on another CPU. XLA compiles for "
        "its host and training amplifies the rounding, so every number moves. "
        + code_note(cpus)
        + " Each cell gives the headline verdict (Holm-adjusted over the "
        "data set's claims, the other CPU's runs taking this report's place in the family, "
        "held by the protocol's guard) and the unadjusted verdict at the test's own p-value "
        "(*held*: its verdict before the protocol's guard). *Fragile*: the evidence (the "
        "verdict before the guard) differs, or the headline does while the evidence and the "
        "guard agree (a p-value near the Holm level); a guard that differs alone shows a "
        "convergence count or a budget verdict near its threshold (or a count that moves with "
        "the CPU's rounding), and is classed so, its mark saying where it moves the "
        "headline. The shift is the "
        "other CPU's per-seed value minus this one's, paired by seed (95%). A run there whose "
        "configuration differs from this report's in its equivalence margin's rule alone "
        "trained the same nets: its primary is decided again at this report's margin from "
        "its stored values, its own margin beside it.",
        "",
        table(
            [
                "experiment",
                "data",
                "primary test",
                "this report's CPU",
                "the other CPU",
                "shift (other - this)",
                "compare",
            ],
            rows,
        ),
        "",
        f"The headline verdict differs by CPU: {moved}. Of those, with the evidence and the "
        f"guard agreeing (the Holm adjustment alone): {names('headline')}. The evidence "
        f"differs: "
        f"{names('one list', 'opposite')}. "
        f"The guard alone differs: {names('guard moves', 'guard')}; where the evidence is "
        f"inconclusive on both, so that no verdict moves with it: {names('neither held')}."
        + (
            f" Not compared (another configuration on the other CPU): {', '.join(skipped)}."
            if skipped
            else ""
        )
        + (
            " Conv's numbers also change between runs on one CPU (Scope): its shift is not the "
            "CPU's alone."
            if any(r[0] == "conv" for r in rows)
            else ""
        ),
        "",
        *tuning_lines(cpus),
    ]


def tuning_lines(cpus: list[tuple]) -> list[str]:
    """:func:`cpu_comparison`'s paragraph on the arms tuned otherwise on the other CPU.

    Args:
      cpus: :func:`other_cpus`.

    Returns:
      Markdown lines; none where every compared arm took the same choice on both CPUs.
    """
    shifts = tuning_shifts(cpus)
    if not shifts:
        return []
    return [
        f"The protocol's tuning chose another recipe or learning rate on the other CPU in "
        f"{len(shifts)} tuning{'s' if len(shifts) > 1 else ''} (an entry names every arm "
        "that shares it): the pilot runs behind a choice carry the CPU's rounding too, so "
        "their scores move, and where the choice moves, every number trained on that arm "
        "moves with it. Each entry gives this CPU's choice, then the other's, and the pilots' "
        "mean validation loss of both candidates on each CPU; one whose two runs other code "
        "made, or whose code is unrecorded, says so: the code can move the choice too.",
        "",
        *[f"- {x}." for x in shifts],
        "",
        *noise_lines(tuning_noise(cpus)),
    ]


def noise_lines(noise: dict | None) -> list[str]:
    """:func:`tuning_lines`' paragraph on whether a tolerance rule would hold the choices.

    Args:
      noise: :func:`tuning_noise`.

    Returns:
      Markdown lines; none without tunings made on both CPUs.
    """
    if noise is None:
        return []
    pct = lambda x: f"{100 * x:.2g}%"  # noqa: E731
    rules = noise["rules"]
    fewest = min(r["differ"] for r in rules.values())
    best_t = min(t for t, r in rules.items() if r["differ"] == fewest)
    best = rules[best_t]
    verdict = (
        "none of them leaves fewer choices different than the lowest score does"
        if fewest >= noise["differ"]
        else f"the best of them (t = {pct(best_t)}) leaves {fewest} where the lowest score "
        f"leaves {noise['differ']}"
    ) + (
        f"; at t = {pct(best_t)} the rule makes {best['held']} of the lowest score's "
        f"{noise['differ']} agree and {best['moved']} that agreed differ"
    )
    wide = noise["move"][1] > noise["lead"]
    verdict += (
        ". The protocol keeps the lowest score: a tolerance moves a near-tie to its own edge "
        "rather than removing it"
        + (
            ", and at least a tenth of the moves exceed the median lead. A mean over more pilot "
            "seeds would narrow the moves (not measured here), at the pilots' cost"
            if wide
            else ""
        )
    )
    return [
        f"Could a fixed preference among near-ties hold these choices? Over the {noise['n']} "
        f"tuning{'s' if noise['n'] > 1 else ''} made on both CPUs, the pilot score of each "
        "tuning's best two candidates (the two that decide it) moves by a median "
        f"{pct(noise['move'][0])} between them (90th percentile {pct(noise['move'][1])}; "
        "the CPU's rounding, and any code that changed between the runs), while a choice "
        f"leads its runner-up by a median {pct(noise['lead'])}; {noise['differ']} of the "
        f"{noise['n']} choices differ. Taking instead the smallest learning rate (recipes by "
        "name where two share it) whose score is within t of the best would leave "
        + ", ".join(f"{r['differ']} different at t = {pct(t)}" for t, r in rules.items())
        + f": {verdict}.",
        "",
    ]


def build_report(results_dir, out, compare=(), replicate=None, other_cpu=()) -> Path:
    """Write the report for ``results_dir/*/results.json`` to ``out``.

    Args:
      results_dir: the results folder to read.
      out: the report to write (parents created).
      compare: results folders of the same study on other data sets (same scale); the report
        then adds where the verdicts agree (:func:`agreement`).
      replicate: results folders (or one) of a second, disjoint list of seeds (``dropstudy
        replicate``, ``dropstudy run --seed-start``), each of the data set and scale of
        ``results_dir`` or of a ``compare`` folder, at most one per data set
        (:func:`second_lists`); the report then sets each primary's verdict on it beside the
        first list's (:func:`replication`).
      other_cpu: results folders of the same runs made on another CPU, each of a data set
        the report reads (:func:`other_cpus`); the report then sets each primary beside its
        run there (:func:`cpu_comparison`).

    Returns:
      ``out``.

    Raises:
      DropstudyError: if ``results_dir`` holds no results, a results file is of another scale
        or version, or a ``compare`` folder holds no results, results of another scale, of a
        data set the report has already, or no experiment in common; or as
        :func:`second_lists` or :func:`other_cpus`.
    """

    results_dir, out = Path(results_dir), Path(out)
    found = [n for n in NAMES if (results_dir / n / "results.json").is_file()]
    if not found:
        others = sorted(
            str(p.parent.parent) for p in results_dir.glob("*/*/results.json")
            if p.parent.name in NAMES
        )  # fmt: skip
        hint = (
            f"; results of other scales are in {', '.join(sorted(set(others)))}" if others else ""
        )
        if (results_dir / "results.json").is_file():  # one experiment's folder
            raise DropstudyError(
                f"{results_dir} is one experiment's folder: pass the folder that holds it, "
                f"--results {results_dir.parent}"
            )
        raise DropstudyError(
            f"no results under {results_dir}: run the experiments there first (`dropstudy run "
            f"NAME --out {results_dir}`, or `run all`), or pass --results FOLDER{hint}"
        )
    rel = os.path.relpath(results_dir, out.parent or Path("."))
    results = read_results(results_dir)
    scales = {n: scale_of(r) for n, r in results.items()}
    others = []
    for folder in compare:
        other = read_results(Path(folder))
        if not other:
            raise DropstudyError(
                f"--compare {folder}: no results there; make them first, e.g. `dropstudy run "
                f"all --dataset mnist1d --out {folder}`, or point --compare at such a folder"
            )
        theirs = {**scale_of(next(iter(other.values()))), "dataset": None}
        if theirs != {**next(iter(scales.values())), "dataset": None}:
            raise DropstudyError(
                f"--compare {folder} holds results of another scale; compare runs of the "
                "same scale (--quick, --seeds)"
            )
        seen = [data_name(results)] + [data_name(o) for o in others]
        if data_name(other) in seen:
            raise DropstudyError(
                f"--compare {folder} holds results on {data_name(other)}, a data set the "
                "report has already: compare folders of different data sets"
            )
        if not set(other) & set(results):
            raise DropstudyError(
                f"--compare {folder} has no experiment in common with {results_dir}"
            )
        others.append(other)
    s = next(iter(scales.values()))
    lists = second_lists([(results_dir, results), *zip(map(Path, compare), others)], replicate)
    cpus = other_cpus([(results_dir, results), *zip(map(Path, compare), others)], other_cpu)
    out_flag = f" --out {shlex.quote(str(results_dir))}" if results_dir != RESULTS else ""
    # Experiments on data of their own run only without --dataset: not missing elsewhere.
    runs_here = [n for n in NAMES if s["dataset"] == "digits" or not own_data(n)]
    missing = [n for n in runs_here if n not in found]
    command = (
        f"`{scale_command(s)}{out_flag}`"
        if not missing
        else f"`{scale_command(s, 'NAME')}{out_flag}` for NAME in {', '.join(found)}"
    )
    sections, summary = [], []
    decided = adjusted(results)
    for i, name in enumerate(found, 1):
        r, d = results[name], decided[name]
        try:
            md = section(name).section(r).replace(f"]({name}/", f"]({rel}/{name}/")
            tests_md = verdict_table(r)  # with the findings, computed from the results
        except (KeyError, IndexError, TypeError) as e:  # a field this version's section reads
            field = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise DropstudyError(
                f"{results_dir / name / 'results.json'} was written by another version of "
                f"{name} (this version's section needs {field!r}, which it lacks): re-run "
                f"`{scale_command(s, name)}{out_flag}` with this version"
            ) from None
        t = d["test"]
        if d["check"]:
            p_cols, verdict = ["check", "check"], f"**{d['verdict']}** (check)"
        else:
            p_cols = [p_str(d["p_holm"]), p_str(d["p_bh"])]
            verdict = (
                f"**{d['verdict']}**"
                + (f" (BH: {d['verdict_bh']})" if d["verdict_bh"] != d["verdict"] else "")
                + blocked_str(t, d["p_holm"])  # held at the level the summary decides
            )
        summary.append(
            [i, f"[{name}](#{i}-{name})", r["claim"], t["what"] + post_hoc(name),
             predictor_name(t), rule_str(t), n_str(t),
             effect_str(t), p_str(t["p"]), *p_cols, verdict, detects_str(t)]
        )  # fmt: skip
        sections.append(
            f"## {i}. {name}\n\n*Made by `{scale_command(s, name)}{out_flag}`.*\n\n"
            f"**Claim.** {r['claim']}\n\n{md}\n\n### Tests\n\n{tests_md}\n"
        )
    checks = "; ".join(f"{n}: {d['check']}" for n, d in decided.items() if d["check"]) or "none"
    meta = results[found[0]]
    v = meta.get("versions", {})
    full = s == scale_of({})
    head = [
        "# dropstudy report: is a network trained with dropout an ensemble of its subnetworks?",
        "",
        f"Generated by `dropstudy report` from the results files of {command}"
        + (" (`make study`)" if full and results_dir == RESULTS else "")
        + ". Every number below is read from those files. The claims are those of a widely "
        "read dropout tutorial, whose own PyTorch code the tutorial experiment runs as the "
        "reference of its replication. Drop *rate* is the probability of dropping a unit; "
        "keep p = 1 - rate.",
        "",
        f"Backend: {meta.get('backend')}; jax {v.get('jax')}, flax {v.get('flax')}, "
        f"optax {v.get('optax')}."
        + machines_str(
            [(data_name(results), results), *((data_name(o), o) for o in others)]
            + [(f"{data_name(ls.first)}, second list", ls.second) for ls in lists]
        )
        + (" **Quick (smoke-test) scale: not for conclusions.**" if s["quick"] else ""),
        "",
        "## What we found",
        "",
        "Each claim's primary verdict, decided as the summary below explains (Holm over each "
        "data set's claims; *check*: an identity or a check of the set-up, decided alone), "
        "with the effect and its interval (95% for a direction test, 90% for an equivalence "
        "test). The sections give every number behind it.",
        "",
        *found_table(results, others, lists, cpus),
        "",
        "**Glossary.** *WS*: weight scaling, the net with every unit kept and scaled by its "
        "keep probability (PyTorch's `model.eval()`). *MC average*: the mean prediction of K "
        "sampled subnetworks. *Exact*: the mean over all 2^n subnetworks, each weighted by "
        "its probability; *NWGM*: their normalised geometric mean. *Direction test*: is the "
        "effect on the claimed side of 0? *Equivalence test (TOST)*: is it within a margin "
        "fixed in the config, or derived from the validation split by a rule the config "
        "states (ensembles', maskmode's, conv's, voting's, diversity's, scaling's: rules set "
        "after "
        "earlier results "
        "were seen, "
        "capped by "
        "the fixed margin they replaced)? *Holm*, *BH*: corrections of p-values for "
        "testing many claims "
        "(family-wise error, false discovery rate). *Two-level*: an interval over seeds and "
        "test examples. *detects*: what the design finds with 80% power.",
        "",
        "## How the verdicts are decided",
        "",
        protocol_paragraph(results),
        "",
        "**How to read the verdicts.** A dropout-trained net is evaluated on the same weights "
        "by *weight scaling* (WS: every unit kept, scaled by its keep probability; PyTorch's "
        f"`model.eval()`), by its *MC average* (the mean prediction of {k_words(results)} "
        "sampled subnetworks, each mask shared by the whole batch), and where the net is small "
        "enough "
        "by the *exact* arithmetic mean or normalised geometric mean (NWGM) over all 2^n "
        "subnetworks. Each claim is judged by one primary test named in its experiment's "
        "config. *Direction* tests (a t test of the mean paired difference): "
        "supported when the 95% interval excludes 0 on the claimed side, contradicted when it "
        "excludes 0 on the other side, else inconclusive. *Equivalence* tests (two one-sided "
        "t tests, TOST, i.e. the 90% interval): supported when TOST rejects (the interval lies "
        "inside a margin fixed in the config, or derived by a rule the config states from the "
        "validation split alone, as ensembles', maskmode's, conv's, voting's, diversity's and "
        "scaling's "
        "margins are), "
        "contradicted when "
        "the interval "
        "lies wholly "
        "outside the margin, else inconclusive; only TOST's p-value enters the family, so an "
        "equivalence primary's *contradicted* rests on its unadjusted 90% interval. "
        "**Two sources of noise**: where a test's *n* reads 'seeds x examples', its values are "
        "per seed and per test example, and its interval covers both the seeds and the test "
        "set's sampling error (a crossed two-way random-effects variance with Satterthwaite's "
        "degrees of freedom); ratios of such means (robustness's retention, diversity's share) "
        "are linearised per example by the delta method. Where *n* counts seeds alone, the "
        "quantity is not a mean over test examples (a weight norm, a per-step movement, "
        "coadaptation's ratio of absolute loss changes), the test data are drawn anew per "
        "seed (the tutorial), or the test is exploratory and kept per seed (e.g. maskmode's "
        "KL gaps): its interval covers the seeds only. "
        "The verdicts in the table are decided at p-values Holm-adjusted across "
        f"the {sum(d['check'] is None for d in decided.values())} claims' primaries present "
        f"(level {ALPHA}); Benjamini-Hochberg's adjusted p-values stand beside them, and a "
        "verdict that differs under BH says so. A primary marked *check* is an identity or a "
        "check of the set-up, decided alone at its own p-value, outside the claims' family "
        f"({checks}). "
        "The intervals are unadjusted. *detects*: the smallest effect (direction) or the "
        f"smallest margin (equivalence, if the true difference were 0) that the design finds "
        f"with {POWER:.0%} power, and the seeds that the observed effect would need for "
        f"{POWER:.0%} power (for equivalence: to show it inside the margin; 'not reachable' "
        "when the observed difference is at or beyond the margin, or so close to it that more "
        f"than {MAX_SEEDS:,} seeds would be needed; for a direction test, when the effect "
        f"is so small that more than {MAX_SEEDS:,} seeds would be needed; 'not reachable "
        "with this test set' when "
        "the test set's own sampling error keeps it out of reach at any number of seeds, with "
        "the test examples that would reach it). "
        "n counts seeds ('seeds x examples' for a two-level test; masks for the scaling demo's "
        "exploratory tests). Every other test in a section is exploratory.",
        "",
        "**Scope.** Seeds vary initialisation, minibatch order and masks; except in the "
        "tutorial regression (new noise per seed), every seed of an experiment sees the same "
        "fixed data split. The two-level intervals (n 'seeds x examples') also cover drawing "
        "another test set from the same distribution; no interval covers drawing another "
        "training set. Student-t "
        "intervals can cross a quantity's natural bound "
        "(below 0 for an MSE). Two parts are not bitwise reproducible even on one machine: "
        "the conv experiment's numbers and the tutorial's PyTorch reference change between "
        "runs of the same code (every other number repeats bitwise on one CPU), so a conv "
        "verdict near its level can change on a re-run. The summary's table marks *post hoc* "
        "each primary set or changed after its own result had been seen. The primary tests "
        "were set in the round that "
        "introduced this "
        "verdict framework, when the previous round's results were known; the previous "
        "headline tests remain as exploratory tests (tutorial: test MSE by weight scaling, "
        "primary again since the training protocol's rule below; "
        "averaging: the 10-class 2x10 ReLU net at drop 0.5, now a stress case; ensembles: "
        "test NLL by weight scaling). Shrinkage's primary was first the linear data-dependent "
        "ridge (supported); a review moved it to the MLP weight norm, the tutorial's own "
        "claim, after that test had been seen (contradicted); the ridge test stays "
        "exploratory. The tutorial's regression example was overfitting's primary until it "
        "became an experiment of its own (it reads no data set, so every data set's run "
        "repeated it); overfitting's primary then became the data set's test NLL, plain minus the "
        "dropout net's MC average, a test it already reported, whose results in the "
        "previous run were known: contradicted on digits before the Holm adjustment "
        "(dropout's NLL higher) and inconclusive on MNIST-1D, where the same test by weight "
        "scaling was supported. It was post hoc, and counted in the claims' family all the "
        "same; it was chosen because it judges the dropout net as an ensemble (its MC "
        "average). With the training protocol (the issue that brought it names one primary "
        "predictor per claim, from the claim's source: the network as used for overfitting, "
        "robustness and conv) three primaries moved to weight scaling, the network as the "
        "tutorial uses it (`model.eval()`), the MC average beside each: overfitting's, conv's "
        "(from the MC average's test NLL) and robustness's (from the MC average's retention). "
        "The tutorial's primary, which the same rule names, moved back from the MC average's "
        "test MSE to weight scaling's later, after a review found it left out; both had been "
        "seen (weight scaling's inconclusive, the MC average's supported). "
        "The first three were seen under the fixed budget by both predictors, and the issue itself "
        "quoted overfitting's effects under an early-stopped validation protocol, by both "
        "predictors on digits and on MNIST-1D, so these are post hoc "
        "too. The windows W were set after that exploration, from where the dropout nets' "
        "validation NLL stopped improving. "
        "Scaling's primary (trained nets' expected logits against weight scaling's) was new "
        "in an earlier round; its nets' training was switched from part B's SGD to Adam after "
        "a first run showed MNIST-1D's nets far from fitting, and they now train by the "
        "protocol (the section gives their train accuracy). Ensembles' primary moved from "
        "nets at matched compute to the protocol's nets, each at its own best, after the "
        "matched-compute result was seen; that test stays beside it as exploratory. Its NLL "
        "margin, a fixed 0.02 nats, became a share (one half) of the independent ensemble's NLL "
        "gain over its "
        "mean member on the validation split after the results at 0.02 were seen (on digits "
        "the ensemble's test gain over its members had been about that margin, so "
        "equivalence within it could not tell the ensemble from one member). "
        "Maskmode's NLL margin, a fixed 0.02 nats too, became a share (one half) of the size "
        "of dropout's own effect on its wide net's validation NLL after the results at 0.02 "
        "were seen, so that the margin says what a mask mode's difference is small against; "
        "its second lists (seeds from 100) had been run and seen at 0.02 on the Xeon whose "
        "runs cpu-xeon/ keeps, before the rule was set. Conv's NLL margin, a fixed 0.02 nats "
        "too, became a share (one half) of the size of dense dropout's own effect on the "
        "conv net's validation NLL (the "
        "same net trained without any dropout against the dense-only dropout net) after its "
        "results at 0.02 had been seen on both data sets and both lists of seeds (on that "
        "Xeon). Voting's error margin, a fixed 0.5 pp, became a share (one half) of what "
        "combining its five subnetworks does to the validation error (one subnetwork's error "
        "minus their arithmetic mean's) after its results at 0.5 pp had been seen on both "
        "data sets and digits' second list. Diversity's margin, a fixed 0.05 of share, "
        "became a share (one half) of the independent nets' own share on the validation "
        "split (what averaging its five plain nets removes of their mean Brier score) after "
        "its results at 0.05 had been seen on both data sets and digits' second list. "
        "Scaling's margin, a fixed 0.1 per-mask sd, became a share (one half) of the gap "
        "retraining opens between two seeds' weight-scaled logits on the validation split "
        "(the test's own measure, over disjoint pairs of seeds) after its results at 0.1 had "
        "been seen on "
        "both data sets and digits' second list (on that Xeon; that second list is no "
        "longer picked by the rule, and git keeps it). A "
        "second review capped ensembles' and maskmode's derived margins at the 0.02 they "
        "replaced; the later rules (conv's, "
        "voting's, diversity's, scaling's) were capped from the start. For all six the cap "
        "holds (a rule adopted after the results may only make equivalence harder), and the "
        "primary's verdicts at the margin not used stand beside the headline (at the fixed "
        "one where the rule tightened it, at the rule's where the fixed one stands). Each "
        "scale is "
        "measured on the validation split that also chose the nets' learning rates and "
        "stopping steps, so it is not independent of those choices. Ensembles', voting's, "
        "maskmode's (a mask per example) and diversity's primaries read one dropout net per "
        "data set and list of seeds (trained once, shared), and ensembles' and diversity's "
        "independent nets are the same nets: their protocol holds, second lists and CPU "
        "comparisons turn on one net's convergence, not four. Baselines' "
        "seeds rose from 5 to 10, the floor the study sets for every primary, after its "
        "5-seed check was seen. "
        "Coadaptation's temperature was bounded below by 1 after a review of the first "
        "protocol run found the digits dropout net sharpened by a temperature below 1 to a "
        "test NLL far above the plain net's. "
        "Averaging's primary and multiclass nets moved onto the protocol after their "
        "fixed-budget results were seen (the primary's fixed-budget verdict was supported). "
        "Scaling's exact check of the matched conventions moved from the end of "
        "training to 200 steps after it failed at the end on digits, and it had flipped "
        "between CPUs there. The rule that picks the primaries run on a second list of seeds "
        "was set after the first list's p-values were known. "
        "The tutorial regression and the diabetes regression draw their data anew per seed.",
        "",
        table(
            ["#", "experiment", "claim", "primary test", "predictor", "rule", "n",
             "effect [interval]", "p", "p (Holm)", "p (BH)", "verdict", "detects"],
            summary,
        ),
        "",
    ]  # fmt: skip
    key = [
        f"- {name}: {f}"
        for name in found
        for f in (*primary_findings(results[name]), *headline_caveats(name, results[name]))
    ]
    if key:
        head += [
            "**Findings on the primary tests** (more in each section; the verdicts a finding "
            "names are unadjusted, the table's are Holm-adjusted):",
            "",
            *key,
            "",
        ]
    if missing:
        head.append(f"Not yet run: {', '.join(missing)}.\n")
    if others:
        rels = []
        for f in compare:
            report = report_of(Path(f))
            folder = os.path.relpath(report.parent, out.parent or Path("."))
            rels.append((folder, report.is_file(), report.name))
        head += agreement(results, others, rels)
        if lists:
            fragile = [
                f"on {data_name(ls.first)}: "
                + (", ".join(n for n in NAMES if n in ls.first and n in ls.second
                             and _compare_lists(ls, n) in FRAGILE) or "none")
                for ls in lists
            ]  # fmt: skip
            head += [
                "These rows read each data set's first list of seeds. The second lists (\"A "
                'second list of seeds" below) qualify them: fragile '
                + "; ".join(fragile)
                + ". A row that agrees or differs on a fragile verdict may not repeat.",
                "",
            ]
    if lists:
        head += replication(lists)
    head += cpu_comparison(cpus)
    text = "\n".join(head) + "\n" + "\n\n".join(sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
