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
