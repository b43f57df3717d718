"""What a cell executes, as a digest: the key that decides whether a stored cell is stale.

A cell's result depends on its function, its arguments and the code that function runs. This
module finds that code statically: starting from the cell's function (and the classes of its
arguments), it follows every global name, closure, default and module attribute that the code
refers to, within the project's own source folders, and collects the top-level definitions
that hold them. Each definition is hashed as its syntax tree with docstrings removed (comments
and line numbers never reach the tree), together with the simple module constants the code
reads. So editing a report section, a figure, a summary rule, a docstring or a comment leaves
every key as it was, and editing the cell's code, a helper it calls or a library function it
calls changes the key of every cell that reaches it.

Following names is deliberately generous: an attribute name such as ``apply`` pulls in every
definition of that name in the modules the code refers to, so a key may cover more code than
a run executes, never less. ``tests/test_codekey.py`` checks the second half by tracing the
functions a cell really runs.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

Definition = tuple[str, str]  # (source file, top-level name)


def project_roots() -> tuple[Path, ...]:
    """The folders whose code a cell key covers: the library and the study.

    Returns:
      ``(dropstudy's folder, this package's folder)``.
    """
    import dropstudy

    return (Path(dropstudy.__file__).parent, Path(__file__).parent)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


_SOURCES: dict[str, str] = {}  # path -> the source as this process first read it


def snapshot(roots: Iterable[Path] | None = None) -> None:
    """Read every project source file now, once per process.

    Keys then describe the code as it was when the run started (the code in memory), not files
    edited during the run.

    Args:
      roots: the project's source folders (default: the library and the study).
    """
    for root in roots or project_roots():
        for f in sorted(Path(root).resolve().rglob("*.py")):
            if str(f) not in _SOURCES:  # read once: a later run in this process keeps it
                _SOURCES[str(f)] = f.read_text()


@functools.lru_cache(maxsize=256)
def _parsed(path: str, source: str) -> tuple[dict[str, str], str]:
    """A source file's top-level definitions ``{name: dump}`` (docstrings stripped), and
    the dump of its other top-level statements (calls and blocks run at import)."""
    del path  # part of the cache key only
    tree = _strip_docstrings(ast.parse(source))
    defs: dict[str, str] = {}
    rest = []
    for node in tree.body:
        dump = ast.dump(node, annotate_fields=False, include_attributes=False)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[node.name] = dump
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        defs[n.id] = defs.get(n.id, "") + dump
        elif not isinstance(node, ast.Import | ast.ImportFrom | ast.Pass):
            rest.append(dump)
    return defs, "\n".join(rest)


def parsed(path: str) -> tuple[dict[str, str], str]:
    """A project file's top-level definitions and import-time statements, as first read.

    :func:`_parsed` for the file as this process first read it (:func:`snapshot`).

    Args:
      path: the source file's path.

    Returns:
      ``(definitions, rest)``: ``{name: dump}`` of its top-level definitions (docstrings
      stripped), and the dump of its other top-level statements (calls and blocks run at
      import).
    """
    if path not in _SOURCES:
        _SOURCES[path] = Path(path).read_text()
    return _parsed(path, _SOURCES[path])


def _ref(obj: Any) -> str:
    """A callable or class by name, e.g. ``<jax.nn.relu>``; anything else by :func:`data`
    or, failing that, by its type."""
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"<{getattr(obj, '__module__', '?')}.{obj.__qualname__}>"
    rep = data(obj)
    return rep if rep is not None else f"<a {type(obj).__module__}.{type(obj).__qualname__}>"


def data(value: Any) -> str | None:
    """A stable text of a value that code reads, or None when ``value`` is not data.

    Such values are module constants, default arguments, class attributes and closures'
    cells. Data are numbers, strings, enums, numpy scalars and arrays (by dtype, shape and a
    digest of their bytes), containers of them, frozen dataclasses by their fields, and
    ``functools.partial`` by its function and arguments; a callable inside data is named
    (:func:`_ref`).

    Args:
      value: any object.

    Returns:
      The text, or None.
    """
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return repr(value)
    if isinstance(value, enum.Enum):
        return repr(value)
    if isinstance(value, np.generic):
        return f"{type(value).__name__}({value!r})"
    if isinstance(value, np.ndarray) or (
        hasattr(value, "__array__") and hasattr(value, "dtype") and hasattr(value, "shape")
    ):
        a = np.asarray(value)
        digest = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
        return f"array({a.dtype}, {a.shape}, {digest})"
    if isinstance(value, tuple | list):
        return f"{type(value).__name__}[{', '.join(_ref(v) for v in value)}]"
    if isinstance(value, set | frozenset):
        return f"{type(value).__name__}{{{', '.join(sorted(_ref(v) for v in value))}}}"
    if isinstance(value, dict):
        items = sorted(f"{_ref(k)}: {_ref(v)}" for k, v in value.items())
        return "dict{" + ", ".join(items) + "}"
    if isinstance(value, functools.partial):
        kw = ", ".join(f"{k}={_ref(v)}" for k, v in sorted(value.keywords.items()))
        return f"partial({_ref(value.func)}, {data(value.args)}, {kw})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fs = ", ".join(
            f"{f.name}={_ref(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
        return f"{type(value).__qualname__}({fs})"
    return None


def _simple(value: Any) -> bool:
    """Whether a module constant is hashed by its value (numbers, strings, tuples of them,
    enums, frozen dataclasses of them)."""
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return True
    if isinstance(value, enum.Enum):
        return True
    if isinstance(value, tuple | frozenset):
        return all(_simple(v) for v in value)
    return False


class Closure:
    """The project code reachable from some functions and objects.

    Args:
      roots: folders whose source files count as the project's; code elsewhere (jax, flax,
        the standard library) is covered by the versions in the cell key instead.
    """

    def __init__(self, roots: Iterable[Path] | None = None):
        self.roots = tuple(Path(r).resolve() for r in (roots or project_roots()))
        self.definitions: set[Definition] = set()
        self.constants: dict[str, str] = {}
        self.files: set[str] = set()
        self._seen: set[int] = set()
        self._keep: list[Any] = []  # what was visited stays alive, so no id is reused
        self._pending: list[Any] = []

    # -- where things live ------------------------------------------------------------------
    def _file(self, obj: Any) -> str | None:
        """The project source file defining ``obj``, or None when it is not project code."""
        try:
            f = inspect.getsourcefile(obj)
        except TypeError:
            return None
        if f is None:
            return None
        p = Path(f).resolve()
        if any(p.is_relative_to(r) for r in self.roots):
            return str(p)
        return None

    def _project_module(self, mod: types.ModuleType) -> bool:
        f = getattr(mod, "__file__", None)
        return f is not None and any(Path(f).resolve().is_relative_to(r) for r in self.roots)

    def _module(self, full: str, package: str) -> types.ModuleType | None:
        """Module ``full`` if it exists: imported now when it is a project module not yet
        imported (a key must not depend on what earlier cells happened to import)."""
        if full in sys.modules:
            return sys.modules[full]
        parent = sys.modules.get(package)
        if not package or parent is None or not self._project_module(parent):
            return None
        try:
            if importlib.util.find_spec(full) is None:
                return None
        except (ImportError, ValueError):
            return None
        return importlib.import_module(full)

    # -- the walk -----------------------------------------------------------------------------
    def add(self, *objs: Any) -> Closure:
        """Follow ``objs`` and everything they refer to.

        Args:
          *objs: functions, classes and other objects to follow.

        Returns:
          This closure, for chaining.
        """
        self._pending.extend(objs)
        while self._pending:
            self._visit(self._pending.pop())
        return self

    def add_instance(self, value: Any) -> Closure:
        """Follow the project classes of ``value`` and of what it contains.

        Args:
          value: a cell argument: a model, a data set, a config; dicts, lists and tuples item by
            item, dataclasses field by field.

        Returns:
          This closure, for chaining.
        """
        if isinstance(value, dict):
            for v in value.values():
                self.add_instance(v)
        elif isinstance(value, list | tuple):
            for v in value:
                self.add_instance(v)
        elif not _simple(value):
            self.add(type(value))
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                for f in dataclasses.fields(value):
                    self.add_instance(getattr(value, f.name))
        return self

    def _visit(self, obj: Any) -> None:
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        self._keep.append(obj)
        if isinstance(obj, functools.partial):
            self._pending += [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, staticmethod | classmethod):
            self._pending.append(obj.__func__)
        elif isinstance(obj, types.MethodType):
            self._pending += [obj.__func__, type(obj.__self__)]
        elif isinstance(obj, property):
            self._pending += [obj.fget, obj.fset, obj.fdel]
        elif isinstance(obj, dict):
            self._pending += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            self._pending += list(obj)
        elif isinstance(obj, types.FunctionType):
            if hasattr(obj, "__wrapped__"):  # a decorator's wrapper (flax, contextlib, ...)
                self._pending.append(obj.__wrapped__)
            self._function(obj)
        elif isinstance(obj, type):
            self._class(obj)
        elif hasattr(obj, "__wrapped__"):  # jax.jit, functools.wraps, custom_vjp ...
            self._pending.append(obj.__wrapped__)
        elif callable(obj) and hasattr(obj, "fun"):  # jax.custom_jvp / custom_vjp
            self._pending.append(obj.fun)
        elif dataclasses.is_dataclass(obj):
            self.add_instance(obj)

    def _define(self, obj: Any) -> str | None:
        """Record the top-level definition holding ``obj``; its file, or None."""
        f = self._file(obj)
        if f is None:
            return None
        top = obj.__qualname__.split(".")[0]
        if top in parsed(f)[0]:
            self.definitions.add((f, top))
        else:  # defined by a statement the parser does not name: hash its bytecode
            code = getattr(obj, "__code__", None)
            digest = _code_digest(code) if code is not None else "?"
            # named by file name, qualified name and the code itself: two lambdas of one
            # file are two entries, wherever the checkout lives
            self.definitions.add((f, f"<code>{obj.__qualname__}:{digest}"))
        self.files.add(f)
        return f

    def _note(self, where: str, value: Any) -> None:
        """Record ``value`` (read by code at ``where``) when it is data; follow it."""
        rep = data(value)
        if rep is not None:
            self.constants[where] = rep
        if not _simple(value):
            self._pending.append(value)

    def _class(self, cls: type) -> None:
        if self._define(cls) is None:
            return
        self._pending += [b for b in cls.__bases__ if b is not object]
        for name, v in vars(cls).items():
            if name.startswith("__") and name.endswith("__"):
                if isinstance(v, types.FunctionType):  # __init__, __call__, ...
                    self._pending.append(v)
                continue
            self._note(f"{cls.__module__}.{cls.__qualname__}.{name}", v)

    def _function(self, fn: types.FunctionType) -> None:
        if self._define(fn) is None:
            return
        g = fn.__globals__
        where = f"{fn.__module__}.{fn.__qualname__}"
        if fn.__closure__:
            for name, c in zip(fn.__code__.co_freevars, fn.__closure__, strict=True):
                try:
                    self._note(f"{where}.<closure {name}>", c.cell_contents)
                except ValueError:  # an empty cell
                    pass
        self._note(f"{where}.<defaults>", tuple(fn.__defaults__ or ()))
        self._note(f"{where}.<kwdefaults>", dict(fn.__kwdefaults__ or {}))
        names = set()
        for code in _codes(fn.__code__):
            names.update(code.co_names)
        modules = []
        package = (g.get("__package__") or "").split(".")
        for name in names:
            if name in g:
                value = g[name]
                if isinstance(value, types.ModuleType):
                    modules.append(value)
                else:
                    self._note(f"{g.get('__name__')}.{name}", value)
        # modules imported inside the function (``from . import common``,
        # ``from dropstudy import predict as P``): a name after its package's name
        prefixes = {"", ".".join(package), package[0]} | {n for n in names if n in sys.modules}
        for name in names:
            for prefix in prefixes:
                m = self._module(f"{prefix}.{name}" if prefix else name, prefix)
                if m is not None:
                    modules.append(m)
        for m in modules:
            if not self._project_module(m):
                continue
            for name in names:
                if name in vars(m):
                    value = vars(m)[name]
                    if not isinstance(value, types.ModuleType):
                        self._note(f"{m.__name__}.{name}", value)

    # -- the digest ---------------------------------------------------------------------------
    def digest(self) -> str:
        """A digest of every definition, constant and import-time statement reached.

        Returns:
          A 16-character hex digest.
        """
        h = hashlib.sha256()
        for f, name in sorted(self.definitions):
            defs = parsed(f)[0]
            h.update(f"{Path(f).name}:{name}\n".encode())
            h.update(defs.get(name, "").encode())
        for f in sorted(self.files):
            h.update(parsed(f)[1].encode())
        for k in sorted(self.constants):
            h.update(f"{k}={self.constants[k]}\n".encode())
        return h.hexdigest()[:16]


def _codes(code: types.CodeType) -> Iterable[types.CodeType]:
    """A code object and the code of everything nested in it (lambdas, inner functions)."""
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.sha256()
    for c in _codes(code):
        h.update(c.co_code)
        h.update(repr([k for k in c.co_consts if not isinstance(k, types.CodeType)]).encode())
        h.update(repr(c.co_names).encode())
    return h.hexdigest()[:16]


def _closure(fn: Callable[..., Any], kwargs: dict, roots: Iterable[Path] | None) -> Closure:
    """The project code ``fn(**kwargs)`` can run: ``fn`` and its arguments' classes, followed."""
    return Closure(roots).add(fn).add_instance(kwargs)


KEY_DISTRIBUTIONS = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-learn", "torch")


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """What runs a cell besides the project's code, read once per process.

    Python, the installed versions of the libraries cells call (those not installed are left
    out), and the device kind (e.g. ``"cpu"``, ``"NVIDIA H100 80GB HBM3"``).

    Returns:
      ``{name: version}`` plus ``"python"`` and ``"device_kind"``.
    """
    import importlib.metadata as md
    import platform

    import jax

    out = {"python": platform.python_version(), "device_kind": jax.devices()[0].device_kind}
    for name in KEY_DISTRIBUTIONS:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def code_key(fn: Callable[..., Any], kwargs: dict, roots: Iterable[Path] | None = None) -> str:
    """The digest of the project code that ``fn(**kwargs)`` can run.

    Args:
      fn: a cell's function.
      kwargs: its arguments; the project classes of their values (a model, a data set, a
        training config) count as code it runs.
      roots: the project's source folders (default: the library and the study).

    Returns:
      A 16-character hex digest.
    """
    return _closure(fn, kwargs, roots).digest()


def reached(fn: Callable[..., Any], kwargs: dict, roots: Iterable[Path] | None = None) -> set:
    """The top-level definitions that :func:`code_key` covers.

    Args:
      fn: a cell's function.
      kwargs: its arguments.
      roots: the project's source folders (default: the library and the study).

    Returns:
      ``{(file, name)}``.
    """
    return _closure(fn, kwargs, roots).definitions
