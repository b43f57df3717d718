"""The suite's compile flags: taken where XLA knows them, and a fallback where it does not."""

import xla_flags


def test_a_flag_xla_does_not_know_falls_back_to_level_0(monkeypatch):
    assert xla_flags.accepts(xla_flags.LEVEL_0)
    # XLA aborts on a flag it does not know: the probe says no rather than the suite dying
    assert not xla_flags.accepts("--xla_no_such_flag_in_any_version=true")
    monkeypatch.setattr(xla_flags, "FAST", "--xla_no_such_flag_in_any_version=true")
    monkeypatch.delenv("XLA_FLAGS")
    assert xla_flags.suite_flags() == xla_flags.LEVEL_0
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    assert xla_flags.suite_flags() == "--xla_force_host_platform_device_count=8"  # the user's
    monkeypatch.setenv("XLA_FLAGS", "")  # XLA's defaults, asked for (make test-slow)
    assert xla_flags.suite_flags() == ""
