"""The `deepzip` command: parses arguments, calls the API, prints. No logic of its own.

Here: the app, the one-line error rule every command runs under, --version. The commands live
beside it: train_commands.py holds those that train (compress, distill, sensitivity),
file_commands.py those that read a finished .dzip (inspect, evaluate, benchmark, report,
export, decompress, recode).
"""
from __future__ import annotations

import os

import typer

from ..errors import DeepzipError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compress trained PyTorch networks into small .dzip files (Deep Compression and beyond).")


def _fail(e: Exception | str) -> None:
    lines = str(e).strip().splitlines() or [type(e).__name__]
    typer.echo(f"error: {lines[0]}", err=True)  # one line, whatever raised it
    raise typer.Exit(2)


def _run(fn):
    """Bad input of any kind ends in one line on stderr and exit status 2, never a traceback
    (DEEPZIP_DEBUG=1 shows the traceback of an unexpected error)."""
    try:
        return fn()
    except (DeepzipError, OSError, typer.BadParameter) as e:
        _fail(e)
    except Exception as e:  # a bug or an input no check anticipated: still one line, and say which
        if os.environ.get("DEEPZIP_DEBUG"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e}")


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"deepzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Compress trained PyTorch networks into small .dzip files (Deep Compression and beyond).

    Errors are one line; set DEEPZIP_DEBUG=1 to see the traceback of an unexpected one.
    """


def main() -> None:
    """The console entry point (`deepzip`, `python -m deepzip`). A usage error (a bad number, an
    unknown option or choice, a missing argument) is one `error:` line and exit status 2, like
    every other error, rather than click's boxed usage text."""
    import sys

    try:  # typer 0.29 carries its own click
        from typer._click.exceptions import UsageError
    except ImportError:
        from click.exceptions import UsageError

    try:
        code = app(prog_name="deepzip", standalone_mode=False)
    except UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "deepzip"
        typer.echo(f"error: {e.format_message()} (see {where} --help)", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("error: interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


from . import file_commands, train_commands  # noqa: E402,F401  (register their commands on app)
