"""A small mutation run: does the test suite notice when the library's core is wrong?

    python tests/mutate.py [--per-module 10] [--seed 0] [--only fast_exact,masks]
                           [--write FILE.md]

Each mutant changes one operator or constant in one core module (``+`` for ``-``, ``<`` for
``<=``, ``and`` for ``or``, ``True`` for ``False``, a number plus one or doubled, a ``not``
or a minus sign dropped), written into a copy of the repository (the working tree is never
touched). The module's own test files then run on the copy (``pytest -x``, the default
suite's markers, two devices as always); a mutant is killed when they fail or time out. A
mutant they miss then meets every default test file that names the module; one that
survives that too is a survivor of the default suite. Mutants are drawn at random
(``--seed``) from every site of a module outside docstrings, messages and type hints,
``--per-module`` of them. Survivors are listed with the mutated expression, to be read: some
are equivalent (a change no input can show), the rest want a test.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# core module -> the test files that exercise it
TARGETS = {
    "dropstudy/masks.py": ["tests/test_masks.py", "tests/test_properties.py"],
    "dropstudy/predict.py": ["tests/test_predict.py", "tests/test_properties.py"],
    "dropstudy/average.py": ["tests/test_average.py", "tests/test_predict.py"],
    "dropstudy/fast_exact.py": ["tests/test_fast_exact.py"],
    "dropstudy/fast_mc.py": ["tests/test_fast_mc.py", "tests/test_two_devices.py"],
    "dropstudy/train.py": ["tests/test_train.py", "tests/test_options.py"],
    "experiments/stats.py": ["tests/test_stats.py"],
}

SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
SWAP_CMP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}


def _skipped(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, f-strings and messages, annotations."""
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                out.update(id(n) for n in ast.walk(body[0]))
        if isinstance(node, (ast.JoinedStr, ast.Raise)):
            out.update(id(n) for n in ast.walk(node))
        for ann in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if ann is not None:
                out.update(id(n) for n in ast.walk(ann))
    return out


def sites(tree: ast.AST) -> list[tuple[int, str]]:
    """Every mutable site as ``(index of the node in ast.walk order, kind)``."""
    skip = _skipped(tree)
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in SWAP_BIN:
            out.append((i, "binop"))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP_CMP:
            out.append((i, "compare"))
        elif isinstance(node, ast.BoolOp):
            out.append((i, "boolop"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            out.append((i, "unary"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            out.append((i, "constant"))
    return out


def mutate(tree: ast.AST, index: int) -> ast.AST:
    """A copy of ``tree`` with the site at ``index`` (ast.walk order) changed."""
    new = copy.deepcopy(tree)
    parents = {}
    for parent in ast.walk(new):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    node = list(ast.walk(new))[index]
    if isinstance(node, ast.BinOp):
        node.op = SWAP_BIN[type(node.op)]()
    elif isinstance(node, ast.Compare):
        node.ops = [SWAP_CMP[type(node.ops[0])]()]
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):  # drop the `not` or the minus sign
        parent = parents[id(node)]
        for field, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, field, node.operand)
            elif isinstance(value, list):
                setattr(parent, field, [node.operand if v is node else v for v in value])
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            node.value = not v
        elif isinstance(v, int):
            node.value = v + 1
        else:
            node.value = v * 2 if v else 1.0
    return ast.fix_missing_locations(new)


def line_of(tree: ast.AST, index: int) -> int:
    return getattr(list(ast.walk(tree))[index], "lineno", 0)


def changed(tree: ast.AST, index: int) -> str:
    """The site before and after the mutation, as source: ``a < b -> a <= b``."""
    node, new = list(ast.walk(tree))[index], list(ast.walk(mutate(tree, index)))[index]
    before = ast.unparse(node)
    after = ast.unparse(new) if not isinstance(node, ast.UnaryOp) else ast.unparse(node.operand)
    return f"{before} -> {after}"


def naming(module: str) -> list[str]:
    """Every default test file that imports ``module`` (an import line naming its stem)."""
    stem = Path(module).stem
    word = re.compile(rf"^\s*(from|import)\s.*\b{stem}\b", re.M)
    files = (ROOT / "tests").glob("test_*.py")
    return sorted(str(f.relative_to(ROOT)) for f in files if word.search(f.read_text()))


def copy_repo(dest: Path) -> None:
    """The working tree without the virtual environment, results and caches; the study's
    package name points at its experiments folder as the installed package does."""
    ignore = shutil.ignore_patterns(".venv", ".git", "results", "__pycache__", "*.png", ".*cache")
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)
    link = dest / "dropstudy_experiments"
    if not link.exists():
        link.symlink_to(dest / "experiments")


def run_tests(repo: Path, files: list[str], timeout: int) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files]
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, timeout=timeout)
        outcome = "survived" if r.returncode == 0 else "killed"
        if r.returncode not in (0, 1):  # collection errors, crashes: the mutant broke imports
            outcome = "killed"
    except subprocess.TimeoutExpired:
        outcome = "killed (timeout)"
    return outcome, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-module", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma list of module stems, e.g. fast_exact")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    ap.add_argument("--write", type=Path, help="also write the table as Markdown here")
    args = ap.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        chosen_targets = {m: fs for m, fs in TARGETS.items() if not only or Path(m).stem in only}
        all_files = sorted({f for fs in chosen_targets.values() for f in fs})
        base, t_base = run_tests(repo, all_files, 1800)
        if base != "survived":
            print("the unmutated copy fails its tests: nothing to measure", file=sys.stderr)
            return 1
        for module, files in chosen_targets.items():
            source = (ROOT / module).read_text()
            tree = ast.parse(source)
            chosen = rng.sample(sites(tree), min(args.per_module, len(sites(tree))))
            for index, kind in sorted(chosen):
                mutant = ast.unparse(mutate(tree, index))
                (repo / module).write_text(mutant)
                try:
                    outcome, secs = run_tests(repo, files, args.timeout)
                    wider = [f for f in naming(module) if f not in files]
                    if outcome == "survived" and wider:
                        outcome, more = run_tests(repo, wider, args.timeout)
                        outcome = outcome if outcome == "survived" else f"{outcome} (wider)"
                        secs += more
                finally:
                    (repo / module).write_text(source)
                line = line_of(tree, index)
                code = changed(tree, index)
                rows.append((module, line, kind, code, outcome, secs))
                print(f"{outcome:16s} {secs:6.1f} s  {module}:{line} {kind}: {code}", flush=True)
    killed = sum(r[4].startswith("killed") for r in rows)
    summary = f"{killed} of {len(rows)} mutants killed ({100 * killed / max(len(rows), 1):.0f}%)"
    print(summary)
    if args.write:
        md = [
            "# Mutation run",
            "",
            f"Command: `python tests/mutate.py --per-module {args.per_module} --seed "
            f"{args.seed}`; every module's own test files (table in `tests/mutate.py`), run "
            f"unmutated first ({t_base:.0f} s, all passing), then for a mutant they miss every "
            f"default test file that names the module. {summary}.",
            "",
            "| module | line | kind | mutation | outcome |",
            "|---|---|---|---|---|",
        ]
        md += [f"| {m} | {ln} | {k} | `{c}` | {o} |" for m, ln, k, c, o, _ in rows]
        args.write.write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
