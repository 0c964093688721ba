# mobile-engine: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install models test test-all demo bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(PY) -m mobile_engine zoo fetch

test: models
	$(PY) -m pytest

test-all: models
	$(PY) -m pytest -m ""

demo: models
	$(PY) -m demo_style_transfer --auto

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
