#!/opt/nncodec-venv/bin/python
"""Measure NNCodec (Fraunhofer HHI NNR / DeepCABAC, nncodec==2.1.3) on a dict of weights.

usage: python nnc_run.py IN.npz OUT.json [--qp -32 -34 ...] [--no-dq] [--nonweight-qp -75]
                                         [--method codebook|uniform] [--exact] [--log FILE]

IN.npz: float32 arrays keyed by parameter name (e.g. 'fc1.weight' (300,784), 'fc1.bias' (300,)).
For every qp: nncodec.nn.encode(weights, {"approx_method": "codebook", "qp": qp, ...}),
len(bitstream) in bytes, nncodec.nn.decode(bitstream), per-tensor max abs error / bit-identity,
per-NNR-unit byte counts (parsed while decoding), and header/overhead bytes.
Decoded weights of each qp go to OUT.qp<qp>.npz (sibling of OUT.json).

--exact additionally runs a lossless variant: every tensor is sent to NNCodec as an int32
index tensor (indices into its sorted unique values, offset so the value nearest 0 is index 0)
plus an int32 tensor holding the float32 bit patterns of the unique values. NNCodec codes int32
tensors without quantisation ('skip' approximation), so this measures DeepCABAC on the exact
model. Entry key "exact" in OUT.json, decoded weights in OUT.qpexact.npz.
"""
import argparse
import contextlib
import ctypes
import glob
import importlib.util
import io
import json
import os
import tempfile
import time

import numpy as np
import torch


# ---------------------------------------------------------------------------------------------
# torchvision shim. nncodec imports torchvision (dataset modules) at import time. The PyPI
# torchvision wheel is built against CUDA torch; with the CPU torch in this venv its _C.so cannot
# load (libc10_cuda.so missing) and torchvision 0.28's _meta_registrations then fails with
# "operator torchvision::nms does not exist". Declaring the two op schemas it registers
# unconditionally lets `import torchvision` succeed; nncodec's coding path never uses them.
def _torchvision_ops_loadable():
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True
    libs = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_C*.so"))
    if not libs:
        return False
    try:
        ctypes.CDLL(libs[0])
        return True
    except OSError:
        return False


if not _torchvision_ops_loadable():
    _TV_LIB = torch.library.Library("torchvision", "DEF")
    _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

import nncodec.nn  # noqa: E402
import nncodec.nnc_core.approximator as _nnc_approx  # noqa: E402
import nncodec.nnc_core.coder as _nnc_coder  # noqa: E402
from nncodec.nnc_core import common as _nnc_common  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Instrumentation (wrappers only; NNCodec's behaviour is unchanged).
_ENC_LOG = {}   # last approximation result from the encoder
_DEC_LOG = {}   # NNR units seen by the decoder

_orig_approx = _nnc_approx.approx


def _approx_spy(approx_info, model_info, approx_data, enc_info=None):
    out = _orig_approx(approx_info, model_info, approx_data, enc_info=enc_info)
    _ENC_LOG["approx_data"] = out
    return out


_nnc_approx.approx = _approx_spy

_orig_decode_unit = _nnc_coder.__dict__["__decode_nnr_unit"]


def _decode_unit_spy(*a, **k):
    approx_data = a[8]
    hls_stats = a[16] if len(a) > 16 else k.get("hls_stats")
    before = set(approx_data["parameters"].keys())
    n_hdr_before = len(hls_stats.get("ndu_bytes", [])) if hls_stats is not None else 0
    out = _orig_decode_unit(*a, **k)
    new = [p for p in out[5]["parameters"].keys() if p not in before]
    hdr = hls_stats.get("ndu_bytes", [])[n_hdr_before:] if hls_stats is not None else []
    _DEC_LOG.setdefault("units", []).append({"bytes": int(out[0]), "params": new,
                                             "ndu_header_bytes": [int(h) for h in hdr]})
    _DEC_LOG["hls_stats"] = hls_stats
    return out


_nnc_coder.__dict__["__decode_nnr_unit"] = _decode_unit_spy


# ---------------------------------------------------------------------------------------------
def to_exact_ints(weights):
    """float32 tensors -> {name: int32 indices, name+'.__cb': int32 float-bit codebook}."""
    out, meta = {}, {}
    for k, v in weights.items():
        cb, idx = np.unique(v.astype(np.float32), return_inverse=True)
        off = int(np.argmin(np.abs(cb)))
        out[k] = (idx.reshape(v.shape).astype(np.int32) - off)
        out[k + ".__cb"] = cb.astype(np.float32).view(np.int32).copy()
        meta[k] = off
    return out, meta


def from_exact_ints(dec, meta, names):
    rec = {}
    for k in names:
        cb = np.asarray(dec[k + ".__cb"]).astype(np.int32).view(np.float32)
        rec[k] = cb[np.asarray(dec[k]).astype(np.int64) + meta[k]]
    return rec


def run_one(weights, label, args_dict, exact=False, log=None):
    if exact:
        enc_in, meta = to_exact_ints(weights)
    else:
        enc_in = weights
    _ENC_LOG.clear()
    _DEC_LOG.clear()
    buf = io.StringIO()
    with tempfile.TemporaryDirectory() as td:
        a = dict(args_dict, results=td)
        with contextlib.redirect_stdout(buf):
            t0 = time.perf_counter()
            bs = nncodec.nn.encode(enc_in, a)
            t_enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec = nncodec.nn.decode(bytearray(bs), a)
            t_dec = time.perf_counter() - t0
    if log is not None:
        log.write(f"===== {label} =====\n{buf.getvalue()}\n")
    total = len(bs)

    rec = from_exact_ints(dec, meta, list(weights)) if exact else \
        {k: np.asarray(dec[k]).astype(np.float32).reshape(weights[k].shape) for k in weights}

    # per NNR unit / per tensor bytes
    hs = _DEC_LOG.get("hls_stats") or {}
    units = _DEC_LOG.get("units", [])
    start_b = int(hs.get("start_bytes", 0))
    mps_b = int(hs.get("mps_bytes", 0))
    lps_b = int(hs.get("lps_bytes", 0))
    tpl_b = int(hs.get("bytes_tpl", 0))
    per_unit = {}
    ndu_hdr_total = 0
    for u in units:
        if not u["params"]:
            continue
        name = "+".join(u["params"])
        hdr = sum(u["ndu_header_bytes"])
        ndu_hdr_total += hdr
        per_unit[name] = {"bytes": u["bytes"], "header_bytes_incl_codebook": hdr,
                          "payload_bytes": u["bytes"] - hdr}
    unit_sum = start_b + sum(u["bytes"] for u in units)

    ad = _ENC_LOG.get("approx_data", {})
    tensors = {}
    for k, v in weights.items():
        r = rec[k]
        t = {
            "shape": list(v.shape),
            "n_unique_in": int(np.unique(v).size),
            "n_unique_out": int(np.unique(r).size),
            "max_abs_err": float(np.max(np.abs(r.astype(np.float64) - v.astype(np.float64)))),
            "bit_identical": bool(r.dtype == v.dtype and r.shape == v.shape and
                                  np.array_equal(r.view(np.uint32), v.view(np.uint32))),
        }
        if exact:
            nb = sum(per_unit.get(n, {}).get("bytes", 0) for n in (k, k + ".__cb"))
            t["bytes"] = nb
            t["bytes_indices"] = per_unit.get(k, {}).get("bytes")
            t["bytes_codebook_tensor"] = per_unit.get(k + ".__cb", {}).get("bytes")
        else:
            t.update(per_unit.get(k, {}))
            am = ad.get("approx_method", {}).get(k)
            t["approx_method"] = am
            if k in ad.get("qp", {}):
                t["qp_used"] = int(ad["qp"][k])
                t["stepsize"] = float(_nnc_common.get_stepsize_from_qp(
                    np.int32(ad["qp"][k]), np.int32(ad.get("qp_density", 2))))
            if am == "codebook":
                t["codebook_size"] = int(len(ad["codebooks"][k]))
            t["dq_flag"] = int(ad.get("dq_flag", {}).get(k, 0))
        tensors[k] = t

    overhead = start_b + mps_b + lps_b + tpl_b + ndu_hdr_total
    return {
        "label": label,
        "bytes": total,
        "encode_s": round(t_enc, 4),
        "decode_s": round(t_dec, 4),
        "overhead": {"nnr_start_unit": start_b, "nnr_mps_unit": mps_b, "nnr_lps_unit": lps_b,
                     "nnr_tpl_unit": tpl_b, "ndu_headers_incl_codebooks": ndu_hdr_total,
                     "total_non_payload": overhead,
                     "check_sum_of_units_equals_bytes": unit_sum == total},
        "tensors": tensors,
        "all_bit_identical": all(t["bit_identical"] for t in tensors.values()),
    }, rec


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inp")
    p.add_argument("out")
    p.add_argument("--qp", type=int, nargs="+", default=[-32, -34, -36, -38, -40, -42])
    p.add_argument("--method", default="codebook", choices=["codebook", "uniform"])
    p.add_argument("--no-dq", action="store_true", help="disable dependent quantization (default: on)")
    p.add_argument("--nonweight-qp", type=int, default=-75, help="QP for 1-D tensors (NNCodec default -75)")
    p.add_argument("--exact", action="store_true", help="also run the lossless int32-index variant")
    p.add_argument("--log", default=None, help="file for NNCodec's own stdout (default OUT.log)")
    ns = p.parse_args()

    z = np.load(ns.inp)
    weights = {k: np.ascontiguousarray(z[k].astype(np.float32)) for k in z.files}
    base = ns.out[:-5] if ns.out.endswith(".json") else ns.out
    logf = open(ns.log or base + ".log", "w")

    res = {"input": os.path.abspath(ns.inp), "nncodec_version": "2.1.3",
           "raw_float32_bytes": int(sum(v.size * 4 for v in weights.values())),
           "settings": {"approx_method": ns.method, "use_dq": not ns.no_dq,
                        "nonweight_qp": ns.nonweight_qp},
           "runs": {}}
    for qp in ns.qp:
        a = {"approx_method": ns.method, "qp": qp, "use_dq": not ns.no_dq,
             "nonweight_qp": ns.nonweight_qp, "verbose": True}
        r, rec = run_one(weights, f"qp{qp}", a, log=logf)
        np.savez(f"{base}.qp{qp}.npz", **rec)
        res["runs"][str(qp)] = r
        print(f"qp {qp:4d}: {r['bytes']:7d} B  enc {r['encode_s']:.2f}s dec {r['decode_s']:.2f}s  "
              f"overhead {r['overhead']['total_non_payload']} B  exact={r['all_bit_identical']}  "
              + " ".join(f"{k}:{t.get('bytes')}B/{t.get('approx_method')}/err{t['max_abs_err']:.2g}"
                         for k, t in r["tensors"].items()), flush=True)
    if ns.exact:
        a = {"approx_method": "uniform", "qp": -32, "use_dq": False, "verbose": True}
        r, rec = run_one(weights, "exact", a, exact=True, log=logf)
        np.savez(f"{base}.qpexact.npz", **rec)
        res["runs"]["exact"] = r
        print(f"exact  : {r['bytes']:7d} B  enc {r['encode_s']:.2f}s dec {r['decode_s']:.2f}s  "
              f"exact={r['all_bit_identical']}  "
              + " ".join(f"{k}:{t['bytes']}B" for k, t in r["tensors"].items()), flush=True)
    logf.close()
    with open(ns.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
