"""Hugging Face models through the pipeline: a directory in (`--hf`), a .dzip, a directory out
(`decompress --hf`) that `from_pretrained` loads with the same logits; GPT-2's Conv1D compressed."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import deepzip as dz
from deepzip.cli import app

transformers = pytest.importorskip("transformers")  # the `hf` extra, installed by `make test`

VOCAB = 96
RECIPE = """
prune: {sparsity: {linear: 0.8, embedding: 0.8}, steps: 1, retrain: {epochs: 1, lr: 0.001, batch_size: 16}}
share: {bits: 4, finetune: {epochs: 1, lr: 0.0001, batch_size: 16}}
"""


def _configs():
    return {
        "gpt2": (transformers.GPT2LMHeadModel,
                 transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=32,
                                         bos_token_id=0, eos_token_id=0)),
        "bert": (transformers.BertForSequenceClassification,
                 transformers.BertConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=32,
                                         intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=32,
                                         num_labels=3)),
        "llama": (transformers.LlamaForCausalLM,
                  transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           hidden_size=32, intermediate_size=64, vocab_size=VOCAB,
                                           max_position_embeddings=32, bos_token_id=0, eos_token_id=0)),
    }


def _data(where, name):
    rng = np.random.default_rng(0)
    for split, n in (("train", 160), ("test", 48)):
        ids = rng.integers(0, VOCAB, (n, 12))
        ids[:, 1::2] = (ids[:, 0::2] + 1) % VOCAB  # something to learn: every other token follows the one before
        if name == "bert":
            labels = np.arange(n) % 3
            ids[:, 0] = labels  # the first token gives the class away
            np.savez(where / f"{split}.npz", x=ids, y=labels)
        else:
            np.savez(where / f"{split}.npz", x=ids)  # a causal LM: each position predicts the next id


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
def test_a_hugging_face_directory_in_a_dzip_and_a_directory_out_with_the_same_logits(tmp_path, name):
    cls, config = _configs()[name]
    torch.manual_seed(0)
    cls(config).eval().save_pretrained(tmp_path / "in")
    (tmp_path / "data").mkdir()
    _data(tmp_path / "data", name)
    (tmp_path / "r.yaml").write_text(RECIPE)
    runner = CliRunner()
    metric = "top1" if name == "bert" else "perplexity"
    result = runner.invoke(app, ["compress", "--hf", str(tmp_path / "in"), "--data", "npz", "--data-dir",
                                 str(tmp_path / "data"), "--metric", metric, "--recipe", str(tmp_path / "r.yaml"),
                                 "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["metric"]["name"] == ("accuracy" if name == "bert" else "perplexity")
    assert report["ratio"] > 3 and report["test"]["from_file"] > 0
    info = dz.inspect(tmp_path / "out" / "model.dzip")
    assert info["arch"]["hf"]["class"] == cls.__name__ and not info["uncompressed"]
    out = runner.invoke(app, ["decompress", str(tmp_path / "out" / "model.dzip"), "--hf", str(tmp_path / "back")])
    assert out.exit_code == 0, out.output
    ids = torch.from_numpy(np.load(tmp_path / "data" / "test.npz")["x"][:8]).long()
    ours = dz.load(tmp_path / "out" / "model.dzip")  # rebuilt from the recorded config: no flags
    theirs = cls.from_pretrained(tmp_path / "back", local_files_only=True).eval()
    with torch.no_grad():
        expected = ours(ids)
        got = theirs(input_ids=ids).logits
    assert torch.equal(got.transpose(1, 2) if got.dim() == 3 else got, expected)
    bench = runner.invoke(app, ["benchmark", str(tmp_path / "out" / "model.dzip"), "--reps", "2", "--json"])
    assert bench.exit_code == 0 and json.loads(bench.output)["b1_dense_ms"] > 0, bench.output  # token ids as inputs
    again = runner.invoke(app, ["decompress", str(tmp_path / "out" / "model.dzip"), "--hf", str(tmp_path / "back")])
    assert again.exit_code == 2 and "is not an empty directory" in again.output  # nothing overwritten


def test_gpt2_conv1d_layers_are_compressed_as_linear_layers(tmp_path):
    cls, config = _configs()["gpt2"]
    config.n_embd, config.vocab_size = 64, 512
    torch.manual_seed(0)
    model = dz.models.hf.as_logits_(cls(config).eval())
    conv1d = [n for n, m in model.named_modules() if type(m).__name__ == "Conv1D"]
    assert len(conv1d) == 8
    dz.prune_(model, sparsity=0.9)
    dz.share_weights_(model, bits=4)
    dz.save(model, tmp_path / "g.dzip")
    info = dz.inspect(tmp_path / "g.dzip")
    rows = {r["layer"]: r for r in info["layers"]}
    for layer in conv1d:
        assert rows[f"{layer}.weight"]["encoding"] == "shared" and rows[f"{layer}.weight"]["kept"] == pytest.approx(0.1, abs=0.01)
    assert not info["uncompressed"] and info["ratio"] >= 10
    ids = torch.randint(0, 512, (2, 16))
    assert torch.equal(dz.load(tmp_path / "g.dzip")(ids), model(ids))


def test_units_of_a_conv1d_are_its_columns():
    cls, config = _configs()["gpt2"]
    model = dz.models.hf.as_logits_(cls(config))
    torch.nn.init.ones_(model.transformer.h[0].mlp.c_fc.bias)  # GPT-2 starts its biases at zero
    dz.prune_units_(model, {"transformer.h.0.mlp.c_fc": 0.5})
    w = model.transformer.h[0].mlp.c_fc.weight  # in × out: 32 × 128
    assert (w.abs().sum(0) == 0).sum() == 64 and (w.abs().sum(1) == 0).sum() == 0
    assert (model.transformer.h[0].mlp.c_fc.bias == 0).sum() == 64


def test_a_hostile_hugging_face_record_is_refused_before_anything_is_built():
    from deepzip.dzip.assemble import build_model

    config = _configs()["gpt2"][1].to_dict()
    many = {"arch": {"hf": {"class": "GPT2LMHeadModel", "config": {**config, "n_layer": 3000}}}, "tensors": [{}] * 30}
    with pytest.raises(dz.ModelMismatchError, match="n_layer=3000, more layers than the file holds"):
        build_model(many, "bomb.dzip", file_bytes=40)
    broken = {"arch": {"hf": {"class": "GPT2LMHeadModel", "config": {**config, "n_head": 0}}}, "tensors": [{}] * 30}
    with pytest.raises(dz.ModelMismatchError, match="transformers cannot build"):
        build_model(broken, "broken.dzip", file_bytes=1 << 20)
    fetch = {"arch": {"hf": {"class": "GPT2LMHeadModel", "config": {
        **config, "attn_implementation": "kernels-community/flash-attn", "_name_or_path": "/home/me"}}}, "tensors": [{}] * 30}
    model = build_model(fetch, "fetch.dzip", file_bytes=1 << 20)  # the keys that could fetch or leak are dropped
    assert "_name_or_path" not in model.deepzip_arch["hf"]["config"]
    assert "attn_implementation" not in model.deepzip_arch["hf"]["config"]


@pytest.mark.parametrize("model_type", ["gpt2", "bert", "llama", "distilbert", "roberta", "mistral", "qwen2", "opt",
                                        "gpt_neox", "t5", "bart", "phi", "gemma", "bloom", "falcon"])
def test_every_layer_count_of_a_config_is_bounded_before_anything_is_built(model_type):
    """Whatever a config calls its layer count (DistilBERT's n_layers, T5's num_layers, …), a
    file recording 100,000 layers is refused at once, not built for minutes."""
    from deepzip.dzip.assemble import build_model

    config = transformers.AutoConfig.for_model(model_type)
    config.num_hidden_layers = 100_000  # the attribute map writes it under the model's own key
    record = {"arch": {"hf": {"class": "PreTrainedModel", "config": config.to_dict()}}, "tensors": [{}] * 30}
    with pytest.raises(dz.ModelMismatchError, match="more layers than the file holds"):
        build_model(record, "bomb.dzip", file_bytes=1 << 20)


def test_the_tokenizer_travels_in_the_file_and_comes_back_out(tmp_path):
    """A directory's tokenizer (and sentence-transformers' configs) is carried in the .dzip
    (format version 6): `decompress --hf` writes it beside the weights, and the tokenizer read
    back gives the same ids."""
    cls, config = _configs()["bert"]
    torch.manual_seed(0)
    cls(config).eval().save_pretrained(tmp_path / "in")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "model", "file", "##s", "small", "é", "1", "2"]
    (tmp_path / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(VOCAB - len(words))]) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    tok.save_pretrained(tmp_path / "in")
    (tmp_path / "in" / "1_Pooling").mkdir()
    (tmp_path / "in" / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    model = dz.models.hf.load_hf_dir(tmp_path / "in")
    assert {"tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json"} <= set(model.deepzip_files)
    assert "config.json" not in model.deepzip_files and "model.safetensors" not in model.deepzip_files
    dz.share_weights_(model, bits=4)
    dz.save(model, tmp_path / "m.dzip")
    assert set(dz.inspect(tmp_path / "m.dzip")["files"]) == set(model.deepzip_files)
    out = CliRunner().invoke(app, ["decompress", str(tmp_path / "m.dzip"), "--hf", str(tmp_path / "back")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "back" / "1_Pooling" / "config.json").read_text() == '{"pooling_mode_mean_tokens": true}'
    back = transformers.AutoTokenizer.from_pretrained(tmp_path / "back", local_files_only=True)
    texts = ["the model files", "small é 12  the", "unknown words, the end"]
    assert back(texts)["input_ids"] == tok(texts)["input_ids"]


def test_sensitivity_scans_a_hugging_face_language_model_in_perplexity(tmp_path):
    """`deepzip sensitivity --hf DIR --metric perplexity`: every layer's curves in % of perplexity,
    and a recipe whose budgets are checked by applying them."""
    cls, config = _configs()["gpt2"]
    torch.manual_seed(0)
    cls(config).eval().save_pretrained(tmp_path / "in")
    (tmp_path / "data").mkdir()
    _data(tmp_path / "data", "gpt2")
    out = CliRunner().invoke(app, ["sensitivity", "--hf", str(tmp_path / "in"), "--data", "npz", "--data-dir",
                                   str(tmp_path / "data"), "--metric", "perplexity", "--samples", "64",
                                   "--max-drop", "20", "--out", str(tmp_path / "sens"), "--quiet"])
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "sens" / "sensitivity.json").read_text())
    probe = dz.data.load("npz", tmp_path / "data", train=True, limit=64)
    from deepzip.train import metric_of

    ppl = metric_of("perplexity")
    reference = ppl(dz.models.hf.load_hf_dir(tmp_path / "in"), probe)
    assert result["baseline"] == pytest.approx(reference, rel=1e-6)  # the scores: this minus each probe's % rise
    rows = result["layers"]
    assert "transformer.h.0.mlp.c_fc" in rows and all(len(r["bits"]) == len(result["bit_widths"]) for r in rows.values())
    scores = [v for r in rows.values() for v in r["sparsity"] + r["bits"]]
    assert all(np.isfinite(scores)) and max(abs(v - reference) for v in scores) > 0.05  # the probes move it
    assert "measured by applying it without retraining" in out.output
    assert (tmp_path / "sens" / "recipe.yaml").is_file() and "--hf" in out.output
    bad = CliRunner().invoke(app, ["sensitivity", "--model-py", "x.py:Net", "--hf", str(tmp_path / "in")])
    assert bad.exit_code == 2 and "give one of --model-py and --hf" in bad.output
