"""Hugging Face models (the optional `transformers` extra): read a model directory, run it the
way every deepzip stage calls a model, and write one back.

deepzip calls a model as `model(x)` and reads its classes on dimension 1 (N×C, or N×V×T for a
language model: what torch's cross_entropy takes). A Hugging Face model takes `input_ids=` (or
`pixel_values=`) and returns an output object, so `as_logits_` gives the model a subclass of its
own class, made here, whose forward does that translation. Being a subclass, not a wrapper,
every parameter keeps its Hugging Face name (recipes and reports name layers as the model card
does) and `save_pretrained` writes the original class. Nothing is ever downloaded, and a model's
own code (`trust_remote_code`) is never run.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ModelMismatchError
from ..limits import FILE_NAME, MAX_FILES

_SUBCLASSES: dict[type, type] = {}
# Config keys a file never carries: the writer's version, local paths (`_name_or_path`), and the
# attention implementation, which can name kernels transformers would fetch from the Hub.
_NOT_RECORDED = ("transformers_version", "attn_implementation")


def _layer_counts(config: dict[str, Any], where: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) of every count of layers in a config, nested ones included: any key that
    names layers (num_hidden_layers, n_layer, DistilBERT's n_layers, encoder_layers, …) and holds
    an integer (layer_norm_eps and layerdrop are floats, scale_attn_by_inverse_layer_idx a flag;
    a count of another type fails transformers' own build)."""
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _layer_counts(value, f"{where}{key}.")
        elif "layer" in str(key).lower() and isinstance(value, int) and not isinstance(value, bool):
            yield f"{where}{key}", value


def transformers_module():
    """`transformers`, imported on first use, or ConfigError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("Hugging Face models need the transformers package: pip install 'deepzip[hf]' "
                          "(or pip install transformers).") from None
    return transformers


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2's projections): a Linear whose weight is stored transposed,
    in_features × out_features. Recognised by name, so transformers need not be imported."""
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def _parameters(cls: type) -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(cls.forward).parameters)  # forward may be wrapped: not __code__


def _forward(self, x: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
    """deepzip's call, `model(x)` → logits with classes on dimension 1 (or, for a headless
    encoder, the mean of its last hidden states over the real tokens: a sentence embedding,
    N × hidden); and the Hugging Face call, `model(**tokenizer(texts))` with keywords only,
    answered by the model's own forward with its own output type."""
    base = type(self).deepzip_hf_class
    if x is None:
        return base.forward(self, *args, **kwargs)
    key = "input_ids" if not torch.is_floating_point(x) else "pixel_values"
    if "use_cache" in _parameters(base):
        kwargs.setdefault("use_cache", False)  # a cache per call is memory deepzip's loops never read
    pad = getattr(self.config, "pad_token_id", None)
    if key == "input_ids" and pad is not None and not getattr(self.config, "is_decoder", False) \
            and "attention_mask" in _parameters(base) and is_headless(self):
        real = x != pad
        width = int(real.any(0).nonzero().max()) + 1 if bool(real.any()) else 1
        x = x[:, :width]  # columns of padding alone are work that changes nothing
        kwargs.setdefault("attention_mask", real[:, :width].long())  # padding is not a token of the sentence
    output = base.forward(self, *args, **{key: x}, return_dict=True, **kwargs)
    if is_headless(self):
        hidden = output.last_hidden_state
        mask = kwargs.get("attention_mask", torch.ones(hidden.shape[:2], device=hidden.device))
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    logits = output.logits
    return logits.transpose(1, 2) if logits.dim() == 3 else logits  # N×T×V → N×V×T: classes on dimension 1


def is_headless(model: nn.Module) -> bool:
    """A base model (BertModel, AutoModel): hidden states out, no head that makes logits."""
    return getattr(model, "base_model", None) is model


def as_logits_(model: nn.Module) -> nn.Module:
    """Make a Hugging Face model callable as `model(x) -> logits`, classes on dimension 1, in
    place (its class becomes a subclass of its own; nothing else changes), and record its
    architecture (`{"hf": {"class", "config"}}`) so a .dzip can rebuild it.

    Examples:
        >>> lm = as_logits_(GPT2LMHeadModel(config)); lm(ids).shape   # N×V×T
    """
    base = getattr(type(model), "deepzip_hf_class", type(model))
    if base not in _SUBCLASSES:
        _SUBCLASSES[base] = type(base.__name__, (base,), {"forward": _forward, "deepzip_hf_class": base,
                                                          "__module__": base.__module__})
    model.__class__ = _SUBCLASSES[base]
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_") and k not in _NOT_RECORDED}
    model.deepzip_arch = {"hf": {"class": base.__name__, "config": config}}
    return model


def _architecture(transformers, config, where: str):
    names = getattr(config, "architectures", None) or []
    if getattr(config, "auto_map", None):
        raise ConfigError(f"{where}: its config asks for the model's own code (auto_map), which deepzip never runs.")
    if not names:
        return transformers.AutoModel
    cls = getattr(transformers, names[0], None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        raise ConfigError(f"{where}: its architecture {names[0]!r} is not a model class of transformers "
                          f"{transformers.__version__}.")
    return cls


def load_hf_dir(path: str | Path) -> nn.Module:
    """A Hugging Face model directory (config.json + safetensors weights), read offline, as a
    logits model (`as_logits_`).

    Examples:
        >>> model = load_hf_dir("my-gpt2/")
    """
    transformers = transformers_module()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"--hf {path} is not a Hugging Face model directory: it has no config.json.")
    if not any(path.glob("*.safetensors")):
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise ConfigError(f"--hf {path} holds no safetensors weights"
                          + (f" (only {', '.join(found)}, which deepzip does not unpickle)" if found else "")
                          + "; save the model with save_pretrained(DIR) (safetensors is its default).")
    transformers.utils.logging.disable_progress_bar()  # deepzip shows its own progress, one line per stage
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        cls = _architecture(transformers, config, f"--hf {path}")
        model = cls.from_pretrained(path, local_files_only=True, use_safetensors=True, trust_remote_code=False)
    except ConfigError:
        raise
    except Exception as e:  # transformers raises whatever its loaders raise
        raise ConfigError(f"--hf {path}: transformers cannot read it ({type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0]}).") from None
    model = as_logits_(model.eval())
    model.deepzip_files = carried_files(path)
    return model


CARRIED_SUFFIXES = (".json", ".txt", ".model")  # tokenizers (vocab, merges, SentencePiece), configs beside them
MAX_CARRIED_BYTES = 16 << 20


def carried_files(path: str | Path) -> dict[str, bytes]:
    """The files of a Hugging Face directory a .dzip carries beside the weights: its tokenizer
    (tokenizer.json, vocab.txt, merges.txt, *.model, their configs), generation_config.json and
    sentence-transformers' module configs, at the top level and one folder down; not config.json
    (the file records the architecture itself), not weights, nothing over 16 MiB.

    Examples:
        >>> sorted(carried_files("all-MiniLM-L6-v2/"))[:3]
        ['1_Pooling/config.json', 'config_sentence_transformers.json', 'modules.json']
    """
    path, out = Path(path), {}
    for f in sorted([*path.glob("*"), *path.glob("*/*")]):
        name = f.relative_to(path).as_posix()
        if (f.is_file() and not f.is_symlink() and f.suffix in CARRIED_SUFFIXES and name != "config.json"
                and not name.startswith(".") and f.stat().st_size <= MAX_CARRIED_BYTES
                and re.fullmatch(FILE_NAME, name)):
            out[name] = f.read_bytes()
    return dict(list(out.items())[:MAX_FILES])


def build_hf(record: dict[str, Any], where: str, max_elements: int | None = None,
             max_layers: int | None = None) -> nn.Module:
    """The architecture a file's `{"hf": …}` record names, with fresh weights for the file to fill.

    A record is untrusted: keys that could reach the network or the file system are dropped,
    layer counts above the file's own tensor count are refused before anything is built, the
    model is built on the meta device first to count its parameters (refused above
    `max_elements`, what the file can hold), and nothing may be fetched meanwhile.

    Args:
        record: the header's `arch["hf"]`: {"class": "GPT2LMHeadModel", "config": {...}}.
        where: the file's name, for messages.
        max_elements: the most parameters the file can hold (its element budget).
        max_layers: the most layers it can describe (its number of tensor entries).

    Examples:
        >>> model = build_hf(header["arch"]["hf"], "gpt2.dzip", max_elements=10**8, max_layers=300)
    """
    transformers = transformers_module()
    name, config = record.get("class"), record.get("config")
    if not (isinstance(name, str) and isinstance(config, dict) and isinstance(config.get("model_type"), str)):
        raise ModelMismatchError(f"{where} records a Hugging Face architecture that is malformed.")
    kwargs = {k: v for k, v in config.items() if k != "model_type" and not k.startswith("_") and k not in _NOT_RECORDED}
    for key, value in _layer_counts(kwargs):
        if not 0 <= value <= (max_layers or 1 << 16):
            raise ModelMismatchError(f"{where} records a {name} with {key}={value!r}, more layers than the file holds.")
    offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in a file may make transformers fetch anything
    try:
        cfg = transformers.AutoConfig.for_model(config["model_type"], **kwargs)
        cfg.architectures = [name]
        cls = _architecture(transformers, cfg, where)
        with torch.device("meta"):
            probe = cls(cfg)
        count = sum(t.numel() for t in [*probe.parameters(), *probe.buffers()])
        if max_elements is not None and count > max_elements:
            raise ModelMismatchError(f"{where} records a {name} of {count:,} parameters, more than the file can hold.")
        model = cls(cfg)
    except (ConfigError, ModelMismatchError):
        raise
    except Exception as e:  # a config transformers cannot build raises anything from anywhere
        raise ModelMismatchError(f"{where} records a Hugging Face architecture transformers cannot build "
                                 f"({type(e).__name__}: {(str(e).splitlines() or [''])[0]}).") from None
    finally:
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline
    return as_logits_(model)


def save_hf_dir(model: nn.Module, out: str | Path) -> None:
    """Write `model` (a logits model of a Hugging Face class, dense) as a directory that
    `from_pretrained(out)` loads: config.json and model.safetensors, written aside and renamed
    into place, so a failure leaves nothing half-written.

    Examples:
        >>> save_hf_dir(dz.load("gpt2.dzip"), "gpt2-out/")
    """
    base = getattr(type(model), "deepzip_hf_class", None)
    if base is None:
        raise ConfigError("--hf writes Hugging Face models only; this file holds another architecture "
                          "(deepzip decompress FILE --out model.safetensors writes any file's tensors).")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--hf {out} exists and is not an empty directory; choose a new one.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    subclass = type(model)
    transformers_module().utils.logging.disable_progress_bar()
    try:
        model.__class__ = base  # the original class, so the config names it and from_pretrained builds it
        model.save_pretrained(tmp, safe_serialization=True)
        for name, data in getattr(model, "deepzip_files", {}).items():  # the tokenizer the file carried
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if name != "config.json":
                (tmp / name).write_bytes(data)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.__class__ = subclass
