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

import math
import numbers
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "PRUNABLE_TYPES",
    "WeightMask",
    "apply_mask",
    "check_fraction",
    "enforce_masks",
    "get_mask",
    "is_masked",
    "layer_sparsities",
    "make_permanent",
    "prunable_layers",
    "smallest_k",
    "sparsity",
]

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def check_fraction(value, name: str) -> float:
    """The course's one amount rule: a real number in [0, 1). Return it as a float.

    1.0 is refused on purpose: it would remove every weight of the network.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1); got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        hint = " (1.0 would remove every weight)" if value == 1.0 else ""
        raise ValueError(f"{name} must be in [0, 1){hint}; got {value!r}")
    return value


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
        parametrize.register_parametrization(module, "weight", WeightMask(mask))
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


@torch.no_grad()
def make_permanent(model: nn.Module) -> int:
    """Fold every mask into a plain ``weight`` parameter (zeros stay). Return how many layers changed."""
    count = 0
    for module in model.modules():
        if is_masked(module):
            enforce_masks(module)
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


def smallest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean tensor marking exactly ``k`` entries of ``scores`` with the smallest values.

    Ties at the cut-off are broken by position (first ones first), so the count is exact even when
    many scores are equal. Runs in linear time (``kthvalue``), without sorting.
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
    cut = torch.kthvalue(flat.cpu() if flat.device.type == "mps" else flat, k).values.to(flat.device)
    torch.lt(flat, cut, out=chosen)
    need = k - int(chosen.sum())
    if need:
        ties = torch.nonzero(flat == cut).view(-1)[:need]
        chosen[ties] = True
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
