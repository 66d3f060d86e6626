"""A decoded model traced with torch.fx into the C runtime's ops (libdzip/runtime/include/dzrt.h).

`trace(model, input_shape)` returns the ops in execution order: conv and linear layers with the
batch norm, ReLU and pooling after them folded in where nothing else reads the tensors between
(each fusion saves a whole activation buffer, and BN folding keeps the codebook shared), plus
pools, adds, concats, standalone batch norms (affine), ReLUs and softmax. Reshapes, flatten,
dropout and identity are views: with one sample in C order they move no data. Anything else is
refused with one sentence naming the node.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..dzip._tables import NUMBERS
from ..errors import ConfigError

SUPPORTED = ("Conv2d, Linear, BatchNorm1d/2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvg/MaxPool2d, Flatten, "
             "Dropout, Identity, Softmax, + and torch.cat")

POOL_KINDS = NUMBERS["pool"]  # enum dzrt_pool_kind (dzip/tables.toml)


@dataclass
class Layer:
    """The tensors (state_dict names) of a conv, linear or standalone batch norm, and its matrix shape."""
    rows: int
    cols: int
    weight: str | None = None
    bias: str | None = None
    bn: dict[str, str | None] = field(default_factory=dict)   # weight, bias, running_mean, running_var
    eps: float = 0.0


@dataclass
class Op:
    """One op of the runtime, before buffers are assigned. Shapes are one sample's (C, H, W)."""
    kind: str                      # conv, linear, pool, add, copy, affine, relu, softmax, cat
    inputs: list[str]              # values read
    output: str                    # value written
    nodes: list[str]               # the fx nodes it computes (for messages and comments)
    shape_in: tuple[int, int, int]
    shape_mid: tuple[int, int, int]   # conv / linear output before a fused pool
    shape_out: tuple[int, int, int]
    conv: dict[str, int] = field(default_factory=dict)   # kh kw sh sw pad_h pad_w dh dw groups
    pool: dict[str, int] = field(default_factory=dict)   # kind kh kw sh sw ph pw count_pad
    relu: int = 0                  # 1: after the layer (before a fused pool), 2: after the fused pool
    layer: Layer | None = None
    dim: int = 1                   # cat: the dimension


@dataclass
class Graph:
    """The traced network: ops in order, value sizes, its input and output value."""
    ops: list[Op]
    numel: dict[str, int]
    input: str
    output: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _chw(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """One sample's shape as (C, H, W): (1, C, H, W) or (1, N) → (N, 1, 1)."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 2:
        return shape[1], 1, 1
    raise ConfigError(f"export --c cannot express {where}: the C runtime takes one sample of shape "
                      f"(1, C, H, W) or (1, N), and it makes a tensor of shape {tuple(shape)}.")


class _Lowering:
    """fx nodes → raw ops (one per node), views resolved to the value they alias."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.ops: list[Op] = []
        self.alias: dict[str, str] = {}
        self.shape: dict[str, tuple[int, ...]] = {}
        self.numel: dict[str, int] = {}

    def refuse(self, node: torch.fx.Node, what: str) -> ConfigError:
        return ConfigError(f"export --c cannot express node {node.name!r} ({what}): the C runtime has "
                           f"{SUPPORTED} only.")

    def value(self, node: Any, user: torch.fx.Node) -> str:
        if not isinstance(node, torch.fx.Node) or node.name not in self.shape:
            raise self.refuse(user, f"an argument {node!r} that is not a tensor the network computes")
        return self.alias.get(node.name, node.name)

    def add(self, node: torch.fx.Node, kind: str, inputs: list[str], **kw: Any) -> Op:
        first = node.args[0][0] if isinstance(node.args[0], (list, tuple)) else node.args[0]
        shape_in = _chw(self.shape[first.name], node.name)  # the argument's own shape, a view's included
        out = _chw(self.shape[node.name], node.name)
        op = Op(kind, inputs, node.name, [node.name], shape_in, out, out, **kw)
        self.ops.append(op)
        return op

    def lower(self, node: torch.fx.Node) -> None:
        meta = node.meta.get("tensor_meta")
        if node.op == "output":
            return
        if node.op == "placeholder":
            if meta is None:
                raise self.refuse(node, "an input that is not one tensor")
            self._record(node, meta)
            return
        if meta is None or not hasattr(meta, "shape"):  # x.size(0) and the like, only as arguments of views
            if node.op == "call_method" and node.target == "size" or node.target in (getattr, operator.getitem):
                return
            raise self.refuse(node, "an op whose result is not one tensor")
        self._record(node, meta)
        if node.op == "call_module":
            self._module(node, self.modules[node.target])
        elif node.op in ("call_function", "call_method"):
            self._function(node)
        else:
            raise self.refuse(node, f"{node.op} {node.target}, a tensor used directly rather than through a layer")

    def _record(self, node: torch.fx.Node, meta: Any) -> None:
        shape = tuple(int(s) for s in meta.shape)
        if meta.dtype != torch.float32:
            raise self.refuse(node, f"a {meta.dtype} tensor; the C runtime computes in float32")
        if not shape or shape[0] != 1:
            raise self.refuse(node, f"a tensor of shape {shape} whose first dimension is not the batch of one")
        self.shape[node.name] = shape
        self.numel[node.name] = int(torch.Size(shape).numel())

    def _view(self, node: torch.fx.Node, source: Any) -> None:
        self.alias[node.name] = self.value(source, node)

    def _module(self, node: torch.fx.Node, m: nn.Module) -> None:
        name = node.target
        if not node.args:
            raise self.refuse(node, f"module {name!r} called without an input")
        x = self.value(node.args[0], node)
        xs = self.shape[node.args[0].name]
        if isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)) or \
                type(m).__name__ == "Unflatten":
            self._view(node, node.args[0])
        elif type(m) is nn.Conv2d:
            if m.padding_mode != "zeros":
                raise self.refuse(node, f"Conv2d with padding_mode={m.padding_mode!r}")
            kh, kw = m.kernel_size
            dh, dw = m.dilation
            if isinstance(m.padding, str):  # 'same' pads the extra pixel at the bottom and right, as torch
                ph = (dh * (kh - 1)) // 2 if m.padding == "same" else 0
                pw = (dw * (kw - 1)) // 2 if m.padding == "same" else 0
            else:
                ph, pw = m.padding
            cin = xs[1]
            layer = Layer(m.out_channels, (cin // m.groups) * kh * kw, f"{name}.weight",
                          f"{name}.bias" if m.bias is not None else None)
            op = self.add(node, "conv", [x], layer=layer)
            op.conv = dict(kh=kh, kw=kw, sh=m.stride[0], sw=m.stride[1], pad_h=ph, pad_w=pw, dh=dh, dw=dw, groups=m.groups)
        elif type(m) is nn.Linear:
            if len(xs) != 2:
                raise self.refuse(node, f"Linear on a tensor of shape {xs}, not one vector")
            self.add(node, "linear", [x], layer=Layer(m.out_features, m.in_features, f"{name}.weight",
                                                     f"{name}.bias" if m.bias is not None else None))
        elif type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            if m.running_mean is None or m.training:
                raise self.refuse(node, f"{type(m).__name__} without running statistics (it would use batch statistics)")
            c = _chw(xs, node.name)[0]
            bn = {"weight": f"{name}.weight" if m.weight is not None else None,
                  "bias": f"{name}.bias" if m.bias is not None else None,
                  "running_mean": f"{name}.running_mean", "running_var": f"{name}.running_var"}
            self.add(node, "affine", [x], layer=Layer(c, 0, bn=bn, eps=float(m.eps)))
        elif type(m) is nn.ReLU:
            self.add(node, "relu", [x])
        elif type(m) is nn.MaxPool2d:
            if _pair(m.dilation) != (1, 1) or m.return_indices:
                raise self.refuse(node, "MaxPool2d with dilation or indices")
            self._pool(node, xs, "max", m.kernel_size, m.stride, m.padding)
        elif type(m) is nn.AvgPool2d:
            if m.divisor_override:
                raise self.refuse(node, "AvgPool2d with divisor_override")
            self._pool(node, xs, "avg", m.kernel_size, m.stride, m.padding, m.count_include_pad)
        elif type(m) in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
            if getattr(m, "return_indices", False):
                raise self.refuse(node, "AdaptiveMaxPool2d with indices")
            self._pool(node, xs, "adaptive_avg" if type(m) is nn.AdaptiveAvgPool2d else "adaptive_max")
        elif type(m) is nn.Softmax:
            self._softmax(node, xs, m.dim)
        else:
            raise self.refuse(node, f"module {name!r} of type {type(m).__name__}")

    def _pool(self, node: torch.fx.Node, xs: tuple[int, ...], kind: str, kernel: Any = 1, stride: Any = None,
              padding: Any = 0, count_pad: bool = True) -> None:
        if len(xs) != 4:
            raise self.refuse(node, f"a 2-D pool on a tensor of shape {xs}")
        x = self.value(node.args[0], node)
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride if stride is not None and stride != [] else kernel)
        ph, pw = _pair(padding)
        op = self.add(node, "pool", [x])
        op.pool = dict(kind=POOL_KINDS[kind], kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, count_pad=int(bool(count_pad)))

    def _softmax(self, node: torch.fx.Node, xs: tuple[int, ...], dim: Any) -> None:
        if len(xs) != 2 or dim not in (1, -1):
            raise self.refuse(node, f"softmax over dimension {dim} of a tensor of shape {xs}")
        self.add(node, "softmax", [self.value(node.args[0], node)])

    def _function(self, node: torch.fx.Node) -> None:
        t, args, kwargs = node.target, node.args, node.kwargs
        method = node.op == "call_method"
        if t in ("view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze") if method else \
                t in (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze):
            self._view(node, args[0])
        elif (method and t == "relu") or t in (F.relu, torch.relu):
            self.add(node, "relu", [self.value(args[0], node)])
        elif (method and t == "add") or t in (operator.add, torch.add, operator.iadd):
            if len(args) != 2 or kwargs.get("alpha", 1) != 1:
                raise self.refuse(node, "an add that is not of two tensors")
            a, b = self.value(args[0], node), self.value(args[1], node)
            if self.shape[args[0].name] != self.shape[args[1].name]:
                raise self.refuse(node, f"an add that broadcasts {self.shape[args[0].name]} and {self.shape[args[1].name]}")
            self.add(node, "add", [a, b])
        elif t in (torch.cat, torch.concat):
            tensors = args[0] if args else kwargs["tensors"]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            inputs = [self.value(v, node) for v in tensors]
            rank = len(self.shape[tensors[0].name])
            if dim not in (1, -3 if rank == 4 else -1) or any(len(self.shape[v.name]) != rank for v in tensors):
                raise self.refuse(node, f"a concat along dimension {dim}, not the channels")
            self.add(node, "cat", inputs, dim=1)
        elif (method and t == "softmax") or t in (F.softmax, torch.softmax):
            self._softmax(node, self.shape[args[0].name], args[1] if len(args) > 1 else kwargs.get("dim"))
        elif t is F.adaptive_avg_pool2d:
            self._pool(node, self.shape[args[0].name], "adaptive_avg")
        elif (method and t == "mean") or t is torch.mean:
            self.value(args[0], node)  # refuses a non-tensor argument
            xs = self.shape[args[0].name]
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            dims = tuple(sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])))
            if len(xs) != 4 or dims != (2, 3):
                raise self.refuse(node, f"a mean over dimensions {dims}, not the image")
            self._pool(node, xs, "adaptive_avg")
        else:
            name = getattr(t, "__name__", str(t))
            raise self.refuse(node, f"{'method' if method else 'function'} {name}")


def _users(ops: list[Op], output: str) -> dict[str, int]:
    count: dict[str, int] = {output: 1}
    for op in ops:
        for v in op.inputs:
            count[v] = count.get(v, 0) + 1
    return count


def _fuse(ops: list[Op], output: str, numel: dict[str, int]) -> list[Op]:
    """Fold into each conv / linear / add / affine / pool the single-user chain after it:
    batch norm (conv, linear), ReLU, then (conv) a pool and a ReLU after it."""
    users = _users(ops, output)
    by_input: dict[str, Op] = {}
    for op in ops:
        for v in op.inputs:
            by_input[v] = op
    dropped: set[int] = set()

    def next_op(op: Op, kind: str) -> Op | None:
        nxt = by_input.get(op.output)
        if nxt is None or users.get(op.output) != 1 or nxt.kind != kind or op.output == output:
            return None
        return nxt if nxt.shape_in == op.shape_out else None

    def absorb(op: Op, nxt: Op) -> None:
        dropped.add(id(nxt))
        op.output = nxt.output
        op.nodes += nxt.nodes

    for op in ops:
        if id(op) in dropped:
            continue
        if op.kind in ("conv", "linear"):
            bn = next_op(op, "affine")
            if bn is not None:
                op.layer.bn, op.layer.eps = bn.layer.bn, bn.layer.eps
                absorb(op, bn)
        if op.kind in ("conv", "linear", "add", "affine", "pool"):
            relu = next_op(op, "relu")
            if relu is not None:
                op.relu |= 1
                absorb(op, relu)
        if op.kind == "conv":
            pool = next_op(op, "pool")
            oc, oh, ow = op.shape_mid
            if pool is not None:
                yc, yh, yw = pool.shape_out
                if oh * ow + yc * yh * yw < oc * oh * ow:  # a plane plus the pooled output beats the full output
                    op.pool, op.shape_out = pool.pool, pool.shape_out
                    absorb(op, pool)
                    relu = next_op(op, "relu")
                    if relu is not None:
                        op.relu |= 2
                        absorb(op, relu)
    _through_concats(ops, output, users, by_input, dropped, numel)
    return [op for op in ops if id(op) not in dropped]


def _through_concats(ops: list[Op], output: str, users: dict[str, int], by_input: dict[str, Op], dropped: set[int],
                     numel: dict[str, int]) -> None:
    """A ReLU or pool after a channel concat works channel by channel, so it can run inside each
    conv feeding the concat instead: Fire modules then write their pooled halves straight into
    the pooled concat, and the full-resolution concat (the largest tensor of a SqueezeNet-style
    net) never exists."""
    producer = {op.output: op for op in ops if id(op) not in dropped}
    for cat in ops:
        if cat.kind != "cat" or id(cat) in dropped:
            continue
        convs = [producer.get(v) for v in cat.inputs]
        if any(c is None or c.kind != "conv" or c.pool or users.get(v) != 1 or cat.inputs.count(v) != 1
               for c, v in zip(convs, cat.inputs)):
            continue
        while True:
            nxt = by_input.get(cat.output)
            if nxt is None or users.get(cat.output) != 1 or cat.output == output or nxt.shape_in != cat.shape_out:
                break
            if nxt.kind == "relu":
                for c in convs:
                    c.relu |= 2 if c.pool else 1
            elif nxt.kind == "pool" and not convs[0].pool:
                _, yh, yw = nxt.shape_out
                for c in convs:
                    c.pool, c.shape_out = nxt.pool, (c.shape_mid[0], yh, yw)
                    numel[c.output] = c.shape_mid[0] * yh * yw
            else:
                break
            dropped.add(id(nxt))
            cat.output, cat.shape_out = nxt.output, nxt.shape_out
            cat.shape_in = convs[0].shape_out
            cat.nodes += nxt.nodes


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> Graph:
    """The ops of `model` (eval mode, float32) for one input of `input_shape` (without the batch).

    Args:
        model: a plain module (deepzip.load's), traceable by torch.fx.
        input_shape: one sample's shape, e.g. (1, 28, 28).

    Examples:
        >>> g = trace(dz.load("model.dzip"), (1, 28, 28)); [op.kind for op in g.ops]
        ['conv', 'conv', 'linear', 'linear']
    """
    from torch.fx.passes.shape_prop import ShapeProp

    model = model.eval()
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError on data-dependent control flow)
        raise ConfigError(f"torch.fx cannot trace this model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160]}), so export --c cannot express it.") from None
    x = torch.zeros(1, *input_shape)
    with torch.no_grad():
        try:
            ShapeProp(gm).propagate(x)
        except Exception as e:
            raise ConfigError(f"the model does not run on an input of shape {tuple(x.shape)} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160]}).") from None
    low = _Lowering(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(f"export --c takes a model of one input, and this one has {len(placeholders)}.")
    for node in gm.graph.nodes:
        low.lower(node)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    result = out_node.args[0]
    if not isinstance(result, torch.fx.Node) or result.name not in low.shape:
        raise ConfigError("export --c takes a model that returns one tensor, and this one returns something else.")
    output = low.alias.get(result.name, result.name)
    inp = placeholders[0].name
    if output == inp:
        raise ConfigError("export --c has nothing to compute: the model returns its input.")
    ops = _fuse(low.ops, output, low.numel)
    return Graph(ops, low.numel, inp, output, tuple(input_shape), tuple(low.shape[result.name][1:]))
