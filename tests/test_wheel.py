"""deepzip as a user installs it: a wheel built from this tree, installed into a fresh virtualenv,
finds its shipped recipes by name and runs one."""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

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
