"""The one masking mechanism every unstructured pruner in the course uses.

A mask is attached with ``torch.nn.utils.parametrize``: the layer's ``weight`` becomes
``original * mask``, recomputed on every forward. So a pruned weight is *exactly* zero whatever a
training loop does afterwards (SGD momentum, weight decay, Adam): the optimizer may move the hidden
``original`` entry, but the mask multiplies it away, and its gradient is zero too. Nothing has to be
called after ``optimizer.step()``. The ``original`` parameter is the layer's old ``weight`` object, so an
optimizer built before pruning keeps working, and ``copy.deepcopy`` works on a masked model
(``torch.nn.utils.prune`` breaks it).

Masks only ever add zeros: masking a masked layer multiplies the masks.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .checks import check_fraction, check_scope

__all__ = [
    "PRUNABLE_TYPES",
    "WeightMask",
    "apply_mask",
    "check_fraction",
    "enforce_masks",
    "get_mask",
    "is_masked",
    "layer_sparsities",
    "load_weights_keep_masks",
    "magnitude_prune",
    "magnitude_scores",
    "make_permanent",
    "prunable_layers",
    "smallest_k",
    "sparsity",
]

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


class WeightMask(nn.Module):
    """Parametrization ``weight = original * mask``; the mask is a buffer saved in the state dict."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def _mask_module(module: nn.Module) -> WeightMask | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations["weight"]:
        if isinstance(p, WeightMask):
            return p
    return None


def is_masked(module: nn.Module) -> bool:
    """True when ``module.weight`` is under a course mask."""
    return _mask_module(module) is not None


def get_mask(module: nn.Module) -> torch.Tensor | None:
    """The layer's current mask (1 keeps, 0 prunes), or None when it has none."""
    m = _mask_module(module)
    return None if m is None else m.mask


def apply_mask(module: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """Mask ``module.weight`` with ``mask`` (True/1 keeps); combine with an existing mask. Return the mask."""
    weight = module.weight
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}")
    mask = mask.detach().to(device=weight.device, dtype=weight.dtype)
    existing = _mask_module(module)
    if existing is None:
        # ``original * mask`` keeps the weight's shape and dtype (checked just above), so the
        # consistency check that ``register_parametrization`` would run, a full forward of the new
        # parametrization, is skipped (``unsafe=True``); the flag is put back afterwards so checks on
        # later parametrizations of this weight stay as they were.
        was_unsafe = parametrize.is_parametrized(module, "weight") and module.parametrizations["weight"].unsafe
        parametrize.register_parametrization(module, "weight", WeightMask(mask), unsafe=True)
        module.parametrizations["weight"].unsafe = was_unsafe
    else:
        existing.mask.mul_(mask)
    enforce_masks(module)
    return get_mask(module)


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """Zero the hidden ``original`` entries under every mask in ``model`` (idempotent).

    Not needed for correctness (the forward already multiplies by the mask); it keeps the stored
    values clean, e.g. before reading ``parametrizations.weight.original`` directly.
    """
    for module in model.modules():
        m = _mask_module(module)
        if m is not None:
            module.parametrizations["weight"].original.mul_(m.mask)


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a private copy of its generated class.

    ``copy.deepcopy`` of a parametrized module shares torch's generated ``Parametrized<Layer>`` class
    with the original, and ``remove_parametrizations`` deletes the ``weight`` property from that class:
    making a copy permanent would break every other copy. With its own class, only this module changes.
    """
    cls = type(module)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


@torch.no_grad()
def make_permanent(model: nn.Module) -> int:
    """Fold every mask into a plain ``weight`` parameter (zeros stay). Return how many layers changed.

    Copies of the model (``copy.deepcopy``) keep their masks.
    """
    count = 0
    for module in list(model.modules()):  # a list: removing a parametrization changes the tree
        if is_masked(module):
            enforce_masks(module)
            _own_class(module)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            count += 1
    return count


def _matches(name: str, module: nn.Module, selectors) -> bool:
    return any((isinstance(s, str) and s == name) or (isinstance(s, type) and isinstance(module, s)) for s in selectors)


def _as_selectors(value, arg: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, type)):
        value = [value]
    value = list(value)
    for s in value:
        if not isinstance(s, (str, type)):
            raise TypeError(f"{arg} takes layer names or layer types; got {s!r}")
    return value


def prunable_layers(
    model: nn.Module,
    include: Iterable | str | type | None = None,
    exclude: Iterable | str | type | None = None,
    *,
    skip_first: bool = False,
    skip_last: bool = False,
    types: tuple[type, ...] = PRUNABLE_TYPES,
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs whose weights the pruners may touch, in model order.

    ``include``/``exclude`` take layer names (as in ``model.named_modules()``) or layer types;
    ``skip_first``/``skip_last`` leave the input and output layers dense (they are the most sensitive).
    A name that is not a prunable layer of the model raises ``ValueError``; so does an empty result.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    inc, exc = _as_selectors(include, "include"), _as_selectors(exclude, "exclude")
    candidates = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    names = {n for n, _ in candidates}
    for arg, selectors in (("include", inc), ("exclude", exc)):
        unknown = [s for s in selectors if isinstance(s, str) and s not in names]
        if unknown:
            raise ValueError(f"{arg} names no prunable layer: {unknown}; prunable layers are {sorted(names)}")
    layers = [(n, m) for n, m in candidates if (not inc or _matches(n, m, inc)) and not _matches(n, m, exc)]
    if skip_first:
        layers = layers[1:]
    if skip_last:
        layers = layers[:-1]
    if not layers:
        raise ValueError(
            f"model has no prunable layer ({', '.join(t.__name__ for t in types)}) left "
            f"after include={include!r}, exclude={exclude!r}, skip_first={skip_first}, skip_last={skip_last}"
        )
    return layers


def _kthvalue(values: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.kthvalue(values, k).values`` (k is 1-based); MPS has no kthvalue, so it runs on the CPU."""
    if values.device.type == "mps":
        return torch.kthvalue(values.cpu(), k).values.to(values.device)
    return torch.kthvalue(values, k).values


_SAMPLE = 1 << 16  # sample size used to bracket the k-th value of large inputs


def _kth_smallest(flat: torch.Tensor, k: int) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """The k-th smallest value of the 1-D ``flat`` (``1 <= k <= numel``), exactly as ``torch.kthvalue``.

    Returns ``(cut, below, ties)``: ``cut`` the value, ``below`` how many entries are strictly smaller,
    ``ties`` the positions (ascending) of the entries equal to ``cut``, or None when not collected.

    ``kthvalue`` copies its whole input and runs single-threaded; on large inputs this first brackets
    the answer between two values from a fixed-seed random sample (Floyd-Rivest), counts the entries
    below the bracket, and runs ``kthvalue`` only on the few entries inside it. Whenever the bracket
    misses (unlikely, and always detected), it falls back to ``kthvalue`` on everything.
    """
    n = flat.numel()
    if n > 16 * _SAMPLE:
        gen = torch.Generator().manual_seed(0)  # private: the global RNG is not touched
        picks = torch.randint(n, (_SAMPLE,), generator=gen).to(flat.device)
        sample = flat[picks]
        sample = (sample.cpu() if sample.device.type == "mps" else sample).sort().values
        rank = k / n * _SAMPLE
        margin = 6.0 * math.sqrt(max(rank * (1.0 - k / n), 1.0)) + 8.0
        lo_i, hi_i = math.floor(rank - margin), math.ceil(rank + margin)
        lo = sample[lo_i] if lo_i >= 0 else None
        hi = sample[hi_i] if hi_i < _SAMPLE else None
        below_lo = 0 if lo is None else int(torch.count_nonzero(flat < lo.to(flat.device)))
        if below_lo < k:
            inside = flat <= hi.to(flat.device) if hi is not None else ~torch.isnan(flat)
            if lo is not None:
                inside &= flat >= lo.to(flat.device)
            positions = torch.nonzero(inside).view(-1)
            if k <= below_lo + positions.numel():
                values = flat[positions]
                cut = _kthvalue(values, k - below_lo)
                below = below_lo + int(torch.count_nonzero(values < cut))
                return cut, below, positions[values == cut]
    cut = _kthvalue(flat, k)
    return cut, int(torch.count_nonzero(flat < cut)), None


def smallest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean tensor marking exactly ``k`` entries of ``scores`` with the smallest values.

    Ties at the cut-off are broken by position (first ones first), so the count is exact even when
    many scores are equal. Runs in linear time (``kthvalue``, see :func:`_kth_smallest`), without sorting.
    """
    flat = scores.reshape(-1)
    n = flat.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}]; got {k}")
    chosen = torch.zeros(n, dtype=torch.bool, device=flat.device)
    if k == 0:
        return chosen.view_as(scores)
    if k == n:
        return chosen.fill_(True).view_as(scores)
    cut, below, ties = _kth_smallest(flat, k)
    torch.lt(flat, cut, out=chosen)
    need = k - below
    if need:
        ties = torch.nonzero(flat == cut).view(-1) if ties is None else ties
        chosen[ties[:need]] = True
    return chosen.view_as(scores)


def _zero_count(module: nn.Module) -> tuple[int, int]:
    w = module.weight
    return int((w == 0).sum()), w.numel()


@torch.no_grad()
def sparsity(model: nn.Module, layers=None, **select) -> float:
    """Fraction of prunable weights that are exactly zero (masked or permanent alike).

    ``layers``: a list of ``(name, module)`` pairs; by default :func:`prunable_layers` with ``select``.
    """
    layers = prunable_layers(model, **select) if layers is None else layers
    zeros = total = 0
    for _, module in layers:
        z, n = _zero_count(module)
        zeros += z
        total += n
    return zeros / total


@torch.no_grad()
def layer_sparsities(model: nn.Module, layers=None, **select) -> dict[str, float]:
    """``{layer name: fraction of its weights that are zero}`` for the prunable layers."""
    layers = prunable_layers(model, **select) if layers is None else layers
    out = {}
    for name, module in layers:
        z, n = _zero_count(module)
        out[name] = z / n
    return out


# ---------------------------------------------------------------------------------------------
# Magnitude selection shared by every unstructured pruner (one-shot, iterative, gradual, rewinding)
# ---------------------------------------------------------------------------------------------


def magnitude_scores(module: nn.Module) -> torch.Tensor:
    """|w|, with already-masked entries at -1 so they rank below every live weight (even a live zero)."""
    w = module.weight.detach().abs()
    mask = get_mask(module)
    return w if mask is None else torch.where(mask.bool(), w, torch.full_like(w, -1.0))


def _n_masked(module: nn.Module) -> int:
    mask = get_mask(module)
    return 0 if mask is None else int((mask == 0).sum())


@torch.no_grad()
def _keep_masks(layers, target_sparsity: float) -> tuple[list[torch.Tensor], float]:
    """Keep-masks (in each weight's dtype) pruning exactly ``round(target * total)`` of ``layers``' weights.

    The selection of :func:`smallest_k` over the concatenated :func:`magnitude_scores`, done in fewer
    passes: scores are written into one buffer, masks straight from it, and only the entries tied at the
    cut are looked up by position. Returns the masks and the largest pruned magnitude.
    """
    weights = [m.weight.detach() for _, m in layers]
    offsets = [0]
    for w in weights:
        offsets.append(offsets[-1] + w.numel())
    n = offsets[-1]
    flat = torch.empty(n, dtype=functools.reduce(torch.promote_types, [w.dtype for w in weights]),
                       device=weights[0].device)
    already = 0
    for (_, module), w, start, end in zip(layers, weights, offsets, offsets[1:]):
        torch.abs(w.reshape(-1), out=flat[start:end])
        mask = get_mask(module)
        if mask is not None:  # as in magnitude_scores: masked entries score -1
            dead = mask.reshape(-1) == 0
            flat[start:end].masked_fill_(dead, -1.0)
            already += int(torch.count_nonzero(dead))
    k = max(round(target_sparsity * n), already)
    if k in (0, n):
        threshold = float(flat.max()) if k > already else 0.0
        return [torch.full_like(w, float(k == 0)) for w in weights], max(threshold, 0.0)
    cut, below, ties = _kth_smallest(flat, k)
    # keep = not among the k smallest: not below the cut, less the first entries tied at the cut
    keeps = [torch.logical_not(flat[a:b] < cut, out=torch.empty_like(w).view(-1)).view_as(w)
             for w, a, b in zip(weights, offsets, offsets[1:])]
    need = k - below
    if need:
        ties = (torch.nonzero(flat == cut).view(-1) if ties is None else ties)[:need]
        bounds = torch.searchsorted(ties, torch.tensor(offsets, device=ties.device)).tolist()
        for keep, start, a, b in zip(keeps, offsets, bounds, bounds[1:]):
            if b > a:
                keep.view(-1)[ties[a:b] - start] = 0
    threshold = float(cut) if k > already else 0.0  # the k-th smallest score is the largest pruned
    return keeps, max(threshold, 0.0)


@torch.no_grad()
def magnitude_prune(layers, target_sparsity: float, scope: str = "global") -> float:
    """Mask the smallest weights of ``layers`` so that exactly ``target_sparsity`` of them are zero.

    ``scope="global"``: one ranking across all layers; ``"layer"``: every layer to the same sparsity.
    Counts are exact (``round(target * n)``), ties included. Masks only add zeros, so a target below the
    current sparsity changes nothing. Returns the largest magnitude pruned (0.0 if none).
    """
    target_sparsity = check_fraction(target_sparsity, "target_sparsity")
    check_scope(scope)
    groups = [layers] if scope == "global" else [[item] for item in layers]
    threshold, planned = 0.0, []
    for group in groups:
        keeps, group_threshold = _keep_masks(group, target_sparsity)
        threshold = max(threshold, group_threshold)
        planned += [(module, keep) for (_, module), keep in zip(group, keeps)]
    for module, keep in planned:  # every mask computed first, then applied: all or nothing
        apply_mask(module, keep)
    return threshold


@torch.no_grad()
def load_weights_keep_masks(model: nn.Module, state_dict: dict) -> None:
    """Copy a dense ``state_dict`` (plain ``conv1.weight`` names) into a model, masks kept and applied.

    Used by weight rewinding: survivors get the saved values, pruned weights stay zero.
    """
    own = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if is_masked(module):
            own[f"{prefix}weight"] = module.parametrizations["weight"].original
        for key, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            own.setdefault(f"{prefix}{key}", tensor)
    missing = sorted(set(state_dict) - set(own))
    if missing:
        raise ValueError(f"state_dict has entries the model lacks: {missing[:5]}")
    for key, value in state_dict.items():
        own[key].copy_(value)
    enforce_masks(model)
