# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLE ?= examples/mnist_cnn.nr

.PHONY: run test lint docs clean edge-tools

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

# The edge tests also run aarch64 binaries under qemu-user and fuzz the runtime under valgrind
# and gcc's AddressSanitizer. Run as root with apt (CI), this installs what is missing; elsewhere
# those tests skip and say what to install (.ci/run makes a missing one a failure instead).
edge-tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  need=""; \
	  command -v qemu-aarch64 >/dev/null 2>&1 || need="$$need qemu-user"; \
	  command -v valgrind >/dev/null 2>&1 || need="$$need valgrind"; \
	  command -v gcc >/dev/null 2>&1 || need="$$need gcc libc6-dev"; \
	  if [ -n "$$need" ]; then \
	    echo "installing$$need (edge tests)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      --no-install-recommends $$need; \
	  fi; \
	fi

test: $(VENV)/.test-stamp edge-tools
	$(PY) -m pytest -q -n auto

lint: $(VENV)/.test-stamp
	$(VENV)/bin/ruff check neuralc tests

docs: $(VENV)/.run-stamp
	$(VENV)/bin/neuralc layers --markdown > docs/layers.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
