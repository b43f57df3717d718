"""Long averages in segments: bitwise the one long scan, progress, estimates, the bound."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import fast_mc as FM
from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy import progress as PG
from dropstudy import sharding as S
from dropstudy.average import kahan_add
from dropstudy.models import MLP
from dropstudy.validate import DropstudyError

X = jax.random.normal(jax.random.key(0), (9, 6))


def _body(carry, j):
    """A float sum whose rounding depends on the order of its terms."""
    return kahan_add(carry, (jnp.sin(j * 0.37 + jnp.arange(5.0)) * 1e3 / (j + 1.0),))


def _segment(calls):
    zero = ((jnp.zeros(5),), (jnp.zeros(5),))
    f = jax.jit(
        lambda c, first, steps: PG.masked_scan(_body, c, n_steps=97, first=first, steps=steps)
    )

    def segment(c, first, steps):
        calls.append((first, steps))
        return f(c, first, steps)

    return zero, segment


def test_segments_give_the_long_scan_bit_for_bit(monkeypatch):
    calls: list = []
    zero, segment = _segment(calls)
    whole = segment(zero, 0, 97)
    reference = jax.lax.scan(lambda c, j: (_body(c, j), None), zero, jnp.arange(97))[0]
    assert np.array_equal(whole[0][0], reference[0][0])
    for seconds in (1e-9, 1e-4, 10.0):  # from one step per segment to few segments
        monkeypatch.setattr(PG, "SEGMENT_SECONDS", seconds)
        calls.clear()
        out = PG.run(segment, zero, 97, desc="test", progress=None)  # no terminal: no bar
        assert np.array_equal(out[0][0], whole[0][0])
        firsts = [f for f, _ in calls]
        assert firsts[0] == 0 and sum(s for _, s in calls) == 97
        assert all(f + s == g for (f, s), g in zip(calls, firsts[1:], strict=False))
    # segments grow from one step when each takes less than SEGMENT_SECONDS
    assert calls[0][1] == calls[1][1] == 1 and len(calls) < 97
    calls.clear()  # without a bar the whole range is one segment
    out = PG.run(segment, zero, 97, desc="test", progress=False)
    assert calls == [(0, 97)] and np.array_equal(out[0][0], whole[0][0])


def test_progress_bar_and_estimate(monkeypatch, capsys, caplog):
    calls: list = []
    zero, segment = _segment(calls)
    PG.run(segment, zero, 97, desc="sums of sines", progress=True)
    assert "sums of sines" in capsys.readouterr().err
    PG.run(segment, zero, 97, desc="sums of sines", progress=False)
    assert capsys.readouterr().err == ""
    # None: a bar only on a terminal and when the estimate is long (and not hidden by the
    # command line's variable, which another test's --no-progress may have set)
    monkeypatch.delenv(PG.QUIET_VARIABLE, raising=False)
    monkeypatch.setattr(PG, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(PG, "MIN_TIMED", 0.0)
    monkeypatch.setattr(PG, "SEGMENT_SECONDS", 1e-9)
    PG.run(segment, zero, 97, desc="sums of sines", progress=None)
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal
    monkeypatch.setattr(PG.sys.stderr, "isatty", lambda: True, raising=False)
    with caplog.at_level(logging.INFO, logger="dropstudy"):
        PG.run(segment, zero, 97, desc="sums of sines", progress=None)
    assert "sums of sines" in capsys.readouterr().err
    assert "to go" in caplog.text


@pytest.mark.parametrize(
    "predictor, options",
    [
        ("exact", {}),  # factorised
        ("exact", {"method": "generic"}),
        ("mc", {"k": 50, "method": "dense"}),
        ("mc", {"k": 50, "method": "gathered"}),
    ],
)
@pytest.mark.parametrize("mesh", [False, True])
def test_every_long_path_shows_progress(predictor, options, mesh, capsys, monkeypatch):
    """Every path, on one device and dealt over a mesh: a bar with progress=True, none with
    False; one segment (False) and a step per segment give the same bits."""
    model = MLP(hidden=(5, 4), n_out=3, rate=0.5)
    v, _ = M.init(model, jax.random.key(1), X)
    if predictor == "mc":
        options = {**options, "key": jax.random.key(2)}
    m = S.mesh() if mesh else None
    quiet = P.predict(predictor, model, v, X, mesh=m, progress=False, **options)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(PG, "SEGMENT_SECONDS", 1e-9)  # one step per segment
    shown = P.predict(predictor, model, v, X, mesh=m, progress=True, **options)
    err = capsys.readouterr().err
    assert "subnetworks" in err and "subnetwork/s" in err  # the bar counts subnetworks
    assert np.array_equal(quiet.arithmetic, shown.arithmetic)
    assert np.array_equal(quiet.log_geometric, shown.log_geometric)


def test_force_must_be_a_bool():
    model = MLP(hidden=(5,), n_out=3, rate=0.5)
    v, _ = M.init(model, jax.random.key(1), X)
    with pytest.raises(DropstudyError, match="force must be True or False"):
        P.mc(model, v, X, key=jax.random.key(2), k=5, force="no")


def test_progress_must_be_a_bool_or_none():
    model = MLP(hidden=(5,), n_out=3, rate=0.5)
    v, _ = M.init(model, jax.random.key(1), X)
    with pytest.raises(DropstudyError, match="progress must be True, False or None"):
        P.exact(model, v, X, progress="yes")


def test_work_past_the_bound_is_refused_unless_forced(monkeypatch):
    model = MLP(hidden=(5, 4), n_out=3, rate=0.5)
    v, _ = M.init(model, jax.random.key(1), X)
    key = jax.random.key(2)
    monkeypatch.setattr(PG, "MAX_WORK", 2**9 * X.shape[0] - 1)  # exact: 2^9 subnetworks
    with pytest.raises(DropstudyError, match=r"512 subnetworks x 9 examples.*force=True"):
        P.exact(model, v, X)
    with pytest.raises(DropstudyError, match="use a smaller k"):
        P.mc(model, v, X, key=key, k=512)
    forced = P.exact(model, v, X, force=True)
    assert forced.count == 2**9
    assert P.mc(model, v, X, key=key, k=512, force=True).count == 512
    assert P.mc(model, v, X, key=key, k=511).count == 511  # at the bound: runs


def test_k_past_the_stream_is_refused():
    model = MLP(hidden=(5,), n_out=3, rate=0.5)
    v, _ = M.init(model, jax.random.key(1), X)
    for k in (2**30 + 1, 10**12):
        with pytest.raises(DropstudyError, match="past the stream's"):
            P.mc(model, v, X, key=jax.random.key(2), k=k, force=True)


@pytest.mark.slow  # about 25 s of compiling; make test-slow runs it
def test_a_segment_past_its_list_of_overflows_runs_again_in_halves(monkeypatch):
    """Most subnetworks past tiny bounds, and room to list 2 per segment: segments split
    until each lists its own, and the sums are the same bits as with room for all."""
    monkeypatch.setattr(FM, "Z_BOUND", -3.0)
    model = MLP(hidden=(16, 16), n_out=3, rate=0.5, input_rate=0.2)
    v, _ = M.init(model, jax.random.key(1), X)
    key = jax.random.key(2)
    dense = P.mc(model, v, X, key=key, k=40, method="dense")
    for mesh in (None, S.mesh()):
        jax.clear_caches()  # MAX_OVER is read when a kernel is traced
        roomy = P.mc(model, v, X, key=key, k=40, method="gathered", mesh=mesh)
        monkeypatch.setattr(FM, "MAX_OVER", 2)
        jax.clear_caches()
        tight = P.mc(model, v, X, key=key, k=40, method="gathered", mesh=mesh)
        monkeypatch.setattr(FM, "MAX_OVER", 64)
        assert np.array_equal(tight.arithmetic, roomy.arithmetic)
        np.testing.assert_allclose(tight.arithmetic, dense.arithmetic, rtol=1e-5, atol=1e-6)


def test_the_quiet_variable_hides_the_automatic_bar(monkeypatch, capsys):
    """DROPSTUDY_NO_PROGRESS (the command line's --no-progress and -q) hides the bar that
    progress=None would show; progress=True still shows one."""
    calls: list = []
    zero, segment = _segment(calls)
    monkeypatch.setattr(PG, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(PG, "MIN_TIMED", 0.0)
    monkeypatch.setattr(PG, "SEGMENT_SECONDS", 1e-9)
    monkeypatch.setattr(PG.sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setenv(PG.QUIET_VARIABLE, "1")
    PG.run(segment, zero, 97, desc="sums of sines", progress=None)
    assert capsys.readouterr().err == ""
    PG.run(segment, zero, 97, desc="sums of sines", progress=True)
    assert "sums of sines" in capsys.readouterr().err


def test_the_command_line_sets_the_quiet_variable(monkeypatch):
    from dropstudy_experiments import cli

    monkeypatch.setenv(PG.QUIET_VARIABLE, "")  # restored (unset) after the test
    monkeypatch.setitem(cli.COMMANDS, "compare", lambda args, parser: 0)
    assert cli.main(["compare"]) == 0 and not PG.os.environ[PG.QUIET_VARIABLE]
    assert cli.main(["compare", "--no-progress"]) == 0
    assert PG.os.environ[PG.QUIET_VARIABLE] == "1"
