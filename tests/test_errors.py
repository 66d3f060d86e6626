"""Every public entry point, given bad arguments, raises a DeepzipError: one sentence, never a
bare ValueError, TypeError or a traceback from deep inside."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip import data, encode, models
from deepzip.data import splits  # noqa: F401 (data.splits below)
from deepzip.pipeline import from_dict, load_recipe, run_recipe, search
from deepzip.train import metric_of


def _mlp():
    return dz.create_model("lenet300", in_channels=1, image_size=8, classes=4)


def _trained_file(tmp_path):
    model = _mlp()
    dz.prune_(model, sparsity=0.5)
    dz.share_weights_(model, bits=3)
    dz.save(model, tmp_path / "m.dzip")
    return tmp_path / "m.dzip"


CASES = {
    "prune sparsity": lambda t: dz.prune_(_mlp(), sparsity=1.5),
    "prune quality": lambda t: dz.prune_(_mlp(), quality=-1.0),
    "prune both": lambda t: dz.prune_(_mlp(), sparsity=0.5, quality=1.0),
    "prune scope": lambda t: dz.prune_(_mlp(), sparsity=0.5, scope="everywhere"),
    "prune layer": lambda t: dz.prune_(_mlp(), sparsity={"fc9": 0.5}),
    "prune nan": lambda t: dz.prune_(_nan(), sparsity=0.5),
    "units": lambda t: dz.prune_units_(_mlp(), {"fc1": -0.5}),
    "share bits": lambda t: dz.share_weights_(_mlp(), bits=13),
    "share bits type": lambda t: dz.share_weights_(_mlp(), bits="five"),
    "share init": lambda t: dz.share_weights_(_mlp(), bits=4, init="kmeans++"),
    "share twice": lambda t: dz.share_weights_(_shared(), bits=4),
    "rate weight": lambda t: dz.RateLoss(_mlp(), weight=math.inf),
    "rate bits": lambda t: dz.RateLoss(_mlp(), weight=0.1, bits=9),
    "gradual ramp": lambda t: dz.GradualPruning(_mlp(), 0.9, end=1.5),
    "gradual every": lambda t: dz.GradualPruning(_mlp(), 0.9, every=0),
    "train lr": lambda t: dz.train(_mlp(), data.load("synthetic", train=True, limit=8), epochs=1, lr=-1),
    "train epochs": lambda t: dz.train(_mlp(), data.load("synthetic", train=True, limit=8), epochs=-1),
    "train optimizer": lambda t: dz.train(_mlp(), data.load("synthetic", train=True, limit=8), epochs=1,
                                          optimizer="lion"),
    "train batches": lambda t: dz.train(_mlp(), [torch.zeros(3)], epochs=1),
    "train data": lambda t: dz.train(_mlp(), 42, epochs=1),
    "soft targets": lambda t: dz.SoftTargetLoss(_mlp(), weight=2.0),
    "distill weights": lambda t: dz.DistillLoss(_mlp(), _mlp(), torch.zeros(2, 1, 8, 8), weights=(1, 2)),
    "channels amount": lambda t: dz.prune_channels_(_mlp(), 1.5, example_inputs=torch.zeros(2, 1, 8, 8)),
    "channels select": lambda t: dz.prune_channels_(_mlp(), 0.5, select="best", example_inputs=torch.zeros(2, 1, 8, 8)),
    "channels budget": lambda t: dz.prune_channels_(_mlp(), select="knapsack", budget={"params": 2.0},
                                                    example_inputs=torch.zeros(2, 1, 8, 8)),
    "save coder": lambda t: dz.save(_mlp(), t / "x.dzip", coder="zip"),
    "save index bits": lambda t: dz.save(_mlp(), t / "x.dzip", index_bits=17),
    "save nan": lambda t: dz.save(_nan(), t / "x.dzip"),
    "load missing": lambda t: dz.load(t / "nope.dzip"),
    "load corrupt": lambda t: dz.load(_corrupt(t)),
    "load runtime": lambda t: dz.load(_trained_file(t), runtime="gpu"),
    "load wrong model": lambda t: dz.load(_trained_file(t), model=nn.Linear(3, 3)),
    "recode coder": lambda t: dz.recode(_trained_file(t), t / "y.dzip", coder="zip"),
    "inspect corrupt": lambda t: dz.inspect(_corrupt(t)),
    "checkpoint missing": lambda t: dz.load_checkpoint(_mlp(), t / "nope.safetensors"),
    "checkpoint wrong": lambda t: dz.load_checkpoint(nn.Linear(2, 2), _checkpoint(t)),
    "model unknown": lambda t: dz.create_model("resnet9000"),
    "model arguments": lambda t: dz.create_model("lenet300", depth=3),
    "model width": lambda t: dz.create_model("resnet18", width=0),
    "model densenet depth": lambda t: dz.create_model("densenet100", depth=11),
    "model squeezenet": lambda t: dz.create_model("squeezenet", width=-1),
    "model spec": lambda t: models.from_spec("not a spec"),
    "data unknown": lambda t: data.load("imagenet", train=True),
    "data limit": lambda t: data.load("synthetic", train=True, limit=0),
    "data npz": lambda t: data.load("npz", t / "nope.npz", train=True),
    "validation split": lambda t: data.splits.holdout(data.load("synthetic", train=True), 0.9, seed=0),
    "metric": lambda t: metric_of("bleu"),
    "recipe key": lambda t: from_dict({"prune": {"sparsty": 0.9}}),
    "recipe value": lambda t: from_dict({"share": {"bits": {"fc1": 0}}}),
    "recipe missing": lambda t: load_recipe(t / "nope.yaml"),
    "run model": lambda t: run_recipe(from_dict({"dataset": "synthetic"}, model="lenet9"), t / "r"),
    "search target": lambda t: search(from_dict({"dataset": "synthetic"}), t / "s", max_drop=-1),
    "compress model": lambda t: dz.compress(42, out=t / "c"),
    "compress data": lambda t: dz.compress(_mlp(), object(), out=t / "c"),
    "compress input": lambda t: dz.compress(_mlp(), data.load("synthetic", train=True), out=t / "c"),
    "huffman": lambda t: encode.huffman.code_lengths(np.array([-1, 2])),
    "streams": lambda t: encode.streams.encode_stream(np.array([5]), 3, "huffman"),
    "gaps": lambda t: encode.sparse.to_gaps(np.ones((2, 2)), 4),
    "context": lambda t: encode.context.encode(np.ones(3, np.uint8), 4),
    "export onnx": lambda t: dz.export_onnx(_mlp(), t / "m.onnx", torch.zeros(1, 1, 5, 5)),
}


def _nan():
    model = _mlp()
    with torch.no_grad():
        model.fc1.weight[0, 0] = math.nan
    return model


def _shared():
    model = _mlp()
    dz.share_weights_(model, bits=3)
    return model


def _corrupt(tmp_path):
    (tmp_path / "bad.dzip").write_bytes(b"DZIP" + bytes(range(60)))
    return tmp_path / "bad.dzip"


def _checkpoint(tmp_path):
    dz.save_checkpoint(_mlp(), tmp_path / "c.safetensors")
    return tmp_path / "c.safetensors"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_raise_a_deepzip_error(tmp_path, case):
    with pytest.raises(Exception) as caught:
        CASES[case](tmp_path)
    assert isinstance(caught.value, dz.DeepzipError), f"{case}: {type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    assert message and "\n" not in message.strip() and len(message) < 600, message
