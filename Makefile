# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLE ?= examples/mnist_cnn.nr

.PHONY: run test lint docs clean

# Only what the main job needs: the package, and onnxruntime to run the compiled model.
$(VENV)/.run-stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[onnx]'
	touch $@

# The test dependencies on top (pytest, filecheck, hypothesis, ruff, torch==2.13.0).
$(VENV)/.test-stamp: $(VENV)/.run-stamp
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The main job: shape table and optimisation report, then compile every variant this machine
# can build into one artifact (build/model.ncz) and run it on a seeded random input, with the
# selection report: which variant runs where, and why each better one was skipped.
run: $(VENV)/.run-stamp
	$(VENV)/bin/neuralc check $(EXAMPLE) --report
	@mkdir -p build
	$(VENV)/bin/neuralc $(EXAMPLE) --target auto -o build/model.ncz
	$(VENV)/bin/neuralc run build/model.ncz --random --batch 2 -v

test: $(VENV)/.test-stamp
	$(PY) -m pytest -q -n auto

lint: $(VENV)/.test-stamp
	$(VENV)/bin/ruff check neuralc tests

docs: $(VENV)/.run-stamp
	$(VENV)/bin/neuralc layers --markdown > docs/layers.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
