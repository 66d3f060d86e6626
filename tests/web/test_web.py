"""`export --web` and libdzip/wasm in headless Chromium: the page's predictions held against
deepzip.load on the same 100 images, its screenshot, the canvas, and errors reaching JS as
libdzip's sentences.

The network is LeNet-5 trained briefly on scikit-learn's digits (always installed; upsampled to
28×28), pruned and weight-shared as best-lenet5 is. Logits match when max |js − torch| ≤ 1e-5 ×
max |torch logit| per image (tests/c/test_embedded.py's bound: float32 sums in another order).
Nothing here skips: without Chromium (Debian: chromium), Playwright (PyPI: playwright) or the
wasm toolchain (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32) the tests fail.
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import subprocess
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import deepzip as dz
from deepzip.errors import ConfigError
from deepzip.export import cgraph, cplan, export_c, export_web, oplist

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
BOUND = 1e-5


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):   # no line per request in the test's output
        pass


@pytest.fixture(scope="module")
def lenet5(tmp_path_factory):
    """best-lenet5's shape on digits: units removed, fc1 nearly all pruned, small codebooks."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = dz.data.load("digits", train=True, size=28)
        test = dz.data.load("digits", train=False, size=28, limit=100)
        model = dz.create_model("lenet5", in_channels=1, image_size=28, classes=10)
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(2):   # enough for real margins between the logits (random weights tie)
            for i in range(0, len(train.x), 64):
                opt.zero_grad()
                F.cross_entropy(model(train.x[i:i + 64]), train.y[i:i + 64]).backward()
                opt.step()
        model.eval()
        dz.prune_units_(model, {"conv2": 0.2, "fc1": 0.7})
        dz.prune_(model, sparsity={"conv1": 0.3, "conv2": 0.88, "fc1": 0.987, "fc2": 0.85})
        dz.share_weights_(model, bits={"conv": 5, "fc1": 3, "fc2": 4})
        path = tmp_path_factory.mktemp("lenet5") / "lenet5.dzip"
        dz.save(model, path)
    return path, test


@pytest.fixture(scope="module")
def site(lenet5, tmp_path_factory):
    """The export of the 100 test images, and a copy whose model.dzip has one byte flipped,
    served from 127.0.0.1 by a thread."""
    path, test = lenet5
    root = tmp_path_factory.mktemp("web")
    info = export_web(path, root / "ok", samples=test.x, labels=test.y)
    shutil.copytree(root / "ok", root / "bad")
    bad = bytearray((root / "ok" / "model.dzip").read_bytes())
    bad[len(bad) // 2] ^= 0x10
    (root / "bad" / "model.dzip").write_bytes(bad)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_port}", "root": root, "info": info}
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, through Playwright, with a fresh profile; fails without them."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    from playwright.sync_api import sync_playwright  # PyPI: playwright (its driver is in the wheel)

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("profile")), headless=True,
                                                       executable_path=CHROMIUM, args=ARGS,
                                                       viewport={"width": 1000, "height": 900})
        try:
            yield context
        finally:
            context.close()


def _open(browser, url: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.dzipPage && window.dzipPage.status !== 'loading'", timeout=30_000)
    assert not errors, errors
    return page


def _assert_matches(js: np.ndarray, ref: np.ndarray) -> None:
    scale = np.abs(ref).max(1)
    err = (np.abs(js - ref).max(1) / scale).max()
    top2 = np.sort(ref, 1)[:, -2:]
    near_tie = top2[:, 1] - top2[:, 0] <= BOUND * scale
    same = js.argmax(1) == ref.argmax(1)
    assert err <= BOUND, f"logits differ by {err:.2e} of the largest logit"
    assert (same | near_tie).all(), f"top-1 differs on {np.flatnonzero(~same & ~near_tie)[:10]}"


def test_page_predicts_as_deepzip_load_and_draws(lenet5, site, browser, tmp_path):
    path, test = lenet5
    page = _open(browser, site["url"] + "/ok/")
    state = page.evaluate("window.dzipPage")
    assert state["status"] == "ready", state.get("error")
    with torch.no_grad():
        ref = dz.load(path)(test.x).numpy()
    _assert_matches(np.array(state["logits"], np.float32), ref)
    assert state["right"] == int((ref.argmax(1) == test.y.numpy()).sum())
    assert state["fileBytes"] == path.stat().st_size and state["denseBytes"] > 10 * state["fileBytes"]
    assert page.locator("#strip figure").count() == 100
    assert f"{path.stat().st_size:,} bytes" in page.inner_text("#sizes")
    assert "decoded by libdzip in" in page.inner_text("#times")

    # A stroke on the canvas: the page's input is the downscaled drawing, its logits torch's on it.
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()   # viewport coordinates, as the mouse takes them
    page.mouse.move(box["x"] + 140, box["y"] + 50)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(box["x"] + 140 - 2 * k, box["y"] + 50 + 9 * k)
    page.mouse.up()
    page.wait_for_function("window.dzipPage.drawn !== null && window.dzipPage.drawn !== undefined")
    drawn = page.evaluate("window.dzipPage.drawn")
    x = torch.tensor(drawn["input"], dtype=torch.float32).view(1, 1, 28, 28)
    lo, hi = float(test.x.min()), float(test.x.max())
    assert (x > lo + 0.5 * (hi - lo)).sum() >= 15   # the stroke reached the input
    with torch.no_grad():
        _assert_matches(np.array([drawn["logits"]], np.float32), dz.load(path)(x).numpy())

    from PIL import Image

    shot = tmp_path / "page.png"
    page.evaluate("window.scrollTo(0, 0)")   # boxes then in page coordinates, as the full-page shot's
    page.screenshot(path=str(shot), full_page=True)
    img = np.asarray(Image.open(shot).convert("L"), np.float32)

    def region(selector: str) -> np.ndarray:
        b = page.locator(selector).bounding_box()
        return img[int(b["y"]):int(b["y"] + b["height"]), int(b["x"]):int(b["x"] + b["width"])]

    assert img.std() > 20   # not blank
    pad = region("#pad")
    assert pad.mean() < 60 and (pad > 200).mean() > 0.02   # black, with the white stroke drawn
    strip = region("#strip")
    assert strip.std() > 40 and (strip < 30).mean() > 0.1 and (strip > 150).mean() > 0.05  # digits on black
    page.close()


def test_js_tensors_are_read_tensors_bit_for_bit(lenet5, site, browser):
    """Dzip.open in every mode: dense values (views, and copies), and shared tensors as
    positions + codes + codebook, expanded by Tensor.dense()."""
    path, _ = lenet5
    page = browser.new_page()
    page.goto(site["url"] + "/ok/index.html")
    # The other modes are compared with the views in the page; the views' bytes come back as base64.
    got = page.evaluate("""async () => {
        const { Dzip } = await import("./dzip.js");
        const bytes = await (await fetch("model.dzip")).arrayBuffer();
        const b64 = (a) => { let s = ""; const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
                             for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode(...u.subarray(i, i + 8192));
                             return btoa(s); };
        const same = (a, b) => a.length === b.length && new Uint32Array(a.buffer, a.byteOffset, a.length)
            .every((v, i) => v === new Uint32Array(b.buffer, b.byteOffset, b.length)[i]);
        const views = await Dzip.open(bytes, { dense: true });
        const out = { tensors: views.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype,
                                                           values: b64(t.values) })) };
        const modes = [["copies", { dense: true, copy: true }], ["codes", {}], ["codes-copies", { copy: true }]];
        for (const [mode, options] of modes) {
            const f = await Dzip.open(bytes, options);
            out[mode] = f.tensors.map((t, i) => ({ encoding: t.encoding, same: same(t.dense(), views.tensors[i].values),
                kept: t.positions ? t.positions.length : null, codes: t.codes ? Math.max(...t.codes) : null,
                book: t.codebook ? t.codebook.length : null }));
        }
        return out;
    }""")
    page.close()
    ref = dz.dzip.read_tensors(path)
    assert [t["name"] for t in got["tensors"]] == list(ref)
    for t in got["tensors"]:
        want = ref[t["name"]].numpy()
        assert t["shape"] == list(want.shape) and t["dtype"] == "float32", t["name"]
        values = np.frombuffer(base64.b64decode(t["values"]), np.uint32)
        np.testing.assert_array_equal(values, want.reshape(-1).view(np.uint32), err_msg=t["name"])
    for mode in ("copies", "codes", "codes-copies"):
        for t, name in zip(got[mode], ref):
            assert t["same"], (mode, name)
            if mode.startswith("codes") and t["encoding"] == "shared":
                assert t["kept"] == int(np.count_nonzero(ref[name])) and 1 <= t["codes"] <= t["book"]
    assert any(t["encoding"] == "shared" for t in got["codes"])


def test_js_reads_scaled_rows_of_version_5_bit_for_bit(site, browser):
    """A post-training file (a scale per row): every mode gives read_tensors' values."""
    from deepzip.quantize import calibrate, quantize_pretrained_

    torch.manual_seed(0)
    model = dz.create_model("lenet300", image_size=8, classes=4)
    x = torch.randn(64, 1, 8, 8)
    quantize_pretrained_(model, calibrate(model, [x]), rel=0.3)
    path = site["root"] / "ok" / "scaled.dzip"
    dz.save(model, path)
    page = browser.new_page()
    page.goto(site["url"] + "/ok/index.html")
    got = page.evaluate("""async () => {
        const { Dzip } = await import("./dzip.js");
        const bytes = await (await fetch("scaled.dzip")).arrayBuffer();
        const out = {};
        for (const [mode, options] of [["dense", { dense: true }], ["codes", {}]]) {
            const f = await Dzip.open(bytes, options);
            out.version = f.version;
            out[mode] = f.tensors.map((t) => Array.from(new Uint32Array(t.dense().slice().buffer)));
        }
        return out;
    }""")
    page.close()
    ref = dz.dzip.read_tensors(path)
    assert got["version"] == 5
    for mode in ("dense", "codes"):
        for values, (name, want) in zip(got[mode], ref.items()):
            np.testing.assert_array_equal(np.array(values, np.uint32), want.numpy().reshape(-1).view(np.uint32),
                                          err_msg=f"{mode} {name}")


def _native_sentence(path: Path) -> str:
    """libdzip's message for a file it refuses, from the host build (dzip-dump: 'PATH: STATUS: sentence')."""
    done = subprocess.run([str(cplan.LIBDZIP / "runtime" / "build" / "dzip-dump"), str(path)], capture_output=True,
                          text=True)
    assert done.returncode != 0
    return done.stderr.strip().split("DZ_E_FORMAT: ", 1)[1]


def test_the_wasm_build_has_its_own_printf_exact(site):
    """`make -C libdzip/wasm test`: the module builds warning-free, and the printf that stands in
    for wasi-libc's formats every directive of the messages as the host's C library does."""
    done = subprocess.run(["make", "-C", str(cplan.LIBDZIP / "wasm"), "test"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "formats as the C library does" in done.stdout


def test_a_corrupt_file_fails_in_js_with_libdzips_sentence(lenet5, site, browser):
    bad = site["root"] / "bad" / "model.dzip"
    cut = site["root"] / "bad" / "cut.dzip"
    cut.write_bytes(bad.read_bytes()[:40])
    sentence = _native_sentence(bad)
    with pytest.raises(dz.errors.DzipFormatError) as python:
        dz.dzip.read_tensors(bad)
    assert str(python.value).endswith(sentence.removeprefix("the file "))   # the same verdict, worded alike

    page = _open(browser, site["url"] + "/bad/")
    assert page.evaluate("window.dzipPage.status") == "error"
    assert page.inner_text("#error") == sentence
    # The module on its own: Dzip.open and Dzip.model reject with Errors; the wasm has no imports.
    got = page.evaluate("""async () => {
        const { Dzip } = await import("./dzip.js");
        const grab = async (f) => { try { await f(); return null; } catch (e) { return [e.constructor.name, e.message]; } };
        const bytes = async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer());
        const bad = await bytes("model.dzip"), good = await bytes("../ok/model.dzip"), ops = await bytes("model.dzrt");
        const module = await WebAssembly.compile(await bytes("dzip.wasm"));
        return { open: await grab(() => Dzip.open(bad)), model: await grab(() => Dzip.model(bad, ops)),
                 cut: await grab(async () => Dzip.open(await bytes("cut.dzip"))),
                 imports: WebAssembly.Module.imports(module).length,
                 other: await grab(() => Dzip.model(good, ops.subarray(0, 40))),
                 input: await grab(async () => (await Dzip.model(good, ops)).predict(new Float32Array(3))) };
    }""")
    assert got["open"] == ["Error", sentence]
    assert got["model"] == ["Error", "The op list was planned for another .dzip file (its size or crc32 differs)."]
    assert got["cut"] == ["Error", _native_sentence(cut)]   # numbers formatted as the host's printf does
    assert got["other"] == ["Error", "The op list's length does not match its counts of ops and buffers."]
    assert got["input"] == ["Error", "the model takes 784 input values per sample, and 3 were given."]
    assert got["imports"] == 0   # no WASI, no glue: any browser instantiates it with {}
    page.close()


def test_the_op_list_is_model_c_s_records_byte_for_byte(lenet5, tmp_path):
    """oplist.py packs what csource.py spells as C: the same bytes as model.c's arrays compiled."""
    path, _ = lenet5
    export_c(path, tmp_path / "c", measure_code=False)
    plan = cplan.plan(cgraph.trace(dz.load(path), (1, 28, 28)), path)
    blob = oplist.op_list_bytes(plan, path.read_bytes())
    c = tmp_path / "c"
    (tmp_path / "dump.c").write_text('#include <stdio.h>\n#include "model.c"\n'
                                     "int main(void) { fwrite(bufs, sizeof bufs, 1, stdout); "
                                     "fwrite(ops, sizeof ops, 1, stdout); return 0; }\n")
    subprocess.run(["gcc", "-std=c99", "-O0", "-I", str(c), "-I", str(c / "dzip" / "include"), "-I",
                    str(c / "dzip" / "runtime" / "include"), str(tmp_path / "dump.c"),
                    str(cplan.LIBDZIP / "runtime" / "build" / "libdzrt.a"), "-lm", "-o", str(tmp_path / "dump")], check=True)
    native = subprocess.run([str(tmp_path / "dump")], capture_output=True, check=True).stdout
    assert blob[oplist.HEAD.size:] == native
    assert len(blob) == oplist.HEAD.size + len(native) and blob[:4] == b"DZRT"


class _Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return F.gelu(self.fc(torch.flatten(x, 1)))


def test_a_model_the_runtime_cannot_run_is_refused_and_nothing_is_written(tmp_path):
    m = _Gelu()
    path = tmp_path / "gelu.dzip"
    dz.save(m, path)
    with pytest.raises(ConfigError) as e:
        export_web(path, tmp_path / "web", model=_Gelu(), input_shape=(1, 4, 4))
    assert str(e.value).startswith("export --web cannot express node 'gelu'") and str(e.value).count(". ") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gelu.dzip"]   # no directory, no temporary left


def test_export_web_from_the_command_line(lenet5, tmp_path):
    from typer.testing import CliRunner

    from deepzip.cli import app

    path, _ = lenet5
    runner = CliRunner()
    both = runner.invoke(app, ["export", str(path), "--c", str(tmp_path / "c"), "--web", str(tmp_path / "w")])
    assert both.exit_code != 0 and "give one of --onnx FILE.onnx, --c DIR and --web DIR." in both.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "w").exists()
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mine.txt").write_text("keep")
    taken = runner.invoke(app, ["export", str(path), "--web", str(tmp_path / "w"), "--input-shape", "1,28,28"])
    assert taken.exit_code != 0 and (tmp_path / "w" / "mine.txt").read_text() == "keep"
    again = tmp_path / "again"
    for _ in range(2):   # the second replaces the first whole
        done = runner.invoke(app, ["export", str(path), "--web", str(again), "--input-shape", "1,28,28"])
        assert done.exit_code == 0, done.output
    page = json.loads((again / "page.json").read_text())
    assert page["samples"] is None and "records no data set" in page["no_samples"]
    assert {p.name for p in again.iterdir()} >= {"index.html", "page.js", "dzip.js", "dzip.wasm", "model.dzip", "model.dzrt"}


def test_js_reads_the_files_a_version_6_file_carries(site, browser):
    """Dzip.open gives the carried files (a tokenizer) byte for byte, as DzipReader.files does."""
    carried = {"tokenizer.json": '{"model": {"vocab": {"[PAD]": 0, "héllo": 1}}}'.encode() * 30,
               "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}', "empty.txt": b""}
    path = site["root"] / "ok" / "carried.dzip"
    dz.save(dz.create_model("lenet300", image_size=8, classes=4), path, files=carried)
    page = browser.new_page()
    page.goto(site["url"] + "/ok/index.html")
    got = page.evaluate("""async () => {
        const { Dzip } = await import("./dzip.js");
        const f = await Dzip.open(await (await fetch("carried.dzip")).arrayBuffer());
        return { version: f.version, files: Object.fromEntries(Object.entries(f.files).map(([k, v]) => [k, Array.from(v)])) };
    }""")
    page.close()
    assert got["version"] == 6
    assert {k: bytes(v) for k, v in got["files"].items()} == carried
