"""Structured pruning of any traceable network: a dependency graph traced from the model (DepGraph-style).

This module finds the coupled channels from the model itself (and
:class:`~pruning_utils.structured.StructuredPruner` takes its groups from here), so residual additions,
concatenations, depthwise and grouped convolutions, channel shuffles, squeeze-excitation, norms,
Flatten -> Linear heads and parameters used in ``forward`` (class tokens, layer scales) are pruned
together, and what it cannot prove safe is left whole with a reason.

How: ``torch.fx`` traces the model (``torch.nn`` layers are leaves, user modules such as GoogLeNet's
``BasicConv2d`` are traced through). One forward runs on an example input and, beside every activation,
an integer *label* tensor of the same shape: each element holds the id of the channel variable it
belongs to (-1: none, e.g. the model input). Conv/Linear layers make fresh labels per output channel;
data movement (view, permute, cat, chunk, getitem, ...) is applied to the labels as to the data, so
concat offsets, Flatten columns and channel shuffles come out exact; elementwise ops (residual adds, SE's
``x * scale``) join the labels they combine (union-find), norms join their per-channel parameters.
Labels joined this way form a *class*: elements that must go together. Classes touching the same set of
(layer, dimension) pairs form a :class:`CoupledGroup`, one channel space, ranked and pruned as a unit.

What is refused (frozen, with the reason): classes reaching the model's output, layers or functions the
graph does not know (``nn.MultiheadAttention``, matmul/einsum attention, ...), dims whose size is a
literal in the code (``x.reshape(n, 768, -1)``), slices with fixed bounds across channels, zero padding
of channels with a fixed width, and any class whose elements do not form whole slices of a tensor.
After pruning, a forward on the example input checks the result; a failure raises ``ValueError``
naming the group, so a broken model is never returned.

Limits (safe, but they prune less than possible): one label per element, so a layer applied across a
dim that is not its channels (a token-mixing Linear) joins those channels into one unit; position
lockstep for ``chunk``/literal views is stronger than the equal-count rule it stands for, so
ShuffleNet's shuffled residual streams end up as single units; attention (matmul, einsum,
``nn.MultiheadAttention``, Swin's fused function) is frozen, not split into heads.

>>> from pruning_utils import SmallCNN
>>> pruned = prune_graph(SmallCNN(widths=(16, 32), input_size=8), 0.5)
>>> pruned.conv1.out_channels, pruned.fc.in_features
(8, 256)
"""

from __future__ import annotations

import copy
import operator
import time
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .checks import check_flag, check_fraction, check_int, check_module, check_names, check_numbers, check_tensor
from .flops import _eval_mode, check_input_size, default_input_size, example_input as _zeros_input
from .masks import apply_mask, get_mask
from .structured import (IMPORTANCE, _criterion, _fill, _plain_type, _rebuild, _rebuild_norm, _set_module, _take,
                         _top, channels_to_keep, structure_report)

__all__ = ["CoupledGroup", "DependencyGraph", "prune_graph"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CHANNEL_NORM = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
_POOL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample,
)
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
_PAD_MODULES = (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
                nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d)

_BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
           operator.imul, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div, torch.maximum,
           torch.minimum, torch.true_divide, operator.gt, operator.lt, operator.ge, operator.le, operator.eq,
           operator.ne, torch.gt, torch.lt, torch.ge, torch.le, torch.where}
_BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "sub_", "mul_", "div_", "maximum", "minimum", "true_divide",
                   "gt", "lt", "ge", "le", "masked_fill"}
_UNARY = {F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, F.elu, F.selu, F.mish,
          F.leaky_relu, F.hardtanh, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
          torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.neg, operator.neg, torch.exp, torch.abs,
          torch.sqrt, torch.rsqrt, torch.square, torch.erf}
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp", "clamp_", "neg", "exp", "abs", "sqrt",
                  "rsqrt", "square", "contiguous", "clone", "detach", "to", "float", "double", "half", "type_as",
                  "requires_grad_", "pow", "erf"}
_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
_POOL_FUNCTIONS = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
                   F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
                   F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3, F.max_pool1d: 1, F.max_pool2d: 2,
                   F.max_pool3d: 3, F.interpolate: None}
_ARITHMETIC = {operator.mul, operator.floordiv, operator.truediv, operator.add, operator.sub}
_REDUCE = {torch.mean, torch.sum, torch.amax, torch.amin}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
# Data movement: the same call on the label tensor gives the output's labels (literal sizes checked apart).
_MOVE = {torch.flatten, torch.permute, torch.transpose, torch.swapaxes, torch.movedim, torch.squeeze,
         torch.unsqueeze, torch.cat, torch.concat, torch.stack, torch.flip, torch.reshape, torch.chunk,
         torch.split, torch.unbind, torch.roll, torch.narrow}
_MOVE_METHODS = {"flatten", "permute", "transpose", "swapaxes", "movedim", "squeeze", "unsqueeze", "view",
                 "reshape", "expand", "expand_as", "repeat", "chunk", "split", "unbind", "unflatten", "flip",
                 "roll", "narrow", "t"}


def _wrapped(name: str):
    """torchvision functions registered with ``torch.fx.wrap`` (None when torchvision is absent)."""
    try:
        if name == "stochastic_depth":
            from torchvision.ops import stochastic_depth as fn
        else:
            from torchvision.models import swin_transformer as swin
            fn = getattr(swin, name)
        return fn
    except (ImportError, AttributeError):
        return None


# ---------------------------------------------------------------------------------------------
# Union-find over channel labels (vectorised: one call joins many pairs)
# ---------------------------------------------------------------------------------------------


class _Labels:
    def __init__(self):
        self.parent = torch.arange(1024)
        self.next = 0
        self.changed = False

    def fresh(self, n: int) -> torch.Tensor:
        need = self.next + n
        if need > len(self.parent):
            size = max(need, 2 * len(self.parent))
            self.parent = torch.cat([self.parent, torch.arange(len(self.parent), size)])
        ids = torch.arange(self.next, need)
        self.next = need
        return ids

    def find(self, x: torch.Tensor) -> torch.Tensor:
        r = self.parent[x]
        while True:
            rr = self.parent[r]
            if torch.equal(rr, r):
                break
            r = rr
        self.parent[x] = r
        return r

    def roots(self, labels: torch.Tensor) -> torch.Tensor:
        """Each label replaced by its class (root); -1 stays -1."""
        flat = labels.reshape(-1)
        u, inv = torch.unique(flat, return_inverse=True)
        ru = torch.where(u >= 0, self.find(u.clamp(min=0)), u)
        return ru[inv].reshape(labels.shape)

    def union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = torch.broadcast_tensors(a, b)
        a, b = a.reshape(-1), b.reshape(-1)
        ok = (a >= 0) & (b >= 0) & (a != b)
        if not bool(ok.any()):
            return
        a, b = a[ok], b[ok]
        n = len(self.parent)
        pairs = torch.unique(torch.minimum(a, b) * n + torch.maximum(a, b))
        a, b = pairs // n, pairs % n
        while True:
            ra, rb = self.find(a), self.find(b)
            m = ra != rb
            if not bool(m.any()):
                return
            self.changed = True
            lo, hi = torch.minimum(ra[m], rb[m]), torch.maximum(ra[m], rb[m])
            self.parent.scatter_reduce_(0, hi, lo, reduce="amin")


def _tree_map(fn, value):
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Size):
        return type(value)(_tree_map(fn, v) for v in value) if not hasattr(value, "_fields") else \
            type(value)(*(_tree_map(fn, v) for v in value))
    if isinstance(value, dict):
        return {k: _tree_map(fn, v) for k, v in value.items()}
    return fn(value)


def _tensors(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _dims(dim, ndim: int) -> list[int]:
    dims = dim if isinstance(dim, (tuple, list)) else [dim]
    return sorted({int(d) % ndim for d in dims})


# ---------------------------------------------------------------------------------------------
# The groups
# ---------------------------------------------------------------------------------------------


_WHAT = {"out": "weight dim 0 (output channels), bias if any", "in": "weight dim 1 (input channels)",
         "norm": "weight, bias, running statistics of the same channels"}


@dataclass
class CoupledGroup:
    """Channels coupled across layers: one channel space, pruned as a unit with the same kept classes.

    ``units`` is the number of prunable units (classes of channels that go together: one channel of a
    plain conv chain, or the ``g`` lockstep positions of a grouped conv); ``members`` the coupled
    ``(layer or parameter, dimension, channels)`` triples; ``frozen`` the reason when no unit may go,
    ``frozen_units`` how many units must stay (e.g. channels facing a fixed zero padding). ``exact`` is
    False when a norm or softmax reads across the pruned dim (LayerNorm over channels, GroupNorm):
    pruning then changes the function, not only removes the pruned channels' contributions.
    """

    index: int
    units: int
    members: list[tuple[str, str, int]] = field(default_factory=list)
    frozen: str | None = None
    frozen_units: int = 0
    exact: bool = True
    roots: list[int] = field(default_factory=list, repr=False)

    @property
    def prunable(self) -> bool:
        return self.frozen is None and self.units - self.frozen_units > 0 and self.units > 1

    def details(self) -> str:
        """One line per coupled layer and dimension."""
        state = f"frozen: {self.frozen}" if self.frozen else (
            f"{self.frozen_units} of them must stay" if self.frozen_units else "prunable")
        norm = "" if self.exact else "; a norm reads across these channels (pruning changes the function)"
        lines = [f"group {self.index}: {self.units} units ({state}{norm})"]
        for name, what, count in self.members:
            lines.append(f"  {name:<28} {what}: {count}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.details()


# ---------------------------------------------------------------------------------------------
# Tracing and label propagation
# ---------------------------------------------------------------------------------------------


class _Frozen(Exception):
    """Raised inside a handler: freeze every class of the node's inputs with this reason."""


# Spatial sizes tried when a model declares no input size: the common image sizes first (32x32 CIFAR,
# 28x28 MNIST, 8x8 digits), then every size up to 64 (a Flatten -> Linear head accepts only one), then
# larger ImageNet-style ones.
_COMMON = (32, 28, 8)
_TRIAL_SIZES = {1: tuple(dict.fromkeys((*_COMMON, *range(1, 65), 96, 128, 224, 299))),
                2: tuple(dict.fromkeys((*_COMMON, *range(1, 65), 96, 128, 224, 299))),
                3: tuple(dict.fromkeys((*_COMMON, *range(1, 33))))}


def _inferred_input_size(model: nn.Module) -> tuple | None:
    """An input shape (batch 1) that runs through ``model``, found from its first Conv/Linear layer, or None.

    The first layer (in module order) gives the channels (``in_channels`` of a conv, ``in_features`` of a
    Linear); for a conv, square spatial sizes from :data:`_TRIAL_SIZES` are tried (32, 28, 8, then 1 to
    64, then 96 to 299), and the first one the model's forward accepts is returned. Channel couplings
    do not depend on the spatial size a forward runs at, so any size the model accepts traces the
    same groups; the size a Flatten -> Linear head needs is the only one it accepts.
    """
    check_module(model)
    first = next((m for m in model.modules() if isinstance(m, (*_CONV, nn.Linear))), None)
    if first is None:
        return None
    if isinstance(first, nn.Linear):
        candidates = [(1, first.in_features)]
    else:
        dims = _CONV.index(type(first)) + 1 if type(first) in _CONV else first.weight.dim() - 2
        candidates = [(1, first.in_channels, *(s,) * dims) for s in _TRIAL_SIZES.get(dims, (32,))]
    for size in candidates:
        try:
            with torch.no_grad(), _eval_mode(model):
                model(_zeros_input(model, size))
        except Exception:  # noqa: BLE001 - any failure means "not this size"
            continue
        return size
    return None


class DependencyGraph:
    """The coupled channels of ``model``, traced with torch.fx and a labelled forward on an example input.

    * ``example_input``: a batch the model accepts; or ``input_size`` (batch included); the course's
      models default to their own input size, and any other model to the first size found to run
      through it (the first layer's channels; common square spatial sizes tried first, see
      :func:`_inferred_input_size`); :attr:`input_size` says which.
    * ``exclude``: layer (or parameter, or container) names left whole: every class touching them is
      frozen. It is applied before anything else is checked.

    :attr:`groups` lists every :class:`CoupledGroup` (``print(graph)`` shows them);
    :meth:`prune` returns a pruned copy. The model passed in is never modified.

    >>> from pruning_utils import cifar_resnet
    >>> graph = DependencyGraph(cifar_resnet(20))
    >>> sum(g.prunable for g in graph.groups)
    10
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor | None = None, *, input_size=None,
                 exclude=()):
        check_module(model)
        exclude = check_names(exclude, "exclude")
        names = {n for n, _ in model.named_modules()} | {n for n, _ in model.named_parameters()} | \
            {n for n, _ in model.named_buffers()}
        unknown = sorted(set(exclude) - names)
        if unknown:
            raise ValueError(f"exclude names no layer of the model: {unknown}")
        self.exclude = exclude
        self.input_inferred = False
        if example_input is None:
            size = default_input_size(model) if input_size is None else check_input_size(input_size)
            if size is None:
                size = _inferred_input_size(model)
                self.input_inferred = size is not None
            if size is None:
                raise ValueError(f"example_input (or input_size) is needed to trace {type(model).__name__}: no "
                                 f"input of the shape its first Conv/Linear layer reads ran through it, e.g. "
                                 f"example_input=torch.randn(1, 3, 32, 32)")
            example_input = _zeros_input(model, size)
            self._input_arg = f"input_size={size}" + (" (inferred from its first layer)" if self.input_inferred else "")
        else:
            check_tensor(example_input, "example_input", floating=True, nonempty=True)
            self._input_arg = f"example_input of shape {tuple(example_input.shape)}"
        self.model = model
        self.example_input = example_input
        self.input_size = tuple(example_input.shape)
        start = time.perf_counter()
        try:
            with _eval_mode(model):  # the inference graph (e.g. no auxiliary heads)
                self.traced = fx.symbolic_trace(model) if not isinstance(model, fx.GraphModule) else model
        except Exception as exc:  # noqa: BLE001 - fx raises many types; all mean "cannot trace"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{type(model).__name__} cannot be traced by torch.fx, so its channel dependencies "
                             f"cannot be found: {type(exc).__name__}: {reason}"[:600]) from None
        self._modules = dict(model.named_modules())
        self._own_tensors = {n for n, _ in model.named_parameters(remove_duplicate=False)} | \
            {n for n, _ in model.named_buffers(remove_duplicate=False)}
        self._analyse()
        self.trace_seconds = time.perf_counter() - start
        self.report = None
        self.kept: dict[tuple[str, str], torch.Tensor] = {}

    # ----- passes -------------------------------------------------------------------------------

    def _analyse(self) -> None:
        # Passes until no label joins another: then every decision of the last pass (freeze a dim that
        # varies, skip a broadcast operand) was taken knowing every coupling. Models settle in 1-2 passes.
        self._uf = _Labels()
        for _ in range(32):
            self._uf.changed = False
            self._run_pass()
            if not self._uf.changed:
                break
        else:
            raise ValueError(f"the channel couplings of {type(self.model).__name__} did not settle after 32 passes")
        self._build_groups()

    def _run_pass(self) -> None:
        uf = self._uf
        uf.next = 0
        self._freezes: list[tuple[torch.Tensor, str]] = []
        self._inexact: list[torch.Tensor] = []
        self._members: dict[tuple[str, str], torch.Tensor] = {}
        self._producer_cache: dict[str, torch.Tensor] = {}
        self._params: dict[str, torch.Tensor] = {}
        self._norm_after: dict[str, str] = {}
        self._ln_modules: set[str] = set()
        self._prov: dict[fx.Node, tuple] = {}
        graph = self.traced.graph
        last_use: dict[fx.Node, fx.Node] = {}
        for node in graph.nodes:
            for arg in node.all_input_nodes:
                last_use[arg] = node
        env: dict[fx.Node, tuple] = {}
        with torch.no_grad(), _eval_mode(self.model):
            for node in graph.nodes:
                value, labels = self._step(node, env)
                env[node] = (value, labels)
                for arg in node.all_input_nodes:
                    if last_use.get(arg) is node:
                        del env[arg]

    def _where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"layer {node.target!r} ({type(self._modules[node.target]).__name__})"
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        return f"{node.op.replace('call_', '')} {target!r} (node {node.name!r})"

    def _step(self, node: fx.Node, env) -> tuple:
        value_of = lambda n: env[n][0]  # noqa: E731
        label_of = lambda n: env[n][1]  # noqa: E731
        if node.op == "placeholder":
            if node.name == next(iter(self.traced.graph.nodes)).name:
                value = self.example_input
            else:
                value = node.args[0] if node.args else None
            return value, _tree_map(lambda v: torch.full(v.shape, -1, dtype=torch.long)
                                    if isinstance(v, torch.Tensor) else None, value)
        if node.op == "get_attr":
            value = self.traced
            for part in node.target.split("."):
                value = getattr(value, part)
            if not isinstance(value, torch.Tensor):
                return value, None
            if node.target not in self._own_tensors:  # a constant fx made at trace time (torch.ones(6) in forward)
                return value, torch.full(value.shape, -1, dtype=torch.long)
            if node.target not in self._params:
                self._params[node.target] = self._uf.fresh(value.numel()).reshape(value.shape)
            return value, self._params[node.target]
        if node.op == "output":
            out_labels = fx.node.map_arg(node.args[0], label_of)
            for t in _tensors(out_labels):
                self._freeze(t, "they reach the model's output")
            return None, None
        args = fx.node.map_arg(node.args, value_of)
        kwargs = fx.node.map_arg(node.kwargs, value_of)
        largs = fx.node.map_arg(node.args, label_of)
        lkwargs = fx.node.map_arg(node.kwargs, label_of)
        try:
            if node.op == "call_module":
                value = self._modules[node.target](*args, **kwargs)
            elif node.op == "call_function":
                value = node.target(*args, **kwargs)
            else:
                value = getattr(args[0], node.target)(*args[1:], **kwargs)
        except Exception as exc:  # noqa: BLE001 - the model's own forward failed on this input
            raise ValueError(f"{self._input_arg} does not fit {type(self.model).__name__}: "
                             f"{self._where(node)} raised {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}"[:600]) from None
        if not _tensors(value):
            self._provenance(node, args, kwargs, largs)
            if node.op == "call_function" and node.target is operator.getitem and isinstance(largs[0], (tuple, list)):
                return value, largs[0][args[1]]
            return value, None
        if node.op == "call_function" and node.target is operator.getitem and isinstance(largs[0], (tuple, list)):
            return value, largs[0][args[1]]
        try:
            labels = self._labels(node, args, kwargs, largs, lkwargs, value)
        except _Frozen as why:
            labels = None
            reason = str(why)
        else:
            reason = None
        if labels is not None:
            ok = True
            for lt, vt in zip(_tensors(labels), _tensors(value)):
                ok &= tuple(lt.shape) == tuple(vt.shape)
            if not ok or len(_tensors(labels)) != len(_tensors(value)):
                labels, reason = None, f"{self._where(node)}: label shapes do not follow the data"
        if labels is None:
            reason = reason or f"{self._where(node)} is an operation the dependency graph does not know"
            for t in _tensors(largs) + _tensors(lkwargs):
                self._freeze(t, reason)
            labels = _tree_map(lambda v: torch.full(v.shape, -1, dtype=torch.long)
                               if isinstance(v, torch.Tensor) else None, value)
        self._check_slices(node, labels)
        return value, labels

    def _provenance(self, node, args, kwargs, largs) -> None:
        """Remember which tensor dim a size value (``x.size(1)``, ``c`` in ``n, c, h, w = x.shape``) reads."""
        src = largs[0] if largs else None
        if node.op == "call_method" and node.target == "size" and isinstance(src, torch.Tensor):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            self._prov[node] = ("all", src) if dim is None else (src, int(dim) % src.dim())
        elif node.op == "call_function" and node.target is getattr and isinstance(src, torch.Tensor) and \
                args[1] == "shape":
            self._prov[node] = ("all", src)
        elif node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], fx.Node) \
                and isinstance(args[1], int):
            prov = self._prov.get(node.args[0])
            if prov is not None and isinstance(prov[0], str):
                self._prov[node] = (prov[1], args[1] % prov[1].dim())
        elif node.op == "call_function" and node.target in _ARITHMETIC:  # c // groups, h * w: still that size
            provs = [self._prov[a] for a in node.args if isinstance(a, fx.Node) and a in self._prov
                     and not isinstance(self._prov[a][0], str)]
            if len(provs) == 1:
                self._prov[node] = provs[0]

    # ----- helpers ------------------------------------------------------------------------------

    def _freeze(self, labels: torch.Tensor, reason: str) -> None:
        u = torch.unique(labels)
        u = u[u >= 0]
        if len(u):
            self._freezes.append((u, reason))

    def _varies(self, labels: torch.Tensor, dim: int) -> bool:
        if labels.shape[dim] <= 1:
            return False
        r = self._uf.roots(labels)
        return not bool((r == r.narrow(dim, 0, 1)).all())

    def _collapse(self, labels: torch.Tensor, dims: list[int]) -> torch.Tensor:
        """Join every element along ``dims`` into one class; return the labels with those dims of size 1."""
        ndim = labels.dim()
        dims = sorted({d % ndim for d in dims})
        if not dims:
            return labels
        keep = [d for d in range(ndim) if d not in dims]
        moved = labels.permute(*keep, *dims).reshape(*[labels.shape[d] for d in keep], -1)
        rep = moved.max(-1, keepdim=True).values
        self._uf.union(moved, rep)
        shape = [labels.shape[d] if d in keep else 1 for d in range(ndim)]
        return rep.reshape(shape)

    def _channels(self, labels: torch.Tensor, cdim: int) -> torch.Tensor:
        """One label per channel along ``cdim`` (the channel's elements joined)."""
        cdim %= labels.dim()
        return self._collapse(labels, [d for d in range(labels.dim()) if d != cdim]).reshape(-1)

    def _tie(self, labels: torch.Tensor, dim: int) -> None:
        """Lockstep: element i of every slice along ``dim`` goes together (that dim keeps its size)."""
        if self._varies(labels, dim):
            self._uf.union(labels, labels.narrow(dim, 0, 1))

    def _member(self, name: str, kind: str, labels: torch.Tensor) -> None:
        key = (name, kind)
        labels = labels.reshape(-1)
        if key in self._members:
            old = self._members[key]
            if old.shape != labels.shape:
                raise _Frozen(f"layer {name!r} is used at several places with different shapes")
            self._uf.union(old, labels)
            labels = torch.where(old >= 0, old, labels)
        self._members[key] = labels.clone()

    def _producer(self, name: str, n: int) -> torch.Tensor:
        if name not in self._producer_cache:
            self._producer_cache[name] = self._uf.fresh(n)
        return self._producer_cache[name]

    def _broadcast(self, per_channel: torch.Tensor, shape, cdim: int) -> torch.Tensor:
        view = [1] * len(shape)
        view[cdim % len(shape)] = -1
        return per_channel.reshape(view).expand(shape)

    def _check_slices(self, node: fx.Node, labels) -> None:
        """Freeze the classes whose elements are not whole slices of this tensor along one dim."""
        for lab in _tensors(labels):
            if lab.numel() <= 1 or not bool((lab >= 0).any()):
                continue
            r = self._uf.roots(lab)
            u, inv, counts = torch.unique(r.reshape(-1), return_inverse=True, return_counts=True)
            inv = inv.reshape(r.shape)
            ok = counts == r.numel()
            for d in range(r.dim()):
                n = r.shape[d]
                if n == 1:
                    continue
                s = r.movedim(d, 0).reshape(n, -1)
                const = (s == s[:, :1]).all(1)
                first = inv.movedim(d, 0).reshape(n, -1)[:, 0]
                contrib = torch.zeros(len(u), dtype=torch.long).index_add_(
                    0, first[const], torch.full((int(const.sum()),), s.shape[1], dtype=torch.long))
                ok |= contrib == counts
            bad = u[(~ok) & (u >= 0)]
            if len(bad):
                self._freezes.append((bad, f"their channels do not form whole slices of the tensor at "
                                           f"{self._where(node)}"))

    # ----- the handlers -------------------------------------------------------------------------

    def _labels(self, node, args, kwargs, largs, lkwargs, value):
        if node.op == "call_module":
            return self._module_labels(node, self._modules[node.target], args, largs, value)
        target = node.target
        is_method = node.op == "call_method"
        x = largs[0] if largs else None
        if (not is_method and target in _BINARY) or (is_method and target in _BINARY_METHODS):
            n = 3 if target is torch.where else 2
            if target is torch.where and len(args) < 3:
                return None  # torch.where(cond): indices, not an elementwise result
            return self._elementwise(node, [a for a in (*largs[:n],) if isinstance(a, torch.Tensor)],
                                     [a for a in (*args[:n],) if isinstance(a, torch.Tensor)], value)
        if (not is_method and target in _UNARY) or (is_method and target in _UNARY_METHODS) or \
                (not is_method and target is _wrapped("stochastic_depth")):
            if isinstance(x, torch.Tensor) and tuple(x.shape) == tuple(value.shape):
                if is_method and target == "type_as" or (not is_method and target is torch.clamp):
                    return x
                if len(_tensors(largs[1:])) and not (is_method and target == "to"):
                    return self._elementwise(node, _tensors(largs), _tensors(args), value)
                return x
            return None
        if (not is_method and target in _SOFTMAX) or (is_method and target in {"softmax", "log_softmax"}):
            self._inexact.append(x)
            return x
        if not is_method and target in _POOL_FUNCTIONS:
            return self._per_channel(x, value, _POOL_FUNCTIONS[target])
        if (not is_method and target in _REDUCE) or (is_method and target in _REDUCE_METHODS):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if dim is None:
                return None
            keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            out = self._collapse(x, _dims(dim, x.dim()))
            if not keepdim:
                out = out.reshape(value.shape)
            return out
        if not is_method and target is F.pad:
            return self._pad(node, x, args[1], kwargs.get("mode", args[2] if len(args) > 2 else "constant"))
        if not is_method and target is F.layer_norm:
            return self._functional_layer_norm(node, args, largs, kwargs, lkwargs)
        if not is_method and target is _wrapped("_patch_merging_pad"):
            return self._per_channel(x, value, None, cdim=-1)
        if not is_method and target is operator.getitem:
            return self._getitem(node, x, args[1])
        if (not is_method and target in _MOVE) or (is_method and target in _MOVE_METHODS):
            return self._move(node, args, kwargs, largs, lkwargs, value)
        if not is_method and target is _wrapped("shifted_window_attention"):
            raise _Frozen(f"{self._where(node)} (Swin attention) ties its embedding width to its heads")
        if (not is_method and target in {torch.matmul, operator.matmul, torch.bmm, torch.einsum}) or \
                (is_method and target in {"matmul", "bmm"}):
            raise _Frozen(f"{self._where(node)}: attention (matmul/einsum) couples its heads and widths, "
                          f"which the graph does not split")
        return None

    def _module_labels(self, node, module, args, largs, value):
        name = node.target
        x = largs[0] if largs else None
        if isinstance(module, nn.MultiheadAttention):
            raise _Frozen(f"{self._where(node)}: nn.MultiheadAttention ties its embedding width to its heads")
        if not isinstance(x, torch.Tensor) or not isinstance(value, torch.Tensor):
            return None
        if isinstance(module, _CONV):
            return self._conv(name, module, x, value)
        if isinstance(module, nn.Linear):
            self._member(name, "in", self._channels(x, -1))
            out = self._producer(name, module.out_features)
            self._member(name, "out", out)
            return self._broadcast(out, value.shape, -1)
        if isinstance(module, _CHANNEL_NORM):
            cdim = 1 if x.dim() > 1 else 0
            self._member(name, "norm", self._channels(x, cdim))
            self._after(node, name)
            return x
        if isinstance(module, nn.LayerNorm):
            if len(module.normalized_shape) != 1:
                raise _Frozen(f"{self._where(node)} normalises over several dims")
            chan = self._channels(x, -1)
            self._member(name, "norm", chan)
            self._inexact.append(chan)
            self._after(node, name)
            return x
        if isinstance(module, nn.GroupNorm):
            chan = self._channels(x, 1)
            g = module.num_groups
            self._uf.union(chan.reshape(g, -1), chan.reshape(g, -1)[:1])
            self._member(name, "norm", chan)
            self._inexact.append(chan)
            self._after(node, name)
            return x
        if isinstance(module, _ELEMENTWISE_MODULES) or (isinstance(module, nn.PReLU) and module.num_parameters == 1):
            return x if tuple(x.shape) == tuple(value.shape) else None
        if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
            self._inexact.append(x)
            return x
        if isinstance(module, _POOL):
            return self._per_channel(x, value, None)
        if isinstance(module, nn.Flatten):
            return x.flatten(module.start_dim, module.end_dim)
        if isinstance(module, nn.Unflatten):
            out = x.unflatten(module.dim, module.unflattened_size)
            d = module.dim % x.dim()
            for i in range(len(module.unflattened_size)):
                self._tie(out, d + i)
            return out
        if isinstance(module, _PAD_MODULES):
            return self._pad(node, x, module.padding, "constant")
        return None

    def _after(self, node, name: str) -> None:
        src = node.args[0] if node.args else None
        if isinstance(src, fx.Node) and src.op == "call_module" and \
                isinstance(self._modules[src.target], (*_CONV, nn.Linear)):
            self._norm_after.setdefault(src.target, name)

    def _conv(self, name, m, x, value):
        spatial = len(m.kernel_size)
        cdim = 1 if x.dim() == spatial + 2 else 0
        chan = self._channels(x, cdim)
        g, cin, cout = m.groups, m.in_channels, m.out_channels
        per_in, per_out = cin // g, cout // g
        if g == 1:
            out = self._producer(name, cout)
        elif per_in == 1:  # depthwise (or a channel multiplier): output channels belong to their input channel
            out = chan.repeat_interleave(per_out)
            own = self._producer(name, cout)  # its own filters join the same class
            self._uf.union(own, out)
        else:  # grouped: position j of every group goes together, so every group keeps the same count
            self._uf.union(chan.reshape(g, per_in), chan.reshape(g, per_in)[:1])
            pos = self._producer(name, per_out)
            out = pos.repeat(g)
        self._member(name, "in", chan)
        self._member(name, "out", out)
        return self._broadcast(out, value.shape, cdim)

    def _elementwise(self, node, labels: list, values: list, value):
        shape = value.shape
        full = [lab.expand(shape) if lab.dim() <= len(shape) else None for lab in labels]
        if any(f is None for f in full):
            return None
        broadcast = []
        for lab in labels:
            pad = [1] * (len(shape) - lab.dim()) + list(lab.shape)
            broadcast.append({d for d in range(len(shape)) if pad[d] == 1 and shape[d] > 1})
        out = None
        for i, (fi, bi) in enumerate(zip(full, broadcast)):
            if not bi:
                out = fi if out is None else torch.where(out >= 0, out, fi)
        if out is None:
            out = full[0]
            for fi in full[1:]:
                out = torch.where(out >= 0, out, fi)
        for i, (fi, bi) in enumerate(zip(full, broadcast)):
            for j, (fj, bj) in enumerate(zip(full, broadcast)):
                if j <= i:
                    continue
                if any(self._varies(fj, d) for d in bi) or any(self._varies(fi, d) for d in bj):
                    continue  # one side is shared along the other's channel dim: no coupling
                self._uf.union(fi, fj)
                for a, fa, fb, ba in ((i, fi, fj, bi), (j, fj, fi, bj)):
                    if labels[a].numel() > 1 and bool((fa < 0).any()):
                        facing = fb[(fa < 0) & (fb >= 0)]
                        if facing.numel():
                            self._freeze(facing, f"they meet a tensor of fixed size at {self._where(node)}")
        return out

    def _per_channel(self, x, value, spatial, cdim: int = 1):
        if not isinstance(x, torch.Tensor) or x.dim() != value.dim():
            return None
        cdim %= x.dim()
        if x.shape[cdim] != value.shape[cdim]:
            return None
        return self._broadcast(self._channels(x, cdim), value.shape, cdim)

    def _pad(self, node, x, pad, mode):
        pad = list(pad)
        out = x
        for k in range(len(pad) // 2):
            d = x.dim() - 1 - k
            before, after = int(pad[2 * k]), int(pad[2 * k + 1])
            if before == 0 and after == 0:
                continue
            n = out.shape[d]
            varies = self._varies(out, d)
            if varies and (before < 0 or after < 0):
                raise _Frozen(f"{self._where(node)} crops channels by a fixed amount")
            idx = torch.arange(-before, n + after).clamp(0, n - 1)
            new = out.index_select(d, idx)
            if varies:  # the padded positions: fresh labels, frozen (that many channels must stay)
                where = torch.arange(-before, n + after)
                mask = (where < 0) | (where >= n)
                frozen = torch.full((len(where),), -1, dtype=torch.long)
                frozen[mask] = self._uf.fresh(int(mask.sum()))
                self._freezes.append((frozen[mask], f"they face a fixed-width padding at {self._where(node)}"))
                view = [1] * new.dim()
                view[d] = -1
                new = torch.where(mask.reshape(view).expand(new.shape), frozen.reshape(view).expand(new.shape), new)
            out = new
        return out

    def _functional_layer_norm(self, node, args, largs, kwargs, lkwargs):
        x = largs[0]
        shape = args[1]
        weight_node = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
        bias_node = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
        if len(shape) != 1 or not isinstance(weight_node, fx.Node) or weight_node.op != "get_attr":
            raise _Frozen(f"{self._where(node)} normalises a fixed shape")
        owner = weight_node.target.rpartition(".")[0]
        module = self._modules.get(owner)
        if not isinstance(module, nn.LayerNorm) or tuple(module.normalized_shape) != tuple(shape):
            raise _Frozen(f"{self._where(node)} normalises a fixed shape")
        chan = self._channels(x, -1)
        wl = largs[2] if len(largs) > 2 else lkwargs.get("weight")
        self._uf.union(chan, wl.reshape(-1))
        bl = largs[3] if len(largs) > 3 else lkwargs.get("bias")
        if isinstance(bl, torch.Tensor) and isinstance(bias_node, fx.Node):
            self._uf.union(chan, bl.reshape(-1))
        self._inexact.append(chan)
        self._ln_modules.add(owner)
        return x

    def _getitem(self, node, x, index):
        if not isinstance(x, torch.Tensor):
            return None
        idx = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, torch.Tensor) or isinstance(i, (list, bool)) for i in idx):
            return None
        n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
        d = 0
        for i in idx:
            if i is Ellipsis:
                d += x.dim() - n_real
                continue
            if i is None:
                continue
            trivial = isinstance(i, slice) and i == slice(None)
            if not trivial and self._varies(x, d):
                raise _Frozen(f"{self._where(node)} slices channels with fixed bounds")
            d += 1
        return x[index]

    def _move(self, node, args, kwargs, largs, lkwargs, value):
        target = node.target
        is_method = node.op == "call_method"
        name = target if is_method else target.__name__
        x = largs[0]
        if isinstance(x, (tuple, list)):  # cat / stack
            if not all(isinstance(t, torch.Tensor) for t in x):
                return None
            return target(x, *args[1:], **kwargs)
        if name in ("expand_as",):
            return x.expand(args[1].shape)
        ndim = x.dim()
        if name in ("view", "reshape"):
            spec = node.args[1:]
            if len(spec) == 1 and isinstance(spec[0], (tuple, list)):
                spec = spec[0]
            if len(spec) == 1 and isinstance(spec[0], fx.Node):
                spec = [None] * value.dim()
            out = x.reshape(value.shape)
            if len(spec) == value.dim():
                for d, s in enumerate(spec):
                    if isinstance(s, int) and s != -1 and s > 1:
                        self._tie(out, d)
                    prov = self._prov.get(s) if isinstance(s, fx.Node) else None
                    if prov is not None and not isinstance(prov[0], str) and self._varies(prov[0], prov[1]) \
                            and not self._varies(out, d):
                        # the size of a prunable dim reshapes a tensor that does not shrink with it
                        self._freeze(prov[0], f"{self._where(node)} gives a tensor that does not shrink with them "
                                              f"the size of their dim")
            return out
        if name == "unflatten":
            d = (args[1] if len(args) > 1 else kwargs["dim"]) % ndim
            out = x.unflatten(d, value.shape[d:d + value.dim() - ndim + 1])
            for i in range(value.dim() - ndim + 1):
                self._tie(out, d + i)
            return out
        if name in ("chunk", "split", "unbind"):
            dim = kwargs.get("dim", args[2] if len(args) > 2 else 0) if name != "unbind" else \
                kwargs.get("dim", args[1] if len(args) > 1 else 0)
            dim %= ndim
            if self._varies(x, dim):
                sizes = [t.shape[dim] for t in value]
                if name != "unbind" and len(set(sizes)) == 1:  # equal pieces: position j of each goes together
                    self._tie(x.unflatten(dim, (len(sizes), sizes[0])), dim)
                else:
                    raise _Frozen(f"{self._where(node)} splits channels into pieces of fixed sizes")
            if name == "unbind":
                return x.unbind(dim)
            return tuple(x.split([t.shape[dim] for t in value], dim))
        if name in ("roll", "narrow"):
            if name == "roll":
                dims = kwargs.get("dims", args[2] if len(args) > 2 else None)
                dims = list(range(ndim)) if dims is None else _dims(dims, ndim)
            else:
                dims = [(kwargs.get("dim", args[1])) % ndim]
            if any(self._varies(x, d) for d in dims):
                raise _Frozen(f"{self._where(node)} moves channels by a fixed amount")
        if name == "expand":
            sizes = args[1:] if not (len(args) == 2 and isinstance(args[1], (tuple, list))) else args[1]
            spec = node.args[1:] if not (len(node.args) == 2 and isinstance(node.args[1], (tuple, list))) \
                else node.args[1]
            out = x.expand(*sizes)
            offset = out.dim() - x.dim()
            for d, size in enumerate(spec):
                if isinstance(size, int) and size != -1 and d >= offset and self._varies(out, d):
                    raise _Frozen(f"{self._where(node)} expands channels to a fixed size")
            return out
        if is_method:
            return getattr(x, name)(*args[1:], **kwargs)
        return target(x, *args[1:], **kwargs)

    # ----- groups -------------------------------------------------------------------------------

    def _build_groups(self) -> None:
        uf = self._uf
        # parameters used in forward: the dim their classes slice
        for pname, lab in self._params.items():
            r = uf.roots(lab)
            varying = [d for d in range(r.dim()) if r.shape[d] > 1 and not bool((r == r.narrow(d, 0, 1)).all())]
            if len(varying) == 1:
                d = varying[0]
                self._members[(pname, f"param{d}")] = r.movedim(d, 0).reshape(r.shape[d], -1)[:, 0].clone()
            elif len(varying) > 1:
                self._freeze(r, f"parameter {pname!r} is coupled along several dims")
        excluded = lambda n: any(n == e or n.startswith(e + ".") for e in self.exclude)  # noqa: E731
        owners: dict[int, list[str]] = {}  # a tensor held by several layers (tied weights) cannot be sliced for one
        for pname, p in [*self.model.named_parameters(remove_duplicate=False),
                         *self.model.named_buffers(remove_duplicate=False)]:
            owners.setdefault(id(p), []).append(pname.rpartition(".")[0])
        tied = {o: ts for ts in owners.values() if len(set(ts)) > 1 for o in ts}
        for (name, kind), lab in self._members.items():
            if excluded(name):
                self._freeze(lab, f"{name!r} is in exclude")
            owner = name if not kind.startswith("param") else name.rpartition(".")[0]
            if owner in tied:
                others = sorted(set(tied[owner]) - {owner})
                self._freeze(lab, f"{owner!r} shares a weight with {others[0]!r} (tied weights)")
        frozen: dict[int, str] = {}
        for lab, reason in self._freezes:
            for root in uf.roots(lab).tolist():
                frozen.setdefault(root, reason)
        inexact = set()
        for lab in self._inexact:
            inexact.update(torch.unique(uf.roots(lab)).tolist())
        self._frozen, self._inexact_roots = frozen, inexact
        touch: dict[int, set] = {}
        first: dict[int, tuple] = {}
        roots = {}
        for order, (key, lab) in enumerate(self._members.items()):
            r = uf.roots(lab)
            roots[key] = r
            for pos, root in enumerate(r.tolist()):
                if root < 0:
                    continue
                touch.setdefault(root, set()).add(key)
                first.setdefault(root, (order, pos))
        self._member_roots = roots
        by_members: dict[frozenset, list[int]] = {}
        for root in sorted(touch, key=lambda k: first[k]):
            by_members.setdefault(frozenset(touch[root]), []).append(root)
        self.groups: list[CoupledGroup] = []
        keys = list(self._members)
        for classes in by_members.values():
            members = sorted(touch[classes[0]], key=keys.index)
            cls = set(classes)
            rows = []
            for key in members:
                name, kind = key
                count = sum(1 for v in roots[key].tolist() if v in cls)
                what = _WHAT.get(kind, f"dim {kind[5:]}" if kind.startswith("param") else kind)
                if kind == "in" and count != len(classes):
                    what = f"weight dim 1 (input channels / columns: {count // max(1, len(classes))} per unit)"
                rows.append((name, what, count))
            frozen_roots = [k for k in classes if k in frozen]
            reason = None
            if len(frozen_roots) == len(classes):
                reason = frozen[classes[0]]
            elif len(classes) == 1:
                reason = "a single unit (its channels are tied together)"
            self.groups.append(CoupledGroup(len(self.groups), len(classes), rows, reason,
                                            len(frozen_roots) if reason is None else len(classes),
                                            not any(k in inexact for k in classes), list(classes)))

    # ----- reporting ----------------------------------------------------------------------------

    def describe(self, frozen: bool = True) -> str:
        """Every group, one line per coupled layer and dimension (``frozen=False``: prunable ones only)."""
        return "\n".join(g.details() for g in self.groups if frozen or g.prunable)

    def __str__(self) -> str:
        return self.describe()

    @property
    def frozen_reasons(self) -> dict[str, int]:
        """How many groups each reason froze."""
        out: dict[str, int] = {}
        for g in self.groups:
            if not g.prunable and g.frozen:
                out[g.frozen] = out.get(g.frozen, 0) + 1
        return out

    # ----- importance and selection -------------------------------------------------------------

    def class_scores(self, importance="l1") -> dict[int, float]:
        """Importance of every class: the sum of its producers' per-output-channel scores.

        A producer is a Conv/Linear layer whose output channels belong to the class; its scores come
        from ``importance`` (a name in :data:`structured.IMPORTANCE` or a function ``(layer, bn) ->
        scores``; ``bn`` is the norm layer right after it, if any). A class without producer (channels
        of a parameter only) scores the L1 norm of its parameter slices.
        """
        crit = _criterion(importance, IMPORTANCE)
        scores: dict[int, float] = {}
        wanted = {k for g in self.groups if g.prunable for k in g.roots}
        for (name, kind), r in self._member_roots.items():
            module = self._modules.get(name)
            if kind != "out" or not isinstance(module, (*_CONV, nn.Linear)) or not wanted & set(r.tolist()):
                continue
            bn_name = self._norm_after.get(name)
            bn = self._modules[bn_name] if bn_name else None
            try:
                s = crit(module, bn)
            except ValueError as exc:
                raise ValueError(f"importance cannot score layer {name!r}: {exc}") from None
            out = module.weight.shape[0]
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != (out,):
                raise ValueError(f"importance must return one score per output channel of layer {name!r}, shape "
                                 f"({out},); got {getattr(s, 'shape', type(s).__name__)}")
            if s.is_complex() or not bool(torch.isfinite(s.detach().float()).all()):
                raise ValueError(f"the importance scores of layer {name!r} are not all finite real numbers "
                                 f"(NaN or inf weights?); channels cannot be ranked")
            for root, v in zip(r.tolist(), s.detach().float().cpu().tolist()):
                if root >= 0:
                    scores[root] = scores.get(root, 0.0) + v
        for (name, kind), r in self._member_roots.items():
            if not kind.startswith("param"):
                continue
            d = int(kind[5:])
            p = self._param(self.model, name).detach().float().abs()
            per = p.movedim(d, 0).reshape(p.shape[d], -1).sum(1).cpu().tolist()
            for root, v in zip(r.tolist(), per):
                if root >= 0 and root not in scores:
                    scores[root] = v
        return scores

    def plan(self, prune_ratio: float, importance="l1", round_to: int = 1, groups=None) -> dict[int, list[int]]:
        """The classes each prunable group removes: ``{group index: [class ids]}`` (``groups``: only these)."""
        prune_ratio = check_fraction(prune_ratio, "prune_ratio")
        round_to = check_int(round_to, "round_to", 1)
        if groups is not None:
            groups = set(check_numbers(groups, "groups", lambda v, n: check_int(v, n, 0), allow_empty=True))
            unknown = sorted(i for i in groups if i >= len(self.groups))
            if unknown:
                raise ValueError(f"groups names no group of the graph (it has {len(self.groups)}): {unknown}")
        scores = self.class_scores(importance)
        removed = {}
        for g in self.groups:
            if not g.prunable or (groups is not None and g.index not in groups):
                continue
            keep = channels_to_keep(g.units, prune_ratio, round_to)
            n_remove = g.units - keep
            candidates = [k for k in g.roots if k not in self._frozen]
            if n_remove <= 0 or not candidates:
                continue
            n_remove = min(n_remove, len(candidates))
            s = torch.tensor([scores.get(k, 0.0) for k in candidates])
            stay = set(_top(s, len(candidates) - n_remove).tolist())
            removed[g.index] = [k for i, k in enumerate(candidates) if i not in stay]
        return removed

    # ----- pruning ------------------------------------------------------------------------------

    @staticmethod
    def _param(model: nn.Module, name: str):
        owner, _, attr = name.rpartition(".")
        return getattr(model.get_submodule(owner) if owner else model, attr)

    def _apply(self, pruned: nn.Module, removed: set[int]) -> dict:
        kept = {}
        for key, r in self._member_roots.items():
            mask = torch.tensor([v not in removed for v in r.tolist()], dtype=torch.bool)
            if not bool(mask.all()):
                kept[key] = mask.nonzero().reshape(-1)
        layers = dict.fromkeys(name for name, kind in kept if not kind.startswith("param"))
        for name in layers:
            m = pruned.get_submodule(name)
            out_idx, in_idx, norm_idx = kept.get((name, "out")), kept.get((name, "in")), kept.get((name, "norm"))
            if isinstance(m, (*_CONV, nn.Linear)):
                new = _rebuild(m, out_idx, in_idx)  # grouped and depthwise convs too
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                new = _rebuild_norm(m, norm_idx)
            elif isinstance(m, _CHANNEL_NORM):
                new = _rebuild_instance_norm(m, norm_idx)
            elif isinstance(m, nn.LayerNorm):
                new = _rebuild_layer_norm(m, norm_idx)
            elif isinstance(m, nn.GroupNorm):
                new = _rebuild_group_norm(m, norm_idx)
            else:
                raise ValueError(f"layer {name!r} ({type(m).__name__}) cannot be rebuilt with fewer channels")
            _set_module(pruned, name, new)
        for (name, kind), idx in kept.items():
            if not kind.startswith("param"):
                continue
            d = int(kind[5:])
            owner_name, _, attr = name.rpartition(".")
            owner = pruned.get_submodule(owner_name) if owner_name else pruned
            old = getattr(owner, attr)
            new = old.detach().index_select(d, idx.to(old.device)).clone()
            if isinstance(old, nn.Parameter):
                setattr(owner, attr, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                owner._buffers[attr] = new
        for owner in self._ln_modules:
            m = pruned.get_submodule(owner)
            if m.weight is not None:
                m.normalized_shape = tuple(m.weight.shape)
        return kept

    def prune(self, prune_ratio: float = 0.3, *, importance="l1", round_to: int = 1, groups=None,
              verbose: bool = False) -> nn.Module:
        """A copy of the model with ``prune_ratio`` of every prunable group's units removed.

        Each group keeps :func:`channels_to_keep` ``(units, prune_ratio, round_to)`` units (``round_to``
        counts units of that group), the most important by :meth:`class_scores`. Kept weights are
        copied exactly; BatchNorm settings and unstructured masks survive. A forward on the example
        input checks the copy; a failure raises ``ValueError`` naming the group. ``groups`` (indices
        into :attr:`groups`) prunes only those.
        """
        removed = self.plan(prune_ratio, importance, round_to, groups)
        check_flag(verbose, "verbose")
        blame = lambda gi, failure: (f"pruning group {gi} of {type(self.model).__name__} breaks its forward "
                                     f"({failure}); pass exclude=[...] with one of its layers:\n"
                                     f"{self.groups[gi].details()}")
        pruned, self.kept = self._pruned_copy(removed, blame)
        self.removed = removed
        self.report = structure_report(self.model, pruned, self.input_size)
        if verbose:
            print(self.report)
        return pruned

    def _pruned_copy(self, removed: dict[int, list[int]], blame) -> tuple[nn.Module, dict]:
        """``(copy, kept indices)``: a copy of the model without the classes in ``removed`` ({group
        index: class ids}), checked by a forward on the example input. A copy that fails raises
        ``ValueError``: ``blame(group index, failure)`` for the first group that breaks it on its own."""
        pruned = copy.deepcopy(self.model)
        kept = self._apply(pruned, {k for ks in removed.values() for k in ks})
        failure = self._self_check(pruned)
        if failure:
            for gi, ks in removed.items():  # which group breaks it?
                trial = copy.deepcopy(self.model)
                self._apply(trial, set(ks))
                if self._self_check(trial):
                    raise ValueError(blame(gi, failure))
            raise ValueError(f"pruning {type(self.model).__name__} breaks its forward: {failure}")
        return pruned, kept

    def _self_check(self, pruned: nn.Module) -> str | None:
        try:
            with torch.no_grad(), _eval_mode(self.model, pruned):
                ref = self.model(self.example_input)
                out = pruned(self.example_input)
        except Exception as exc:  # noqa: BLE001 - any failure means the pruned model is broken
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        for a, b in zip(_tensors(ref), _tensors(out)):
            if a.shape != b.shape:
                return f"output shape {tuple(b.shape)} instead of {tuple(a.shape)}"
        if len(_tensors(ref)) != len(_tensors(out)):
            return "the output structure changed"
        return None


# ---------------------------------------------------------------------------------------------
# Rebuilding the layers structured.py does not: grouped convs and the other norms
# ---------------------------------------------------------------------------------------------


def _on_device_of(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` moved to the device and floating dtype of ``old``'s tensors."""
    tensors = [*old.parameters(), *old.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    if floating:
        new = new.to(device=floating[0].device, dtype=floating[0].dtype)
    return new


def _rebuild_instance_norm(m: nn.Module, idx) -> nn.Module:
    cls = _plain_type(m)
    new = _on_device_of(cls(len(idx), eps=m.eps, momentum=m.momentum, affine=m.affine,
                            track_running_stats=m.track_running_stats), m)
    values = {}
    if m.affine:
        values.update(weight=_take(m.weight, 0, idx), bias=_take(m.bias, 0, idx))
    if m.track_running_stats and m.running_mean is not None:
        values.update(running_mean=_take(m.running_mean, 0, idx), running_var=_take(m.running_var, 0, idx))
    return _fill(new, m, values)


def _rebuild_layer_norm(m: nn.LayerNorm, idx) -> nn.Module:
    cls = _plain_type(m)
    ref = m.weight
    kwargs = {} if ref is None else dict(device=ref.device, dtype=ref.dtype)
    new = cls(len(idx), eps=m.eps, elementwise_affine=m.elementwise_affine, bias=m.bias is not None, **kwargs)
    values = {}
    if m.weight is not None:
        values["weight"] = _take(m.weight, 0, idx)
    if m.bias is not None:
        values["bias"] = _take(m.bias, 0, idx)
    return _fill(new, m, values)


def _rebuild_group_norm(m: nn.GroupNorm, idx) -> nn.Module:
    cls = _plain_type(m)
    new = _on_device_of(cls(m.num_groups, len(idx), eps=m.eps, affine=m.affine), m)
    values = {}
    if m.affine:
        values.update(weight=_take(m.weight, 0, idx), bias=_take(m.bias, 0, idx))
    return _fill(new, m, values)


def prune_graph(model: nn.Module, prune_ratio: float = 0.3, example_input: torch.Tensor | None = None, *,
                input_size=None, importance="l1", round_to: int = 1, exclude=(), verbose: bool = False) -> nn.Module:
    """A pruned copy of ``model``: ``prune_ratio`` of the units of every coupled group the graph can prune.

    See :class:`DependencyGraph` (tracing, ``exclude``) and :meth:`DependencyGraph.prune` (importance,
    ``round_to``, the self-check). The model passed in is never modified.
    """
    prune_ratio = check_fraction(prune_ratio, "prune_ratio")
    check_int(round_to, "round_to", 1)
    _criterion(importance, IMPORTANCE)
    graph = DependencyGraph(model, example_input, input_size=input_size, exclude=exclude)
    return graph.prune(prune_ratio, importance=importance, round_to=round_to, verbose=verbose)
