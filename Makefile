# The two commands of the README:
#   make report   set up .venv (idempotent), run the whole analysis, build the HTML report
#   make test     set up .venv (idempotent), install Chromium if missing, lint, run the test suite
# Other targets:
#   make test-fast    the developer loop: lint, then every test but the slow end-to-end ones
#   make constraints  rewrite constraints.txt from the current .venv (after a deliberate upgrade)
PYTHON ?= python3
PROFILE ?= fast
VENV ?= .venv
# The exact tested versions of every dependency, torch and torchvision included; pyproject.toml
# holds the ranges. `make setup CONSTRAINTS=/dev/null` resolves afresh within those ranges.
CONSTRAINTS ?= constraints.txt
PIP := $(VENV)/bin/python -m pip
STAMP := $(VENV)/.installed

.PHONY: setup report test test-fast lint constraints clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[test,lab]"
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

report: setup
	$(VENV)/bin/python -m osteo_helpers run --profile $(PROFILE)

# ruff, then the layers of the package (.importlinter, ARCHITECTURE.md): an upward import fails here
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# two workers (pytest-xdist), a test file on one worker, in the order of collection: the smoke run's maker
# (tests/test_pipeline.py) starts at once on one while the other takes the other files, and the files that
# read the run come last (tests/conftest.py)
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
# one BLAS thread per process: two workers on two cores, never more threads than cores
SINGLE_THREADED := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

test: lint
	bash scripts/ensure_chromium.sh
	$(SINGLE_THREADED) $(VENV)/bin/python -m pytest $(PYTEST_WORKERS)

test-fast: lint
	bash scripts/ensure_chromium.sh
	$(SINGLE_THREADED) $(VENV)/bin/python -m pytest $(PYTEST_WORKERS) -m "not slow"

constraints:
	{ echo "# The tested set: \`make constraints\` writes this file from $(VENV) (pip freeze --all --exclude-editable)."; \
	  $(PIP) freeze --all --exclude-editable; } > constraints.txt

clean-outputs:
	rm -rf outputs test-artifacts
