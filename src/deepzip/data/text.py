"""Text files as token data sets, for calibrating and scoring pretrained language models.

Two shapes, by what the model does with text:

  sentences  (encoders) the files' prose split into sentences of 40–300 characters, each
             tokenized alone and padded to the batch's longest with `pad_id`: x is N×T ids,
             y is zeros (an encoder is scored against its float self, not against labels).
  windows    (causal language models) the files' text as one token stream cut into windows of
             `length` tokens: x is N×T, y the next tokens (what Perplexity reads).

The samples are shuffled with `seed` and cut into calibration, validation and test splits that
share no sample (a sentence repeated in the files is kept once).

Examples:
    >>> calib, val, test = text_splits(["/usr/share/common-licenses/GPL-3"], tok, pad_id=0,
    ...                                sizes=(256, 256, 1000))
"""
from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence

import torch

from ..errors import DataError
from . import Dataset

Tokenize = Callable[[str], list[int]]


def read_text(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Each file's text, whitespace runs made single spaces (a file that cannot be read: DataError)."""
    texts = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(re.sub(r"\s+", " ", f.read()).strip())
        except OSError as e:
            raise DataError(f"cannot read the text file {path}: {e.strerror or e}.") from None
    return texts


def sentences(texts: Sequence[str], shortest: int = 40, longest: int = 300) -> list[str]:
    """The distinct sentences of `texts` between `shortest` and `longest` characters, in order."""
    seen: dict[str, None] = {}
    for text in texts:
        for s in re.split(r"(?<=[.!?])\s+", text):
            if shortest <= len(s) <= longest:
                seen.setdefault(s, None)
    return list(seen)


def _pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.int64)


def text_splits(paths: Sequence[str | os.PathLike], tokenize: Tokenize, *, pad_id: int, causal: bool = False,
                sizes: tuple[int, int, int] = (256, 256, 1000), length: int = 128, seed: int = 0,
                name: str = "text") -> tuple[Dataset, Dataset, Dataset]:
    """(calibration, validation, test) token data sets from text files, disjoint.

    Args:
        paths: the text files.
        tokenize: text → token ids (the model's own tokenizer, special tokens included).
        pad_id: the id that pads shorter sentences (encoders).
        causal: windows of `length` tokens with next-token targets, instead of sentences.
        sizes: samples in each split; the test split takes what is left, up to its size.
        length: tokens per window (causal), or the most per sentence (longer ones are cut).
        seed: the shuffle.
        name: the data set's name in reports.
    """
    texts = read_text(paths)
    if causal:
        ids = [t for text in texts for t in tokenize(text)]
        samples = [ids[i:i + length + 1] for i in range(0, len(ids) - length, length)]
    else:
        samples = [tokenize(s)[:length] for s in sentences(texts)]
    random.Random(seed).shuffle(samples)
    need = sizes[0] + sizes[1] + 1
    if len(samples) < need:
        raise DataError(f"the text files give {len(samples)} {'windows' if causal else 'sentences'}, fewer than the "
                        f"{need} that calibration ({sizes[0]}), validation ({sizes[1]}) and a test sample need.")
    cuts = [samples[:sizes[0]], samples[sizes[0]:sizes[0] + sizes[1]], samples[sizes[0] + sizes[1]:need - 1 + sizes[2]]]
    out = []
    for part in cuts:
        if causal:
            block = torch.tensor(part, dtype=torch.int64)
            out.append(Dataset(block[:, :-1].contiguous(), block[:, 1:].contiguous(), 0, name))
        else:
            order = sorted(range(len(part)), key=lambda i: len(part[i]))  # batches of like lengths pad less
            x = _pad([part[i] for i in order], pad_id)
            out.append(Dataset(x, torch.zeros(len(part), dtype=torch.int64), 0, name))
    return out[0], out[1], out[2]
