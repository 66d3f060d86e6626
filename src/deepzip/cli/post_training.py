"""`deepzip compress --no-retrain`: a pretrained model compressed in minutes (pipeline/ptq.py).

Its data: for `--hf DIR`, text files (`--calib-text`) tokenized by the model's own tokenizer, cut
into disjoint calibration, validation and test samples (sentences for an encoder, windows of
tokens for a causal language model); for a registry or `--model-py` model, a data set's splits
(calibration from the training split, the validation split held out of it, the test split).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _hf_data(model: Any, hf: Path, texts: list[Path], seed: int):
    from ..data.text import text_splits
    from ..models.hf import is_headless, transformers_module

    if not texts:
        raise ConfigError("--no-retrain with --hf calibrates on text: give --calib-text FILE (repeatable).")
    tok = transformers_module().AutoTokenizer.from_pretrained(hf, local_files_only=True)
    causal = not is_headless(model) and type(model).__name__.endswith("ForCausalLM")
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    calib, val, test = text_splits(texts, lambda s: tok(s)["input_ids"], pad_id=pad, causal=causal, seed=seed,
                                   sizes=(128, 64, 256) if causal else (256, 256, 1000), name="text")
    metric = "cosine" if is_headless(model) else "perplexity" if causal else "top1"
    return calib, val, test, metric


def _set_data(name: str, data_dir: Path | None, limit: int | None, val_split: float, seed: int):
    from ..data import Dataset
    from ..data.splits import load_splits

    splits = load_splits(name, data_dir, limit=limit, fraction=val_split, seed=seed)
    calib = Dataset(splits.train.x[:512], splits.train.y[:512], splits.train.classes, splits.train.name)
    return calib, splits.val, splits.test


def post_training(net: Any, *, hf: Path | None, data: str | None, data_dir: Path | None, calib_text: list[Path],
                  metric: str | None, max_drop: float | None, bits: float | None, code_bits: int | None, out: Path,
                  limit: int | None,
                  val_split: float, seed: int, resume: bool, quiet: bool, echo) -> None:
    """Run the post-training pipeline from the command's options and print one line."""
    from ..pipeline.ptq import PtqConfig, compress_pretrained
    from ..quantize import PostTraining

    config = PtqConfig(max_drop=max_drop, bits=bits, rounding=PostTraining(code_bits=code_bits))
    if hf is not None:
        calib, val, test, default_metric = _hf_data(net, hf, calib_text, seed)
    else:
        if calib_text:
            raise ConfigError("--calib-text is for --hf models (their tokenizer reads it); give --data for this model.")
        calib, val, test = _set_data(data or "fashion-mnist", data_dir, limit, val_split, seed)
        default_metric = "top1"
    result = compress_pretrained(net, calib, test, val_data=val, metric=metric or default_metric, config=config,
                                 out=out, resume=resume, progress=not quiet, log=echo)
    drop = result.validation["drop"]
    line = (f"wrote {result.path} ({result.file_bytes:,} bytes, {result.ratio:.1f}× smaller than {result.dense_bytes:,} "
            f"float32 bytes, {result.bits_per_weight:.2f} bits per weight; {result.metric} drop on validation "
            f"{drop:.5g}")
    if result.test:
        line += f", on test {result.test['drop']:.5g}"
    echo(line + f"; {result.seconds / 60:.1f} min)")
