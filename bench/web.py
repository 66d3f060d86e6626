"""Decode time of a .dzip in the browser (libdzip compiled to WebAssembly, in headless Chromium)
against deepzip's Python reader (deepzip.dzip.read_tensors), on the same files.

    python bench/large_model.py --dir /tmp/vgg --keep --no-compress   # VGG-16-sized files
    python bench/web.py out/lenet300/model.dzip /tmp/vgg/*.dzip --repeat 5

Per file, one JSON line: read_tensors' seconds (every tensor dense, one thread; a first pass
warms numba up and is not counted), and in the browser Dzip.open's seconds with every tensor
dense (read_tensors' work) and with shared tensors left as positions + codes (the default: what
a page that packs them, as dzrt does, needs). min and median of --repeat runs each; the file's
fetch is not timed, the module's compile once before (wasm_compile_ms).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WASM = ROOT / "libdzip" / "wasm"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

BENCH_JS = """async ([name, repeat]) => {
    const { Dzip } = await import("./dzip.js");
    let t = performance.now();
    await Dzip.load();
    const compile = performance.now() - t;
    const bytes = new Uint8Array(await (await fetch(name)).arrayBuffer());
    const runs = { dense: [], codes: [] };
    let weights = 0;
    for (let r = 0; r < repeat; r++) {
        for (const mode of ["dense", "codes"]) {
            t = performance.now();
            const f = await Dzip.open(bytes, { dense: mode === "dense" });
            runs[mode].push((performance.now() - t) / 1000);
            weights = f.tensors.reduce((n, x) => n + x.numel, 0);
        }
    }
    return { compile, runs, weights };
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4)}


def python_runs(path: Path, repeat: int) -> list[float]:
    from deepzip.dzip import read_tensors

    read_tensors(path)   # numba's kernels load or compile on the first call
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        read_tensors(path)
        runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, default=[ROOT / "out" / "lenet300" / "model.dzip"])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    subprocess.run(["make", "-s", "-C", str(WASM)], check=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for f in ("dzip.js", "build/dzip.wasm"):
            shutil.copy2(WASM / f, root / Path(f).name)
        (root / "index.html").write_text("<!doctype html><title>bench</title>")
        for i, path in enumerate(args.files):
            (root / f"{i}.dzip").symlink_to(path.resolve())
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=tmp))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(str(root / "profile"), headless=True,
                                                               executable_path=CHROMIUM, args=ARGS)
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
                version = page.evaluate("navigator.userAgent.match(/Chrome\\/([0-9.]+)/)[1]")
                for i, path in enumerate(args.files):
                    js = page.evaluate(BENCH_JS, [f"{i}.dzip", args.repeat])
                    py = python_runs(path, args.repeat)
                    print(json.dumps({
                        "file": str(path), "bytes": path.stat().st_size, "weights": js["weights"],
                        "python_read_tensors_s": _stats(py), "browser_dense_s": _stats(js["runs"]["dense"]),
                        "browser_codes_s": _stats(js["runs"]["codes"]), "wasm_compile_ms": round(js["compile"], 1),
                        "repeat": args.repeat, "browser": f"Chromium {version}"}), flush=True)
                context.close()
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
