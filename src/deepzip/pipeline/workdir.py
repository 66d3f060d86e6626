"""A run's directory: refusing a file as --out, the lock against a second run, the checkpoint
a killed run resumes from (and refusing another run's), and the run's identifying key."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, RunStateError
from ..files import process_alive
from ..train import read_checkpoint
from ..train.distributed import barrier
from .recipe import Recipe

if TYPE_CHECKING:
    from .context import RunContext

CHECKPOINT = Path("checkpoints") / "last.safetensors"


def run_key(recipe: Recipe, what: dict[str, Any]) -> str:
    """A short hash of what must be equal for a checkpoint (or a search) to belong to this run."""
    return hashlib.sha256(json.dumps({"recipe": recipe.to_dict(), **what}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def check_out(out_dir: str | os.PathLike) -> Path:
    """A run's directory: anything but an existing file (ConfigError)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory.")
    return out


@contextlib.contextmanager
def lock(out: Path):
    """DIR/.lock for the length of a run: a second run into the same DIR is refused, not mixed in.

    The lock holds the owner's host and process id; one left by a killed run (its process gone)
    is taken over, so --resume after a kill -9 needs no cleaning up."""
    path = out / ".lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            host, _, pid = path.read_text().partition(" ") if path.exists() else ("", "", "")
            if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
                path.unlink(missing_ok=True)  # its owner was killed
                continue
            raise RunStateError(f"{out} is in use by another deepzip run (process {pid or '?'} on {host or '?'}); "
                                f"wait for it, or choose another --out.") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def resume_point(run: RunContext, resume: bool) -> dict[str, Any] | None:
    """Restore the last checkpoint if asked to and it is this run's; refuse another run's."""
    path = run.out / CHECKPOINT
    if not path.exists():
        if resume:
            run.log(f"no checkpoint in {path.parent}: starting from the beginning")
        return None
    _, info = read_checkpoint(path)
    if (info["meta"] or {}).get("key") != run.key:
        raise RunStateError(f"{run.out} holds checkpoints of another run (a different recipe, data or --from); "
                            f"choose another --out, or delete {path.parent} to start this run there.")
    if not resume:
        barrier()  # every rank has read it before rank 0 removes it
        if run.main:
            shutil.rmtree(path.parent)
        return None
    where = run.restore()
    run.log(f"resuming at stage {run.stage_index + 1} ({'within it' if where else 'from its start'}) "
            f"from {path}")
    return where
