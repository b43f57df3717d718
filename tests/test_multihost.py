"""Two processes on this machine, joined by ``jax.distributed`` (CPU collectives, the
coordinator on the loopback address), split a seed sweep; the gathered result is bitwise
the one process with the same total device count computes, and so are the MC and exact
averages the predictors deal out over the same two-process mesh."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("multihost_worker.py")
TIMEOUT = 180  # seconds: a hung collective fails the test instead of stalling CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(procs):
    """Wait for every process; kill them all past TIMEOUT (a hung collective)."""
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"multi-process run hung past {TIMEOUT} s and was killed")
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]


def _spawn(args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    cmd = [sys.executable, str(WORKER), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow  # over 20 s; `make test-slow`
def test_two_processes_split_the_seeds_bitwise_as_one(tmp_path):
    coord = f"127.0.0.1:{_free_port()}"
    multi, single = tmp_path / "multi.npz", tmp_path / "single.npz"
    _run(
        [
            _spawn(
                [
                    "--out",
                    str(multi),
                    "--coordinator",
                    coord,
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ]
            )
            for i in range(2)
        ]
    )
    _run([_spawn(["--out", str(single), "--local-devices", "2"])])
    a, b = np.load(multi), np.load(single)
    assert int(a["devices"]) == int(b["devices"]) == 2
    keys = [k for k in a.files if k != "devices"]
    assert keys == [k for k in b.files if k != "devices"] and len(keys) > 2
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k])
    assert a[keys[0]].shape[0] == 3  # every seed, gathered from both processes
