"""The study: one module per claim, on top of the :mod:`dropstudy` library.

Each experiment module is shaped like a Flax example and defines:

* ``NAME``, ``CLAIM``;
* ``Config`` — a frozen dataclass with every size and hyperparameter, its quick (smoke
  test) variant in ``Config.QUICK``; :func:`.runner.config` builds it;
* ``plan(cfg, ds) -> {label: Cell}`` — the work, one resumable cell per configuration;
* ``summarise(cfg, raw) -> dict`` — intervals and tests. Its ``tests`` maps a name to a
  test from :mod:`.stats` (:func:`~.stats.direction`, :func:`~.stats.equivalence` or
  :func:`~.stats.exact_check`), labelled with ``what`` (the quantity in words) and
  ``predictor`` (a key of :data:`.common.PREDICTOR_NAMES`); ``primary`` names the one test
  that judges the claim (``Config.primary``, fixed before the run); no prose;

and its report lives beside it in ``sections/NAME.py``:

* ``figures(cfg, raw, results, ctx)`` — PNGs;
* ``section(results) -> markdown`` — the report's section, from the results file alone; the
  report adds the tests table and decides the verdict (Holm across the primaries);
* ``findings(results) -> [sentence]`` (optional) — what a reader must know beyond the
  tests, computed from the results file when the report is written (with those of
  :func:`.common.all_findings` that every experiment shares: a test that depends on the
  predictor, an equivalence that is inconclusive with a real difference).

A cell's cache key covers the code the cell can run and nothing else
(:mod:`.codekey`): editing a section, a figure, a summary rule or a docstring reuses every
cell, editing code a cell runs recomputes it.

Run one with ``dropstudy run NAME`` or ``python -m dropstudy_experiments NAME``; all with
``dropstudy run all``. The library (:mod:`dropstudy`) never imports this package.
"""
