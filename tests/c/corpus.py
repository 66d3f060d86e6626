"""The .dzip files the C reader is held against: written now by deepzip.save, one per feature of
the format a reader must get right, plus the committed fixtures of versions 1 and 3.

`build(directory)` writes them and returns {label: path}; each label says what the file holds.
Models are the registry's at the tiny sizes tests/models/test_zoo.py builds; weights are seeded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import deepzip as dz

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CODERS = ("huffman", "ans", "context", "auto")
# The zoo's tiny variants (tests/models/test_zoo.py): same layers, few channels.
TINY = {
    "lenet300": {"image_size": 8, "classes": 4}, "lenet5": {}, "lenet5-fire": {},
    "vgg16": {"width": 0.125}, "vgg19": {"width": 0.125}, "vgg16-fire": {"width": 0.125},
    "resnet18": {"width": 0.125}, "resnet50": {"width": 0.125},
    "densenet100": {"depth": 10, "growth": 4}, "squeezenet": {"width": 0.125},
}


def _zoo(name: str) -> nn.Module:
    torch.manual_seed(sum(map(ord, name)))
    model = dz.create_model(name, in_channels=1 if name.startswith("lenet") else 3,
                            image_size=TINY[name].get("image_size", 28 if name.startswith("lenet") else 32),
                            **{k: v for k, v in TINY[name].items() if k != "image_size"})
    dz.prune_(model, sparsity={"conv": 0.6, "linear": 0.9})
    dz.share_weights_(model, bits={"conv": 5, "linear": 4})
    return model


class Tied(nn.Module):
    """An output layer tied to the embedding (stored once: an alias entry), and buffers of every dtype."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.mid = nn.Linear(8, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.emb.weight
        for i, dtype in enumerate((torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                                   torch.int16, torch.int8, torch.uint8, torch.bool)):
            values = torch.arange(-5, 7, dtype=torch.float64).reshape(3, 4) * (i + 1.5)
            self.register_buffer(f"b_{str(dtype)[6:]}", values.to(dtype) if dtype != torch.bool else values > 0)
        self.register_buffer("scalar", torch.tensor(3.25))
        self.register_buffer("empty", torch.zeros(0, 5))


def _left_context() -> nn.Module:
    """tests/test_format.py's file: fc1's codes take left contexts (version 4), live rows, a
    float16 codebook, split biases."""
    torch.manual_seed(0)
    model = dz.create_model("lenet300", image_size=8, classes=4)
    with torch.no_grad():
        w = model.fc1.weight
        w.copy_(w.abs() * torch.where((torch.arange(w.shape[1]) // 8 + torch.arange(w.shape[0])[:, None]) % 2 == 0, 1, -1))
    dz.prune_units_(model, {"fc1": 0.5})
    dz.prune_(model, sparsity={"fc1": 0.9, "fc2": 0.5})
    dz.share_weights_(model, bits={"fc1": 4})
    dz.round_(model, names=("weight_centroids",))
    return model


def _scaled() -> dict[str, tuple[nn.Module, dict]]:
    """Version 5: rows scaled. A post-training file (levels × float16 steps, context coded), and
    k-means codes given float32 scales on live rows × columns (positions → rows through bitmaps)."""
    from deepzip.quantize import calibrate, quantize_pretrained_
    from deepzip.reparam import sharing

    torch.manual_seed(5)
    m = dz.create_model("lenet300", image_size=8, classes=4)
    x = torch.randn(64, 1, 8, 8)
    quantize_pretrained_(m, calibrate(m, [x[:32], x[32:]]), rel=0.3)
    out = {"scaled-ptq": (m, {"coder": "context"})}
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_units_(m, {"fc1": 0.5})
    dz.prune_(m, sparsity={"fc1": 0.6, "fc2": 0.5})
    dz.share_weights_(m, bits=3)
    for layer in (m.fc1, m.fc2):
        sharing(layer).scales = torch.rand(layer.weight.shape[0]) + 0.5  # not float16 values: stored float32
    out["scaled-live-huffman"] = (m, {"coder": "huffman"})
    # Version 6: files carried beside the tensors (a tokenizer), one in a folder, one empty.
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_(m, sparsity=0.5)
    dz.share_weights_(m, bits=3)
    files = {"tokenizer.json": b'{"model": {"vocab": {"[PAD]": 0, "hello": 1}}}' * 40,
             "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}', "empty.txt": b""}
    out["carried-files"] = (m, {"coder": "ans", "files": files})
    return out


def _features() -> dict[str, tuple[nn.Module, dict]]:
    """(model, save options) per feature beyond the zoo's pruned + shared files."""
    out = {}
    torch.manual_seed(1)
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_(m, sparsity={"fc1": 0.95, "fc2": 0.8, "fc3": 0.3})
    out["sparse-float32"] = (m, {"coder": "huffman"})               # pruned, not shared: sparse entries
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_(m, sparsity=0.9)
    dz.round_(m, names=("weight", "bias"))
    out["sparse-float16"] = (m, {"coder": "ans"})                    # sparse values and raw biases stored float16
    m = dz.create_model("lenet5")
    dz.prune_(m, sparsity=0.8)
    dz.share_weights_(m, bits={"conv": 3, "linear": 2})
    dz.round_(m, names=("weight_centroids",))
    out["codebook-float16"] = (m, {"coder": "auto"})
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_units_(m, {"fc1": 0.5, "fc2": 0.4})
    dz.prune_(m, sparsity={"fc1": 0.5, "fc2": 0.5})
    dz.share_weights_(m, bits=3)
    for coder in ("huffman", "context"):
        out[f"live-{coder}"] = (m, {"coder": coder})                # live rows x cols layouts
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_units_(m, {"fc1": 0.5})
    dz.prune_(m, sparsity={"fc1": 0.6})
    out["live-sparse"] = (m, {"coder": "ans"})
    out["index-bits-auto"] = (_zoo("lenet300"), {"coder": "huffman", "index_bits": "auto"})
    out["index-bits-1"] = (_zoo("lenet300"), {"coder": "ans", "index_bits": 1})
    out["index-bits-16"] = (_zoo("lenet300"), {"coder": "huffman", "index_bits": 16})
    out["tied-and-dtypes"] = (Tied(), {"coder": "auto"})
    m = dz.create_model("resnet18", in_channels=3, image_size=32, width=0.125)
    dz.prune_channels_(m, 0.5, example_inputs=torch.randn(1, 3, 32, 32))
    dz.prune_(m, sparsity=0.7)
    dz.share_weights_(m, bits=4)
    out["channels-widths"] = (m, {"coder": "context"})               # widths record, int64 BN buffers
    out["context-left-v4"] = (_left_context(), {"coder": "context"})
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_(m, sparsity=1.0)
    dz.share_weights_(m, bits=2)
    out["all-pruned"] = (m, {"coder": "auto"})                        # K = 0 codebooks
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_(m, sparsity=0.5)
    dz.share_weights_(m, bits=1)
    out["one-centroid"] = (m, {"coder": "huffman"})                   # one-symbol code tables
    return {**out, **_scaled()}


FEATURES = ("sparse-float32", "sparse-float16", "codebook-float16", "live-huffman", "live-context", "live-sparse",
            "index-bits-auto", "index-bits-1", "index-bits-16", "tied-and-dtypes", "channels-widths", "context-left-v4",
            "all-pruned", "one-centroid", "scaled-ptq", "scaled-live-huffman", "carried-files")
CRAFTED = ("crafted-wide-alphabets", "crafted-ans-huffman-edges", "crafted-empty-scalar-names", "crafted-rows-past-2^24")
LABELS = (tuple(f"fixture-{p.stem}" for p in sorted(FIXTURES.glob("*.dzip"))) + FEATURES
          + tuple(f"{name}-{coder}" for name in TINY for coder in CODERS) + CRAFTED + ("v2-widths", "v1-reversed"))


def build(directory: Path, zoo: bool = True) -> dict[str, Path]:
    """Write every file; returns {label: path} in LABELS order, fixtures included."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {f"fixture-{p.stem}": p for p in sorted(FIXTURES.glob("*.dzip"))}
    for label, (model, options) in _features().items():
        files[label] = directory / f"{label}.dzip"
        dz.save(model, files[label], **options)
    for name in TINY if zoo else ():
        model = _zoo(name)
        for coder in CODERS:
            files[f"{name}-{coder}"] = directory / f"{name}-{coder}.dzip"
            dz.save(model, files[f"{name}-{coder}"], coder=coder)
    files.update(crafted(directory))
    # Versions 1 and 2 as deepzip wrote them before the lean container (version 2: a widths record)
    model = _features()["channels-widths"][0]
    dz.save(model, directory / "widths-ans.dzip", coder="ans")
    files["v2-widths"] = to_version(directory / "widths-ans.dzip", directory / "v2-widths.dzip", 2)
    files["v1-reversed"] = to_version(files["sparse-float32"], directory / "v1-reversed.dzip", 1, reverse=True)
    assert not zoo or tuple(files) == LABELS, set(files) ^ set(LABELS)
    return files


# ---- files deepzip.save does not write but the format allows (and deepzip reads)

def to_version(path: Path, out: Path, version: int, reverse: bool = False) -> Path:
    """A version 3 file without context streams laid out as version 1 or 2: per-stream offsets
    and crc32, code tables base64 in the header; `reverse` stores the streams in reverse order
    (offsets say where each is, so order is free)."""
    import base64
    import zlib

    from dzip_tools import join, split

    from deepzip.dzip.container import leb128, read_leb128

    header, payload = split(path.read_bytes())
    pieces = []
    for s in header["streams"]:
        data = payload[s["offset"]:s["offset"] + s["length"]]
        if s["coder"] in ("huffman", "ans"):
            table, used = read_leb128(data, s["alphabet"], "table")
            s["table"] = base64.b64encode(leb128(table)).decode()
            data = data[used:]
        pieces.append(data)
    body = b""
    for i in (reversed(range(len(pieces))) if reverse else range(len(pieces))):
        s = header["streams"][i]
        s.update(offset=len(body), length=len(pieces[i]), crc32=zlib.crc32(pieces[i]))
        body += pieces[i]
    out.write_bytes(join(header, body, version=version))
    return out


class _Writer:
    """Tensors written stream by stream, as write.py would, but with tables and layouts chosen
    by the test (deepzip.save picks the smallest; these are the others)."""

    def __init__(self, path: Path):
        from deepzip.dzip import DzipWriter

        self.path, self.w, self.tensors = path, DzipWriter(path), []

    def raw(self, data: bytes) -> int:
        return self.w.add(data, {"coder": "raw"})

    def coded(self, symbols, alphabet: int, coder: str, table=None) -> int:
        import numpy as np

        from deepzip.dzip.container import leb128
        from deepzip.encode import ans, huffman

        symbols = np.asarray(symbols, np.int64)
        counts = np.bincount(symbols, minlength=alphabet) if table is None else np.asarray(table, np.int64)
        if coder == "huffman":
            table = huffman.code_lengths(counts) if table is None else counts
            data = huffman.encode(symbols, table)
        else:
            table, data = counts, ans.encode(symbols, counts)
        return self.w.add(leb128(table) + data, {"coder": coder, "count": int(symbols.size), "alphabet": alphabet})

    def context(self, grid, alphabet: int, left: bool = False) -> int:
        from deepzip.encode import context

        return self.w.add(context.encode(grid, alphabet, left), {"coder": "context-left" if left else "context"})

    def finish(self, version: int = 3, meta_json: str | None = None) -> Path:
        """Write the file; `meta_json` is spliced into the header as JSON text, for what
        json.dumps will not write (1e400, escapes chosen by hand)."""
        import zlib

        from dzip_tools import join, split

        self.w.finish({"format": "deepzip", "arch": None, "tensors": self.tensors, "meta": "@META@"}, version)
        if meta_json is not None:
            header, payload = split(self.path.read_bytes())
            for s in header["streams"]:
                del s["offset"]
            text = json.dumps(header, separators=(",", ":")).replace('"@META@"', meta_json)
            self.path.write_bytes(join({}, payload, version=version, header_bytes=zlib.compress(text.encode())))
        return self.path


def _shared_sparse(w: _Writer, name, rng, n, k, bits, coders, stored="float32"):
    """A shared tensor of n weights, K = k codes, positions as gaps of `bits` bits."""
    import numpy as np

    from deepzip.encode.sparse import to_gaps

    flat = np.where(rng.random(n) < 0.02, rng.integers(1, k + 1, n), 0)
    gaps, codes = to_gaps(flat, bits)
    book = np.sort(rng.normal(0, 1, k)).astype("<f2" if stored == "float16" else "<f4")
    w.tensors.append({"name": name, "role": "param", "shape": [n // 10, 10], "dtype": "float32", "encoding": "shared",
                      **({"stored": "float16"} if stored == "float16" else {}),
                      "codebook": w.raw(book.tobytes()), "positions": "sparse", "index_bits": bits,
                      "gaps": w.coded(gaps, 2 ** bits, coders[0]), "values": w.coded(codes, k + 1, coders[1])})


def crafted(directory: Path) -> dict[str, Path]:
    """Valid files at the format's edges: wide alphabets, deep Huffman codes, ANS counts whose sum
    float64 cannot hold exactly, one-symbol and empty streams, rows past 2^24, odd names."""
    import numpy as np

    rng = np.random.default_rng(7)
    out = {}
    w = _Writer(directory / "wide-alphabets.dzip")
    _shared_sparse(w, "gaps16.huffman", rng, 40000, 300, 16, ("huffman", "ans"))
    _shared_sparse(w, "gaps16.ans", rng, 40000, 300, 16, ("ans", "huffman"), "float16")
    _shared_sparse(w, "gaps1", rng, 5000, 3, 1, ("huffman", "huffman"))
    out["crafted-wide-alphabets"] = w.finish()

    w = _Writer(directory / "ans-edges.dzip")
    counts = np.concatenate([rng.integers(1, 2 ** 62, 150), rng.integers(0, 9, 150)])  # a sum past 2^53
    symbols = rng.choice(300, 5000, p=counts / counts.astype(float).sum())
    symbols[:300] = np.flatnonzero(counts)[:300].repeat(2)[:300]
    w.tensors.append({"name": "huge-counts", "role": "buffer", "shape": [5000], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(np.arange(299, dtype="<f4").tobytes()), "positions": "dense",
                      "values": w.coded(symbols, 300, "ans", counts)})
    w.tensors.append({"name": "one-symbol", "role": "buffer", "shape": [1000], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(b""), "positions": "dense", "values": w.coded(np.zeros(1000, int), 1, "ans")})
    # an empty ANS stream is the state 0: it decodes to symbol 0 as often as asked
    w.tensors.append({"name": "empty-ans", "role": "buffer", "shape": [64], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(np.ones(2, "<f4").tobytes()), "positions": "dense",
                      "values": w.w.add(bytes([5, 0, 1]), {"coder": "ans", "count": 64, "alphabet": 3})})
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    deep = rng.choice(40, 20000, p=np.array(fib[::-1]) / sum(fib))
    w.tensors.append({"name": "deep-huffman", "role": "buffer", "shape": [20000], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(np.arange(39, dtype="<f4").tobytes()), "positions": "dense",
                      "values": w.coded(deep, 40, "huffman")})
    out["crafted-ans-huffman-edges"] = w.finish()

    w = _Writer(directory / "empty-and-scalar.dzip")
    w.tensors.append({"name": "raw-empty", "role": "buffer", "shape": [0, 3], "dtype": "float32", "encoding": "raw",
                      "data": w.raw(b"")})
    w.tensors.append({"name": "shared-empty", "role": "param", "shape": [0, 4], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(np.ones(3, "<f4").tobytes()), "positions": "context",
                      "values": w.context(np.zeros((0, 4), np.uint8), 4)})
    w.tensors.append({"name": "sparse-empty", "role": "param", "shape": [5, 0], "dtype": "float32", "encoding": "sparse",
                      "index_bits": 4, "gaps": w.coded(np.zeros(0, int), 16, "huffman", np.zeros(16, int)), "values": w.raw(b"")})
    w.tensors.append({"name": "scalar-shared", "role": "param", "shape": [], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(np.full(2, 2.5, "<f4").tobytes()), "positions": "context",
                      "values": w.context(np.array([[2]], np.uint8), 3, True)})
    w.tensors.append({"name": "stored-own-dtype", "role": "buffer", "shape": [2], "dtype": "float16", "encoding": "raw",
                      "stored": "float16", "data": w.raw(np.array([1.5, -2], "<f2").tobytes())})
    w.tensors.append({"name": "caf\u00e9 \u2603 \ud83d\ude00", "alias": "raw-empty"})
    w.tensors.append({"name": "alias-of-alias", "alias": "caf\u00e9 \u2603 \ud83d\ude00"})
    w.tensors.append({"name": "raw-empty", "role": "buffer", "shape": [1], "dtype": "int8", "encoding": "raw",
                      "data": w.raw(b"\x07")})   # a second entry of one name: read_tensors keeps the last
    w.tensors.append({"name": "alias-of-duplicate", "alias": "raw-empty"})
    out["crafted-empty-scalar-names"] = w.finish(version=4, meta_json=(
        '{"deep": [[[[[[[[[[1e400, -0.0, 12345678901234567890123, 1E-400]]]]]]]]]], "\\u006eame": "\\ud800 lone",'
        ' "x": "\\u0000 \\/ \\" \\\\", "x": "twice", "\\ud83d\\ude00": {}}'))

    # A context-coded column of 2^24 + 300 rows: past row 2^24 the coder's "first row" context
    # returns (16 * 2^20 // r is 0 there), which only a reader that follows the Python coder gets.
    n = (1 << 24) + 300
    w = _Writer(directory / "tall.dzip")
    grid = np.zeros((n, 1), np.uint8)
    grid[rng.integers(0, n, 3000), 0] = rng.integers(1, 4, 3000)
    grid[-300:, 0] = rng.integers(0, 4, 300)
    w.tensors.append({"name": "tall", "role": "param", "shape": [n, 1], "dtype": "float32", "encoding": "shared",
                      "codebook": w.raw(np.array([-1, 0.5, 2], "<f4").tobytes()), "positions": "context",
                      "values": w.context(grid, 4)})
    w.tensors.append({"name": "padding", "role": "buffer", "shape": [70000], "dtype": "uint8", "encoding": "raw",
                      "data": w.raw(rng.integers(0, 256, 70000, dtype=np.uint8).tobytes())})  # the element budget
    out["crafted-rows-past-2^24"] = w.finish()
    return out
