"""The layering of DESIGN.md is a contract (pyproject.toml, import-linter) that CI checks."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_the_package_keeps_its_layers(tmp_path):
    result = _lint(ROOT / "src", tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_a_backwards_import_breaks_the_contract(tmp_path):
    # The coders must never reach up into the pipeline: add such an import to a copy and lint it.
    shutil.copytree(ROOT / "src" / "deepzip", tmp_path / "src" / "deepzip",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "src" / "deepzip" / "encode" / "sparse.py", "a") as f:
        f.write("\nfrom ..pipeline import run  # noqa: E402,F401\n")
    result = _lint(tmp_path / "src", tmp_path)
    assert result.returncode == 1
    assert "BROKEN" in result.stdout and "deepzip.encode.sparse -> deepzip.pipeline" in result.stdout
