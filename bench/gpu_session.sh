#!/usr/bin/env bash
# Everything issue #37 measures on a lent GPU, in one call of the device tool (15 minutes a task):
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                  --implementation cp --platform manylinux_2_17_x86_64 -d .whl constriction
#   the call:    run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=590)
# The machine's image holds torch, triton, numba and transformers; deepzip runs from src/, no
# install. Results land in $OUT: the card, the GPU tests' verdict, bench/gpu.py's JSON lines.
set -uo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/card.txt"
# The kernels compiled for the card, held to the same references as under the interpreter.
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_triton.py tests/test_cuda.py 2>&1 \
  | tail -20 | tee "$OUT/tests.txt"
# The 4096² layer at 4 and 3 bits, dense and 90 % pruned, batch 1-64; SmolLM2-135M's shapes generating.
timeout 330 python3 bench/gpu.py --standin --json "$OUT/gpu.jsonl" 2>&1 | tail -40
