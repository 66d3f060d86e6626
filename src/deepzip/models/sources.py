"""How a model is rebuilt where a file is loaded, recorded as JSON (never pickle).

A model carries its record in `deepzip_arch`; `deepzip.save` writes it to the header's `arch`:

    {"name": "lenet300", "kwargs": {...}}                            the registry
    {"python": "nets.py:Net", "path": "/abs/nets.py", "sha256": …,   a user's own class, from a .py
     "kwargs": {...}}                                                file or an importable module
    {"hf": {"class": "GPT2LMHeadModel", "config": {...}}}             a Hugging Face architecture

Loading never runs code because a file names it. A registry model is deepzip's own code and a
Hugging Face one is `transformers`' own (never a model's remote code). A user's class is
imported only if the user gave deepzip that very file (the same path, the same sha256 of its
bytes) with --model-py on this machine before: deepzip remembers such files in a small trust
list (DEEPZIP_HOME, default ~/.config/deepzip, trusted-code.json), which no .dzip can extend.
A file from elsewhere gets one sentence saying what to pass instead.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError, DeepzipWarning, ModelMismatchError

TRUST_FILE = "trusted-code.json"


def home() -> Path:
    """Where deepzip keeps what it remembers between runs (the trust list)."""
    env = os.environ.get("DEEPZIP_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deepzip"


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _trust_list() -> list[dict[str, str]]:
    path = home() / TRUST_FILE
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def trust_(path: Path, digest: str, name: str) -> None:
    """Remember that the user had deepzip build `name` from the code at `path` with these bytes.

    Args:
        path: the .py file, resolved.
        digest: the sha256 of its bytes.
        name: the class or function in it that built the model.

    Examples:
        >>> trust_(Path("/home/me/nets.py"), sha256_of(Path("/home/me/nets.py")), "Net")
    """
    from ..files import write_text

    entry = {"path": str(path), "sha256": digest, "name": name}
    entries = _trust_list()
    if entry in entries:
        return
    try:
        write_text(home() / TRUST_FILE, json.dumps([*entries, entry], indent=1))
    except OSError as e:
        warnings.warn(f"deepzip could not remember {path} as code you gave it ({e.strerror}); files saved from it "
                      f"will need --model-py to load.", DeepzipWarning, stacklevel=3)


def trusted(path: str, name: str) -> str | None:
    """The sha256 the trust list holds for building `name` from `path`, or None."""
    return next((e.get("sha256") for e in _trust_list() if e.get("path") == path and e.get("name") == name), None)


def plain_json(value: Any, depth: int = 0) -> bool:
    """A value a record may carry: JSON's plain types, finite numbers, nested at most 8 deep.

    Args:
        value: anything.
        depth: how deep this value already sits.

    Examples:
        >>> plain_json({"width": 64, "blocks": [2, 2]}), plain_json(float("nan"))
        (True, False)
    """
    if value is None or isinstance(value, (bool, str, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= 8:
        return False
    if isinstance(value, list):
        return all(plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v, depth + 1) for k, v in value.items())
    return False


def _split_spec(spec: str) -> tuple[str, str]:
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"--model-py must look like package.module:Class or path/to/file.py:Class, not {spec!r}.")
    return where, name


def _module_file(module: str) -> Path | None:
    """The source file an importable module name resolves to, found without importing anything
    (importing a package runs its __init__)."""
    from importlib.machinery import PathFinder

    parts, search = module.split("."), None
    spec = None
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), search if search is None else list(search))
        if spec is None:
            spec = PathFinder.find_spec(".".join(parts[: i + 1]), [os.getcwd()]) if i == 0 else None
            if spec is None:
                return None
        if i < len(parts) - 1:
            search = spec.submodule_search_locations
            if search is None:
                return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin else None


def _import(where: str, spec: str) -> Any:
    """The module `where` names: a .py file, or an importable module (the working directory
    searched too, as `python -m` does)."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"--model-py: {path} is not a file.")
        name = f"deepzip_user_{path.stem}"
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module  # dataclasses and pickling-free introspection look their module up there
        try:
            loader.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    added = os.getcwd() not in sys.path
    if added:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(where)
    finally:
        if added:
            sys.path.remove(os.getcwd())


def python_model(spec: str, kwargs: dict[str, Any] | None = None, *, remember: bool = True) -> nn.Module:
    """Build a user's module from "package.module:Class" or "path/to/file.py:Class" with `kwargs`,
    recording how (so a .dzip saved from it can rebuild it on this machine without flags).

    This imports (runs) that code: it is done only when a user names it (--model-py), and with
    `remember` the file goes on deepzip's trust list (see the module's docstring).

    Args:
        spec: where the class (or a function returning an nn.Module) is.
        kwargs: its arguments (plain JSON values, recorded in the file).
        remember: put the file on the trust list.

    Examples:
        >>> net = python_model("mynets.py:TinyNet", {"width": 16})
    """
    where, name = _split_spec(spec)
    kwargs = dict(kwargs or {})
    if not plain_json(kwargs):
        raise ConfigError(f"--model-arg values must be plain numbers, strings, booleans or lists of them; "
                          f"{kwargs!r} is not.")
    try:
        module = _import(where, spec)
        factory = getattr(module, name)
    except ConfigError:
        raise
    except (ImportError, AttributeError, SyntaxError, OSError) as e:
        raise ConfigError(f"--model-py {spec}: cannot import it ({type(e).__name__}: {_first(e)}).") from None
    except Exception as e:  # the user's module raised while running its top level
        raise ConfigError(f"--model-py {spec}: importing it raised {type(e).__name__}: {_first(e)}.") from None
    if getattr(factory, "__module__", None) != module.__name__:
        # only what the file itself defines: not `run` imported from subprocess into it
        raise ConfigError(f"--model-py {spec}: {name} is not defined in {where} (it is imported there); name the "
                          f"class or function that file defines.")
    try:
        model = factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"--model-py {spec}: cannot build it with {kwargs or 'no arguments'} ({_first(e)}); pass "
                          f"its arguments with --model-arg key=value.") from None
    except Exception as e:
        raise ConfigError(f"--model-py {spec}: building it raised {type(e).__name__}: {_first(e)}.") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model-py {spec} built a {type(model).__name__}, not a torch.nn.Module.")
    source = Path(where).resolve() if where.endswith(".py") else _module_file(where)
    record: dict[str, Any] = {"python": spec if not where.endswith(".py") else f"{Path(where).name}:{name}",
                              "kwargs": kwargs}
    if source is not None and source.is_file() and source.suffix == ".py":  # compiled modules are never trusted
        record.update(path=str(source), sha256=sha256_of(source))
        if remember:
            trust_(source, record["sha256"], name)
    model.deepzip_arch = record
    return model


def rebuild_python(arch: dict[str, Any], where: str) -> nn.Module:
    """The user's class a record names, if it may be imported here (the trust list, above), else
    ConfigError saying what to pass.

    Args:
        arch: the header's `arch`: {"python": "nets.py:Net", "path", "sha256", "kwargs"}.
        where: the file's name, for messages.

    Examples:
        >>> rebuild_python(header["arch"], "model.dzip")
    """
    spec, kwargs = arch.get("python"), arch.get("kwargs", {})
    path, digest = arch.get("path"), arch.get("sha256")
    if not (isinstance(spec, str) and isinstance(kwargs, dict) and plain_json(kwargs)
            and isinstance(path, (str, type(None))) and isinstance(digest, (str, type(None)))):
        raise ModelMismatchError(f"{where} records a Python architecture that is malformed; pass the module to fill "
                                 f"(--model-py FILE.py:NAME, or deepzip.load(path, model=...)).")
    args = " ".join(f"--model-arg {k}={json.dumps(v)}" for k, v in kwargs.items())
    module, _, name = spec.rpartition(":")
    given = path if path and path.endswith(".py") else module
    hint = f"pass --model-py {given}:{name}{' ' + args if args else ''} (or deepzip.load(path, model=...))"
    # The trust list is asked first: a file names paths, and only the user's own are ever read.
    known = trusted(path, name) if path else None
    if known is None or known != digest:
        raise ConfigError(f"{where} was saved from {spec}, which deepzip imports only if you passed that file with "
                          f"--model-py on this machine and it has not changed; {hint}.")
    source = Path(path)
    if not source.is_file() or sha256_of(source) != digest:
        raise ConfigError(f"{where} was saved from {source}, which has changed or gone since (its sha256 differs); "
                          f"{hint}.")
    if source.suffix == ".py":
        return python_model(f"{source}:{name}", kwargs, remember=False)
    # an importable module: it must still resolve to the very file the user gave, before it is imported
    if _module_file(module) != source:
        raise ConfigError(f"{where} was saved from {spec}, which no longer resolves to {source}; {hint}.")
    return python_model(spec, kwargs, remember=False)


def _first(e: BaseException) -> str:
    """An exception's first line, for a one-sentence message."""
    return (str(e).splitlines() or [type(e).__name__])[0]


def describe(arch: dict[str, Any] | None) -> str:
    """A few words naming a record: "lenet300", "mynets.py:Net", "GPT2LMHeadModel (Hugging Face)".

    Examples:
        >>> describe({"name": "lenet300", "kwargs": {}})
        'lenet300'
    """
    if not isinstance(arch, dict):
        return "(custom module)"
    if "python" in arch:
        return str(arch["python"])
    if "hf" in arch and isinstance(arch["hf"], dict):
        return f"{arch['hf'].get('class')} (Hugging Face)"
    return str(arch.get("name"))
