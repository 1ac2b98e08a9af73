# The README's two set-up commands: `make demo` and `make test`.
# Both create the project's virtual environment (.venv) and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch is installed first so that the unpinned `torch` in
# pyproject.toml is already satisfied and pip does not fetch a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: demo lint test test-long bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH_CPU)
	$(BIN)/python -m pip install --quiet -e '.[test,masks]'
	touch $@

demo: $(VENV)/.installed
	rm -rf demo-output
	$(BIN)/mrsynth demo --out demo-output

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q -m "not long"

test-long: $(VENV)/.installed
	MRSYNTH_RELIABILITY_REPORT=docs/reliability.md $(BIN)/python -m pytest -q -m "long or not slow" tests/test_fuzz.py tests/test_fuzz_settings.py tests/test_kill.py
	$(BIN)/python -m pytest -q -m long tests/test_masks.py

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) demo-output
