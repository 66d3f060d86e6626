"""Fixtures of the C reader's tests: libdzip built once per session (with gcc and clang, and
with sanitizers), and the corpus of .dzip files it is held against.

No skip when a compiler is missing: `make test` installs them, and a skipped build would hide
a broken one."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import corpus  # noqa: E402
import dzc  # noqa: E402


@pytest.fixture(scope="session")
def libdzip():
    """{"gcc", "clang", "asan", "default"}: the dzip-dump of each build of `make -C libdzip test`."""
    proc = subprocess.run(["make", "-C", str(dzc.LIBDZIP), "-j2", "test"], capture_output=True, text=True)
    assert proc.returncode == 0, f"make -C libdzip test failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    build = dzc.BUILD
    return {"default": build / "dzip-dump", "gcc": build / "gcc" / "dzip-dump", "clang": build / "clang" / "dzip-dump",
            "asan": build / "asan" / "dzip-dump"}


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """{label: path} of corpus.build: fixtures, the zoo in every coder, each feature, crafted edges."""
    import torch

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return corpus.build(tmp_path_factory.mktemp("corpus"))
