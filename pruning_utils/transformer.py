"""A small vision transformer and its structured pruning: whole attention heads and MLP neurons.

:class:`TinyViT` cuts an image into patches, embeds each patch with a Linear layer, prepends a learned
class token, adds learned position embeddings and runs ``depth`` pre-norm transformer blocks::

    x = x + attn(norm1(x))      # multi-head self-attention: separate q, k, v and out Linear layers
    x = x + mlp(norm2(x))       # fc1 -> GELU -> fc2

then a LayerNorm and a Linear ``head`` on the class token. Layers have readable names
(``blocks.0.attn.q``, ``blocks.1.mlp.fc2``), so every head and every hidden neuron can be addressed.

Structured pruning removes whole *units* and builds smaller layers (as :mod:`pruning_utils.structured`
does for CNN filters):

* an attention **head** ``h`` owns rows ``h*d ... h*d+d-1`` (``d`` = head size) of ``q``, ``k`` and ``v``
  (weights and biases) and the same *columns* of ``out``; removing it shrinks all four layers;
* an MLP **neuron** ``j`` owns row ``j`` (and bias ``j``) of ``fc1`` and column ``j`` of ``fc2``.

The coupled slices of one block form a :class:`UnitGroup` (:func:`attention_head_groups`,
:func:`mlp_neuron_groups`). Pruning is three separate steps, each usable alone:

1. an **importance** function ``(model, group) -> one score per unit``:
   :func:`weight_norm_importance` (default) or :func:`activation_importance` (from a calibration batch);
2. **which to keep**: :func:`units_to_keep` keeps the highest-scoring units of each group;
3. **rebuild**: :func:`prune_units` returns a *new*, smaller model; the model passed in is untouched.

:func:`prune_heads` and :func:`prune_mlp_neurons` do all three in one call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .checks import (check_choice, check_flag, check_fraction, check_int, check_module, check_name, check_names, check_positive,
                     check_tensor)
from .models import _check_input
from . import structured
from .structured import _check_keep, _rebuild, _set_module, _top, channels_to_keep, structure_report

__all__ = [
    "MLPBlock",
    "MultiHeadSelfAttention",
    "TinyViT",
    "TransformerBlock",
    "UnitGroup",
    "activation_importance",
    "attention_head_groups",
    "mlp_neuron_groups",
    "prune_heads",
    "prune_mlp_neurons",
    "prune_units",
    "units_to_keep",
    "weight_norm_importance",
]


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with ``heads`` heads of ``head_dim`` features, q/k/v/out as separate Linear layers.

    ``q``, ``k`` and ``v`` map ``dim`` features to ``heads * head_dim``; head ``h`` reads features
    ``h*head_dim ... (h+1)*head_dim - 1`` of each. ``out`` maps the concatenated head outputs back to
    ``dim``. After head pruning ``heads`` is smaller and ``head_dim`` (hence the 1/sqrt(head_dim)
    scale) unchanged.
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None):
        super().__init__()
        dim = check_int(dim, "dim", 1)
        heads = check_int(heads, "heads", 1)
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim must be divisible by heads (each head gets dim // heads features); "
                                 f"got dim={dim}, heads={heads}")
            head_dim = dim // heads
        head_dim = check_int(head_dim, "head_dim", 1)
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        inner = self.heads * self.head_dim
        for name in ("q", "k", "v"):
            if getattr(self, name).out_features != inner:
                raise RuntimeError(f"attention layer {name!r} has {getattr(self, name).out_features} outputs, "
                                   f"but heads * head_dim = {self.heads} * {self.head_dim} = {inner}")

        def split(t: torch.Tensor) -> torch.Tensor:  # (batch, tokens, inner) -> (batch, heads, tokens, head_dim)
            return t.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(dim=-1)
        context = (weights @ v).transpose(1, 2).reshape(batch, tokens, inner)
        return self.out(context)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}"


class MLPBlock(nn.Module):
    """``fc2(GELU(fc1(x)))``: ``dim -> hidden -> dim``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(check_int(dim, "dim", 1), check_int(hidden, "hidden", 1))
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        dim, heads, hidden = check_int(dim, "dim", 1), check_int(heads, "heads", 1), check_int(hidden, "hidden", 1)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A vision transformer small enough for the quick profile's 8x8 digits on a laptop CPU.

    ``image_size`` x ``image_size`` images with ``in_channels`` channels are cut into
    ``(image_size / patch_size)**2`` patches; ``patch_embed`` (a Linear layer) embeds each flattened
    patch into ``dim`` features; a class token and position embeddings are added; ``depth``
    :class:`TransformerBlock` s (``heads`` heads, MLP width ``mlp_ratio * dim``) follow, then ``norm``
    and the Linear ``head`` on the class token.

    >>> TinyViT()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, image_size: int = 8, patch_size: int = 2, in_channels: int = 1, num_classes: int = 10,
                 dim: int = 64, depth: int = 2, heads: int = 4, mlp_ratio: float = 2):
        super().__init__()
        image_size = check_int(image_size, "image_size", 1)
        patch_size = check_int(patch_size, "patch_size", 1)
        in_channels = check_int(in_channels, "in_channels", 1)
        num_classes = check_int(num_classes, "num_classes", 1)
        dim = check_int(dim, "dim", 1)
        depth = check_int(depth, "depth", 1)
        heads = check_int(heads, "heads", 1)
        mlp_ratio = check_positive(mlp_ratio, "mlp_ratio")
        if image_size % patch_size:
            raise ValueError(f"patch_size must divide image_size; got image_size={image_size}, patch_size={patch_size}")
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads; got dim={dim}, heads={heads}")
        hidden = max(1, round(mlp_ratio * dim))
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.input_shape = (in_channels, image_size, image_size)
        self.patch_embed = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, C, H, W)`` -> ``(batch, patches, C * patch_size**2)``, patches in row-major order."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.input_shape, type(self).__name__)
        tokens = self.patch_embed(self.patches(x))
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens[:, 0]))


# ---------------------------------------------------------------------------------------------
# Coupled groups: which slices of which layers belong to one head / one neuron
# ---------------------------------------------------------------------------------------------


KINDS = ("heads", "neurons")


@dataclass
class UnitGroup:
    """The layers of one block whose slices belong to the same units (heads or neurons).

    Unit ``u`` owns rows ``u*size ... (u+1)*size - 1`` of every ``producers`` layer (weight dim 0 and
    bias) and the same columns of every ``consumers`` layer (weight dim 1). Pruning a unit removes
    all of them together.
    """

    block: str  # the attention or MLP module, e.g. "blocks.0.attn"
    kind: str  # "heads" or "neurons"
    units: int
    size: int  # rows/columns per unit: head_dim for heads, 1 for neurons
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.block = check_name(self.block, "block")
        self.kind = check_choice(self.kind, "kind", KINDS)
        self.units = check_int(self.units, "units", 1)
        self.size = check_int(self.size, "size", 1)
        self.producers = check_names(self.producers, "producers")
        self.consumers = check_names(self.consumers, "consumers")
        if not self.producers and not self.consumers:
            raise ValueError(f"group {self.block!r} names no layer: give producers or consumers")

    def checked_units(self, units, name: str | None = None) -> torch.Tensor:
        """``units`` as a sorted long tensor of distinct unit indices in [0, units); else a clear error."""
        name = name or f"units (of group {self.block!r})"
        try:
            keep = _check_keep(units, None)
        except (TypeError, ValueError) as exc:  # its message says keep_indices: name ours
            raise type(exc)(f"{name}: {exc}") from exc
        if int(keep.min()) < 0 or int(keep.max()) >= self.units:
            raise ValueError(f"{name} must hold {self.kind[:-1]} indices in [0, {self.units}); "
                             f"got {int(keep.min())}..{int(keep.max())}")
        return keep.sort().values

    def indices(self, units) -> torch.Tensor:
        """The rows (of the producers) = columns (of the consumers) that ``units`` own, ascending.

        >>> UnitGroup("blocks.0.attn", "heads", units=4, size=2, producers=["blocks.0.attn.q"]).indices([0, 2])
        tensor([0, 1, 4, 5])
        """
        units = self.checked_units(units)
        return (units[:, None] * self.size + torch.arange(self.size)).reshape(-1)

    def details(self) -> str:
        """One line per coupled layer, saying which dimension of it is pruned."""
        unit = "head" if self.kind == "heads" else "neuron"
        where = "attention" if self.kind == "heads" else "MLP"
        head = f"group {self.block!r}: {self.units} {self.kind}" + (f" of {self.size} features" if self.size > 1 else "")
        lines = [f"{head} ({where})"]
        lines += [f"  {n:<22} weight dim 0 (its output rows: {self.size} per {unit}), bias" for n in self.producers]
        lines += [f"  {n:<22} weight dim 1 (its input columns: {self.size} per {unit})" for n in self.consumers]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.details()


def _blocks(model: nn.Module, cls: type, what: str) -> list[tuple[str, nn.Module]]:
    check_module(model)
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, cls)]
    if not found:
        raise ValueError(f"model ({type(model).__name__}) has no {what} ({cls.__name__} of "
                         f"pruning_utils.transformer, as in TinyViT): there is nothing to prune here")
    return found


def attention_head_groups(model: nn.Module) -> list[UnitGroup]:
    """One :class:`UnitGroup` per attention block: q/k/v output rows and out-projection columns per head.

    >>> print(attention_head_groups(TinyViT(depth=1))[0])  # doctest: +NORMALIZE_WHITESPACE
    group 'blocks.0.attn': 4 heads of 16 features (attention)
      blocks.0.attn.q        weight dim 0 (its output rows: 16 per head), bias
      blocks.0.attn.k        weight dim 0 (its output rows: 16 per head), bias
      blocks.0.attn.v        weight dim 0 (its output rows: 16 per head), bias
      blocks.0.attn.out      weight dim 1 (its input columns: 16 per head)
    """
    return [UnitGroup(name, "heads", attn.heads, attn.head_dim,
                      [f"{name}.q", f"{name}.k", f"{name}.v"], [f"{name}.out"])
            for name, attn in _blocks(model, MultiHeadSelfAttention, "attention block")]


def mlp_neuron_groups(model: nn.Module) -> list[UnitGroup]:
    """One :class:`UnitGroup` per MLP block: fc1 rows and bias, fc2 columns per hidden neuron.

    >>> print(mlp_neuron_groups(TinyViT(depth=1))[0])  # doctest: +NORMALIZE_WHITESPACE
    group 'blocks.0.mlp': 128 neurons (MLP)
      blocks.0.mlp.fc1       weight dim 0 (its output rows: 1 per neuron), bias
      blocks.0.mlp.fc2       weight dim 1 (its input columns: 1 per neuron)
    """
    return [UnitGroup(name, "neurons", mlp.fc1.out_features, 1, [f"{name}.fc1"], [f"{name}.fc2"])
            for name, mlp in _blocks(model, MLPBlock, "MLP block")]


def _check_group(model: nn.Module, group) -> None:
    """``group`` is a UnitGroup whose layers exist in ``model`` with the sizes it states."""
    check_module(model)
    if not isinstance(group, UnitGroup):
        raise TypeError(f"group must be a UnitGroup (from attention_head_groups or mlp_neuron_groups); "
                        f"got {type(group).__name__}")
    try:
        block = model.get_submodule(group.block)
    except AttributeError:
        raise ValueError(f"group {group.block!r} is not a module of the model ({type(model).__name__}): "
                         f"build the groups from this model") from None
    if group.kind == "heads" and not isinstance(block, MultiHeadSelfAttention):
        raise ValueError(f"group {group.block!r} of heads must name a MultiHeadSelfAttention module (whose head count "
                         f"pruning updates); it names a {type(block).__name__}")
    width = group.units * group.size
    for names, dim in ((group.producers, 0), (group.consumers, 1)):
        for name in names:
            try:
                layer = model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"group {group.block!r} names layer {name!r}, which {type(model).__name__} does "
                                 f"not have: build the groups from this model") from None
            weight = getattr(layer, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[dim] != width:
                raise ValueError(f"group {group.block!r} expects layer {name!r} to have {width} "
                                 f"{'outputs' if dim == 0 else 'inputs'}; it has "
                                 f"{None if weight is None else tuple(weight.shape)}: build the groups from this model")


# ---------------------------------------------------------------------------------------------
# Importance: (model, group) -> one score per unit. Kept apart from the choice of what to keep.
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def weight_norm_importance(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    """The L2 norm of all the weights a unit owns: its producer rows and biases and its consumer columns."""
    _check_group(model, group)
    total = torch.zeros(group.units, dtype=torch.float64)
    for names, dim in ((group.producers, 0), (group.consumers, 1)):
        for name in names:
            layer = model.get_submodule(name)
            w = layer.weight.detach().double().cpu()  # through a mask, if any: the weights in use
            per_unit = (w.t() if dim == 1 else w).reshape(group.units, -1)
            total += per_unit.pow(2).sum(1)
            if dim == 0 and layer.bias is not None:
                total += layer.bias.detach().double().cpu().reshape(group.units, group.size).pow(2).sum(1)
    return total.sqrt()


def _calibration_inputs(inputs) -> torch.Tensor:
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2 and isinstance(inputs[0], torch.Tensor):
        inputs = inputs[0]  # an (inputs, targets) batch
    return check_tensor(inputs, "inputs", floating=True, finite=True, nonempty=True)


def activation_importance(inputs) -> Callable[[nn.Module, UnitGroup], torch.Tensor]:
    """An importance function measured on a calibration batch ``inputs`` (a tensor, or an (inputs, targets) pair).

    A unit's score is the mean over images and tokens of the L2 norm of its *contribution* to the
    block's output: for head ``h``, ``context_h @ out.weight[:, h-columns].T`` (what the head adds to
    the residual stream); for neuron ``j``, ``|GELU(fc1(x))_j| * ||fc2.weight[:, j]||``. The model runs
    in eval mode without gradients (its mode is restored; the hook is removed even on error).

    >>> model = TinyViT(depth=1)
    >>> activation_importance(torch.randn(4, 1, 8, 8))(model, attention_head_groups(model)[0]).shape
    torch.Size([4])
    """
    inputs = _calibration_inputs(inputs)

    @torch.no_grad()
    def importance(model: nn.Module, group: UnitGroup) -> torch.Tensor:
        _check_group(model, group)
        if len(group.consumers) != 1:
            raise ValueError(f"activation importance needs exactly one consumer layer per group; "
                             f"group {group.block!r} has {group.consumers}")
        consumer = model.get_submodule(group.consumers[0])
        seen = []
        hook = consumer.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        was_training = model.training
        param = next(model.parameters(), None)
        try:
            model.eval()
            model(inputs if param is None else inputs.to(device=param.device, dtype=param.dtype))
        finally:
            hook.remove()
            model.train(was_training)
        if not seen:
            raise ValueError(f"layer {group.consumers[0]!r} did not run in the model's forward pass")
        x = torch.cat([s.reshape(-1, s.shape[-1]) for s in seen]).double().cpu()  # (rows, units * size)
        w = consumer.weight.detach().double().cpu()  # (dim, units * size)
        scores = torch.empty(group.units, dtype=torch.float64)
        for u in range(group.units):
            cols = slice(u * group.size, (u + 1) * group.size)
            scores[u] = (x[:, cols] @ w[:, cols].t()).norm(dim=1).mean()
        return scores

    importance.__name__ = "activation_importance"
    return importance


IMPORTANCE = {"weight": weight_norm_importance}


def _criterion(importance) -> Callable:
    return structured._criterion(importance, IMPORTANCE, "(model, group) -> one score per unit, such as "
                                                         "activation_importance(inputs)")


# ---------------------------------------------------------------------------------------------
# Which units to keep, and the rebuilt model
# ---------------------------------------------------------------------------------------------


def _check_groups(groups) -> list[UnitGroup]:
    if isinstance(groups, UnitGroup):
        groups = [groups]
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__iter__"):
        raise TypeError(f"groups must be a list of UnitGroup; got {type(groups).__name__}")
    groups = list(groups)
    if not groups:
        raise ValueError("groups is empty: there is nothing to prune")
    for g in groups:
        if not isinstance(g, UnitGroup):
            raise TypeError(f"groups must hold UnitGroup objects; got {type(g).__name__}")
    blocks = [g.block for g in groups]
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"groups lists a block twice: {blocks}")
    return groups


def units_to_keep(model: nn.Module, groups, ratio: float, importance="weight", *,
                  round_to: int = 1) -> dict[str, torch.Tensor]:
    """``{group.block: indices of the kept units (ascending)}``: in each group the highest-scoring units.

    Each group keeps ``channels_to_keep(units, ratio, round_to)`` units (at least one); ties go to the
    lower index. ``importance`` is ``"weight"`` (:func:`weight_norm_importance`) or a function
    ``(model, group) -> one score per unit``.
    """
    check_module(model)
    ratio = check_fraction(ratio, "ratio")
    round_to = check_int(round_to, "round_to", 1)
    score = _criterion(importance)
    keep = {}
    for g in _check_groups(groups):
        _check_group(model, g)
        scores = score(model, g)
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (g.units,):
            raise ValueError(f"importance must return one score per unit of group {g.block!r}, shape ({g.units},); "
                             f"got {getattr(scores, 'shape', type(scores).__name__)}")
        if scores.is_complex() or not bool(torch.isfinite(scores.detach().double()).all()):
            raise ValueError(f"the importance scores of group {g.block!r} are not all finite real numbers; "
                             "units cannot be ranked")
        keep[g.block] = _top(scores, channels_to_keep(g.units, ratio, round_to))
    return keep


def prune_units(model: nn.Module, groups, keep: dict) -> nn.Module:
    """A new model in which each group keeps only the units ``keep[group.block]``; ``model`` is untouched.

    Producer layers lose the rows (and biases) of the removed units, consumer layers their columns;
    an attention block's ``heads`` becomes the number of kept heads. Every kept value (and any
    unstructured mask) is copied exactly. Everything is checked before anything is built.
    """
    check_module(model)
    groups = _check_groups(groups)
    if not isinstance(keep, dict):
        raise TypeError(f"keep must be a dict {{group block: kept unit indices}}; got {type(keep).__name__}")
    unknown = sorted(set(keep) - {g.block for g in groups})
    if unknown:
        raise ValueError(f"keep names blocks that are not among the groups: {unknown}")
    rows = {}
    for g in groups:
        _check_group(model, g)
        if g.block not in keep:
            raise ValueError(f"keep has no entry for group {g.block!r}")
        units = g.checked_units(keep[g.block], f"keep[{g.block!r}]")
        rows[g.block] = (g, units, g.indices(units))
    pruned = copy.deepcopy(model)
    for g, units, idx in rows.values():
        for name in g.producers:
            _set_module(pruned, name, _rebuild(pruned.get_submodule(name), out_idx=idx))
        for name in g.consumers:
            _set_module(pruned, name, _rebuild(pruned.get_submodule(name), in_idx=idx))
        block = pruned.get_submodule(g.block)
        if g.kind == "heads":
            block.heads = len(units)
    return pruned


def _pruned(model: nn.Module, groups, ratio, importance, round_to: int, verbose) -> nn.Module:
    check_flag(verbose, "verbose")
    pruned = prune_units(model, groups, units_to_keep(model, groups, ratio, importance, round_to=round_to))
    if verbose:  # the same table the CNN pruner prints: widths, parameters and FLOPs per layer
        print(structure_report(model, pruned))
    return pruned


def prune_heads(model: nn.Module, ratio: float, importance="weight", *, verbose: bool = False) -> nn.Module:
    """A new model with ``ratio`` of the attention heads of every block removed (the least important ones).

    ``importance``: ``"weight"`` (the norm of each head's q/k/v rows and out columns) or a function
    ``(model, group) -> one score per head``, such as ``activation_importance(calibration_images)``.
    ``model`` is not changed. At ratio 0 the new model computes exactly what ``model`` does.
    ``verbose=True`` prints each layer's width, parameters and FLOPs before -> after.

    >>> prune_heads(TinyViT(heads=4), 0.5).blocks[0].attn.heads
    2
    """
    return _pruned(model, attention_head_groups(model), ratio, importance, 1, verbose)


def prune_mlp_neurons(model: nn.Module, ratio: float, importance="weight", *, round_to: int = 1,
                      verbose: bool = False) -> nn.Module:
    """A new model with ``ratio`` of the hidden neurons of every MLP block removed (the least important ones).

    ``importance`` and ``verbose`` as in :func:`prune_heads`; ``round_to`` rounds each kept width to a
    multiple (8 or 16 lets CPU kernels use full vector registers). ``model`` is not changed.

    >>> prune_mlp_neurons(TinyViT(dim=64, mlp_ratio=2), 0.25).blocks[0].mlp.fc1.out_features
    96
    """
    return _pruned(model, mlp_neuron_groups(model), ratio, importance, round_to, verbose)
