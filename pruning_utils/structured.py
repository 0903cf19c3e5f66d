"""Structured pruning: remove whole filters (output channels) and hidden neurons.

Unstructured pruning leaves every tensor its shape and only writes zeros; structured pruning builds
*smaller* layers, so the network really has fewer parameters and FLOPs and runs faster on any
hardware. The price is bookkeeping: a conv's output channels are also its BatchNorm's channels and the
next layer's input channels (after ``Flatten`` they are whole blocks of a Linear layer's input
columns). The layers that share one set of channels form a :class:`ChannelGroup`, pruned together
with the same kept indices.

:class:`StructuredPruner` finds those groups in the model's dependency graph
(:class:`~pruning_utils.depgraph.DependencyGraph`, traced with torch.fx on ``example_input`` or zeros
of ``input_size``; the course's models give their own size). By default it keeps Li et al.'s (2017)
rule: a chain's channels (conv -> [BN] -> activation/pooling -> next conv, or -> Flatten -> Linear;
through depthwise and grouped convs, concatenations, wrapper modules) and a block's *inner* channels,
never the channels an addition (or product) joins; ``residual=True`` prunes those too, as
:func:`~pruning_utils.depgraph.prune_graph` does. What the graph cannot prove safe stays whole, and a
pruned copy that fails a forward on the example input raises ``ValueError`` naming the group.

A model torch.fx cannot trace is refused with the reason. A model that declares no input size is
traced at the first size found to run through it (the first layer's channels; square spatial sizes,
common sizes first), or pass ``input_size=`` / ``example_input=``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
import torch.nn.utils.fusion
from torch.nn.utils import parametrize

from .checks import check_flag, check_fraction, check_int, check_module, check_names, check_tensor
from .flops import check_input_size, count_flops, default_input_size
from .masks import apply_mask, get_mask

__all__ = [
    "IMPORTANCE",
    "ChannelGroup",
    "LayerChange",
    "PruningReport",
    "StructuredPruner",
    "bn_scale_importance",
    "channels_to_keep",
    "find_channel_groups",
    "fold_batchnorm",
    "l1_importance",
    "l2_importance",
    "prune_resnet",
    "prune_simple_cnn",
    "structure_report",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ---------------------------------------------------------------------------------------------
# Importance criteria: one function each, ``(layer, bn) -> one score per output channel``
# ---------------------------------------------------------------------------------------------


def l1_importance(layer: nn.Module, bn: nn.Module | None = None) -> torch.Tensor:
    """Sum of |w| over each filter (output channel) of a conv or Linear layer (Li et al. 2017)."""
    return layer.weight.detach().abs().flatten(1).sum(1)


def l2_importance(layer: nn.Module, bn: nn.Module | None = None) -> torch.Tensor:
    """Euclidean norm of each filter (output channel) of a conv or Linear layer."""
    return layer.weight.detach().flatten(1).norm(dim=1)


def bn_scale_importance(layer: nn.Module, bn: nn.Module | None = None) -> torch.Tensor:
    """|gamma| of the BatchNorm that follows the layer (network slimming, Liu et al. 2017)."""
    if bn is None or not getattr(bn, "affine", False):
        raise ValueError("the bn_scale criterion needs an affine BatchNorm right after the pruned layer")
    return bn.weight.detach().abs()


IMPORTANCE: dict[str, Callable] = {"l1": l1_importance, "l2": l2_importance, "bn_scale": bn_scale_importance}


def _criterion(importance, table: dict | None = None, signature: str = "(layer, bn) -> scores") -> Callable:
    """The importance function: ``importance`` itself if callable, else its entry in ``table`` (the
    named criteria; default this module's :data:`IMPORTANCE`); anything else is refused, listing both."""
    table = IMPORTANCE if table is None else table
    if callable(importance):
        return importance
    if isinstance(importance, str) and importance in table:
        return table[importance]
    raise ValueError(f"importance must be one of {sorted(table)} or a function {signature}; got {importance!r}")


def channels_to_keep(total: int, prune_ratio: float, round_to: int = 1) -> int:
    """How many of ``total`` channels survive when ``prune_ratio`` of them go; always at least 1.

    With ``round_to > 1`` the count is rounded to the nearest multiple of ``round_to`` (never below
    ``round_to``, never above ``total``); a layer that loses nothing stays whole.

    >>> channels_to_keep(32, 0.3), channels_to_keep(32, 0.3, round_to=8), channels_to_keep(16, 0.999)
    (22, 24, 1)
    """
    prune_ratio = check_fraction(prune_ratio, "prune_ratio")
    check_int(round_to, "round_to", 1)
    keep = max(1, total - round(prune_ratio * total))
    if round_to > 1 and keep < total:
        keep = min(total, round_to * max(1, int(keep / round_to + 0.5)))
    return keep


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` highest scores; ties go to the lower index."""
    order = torch.argsort(scores.detach().float().cpu(), descending=True, stable=True)
    return order[:keep].sort().values


# ---------------------------------------------------------------------------------------------
# Rebuilding layers with fewer channels; every setting and every kept value is copied exactly
# ---------------------------------------------------------------------------------------------


def _plain_type(module: nn.Module) -> type:
    return parametrize.type_before_parametrizations(module)


def _check_ungrouped(layer: nn.Module, name: str, producer: str | None = None) -> None:
    groups = getattr(layer, "groups", 1)
    if groups != 1:
        kind = "depthwise" if groups == layer.in_channels else "grouped"
        hint = f"; pass exclude=[{producer!r}] to leave the channels it reads whole" if producer else ""
        raise ValueError(f"layer {name!r} is a {kind} convolution (groups={groups}); structured pruning of "
                         f"grouped or depthwise convolutions is not supported{hint}")


def _take(t: torch.Tensor, dim: int, idx: torch.Tensor | None) -> torch.Tensor:
    t = t.detach()
    return t if idx is None else t.index_select(dim, idx.to(t.device))


def _fill(new: nn.Module, old: nn.Module, values: dict[str, torch.Tensor]) -> nn.Module:
    """Copy ``values`` into ``new``'s parameters and buffers; keep requires_grad and train/eval mode."""
    with torch.no_grad():
        for key, value in values.items():
            target = getattr(new, key)
            target.copy_(value)
            source = getattr(old, key)
            if isinstance(source, nn.Parameter):
                target.requires_grad_(source.requires_grad)
    return new.train(old.training)


def _rebuild(layer: nn.Module, out_idx=None, in_idx=None) -> nn.Module:
    """A copy of a Conv/Linear layer keeping output channels ``out_idx`` and input channels ``in_idx``
    (for a grouped or depthwise conv see :func:`_rebuild_grouped`)."""
    cls = _plain_type(layer)
    if issubclass(cls, _CONV) and layer.groups > 1:
        return _rebuild_grouped(layer, out_idx, in_idx)
    w = layer.weight  # through a mask parametrization, if any: the effective weight
    weight = _take(_take(w, 0, out_idx), 1, in_idx)
    has_bias = layer.bias is not None
    common = dict(bias=has_bias, device=w.device, dtype=w.dtype)
    if issubclass(cls, _CONV):
        new = nn.utils.skip_init(cls, weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride,
                                 padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                                 padding_mode=layer.padding_mode, **common)
    elif issubclass(cls, nn.Linear):
        new = nn.utils.skip_init(cls, weight.shape[1], weight.shape[0], **common)
    else:
        raise TypeError(f"can only rebuild Conv1d/2d/3d and Linear layers; got {cls.__name__}")
    values = {"weight": weight}
    if has_bias:
        values["bias"] = _take(layer.bias, 0, out_idx)
    new = _fill(new, layer, values)
    mask = get_mask(layer)
    if mask is not None:  # an unstructured mask survives: its kept rows and columns go on the new layer
        apply_mask(new, _take(_take(mask, 0, out_idx), 1, in_idx))
    return new


def _rebuild_grouped(layer: nn.Module, out_idx, in_idx) -> nn.Module:
    """A copy of a grouped or depthwise conv keeping output channels ``out_idx`` and input channels ``in_idx``.

    Depthwise (one input channel per group): whole groups go, ``groups`` shrinks. Grouped: the same
    in-group positions go from every group, ``groups`` stays.
    """
    cls = _plain_type(layer)
    g, cin, cout = layer.groups, layer.in_channels, layer.out_channels
    out_idx = torch.arange(cout) if out_idx is None else out_idx
    in_idx = torch.arange(cin) if in_idx is None else in_idx
    w = layer.weight
    per_in = cin // g
    if per_in == 1:
        groups, positions = len(in_idx), None
        in_channels = len(in_idx)
    else:
        positions = in_idx[in_idx < per_in]
        groups, in_channels = g, g * len(positions)
        if in_channels != len(in_idx):
            raise ValueError("the kept input channels of a grouped conv are not the same in every group")
    if len(out_idx) % groups:
        raise ValueError(f"{len(out_idx)} output channels do not split into {groups} groups")
    weight = _take(_take(w, 0, out_idx), 1, positions)
    has_bias = layer.bias is not None
    new = nn.utils.skip_init(cls, in_channels, len(out_idx), layer.kernel_size, stride=layer.stride,
                             padding=layer.padding, dilation=layer.dilation, groups=groups,
                             padding_mode=layer.padding_mode, bias=has_bias, device=w.device, dtype=w.dtype)
    values = {"weight": weight}
    if has_bias:
        values["bias"] = _take(layer.bias, 0, out_idx)
    new = _fill(new, layer, values)
    mask = get_mask(layer)
    if mask is not None:
        apply_mask(new, _take(_take(mask, 0, out_idx), 1, positions))
    return new


def _rebuild_norm(bn: nn.Module, idx: torch.Tensor) -> nn.Module:
    """A copy of a BatchNorm layer keeping channels ``idx``, with all its settings and statistics."""
    cls = _plain_type(bn)
    ref = bn.weight if bn.affine else bn.running_mean
    kwargs = dict(eps=bn.eps, momentum=bn.momentum, affine=bn.affine, track_running_stats=bn.track_running_stats)
    if ref is not None:
        kwargs.update(device=ref.device, dtype=ref.dtype)
    if bn.affine and bn.bias is None:
        kwargs["bias"] = False  # torch >= 2.14: BatchNorm(affine=True, bias=False)
    new = nn.utils.skip_init(cls, len(idx), **kwargs)
    values = {}
    if bn.affine:
        values["weight"] = _take(bn.weight, 0, idx)
        if bn.bias is not None:
            values["bias"] = _take(bn.bias, 0, idx)
    if bn.track_running_stats and bn.running_mean is not None:
        values.update(running_mean=_take(bn.running_mean, 0, idx), running_var=_take(bn.running_var, 0, idx),
                      num_batches_tracked=bn.num_batches_tracked)
    return _fill(new, bn, values)


def _columns(keep: torch.Tensor, per_channel: int) -> torch.Tensor:
    """Input columns of a Linear layer after Flatten: channel c owns ``c*per_channel ... +per_channel-1``."""
    if per_channel == 1:
        return keep
    return (keep[:, None] * per_channel + torch.arange(per_channel)).reshape(-1)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# ---------------------------------------------------------------------------------------------
# Channel groups: which layers share one set of channels
# ---------------------------------------------------------------------------------------------


@dataclass
class ChannelGroup:
    """Layers joined by one set of channels, pruned together with the same kept indices.

    ``producer`` makes the channels (its filters are ranked and removed), ``norms`` are the BatchNorm
    layers that scale them, ``consumers`` the layers that read them, as ``(name, positions)``:
    positions per channel among the consumer's inputs (``h*w`` for a Linear after Flatten, else 1).
    """

    producer: str
    channels: int
    norms: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)
    block: str | None = None  # "BasicBlock 'layer1.0'" for the inner channels of a residual block
    units: int | None = None  # prunable units when the dependency graph found the group (None: = channels)
    others: list[tuple[str, str]] = field(default_factory=list)  # further coupled (layer, dimension) pairs
    producers: list[str] = field(default_factory=list, repr=False)  # every layer making these channels
    graph_index: int | None = field(default=None, repr=False)  # the DependencyGraph group it comes from
    roots: list[int] = field(default_factory=list, repr=False)  # its classes, in the producer's channel order

    def details(self) -> str:
        """One line per coupled layer, saying which dimension of it is pruned."""
        where = f"inside {self.block}" if self.block else "sequential chain"
        if len(self.producers) > 1:
            where += f"; joined by an addition or product of {len(self.producers)} layers' outputs"
        units = "" if self.units in (None, self.channels) else f", {self.units} prunable units"
        lines = [f"group {self.producer!r}: {self.channels} channels{units} ({where})"]
        lines += [f"  {n:<22} weight dim 0 (its output channels), bias if any" for n in (self.producers or [self.producer])]
        lines += [f"  {n:<22} weight, bias, running mean/var of the same channels" for n in self.norms]
        for n, per in self.consumers:
            what = "weight dim 1 (its input channels)" if per == 1 else \
                f"weight columns: {per} per channel (the flattened channel x position inputs)"
            lines.append(f"  {n:<22} {what}")
        lines += [f"  {n:<22} {what}" for n, what in self.others]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.details()


def _independent(module: nn.Module) -> bool:
    """A layer that makes channels of its own (not a depthwise conv, whose outputs follow its inputs)."""
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, _CONV) and (module.groups == 1 or module.in_channels // module.groups > 1)


def _ancestor(names: list[str]) -> str:
    parts = [n.split(".")[:-1] for n in names]
    common = parts[0]
    for p in parts[1:]:
        i = 0
        while i < min(len(common), len(p)) and common[i] == p[i]:
            i += 1
        common = common[:i]
    return ".".join(common)


def _graph_groups(model: nn.Module, graph, exclude: set, residual: bool) -> list[ChannelGroup]:
    """The :class:`ChannelGroup` s of a traced :class:`~pruning_utils.depgraph.DependencyGraph`.

    Default (``residual=False``, Li et al. 2017): a group made by one layer (depthwise convs on its
    path follow it), i.e. a chain's channels (concatenated ones included) or a block's inner
    channels; channels an addition or product joins (a group with several producers) stay whole.
    ``residual=True``: every group the graph can prune (what :func:`prune_graph` does).
    """
    modules = graph._modules
    out = []
    for cg in graph.groups:
        if not cg.prunable:
            continue
        cls = set(cg.roots)
        layers = list(dict.fromkeys(n for n, _, _ in cg.members if n in modules))
        producers = [n for n in layers if (n, "out") in graph._member_roots and _independent(modules[n])
                     and cls & set(graph._member_roots[(n, "out")].tolist())]
        if not producers or any(p in exclude for p in producers):
            continue
        prefix = _ancestor(layers)
        container = model.get_submodule(prefix) if prefix else model
        if not residual and len(producers) > 1:
            continue
        producer = producers[0]
        proots = graph._member_roots[(producer, "out")].tolist()
        order = list(dict.fromkeys(r for r in proots if r in cls))
        order += [r for r in cg.roots if r not in set(order)]
        channels = sum(1 for r in proots if r in cls)
        norms, consumers, others = [], [], []
        follow = {n for n in layers if (n, "out") in graph._member_roots and not _independent(modules[n])
                  and cls & set(graph._member_roots[(n, "out")].tolist())}  # depthwise convs on the path
        for name, what, count in cg.members:
            if name in producers and what.startswith("weight dim 0"):
                continue
            m = modules.get(name)
            if isinstance(m, _NORM) and name not in follow:
                norms.append(name)
            elif isinstance(m, (*_CONV, nn.Linear)) and name not in follow and what.startswith("weight dim 1"):
                consumers.append((name, max(1, count // max(1, channels))))
            else:
                others.append((name, f"{what} ({count})"))
        block = None
        if prefix and not isinstance(container, nn.Sequential):
            block = f"{type(container).__name__} {prefix!r}"
        out.append(ChannelGroup(producer, channels, norms, consumers, block, units=cg.units, others=others,
                                producers=producers, graph_index=cg.index, roots=order))
    return out


def _checked_exclude(model: nn.Module, exclude) -> set[str]:
    """``exclude`` as a set of layer names of ``model``; a name it does not have is refused."""
    check_module(model)
    exclude = set(check_names(exclude, "exclude"))
    unknown = sorted(exclude - {n for n, _ in model.named_modules()})
    if unknown:
        raise ValueError(f"exclude names no layer of the model: {unknown}")
    return exclude


def _find_groups(model, exclude: set, example_input=None, input_size=None, residual=False):
    """``(groups, graph)``; ``exclude`` already checked by :func:`_checked_exclude`."""
    from .depgraph import DependencyGraph

    graph = DependencyGraph(model, example_input, input_size=input_size)
    return _graph_groups(model, graph, exclude, residual), graph


def find_channel_groups(model: nn.Module, exclude=(), *, example_input=None, input_size=None,
                        residual: bool = False) -> list[ChannelGroup]:
    """Every :class:`ChannelGroup` of ``model`` that can be pruned safely, in model order.

    The groups come from the model's :class:`~pruning_utils.depgraph.DependencyGraph` (traced on
    ``example_input``, or zeros of ``input_size``; the course's models give their own size). By
    default (Li et al. 2017) they are the channels of chains and the *inner* channels of blocks: a
    group an addition or product joins (several producers) stays whole; ``residual=True`` prunes
    those too. Producers named in ``exclude`` keep all their channels. A model that declares no
    input size is traced at the first size found to run through it.
    """
    return _find_groups(model, _checked_exclude(model, exclude), example_input, input_size,
                        check_flag(residual, "residual"))[0]


# ---------------------------------------------------------------------------------------------
# Parameters and FLOPs per layer, before and after
# ---------------------------------------------------------------------------------------------


@dataclass
class LayerChange:
    """One Conv/Linear layer before and after pruning (FLOPs are None when not counted)."""

    name: str
    kind: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int
    params_before: int
    params_after: int
    flops_before: int | None = None
    flops_after: int | None = None


def _si(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _arrow(a, b, fmt=str) -> str:
    return fmt(a) if a == b else f"{fmt(a)} → {fmt(b)}"


@dataclass
class PruningReport:
    """Per-layer channels, parameters and FLOPs before/after; ``print(report)`` shows a markdown table."""

    rows: list[LayerChange]
    params_before: int
    params_after: int
    flops_before: int | None
    flops_after: int | None
    input_size: tuple | None = None

    @property
    def params_ratio(self) -> float:
        """How many times fewer parameters (before / after)."""
        return self.params_before / self.params_after

    @property
    def flops_ratio(self) -> float | None:
        """How many times fewer FLOPs (before / after), or None when FLOPs were not counted."""
        return None if self.flops_before is None else self.flops_before / self.flops_after

    def summary(self) -> str:
        """One line: total parameters and FLOPs before and after."""
        text = f"params {self.params_before:,} → {self.params_after:,} ({self.params_ratio:.2f}x fewer)"
        if self.flops_before is not None:
            text += (f"; FLOPs {_si(self.flops_before)} → {_si(self.flops_after)} ({self.flops_ratio:.2f}x fewer) "
                     f"for input {tuple(self.input_size)}")
        return text

    def to_markdown(self, changed_only: bool = False) -> str:
        """The table; ``changed_only`` leaves out layers whose shape did not change."""
        rows = [r for r in self.rows if not changed_only or (r.in_before, r.out_before) != (r.in_after, r.out_after)]
        lines = ["| layer | type | in | out | params | FLOPs |", "|---|---|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r.name} | {r.kind} | {_arrow(r.in_before, r.in_after)} "
                         f"| {_arrow(r.out_before, r.out_after)} "
                         f"| {_arrow(r.params_before, r.params_after, '{:,}'.format)} "
                         f"| {_arrow(r.flops_before, r.flops_after, _si)} |")
        lines.append(f"| total (all layers) | | | | {_arrow(self.params_before, self.params_after, '{:,}'.format)} "
                     f"| {_arrow(self.flops_before, self.flops_after, _si)} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def structure_report(original: nn.Module, pruned: nn.Module, input_size=None) -> PruningReport:
    """Compare two models with the same layer names: channels, parameters and FLOPs per Conv/Linear layer.

    ``input_size`` (batch included, e.g. ``(1, 3, 32, 32)``) is needed for FLOPs; the course's
    ``SmallCNN`` and ``MLP`` provide their own. Without it the FLOPs columns stay empty.
    """
    input_size = default_input_size(original) if input_size is None else check_input_size(input_size)
    flops_b = flops_a = None
    total_b = total_a = None
    if input_size is not None:
        total_b, flops_b = count_flops(original, input_size)
        total_a, flops_a = count_flops(pruned, input_size)
    after = dict(pruned.named_modules())
    rows = []
    for name, m in original.named_modules():
        if not isinstance(m, (*_CONV, nn.Linear)):
            continue
        p = after[name]
        attr_in = "in_channels" if isinstance(m, _CONV) else "in_features"
        attr_out = "out_channels" if isinstance(m, _CONV) else "out_features"
        rows.append(LayerChange(
            name, _plain_type(m).__name__, getattr(m, attr_in), getattr(p, attr_in), getattr(m, attr_out),
            getattr(p, attr_out), sum(t.numel() for t in m.parameters()), sum(t.numel() for t in p.parameters()),
            None if flops_b is None else flops_b.get(name, 0), None if flops_a is None else flops_a.get(name, 0)))
    return PruningReport(rows, sum(t.numel() for t in original.parameters()),
                         sum(t.numel() for t in pruned.parameters()), total_b, total_a, input_size)


# ---------------------------------------------------------------------------------------------
# The pruner
# ---------------------------------------------------------------------------------------------


def _input_channels(layer: nn.Module, in_channels) -> int | None:
    if isinstance(layer, _NORM):
        return layer.num_features
    if isinstance(layer, _CONV):
        return layer.in_channels
    if isinstance(layer, nn.Linear):
        if in_channels is None:
            return layer.in_features
        check_int(in_channels, "in_channels", 1)
        if layer.in_features % in_channels:
            raise ValueError(f"in_channels={in_channels!r} does not divide the layer's {layer.in_features} inputs")
        return in_channels
    return None


def _check_keep(keep_indices, channels: int | None) -> torch.Tensor:
    """``keep_indices`` as a long tensor: distinct ints in [0, channels), at least one."""
    try:
        keep = torch.as_tensor(keep_indices)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"keep_indices must be a 1-D list or tensor of channel indices; got {keep_indices!r}"[:200]) from exc
    if keep.dim() != 1 or keep.numel() == 0 or keep.is_floating_point() or keep.is_complex() or keep.dtype == torch.bool:
        raise TypeError(f"keep_indices must be a non-empty 1-D list or tensor of int channel indices; got dtype "
                        f"{keep.dtype}, shape {tuple(keep.shape)}")
    keep = keep.long().cpu()
    if channels is not None and (int(keep.min()) < 0 or int(keep.max()) >= channels):
        raise ValueError(f"keep_indices must lie in [0, {channels}) (the layer's input channels); "
                         f"got {int(keep.min())}..{int(keep.max())}")
    if keep.unique().numel() != keep.numel():
        raise ValueError("keep_indices has repeated channels")
    return keep


class StructuredPruner:
    """Remove the least important filters of every prunable layer of ``model`` (see the module docstring).

    * ``importance``: ``"l1"`` (default, Li et al. 2017), ``"l2"``, ``"bn_scale"`` (network slimming)
      or a function ``(layer, bn) -> one score per output channel``.
    * ``round_to``: round kept channel counts to a multiple of this (8 or 16 lets CPU kernels use full
      vector registers, see :func:`channels_to_keep`).
    * ``exclude``: names of layers whose output channels must stay.
    * ``input_size``: input shape with batch, for the FLOPs columns of :attr:`report`.

    :meth:`prune` returns a pruned *copy*; the model passed in is never modified.

    >>> from pruning_utils import SmallCNN
    >>> pruner = StructuredPruner(SmallCNN(widths=(16, 32), input_size=8))
    >>> pruner.prune(0.5)[0].out_channels, pruner.report.rows[-1].in_after
    (8, 256)
    """

    def __init__(self, model: nn.Module, importance="l1", *, round_to: int = 1, exclude=(), input_size=None,
                 example_input=None, residual: bool = False):
        self.model = model
        self.importance = _criterion(importance)
        self.round_to = check_int(round_to, "round_to", 1)
        self.input_size = None if input_size is None else check_input_size(input_size)
        self.residual = check_flag(residual, "residual")
        self._exclude = _checked_exclude(model, exclude)
        self.groups, self.graph = _find_groups(model, self._exclude, example_input, self.input_size, self.residual)
        self.report: PruningReport | None = None

    def describe(self) -> str:
        """Every channel group, one line per coupled layer."""
        return "\n".join(g.details() for g in self.groups)

    def _name_of(self, layer: nn.Module) -> str:
        for name, m in self.model.named_modules():
            if m is layer:
                return name
        return type(layer).__name__

    def _norm_of(self, layer: nn.Module) -> nn.Module | None:
        name = self._name_of(layer)
        for g in self.groups:
            if g.producer == name and g.norms:
                return self.model.get_submodule(g.norms[0])
        return None

    def compute_filter_importance(self, conv: nn.Module, bn: nn.Module | None = None, *,
                                  name: str | None = None) -> torch.Tensor:
        """One score per output channel of ``conv`` (a Conv or Linear layer) by the chosen criterion."""
        if bn is None and self.importance is bn_scale_importance:
            bn = self._norm_of(conv)
        scores = self.importance(conv, bn)
        out = conv.weight.shape[0]
        if not isinstance(scores, torch.Tensor) or scores.shape != (out,):
            raise ValueError(f"importance must return one score per output channel, shape ({out},); "
                             f"got {getattr(scores, 'shape', type(scores).__name__)}")
        if scores.is_complex() or not bool(torch.isfinite(scores.detach().float()).all()):
            raise ValueError(f"the importance scores of layer {name or self._name_of(conv)!r} are not all finite real numbers "
                             "(NaN or inf weights?); channels cannot be ranked")
        return scores

    def select_channels(self, conv: nn.Module, bn: nn.Module | None, prune_ratio: float, *,
                        name: str | None = None) -> torch.Tensor:
        """Indices (ascending) of the output channels of ``conv`` that survive ``prune_ratio``."""
        keep = channels_to_keep(conv.weight.shape[0], prune_ratio, self.round_to)
        return _top(self.compute_filter_importance(conv, bn, name=name), keep)

    def prune_conv_layer(self, conv: nn.Module, bn: nn.Module | None, prune_ratio: float):
        """Drop the least important filters of ``conv`` (and the same channels of ``bn``).

        Returns ``(new_conv, new_bn or None, keep_indices)``; the layers passed in are not modified.
        """
        if not isinstance(conv, (*_CONV, nn.Linear)):
            raise TypeError(f"conv must be a Conv1d/2d/3d or Linear layer; got {type(conv).__name__}")
        _check_ungrouped(conv, self._name_of(conv))
        if bn is not None and (not isinstance(bn, _NORM) or bn.num_features != conv.weight.shape[0]):
            raise ValueError(f"bn must be a BatchNorm over the {conv.weight.shape[0]} output channels of conv; "
                             f"got {bn!r}")
        keep = self.select_channels(conv, bn, prune_ratio)
        return _rebuild(conv, out_idx=keep), (None if bn is None else _rebuild_norm(bn, keep)), keep

    def adjust_next_layer(self, next_layer: nn.Module, keep_indices: torch.Tensor, in_channels: int | None = None):
        """Copy of ``next_layer`` that reads only the kept channels ``keep_indices``.

        For a Linear layer after Flatten pass ``in_channels`` (the channel count before pruning): each
        channel owns ``in_features // in_channels`` consecutive input columns.
        """
        keep = _check_keep(keep_indices, _input_channels(next_layer, in_channels))
        if isinstance(next_layer, _NORM):
            return _rebuild_norm(next_layer, keep)
        if isinstance(next_layer, _CONV):
            _check_ungrouped(next_layer, self._name_of(next_layer))
            return _rebuild(next_layer, in_idx=keep)
        if isinstance(next_layer, nn.Linear):
            channels = next_layer.in_features if in_channels is None else in_channels
            per, rest = divmod(next_layer.in_features, channels)
            if rest or per < 1:
                raise ValueError(f"in_channels={in_channels!r} does not divide the layer's "
                                 f"{next_layer.in_features} inputs")
            return _rebuild(next_layer, in_idx=_columns(keep, per))
        raise TypeError(f"next_layer must be a Conv, Linear or BatchNorm layer; got {type(next_layer).__name__}")

    def prune(self, prune_ratio: float = 0.3, *, verbose: bool = False) -> nn.Module:
        """Return a copy of the model with ``prune_ratio`` of each group's channels removed.

        At ratio 0 the copy computes exactly what the model does. The table is kept in :attr:`report`
        (``verbose=True`` prints it).
        """
        prune_ratio = check_fraction(prune_ratio, "prune_ratio")
        if not self.groups:
            raise ValueError(self._nothing_to_prune())
        removed = {g.graph_index: self._removed(g, prune_ratio) for g in self.groups}
        by_index = {g.graph_index: g for g in self.groups}

        def blame(gi, failure):
            g = by_index[gi]
            return (f"pruning group {g.producer!r} of {type(self.model).__name__} breaks its forward "
                    f"({failure}); pass exclude=[{g.producer!r}] to leave it whole:\n{g.details()}")

        pruned, _ = self.graph._pruned_copy(removed, blame)
        size = self.input_size or (None if self.graph.input_inferred else self.graph.input_size)
        self.report = structure_report(self.model, pruned, size)
        if verbose:
            print(self.report)
        return pruned

    def _nothing_to_prune(self) -> str:
        """Why no group is left: what froze the graph's groups, what ``exclude`` and the default rule skip."""
        reasons = [f"{reason} ({n} group{'s' if n > 1 else ''})" for reason, n in self.graph.frozen_reasons.items()]
        everything = _graph_groups(self.model, self.graph, set(), residual=True)
        excluded = sum(any(p in self._exclude for p in g.producers) for g in everything)
        joined = len(_graph_groups(self.model, self.graph, self._exclude, residual=True)) - len(self.groups)
        if excluded:
            reasons.append(f"{excluded} group{'s' if excluded > 1 else ''} named in exclude")
        if joined and not self.residual:
            reasons.append(f"{joined} group{'s' if joined > 1 else ''} that an addition, a product or several "
                           f"producers join (residual=True prunes them)")
        return (f"{type(self.model).__name__} has no channel group that can be pruned safely; the dependency graph "
                f"left whole: " + ("; ".join(reasons) or "no layer makes channels another layer reads"))

    def _removed(self, g: ChannelGroup, prune_ratio: float) -> list[int]:
        """The classes of group ``g`` that go: the lowest-scoring by the producers' filter importance."""
        graph, model = self.graph, self.model
        cls = set(g.roots)
        frozen = [r for r in g.roots if r in graph._frozen]
        producer = model.get_submodule(g.producer)
        proots = graph._member_roots[(g.producer, "out")].tolist()
        if len(g.producers) == 1 and not frozen and len(proots) == len(g.roots) and set(proots) == cls:
            # one class per output channel: exactly the chain / inner-channel rule of the tutorial methods
            bn = model.get_submodule(g.norms[0]) if g.norms else None
            keep = self.select_channels(producer, bn, prune_ratio, name=g.producer).tolist()
            kept = {proots[i] for i in keep}
            return [r for r in g.roots if r not in kept]
        scores = dict.fromkeys(g.roots, 0.0)
        for name in g.producers:
            layer = model.get_submodule(name)
            bn_name = g.norms[0] if len(g.producers) == 1 and g.norms else graph._norm_after.get(name)
            bn = model.get_submodule(bn_name) if bn_name else None
            s = self.compute_filter_importance(layer, bn, name=name).detach().float().cpu().tolist()
            for r, v in zip(graph._member_roots[(name, "out")].tolist(), s):
                if r in cls:
                    scores[r] += v
        candidates = [r for r in g.roots if r not in graph._frozen]
        n_remove = min(g.units - channels_to_keep(g.units, prune_ratio, self.round_to), len(candidates))
        if n_remove <= 0:
            return []
        stay = set(_top(torch.tensor([scores[r] for r in candidates]), len(candidates) - n_remove).tolist())
        return [r for i, r in enumerate(candidates) if i not in stay]


def prune_simple_cnn(model: nn.Module, prune_ratio: float = 0.3, *, verbose: bool = False, **options) -> nn.Module:
    """Pruned copy of a Sequential CNN or MLP: filters, BN channels, next-layer inputs, Linear-head columns.

    ``options`` go to :class:`StructuredPruner` (``importance``, ``round_to``, ``exclude``, ``input_size``).

    >>> from pruning_utils import SmallCNN
    >>> prune_simple_cnn(SmallCNN(widths=(16, 32)), 0.5).conv2.out_channels
    16
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"prune_simple_cnn expects an nn.Sequential model; got {type(model).__name__} "
                        f"(use prune_resnet for residual networks, StructuredPruner for the rest)")
    return StructuredPruner(model, **options).prune(prune_ratio, verbose=verbose)


def prune_resnet(model: nn.Module, prune_ratio: float = 0.3, *, verbose: bool = False, **options) -> nn.Module:
    """Pruned copy of a ResNet: the inner channels of every residual block (Li et al. 2017).

    Handles the course's ``cifar_resnet`` and torchvision's ResNets (BasicBlock: conv1/bn1 and conv2's
    input; Bottleneck: conv1 and conv2). Channels joined by a residual addition are left alone.
    ``options`` go to :class:`StructuredPruner`.
    """
    pruner = StructuredPruner(model, **options)
    if not any(g.block for g in pruner.groups):
        raise ValueError(f"{type(model).__name__} has no residual block whose inner channels can be pruned: no "
                         f"channel group lies inside a block module (use prune_simple_cnn for a chain, "
                         f"StructuredPruner for the rest)")
    return pruner.prune(prune_ratio, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Deployment: fold BatchNorm into the convolution before it
# ---------------------------------------------------------------------------------------------


def _conv_bn_candidates(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """``(parent, conv name, BN name)``: a conv then a BN in one ``nn.Sequential``, or ``convK``/``bnK``
    attributes of one module (the course's and torchvision's ResNets)."""
    pairs = []
    for parent in model.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs += [(parent, a, b) for a, b in zip(names, names[1:])
                      if isinstance(children[a], _CONV) and isinstance(children[b], _NORM)]
        for name, child in children.items():
            if (name == "conv" or (name.startswith("conv") and name[4:].isdigit())) and isinstance(child, _CONV):
                bn = f"bn{name[4:]}"
                if isinstance(children.get(bn), _NORM) and (parent, name, bn) not in pairs:
                    pairs.append((parent, name, bn))
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm that reads a conv's output folded into that conv.

    At inference a BatchNorm is a fixed per-channel scale and shift, so it can live in the conv's
    weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and the BN call disappears: the
    form a network is deployed in, and the fair way to time dense vs pruned. A pair is folded only when
    one forward pass on ``example_input`` (default: the course model's own input size) shows the BN
    reading exactly that conv's output; the folded copy's outputs are then checked against the
    original's. ``model`` itself is not changed. Masked layers must be made permanent first.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    masked = [n for n, m in model.named_modules() if isinstance(m, _CONV) and parametrize.is_parametrized(m)]
    if masked:
        raise ValueError(f"fold_batchnorm needs plain weights; make_permanent(model) first (masked: {masked[:3]})")
    if example_input is None:
        size = default_input_size(model)
        if size is None:
            raise ValueError("example_input is needed for this model, e.g. torch.randn(1, 3, 32, 32)")
        example_input = torch.randn(size)
    folded = copy.deepcopy(model).eval()
    param = next(folded.parameters(), None)
    check_tensor(example_input, "example_input", floating=True)
    x = example_input.to(param.device if param is not None else None)
    pairs = _conv_bn_candidates(folded)
    last_output, calls, confirmed, hooks = {}, {}, set(), []
    for index, (parent, conv_name, bn_name) in enumerate(pairs):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)

        def remember(module, inputs, output, index=index):
            last_output[index] = output
            calls[index] = calls.get(index, 0) + 1

        def check(module, inputs, index=index):
            if inputs[0] is last_output.get(index):
                confirmed.add(index)

        hooks += [conv.register_forward_hook(remember), bn.register_forward_pre_hook(check)]
    try:
        reference = folded(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"example_input of shape {tuple(x.shape)} does not fit {type(model).__name__}: {exc}") from exc
    finally:
        for hook in hooks:
            hook.remove()
    for index in sorted(confirmed):
        if calls.get(index) != 1:  # a conv run more than once (shared) is left alone
            continue
        parent, conv_name, bn_name = pairs[index]
        setattr(parent, conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(getattr(parent, conv_name),
                                                                            getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())
    out = folded(x)
    if not torch.allclose(out, reference, rtol=1e-3, atol=1e-4 * max(1.0, float(reference.abs().max()))):
        raise RuntimeError("folding BatchNorm changed the model's outputs; the model is not a conv -> BN chain "
                           "this function understands")
    return folded
