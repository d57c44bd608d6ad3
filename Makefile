# The README's two commands: `make report` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# make report needs the package alone; the dev extra (pytest, ruff, JupyterLab) is for
# test, lint, format and lab. The run install skips pip's byte-compiling of every module of
# every dependency (~30 s here): the run compiles what it imports, once, into .venv/pycache,
# even where PYTHONDONTWRITEBYTECODE is set (each notebook kernel would compile it again).
RUN_STAMP := $(VENV)/.installed-run
RUN_ENV   := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache
STAMP     := $(VENV)/.installed-stamp
PARAMS ?= params/local.yaml
# The suite waits on loopback services far more than it computes: two workers halve its
# time on 2 cores (tests/conftest.py keeps each module, and the timing modules, on one worker).
TEST_WORKERS ?= 2
# Debian packages the tests need (servers they start on loopback, a headless browser).
TEST_DEBS  := redis-server postgresql openssl chromium
BENCH_DEBS := nginx wrk hey

.PHONY: report test lint format lab bench clean

$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

## make report: install, run the whole plan against the embedded target, print report.html
report: $(RUN_STAMP)
	$(RUN_ENV) $(BIN)/kubetest run --params $(PARAMS) $(if $(SESSION),--session $(SESSION),)

## make test: install, lint, check the formatting, and run the test suite
test: $(STAMP)
	@scripts/system-deps.sh $(TEST_DEBS)
	$(BIN)/ruff check kubetest tests bench
	$(BIN)/ruff format --check kubetest tests bench
	$(BIN)/pytest -q -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check kubetest tests bench
	$(BIN)/ruff format --check kubetest tests bench

## make format: format the code the way make test checks it
format: $(STAMP)
	$(BIN)/ruff check --fix kubetest tests bench
	$(BIN)/ruff format kubetest tests bench

## make lab: open the notebooks in JupyterLab
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

## make bench: the load-engine benchmark against wrk, hey and Locust (see README)
bench: $(STAMP)
	@scripts/system-deps.sh $(BENCH_DEBS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench.engine_bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
