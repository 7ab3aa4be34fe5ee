# Two entry points: `make repro` (the default pipeline) and `make test` (the suite).
# Both create .venv and install the project into it first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test data clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# Fashion-MNIST from Debian when we are root with apt; otherwise the fetch stage
# finds it elsewhere or prints exactly what to do.
data:
	@bash scripts/install-default-data.sh

repro: $(STAMP) data
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/install-vega.sh
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Two pytest workers, one test file at a time each (a file's module fixtures stay in one process):
# most of a Ray or DVC test's time is start-up and waiting, which the other worker fills.
test: $(STAMP)
	@bash scripts/install-chromium.sh
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/install-vega.sh
	$(BIN)/python -m pytest -n 2 --dist loadfile

clean-venv:
	rm -rf $(VENV)
