"""The C runtime (deepzip export --c) against PyTorch and onnxruntime, and its Cortex-M4 build.

    python bench/embedded.py [--files A.dzip B.dzip] [--blocks 5] [--block 50] [--no-cortex-m]

Per file, JSON lines: its bytes; the C runtime's init (decode + pack) time and arena (packed
weights, activations, init transient); batch-1 latency of the C runtime (computing from the
codes), PyTorch (dense, deepzip.load) and onnxruntime (the dense ONNX export), one thread each,
measured in alternating blocks of --block calls (--blocks rounds: C, torch, onnxruntime, C, …) so
that a load change on a shared machine hits all three; min and median over all calls, and each
runtime's block medians (their spread is the noise). Then the Cortex-M4 image: arm-none-eabi-size
(text, data, bss), QEMU's top-1 on ten test images against the desktop build's, instructions
executed per inference and for init (QEMU -icount; instructions, not cycles), the painted stack's
high-water mark and the static call-graph bound (gcc -fcallgraph-info). Compare figures only
within one run.

Defaults: the demo's out/lenet300/model.dzip and a best-lenet5 file
(bench/out/target/lenet5/seed-0/model.dzip, else out/best5-small/model.dzip: `deepzip compress
--recipe best-lenet5 --limit 12000 --out out/best5-small`, a reduced run).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "libdzip" / "runtime"
M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# Self-recursive functions and their deepest nesting: libdzip's numpy-style pairwise sum halves an
# alphabet of at most 2^16 counts down to blocks of 128, so 10 frames at most.
RECURSION = {"pairwise": 10}


def default_files() -> list[Path]:
    files = [ROOT / "out" / "lenet300" / "model.dzip"]
    target = ROOT / "bench" / "out" / "target" / "lenet5" / "seed-0" / "model.dzip"
    for p in (target, ROOT / "out" / "best5-small" / "model.dzip"):
        if p.exists():
            files.append(p)
            break
    return [p for p in files if p.exists()]


def test_inputs(path: Path, n: int) -> torch.Tensor:
    """Fashion-MNIST test images when the file was trained on it (and the set is installed), else noise."""
    import deepzip as dz
    from deepzip.export.c import input_shape_of

    shape = input_shape_of(path)
    try:
        x = dz.data.load("fashion-mnist", train=False, limit=n).x
        if tuple(x.shape[1:]) == tuple(shape):
            return x
    except Exception:  # the data set is not installed: the timings do not depend on the pixels
        pass
    return torch.randn(n, *shape)


def stats(times_ns: list[int], blocks: list[list[int]]) -> dict:
    us = [t / 1e3 for t in times_ns]
    return {"calls": len(us), "min_us": round(min(us), 2), "median_us": round(statistics.median(us), 2),
            "block_medians_us": [round(statistics.median(b) / 1e3, 2) for b in blocks]}


def bench_latency(path: Path, program: Path, x: torch.Tensor, n_blocks: int, block: int) -> dict:
    import deepzip as dz
    from deepzip.export import onnx_runner

    torch.set_num_threads(1)
    sample = x[:1].contiguous()
    with tempfile.NamedTemporaryFile(suffix=".f32", delete=False) as f:
        f.write(sample.numpy().astype(np.float32).tobytes())
        sample_file = f.name
    model = dz.load(path).eval()
    ort = onnx_runner(path, sample, threads=1)

    def run_c() -> list[int]:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        out = subprocess.run([str(program), "--bench", str(block + 5), sample_file], capture_output=True, text=True,
                             check=True, env=env).stdout
        return json.loads(out)[5:]  # the first calls warm the caches

    def timed(call) -> list[int]:
        for _ in range(5):
            call()
        out = []
        for _ in range(block):
            t = time.perf_counter_ns()
            call()
            out.append(time.perf_counter_ns() - t)
        return out

    def run_torch() -> list[int]:
        with torch.inference_mode():
            return timed(lambda: model(sample))

    runners = {"c_runtime": run_c, "torch_dense": run_torch, "onnxruntime_dense": lambda: timed(lambda: ort(sample))}
    blocks: dict[str, list[list[int]]] = {k: [] for k in runners}
    for _ in range(n_blocks):
        for name, run in runners.items():
            blocks[name].append(run())
    os.unlink(sample_file)
    return {name: stats([t for b in bs for t in b], bs) for name, bs in blocks.items()}


def stack_bound(directory: Path, roots: tuple[str, ...]) -> dict[str, int]:
    """The deepest path of static frames from each root, from gcc's -fcallgraph-info=su (libc's
    own frames, reached only on error paths through snprintf, are not in the graph)."""
    sources = [directory / "model.c", *sorted((directory / "dzip" / "src").glob("*.c")),
               *sorted((directory / "dzip" / "runtime" / "src").glob("*.c"))]
    nodes: dict[str, int | None] = {}
    edges: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(sources):
            include = [f"-I{directory}", f"-I{directory / 'dzip' / 'include'}", f"-I{directory / 'dzip' / 'runtime' / 'include'}"]
            subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-O2", *M4, "-ffunction-sections", "-fno-math-errno", *include,
                            "-fcallgraph-info=su", "-c", str(s), "-o", f"{tmp}/{i}.o"], check=True, cwd=tmp)
        for ci in Path(tmp).glob("*.ci"):
            for line in ci.read_text().splitlines():
                m = re.match(r'node: \{ title: "([^"]+)" label: "([^"]*)"', line)
                if m:
                    b = re.search(r"(\d+) bytes \(", m.group(2))
                    if b or m.group(1) not in nodes:
                        nodes[m.group(1)] = int(b.group(1)) if b else None
                m = re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line)
                if m:
                    edges.setdefault(m.group(1), set()).add(m.group(2))

    def depth(n: str, seen: frozenset) -> int:
        if n in seen:
            raise ValueError(f"recursion through {n}")
        name = n.rsplit(":", 1)[-1]
        frames = nodes.get(n) or 0
        if n in edges.get(n, ()):  # self-recursion: only where its depth is known
            frames *= RECURSION[name]
        return frames + max([depth(t, seen | {n}) for t in edges.get(n, ()) if t != n] + [0])

    return {r: depth(r, frozenset()) for r in roots}


def cortex_m(path: Path, x: torch.Tensor) -> dict:
    from deepzip.export import export_c

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "c"
        export_c(path, d, samples=x[:10], measure_code=False)
        subprocess.run(["make", "-s", "-C", str(d), "model", f"DZ_LIBS={RUNTIME / 'build' / 'libdzrt.a'}"], check=True)
        desktop = np.frombuffer(subprocess.run([str(d / "model")], input=x[:10].numpy().astype(np.float32).tobytes(),
                                               capture_output=True, check=True).stdout, np.float32).reshape(10, -1)
        m4_lib = RUNTIME / "build" / "m4" / "libdzrt.a"
        build = subprocess.run(["make", "-C", str(d), "m4", "RAM_BUDGET=65536", f"M4_LIBS={m4_lib}"],
                               capture_output=True, text=True)
        if build.returncode != 0:
            return {"error": build.stderr.strip().splitlines()[-1]}
        text, data, bss = (int(v) for v in re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\w+\s+model-m4.elf",
                                                     build.stdout, re.M).groups())
        run = subprocess.run(["make", "-s", "-C", str(d), "qemu"], capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
        tops = [int(t) for t in re.findall(r"top-1 (\d+)", run.stdout)]
        bits = [np.array([int(b, 16) for b in s.split()], np.uint32).view(np.float32)
                for s in re.findall(r"logits((?: [0-9a-f]{8})+)", run.stdout)]
        stack = re.search(r"stack used: (\d+) bytes", run.stdout)
        # -icount: SysTick ticks count instructions (cortex-m/main.c), calibrated by a known loop
        cal = re.search(r"systick: (\d+) ticks for (\d+) loop instructions", run.stdout)
        per_tick = int(cal.group(2)) / int(cal.group(1)) if cal else None
        ticks = [int(t) for t in re.findall(r" ticks (\d+)$", run.stdout, re.M)]
        init = re.search(r"init (\d+) ticks", run.stdout)
        bound = stack_bound(d, ("dzrt_init", "dzrt_run"))
        arena = int(re.search(r"#define DZ_MODEL_ARENA_BYTES (\d+)", (d / "model.h").read_text()).group(1))
        return {"text": text, "data": data, "bss": bss, "arena_bytes": arena, "stack_size_reserved": 4096,
                "stack_used_measured": int(stack.group(1)) if stack else None, "stack_bound_static": bound,
                "qemu_instructions_per_inference": round(statistics.median(ticks) * per_tick) if per_tick and ticks else None,
                "qemu_instructions_init": round(int(init.group(1)) * per_tick) if per_tick and init else None,
                "qemu_top1": tops, "desktop_top1": desktop.argmax(1).tolist(),
                "same_top1": tops == desktop.argmax(1).tolist(),
                "bit_identical_logits": len(bits) == 10 and all(np.array_equal(b, r) for b, r in zip(bits, desktop)),
                "init_line": next((line for line in run.stdout.splitlines() if "arena" in line), "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=None)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--no-cortex-m", action="store_true")
    args = ap.parse_args()
    from deepzip.export import export_c

    m4 = ["build/m4/libdzrt.a"] if shutil.which("arm-none-eabi-gcc") else []
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "all", *m4], check=True)
    files = args.files or default_files()
    if not files:
        sys.exit("no .dzip to measure: run `make demo` (out/lenet300/model.dzip) first")
    print(json.dumps({"bench": "embedded", "load_average": os.getloadavg(), "cpus": os.cpu_count(),
                      "calls_per_runtime": args.blocks * args.block}))
    for path in files:
        x = test_inputs(path, 10)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "c"
            info = export_c(path, d, measure_code=shutil.which("arm-none-eabi-gcc") is not None)
            subprocess.run(["make", "-s", "-C", str(d), "model", f"DZ_LIBS={RUNTIME / 'build' / 'libdzrt.a'}"], check=True)
            inits = [json.loads(subprocess.run([str(d / "model"), "--info"], capture_output=True, text=True, check=True
                                               ).stdout) for _ in range(5)]
            row = {"file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), "file_bytes": info.file_bytes,
                   "init_ms_min": round(min(i["init_ns"] for i in inits) / 1e6, 3),
                   "arena_bytes": info.arena_bytes, "packed_bytes": info.packed_bytes,
                   "activation_bytes": info.activation_bytes, "init_transient_bytes": info.init_bytes,
                   "init_peak_bytes": inits[0]["init_peak"], "ops_bytes": info.ops_bytes, "code_bytes_m4": info.code_bytes,
                   "layers": info.layers}
            print(json.dumps(row), flush=True)
            lat = bench_latency(path, d / "model", x, args.blocks, args.block)
            print(json.dumps({"file": row["file"], "latency_batch1": lat, "load_average": os.getloadavg()}), flush=True)
        if not args.no_cortex_m and shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
            print(json.dumps({"file": row["file"], "cortex_m4": cortex_m(path, x)}), flush=True)


if __name__ == "__main__":
    main()
