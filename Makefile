# Two commands do all set-up on a fresh Debian machine (Python ≥ 3.10, no GPU):
#   make demo   compress LeNet-300-100 on Fashion-MNIST end to end
#   make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo demo-lenet5 test fmt docs toolchains bench clean

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

# libdzip (the C reader) is built with gcc and clang and fuzzed with clang's libFuzzer; the
# embedded runtime is cross-compiled for a Cortex-M4 and run on QEMU's mps2-an386 board; the
# browser build (clang's wasm32 back end, wasi-libc) and the docs site are checked in Debian's Chromium.
SYS_PKGS := gcc clang lld libclang-rt-14-dev wasi-libc libclang-rt-14-dev-wasm32 gcc-arm-none-eabi \
  libnewlib-arm-none-eabi qemu-system-arm chromium
toolchains:
	@command -v gcc >/dev/null && command -v ld.lld >/dev/null && command -v arm-none-eabi-gcc >/dev/null && \
	  command -v qemu-system-arm >/dev/null && command -v chromium >/dev/null && \
	  [ -f /usr/lib/wasm32-wasi/libc.a ] && ls /usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 && \
	  echo 'int LLVMFuzzerTestOneInput(void) { return 0; }' | clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null || \
	  $(SUDO) apt-get install -y -q $(SYS_PKGS) || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(SYS_PKGS))

# The linter (ruff) and the import-linter contract in pyproject.toml (the layers of DESIGN.md),
# libdzip's and the runtime's builds, then the suite (tests/c holds the C reader to the Python one
# and the exported models to PyTorch, on the desktop and on an emulated Cortex-M4).
test: setup toolchains
	$(VENV)/bin/ruff check src tests bench docs
	$(VENV)/bin/lint-imports
	$(MAKE) -C libdzip test
	$(MAKE) -C libdzip/runtime test
	DEEPZIP_REQUIRE_CORTEX_M=1 $(PY) -m pytest

# The documentation site, strict (a broken link or reference fails), into build/site.
docs: setup
	$(PY) docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# What ruff can fix by itself (imports, pyupgrade); the rest it reports.
fmt: setup
	$(VENV)/bin/ruff check --fix src tests bench docs

bench: setup $(FMNIST)
	$(PY) bench/codec.py

clean:
	rm -rf out build .pytest_cache
