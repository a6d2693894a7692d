# tracing-bench: `make demo` runs the whole pipeline on the embedded tiny model,
# `make test` runs the test suite. Both create .venv and install the package when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 resolves to a local CPU wheel on our build machines and to the normal
# PyPI build elsewhere; override with e.g. `make test TORCH_SPEC='torch>=2.1'`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test demo bench clean
DEMO_ARGS ?=

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/tracing-bench demo --out demo-out $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
