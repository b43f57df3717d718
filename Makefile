# dropstudy: every target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DROPSTUDY := $(VENV)/bin/dropstudy
STAMP  := $(VENV)/.installed-stamp
RESULTS ?= results
TORCH_VERSION ?= 2.13.0
# The primaries a second list of seeds could flip (near their level, or held) run again on
# seeds from SEED_START on each data set (`dropstudy replicate`, at the first list's tuned
# settings): the reports set their verdicts beside the first list's and name the fragile ones.
SEED_START ?= 100
SECOND := $(RESULTS)/from$(SEED_START)
SECOND_1D := $(RESULTS)/mnist1d/from$(SEED_START)
# in the recipe's shell, when it runs: after `dropstudy replicate` has written the folders
replicate_flags = $$(for f in $(1); do if ls $$f/*/results.json >/dev/null 2>&1; then echo --replicate $$f; fi; done)
REPLICATE_FLAG = $(call replicate_flags,$(SECOND) $(SECOND_1D))
QUICK := $(RESULTS)/quick
QUICK_1D := $(RESULTS)/mnist1d-quick
QUICK_FLAG = $(call replicate_flags,$(QUICK)/from$(SEED_START) $(QUICK_1D)/from$(SEED_START))

.PHONY: study study-quick test test-slow mutate bench lint format report docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# PyTorch's CPU build first, pinned, so that the extra below takes it instead of a
	# CUDA build of several GB; it runs the tutorial's reference code.
	$(PY) -m pip install -q 'torch==$(TORCH_VERSION)'
	$(PY) -m pip install -q -e '.[test,tensorboard,reference]'
	touch $(STAMP)

## The whole study at default scale on digits and on MNIST-1D, the primaries near their level
## again on a second list of seeds (each data set), then REPORT.md (with where the data sets
## agree and which verdicts the second lists flip) and MNIST-1D's own report.
study: $(STAMP)
	$(DROPSTUDY) run all --out $(RESULTS)
	$(DROPSTUDY) run all --dataset mnist1d --out $(RESULTS)/mnist1d
	$(DROPSTUDY) replicate --results $(RESULTS) --seed-start $(SEED_START) --out $(SECOND)
	$(DROPSTUDY) replicate --results $(RESULTS)/mnist1d --seed-start $(SEED_START) --out $(SECOND_1D)
	$(DROPSTUDY) report --results $(RESULTS)/mnist1d --compare $(RESULTS) $(REPLICATE_FLAG)
	$(DROPSTUDY) report --results $(RESULTS) --out REPORT.md --compare $(RESULTS)/mnist1d $(REPLICATE_FLAG) --readme README.md

## The whole study on both data sets shrunk to a smoke test, second lists of seeds included.
study-quick: $(STAMP)
	$(DROPSTUDY) run all --quick --out $(QUICK)
	$(DROPSTUDY) run all --quick --dataset mnist1d --out $(QUICK_1D)
	$(DROPSTUDY) replicate --results $(QUICK) --seed-start $(SEED_START) --out $(QUICK)/from$(SEED_START)
	$(DROPSTUDY) replicate --results $(QUICK_1D) --seed-start $(SEED_START) --out $(QUICK_1D)/from$(SEED_START)
	$(DROPSTUDY) report --results $(QUICK_1D) --compare $(QUICK) $(QUICK_FLAG)
	$(DROPSTUDY) report --results $(QUICK) --compare $(QUICK_1D) $(QUICK_FLAG)

report: $(STAMP)
	$(DROPSTUDY) report --results $(RESULTS)/mnist1d --compare $(RESULTS) $(REPLICATE_FLAG)
	$(DROPSTUDY) report --results $(RESULTS) --out REPORT.md --compare $(RESULTS)/mnist1d $(REPLICATE_FLAG) --readme README.md

## The default test suite (under 10 minutes on 2 cores), lint included.
test: $(STAMP)
	$(PY) -m ruff check dropstudy experiments tests benchmarks examples
	$(PY) -m pytest -q

## The slow tests, the bitwise checks at XLA's default level, and more property examples.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow
	# The default suite compiles at XLA's optimisation level 0 with its older CPU fusion
	# emitters (tests/xla_flags.py); its bitwise checks of training, selection, resuming and
	# devices run again here at XLA's defaults, the ones the study's commands compile with.
	XLA_FLAGS= $(PY) -m pytest -q tests/test_resume.py tests/test_two_devices.py \
		tests/test_train.py tests/test_selection.py tests/test_protocol.py
	# the property tests with more examples than the default suite's 2 per property
	DROPSTUDY_PROPERTY_EXAMPLES=24 $(PY) -m pytest -q tests/test_properties.py

## A small mutation run over the library's core (about 30 minutes on 2 cores): does the
## suite notice one changed operator or constant? See tests/mutate.py.
mutate: $(STAMP)
	$(PY) tests/mutate.py --per-module 4 --seed 0

## Benchmarks and kernel profiles, written to benchmarks/ (PyTorch comparisons need the
## bench extra: pip install -e '.[bench]', the CPU build; skipped without it).
bench: $(STAMP)
	$(PY) benchmarks/run.py --write benchmarks/RESULTS.md
	$(PY) benchmarks/run.py --only study --write benchmarks/STUDY.md
	$(PY) benchmarks/run.py --only training --write benchmarks/TRAINING.md
	$(PY) benchmarks/readme_table.py
	$(PY) benchmarks/readme_compare.py
	$(PY) benchmarks/kernels.py --write benchmarks/PROFILE.md

## The API reference, generated from the library's docstrings: docs/api/index.html.
docs: $(STAMP)
	$(PY) -m pdoc -o docs/api --docformat google dropstudy

lint: $(STAMP)
	$(PY) -m ruff check dropstudy experiments tests benchmarks examples
	$(PY) -m ruff format --check dropstudy experiments tests benchmarks examples

format: $(STAMP)
	$(PY) -m ruff format dropstudy experiments tests benchmarks examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(RESULTS)/quick
