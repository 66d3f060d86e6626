# Two commands do all set-up on a fresh Debian machine (Python ≥ 3.10, no GPU):
#   make demo   compress LeNet-300-100 on Fashion-MNIST end to end
#   make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo demo-lenet5 test bench clean

setup: $(VENV)/.installed

# torch is pinned and installed first: the CPU wheel satisfies the package's torch range, so
# pip never resolves an unpinned torch to the multi-gigabyte CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

$(FMNIST):
	$(SUDO) apt-get install -y -q dataset-fashion-mnist || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)

demo: setup $(FMNIST)
	$(VENV)/bin/deepzip compress --model lenet300 --data fashion-mnist --out out/lenet300

demo-lenet5: setup $(FMNIST)
	$(VENV)/bin/deepzip compress --model lenet5 --data fashion-mnist --out out/lenet5

# The import-linter contract in pyproject.toml (the layers of DESIGN.md), then the suite.
test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: setup $(FMNIST)
	$(PY) bench/codec.py

clean:
	rm -rf out .pytest_cache
