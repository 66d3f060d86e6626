"""The GPU's lookup-table kernels (runtime/triton_kernels.py), held to PyTorch's decode-then-matmul
on the CPU under Triton's interpreter; and `dz.load(runtime="codebook")` building on them."""
import numpy as np
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip import runtime as rt
from deepzip.runtime.codebook import pack
from deepzip.runtime.lut import PackedMatrix, bits_for, pack_codes, unpack_codes

pytest.importorskip("triton")  # conftest.py has switched its interpreter on where there is no GPU
from deepzip.runtime import triton_kernels as tk  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _grid(rng, n, k, entries, density=1.0):
    codes = rng.integers(1, entries, (n, k))
    codes[rng.random((n, k)) >= density] = 0
    table = np.concatenate([[0.0], rng.standard_normal(entries - 1)]).astype(np.float32)
    return codes, table


def _reference(x, codes, table, scales, bias):
    w = torch.from_numpy(table[codes])
    if scales is not None:
        w = w * torch.from_numpy(scales)[:, None]
    y = x.double().cpu() @ w.double().t()
    return y if bias is None else y + bias.double().cpu()


@pytest.mark.parametrize("bits", range(1, 9))
def test_codes_pack_into_words_and_back_at_every_width(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, (5, 77))  # 77 columns: a partial last word at every width
    words = pack_codes(codes, bits)
    assert words.dtype == np.int32 and words.shape == (-(-77 // (32 // bits)), 5)
    assert np.array_equal(unpack_codes(words, bits, 77), codes)
    with pytest.raises(dz.DeepzipError, match="must lie in"):
        pack_codes(codes + (1 << bits), bits)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("m", [1, 3, 5, 37])
def test_the_packed_kernel_equals_decode_then_matmul(bits, m):
    rng = np.random.default_rng(10 * bits + m)
    n, k = 70, 83  # neither a multiple of any block
    codes, table = _grid(rng, n, k, 1 << bits, density=0.9)
    scales = (rng.random(n) + 0.5).astype(np.float32) if m != 3 else None
    bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) if m != 5 else None
    matrix = PackedMatrix(codes, table, scales).to(DEVICE)
    assert matrix.bits == bits and matrix.words.numel() * 4 < n * k * bits / 8 * 1.3
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
    got = matrix.mm(x.to(DEVICE), None if bias is None else bias.to(DEVICE))
    want = _reference(x, codes, table, scales, bias)
    assert got.shape == (m, n) and got.dtype == torch.float32
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(matrix.dense(), _reference(torch.eye(k), codes, table, scales, None).t().float())


@pytest.mark.parametrize("m", [1, 20])
def test_half_precision_activations_come_back_in_half_precision(m):
    rng = np.random.default_rng(m)
    codes, table = _grid(rng, 48, 40, 16)
    x = torch.from_numpy(rng.standard_normal((m, 40)).astype(np.float32)).half()
    got = PackedMatrix(codes, table, None).to(DEVICE).mm(x.to(DEVICE))
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.cpu().double(), _reference(x.float(), codes, table, None, None), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("m", [1, 7, 70])
@pytest.mark.parametrize("wide", [False, True])
def test_the_sparse_kernel_equals_decode_then_matmul(m, wide):
    """A pruned weight as the numba and C runtimes pack it: uint16 columns and codes (a codebook
    of more than 256 entries) travel as int16 and are read back unsigned."""
    rng = np.random.default_rng(m)
    n, k, entries = 45, 40000 if wide else 300, 300 if wide else 17
    codes, table = _grid(rng, n, k, entries, density=0.01 if wide else 0.2)
    codes[3] = 0  # an empty row
    positions = np.flatnonzero(codes)
    packed = pack(positions, codes.ravel()[positions], n, k)
    assert packed["cols"].dtype == torch.uint16 and packed["codes"].dtype == (torch.uint16 if wide else torch.uint8)
    cols = packed["cols"].view(torch.int16)
    kinds = packed["codes"].view(torch.int16) if wide else packed["codes"]
    scales = (rng.random(n) + 0.5).astype(np.float32)
    bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
    on = [t.to(DEVICE) for t in (x, packed["indptr"], cols, kinds, torch.from_numpy(table), torch.from_numpy(scales), bias)]
    got = tk.sparse_mm(*on[:5], n, on[5], on[6])
    torch.testing.assert_close(got.cpu().double(), _reference(x, codes, table, scales, bias), rtol=1e-5, atol=1e-4)


def test_empty_batches_and_layouts_by_bytes():
    rng = np.random.default_rng(0)
    codes, table = _grid(rng, 8, 8, 4)
    assert PackedMatrix(codes, table, None).mm(torch.zeros(0, 8)).shape == (0, 8)
    linear = nn.Linear(64, 64)
    assert rt.choose_layout(linear, 0.9, 16, packed_ok=True) == "packed"
    assert rt.choose_layout(linear, 4 / 24 - 0.01, 16, packed_ok=True) == "sparse"  # 4-bit codes beat 3 B a weight
    assert rt.choose_layout(linear, 0.9, 300, packed_ok=True) == "sparse"  # 9-bit codes do not pack
    assert rt.choose_layout(linear, 0.9, 16, packed_ok=False) == "sparse"
    assert rt.choose_layout(nn.Conv2d(8, 8, 3, groups=8), 0.9, 16, packed_ok=True) == "sparse"
    assert bits_for(2) == 1 and bits_for(256) == 8 and bits_for(257) == 9


def _compressed_cnn(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    dz.prune_(net, sparsity={"2": 0.3, "5": 0.95})
    dz.share_weights_(net, bits={"0": 3, "2": 4, "5": 5, "7": 6})
    dz.save(net, tmp_path / "m.dzip")
    return lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, stride=2, padding=1),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def test_load_lays_each_layer_out_by_its_bytes_and_matches_the_dense_model(tmp_path):
    fresh = _compressed_cnn(tmp_path)
    dense = dz.load(tmp_path / "m.dzip", model=fresh())
    fast = dz.load(tmp_path / "m.dzip", model=fresh(), runtime="codebook", device=DEVICE)
    layouts = {name: v.split(" (")[1].split(",")[0] for name, v in fast.deepzip_runtime.items()
               if name.endswith("weight")}
    assert layouts == {"0.weight": "packed", "2.weight": "packed", "5.weight": "sparse", "7.weight": "packed"}
    assert isinstance(fast[0].weight, PackedMatrix) and fast[0].weight.bits == 3 and fast[7].weight.bits == 6
    assert not any(isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape == (64, 128)
                   for t in fast[5].state_dict().values())  # the pruned layer never holds its dense shape
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x.to(DEVICE)).cpu(), dense(x), rtol=1e-4, atol=1e-5)


def test_without_the_kernels_the_same_load_keeps_the_sparse_layout(tmp_path, monkeypatch):
    fresh = _compressed_cnn(tmp_path)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if torch.cuda.is_available():
        pytest.skip("on a GPU the kernels run without the interpreter")
    fast = dz.load(tmp_path / "m.dzip", model=fresh(), runtime="codebook")
    assert all(v.startswith("codebook (sparse") for k, v in fast.deepzip_runtime.items() if k.endswith("weight"))
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), dz.load(tmp_path / "m.dzip", model=fresh())(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("code_bits", [None, 4])
def test_scaled_rows_of_a_pretrained_language_model_generate_the_same_tokens(tmp_path, code_bits):
    """A Llama-family model rounded without retraining (format version 5's scaled rows), run
    through its own `generate` with every projection a packed lookup-table layer: as wide as
    its levels need, or in 4 bits where the rounding was told to use at most 15 levels."""
    transformers = pytest.importorskip("transformers")
    from deepzip.models.hf import load_hf_dir
    from deepzip.quantize import PostTraining, quantize_pretrained_

    config = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      hidden_size=64, intermediate_size=96, vocab_size=50,
                                      max_position_embeddings=64, bos_token_id=0, eos_token_id=49)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(tmp_path / "in")
    model = load_hf_dir(tmp_path / "in")
    quantize_pretrained_(model, None, 0.25, PostTraining(code_bits=code_bits))
    dz.save(model, tmp_path / "m.dzip")
    # scaled rows (version 5), and the directory's generation_config.json carried beside them (6)
    assert (tmp_path / "m.dzip").read_bytes()[4] == 6
    assert "generation_config.json" in dz.inspect(tmp_path / "m.dzip")["files"]
    dense = dz.load(tmp_path / "m.dzip")
    fast = dz.load(tmp_path / "m.dzip", runtime="codebook", device=DEVICE)
    packed = [m for m in fast.modules() if isinstance(m, rt.CodebookLinear)]
    assert len(packed) == 2 * 7 + 1  # seven projections a layer, and the untied LM head
    assert all(isinstance(m.weight, PackedMatrix) and m.weight.scales is not None for m in packed)
    widths = {m.weight.bits for m in packed}
    assert (widths == {4}) if code_bits else (min(widths) > 4), widths
    prompt = torch.tensor([[0, 5, 17, 3, 9]])
    with torch.no_grad():
        want = dense.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12)
        got = fast.generate(prompt.to(DEVICE), max_new_tokens=12, do_sample=False, min_new_tokens=12)
        torch.testing.assert_close(fast(input_ids=prompt.to(DEVICE)).logits.cpu(), dense(input_ids=prompt).logits,
                                   rtol=1e-4, atol=1e-4)
    assert torch.equal(got.cpu(), want)



def test_half_precision_models_keep_float32_codebooks_and_run_the_kernels():
    rng = np.random.default_rng(1)
    codes, table = _grid(rng, 40, 48, 256)  # 255 levels a step apart: bfloat16 would merge neighbours
    table[1:] = np.linspace(1.0, 1.5, 255, dtype=np.float32)
    layer = rt.CodebookLinear(nn.Linear(48, 40), None, codes, table, None, scales=np.full(40, 0.5, np.float32),
                              layout="packed").to(DEVICE).bfloat16()
    assert layer.weight.table.dtype == torch.float32 and layer.weight.scales.dtype == torch.float32
    x = torch.from_numpy(rng.standard_normal((3, 48)).astype(np.float32))
    got = layer(x.bfloat16().to(DEVICE))
    assert got.dtype == torch.bfloat16
    want = _reference(x.bfloat16().float(), codes, table, np.full(40, 0.5, np.float32), None)
    torch.testing.assert_close(got.cpu().double(), want, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("device, words", [("cuda:7", "GPU"), ("tpu", "device must be")])
def test_a_device_that_is_not_here_is_one_sentence(tmp_path, device, words):
    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("this machine has a GPU")
    fresh = _compressed_cnn(tmp_path)
    with pytest.raises(dz.DeepzipError, match=words):
        dz.load(tmp_path / "m.dzip", model=fresh(), runtime="codebook", device=device)
