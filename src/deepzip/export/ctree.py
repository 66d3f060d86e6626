"""Where libdzip's C sources are, and where they can be built.

A checkout keeps them at the repository's root (libdzip/); the package reaches them as
deepzip/libdzip (a symbolic link in the checkout), and a wheel ships the same files there as
package data, so `deepzip export --c` and `--web` work from an installed deepzip with only a C
compiler (clang for WebAssembly) on the machine. Building (the runtime's dzip-dump, which
measures a file's memory, and the WebAssembly module) writes build/ folders: in place where the
sources are writable (a checkout, a user's virtualenv), else in a copy under the user's cache,
made once per deepzip version.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .._version import __version__
from ..errors import ConfigError

SOURCES = Path(__file__).resolve().parents[1] / "libdzip"
# What a wheel carries (pyproject.toml's package data lists the same globs, under libdzip/).
SHIPPED = ("Makefile", "include/*.h", "src/*.c", "src/*.h", "tools/*.c", "runtime/Makefile", "runtime/include/*.h",
           "runtime/src/*.c", "runtime/src/*.h", "runtime/template/Makefile", "runtime/template/*.c",
           "runtime/template/cortex-m/*", "wasm/Makefile", "wasm/dzip.js", "wasm/src/*", "wasm/page/*")


def sources() -> Path:
    """The libdzip tree this deepzip ships, checked to be whole.

    Examples:
        >>> (sources() / "include" / "dzip.h").is_file()
        True
    """
    needed = ("include/dzip.h", "runtime/include/dzrt.h", "runtime/Makefile", "wasm/Makefile")
    missing = [n for n in needed if not (SOURCES / n).is_file()]
    if missing:
        raise ConfigError(f"this installation of deepzip lacks libdzip's C sources ({SOURCES / missing[0]} is "
                          f"missing); reinstall it from a wheel or use a checkout of the repository.")
    return SOURCES


def _cache() -> Path:
    env = os.environ.get("DEEPZIP_HOME")  # the tests' sandbox, or a user's choice
    if env:
        return Path(env) / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepzip"


def buildable() -> Path:
    """A libdzip tree whose build/ folders can be written: the shipped one where it is writable,
    else a copy of it in the user's cache.

    Examples:
        >>> (buildable() / "runtime" / "Makefile").is_file()
        True
    """
    src = sources()
    if all(os.access(d, os.W_OK) for d in (src, src / "runtime", src / "wasm")):
        return src
    dst = _cache() / f"libdzip-{__version__}"
    if not (dst / ".complete").is_file():
        for pattern in SHIPPED:
            for f in src.glob(pattern):
                if f.is_file():
                    (dst / f.parent.relative_to(src)).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dst / f.relative_to(src))
        (dst / ".complete").write_text(__version__ + "\n")
    return dst
