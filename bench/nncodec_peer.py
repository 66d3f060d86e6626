"""NNCodec (Fraunhofer HHI's MPEG-7 NNR reference coder, DeepCABAC) on all-MiniLM-L6-v2, scored like bench/ptq.py.

    /tmp/nncvenv/bin/python bench/nncodec_peer.py --encode OUTDIR [--only qp-32 ...] [--model-dir DIR]
    .venv/bin/python        bench/nncodec_peer.py --score OUTDIR [--json FILE] [--out out/bench-ptq]

--encode (NNCodec's python): every float32 tensor of MiniLM's model.safetensors (103 tensors, 22.7 M
values; the int64 `embeddings.position_ids` buffer is no parameter and is left out) goes to
`nncodec.nn.encode` as a dict of numpy arrays, once per setting in SETTINGS (uniform quantization
with dependent quantization / trellis on, NNCodec's default; either a qp, one step size for all
weight matrices, or an integer bit depth, which overrides the qp with a step per tensor of its
99.95th percentile |w| / (2^(bits−1) − 1), clipping the rest; 1-D tensors at NNCodec's nonweight
qp −75, or 8 bits with a bit depth). The bitstream is decoded back with `nncodec.nn.decode`;
OUTDIR/<setting>.safetensors holds the decoded tensors and OUTDIR/sizes.json the bitstream's bytes
and the encode and decode seconds of each setting.

--score (deepzip's python): each decoded file is loaded into a copy of the float model of
bench/ptq.py's `minilm` and scored on its 1,000 test sentences by the cosine metric (1 − mean
cosine of sentence embeddings against the float model, and its standard error); one JSON line per
setting in bench/ptq.py's `row` format (bytes: the bitstream's; seconds: encode + decode; added:
encode_s, decode_s, score_s, and codec_peak_rss_mb, the encoding process's), printed and appended
to FILE with --json.

NNCodec needs its own virtual environment: it pins numpy<2 (deepzip's has numpy 2) and imports
torchvision, OpenCV, scikit-learn and pandas (its dataset modules) when `nncodec.nn` is imported,
although its coding path uses none of them. Set-up, CPU only (pins keep pip from pulling CUDA torch):

    python3 -m venv /tmp/nncvenv
    /tmp/nncvenv/bin/pip install torch==2.13.0
    printf 'numpy<2\\ntorch==2.13.0\\n' > /tmp/nnc-pins.txt
    /tmp/nncvenv/bin/pip install -c /tmp/nnc-pins.txt pybind11 safetensors h5py tqdm pandas pillow \\
        opencv-python-headless scikit-learn
    /tmp/nncvenv/bin/pip install --no-deps torchvision==0.28.0
    /tmp/nncvenv/bin/pip install --no-deps --no-build-isolation nncodec==2.1.3   # builds DeepCABAC (C++)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "out/bench-ptq/models/all-MiniLM-L6-v2"  # where bench/ptq.py unzips the model

# setting name -> NNCodec arguments on top of its defaults (uniform, use_dq on, nonweight_qp −75);
# qp −37 and −31 land near the cosine drops of deepzip's MiniLM targets (0.001, 0.01), so the
# sizes can be compared at equal quality
SETTINGS = {
    "qp-38": {"qp": -38},
    "qp-37": {"qp": -37},
    "qp-32": {"qp": -32},
    "qp-31": {"qp": -31},
    "qp-26": {"qp": -26},
    "qp-20": {"qp": -20},
    "bitdepth-8": {"bitdepth": 8},
    "bitdepth-4": {"bitdepth": 4},
}


def method_name(setting: str, version: str) -> str:
    key, value = setting.rsplit("-", 1)
    return f"NNCodec {version} {key} {'-' if key == 'qp' else ''}{value} (DeepCABAC)"


# ------------------------------------------------------------------------------------ encode side
def import_nncodec():
    """nncodec.nn, importable with torchvision's wheel beside a CPU torch.

    PyPI's torchvision is built against CUDA torch: its _C.so cannot load here, and torchvision's
    _meta_registrations then fails on the missing torchvision::nms schema. Declaring the schemas
    it registers lets `import torchvision` finish; NNCodec's coding path never calls them."""
    import ctypes
    import glob
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    libs = glob.glob(str(Path(next(iter(spec.submodule_search_locations))) / "_C*.so")) if spec else []
    try:
        loadable = spec is None or bool(libs) and ctypes.CDLL(libs[0]) is not None
    except OSError:
        loadable = False
    if not loadable:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_nncodec.keep = lib  # the schemas live as long as the Library object
    import nncodec.nn
    return nncodec.nn


def float_tensors(model_dir: Path) -> tuple[dict, list[str]]:
    """MiniLM's float32 tensors as numpy arrays (NNCodec takes float32 or int32), and the keys left out."""
    from safetensors.numpy import load_file

    tensors = load_file(str(model_dir / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if v.dtype.name == "float32"}
    return kept, sorted(set(tensors) - set(kept))


def code(nn, params: dict, options: dict) -> tuple[int, dict, float, float]:
    """One encode + decode: the bitstream's bytes, the decoded arrays, encode and decode seconds."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        args = {**options, "results": tmp, "verbose": False}  # encode also writes the bitstream under results
        t0 = time.perf_counter()
        bitstream = nn.encode(params, args)
        t1 = time.perf_counter()
        decoded = nn.decode(bytearray(bitstream), args)
        t2 = time.perf_counter()
    return len(bitstream), decoded, t1 - t0, t2 - t1


def encode_all(outdir: Path, model_dir: Path, only: list[str] | None) -> None:
    import nncodec
    import numpy as np
    from safetensors.numpy import save_file

    nn = import_nncodec()
    params, skipped = float_tensors(model_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    sizes_path = outdir / "sizes.json"
    sizes = json.loads(sizes_path.read_text()) if sizes_path.is_file() else {}
    version = getattr(nncodec, "__version__", None) or _dist_version("nncodec")
    sizes.update(nncodec_version=version, skipped_keys=skipped, tensors=len(params),
                 values=int(sum(v.size for v in params.values())))
    sizes.setdefault("settings", {})
    for setting in only or SETTINGS:
        size, decoded, enc_s, dec_s = code(nn, params, SETTINGS[setting])
        out = {k: np.ascontiguousarray(np.asarray(decoded[k], dtype=np.float32).reshape(v.shape))
               for k, v in params.items()}
        save_file(out, str(outdir / f"{setting}.safetensors"))
        err = max(float(np.abs(out[k] - v).max()) for k, v in params.items())
        sizes["settings"][setting] = {
            "options": SETTINGS[setting], "bytes": size, "seconds": round(enc_s + dec_s, 2),
            "encode_s": round(enc_s, 2), "decode_s": round(dec_s, 2), "max_abs_error": err,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        sizes_path.write_text(json.dumps(sizes, indent=1))  # after each setting: a partial run still counts
        print(setting, json.dumps(sizes["settings"][setting]), flush=True)


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# ------------------------------------------------------------------------------------- score side
def score_all(outdir: Path, bench_out: Path, json_file: str | None) -> None:
    import copy

    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(ROOT / "bench"))
    from ptq import minilm, row, weight_matrices  # one definition of the model, splits and fields

    from deepzip.train.metrics import metric_of

    torch.manual_seed(0)
    sizes = json.loads((outdir / "sizes.json").read_text())
    name, base, _calib, _val, test, metric_name, _ = minilm(bench_out)
    dense = 4 * sum(p.numel() for p in base.parameters())
    weights = sum(p.numel() for p in weight_matrices(base))
    other = 4 * sum(p.numel() for p in base.parameters() if p.dim() < 2)
    metric = metric_of(metric_name)
    lines = []
    for setting in [k for k in SETTINGS if k in sizes["settings"]]:
        s, t0 = sizes["settings"][setting], time.perf_counter()
        model = copy.deepcopy(base)
        # strict: the decoded keys are the safetensors' float32 keys, exactly the model's state dict
        model.load_state_dict(load_file(str(outdir / f"{setting}.safetensors")), strict=True)
        fid = metric.paired(base, model, test)
        line = {**row(name, method_name(setting, sizes["nncodec_version"]), s["bytes"], dense, weights, other,
                      metric_name, fid, s["seconds"]),
                "encode_s": s["encode_s"], "decode_s": s["decode_s"], "score_s": round(time.perf_counter() - t0, 1),
                "codec_peak_rss_mb": s["peak_rss_mb"]}
        lines.append(line)
        print(json.dumps(line), flush=True)
        del model
    if json_file:
        with open(json_file, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--encode", type=Path, metavar="OUTDIR", help="code and decode (NNCodec's python)")
    mode.add_argument("--score", type=Path, metavar="OUTDIR", help="score the decoded files (deepzip's python)")
    ap.add_argument("--only", nargs="+", choices=list(SETTINGS), help="--encode: these settings only")
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="--encode: MiniLM's directory")
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench-ptq", help="--score: bench/ptq.py's --out")
    ap.add_argument("--json", default=None, help="--score: also append the lines to this file")
    args = ap.parse_args()
    if args.encode:
        encode_all(args.encode, args.model_dir, args.only)
    else:
        score_all(args.score, args.out, args.json)


if __name__ == "__main__":
    main()
