"""dropstudy: is a network trained with dropout an ensemble of its subnetworks?

A subnetwork is a pure function of ``(params, x, masks)``; see :mod:`dropstudy.models`
(``MaskedDropout``, ``MLP``), :mod:`dropstudy.masks` (sampling, expectation, enumeration),
:mod:`dropstudy.predict` (weight scaling, Monte-Carlo and exact averages) and
:mod:`dropstudy.train` (one jitted ``lax.scan``, vmapped over seeds).
"""

__version__ = "0.1.0"
