# Two commands from a fresh clone:  make lab   |   make test
# Each creates .venv and installs the course (pinned by constraints.txt) when needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CELL_TIMEOUT ?= 600

# Datasets and cached checkpoints live inside the checkout unless you say otherwise.
export PRUNING_CACHE_DIR ?= $(CURDIR)/.cache
export PRUNING_PROFILE   ?= quick

.PHONY: install lab test unit e2e notebooks course smoke clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pruning course)" >/dev/null
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# Unit tests, then every notebook under nbval (checked cells compared, the rest must run cleanly; two
# notebooks at a time, one torch thread each), then every notebook on the smoke profile (make smoke),
# then notebook 00 run in JupyterLab in a headless browser (make e2e).
test: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not e2e"
	$(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) \
	  -p no:cacheprovider notebooks -q
	$(MAKE) --no-print-directory smoke
	$(MAKE) --no-print-directory e2e

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not e2e"

# End to end: JupyterLab serves a copy of the notebooks, headless Debian Chromium (driven by playwright,
# which downloads no browser) runs every cell of notebook 00 and checks the plots. Installs chromium
# with apt-get when it is missing; here a missing browser is a failure, not a skip.
SUDO := $(if $(filter 0,$(shell id -u)),,$(shell command -v sudo 2>/dev/null))

e2e: $(STAMP)
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
	PRUNING_E2E_REQUIRED=1 $(BIN)/python -m pytest tests/e2e -q -m e2e -p no:cacheprovider

# Execute every notebook headless, in order, writing outputs back and timing each one.
course: $(STAMP)
	$(BIN)/python -m pruning_utils.course notebooks --results results

# The gpu profile's code path at toy size (generated CIFAR-10-format data, ResNet-8, bf16 autocast, the
# data on the device) through every notebook and solution, nothing saved: each must run to the end; the
# claims, which toy sizes cannot support, print as not checked.
smoke: $(STAMP)
	PRUNING_PROFILE=smoke PRUNING_CACHE_DIR=$(CURDIR)/.cache/smoke $(BIN)/python -m pruning_utils.course \
	  --check-only --jobs 2 notebooks notebooks/solutions

clean:
	rm -rf $(VENV) .cache .pytest_cache
