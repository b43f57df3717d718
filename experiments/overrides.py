"""Configuration fields set from the command line (``dropstudy run NAME --set FIELD=VALUE``).

A value is text, parsed by the type of the field's default: an integer, a float, a bool
(``true``/``false``), a string, or a tuple of them written with commas (``hidden=128,128``).
A dotted name reaches into a field that is itself a configuration (``train.lr=0.1``,
``protocol.window=4000``). The experiment's ``Config`` checks the result as it checks its
defaults, so a value no run could use is refused before any cell runs. Results record each
field in one canonical spelling (:func:`canonical`: ``.20`` is ``0.2``, ``(8, 8)`` is
``8,8``, a field set to its default is no field set), so one value makes one folder, and
``dropstudy replicate`` and the report repeat them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dropstudy.validate import DropstudyError


def _seed_field(name: str) -> bool:
    """Whether a top-level field counts the seeds (``--seeds`` sets it: :meth:`.common.
    ExperimentConfig.seed_span`'s fields); a nested one, such as the protocol's
    ``pilot_seeds`` (a list of seeds, not a count), is a field like any other."""
    return "." not in name and (name in ("seeds", "splits") or name.endswith("_seeds"))


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``FIELD=VALUE`` items as the command line gives them, as a dict.

    Args:
      items: the ``--set`` arguments, or None.

    Returns:
      ``{field: value text}``, sorted by field.

    Raises:
      DropstudyError: if an item has no ``=``, an empty name, or a field is given twice.
    """
    out: dict[str, str] = {}
    for item in items or ():
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise DropstudyError(
                f"--set {item!r}: write FIELD=VALUE, e.g. --set {name or 'FIELD'}=VALUE (the "
                "experiment's Config fields; a dotted name such as train.lr reaches into one)"
            )
        if name in out:
            raise DropstudyError(f"--set gives {name} twice ({out[name]!r} and {text!r})")
        out[name] = text.strip()
    return dict(sorted(out.items()))


def _parse(path: str, text: str, current: Any) -> Any:
    """``text`` as a value of ``current``'s type, for the field at ``path``."""
    low = text.lower()
    try:
        if isinstance(current, bool):
            if low not in ("true", "false"):
                raise ValueError
            return low == "true"
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, tuple):
            parts = _items(text)
            kinds = {type(v) for v in current}
            if len(kinds) > 1 or (kinds and not kinds <= {int, float, str}):
                raise TypeError
            kind = next(iter(kinds), None)
            if kind is None:  # an empty default: numbers where they parse
                return tuple(_number(p) for p in parts)
            return tuple(_parse(path, p, kind()) for p in parts)
        if current is None:
            return None if low == "none" else _number(text)
    except ValueError:
        takes = {bool: "true or false", int: "an integer", float: "a number",
                 tuple: "a comma-separated list, e.g. 128,128"}  # fmt: skip
        raise DropstudyError(
            f"--set {path}={text}: {path} takes {takes.get(type(current), 'another value')} "
            f"(its value here: {current!r})"
        ) from None
    except TypeError:
        pass
    if dataclasses.is_dataclass(current):
        names = ", ".join(f"{path}.{f.name}" for f in dataclasses.fields(current))
        raise DropstudyError(f"--set {path}: it holds settings of its own; set one: {names}")
    raise DropstudyError(
        f"--set {path}: a {type(current).__name__} ({current!r}) cannot be set from the "
        "command line; edit the experiment's Config"
    )


def _items(text: str) -> list[str]:
    """A tuple's items: ``a,b``, ``(a, b)`` or ``[a, b]`` (one trailing comma allowed);
    empty for ``""`` or ``()``."""
    t = text.strip()
    if t and t[0] in "([":
        close = {"(": ")", "[": "]"}[t[0]]
        if not t.endswith(close):
            raise ValueError
        t = t[1:-1].strip()
    if any(c in t for c in "()[]"):
        raise ValueError
    parts = [p.strip() for p in t.split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # "8," : one item
    if parts == [""]:
        return []
    if "" in parts:
        raise ValueError
    return parts


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _set(obj: Any, parts: list[str], text: str, done: str) -> Any:
    """``obj`` with the field at ``parts`` set from ``text`` (``done``: the path so far)."""
    names = [f.name for f in dataclasses.fields(obj)]
    head, rest = parts[0], parts[1:]
    path = f"{done}.{head}" if done else head
    if head not in names:
        raise DropstudyError(
            f"--set {path}: {type(obj).__name__} has no field {head!r}; it has "
            f"{', '.join(sorted(names))}"
        )
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise DropstudyError(f"--set {path}.{'.'.join(rest)}: {path} holds no fields")
        value = _set(current, rest, text, path)
    else:
        value = _parse(path, text, current)
    return dataclasses.replace(obj, **{head: value})


def apply_sets(cfg: Any, sets: dict[str, str] | None) -> Any:
    """``cfg`` with each field of ``sets`` set from its text, checked as ``Config`` checks.

    Args:
      cfg: an experiment's configuration (a frozen dataclass).
      sets: ``{field: value text}`` (:func:`parse_sets`), a dotted field reaching into a
        nested configuration; None or empty for none.

    Returns:
      The new configuration (``cfg`` itself when ``sets`` is empty).

    Raises:
      DropstudyError: naming the field, for an unknown field, a value of the wrong type, a
        field another option sets (``seeds``: ``--seeds``), or a value the configuration's
        checks refuse.
    """
    for path, text in (sets or {}).items():
        if _seed_field(path):
            raise DropstudyError(f"--set {path}: it counts the seeds; use --seeds instead")
        cfg = _set(cfg, path.split("."), text, "")
    return cfg


def _get(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _text(value: Any) -> str:
    """A value in the spelling :func:`_parse` reads back to it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(_text(v) for v in value)
    return "none" if value is None else str(value)


def canonical(cfg: Any, sets: dict[str, str] | None) -> dict[str, str]:
    """``sets`` in one spelling per value, without the fields left at ``cfg``'s values.

    Args:
      cfg: the configuration the fields are set on (its defaults, quick and seeds applied).
      sets: ``{field: value text}`` as typed.

    Returns:
      ``{field: canonical text}`` of the fields whose value differs from ``cfg``'s, sorted:
      what results record, so that ``.20`` and ``0.2`` (or ``--set margin=0.1`` at its
      default and no ``--set``) make the same results in the same folder.

    Raises:
      DropstudyError: as :func:`apply_sets`.
    """
    new = apply_sets(cfg, sets)
    out = {p: _text(_get(new, p)) for p in sorted(sets or {}) if _get(new, p) != _get(cfg, p)}
    return out
