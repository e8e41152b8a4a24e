# Set-up and everyday commands. `make demo` and `make test` each create .venv and install clmae into it if needed.
PYTHON ?= python3
VENV ?= .venv
# The torch build to install; override for your platform, e.g. TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
# pytest-xdist workers of `make test` and `make test-fast`: one per core of a 2-core machine (`make test TEST_JOBS=8`).
TEST_JOBS ?= 2

.PHONY: demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/clmae demo --out demo

test: $(VENV)/.installed
	$(BIN)/ruff check clmae tests examples benchmarks tools hubconf.py
	$(BIN)/ruff format --check clmae tests examples benchmarks tools hubconf.py
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --maxschedchunk 2

# The everyday loop: every test that starts no process, reads no full data set and takes under a few seconds.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --maxschedchunk 2 -m "not slow and not integration"

lint: $(VENV)/.installed
	$(BIN)/ruff check clmae tests examples benchmarks tools hubconf.py

format: $(VENV)/.installed
	$(BIN)/ruff format clmae tests examples benchmarks tools hubconf.py
	$(BIN)/ruff check --fix clmae tests examples benchmarks tools hubconf.py

clean:
	rm -rf $(VENV) demo build *.egg-info .pytest_cache .ruff_cache
