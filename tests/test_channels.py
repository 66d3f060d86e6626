"""Channel surgery: the slim model computes what the masked one does, with fewer parameters."""
import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.structured import choose, costs, remove_, scores, trace


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                               nn.Conv2d(24, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.a(x))
        return self.head(torch.flatten(nn.functional.max_pool2d(x, 2), 1))


class Concat(nn.Module):
    """Two branches concatenated (a Fire module's expand), then a depthwise and a grouped conv."""

    def __init__(self):
        super().__init__()
        self.squeeze = nn.Conv2d(3, 8, 1)
        self.e1, self.e3 = nn.Conv2d(8, 12, 1), nn.Conv2d(8, 12, 3, padding=1)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.bn = nn.BatchNorm2d(24)
        self.grouped = nn.Conv2d(24, 16, 1, groups=4)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        x = torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)
        x = torch.relu(self.bn(self.dw(x)))
        return self.fc(self.grouped(x).mean([2, 3]))


class ConcatDepthwise(nn.Module):
    """A concat whose channels go through a depthwise conv: offsets shift, groups shrink."""

    def __init__(self):
        super().__init__()
        self.squeeze = nn.Conv2d(3, 8, 1)
        self.e1, self.e3 = nn.Conv2d(8, 12, 1), nn.Conv2d(8, 10, 3, padding=1)
        self.dw = nn.Conv2d(22, 22, 3, padding=1, groups=22)
        self.bn = nn.BatchNorm2d(22)
        self.mix = nn.Conv2d(22, 16, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        x = torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)
        x = torch.relu(self.bn(self.dw(x)))
        return self.fc(torch.relu(self.mix(x)).mean([2, 3]))


def _masked_reference(model, graph, removed):
    """The same model with the removed groups' producers, biases and batch-norm affine zeroed."""
    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    with torch.no_grad():
        for g in removed:
            for m in g.members:
                module = modules[m.module]
                if m.role in ("out", "norm"):
                    module.weight[m.indices] = 0
                    if module.bias is not None:
                        module.bias[m.indices] = 0
    return ref


def _randomise_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)


@pytest.mark.parametrize("make, shape", [
    (Residual, (2, 3, 16, 16)), (Concat, (2, 3, 10, 10)), (ConcatDepthwise, (2, 3, 10, 10)),
    (lambda: dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=0.25), (2, 1, 32, 32)),
    (lambda: dz.create_model("lenet5-fire", in_channels=1, image_size=28, classes=10), (2, 1, 28, 28)),
    (lambda: dz.create_model("densenet100", in_channels=1, image_size=32, classes=10, depth=16), (2, 1, 32, 32)),
    (lambda: dz.create_model("vgg16", in_channels=1, image_size=32, classes=10, width=0.125), (2, 1, 32, 32)),
], ids=["residual", "concat-depthwise-grouped", "concat-depthwise", "resnet18", "lenet5-fire", "densenet", "vgg16"])
def test_the_slim_model_computes_what_the_masked_one_does(tmp_path, make, shape):
    model = make()
    _randomise_norms(model)
    model.eval()
    x = torch.randn(*shape)
    graph = trace(model, x)
    removed = choose(graph, scores(graph, "l1"), 0.5)
    assert removed
    if isinstance(model, ConcatDepthwise):  # the concat's channels are prunable, the depthwise conv shrinks
        assert {"e1", "e3"} <= {p for g in removed for p in g.producers}
    reference = _masked_reference(model, graph, removed)
    before = sum(p.numel() for p in model.parameters())
    remove_(model, graph, removed)
    assert sum(p.numel() for p in model.parameters()) < before
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
    # the file remembers the widths: a fresh, full-width instance is narrowed, then filled
    dz.save(model, tmp_path / "slim.dzip")
    back = dz.load(tmp_path / "slim.dzip", model=make())
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_the_locked_and_the_grouped_are_left_alone():
    model = Concat()
    graph = trace(model, torch.randn(1, 3, 10, 10))
    producers = {p for g in graph.groups for p in g.producers}
    assert producers == {"squeeze"}
    # e1 and e3 reach the grouped conv through the concat and the depthwise conv: all locked with it
    assert all("grouped convolution" in graph.locked[n] for n in ("e1", "e3", "dw", "grouped"))
    assert "output" in graph.locked["fc"]


def test_prune_channels_reports_widths_and_saves_a_slim_registry_model(tmp_path):
    model = dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=0.25)
    x = torch.randn(2, 1, 32, 32)
    changed = dz.prune_channels_(model, {"default": 0.5, "layer4": 0.25}, example_inputs=x, ignore=["stem.0"])
    assert changed["layer1.0.body.0.0"] == (16, 8)
    assert "stem.0" not in changed  # ignored, and with it the residual channels coupled to it
    dz.save(model, tmp_path / "m.dzip")
    back = dz.load(tmp_path / "m.dzip")  # the registry model, rebuilt narrow from the file's width record
    model.eval()
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    from deepzip.dzip import DzipReader

    with DzipReader(tmp_path / "m.dzip") as r:
        assert r.version == 3 and r.header["widths"]["layer1.0.body.0.0"]["out_channels"] == 8


def test_apoz_scores_a_channel_that_is_always_zero_lowest():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with torch.no_grad():
        model[0].bias[:] = torch.tensor([0.0, -100.0, 0.0, 100.0])  # channel 1 never fires, channel 3 always does
    x = torch.randn(64, 1, 8, 8)
    data = dz.data.Dataset(x, torch.randint(0, 3, (64,)), 3, "hand")
    graph = trace(model, x[:2])
    conv = [g for g in graph.groups if g.producers == ["0"]]
    apoz = scores(graph, "apoz", data)
    by_channel = {g.members[0].indices[0]: apoz[g.id] for g in conv}
    assert by_channel[1] == pytest.approx(0.0) and by_channel[3] == pytest.approx(1.0)
    assert 0.3 < by_channel[0] < 0.7
    taylor = scores(graph, "taylor", data)
    assert taylor[next(g.id for g in conv if g.members[0].indices == [1])] == 0  # a dead channel changes nothing
    with pytest.raises(dz.ConfigError, match="pass data="):
        scores(graph, "apoz")


@pytest.mark.parametrize("budget", [0.2, 0.35, 0.5, 0.8])
def test_knapsack_keeps_the_most_importance_within_the_budget(budget):
    from deepzip.structured.select import clusters, kept_cost

    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = trace(model, torch.randn(1, 6))
    rng = np.random.default_rng(1)
    value = rng.random(len(graph.groups)) + 0.1
    removed = choose(graph, value, select="knapsack", budget={"params": budget})
    _, total = costs(graph, "params")
    assert kept_cost(graph, removed, "params") <= budget * total  # counted exactly: never over the budget
    slim = copy.deepcopy(model)
    remove_(slim, trace(slim, torch.randn(1, 6)), [g for g in trace(slim, torch.randn(1, 6)).groups
                                                     if g.id in {r.id for r in removed}])
    assert sum(p.numel() for p in slim.parameters()) <= budget * total
    # against brute force over every subset (each layer keeps a unit): the best within the exact budget
    layers = [[g.id for g in m] for m in clusters(graph).values()]
    norm = value.copy()
    for ids in layers:
        norm[ids] = norm[ids] / norm[ids].mean()
    norm = norm * costs(graph, "params")[0]  # the knapsack's value: the normalised score times the cost
    best = 0.0
    for mask in itertools.product([0, 1], repeat=len(graph.groups)):
        keep = [i for i, k in enumerate(mask) if k]
        gone = [g for g in graph.groups if g.id not in keep]
        if all(any(i in keep for i in ids) for ids in layers) and kept_cost(graph, gone, "params") <= budget * total:
            best = max(best, norm[keep].sum())
    got = norm[[g.id for g in graph.groups if g.id not in {r.id for r in removed}]].sum()
    assert got <= best + 1e-9 and got >= 0.9 * best  # first-order costs: near the exact optimum, never over budget


def test_untraceable_models_and_structured_ones_are_refused():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(dz.ConfigError, match="cannot trace"):
        dz.prune_channels_(Branchy(), 0.5, example_inputs=torch.randn(1, 4))
    model = dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)
    dz.prune_(model, sparsity=0.5)
    with pytest.raises(dz.ConfigError, match="remove channels first"):
        dz.prune_channels_(model, 0.5, example_inputs=torch.randn(1, 1, 8, 8))


def test_onnx_export_of_a_slim_compressed_model_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from deepzip.cli import app

    model = dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=0.25)
    _randomise_norms(model)
    x = torch.randn(3, 1, 32, 32)
    dz.prune_channels_(model, 0.5, example_inputs=x[:1])
    dz.prune_(model, sparsity={"conv": 0.6, "linear": 0.8})
    dz.share_weights_(model, bits={"conv": 6, "linear": 5})
    dz.save(model, tmp_path / "m.dzip")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "m.dzip"), "--onnx", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-4)
    dz.export_onnx(model, tmp_path / "direct.onnx", x[:1])  # a module with masks and codebooks, exported plain
    got = ort.InferenceSession(str(tmp_path / "direct.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-4)
    assert dz.reparam.is_shared(dict(model.named_modules())["layer1.0.body.0.0"])  # the caller's model untouched
    from deepzip.export import onnx_latencies_ms

    times = onnx_latencies_ms(tmp_path / "m.dzip", x, reps=4, threads=1)  # the file, timed in onnxruntime
    assert len(times) == 4 and all(0 < t < 5000 for t in times)


@pytest.mark.parametrize("widths, words", [
    ({"nope": {"out_channels": 3}}, "names 'nope'"),
    ({"stem.0": {"out_channels": 10**9}}, "cannot take"),
    ({"stem.0": {"out_channels": 0}}, "cannot take"),
    ({"stem.0": {"kernel_size": 1}}, "cannot take"),
    ({"stem.0": {"out_channels": True}}, "cannot take"),
    ([1, 2], "not a mapping"),
])
def test_a_hostile_width_record_is_refused_in_one_sentence(tmp_path, widths, words):
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from dzip_tools import join, split

    model = dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=0.125)
    dz.prune_channels_(model, 0.5, example_inputs=torch.randn(1, 1, 32, 32))
    dz.save(model, tmp_path / "m.dzip")
    header, payload = split((tmp_path / "m.dzip").read_bytes())
    header["widths"] = widths
    (tmp_path / "bad.dzip").write_bytes(join(header, payload))
    with pytest.raises(dz.DzipFormatError, match=words):
        dz.load(tmp_path / "bad.dzip")


def test_what_the_trace_cannot_follow_is_locked_and_the_model_still_runs():
    class Tricky(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
            self.shared = nn.Conv2d(8, 8, 3, padding=1)
            self.gate = nn.Parameter(torch.ones(8, 1, 1))
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            h = torch.stack([self.a(x), self.b(x)]).sum(0)  # a list the channels cannot be followed through
            h = self.shared(torch.relu(self.shared(h)))     # one module called twice
            return self.fc((h * self.gate).mean((2, 3)))   # a per-channel constant

    model = Tricky()
    x = torch.randn(2, 3, 8, 8)
    graph = trace(model, x)
    assert {"a", "b", "shared"} <= set(graph.locked)
    dz.prune_channels_(model, 0.5, example_inputs=x)
    assert model(x).shape == (2, 3)


def test_taylor_and_apoz_work_on_linear_producers_and_with_ignore():
    model = dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)
    x = torch.randn(64, 1, 8, 8)
    data = dz.data.Dataset(x, torch.randint(0, 4, (64,)), 4, "r")
    changed = dz.prune_channels_(model, 0.5, example_inputs=x[:2], importance="taylor", data=data)
    assert changed == {"fc1": (300, 150), "fc2": (100, 50)}
    changed = dz.prune_channels_(model, 0.5, example_inputs=x[:2], importance="apoz", data=data, ignore=["fc1"])
    assert changed == {"fc2": (50, 25)}


@pytest.mark.parametrize("select", ["rank", "global"])
def test_round_to_keeps_multiples_of_it_and_the_least_important_go(select):
    torch.manual_seed(0)
    model = dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=0.375)  # 24, 48, 96, 192
    x = torch.randn(2, 1, 32, 32)
    plain = copy.deepcopy(model)
    graph = trace(model, x)
    values = scores(graph, "l1")
    removed = choose(graph, values, 0.3, select, round_to=8)
    for members in (g for g in itertools.groupby(sorted(graph.groups, key=lambda g: g.producers),
                                                   key=lambda g: tuple(g.producers))):
        cluster = list(members[1])
        gone = [g for g in cluster if g in removed]
        assert (len(cluster) - len(gone)) % 8 == 0 and len(gone) < len(cluster)
        if gone:  # the ones removed are the cluster's least important (by its own ranking)
            assert max(values[g.id] for g in gone) <= min(values[g.id] for g in cluster if g not in removed)
    changed = dz.prune_channels_(model, 0.3, example_inputs=x, select=select, round_to=8)
    assert changed and all(after % 8 == 0 and after < before for before, after in changed.values())
    # 30 % of 24 is 7.2: 16.8 kept rounds to 16; of 192, 134.4 rounds to 136
    if select == "rank":
        assert changed["layer1.0.body.0.0"] == (24, 16) and changed["layer4.0.body.0.0"] == (192, 136)
    model.eval(), plain.eval()
    assert model(x).shape == plain(x).shape


def test_round_to_leaves_narrow_layers_whole_and_bad_values_are_refused():
    from deepzip.structured.select import rounded_keep

    assert rounded_keep(8, 3, 8) == 8 and rounded_keep(64, 45, 8) == 48 and rounded_keep(64, 3, 8) == 8
    assert rounded_keep(64, 45, 1) == 45 and rounded_keep(100, 99, 16) == 96 and rounded_keep(53, 52, 8) == 48
    model = dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(dz.ConfigError, match="round_to must be a whole number"):
        dz.prune_channels_(model, 0.5, example_inputs=x, round_to=0)
    with pytest.raises(dz.ConfigError, match="round_to must be 1 with select knapsack"):
        dz.prune_channels_(model, example_inputs=x, select="knapsack", budget={"params": 0.5}, round_to=8)
    assert dz.prune_channels_(model, 0.5, example_inputs=x, round_to=16) == {"fc1": (300, 144), "fc2": (100, 48)}
