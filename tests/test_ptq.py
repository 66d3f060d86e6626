"""Post-training quantization: calibration, GPTQ rounding, scaled rows in the file, the search."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.data import Dataset
from deepzip.dzip.assemble import read_tensors
from deepzip.errors import ConfigError
from deepzip.quantize import PostTraining, calibrate, gptq_levels, quantize_pretrained_, row_steps
from deepzip.quantize.ptq import targets
from deepzip.reparam import sharing


class Rescale(nn.Module):
    """A fixed gain per channel, as the norm after a real network's linear layer applies: it
    makes a row of small weights matter as much as a row of large ones."""

    def __init__(self, gain: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("gain", gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def pretrained_like(seed: int = 0) -> nn.Sequential:
    """What real checkpoints look like and k-means per tensor fits badly: row scales spread over
    100× (each undone by the gain after it), and a few weights 20× larger than their row."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for cols, rows in ((64, 128), (128, 32)):
        layer = nn.Linear(cols, rows)
        scale = torch.logspace(-1, 1, rows)[torch.randperm(rows, generator=g)]
        w = torch.randn(rows, cols, generator=g) * scale[:, None] / cols**0.5
        spikes = torch.randint(0, rows * cols, (rows * cols // 200,), generator=g)
        w.view(-1)[spikes] *= 20
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(torch.randn(rows, generator=g) * 0.1 * scale)
        layers += [layer, Rescale(1 / scale)]
    return nn.Sequential(layers[0], layers[1], nn.ReLU(), layers[2], layers[3])


def inputs(n: int, seed: int) -> torch.Tensor:
    """Correlated features, as activations are (what GPTQ's compensation uses)."""
    g = torch.Generator().manual_seed(99)
    mix = torch.randn(64, 64, generator=g) / 8 + torch.eye(64)
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed)) @ mix


def rel_error(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    return float((ya - yb).norm() / ya.norm())


def test_calibration_measures_x_transpose_x_and_a_fisher_per_row():
    net = pretrained_like()
    x = inputs(96, 1)
    cal = calibrate(net, [x[:32], x[32:64], x[64:]], probes=1)
    torch.testing.assert_close(cal.hessians["0"], x.double().T @ x.double())
    assert cal.samples == 96 and cal.rows["3"] == 96
    assert cal.fisher["0.weight"].shape == (128,) and bool((cal.fisher["0.weight"] > 0).all())
    assert all(p.grad is None for p in net.parameters())  # the model is left as it was


def test_gptq_rounds_closer_to_the_outputs_than_rounding_each_weight():
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    x = inputs(512, 2)
    h = x.double().T @ x.double()
    steps = torch.full((48,), 0.4)
    q = gptq_levels(w, h, steps)
    rtn = torch.round(w / 0.4)
    err = lambda levels: float(((levels.float() * 0.4 - w) @ x.T).norm())  # noqa: E731
    assert err(q) < 0.8 * err(rtn)  # 0.75 measured on these inputs
    assert q.dtype == torch.int32 and q.shape == w.shape


def test_gptq_leaves_the_hessian_as_it_was():
    x = inputs(128, 5)
    x[:, 3] = 0  # an input that never moves: GPTQ treats its column apart
    h = x.double().T @ x.double()
    before = h.clone()
    gptq_levels(torch.randn(8, 64), h, torch.full((8,), 0.3))
    assert torch.equal(h, before)


def test_layers_reading_one_input_share_one_hessian():
    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(16, 16) for _ in range(4))

        def forward(self, x):
            return self.o(self.q(x) * self.k(x) + self.v(x))

    net = QKV()
    x = torch.randn(40, 16)
    cal = calibrate(net, [x[:20], x[20:]], probes=0)
    assert cal.hessians["q"] is cal.hessians["k"] is cal.hessians["v"] and cal.hessians["o"] is not cal.hessians["q"]
    torch.testing.assert_close(cal.hessians["k"], x.double().T @ x.double())
    assert cal.rows["v"] == 40


def test_row_steps_follow_the_rows_and_are_float16_values():
    w = torch.randn(6, 10) * torch.tensor([0.01, 0.1, 1, 1, 10, 0])[:, None]
    steps = row_steps(w, 0.5)
    assert torch.equal(steps, steps.half().float()) and bool((steps > 0).all())
    assert steps[4] > 50 * steps[1] > 0  # 100× the rms, 100× the step
    fisher = torch.ones(6)
    fisher[0] *= 100  # a row the output is 100× as sensitive to gets a 10× finer step than the mean shape
    shaped = row_steps(w, 0.5, fisher, max_step=1e9)
    assert shaped[0] < shaped[2] / 5


def test_calibrated_row_grids_are_closer_than_kmeans_in_a_file_no_larger(tmp_path):
    """Per-tensor k-means (today's weight sharing, 4 bits, entropy coded) against per-row grids
    shaped by the rows' Fisher information and rounded with GPTQ on calibration inputs, in a
    file no larger, on inputs neither saw. Measured: 3.2× closer (0.69 against 2.18 relative
    error); the issue's 10× is past what 1.8 bits a weight can hold on this model (see
    docs/results.md)."""
    float_net, test_x = pretrained_like(), inputs(1000, 7)
    kmeans = pretrained_like()
    dz.share_weights_(kmeans, bits=4)
    budget = dz.save(kmeans, tmp_path / "kmeans.dzip")["file_bytes"]
    cal = calibrate(pretrained_like(), [inputs(256, 3)], probes=1)
    best = None
    for rel in (0.1, 0.14, 0.2, 0.28, 0.4, 0.56, 0.8):  # the finest step whose file fits the budget
        net = pretrained_like()
        quantize_pretrained_(net, cal, rel, PostTraining(rows="fisher"))
        size = dz.save(net, tmp_path / "ptq.dzip")["file_bytes"]
        if size <= budget:
            best = (rel, size, rel_error(float_net, net, test_x))
            break
    assert best is not None, "no step gave a file within the k-means file's bytes"
    assert rel_error(float_net, kmeans, test_x) > 2.5 * best[2], (rel_error(float_net, kmeans, test_x), best)


@pytest.mark.parametrize("coder", ["huffman", "ans", "context", "auto"])
def test_scaled_rows_round_trip_bit_for_bit_as_version_5(tmp_path, coder):
    net = pretrained_like()
    quantize_pretrained_(net, calibrate(net, [inputs(64, 4)], probes=0), 0.3)
    assert sharing(net[0]).scales is not None
    want = {k: v.clone() for k, v in net.state_dict().items()}
    header = dz.save(net, tmp_path / "m.dzip", coder=coder)
    assert (tmp_path / "m.dzip").read_bytes()[4] == 5
    assert all("scales" in t for t in header["tensors"] if t.get("encoding") == "shared")
    back = dz.load(tmp_path / "m.dzip", model=pretrained_like(1))
    for name, value in back.state_dict().items():
        assert torch.equal(value, want[name.replace(".parametrizations.weight.original", ".weight")]
                           if name in want else value)
    for layer in (0, 3):
        assert torch.equal(back[layer].weight, net[layer].weight)


def test_float32_scales_and_live_rows_round_trip(tmp_path):
    net = pretrained_like()
    dz.prune_units_(net, {"0": 0.25})
    dz.share_weights_(net, bits=3)
    sharing(net[0]).scales = torch.rand(128) + 0.5  # not float16 values: stored as float32
    header = dz.save(net, tmp_path / "m.dzip")
    entry = next(t for t in header["tensors"] if t["name"] == "0.weight")
    assert header["streams"][entry["scales"]]["length"] == 4 * 128
    back = dz.load(tmp_path / "m.dzip", model=pretrained_like())
    assert torch.equal(back[0].weight, net[0].weight)


def test_a_file_without_scales_is_still_written_as_before(tmp_path):
    net = pretrained_like()
    dz.share_weights_(net, bits=4)
    dz.save(net, tmp_path / "m.dzip", coder="ans")
    assert (tmp_path / "m.dzip").read_bytes()[4] == 3


def test_scales_in_an_older_version_or_of_the_wrong_length_are_refused(tmp_path):
    from dzip_tools import join, split

    net = pretrained_like()
    quantize_pretrained_(net, None, 0.3)
    dz.save(net, tmp_path / "m.dzip", coder="ans")
    header, payload = split((tmp_path / "m.dzip").read_bytes())
    (tmp_path / "v4.dzip").write_bytes(join(header, payload, version=4))
    with pytest.raises(dz.DzipFormatError, match="scaled rows, which a version 4 file cannot have"):
        dz.load(tmp_path / "v4.dzip", model=pretrained_like())
    entry = next(t for t in header["tensors"] if "scales" in t)
    entry["shape"] = [entry["shape"][0] // 4, entry["shape"][1] * 4]  # the codes still fit; the scales do not
    (tmp_path / "short.dzip").write_bytes(join(header, payload, version=5))
    with pytest.raises(dz.DzipFormatError, match="the scales of '0.weight' are 256 bytes, not 32 float16"):
        read_tensors(tmp_path / "short.dzip")


def test_targets_take_each_matrix_once_and_skip_small_tables(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.kind, self.out = nn.Embedding(50, 16), nn.Embedding(2, 16), nn.Linear(16, 50)
            self.out.weight = self.emb.weight

        def forward(self, ids):
            return self.out(self.emb(ids) + self.kind(torch.zeros_like(ids))).transpose(1, 2)

    net = Tied()
    cal = calibrate(net, [torch.randint(0, 50, (4, 6))])
    found = targets(net, cal)
    assert [t.name for t in found] == ["emb.weight"]  # tied once; the 2-row table stays float
    assert found[0].hessian is not None  # the Hessian of the linear layer that shares it
    quantize_pretrained_(net, cal, 0.3)
    assert net.out.weight is net.emb.weight or torch.equal(net.out.weight, net.emb.weight)
    header = dz.save(net, tmp_path / "tied.dzip")
    assert {"name": "out.weight", "alias": "emb.weight"} in header["tensors"]  # stored once
    assert torch.equal(dz.load(tmp_path / "tied.dzip", model=Tied()).out.weight, net.emb.weight)


def classifier_data(n: int, seed: int) -> Dataset:
    x = inputs(n, seed)
    y = pretrained_like()(x).argmax(1).detach()
    return Dataset(x, y, 32, "synthetic")


def test_compress_pretrained_meets_the_target_on_validation_and_resumes(tmp_path):
    calib, val, test = classifier_data(256, 10), classifier_data(400, 11), classifier_data(400, 12)
    config = dz.PtqConfig(max_drop=2.0, search_steps=6)
    net = pretrained_like()
    result = dz.compress_pretrained(net, calib, test, val_data=val, metric="top1", config=config,
                                    out=tmp_path / "run", progress=False, log=lambda s: None)
    assert result.validation["drop"] + 0.84 * (result.validation["se"] or 0) <= 2.0
    assert result.ratio > 3 and result.file_bytes == (tmp_path / "run" / "model.dzip").stat().st_size
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    # six steps and, since the first missed, the finest end measured once
    assert report["file_bytes"] == result.file_bytes and len(report["history"]) == 7
    again = dz.compress_pretrained(pretrained_like(), calib, test, val_data=val, metric="top1", config=config,
                                   out=tmp_path / "run", resume=True, progress=False, log=lambda s: None)
    assert (tmp_path / "run" / "model.dzip").read_bytes()[:0] == b"" and again.file_bytes == result.file_bytes
    assert again.steps == result.steps


def test_a_scan_predicted_from_the_fisher_information_meets_the_target_too(tmp_path):
    calib, val = classifier_data(256, 30), classifier_data(400, 31)
    config = dz.PtqConfig(max_drop=2.0, search_steps=6, scan="fisher")
    result = dz.compress_pretrained(pretrained_like(), calib, None, val_data=val, metric="top1", config=config,
                                    out=tmp_path, progress=False, log=lambda s: None)
    assert result.validation["drop"] + 0.84 * (result.validation["se"] or 0) <= 2.0
    scan = json.loads((tmp_path / "ptq.json").read_text())["scan"]
    assert set(scan) == {"0.weight", "3.weight"} and all(v > 0 for v in scan.values())


def test_dead_zone_rounding_leans_to_zero_and_codes_fewer_bits():
    from deepzip.quantize.gptq import round_levels
    from deepzip.quantize.ptq import entropy_bits

    x = torch.randn(10000, generator=torch.Generator().manual_seed(0)) * 3
    plain, lean = round_levels(x), round_levels(x, 0.2)
    assert bool(((plain - lean).abs() <= 1).all()) and bool((lean.abs() <= plain.abs()).all())
    assert entropy_bits(lean.int()) < 0.985 * entropy_bits(plain.int())  # 2.4 % fewer at a step of σ/3
    assert torch.equal(round_levels(torch.tensor([0.6, -1.55, 2.4]), 0.15), torch.tensor([0.0, -1.0, 2.0]))


def test_a_target_out_of_reach_is_said_after_two_measurements_with_the_best_drop(tmp_path):
    calib, val = classifier_data(128, 20), classifier_data(200, 21)
    lines = []
    with pytest.raises(ConfigError, match=r"the finest measured drops [0-9.]+ .*code_bits=2 allows no finer grid"):
        dz.compress_pretrained(pretrained_like(), calib, None, val_data=val, metric="top1", out=tmp_path,
                               config=dz.PtqConfig(max_drop=0.01, rounding=dz.PostTraining(code_bits=2)),
                               progress=False, log=lines.append)
    assert len([x for x in lines if x.startswith("k=")]) == 2  # the middle, then the finest: not 8 steps


def test_compress_pretrained_to_a_size(tmp_path):
    calib, val = classifier_data(128, 20), classifier_data(200, 21)
    result = dz.compress_pretrained(pretrained_like(), calib, None, val_data=val, metric="top1",
                                    config=dz.PtqConfig(bits=3.0, search_steps=8), out=tmp_path, progress=False,
                                    log=lambda s: None)
    # searched on the levels' entropy; the file adds its code tables (2 % on this 12 k-weight model)
    assert 2.0 <= result.bits_per_weight <= 3.0 * 1.03 and result.test is None


def test_code_bits_bound_every_tensor_s_levels_and_gptq_still_compensates():
    """A fixed-width grid for the GPU's packed layout: at most 2^b − 1 levels a tensor, each row's
    largest weight on the top level, and GPTQ's compensation still closer than rounding alone."""
    x = inputs(256, 5)
    errors = {}
    for gptq in (True, False):
        net = pretrained_like()
        cal = calibrate(net, [inputs(256, 3)], probes=0)
        quantize_pretrained_(net, cal, 0.05, PostTraining(code_bits=4, gptq=gptq))
        for layer in (0, 3):
            assert sharing(net[layer]).centroids.numel() <= 2**4 - 1  # ±1 … ±7, zero implied
        errors[gptq] = rel_error(pretrained_like(), net, x)
    free = pretrained_like()
    quantize_pretrained_(free, calibrate(free, [inputs(256, 3)], probes=0), 0.05)
    assert sharing(free[0]).centroids.numel() > 20  # the same step, unbounded, uses many more levels
    assert errors[True] < 0.85 * errors[False]  # 0.27 against 0.34


@pytest.mark.parametrize("kwargs, match", [({}, "one target"), ({"max_drop": 1, "bits": 3}, "one target"),
                                          ({"max_drop": -1}, "positive"), ({"bits": 40}, "bits per weight")])
def test_impossible_configs_are_one_sentence(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        dz.PtqConfig(**kwargs)


def tiny_encoder_dir(where) -> list[str]:
    """A BERT-family encoder (random weights) with a WordPiece tokenizer of its own, saved as
    `from_pretrained` reads it; returns the words its sentences use."""
    transformers = pytest.importorskip("transformers")
    words = [f"w{i}" for i in range(120)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    where.mkdir()
    (where / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(where / "vocab.txt"))
    tok.save_pretrained(where)
    config = transformers.BertConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64,
                                     vocab_size=len(vocab), max_position_embeddings=64, pad_token_id=0)
    torch.manual_seed(0)
    transformers.BertModel(config).eval().save_pretrained(where)
    return words


def test_cli_compresses_a_headless_encoder_without_retraining_and_it_loads_as_its_class(tmp_path):
    import transformers
    from typer.testing import CliRunner

    from deepzip.cli import app

    words = tiny_encoder_dir(tmp_path / "enc")
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(words[int(i)] for i in torch.randint(0, 120, (int(n),), generator=g)) + "."
             for n in torch.randint(8, 20, (700,), generator=g)]
    (tmp_path / "text.txt").write_text(" ".join(lines))
    result = CliRunner().invoke(app, ["compress", "--hf", str(tmp_path / "enc"), "--no-retrain", "--calib-text",
                                      str(tmp_path / "text.txt"), "--max-drop", "0.002", "--out", str(tmp_path / "out"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "cosine drop on validation" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["validation"]["drop"] <= 0.002 and report["metric"] == "cosine" and report["ratio"] > 3
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "enc")
    batch = tok(lines[:16], padding=True, return_tensors="pt")
    loaded = dz.load(tmp_path / "out" / "model.dzip")
    reference = transformers.BertModel.from_pretrained(tmp_path / "enc").eval()
    with torch.no_grad():
        got, want = loaded(**batch), reference(**batch)  # called as its Hugging Face class is
    assert type(got).__name__ == type(want).__name__
    mask = batch["attention_mask"].unsqueeze(-1)
    pooled = [(o.last_hidden_state * mask).sum(1) / mask.sum(1) for o in (got, want)]  # what the metric compared
    assert float(torch.nn.functional.cosine_similarity(*pooled, dim=-1).mean()) > 1 - 0.004


@pytest.mark.parametrize("args, match", [
    (["--no-retrain", "--max-drop", "0.01"], "needs a trained model"),
    (["--model", "lenet300", "--no-retrain", "--max-drop", "0.01", "--recipe", "best-lenet300"], "runs no recipe"),
    (["--model", "lenet300", "--no-retrain"], "one target"),
    (["--model", "lenet300", "--bits", "3"], "are for --no-retrain"),
    (["--model", "lenet300", "--code-bits", "4"], "are for --no-retrain"),
    (["--model", "lenet300", "--no-retrain", "--max-drop", "1", "--code-bits", "9"], "code_bits must be"),
])
def test_cli_refuses_impossible_post_training_options_in_one_line(args, match):
    from typer.testing import CliRunner

    from deepzip.cli import app

    result = CliRunner().invoke(app, ["compress", *args])
    assert result.exit_code == 2 and result.output.startswith("error:") and match in result.output, result.output


def test_probed_calibration_cuts_long_token_batches_without_changing_what_it_sums():
    from deepzip.quantize.calibrate import TOKENS, _split

    lm = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 50))
    ids = torch.randint(0, 50, (40, 64), generator=torch.Generator().manual_seed(0))  # 2,560 tokens
    parts = _split((ids, ids), probes=1)
    assert [len(p[0]) for p in parts] == [TOKENS // 64] * 2 + [8] and torch.equal(torch.cat([p[0] for p in parts]), ids)
    assert _split(ids, probes=0) == [ids] and len(_split(ids[:32], probes=1)) == 1  # 2,048 tokens stay whole
    whole, cut = calibrate(lm, [ids], probes=0), calibrate(lm, [ids], probes=1)
    assert whole.samples == cut.samples == 40 and cut.fisher["1.weight"].shape == (50,)
    torch.testing.assert_close(cut.hessians["1"], whole.hessians["1"], rtol=1e-12, atol=1e-9)
