# The two commands of the README:
#   make report   set up .venv (idempotent), run the whole analysis, build the HTML report
#   make test     set up .venv (idempotent), install Chromium if missing, run the test suite
PYTHON ?= python3
PROFILE ?= fast
VENV := .venv
# torch/torchvision pinned to releases that pip finds on this project's machines; override for others.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup report test clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet $(TORCH_SPEC)
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

report: setup
	$(VENV)/bin/python -m osteo_helpers run --profile $(PROFILE)

test: setup
	bash scripts/ensure_chromium.sh
	$(VENV)/bin/python -m pytest

clean-outputs:
	rm -rf outputs test-artifacts
