"""The hand-listed channel patterns the structured pruner used before the dependency graph, kept as a
test oracle: an independent way to find the groups of ``nn.Sequential`` chains and of the course's /
torchvision's ResNet blocks, and to prune them. The graph must find and prune exactly the same.
"""

import copy

from torch import nn

from pruning_utils.structured import (_CONV, _NORM, ChannelGroup, _check_ungrouped, _checked_exclude, _columns,
                                      _plain_type, _rebuild, _rebuild_norm, _set_module)

_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
_POOL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
# Residual blocks whose inner channels are known to be private: (producer, its BN, consumer) triples.
_BLOCKS = {
    "pruning_utils.models.BasicBlock": (("conv1", "bn1", "conv2"),),
    "torchvision.models.resnet.BasicBlock": (("conv1", "bn1", "conv2"),),
    "torchvision.models.resnet.Bottleneck": (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3")),
}


def _qualname(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _chain(prefix: str, seq: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """The leaves of a Sequential in execution order, nested Sequentials expanded."""
    out = []
    for name, child in seq.named_children():
        full = _join(prefix, name)
        out += _chain(full, child) if isinstance(child, nn.Sequential) else [(full, child)]
    return out


def _unknown(producer: str, name: str, module: nn.Module, why: str = "") -> ValueError:
    why = why or "the pruner does not know how this layer couples channels"
    return ValueError(f"cannot prune the output channels of {producer!r}: they reach layer {name!r} "
                      f"({_plain_type(module).__name__}) and {why}; pass exclude=[{producer!r}] to leave "
                      f"{producer!r} whole")


def _chain_group(leaves, i: int) -> ChannelGroup | None:
    """The group starting at producer ``leaves[i]``, or None when its output leaves the chain unread."""
    name, layer = leaves[i]
    if not any(isinstance(x, (*_CONV, nn.Linear)) for _, m in leaves[i + 1:] for x in m.modules()):
        return None  # no layer with weights reads these channels: they are the chain's output, keep them all
    is_conv = isinstance(layer, _CONV)
    channels = layer.out_channels if is_conv else layer.out_features
    group = ChannelGroup(name, channels)
    flat = False  # True once a Flatten has turned (N, C, H, W) into (N, C*H*W)
    for next_name, m in leaves[i + 1:]:
        if isinstance(m, _NORM):
            if flat or m.num_features != channels:
                raise _unknown(name, next_name, m, f"normalises {m.num_features} features, not the {channels} channels")
            group.norms.append(next_name)
        elif isinstance(m, _ELEMENTWISE):
            continue
        elif isinstance(m, _POOL):
            if flat or not is_conv:
                raise _unknown(name, next_name, m, "pools across what are channels here")
        elif isinstance(m, nn.Flatten):
            if is_conv:
                if (m.start_dim, m.end_dim) != (1, -1):
                    raise _unknown(name, next_name, m, "only Flatten(start_dim=1, end_dim=-1) is supported")
                flat = True
        elif isinstance(m, _CONV):
            if not is_conv or flat or m.in_channels != channels:
                raise _unknown(name, next_name, m, f"its input does not line up with {channels} channels")
            _check_ungrouped(m, next_name, producer=name)
            group.consumers.append((next_name, 1))
            break
        elif isinstance(m, nn.Linear):
            if is_conv and not flat:
                raise _unknown(name, next_name, m, "it is applied to an unflattened conv output")
            per, rest = divmod(m.in_features, channels)
            if rest or per < 1 or (not is_conv and per != 1):
                raise _unknown(name, next_name, m,
                               f"its {m.in_features} inputs are not a multiple of {channels} channels")
            group.consumers.append((next_name, per))
            break
        else:
            raise _unknown(name, next_name, m)
    if not group.consumers:
        return None
    if is_conv:
        _check_ungrouped(layer, name, producer=name)
    return group


def _block_groups(prefix: str, block: nn.Module, exclude=frozenset()) -> list[ChannelGroup]:
    groups = []
    for producer, norm, consumer in _BLOCKS[_qualname(block)]:
        conv, bn, nxt = (getattr(block, a, None) for a in (producer, norm, consumer))
        names = [_join(prefix, a) for a in (producer, norm, consumer)]
        if names[0] in exclude:  # excluded before anything is checked: the error's own hint works
            continue
        for n, m, kind in zip(names, (conv, bn, nxt), (nn.Conv2d, nn.BatchNorm2d, nn.Conv2d)):
            if not isinstance(m, kind):
                raise ValueError(f"layer {n!r} of block {prefix!r} should be a {kind.__name__}; got {type(m).__name__}")
        _check_ungrouped(conv, names[0], producer=names[0])
        _check_ungrouped(nxt, names[2], producer=names[0])
        groups.append(ChannelGroup(names[0], conv.out_channels, [names[1]], [(names[2], 1)],
                                   block=f"{type(block).__name__} {prefix!r}"))
    return groups


def _listed_groups(model: nn.Module, exclude=()) -> list[ChannelGroup]:
    """The hand-listed patterns (used when the model cannot be traced or gives no input size): every
    :class:`ChannelGroup` of ``model`` that can be pruned safely, in model order.

    Producers named in ``exclude`` keep all their channels. A Sequential is assumed to run its children
    in order (as ``nn.Sequential`` does); its last producer's channels leave it and are never pruned.
    """
    exclude = _checked_exclude(model, exclude)
    groups: list[ChannelGroup] = []

    def visit(prefix: str, module: nn.Module) -> None:
        if _qualname(module) in _BLOCKS:
            groups.extend(_block_groups(prefix, module, exclude))
            return
        if isinstance(module, nn.Sequential):
            leaves = _chain(prefix, module)
            for i, (name, leaf) in enumerate(leaves):
                if isinstance(leaf, (*_CONV, nn.Linear)) and name not in exclude:
                    group = _chain_group(leaves, i)
                    if group is not None:
                        groups.append(group)
                elif next(leaf.children(), None) is not None:
                    visit(name, leaf)
            return
        for name, child in module.named_children():
            visit(_join(prefix, name), child)

    visit("", model)
    uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    for g in groups:
        for name in [g.producer, *g.norms, *(n for n, _ in g.consumers)]:
            if uses[id(model.get_submodule(name))] > 1:
                raise ValueError(f"layer {name!r} appears at several places in the model (shared weights); "
                                 f"its channels cannot be pruned for one use only")
    return groups


def listed_prune(pruner, groups, prune_ratio):
    """A pruned copy of ``pruner.model``: each listed group's producer ranked by ``pruner``'s criterion."""
    pruned = copy.deepcopy(pruner.model)
    out_idx, in_idx, norm_idx = {}, {}, {}
    for g in groups:
        producer = pruned.get_submodule(g.producer)
        bn = pruned.get_submodule(g.norms[0]) if g.norms else None
        keep = pruner.select_channels(producer, bn, prune_ratio, name=g.producer)
        out_idx[g.producer] = keep
        norm_idx.update({n: keep for n in g.norms})
        in_idx.update({n: _columns(keep, per) for n, per in g.consumers})
    for name in dict.fromkeys([*out_idx, *in_idx]):
        _set_module(pruned, name, _rebuild(pruned.get_submodule(name), out_idx.get(name), in_idx.get(name)))
    for name, keep in norm_idx.items():
        _set_module(pruned, name, _rebuild_norm(pruned.get_submodule(name), keep))
    return pruned
