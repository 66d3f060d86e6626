"""Your model, your data, your tolerance: `deepzip compress --model-py … --max-drop`, the search
behind it, and the validation split every choice is made on."""
import json
import math
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import deepzip as dz
from deepzip.cli import app
from deepzip.pipeline.budgets import Budgets
from deepzip.pipeline.search import next_ratio

USER_NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """A residual add, batch norm and a depthwise convolution."""

        def __init__(self, width=12, classes=10):
            super().__init__()
            self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
            self.pw = nn.Conv2d(width, width, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.head = nn.Linear(width * 16, 48)
            self.out = nn.Linear(48, classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.stem(x)))
            x = x + torch.relu(self.bn2(self.pw(self.dw(x))))
            x = nn.functional.max_pool2d(x, 2)
            return self.out(torch.relu(self.head(x.flatten(1))))
''')
QUIET = {"progress": False, "log": lambda *a: None}
FAST = ("prune:\n  steps: 1\n  retrain: {epochs: 3, lr: 0.002}\n"
        "share:\n  finetune: {epochs: 1, lr: 0.0001}\n")


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """mynet.py:Net trained on digits' training split minus the validation split a run holds out."""
    where = tmp_path_factory.mktemp("user")
    (where / "mynet.py").write_text(USER_NET)
    torch.manual_seed(0)  # the initial weights too: the same trained model whatever ran before
    net = dz.models.from_spec(f"{where / 'mynet.py'}:Net", {"width": 12})
    train = dz.data.load("digits", train=True)
    fit, _ = dz.data.splits.holdout(train, 0.1, seed=0)
    dz.train(net, fit, epochs=12, lr=3e-3, progress=False)
    save_file(net.state_dict(), where / "trained.safetensors")
    torch.save(net.state_dict(), where / "trained.pt")
    (where / "fast.yaml").write_text(FAST)
    return where


def _one_error_line(result, words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and words in lines[0], result.output


def test_your_own_module_compressed_to_a_drop_on_validation_then_served_without_flags(user_model, tmp_path):
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["compress", "--model-py", f"{user_model / 'mynet.py'}:Net", "--model-arg", "width=12",
                                 "--from", str(user_model / "trained.safetensors"), "--data", "digits",
                                 "--recipe", str(user_model / "fast.yaml"), "--max-drop", "1.0",
                                 "--max-candidates", "5", "--confidence", "0.5", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    search = json.loads((out / "search.json").read_text())
    assert all(c["accepted"] == (c["drop"] <= 1.0) for c in search["candidates"])  # 0.5: the drop alone
    chosen = next(c for c in search["candidates"] if c["dir"] == search["chosen"])
    assert chosen["accepted"] and chosen["drop"] <= 1.0
    assert chosen["bytes"] == min(c["bytes"] for c in search["candidates"] if c.get("accepted"))
    assert (out / "model.dzip").read_bytes() == (out / "candidates" / chosen["dir"].split("/")[-1] / "model.dzip").read_bytes()
    assert dz.inspect(out / "model.dzip")["ratio"] >= 5
    # validation: held out of digits' 1,437 training images, seeded, recorded
    assert search["validation"] == {"source": "held out", "fraction": 0.1, "seed": 0, "size": 144}
    # the test split: read once, for the chosen file; no candidate's report has it
    report = json.loads((out / "report.json").read_text())
    assert set(report["test"]) == {"dense", "from_file", "drop"}
    assert all("test" not in json.loads((out / "candidates" / c["dir"].split("/")[-1] / "report.json").read_text())
               for c in search["candidates"])
    assert math.isclose(report["test"]["drop"], report["test"]["dense"] - report["test"]["from_file"], abs_tol=1e-3)
    assert (out / "report.html").stat().st_size > 20_000 and (out / "search.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "sensitivity.json").is_file()
    # the file records how to rebuild the module: no --model-py needed to serve it
    arch = dz.inspect(out / "model.dzip")["arch"]
    assert arch["python"] == "mynet.py:Net" and arch["kwargs"] == {"width": 12} and len(arch["sha256"]) == 64
    ev = runner.invoke(app, ["evaluate", str(out / "model.dzip"), "--data", "digits", "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output)["accuracy"] == pytest.approx(report["test"]["from_file"], abs=1e-4)
    bench = runner.invoke(app, ["benchmark", str(out / "model.dzip"), "--reps", "2", "--json"])
    assert bench.exit_code == 0, bench.output
    onnx = runner.invoke(app, ["export", str(out / "model.dzip"), "--onnx", str(tmp_path / "m.onnx")])
    assert onnx.exit_code == 0 and (tmp_path / "m.onnx").stat().st_size > 1000


def test_a_file_from_changed_or_unknown_code_says_what_to_pass(user_model, tmp_path, monkeypatch):
    net = dz.models.from_spec(f"{user_model / 'mynet.py'}:Net", {"width": 12})
    dz.save(net, tmp_path / "m.dzip")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DEEPZIP_HOME", str(tmp_path / "home"))  # another user: nothing trusted
    with pytest.raises(dz.ConfigError, match=r"imports only if you passed that file with --model-py on this machine "
                                             r"and it has not changed; pass --model-py .*mynet.py:Net --model-arg "
                                             r"width=12"):
        dz.load(tmp_path / "m.dzip")
    copy = tmp_path / "mynet.py"
    copy.write_text(USER_NET + "\n# changed\n")
    header = dz.inspect(tmp_path / "m.dzip")
    assert header["arch"]["path"] == str(user_model / "mynet.py")
    back = dz.load(tmp_path / "m.dzip", model=dz.models.from_spec(f"{copy}:Net", {"width": 12}))  # always works
    assert torch.equal(back.head.weight, net.head.weight)


def test_the_api_takes_dataloaders_and_returns_what_it_made(user_model, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    net = dz.models.from_spec(f"{user_model / 'mynet.py'}:Net", {"width": 12})
    dz.load_checkpoint(net, user_model / "trained.safetensors")
    train, test = dz.data.load("digits", train=True), dz.data.load("digits", train=False)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=64, shuffle=True)
    result = dz.compress(net, loader, DataLoader(TensorDataset(test.x, test.y), batch_size=256),
                         recipe={"prune": {"sparsity": {"head": 0.8}, "steps": 1, "retrain": {"epochs": 1}},
                                 "share": {"bits": 5, "finetune": {"epochs": 1}}},
                         out=tmp_path / "api", **QUIET)
    assert isinstance(result, dz.CompressResult) and result.path.is_file() and result.search is None
    assert result.ratio == pytest.approx(result.dense_bytes / result.file_bytes, rel=0.01)
    assert result.validation["drop"] == pytest.approx(result.validation["dense"] - result.validation["from_file"], abs=1e-4)
    assert result.report["validation"]["size"] == 144 and result.report["validation"]["source"] == "held out"
    assert set(result.test) == {"dense", "from_file", "drop"}
    back = dz.load(result.path, model=dz.models.from_spec(f"{user_model / 'mynet.py'}:Net", {"width": 12}))
    assert dz.evaluate(back, test) == pytest.approx(result.test["from_file"], abs=1e-4)


def test_a_target_no_candidate_reaches_names_the_closest_and_keeps_every_file(user_model, tmp_path):
    # a starting recipe that keeps a weight in twenty and a target of a twentieth of a point: two
    # candidates, both written, neither within it
    (tmp_path / "harsh.yaml").write_text(FAST.replace("prune:\n", "prune:\n  sparsity: {stem: 0.7, dw: 0.7, pw: 0.8, "
                                                                    "head: 0.95, out: 0.8}\n"))
    result = CliRunner().invoke(app, ["compress", "--model-py", f"{user_model / 'mynet.py'}:Net", "--model-arg",
                                      "width=12", "--from", str(user_model / "trained.pt"), "--data", "digits",
                                      "--recipe", str(tmp_path / "harsh.yaml"), "--max-drop", "0.05",
                                      "--max-candidates", "2", "--val-split", "0.2", "--out", str(tmp_path / "o"),
                                      "--quiet"])
    _one_error_line(result, "no candidate kept the validation accuracy within 0.05 of the dense model")
    assert "closest: #" in result.output and "every candidate's file is kept" in result.output, result.output
    search = json.loads((tmp_path / "o" / "search.json").read_text())
    assert search["validation"]["size"] == 287 and not any(c["accepted"] for c in search["candidates"])
    finished = [c for c in search["candidates"] if "failed" not in c]  # a collapsed run writes no file
    assert finished and len(list((tmp_path / "o" / "candidates").glob("*/model.dzip"))) == len(finished)
    assert not (tmp_path / "o" / "model.dzip").exists()


@pytest.mark.parametrize("args, words", [
    (["--model-py", "mynet.py"], "must look like package.module:Class or path/to/file.py:Class"),
    (["--model-py", "missing.py:Net"], "missing.py is not a file"),
    (["--model-py", "broken.py:Net"], "importing it raised ZeroDivisionError"),
    (["--model-py", "mynet.py:Nope"], "cannot import it (AttributeError"),
    (["--model-py", "mynet.py:Net", "--model-arg", "depth=3"], "cannot build it with {'depth': 3}"),
    (["--model-py", "mynet.py:Net", "--from", "wide.safetensors"], "stem.weight is (24, 1, 3, 3) in the checkpoint but "
                                                                   "(12, 1, 3, 3) in the model"),
    (["--model-py", "mynet.py:Net", "--from", "trained.safetensors", "--data", "synthetic"], "cannot run on the data's "
                                                                                             "inputs"),
    (["--model-py", "mynet.py:Net", "--val-split", "0.7"], "--val-split must be a fraction of the training data in (0, "
                                                           "0.5]"),
    (["--model-py", "mynet.py:Net", "--val-split", "0"], "--val-split must be"),
    (["--hf", "."], "is not a Hugging Face model directory: it has no config.json"),
    (["--hf", "hfdir"], "holds no safetensors weights (only pytorch_model.bin, which deepzip does not unpickle)"),
])
def test_bad_input_is_one_sentence_and_nothing_is_written(user_model, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(user_model)
    (user_model / "broken.py").write_text("1 / 0\n")
    wide = dz.models.from_spec("mynet.py:Net", {"width": 24})
    save_file(wide.state_dict(), user_model / "wide.safetensors")
    (user_model / "hfdir").mkdir(exist_ok=True)
    (user_model / "hfdir" / "config.json").write_text("{}")
    (user_model / "hfdir" / "pytorch_model.bin").write_bytes(b"x")
    out = tmp_path / "out"
    data = [] if "--data" in args else ["--data", "digits"]
    result = CliRunner().invoke(app, ["compress", *args, *data, "--out", str(out), "--quiet", "--max-drop", "1",
                                      "--recipe", "fast.yaml"])
    _one_error_line(result, words)
    assert not (out / "model.dzip").exists() and not list(out.glob("candidates/*/model.dzip"))


def test_next_ratio_brackets_then_bisects_and_stops():
    c = lambda r, ok: {"target_ratio": r, "accepted": ok}  # noqa: E731
    assert next_ratio([], 40, 2, 1.1, 1000) == 40
    assert next_ratio([c(40, True)], 40, 2, 1.1, 1000) == 80
    assert next_ratio([c(40, False)], 40, 2, 1.1, 1000) == 20
    assert next_ratio([c(40, True), c(80, False)], 40, 2, 1.1, 1000) == pytest.approx(math.sqrt(3200))
    assert next_ratio([c(40, True), c(43, False)], 40, 2, 1.1, 1000) is None       # bracket within 10 %
    assert next_ratio([c(40, True), c(30, False), c(80, False)], 40, 2, 1.1, 1000) == pytest.approx(math.sqrt(3200))
    assert next_ratio([c(990, True)], 990, 2, 1.1, 1000) is None                   # the top of the grid
    assert next_ratio([c(1.4, False)], 1.4, 2, 1.1, 1000) is None                  # nothing left to give up


def test_budgets_scale_kept_fractions_together_units_with_them_and_add_bits_below_the_reference():
    r = dz.pipeline.from_dict({"prune": {"sparsity": {"fc1": 0.96, "fc2": 0.9, "fc3": 0.5}, "units": {"fc1": 0.5}},
                               "share": {"bits": {"fc1": 3, "fc2": 4, "fc3": 5}}})
    b = Budgets.from_recipe(r, dz.create_model("lenet300"))
    at = b.at(b.reference)
    assert at["sparsity"] == pytest.approx({"fc1": 0.96, "fc2": 0.9, "fc3": 0.5}, abs=1e-4)
    assert at["units"] == pytest.approx({"fc1": 0.5}, abs=1e-4) and at["bits"] == {"fc1": 3, "fc2": 4, "fc3": 5}
    twice = b.at(2 * b.reference)
    assert twice["estimated_ratio"] == pytest.approx(2 * b.reference, rel=1e-3)
    kept = {k: 1 - v for k, v in twice["sparsity"].items()}
    assert kept["fc1"] / 0.04 == pytest.approx(kept["fc2"] / 0.1, rel=1e-3) == pytest.approx(kept["fc3"] / 0.5, rel=1e-3)
    assert 1 - twice["units"]["fc1"] == pytest.approx(0.5 * kept["fc1"] / 0.04, rel=1e-3)  # rows follow weights
    quarter = b.at(b.reference / 4)
    assert quarter["bits"] == {"fc1": 5, "fc2": 6, "fc3": 7} and quarter["estimated_ratio"] < b.reference / 3.9
    ratios = [b.at(b.reference * f)["estimated_ratio"] for f in (0.25, 0.5, 1, 2, 4)]
    assert ratios == sorted(ratios)


def test_a_killed_search_resumes_to_the_same_file(user_model, tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("deepzip.pipeline.search")  # the package's `search` is the function

    net = dz.models.from_spec(f"{user_model / 'mynet.py'}:Net", {"width": 12})
    dz.load_checkpoint(net, user_model / "trained.safetensors")
    kw = dict(recipe=str(user_model / "fast.yaml"), max_drop=3.0, max_candidates=3, **QUIET)
    whole = dz.compress(net, "digits", out=tmp_path / "whole", **kw)
    real, calls = module.run_recipe, []

    def dies_in_the_second(recipe, out, **options):
        calls.append(out)
        if len(calls) == 2 and not options.get("resume"):
            raise KeyboardInterrupt  # a kill between two candidates' epochs
        return real(recipe, out, **options)

    monkeypatch.setattr(module, "run_recipe", dies_in_the_second)
    with pytest.raises(KeyboardInterrupt):
        dz.compress(net, "digits", out=tmp_path / "broken", **kw)
    before_kill = json.loads((tmp_path / "broken" / "search.json").read_text())["candidates"]
    monkeypatch.setattr(module, "run_recipe", real)
    resumed = dz.compress(net, "digits", out=tmp_path / "broken", resume=True, **kw)
    # the candidate finished before the kill keeps the time it took then
    assert len(before_kill) == 1 and resumed.search["candidates"][0]["seconds"] == before_kill[0]["seconds"]
    assert (tmp_path / "broken" / "model.dzip").read_bytes() == (tmp_path / "whole" / "model.dzip").read_bytes()
    assert [c["bytes"] for c in resumed.search["candidates"]] == [c["bytes"] for c in whole.search["candidates"]]
    assert resumed.test == whole.test
    # the default confidence, 0.84: a file passes when its drop plus one standard error is within the target
    assert all(c["accepted"] == (c["drop"] + c["se"] <= 3.0 + 1e-9) for c in whole.search["candidates"])


def test_a_hostile_record_cannot_make_loading_run_code(tmp_path, monkeypatch):
    """The trust list holds (file, sha256, name): a file naming another function of a trusted file,
    or something that file only imports, or a file deepzip was never given, is refused unread."""
    from deepzip.dzip.assemble import build_model
    from deepzip.models.sources import sha256_of

    monkeypatch.setenv("DEEPZIP_HOME", str(tmp_path / "home"))
    nets = tmp_path / "nets.py"
    nets.write_text("from subprocess import run\nimport torch\n\n\ndef wipe(path):\n    open(path, 'w').write('x')\n\n\n"
                    "class Net(torch.nn.Linear):\n    def __init__(self):\n        super().__init__(2, 2)\n")
    dz.models.from_spec(f"{nets}:Net")  # the user ran this: (nets.py, its sha256, Net) is trusted
    victim = tmp_path / "victim"
    digest = sha256_of(nets)
    records = [{"python": "nets.py:run", "path": str(nets), "sha256": digest, "kwargs": {"args": f"touch {victim}",
                                                                                         "shell": True}},
               {"python": "nets.py:wipe", "path": str(nets), "sha256": digest, "kwargs": {"path": str(victim)}},
               {"python": "os:system", "path": "/usr/lib/python3/os.py", "sha256": "0" * 64,
                "kwargs": {"command": f"touch {victim}"}}]
    for record in records:
        with pytest.raises(dz.ConfigError, match="imports only if you passed that file"):
            build_model({"arch": record}, "hostile.dzip")
        assert not victim.exists()
    assert isinstance(build_model({"arch": {"python": "nets.py:Net", "path": str(nets), "sha256": digest,
                                            "kwargs": {}}}, "mine.dzip"), torch.nn.Linear)
