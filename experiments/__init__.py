"""The study: one module per claim, on top of the :mod:`dropstudy` library.

Each experiment module is shaped like a Flax example and defines:

* ``NAME``, ``CLAIM``;
* ``Config`` — a frozen dataclass with every size and hyperparameter, its quick (smoke
  test) variant in ``Config.QUICK``; :func:`.runner.config` builds it;
* ``plan(cfg, ds) -> {label: Cell}`` — the work, one resumable cell per configuration;
* ``summarise(cfg, raw) -> dict`` — intervals and verdicts (rules from :mod:`.stats`);
* ``figures(cfg, raw, results, ctx)`` — PNGs;
* ``section(results) -> (markdown, verdict)`` — the report's section, from the results file
  alone.

Run one with ``dropstudy run NAME`` or ``python -m dropstudy_experiments.NAME``; all with
``dropstudy run all``. The library (:mod:`dropstudy`) never imports this package.
"""
