"""The two layers: the library never imports the study, no import cycle anywhere, and no
module reaches into another module's private names."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"dropstudy": ROOT / "dropstudy", "dropstudy_experiments": ROOT / "experiments"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            parts = [pkg, *f.relative_to(folder).with_suffix("").parts]
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, names imported from it)`` for every import, at any depth."""
    pkg = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([base] if base else [])])
            names = [a.name for a in node.names]
            mods = _modules()
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in mods]
            out += [(s, []) for s in subs] or [(base, names)]
    return out


def test_library_never_imports_the_study():
    for name, path in _modules().items():
        if name.startswith("dropstudy_experiments"):
            continue
        for mod, _ in _imports(name, path):
            assert not mod.startswith(("dropstudy_experiments", "experiments")), (name, mod)


def test_computing_code_never_imports_the_report_sections():
    """Sections (prose and figures) sit on top of the experiments: no cell can run them, so
    editing one never touches a cell's key."""
    found = [m for m in _modules() if m.startswith("dropstudy_experiments.sections.")]
    assert len(found) >= 14
    for name, path in _modules().items():
        if name.startswith("dropstudy_experiments.sections"):
            continue
        for mod, _ in _imports(name, path):
            assert not mod.startswith("dropstudy_experiments.sections"), (name, mod)


def test_no_import_cycle():
    mods = _modules()
    graph = {
        name: {m for m, _ in _imports(name, path) if m in mods and m != name}
        for name, path in mods.items()
    }
    # a package's __init__ is imported with any of its submodules
    state: dict[str, int] = {}

    def visit(n, trail):
        if state.get(n) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*trail, n])}")
        if state.get(n) == 2:
            return
        state[n] = 1
        for m in sorted(graph[n]):
            visit(m, [*trail, n])
        state[n] = 2

    for n in graph:
        visit(n, [])


def test_no_reach_into_private_names():
    mods = _modules()
    files = {**mods, **{f"benchmarks.{f.stem}": f for f in (ROOT / "benchmarks").glob("*.py")}}
    files.update({f"tests.{f.stem}": f for f in (ROOT / "tests").glob("*.py")})
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        aliases = set()
        for mod, names in _imports(name, path):
            if mod.split(".")[0] not in PACKAGES:
                continue
            bad = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not bad, f"{name} imports private {bad} from {mod}"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    full = a.name if isinstance(node, ast.Import) else f"{node.module}.{a.name}"
                    if full.split(".")[0] in PACKAGES or (
                        isinstance(node, ast.ImportFrom) and node.level
                    ):
                        aliases.add(a.asname or a.name.split(".")[0])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                raise AssertionError(f"{name} reaches into {node.value.id}.{node.attr}")
            reached = _setattr_target(node, aliases)
            if reached:
                raise AssertionError(f"{name} patches private {reached} by its name")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _setattr_target(node: ast.AST, aliases: set[str]) -> str | None:
    """``alias._name`` when ``node`` is ``setattr(alias, "_name", ...)`` (monkeypatch's
    too) or ``setattr("pkg.module._name", ...)``: a private name reached through a string,
    which the attribute check above cannot see."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in ("setattr", "delattr"):
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):  # a dotted path
        parts = first.value.split(".")
        if parts[0] in PACKAGES and any(_private(p) for p in parts[1:]):
            return first.value
        return None
    if (
        isinstance(first, ast.Name)
        and first.id in aliases
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and _private(node.args[1].value)
    ):
        return f"{first.id}.{node.args[1].value}"
    return None


def test_string_patches_of_private_names_are_caught():
    """The check above sees a private name patched through a string, in both forms."""
    aliases = {"F"}
    for code, want in (
        ('monkeypatch.setattr(F, "_hidden", 1)', "F._hidden"),
        ('monkeypatch.setattr("dropstudy.fast_mc._dense", 1)', "dropstudy.fast_mc._dense"),
        ('setattr(F, "_x", 2)', "F._x"),
        ('monkeypatch.setattr(F, "public", 1)', None),
        ('monkeypatch.setattr(np, "_other", 1)', None),  # not a package of ours
    ):
        (call,) = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)]
        assert _setattr_target(call, aliases) == want, code


MAX_POSITIONAL = 5


def test_long_signatures_take_keywords():
    """A library function that passes more than five things takes the rest by keyword, so
    no call site depends on the order of a long argument list."""
    long = []
    for name, path in _modules().items():
        if not name.startswith("dropstudy."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
                args = args[1:] if args[:1] in (["self"], ["cls"]) else args
                if len(args) > MAX_POSITIONAL:
                    long.append(f"{name}.{node.name}: {len(args)} positional")
    assert not long, long
