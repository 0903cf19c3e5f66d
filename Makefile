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

.PHONY: install lab test unit notebooks course clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pruning course)" >/dev/null
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# Unit tests, then every notebook under nbval (checked cells compared, the rest must run cleanly).
test: $(STAMP)
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider notebooks -q

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

# Execute every notebook headless, in order, writing outputs back and timing each one.
course: $(STAMP)
	$(BIN)/python -m pruning_utils.course notebooks

clean:
	rm -rf $(VENV) .cache .pytest_cache
