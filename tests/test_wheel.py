"""deepzip as a user installs it: a wheel built from this tree, installed into a fresh virtualenv,
finds its shipped recipes by name and runs one."""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from deepzip.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_in_a_fresh_venv_runs_a_shipped_recipe_by_name(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("deepzip-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The fresh venv borrows this one's dependencies (torch is gigabytes) but not its deepzip: a
    # path line in a .pth adds the directory without running the editable install's own .pth.
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import deepzip; print(deepzip.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.returncode == 0 and str(venv) in where.stdout, where.stdout + where.stderr  # the wheel's, not ours
    listing = subprocess.run([str(venv / "bin" / "deepzip"), "recipes"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert listing.returncode == 0 and "best-lenet300" in listing.stdout and "paper-lenet5" in listing.stdout
    run = subprocess.run([str(venv / "bin" / "deepzip"), "compress", "--recipe", "paper-lenet300", "--data",
                          "synthetic", "--limit", "300", "--out", str(tmp_path / "out"), "--quiet"],
                         capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["recipe"]["model"] == "lenet300" and report["file_bytes"] > 0 and "test" in report
    _exports_c_from_the_wheel(venv, env, tmp_path)


def _exports_c_from_the_wheel(venv: Path, env: dict, tmp_path: Path) -> None:
    """The installed wheel's `deepzip export --c`, from outside the source tree, with only gcc:
    the C sources it copies are the wheel's own (package data), and the program it builds gives
    dz.load's top-1 on 300 test images."""
    import numpy as np
    import torch

    import deepzip as dz
    from deepzip.data import load

    export = subprocess.run([str(venv / "bin" / "deepzip"), "export", str(tmp_path / "out" / "model.dzip"), "--c",
                             str(tmp_path / "c")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-2000:]
    made = subprocess.run(["make", "-C", str(tmp_path / "c"), "-j2", "model"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    x = load("synthetic", train=False, limit=300).x
    run = subprocess.run([str(tmp_path / "c" / "model")], input=x.numpy().astype(np.float32).tobytes(),
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    logits = np.frombuffer(run.stdout, np.float32).reshape(len(x), -1)
    with torch.no_grad():
        want = dz.load(tmp_path / "out" / "model.dzip")(x).numpy()
    assert (logits.argmax(1) == want.argmax(1)).mean() == 1.0
    assert np.abs(logits - want).max() <= 1e-4 * np.abs(want).max()


def test_a_read_only_installation_builds_libdzip_in_a_copy_under_the_cache(tmp_path, monkeypatch):
    import shutil

    from deepzip.export import ctree

    shipped = tmp_path / "site" / "libdzip"
    for pattern in ctree.SHIPPED:
        for f in ctree.sources().glob(pattern):
            (shipped / f.parent.relative_to(ctree.sources())).mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, shipped / f.relative_to(ctree.sources()))
    monkeypatch.setattr(ctree, "SOURCES", shipped)
    monkeypatch.setenv("DEEPZIP_HOME", str(tmp_path / "home"))
    assert ctree.buildable() == shipped  # writable: built in place, as in a checkout or a user's venv
    # A system-wide installation (root writes anywhere, so its refusal is simulated)
    monkeypatch.setattr(ctree.os, "access", lambda path, mode: not str(path).startswith(str(shipped)))
    tree = ctree.buildable()
    assert tree.is_relative_to(tmp_path / "home") and (tree / "runtime" / "src" / "run.c").is_file()
    assert {p.relative_to(tree) for p in tree.rglob("*.c")} == {p.relative_to(shipped) for p in shipped.rglob("*.c")}
    (tree / "runtime" / "src" / "run.c").write_text("changed")
    assert ctree.buildable() == tree and (tree / "runtime" / "src" / "run.c").read_text() == "changed"  # copied once
    monkeypatch.setattr(ctree, "SOURCES", tmp_path / "nothing")
    with pytest.raises(ConfigError, match="lacks libdzip's C sources"):
        ctree.sources()
