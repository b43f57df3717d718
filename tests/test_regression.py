"""The regression experiment's pieces: splits, weight decay, log-likelihood."""

import numpy as np
from dropstudy_experiments import regression
from scipy.stats import norm


def test_splits_and_standardisation():
    tr, te = regression.split(442, 0)
    assert len(tr) == 398 and len(te) == 44 and not set(tr) & set(te)
    assert not np.array_equal(regression.split(442, 1)[1], te)
    x = np.random.default_rng(0).normal(3, 2, (100, 2))
    (a, b), mean, sd = regression.standardise(x[:80], x[80:])
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(b, (x[80:] - mean) / sd)


def test_log_likelihood_of_one_sample_is_the_gaussian_density():
    rng = np.random.default_rng(0)
    y, pred, tau = rng.normal(size=30), rng.normal(size=30), 2.5
    want = norm.logpdf(y, loc=pred, scale=tau**-0.5).mean()
    np.testing.assert_allclose(regression.log_likelihood(pred[None], y, tau), want, rtol=1e-10)
    # two identical samples: the same mixture
    np.testing.assert_allclose(regression.log_likelihood(np.stack([pred, pred]), y, tau), want)


def test_weight_decay_is_theirs():
    assert regression.weight_decay(0.05, 100, 2.0) == 1e-4 * 0.95 / 400
    cfg = regression.train_config(40, 128, 1e-3, 398)
    assert cfg.steps == 40 * 4 and cfg.task == "regression"


def test_split_fractions_and_length_scale_are_config():
    tr, te = regression.split(442, 0, test_fraction=0.25)
    assert len(te) == 110 and len(tr) == 332
    assert np.isclose(regression.weight_decay(0.05, 100, 2.0, length_scale=0.1), 1e-2 * 0.95 / 400)
    cfg = regression.Config(length_scale=0.1, test_fraction=0.25, validation_fraction=0.5)
    kw = next(iter(regression.plan(cfg).values())).kwargs
    assert (kw["length_scale"], kw["test_fraction"], kw["validation_fraction"]) == (0.1, 0.25, 0.5)
