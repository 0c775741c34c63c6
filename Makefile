# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per install, redone when the package metadata changes: the demo
# needs the package alone, the tests its `test` extra.
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
# Byte-compiled once, on both cores, after each install: with
# PYTHONDONTWRITEBYTECODE=1 (set on this project's machines) no import caches
# anything, so every process (each test worker, subprocess and notebook kernel)
# compiled TensorFlow, Keras and JAX again: `import tensorflow` took 20 s, 7 s
# with the compiled files (both with the other core busy). pip's own
# compilation is serial, hence --no-compile and compileall -j 0; the
# packages' own test folders, never imported here, are left out.
COMPILE := $(PY) -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib keras_net2net
PYTEST_ARGS ?=
PYTEST := TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -n 2 --dist=worksteal -q
# The core growth tests, for iteration (`make test-fast`, ~3 minutes on 2
# cores); `make test` runs everything, these included.
FAST_TESTS := tests/test_widen.py tests/test_deepen.py tests/test_carry.py \
	tests/test_carry_objects.py tests/test_errors.py tests/test_attention.py \
	tests/test_recurrent.py tests/test_norm_padding.py tests/test_tensor_ops.py \
	tests/test_dict_io.py tests/test_deepen_blocks.py tests/test_verify_second_look.py \
	tests/test_teacher_unchanged.py tests/bin/test_console.py

.PHONY: demo test test-fast venv clean

venv: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(DEMO_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --no-compile -e .
	$(COMPILE)
	touch $@

# The test extra holds everything the demo needs, so it stamps both.
$(TEST_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --no-compile -e '.[test]'
	$(COMPILE)
	touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m keras_net2net.bin.demo --model_dir=runs/demo

test: $(TEST_STAMP)
	$(PYTEST) $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)
	$(PYTEST) $(FAST_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache .hypothesis
