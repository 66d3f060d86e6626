"""The `deepzip` command end to end on the synthetic set: files, reports, errors."""
import json

import pytest
import yaml
from typer.testing import CliRunner

from deepzip.cli import app

RECIPE = {
    "model": "lenet300", "dataset": "synthetic", "coder": "auto", "index_bits": "auto",
    "dense": {"epochs": 2, "lr": 2e-3},
    "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}, "steps": 2, "retrain": {"epochs": 1, "lr": 1e-3}},
    "share": {"bits": 4, "finetune": {"epochs": 0.5, "lr": 1e-4}},
}


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    (out / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    result = CliRunner().invoke(app, ["compress", "--recipe", str(out / "r.yaml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_compress_writes_file_and_reports(compressed):
    out, output = compressed
    report = json.loads((out / "report.json").read_text())
    for key in ("model", "dataset", "dense_bytes", "file_bytes", "ratio", "accuracy", "sparsity", "seconds", "layers"):
        assert key in report
    assert report["file_bytes"] == (out / "model.dzip").stat().st_size
    assert report["ratio"] == pytest.approx(report["dense_bytes"] / report["file_bytes"], rel=1e-3)
    assert report["dense_bytes"] == 4 * 266_610
    acc = report["accuracy"]
    assert set(acc) >= {"dense", "pruned", "quantized", "from_file"}
    assert acc["from_file"] == acc["quantized"] and report["identical_predictions"]
    assert acc["dense"] > 50  # the synthetic set is learnable: 10 classes, chance is 10 %
    assert report["sparsity"] == pytest.approx((0.9 * 235_200 + 0.8 * 30_000 + 0.5 * 1_000) / 266_200, abs=1e-3)
    fc1 = next(r for r in report["layers"] if r["layer"] == "fc1.weight")
    assert fc1["kept"] == pytest.approx(0.1, abs=1e-3) and fc1["weight_bits"] <= 4
    assert "fc1.weight" in (out / "report.md").read_text() and "fc1.weight" in output
    assert (out / "dense.safetensors").exists()


def test_inspect_evaluate_decompress(compressed, tmp_path):
    out, _ = compressed
    runner = CliRunner()
    info = json.loads(runner.invoke(app, ["inspect", str(out / "model.dzip"), "--json"]).output)
    assert info["file_bytes"] == (out / "model.dzip").stat().st_size and info["arch"]["name"] == "lenet300"
    text = runner.invoke(app, ["inspect", str(out / "model.dzip")]).output
    assert "smaller than" in text and "fc2.weight" in text
    ev = runner.invoke(app, ["evaluate", str(out / "model.dzip"), "--data", "synthetic", "--json"])
    report = json.loads((out / "report.json").read_text())
    assert json.loads(ev.output)["accuracy"] == pytest.approx(report["accuracy"]["from_file"])
    dec = runner.invoke(app, ["decompress", str(out / "model.dzip"), "--out", str(tmp_path / "d.safetensors")])
    assert dec.exit_code == 0 and (tmp_path / "d.safetensors").stat().st_size > 4 * 266_610


def test_compress_from_checkpoint_skips_dense_training(compressed, tmp_path):
    out, _ = compressed
    result = CliRunner().invoke(app, ["compress", "--recipe", str(out / "r.yaml"), "--from", str(out / "dense.safetensors"),
                                      "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    first = json.loads((out / "report.json").read_text())
    again = json.loads((tmp_path / "report.json").read_text())
    assert again["accuracy"]["dense"] == first["accuracy"]["dense"]
    assert not (tmp_path / "dense.safetensors").exists()


@pytest.mark.parametrize("args, words", [
    (["inspect", "nope.dzip"], "does not exist"),
    (["evaluate", "nope.dzip", "--data", "synthetic"], "does not exist"),
    (["compress", "--model", "resnet9000", "--out", "x"], "Unknown model"),
    (["compress", "--data", "mnist", "--out", "x", "--quiet"], "data-dir"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]


def test_corrupt_file_is_one_line(tmp_path):
    (tmp_path / "bad.dzip").write_bytes(b"DZIP" + b"\0" * 40)
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "bad.dzip")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1


def _one_error_line(result, words):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output


@pytest.mark.parametrize("extra, words", [
    (["--reps", "0"], "--reps must be at least 1, not 0"),
    (["--input-shape", "abc"], "--input-shape must be positive whole numbers"),
    (["--device", "tpu"], "device must be auto, cpu, cuda"),
])
def test_benchmark_mistakes_are_one_sentence(compressed, extra, words):
    out, _ = compressed
    _one_error_line(CliRunner().invoke(app, ["benchmark", str(out / "model.dzip"), *extra]), words)


def test_a_gpu_asked_for_where_there_is_none_is_one_sentence(compressed):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out, _ = compressed
    _one_error_line(CliRunner().invoke(app, ["benchmark", str(out / "model.dzip"), "--device", "cuda"]),
                    "sees no CUDA GPU")
    _one_error_line(CliRunner().invoke(app, ["evaluate", str(out / "model.dzip"), "--data", "synthetic",
                                             "--device", "cuda"]), "sees no CUDA GPU")


def test_evaluating_on_images_of_another_size_says_how_to_fix_it(compressed):
    out, _ = compressed
    runner = CliRunner()
    _one_error_line(runner.invoke(app, ["evaluate", str(out / "model.dzip"), "--data", "digits"]),
                    "takes 1×28×28 inputs but the digits test images are 1×8×8; pass --image-size 28")
    ok = runner.invoke(app, ["evaluate", str(out / "model.dzip"), "--data", "digits", "--image-size", "28", "--json"])
    assert ok.exit_code == 0 and 0 <= json.loads(ok.output)["accuracy"] <= 100


def test_inspect_accounts_for_every_byte(compressed):
    out, _ = compressed
    info = json.loads(CliRunner().invoke(app, ["inspect", str(out / "model.dzip"), "--json"]).output)
    assert sum(info["bytes"].values()) == info["file_bytes"] and info["bytes"]["unused"] == 0
    assert info["bytes"]["parameters"] == sum(r["bytes"] for r in info["layers"])
    text = CliRunner().invoke(app, ["inspect", str(out / "model.dzip")]).output
    assert f"= {info['file_bytes']:,}" in text


def test_out_mistakes_and_a_second_run_into_the_same_directory(compressed, tmp_path):
    out, _ = compressed
    runner = CliRunner()
    (tmp_path / "afile").write_text("keep me")
    _one_error_line(runner.invoke(app, ["compress", "--recipe", str(out / "r.yaml"), "--out", str(tmp_path / "afile")]),
                    "is a file, not a directory")
    assert (tmp_path / "afile").read_text() == "keep me"
    import os
    import socket

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}")  # a live process holds it
    _one_error_line(runner.invoke(app, ["compress", "--recipe", str(out / "r.yaml"), "--out", str(busy), "--quiet"]),
                    "is in use by another deepzip run")
    assert sorted(p.name for p in busy.iterdir()) == [".lock"]


def test_a_checkpoint_of_another_model_is_one_sentence(compressed, tmp_path):
    out, _ = compressed
    result = CliRunner().invoke(app, ["compress", "--model", "lenet5", "--data", "synthetic", "--from",
                                      str(out / "dense.safetensors"), "--out", str(tmp_path / "o"), "--quiet",
                                      "--limit", "64"])
    _one_error_line(result, "does not fit this model")
    assert not (tmp_path / "o" / "model.dzip").exists()


USER_MODEL = '''
import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                        torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)
'''


def test_files_of_a_users_own_module_are_served_by_every_command(tmp_path):
    import importlib.util

    from safetensors.torch import load_file

    import deepzip as dz

    (tmp_path / "mynet.py").write_text(USER_MODEL)
    spec = importlib.util.spec_from_file_location("mynet", tmp_path / "mynet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Tiny()
    dz.prune_(model, sparsity=0.9)
    dz.share_weights_(model, bits=4)
    dz.save(model, tmp_path / "mine.dzip")
    runner = CliRunner()
    dec = runner.invoke(app, ["decompress", str(tmp_path / "mine.dzip"), "--out", str(tmp_path / "mine.safetensors")])
    assert dec.exit_code == 0, dec.output
    tensors = load_file(tmp_path / "mine.safetensors")
    assert torch_equal(tensors["body.1.weight"], model.body[1].weight)
    _one_error_line(runner.invoke(app, ["evaluate", str(tmp_path / "mine.dzip"), "--data", "synthetic"]),
                    "--model-py module:Class")
    ok = runner.invoke(app, ["evaluate", str(tmp_path / "mine.dzip"), "--data", "synthetic", "--json",
                             "--model-py", f"{tmp_path / 'mynet.py'}:Tiny"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["accuracy"] == pytest.approx(dz.evaluate(model, dz.data.load("synthetic", train=False)))
    bench = runner.invoke(app, ["benchmark", str(tmp_path / "mine.dzip"), "--model-py", f"{tmp_path / 'mynet.py'}:Tiny",
                                "--input-shape", "1,28,28", "--reps", "2", "--json"])
    assert bench.exit_code == 0 and json.loads(bench.output)["sparse_weight_bytes"] > 0
    _one_error_line(runner.invoke(app, ["evaluate", str(tmp_path / "mine.dzip"), "--data", "synthetic",
                                        "--model-py", "nonexistent_pkg:Net"]), "cannot import it")


def torch_equal(a, b):
    import torch

    return torch.equal(a, b.detach())


def test_version():
    from deepzip import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"deepzip {__version__}"


@pytest.mark.parametrize("args, says", [(["compress", "--max-drop", "abc"], "Invalid value for '--max-drop'"),
                                        (["compress", "--nope"], "No such option: --nope"),
                                        (["export"], "Missing argument"),
                                        (["recode", "x.dzip", "--coder", "zip", "--out", "y.dzip"], "")])
def test_usage_errors_are_one_error_line_and_status_2(args, says):
    """What click would print as a boxed usage text, the console entry point says in one line."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "deepzip", *args], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr


WIDE = '''import torch.nn as nn


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.fc = nn.Linear(64, width)

    def forward(self, x):
        return self.fc(x)
'''


def test_recorded_arguments_asking_for_more_than_the_file_holds_are_refused_before_allocation(tmp_path):
    """A trusted class of the user's, with arguments a hostile (or hand-edited) header changed:
    counted on the meta device and refused in one sentence, with no gigabytes allocated first."""
    import subprocess
    import sys

    import deepzip as dz

    (tmp_path / "wide.py").write_text(WIDE)
    net = dz.models.from_spec(f"{tmp_path / 'wide.py'}:Net", {"width": 8})  # the user passed it: trusted
    net.deepzip_arch["kwargs"]["width"] = 10_000_000  # a Linear(64, 10^7): 2.6 GB of float32
    dz.save(net, tmp_path / "m.dzip")
    code = ("import resource, sys, deepzip as dz\ntry:\n    dz.load(sys.argv[1])\nexcept dz.DeepzipError as e:\n"
            "    print(e)\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.dzip")], capture_output=True, text=True,
                          timeout=300)
    message, peak_kb = proc.stdout.strip().splitlines()
    assert "m.dzip records wide.py:Net with {'width': 10000000}" in message and "more than the file can hold" in message
    assert int(peak_kb) < 1_500_000, peak_kb  # torch's own import is most of it
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "m.dzip"), "--data", "digits"])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "more than the file can hold" in lines[0], result.output
