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

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ModelMismatchError

_SUBCLASSES: dict[type, type] = {}


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


def _forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    base = type(self).deepzip_hf_class
    key = "input_ids" if not torch.is_floating_point(x) else "pixel_values"
    if "use_cache" in base.forward.__code__.co_varnames:
        kwargs.setdefault("use_cache", False)
    logits = base.forward(self, *args, **{key: x}, return_dict=True, **kwargs).logits
    return logits.transpose(1, 2) if logits.dim() == 3 else logits  # N×T×V → N×V×T: classes on dimension 1


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
    config = model.config.to_dict()
    config.pop("transformers_version", None)
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
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"--hf {path}: transformers cannot read it ({str(e).splitlines()[0]}).") from None
    return as_logits_(model.eval())


def build_hf(record: dict[str, Any], where: str, max_elements: int | None = None) -> nn.Module:
    """The architecture a file's `{"hf": …}` record names, with fresh weights for the file to fill.

    The model is first built on the meta device to count its parameters: a record asking for
    more than the file can hold (`max_elements`) is refused before any memory is taken.
    """
    transformers = transformers_module()
    name, config = record.get("class"), record.get("config")
    if not (isinstance(name, str) and isinstance(config, dict) and isinstance(config.get("model_type"), str)):
        raise ModelMismatchError(f"{where} records a Hugging Face architecture that is malformed.")
    try:
        kwargs = {k: v for k, v in config.items() if k != "model_type"}
        cfg = transformers.AutoConfig.for_model(config["model_type"], **kwargs)
        cfg.architectures = [name]
        cls = _architecture(transformers, cfg, where)
        with torch.device("meta"):
            probe = cls(cfg)
        count = sum(p.numel() for p in probe.parameters())
        if max_elements is not None and count > max_elements:
            raise ModelMismatchError(f"{where} records a {name} of {count:,} parameters, more than the file can hold.")
        model = cls(cfg)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelMismatchError(f"{where} records a Hugging Face architecture transformers cannot build "
                                 f"({str(e).splitlines()[0]}).") from None
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
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.__class__ = subclass


def config_summary(path: Path) -> str:
    """One line naming a directory's architecture, for messages."""
    try:
        return ", ".join(json.loads((path / "config.json").read_text()).get("architectures") or ["?"])
    except (OSError, ValueError):
        return "?"
