"""The robustness experiment's shifts."""

import numpy as np
import pytest
from dropstudy_experiments import robustness

from dropstudy.data import MNIST1D_ARGS


def test_shifts_do_what_they_say():
    x = np.ones((200, 40), np.float32)
    same = robustness.shifted(x, "noise", 0.0, 1.0, seed=0)
    np.testing.assert_array_equal(same, x)
    noisy = robustness.shifted(x, "noise", 0.5, 2.0, seed=0)
    assert abs(float((noisy - x).std()) - 1.0) < 0.05  # sd = strength x training sd
    missing = robustness.shifted(x, "missing", 0.4, 1.0, seed=0)
    assert abs(float((missing == 0).mean()) - 0.4) < 0.02
    occluded = robustness.shifted(x, "occlusion", 0.25, 1.0, seed=0)
    for row in occluded:  # one contiguous run of 10 zeros per example
        zeros = np.flatnonzero(row == 0)
        assert len(zeros) == 10 and zeros[-1] - zeros[0] == 9
    np.testing.assert_array_equal(occluded, robustness.shifted(x, "occlusion", 0.25, 1.0, 0))
    assert not np.array_equal(occluded, robustness.shifted(x, "occlusion", 0.25, 1.0, 1))
    with pytest.raises(ValueError, match="unknown shift"):
        robustness.shifted(x, "blur", 1.0, 1.0, 0)


def test_generator_shift_scales_the_generator_arguments():
    a = robustness.generator_args(2.0)
    assert a["scale_coeff"] == 2 * MNIST1D_ARGS["scale_coeff"]
    assert a["iid_noise_scale"] == 2 * MNIST1D_ARGS["iid_noise_scale"]
    assert a["max_translation"] == robustness.TRANSLATION_MAX  # 96 capped at the length


def test_a_regenerated_set_is_scored_against_its_own_labels(tmp_path, monkeypatch):
    from dropstudy.data import mnist1d

    monkeypatch.setenv("DROPSTUDY_CACHE", str(tmp_path))
    ds = mnist1d()
    sets = robustness.shift_sets(ds, {"generator": (1.5,), "missing": (0.2,)}, seed=0)
    ((x, y),) = sets["generator"]
    again = mnist1d(**robustness.generator_args(1.5))
    np.testing.assert_array_equal(y, again.y_test)
    np.testing.assert_array_equal(x, again.x_test)
    assert not np.array_equal(y, ds.y_test)  # the generator's shuffle moved with its arguments
    assert sets["missing"][0][1] is ds.y_test
