"""The study commands' persistent cache of compiled programs: where it is, that it is used,
that a folder JAX was already given is kept, and that a loaded program changes no number."""

import json
import os
import subprocess
import sys
from pathlib import Path

from dropstudy_experiments import cli, common, compile_cache


def test_the_folder_is_per_machine_under_the_data_cache_or_the_users(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("DROPSTUDY_CACHE", str(tmp_path))
    here = compile_cache.cache_folder()
    assert here.parent == tmp_path / "xla" and len(here.name) == 12
    mine = common.machine()
    monkeypatch.setattr(common, "machine", lambda: {**mine, "xla_flags": "--xla_other=1"})
    assert compile_cache.cache_folder().parent == here.parent != compile_cache.cache_folder()
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))  # per machine there too
    assert compile_cache.cache_folder().parent == tmp_path / "mine"
    for on in ("1", "on", "TRUE", "yes", " "):
        monkeypatch.setenv(compile_cache.ENV, on)
        assert compile_cache.cache_folder().parent == tmp_path / "xla"
    for off in ("0", "off", "OFF", "false", "no", "none", "disable", "Disabled"):
        monkeypatch.setenv(compile_cache.ENV, off)
        assert compile_cache.cache_folder() is None


def test_the_commands_that_compile_use_it(monkeypatch, tmp_path):
    used = []
    monkeypatch.setattr(compile_cache, "use_compile_cache", lambda: used.append(1))
    for command in ("run", "replicate", "compare", "report"):
        monkeypatch.setitem(cli.COMMANDS, command, lambda args, parser=None: 0)
    for argv in (["run", "stayput"], ["replicate"], ["compare"], ["report"]):
        before = len(used)
        assert cli.main(argv) == 0
        assert len(used) - before == (argv[0] != "report"), argv


# One process: the cache is set up, a small training run compiles (or loads) its programs,
# and the result's bytes and the folder's entries are printed.
SCRIPT = """
import json, sys
from pathlib import Path
import jax, numpy as np
from dropstudy_experiments.compile_cache import use_compile_cache
from dropstudy.data import digits
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, train
hits, SAVED = [], "/jax/compilation_cache/compile_time_saved_sec"
jax.monitoring.register_event_duration_secs_listener(
    lambda e, d, **kw: hits.append(e) if e == SAVED else None)
folder = use_compile_cache()
d = digits()
v, _ = train(MLP(hidden=(8,), rate=0.5), jax.random.key(0), d.x_train[:200], d.y_train[:200],
             TrainConfig(steps=20, batch_size=32))
leaves = [np.asarray(x).tobytes().hex() for x in jax.tree_util.tree_leaves(v)]
n = len(list(folder.iterdir())) if folder is not None and folder.is_dir() else 0
jax_dir = jax.config.jax_compilation_cache_dir
jax_n = len(list(Path(jax_dir).iterdir())) if jax_dir and Path(jax_dir).is_dir() else 0
print(json.dumps({"folder": str(folder), "entries": n, "hits": len(hits), "leaves": leaves,
                  "jax_entries": jax_n}))
"""


def _run(env: dict) -> tuple[dict, str]:
    """SCRIPT in a fresh process, without the suite's cache folder, every program cached
    (the suite's threshold would skip programs that compile fast)."""
    keep = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env = {**keep, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **env}
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, text=True,
                       capture_output=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_programs_are_cached_and_a_loaded_one_changes_no_number(tmp_path):
    env = {"DROPSTUDY_CACHE": str(tmp_path), compile_cache.ENV: ""}
    (cold, _), (warm, _) = _run(env), _run(env)
    folder = Path(cold["folder"])
    assert folder.parent == tmp_path / "xla" and cold["entries"] > 0 and cold["hits"] == 0
    assert warm["hits"] > 0 and warm["entries"] == cold["entries"]  # loaded, none new
    assert warm["leaves"] == cold["leaves"]
    # a folder JAX was given already is kept ...
    given, err = _run({**env, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax"),
                       compile_cache.ENV: str(tmp_path / "ours")})  # fmt: skip
    assert given["folder"] == str(tmp_path / "jax") and given["entries"] > 0
    assert "JAX was given a cache folder already" in err and not (tmp_path / "ours").exists()
    # ... unless the cache is turned off
    off, _ = _run(
        {**env, compile_cache.ENV: "off", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "j2")}
    )
    assert off["folder"] == "None" and off["jax_entries"] == 0 and off["leaves"] == cold["leaves"]
    # a folder that cannot be written: warned about, and the run goes on without
    bad, err = _run({**env, compile_cache.ENV: "/proc/no-cache-here"})
    assert bad["folder"] == "None" and bad["leaves"] == cold["leaves"]
    assert "no compile cache" in err
