"""Which channels must be removed together: the coupling of a model's layers, found by tracing it.

The model is traced with torch.fx and its shapes propagated on `example_inputs`. Every output
channel of a Linear or convolution gets an id; ids flow along the graph with the tensors that
carry them (through batch norm, activations, pooling, dropout), a residual `+` (or any
element-wise op of two tensors) joins the ids it adds, `torch.cat` along the channels lists them
side by side (offsets shift), a depthwise convolution joins each input channel with its output
channel, and a flatten into a Linear maps each channel to its block of features. Ids joined this
way form a *channel group*: removing it means removing every producer row, consumer column and
batch-norm entry in it, which keeps the function of the rest of the network intact.

What cannot be followed (a reshape other than a flatten, a grouped convolution, an op deepzip
does not know, the model's input and output) locks the ids it touches, with the reason, so those
channels are left alone rather than cut wrongly.
"""
from __future__ import annotations

import math
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import ConfigError

PASS_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU,
                nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.Mish, nn.PReLU, nn.Dropout,
                nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
                nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.relu6,
                  nn.functional.gelu, nn.functional.silu, nn.functional.leaky_relu, nn.functional.dropout,
                  nn.functional.max_pool2d, nn.functional.avg_pool2d, nn.functional.adaptive_avg_pool2d,
                  nn.functional.adaptive_max_pool2d, nn.functional.hardswish, nn.functional.elu}
PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "float", "to"}
BINARY = {operator.add, operator.iadd, operator.sub, operator.mul, operator.imul, torch.add, torch.mul, torch.sub}
BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub"}


@dataclass
class Member:
    """One place a channel group touches: `module` (qualified name), `role` "out" (a producer's
    output channel), "in" (a consumer's input columns) or "norm" (a batch norm's entry), and the
    indices along that role's dimension."""

    module: str
    role: str
    indices: list[int]


@dataclass
class ChannelGroup:
    """Channels that go together: `members`, every place it touches; `producers`, the layers whose
    output channels it holds (in model order)."""

    id: int
    members: list[Member] = field(default_factory=list)

    @property
    def producers(self) -> list[str]:
        return list(dict.fromkeys(m.module for m in self.members if m.role == "out"))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclass
class Graph:
    """The channel groups of a model, the locked channels and why, and each layer's output shape."""

    groups: list[ChannelGroup]
    locked: dict[str, str]            # layer → why its output channels cannot be removed
    shapes: dict[str, tuple[int, ...]]  # layer → its output shape on example_inputs
    modules: dict[str, nn.Module]
    sites: dict[str, list[int]]       # ReLU node name → the group of each of its channels (−1: none)
    gm: fx.GraphModule | None = None


def trace(model: nn.Module, example_inputs: Any) -> Graph:
    """The channel groups of `model`, from a torch.fx trace and `example_inputs`.

    Raises ConfigError (one sentence) when the model cannot be traced symbolically.

    Examples:
        >>> [g.producers for g in trace(model, torch.randn(1, 3, 32, 32)).groups][:2]
        [['stem.0'], ['stem.0']]
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many kinds; all mean the same to the user
        raise ConfigError(f"deepzip cannot trace this model's forward with torch.fx ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160]}); channel surgery needs a traceable forward, or "
                          f"leave the untraceable part out with ignore=.") from None
    was_training = model.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    finally:
        model.train(was_training)
    graph = _Builder(gm).run()
    graph.gm = gm
    return graph


class _Builder:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.uf = _UnionFind()
        self.chans: dict[fx.Node, list[int] | None] = {}
        self.touch: list[tuple[int, str, str, int]] = []  # (id, module, role, index)
        self.lock: dict[int, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.sites: dict[str, list[int]] = {}  # activation node → the channel ids it carries
        self.called: dict[str, list] = {}  # module → the ids its first call read and made (a second call locks them)

    def fresh(self, n: int, locked: str | None = None) -> list[int]:
        ids = [self.uf.new() for _ in range(n)]
        if locked:
            for i in ids:
                self.lock[i] = locked
        return ids

    def lock_all(self, ids: list[int] | None, why: str) -> None:
        for i in ids or []:
            self.lock.setdefault(i, why)

    @staticmethod
    def shape(node: Any) -> tuple[int, ...] | None:
        meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def channels_of(self, node: fx.Node) -> list[int] | None:
        shape = self.shape(node)
        return None if shape is None or len(shape) < 2 else self.chans.get(node)

    def run(self) -> Graph:
        for node in self.gm.graph.nodes:
            self.chans[node] = self.visit(node)
        groups: dict[int, ChannelGroup] = {}
        by_root: dict[int, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
        locked_roots = {self.uf.find(i): why for i, why in self.lock.items()}
        for i, module, role, index in self.touch:
            by_root[self.uf.find(i)][(module, role)].append(index)
        for root, places in by_root.items():
            if root in locked_roots or not any(role == "out" for _, role in places):
                continue
            groups[root] = ChannelGroup(len(groups), [Member(m, r, sorted(set(ix))) for (m, r), ix in places.items()])
        locked: dict[str, str] = {}
        for i, module, role, _ in self.touch:
            why = locked_roots.get(self.uf.find(i))
            if role == "out" and why:
                locked.setdefault(module, why)
        index = {root: g.id for root, g in groups.items()}
        sites = {node: [index.get(self.uf.find(i), -1) for i in ids] for node, ids in self.sites.items()}
        return Graph(list(groups.values()), locked, self.shapes, self.modules, sites)

    def visit(self, node: fx.Node) -> list[int] | None:
        shape = self.shape(node)
        args = [a for a in node.args if isinstance(a, fx.Node)]
        ins = [self.chans.get(a) if self.shape(a) is not None and len(self.shape(a)) >= 2 else None for a in args]
        if node.op == "placeholder":
            return self.fresh(shape[1], "it reads the model's input") if shape and len(shape) >= 2 else None
        if node.op == "output":
            for a in node.all_input_nodes:
                self.lock_all(self.chans.get(a), "it is the model's output")
            return None
        if node.op == "get_attr":
            return self.fresh(shape[1], "a tensor stored in the model feeds it") if shape and len(shape) >= 2 else None
        if shape is None or len(shape) < 2:  # sizes, scalars: a channel-free value
            self.lock_inputs(node, f"its channels reach {node.target} as numbers")
            return None
        if node.op == "call_module":
            tensors = [a for a in node.all_input_nodes if (self.shape(a) or ()) != ()]
            if len(tensors) > 1 or node.target in self.called:
                why = "it takes several tensors" if len(tensors) > 1 else "it is called more than once"
                self.lock_inputs(node, f"{node.target} {why}")
                for ids in self.called.get(node.target, ()):  # and what its first call read and made
                    self.lock_all(ids, f"{node.target} {why}")
                self.called.setdefault(node.target, [])
                return self.fresh(shape[1], f"{node.target} {why}")
            out = self.module(node, self.modules[node.target], ins[0] if ins else None, shape)
            self.called[node.target] = [ins[0] if ins else None, out]
            return out
        return self.function(node, ins, shape)

    def lock_inputs(self, node: fx.Node, why: str) -> None:
        """Lock the channels of every tensor the node reads, however it is passed (lists included)."""
        for a in node.all_input_nodes:
            self.lock_all(self.chans.get(a), why)

    def module(self, node: fx.Node, m: nn.Module, x: list[int] | None, shape: tuple[int, ...]) -> list[int] | None:
        name = node.target
        self.shapes[name] = shape
        if isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd):
            x = x if x is not None and len(x) == m.in_channels else self.fresh(m.in_channels, "its input is untracked")
            out = self.fresh(m.out_channels)
            for j, i in enumerate(out):
                self.touch.append((i, name, "out", j))
            if m.groups == 1:
                for j, i in enumerate(x):
                    self.touch.append((i, name, "in", j))
            elif m.groups == m.in_channels == m.out_channels:  # depthwise: channel j in, channel j out
                for a, b in zip(x, out):
                    self.uf.union(a, b)
            else:
                self.lock_all(x + out, f"{name} is a grouped convolution ({m.groups} groups)")
            return out
        if isinstance(m, nn.Linear):
            if x is None or len(self.shape(node.args[0])) != 2 or len(x) != m.in_features:
                # Its features are not the channel dimension (a sequence, say): nothing to follow.
                self.lock_all(x, f"{name} reads more than one dimension of features")
                return self.fresh(shape[1], f"{name} works on more than one dimension")
            for j, i in enumerate(x):
                self.touch.append((i, name, "in", j))
            out = self.fresh(m.out_features)
            for j, i in enumerate(out):
                self.touch.append((i, name, "out", j))
            return out
        if x is not None and len(x) != shape[1] and not isinstance(m, nn.Flatten):
            self.lock_all(x, f"{name} changes the number of channels")
            return self.fresh(shape[1], f"it comes out of {name}")
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and x is not None:
            for j, i in enumerate(x):
                self.touch.append((i, name, "norm", j))
            return x
        if isinstance(m, PASS_MODULES) and x is not None:
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                self.sites[node.name] = x
            if isinstance(m, nn.PReLU) and m.num_parameters > 1:
                self.lock_all(x, f"{name} has a parameter per channel")
            return x
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, m.start_dim, m.end_dim)
        self.lock_all(x, f"{name} ({type(m).__name__}) is a layer deepzip does not follow")
        return self.fresh(shape[1], f"it comes out of {name} ({type(m).__name__})")

    def flatten(self, node: fx.Node, x: list[int] | None, start: int, end: int) -> list[int] | None:
        src = self.shape(node.args[0])
        if x is None or src is None or start != 1 or end not in (-1, len(src) - 1):
            self.lock_all(x, "a reshape deepzip does not follow")
            return self.fresh(self.shape(node)[1], "it comes out of a reshape")
        block = math.prod(src[2:])
        return [i for i in x for _ in range(block)]

    def function(self, node: fx.Node, ins: list[list[int] | None], shape: tuple[int, ...]) -> list[int] | None:
        target = node.target
        tensors = [i for i in ins if i is not None]
        if (target in BINARY or (node.op == "call_method" and target in BINARY_METHODS)) and tensors:
            # Any other operand must be a number or hold one value: a per-channel tensor the
            # channels are not tracked through (a parameter, a gate) would need cutting too.
            others = [a for a in node.all_input_nodes if self.chans.get(a) is None]
            plain = all(math.prod(self.shape(a) or ()) == 1 for a in others)
            if len(tensors) == 2 and len(tensors[0]) == len(tensors[1]) == shape[1] and plain:
                for a, b in zip(*tensors):
                    self.uf.union(a, b)
                return tensors[0]
            if len(tensors) == 1 and len(tensors[0]) == shape[1] and plain:
                return tensors[0]
        if target is torch.cat:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            parts = [self.chans.get(a) for a in node.args[0]]
            if dim in (1, -len(shape) + 1) and all(p is not None for p in parts):
                return [i for p in parts for i in p]
        if (target in PASS_FUNCTIONS or (node.op == "call_method" and target in PASS_METHODS)) and tensors \
                and len(tensors[0]) == shape[1]:
            if target in (torch.relu, nn.functional.relu, "relu", "relu_"):
                self.sites[node.name] = tensors[0]
            return tensors[0]
        if target is torch.flatten or (node.op == "call_method" and target == "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(node, tensors[0] if tensors else None, start, end)
        if node.op == "call_method" and target in ("view", "reshape") and tensors and len(shape) == 2 \
                and len(self.shape(node.args[0])) > 2 and self.shape(node.args[0])[0] == shape[0]:
            return self.flatten(node, tensors[0], 1, -1)
        if node.op == "call_method" and target == "mean" and tensors:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            if dims and 1 not in dims and len(tensors[0]) == shape[1]:
                return tensors[0]
        self.lock_inputs(node, f"{getattr(target, '__name__', target)} is an operation deepzip does not follow")
        return self.fresh(shape[1], f"it comes out of {getattr(target, '__name__', target)}")
