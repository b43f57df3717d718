"""Results files: deterministic JSON, written atomically.

Floats are rounded to 10 significant digits so two runs of the same computation on the same
machine give byte-identical files, and NaN or inf is refused: no non-finite number reaches a
results file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dropstudy.io import atomic_write
from dropstudy.validate import DropstudyError


def clean(obj: Any, where: str = "") -> Any:
    """Plain JSON types, with floats rounded to 10 significant digits; NaN/inf refused.

    Dict keys become strings, tuples and arrays lists, numpy scalars Python numbers; any other
    object becomes its ``str``.

    Args:
      obj: any value.
      where: the path to ``obj`` within the value being cleaned, for the error message.

    Returns:
      The cleaned value.

    Raises:
      DropstudyError: if a float is NaN or infinite, naming where.
    """
    if isinstance(obj, dict):
        return {str(k): clean(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and not np.isscalar(obj)):
        return clean(np.asarray(obj).tolist(), where)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if not math.isfinite(f):
            raise DropstudyError(f"refusing to write non-finite value {f} at {where or 'top'}")
        return float(f"{f:.10g}")
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def dumps(obj: Any) -> str:
    """``obj`` as deterministic JSON text.

    Args:
      obj: any value; cleaned first (:func:`clean`).

    Returns:
      The JSON, keys sorted, indented by 1, ending in a newline.

    Raises:
      DropstudyError: if ``obj`` holds NaN or inf.
    """
    return json.dumps(clean(obj), indent=1, sort_keys=True) + "\n"


def write_json(path, obj: Any) -> Path:
    """Atomically write ``obj`` as deterministic JSON to ``path`` (parents created).

    Args:
      path: the file to write.
      obj: any value (:func:`dumps`).

    Returns:
      The path, as a ``Path``.

    Raises:
      DropstudyError: if ``obj`` holds NaN or inf.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, dumps(obj).encode())
    return p


def read_json(path) -> Any:
    """A JSON file's contents.

    Args:
      path: the file to read.

    Returns:
      The parsed value.

    Raises:
      DropstudyError: if the file does not exist (run the experiment first) or is not valid
        JSON.
    """
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise DropstudyError(f"{p} does not exist; run the experiment first") from None
    except json.JSONDecodeError as e:
        raise DropstudyError(f"{p} is not valid JSON ({e})") from None
