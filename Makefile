# mobile-engine: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install models test test-all demo bench clean test-arm

# NOTE: opencv-python-headless and opencv-python install the same cv2 folder: removing one after
# installing the other breaks cv2, so headless goes first and opencv-python is reinstalled if
# both were there.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -m pip show -q opencv-python-headless 2>/dev/null; then \
		echo "replacing opencv-python-headless with opencv-python (the demo's window)"; \
		$(PY) -m pip uninstall -q -y opencv-python-headless opencv-python; fi
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(PY) -m mobile_engine zoo fetch

test: models
	$(PY) -m pytest

test-all: models
	$(PY) -m pytest -m ""

# The live demo: a window where there is a display (q quits), else a short headless run that
# writes out.mp4; the first start compiles and calibrates the int8 plan (cached in
# ~/.cache/mobile-engine/plans) and its kernels, with progress. Options: DEMO_ARGS="--fp32".
DEMO_ARGS ?=
demo: models
	$(PY) -m demo_style_transfer --auto $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The suite on emulated aarch64 cores (Cortex-A53, A72, A76) and the NEON/sdot instruction check
# (tests/arm/run.py). Sets up qemu-user-static, an arm64 Debian userland and the aarch64 wheels
# on first use, cached in ~/.cache/mobile-engine/arm (MOBILE_ENGINE_HOME). Emulated timings are
# never reported: latency on ARM is measured on real boards. The kernel tests run on every
# core; ARM_FLAGS="--full cortex-a76" runs them on the A76 only (run.py --help).
ARM_FLAGS ?=
test-arm: models
	tests/arm/setup.sh $(PY)
	$(PY) tests/arm/run.py $(ARM_FLAGS)
