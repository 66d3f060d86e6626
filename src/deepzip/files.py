"""Atomic writes: whatever deepzip writes appears whole under its name, or not at all."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    On any error the temporary file is removed and an earlier file at `path` is untouched. A
    kill leaves it under a dot-name that carries the writer's process id: the next write of the
    same name removes those whose process is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should look like any other write
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _sweep(path: Path) -> None:
    """Remove the temporaries of earlier writes of `path` whose process no longer runs."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            stale.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not every platform can open a dir.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_dir(tmp: Path, out: Path, marker: str, what: str) -> None:
    """Rename the directory `tmp`, built aside, to `out`: an earlier export at `out` (one holding
    the file `marker`) is swapped out and removed; an empty directory is taken; anything else is
    refused (ConfigError naming `what`, the option that chose `out`), so no user file is lost.

    Example:
        >>> replace_dir(Path(".out.tmp"), Path("out"), ".deepzip-c-export", "--c")
    """
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / marker).exists()):
            raise ConfigError(f"{what} {out} exists and is neither empty nor an earlier export of this kind; choose a "
                              f"new directory.")
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
        os.rename(out, old / "x")
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old / "x", out)  # the earlier export back in place
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
