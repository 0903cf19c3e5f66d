"""The one masking mechanism every unstructured pruner in the course uses.

A mask is attached with ``torch.nn.utils.parametrize``: the layer's ``weight`` becomes
``original * mask``, recomputed on every forward. So a pruned weight is *exactly* zero whatever a
training loop does afterwards (SGD momentum, weight decay, Adam): the optimizer may move the hidden
``original`` entry, but the mask multiplies it away, and its gradient is zero too. Nothing has to be
called after ``optimizer.step()``. The ``original`` parameter is the layer's old ``weight`` object, so an
optimizer built before pruning keeps working, and ``copy.deepcopy`` works on a masked model
(``torch.nn.utils.prune`` breaks it).

The rules this module keeps:

* Masks are values. :func:`apply_mask` copies the mask it is given (two layers given one tensor never
  share a buffer) and accepts only finite 0/1 values; :func:`get_mask` returns a copy, so a later prune
  never changes a mask a caller holds.
* Nothing is written into the stored weight before :func:`make_permanent`: the hidden ``original``
  keeps its values (the forward pass multiplies them away). On top of an existing parametrization ``P``
  the weight is ``P(original) * mask``, exactly.
* Masks only ever add zeros: masking a masked layer multiplies the masks.
* A weight shared between modules (tied embedding and head, weights assigned to two layers) would be
  masked in one module and not in the other: :func:`prunable_layers` and :func:`magnitude_prune` refuse
  it, naming both modules. A module used twice in a model is one layer, pruned once.
* ``pickle`` / ``torch.save(model)`` of a masked model raise :class:`MaskSerializationError`, which says
  to save ``model.state_dict()`` (masks included) or to call :func:`make_permanent` first.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .checks import check_flag, check_fraction, check_int, check_module, check_scope, check_tensor

__all__ = [
    "PRUNABLE_TYPES",
    "MaskSerializationError",
    "WeightMask",
    "apply_mask",
    "apply_nm_sparsity",
    "check_layers",
    "check_nm_pattern",
    "enforce_masks",
    "get_mask",
    "is_masked",
    "layer_sparsities",
    "load_weights_keep_masks",
    "magnitude_prune",
    "magnitude_scores",
    "make_permanent",
    "nm_mask",
    "prunable_layers",
    "semi_structured_bytes",
    "smallest_k",
    "sparsity",
]

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


class MaskSerializationError(RuntimeError):
    """A masked model was pickled (``pickle``, ``torch.save(model)``): only its state_dict can be saved."""


class WeightMask(nn.Module):
    """Parametrization ``weight = original * mask``; the mask is a buffer saved in the state dict."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def _refuse_pickle(self):
    raise MaskSerializationError(
        f"a masked {type(self).__name__} cannot be pickled (pickle / torch.save(model)): save "
        "model.state_dict() instead (it holds the masks; load it into a model masked the same way, e.g. with "
        "apply_mask), or call pruning_utils.make_permanent(model) first to fold the masks into plain weights"
    )


def _mask_module(module: nn.Module) -> WeightMask | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations["weight"]:
        if isinstance(p, WeightMask):
            return p
    return None


def is_masked(module: nn.Module) -> bool:
    """True when ``module.weight`` is under a course mask."""
    return _mask_module(check_module(module, "module")) is not None


def _mask_buffer(module: nn.Module) -> torch.Tensor | None:
    """The layer's mask buffer itself (internal reads only: callers get copies from :func:`get_mask`)."""
    m = _mask_module(module)
    return None if m is None else m.mask


def get_mask(module: nn.Module) -> torch.Tensor | None:
    """A copy of the layer's current mask (1 keeps, 0 prunes), or None when it has none.

    A copy: pruning the layer further never changes a mask already returned.
    """
    mask = _mask_buffer(check_module(module, "module"))
    return None if mask is None else mask.detach().clone()


def _torch_pruned(module: nn.Module) -> bool:
    """True when ``torch.nn.utils.prune`` has reparametrized ``module.weight`` (``weight_orig`` + a hook)."""
    from torch.nn.utils import prune

    return "weight_orig" in module._parameters or any(
        isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values())


def _check_prunable(module, name: str = "module") -> torch.Tensor:
    """The module's weight, if the course's masks can go on it; else a clear error naming the layer."""
    check_module(module, name)
    if _torch_pruned(module):
        raise ValueError(f"{name} ({type(module).__name__}) is pruned with torch.nn.utils.prune (it has weight_orig); "
                         "call torch.nn.utils.prune.remove(module, 'weight') first, then use the course's pruners")
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} ({type(module).__name__}) has no weight tensor to prune")
    if not weight.is_floating_point():
        raise TypeError(f"{name}.weight must be floating point to be pruned; got {weight.dtype}")
    if weight.device.type == "meta":
        raise ValueError(f"{name}.weight is on the meta device: it has no values to rank (load or initialise the "
                         "weights first, e.g. module.to_empty(device='cpu') and a state_dict)")
    return weight


def _check_mask_values(mask, shape, name: str = "mask") -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of 0/1 (or bool) values; got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} shape {tuple(mask.shape)} does not match weight shape {tuple(shape)}")
    if mask.is_complex():
        raise TypeError(f"{name} must hold 0/1 (or bool) values; got complex dtype {mask.dtype}")
    if mask.dtype != torch.bool and mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        bad = mask[(mask != 0) & (mask != 1)].reshape(-1)[:3].tolist()
        raise ValueError(f"{name} must hold only 0 and 1 (1 keeps, 0 prunes), finite; found values such as {bad}")
    return mask


def apply_mask(module: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """Mask ``module.weight`` with ``mask`` (True/1 keeps); combine with an existing mask. Return a copy of the mask.

    ``mask`` is copied (bool, or floats/ints that are exactly 0 or 1); the stored weight is not written.
    """
    weight = _check_prunable(module)
    mask = _check_mask_values(mask, weight.shape)
    mask = mask.detach().to(device=weight.device, dtype=weight.dtype, copy=True)
    existing = _mask_module(module)
    if existing is None:
        # ``original * mask`` keeps the weight's shape and dtype (checked just above), so the
        # consistency check that ``register_parametrization`` would run, a full forward of the new
        # parametrization, is skipped (``unsafe=True``); the flag is put back afterwards so checks on
        # later parametrizations of this weight stay as they were.
        was_unsafe = parametrize.is_parametrized(module, "weight") and module.parametrizations["weight"].unsafe
        parametrize.register_parametrization(module, "weight", WeightMask(mask), unsafe=True)
        module.parametrizations["weight"].unsafe = was_unsafe
        type(module).__getstate__ = _refuse_pickle  # torch's class for this module alone; its message names neither fix
    else:
        with torch.no_grad():
            existing.mask.mul_(mask)
    return get_mask(module)


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """Zero the hidden ``original`` entries under every mask in ``model`` (idempotent), on request only.

    Not needed for correctness (the forward already multiplies by the mask), and the course's helpers
    never call it: it writes into the stored weight, which may be shared. It only makes sense when a
    layer's mask is its only parametrization (``original`` is then what the mask multiplies).
    """
    for module in check_module(model).modules():
        m = _mask_module(module)
        if m is not None:
            if len(module.parametrizations["weight"]) != 1:
                raise ValueError(f"{type(module).__name__} has another parametrization under its mask; "
                                 "zeroing its original would not zero its weight")
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

    The weight keeps the value the forward pass saw: on top of another parametrization ``P`` it becomes
    the plain ``P(original) * mask`` (``P`` is folded in too). Copies of the model (``copy.deepcopy``)
    keep their masks.
    """
    count = 0
    for module in list(check_module(model).modules()):  # a list: removing a parametrization changes the tree
        if is_masked(module):
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
    if not isinstance(value, Iterable):
        raise TypeError(f"{arg} takes a layer name, a layer type or a list of them; got {value!r}")
    value = list(value)
    for s in value:
        if not isinstance(s, (str, type)):
            raise TypeError(f"{arg} takes layer names or layer types; got {s!r}")
    return value


def _stored_weights(module: nn.Module):
    """``(parameter name, stored tensor)`` for the parameters ``module`` holds itself (a masked weight's
    ``original`` included)."""
    for pname, tensor in module._parameters.items():
        if tensor is not None:
            yield pname, tensor
    if parametrize.is_parametrized(module):
        for pname, plist in module.parametrizations.items():
            original = getattr(plist, "original", None)
            if isinstance(original, torch.Tensor):
                yield pname, original


def _weight_storage(module: nn.Module, name: str = "layer") -> torch.Tensor:
    """The tensor holding ``module``'s weight values: ``weight``, or a masked weight's ``original``.

    Code that rewrites weight values in place (SparseGPT's update, quantization) writes here, so a
    layer keeps its mask. Any other parametrization of the weight is refused: its ``original`` is not
    the effective weight, and writing the effective values into it would be wrong.
    """
    if not parametrize.is_parametrized(module, "weight"):
        return module.weight
    plist = module.parametrizations["weight"]
    if len(plist) != 1 or not isinstance(plist[0], WeightMask):
        raise ValueError(f"layer {name!r} has a parametrization other than the course's mask on its weight: its "
                         "values cannot be rewritten through it (make_permanent(model) first)")
    return plist.original


def _storage_key(tensor: torch.Tensor):
    """Where the tensor's memory lives (shared by views and aliases), or None when it has none (empty, meta).

    The one test of "these tensors share memory": shared weights here, a student sharing its teacher's
    tensors in distillation.
    """
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return None
    return tensor.device, tensor.untyped_storage().data_ptr()


def _owners(model: nn.Module) -> dict:
    """``{storage: [(module name, parameter name, module), ...]}`` over the whole model."""
    owners: dict = {}
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        for pname, tensor in _stored_weights(module):
            key = _storage_key(tensor)
            if key is not None:
                owners.setdefault(key, []).append((name, pname, module))
    return owners


def _shared_error(first: str, second: str) -> ValueError:
    return ValueError(
        f"layer {first} shares its weight with {second}: a mask on one would leave the other dense. "
        "Untie them first (e.g. layer.weight = nn.Parameter(layer.weight.detach().clone())) or exclude the layer"
    )


def _check_not_shared(model: nn.Module, layers) -> None:
    """Refuse a selected layer whose weight storage another module of ``model`` also holds."""
    owners = _owners(model)
    for name, module in layers:
        key = _storage_key(module.parametrizations["weight"].original if parametrize.is_parametrized(module, "weight")
                           else module.weight)
        for other, pname, other_module in owners.get(key, []):
            if other_module is not module or pname != "weight":
                raise _shared_error(f"{name!r} ({type(module).__name__})",
                                    f"{other!r}.{pname} ({type(other_module).__name__})")


def prunable_layers(
    model: nn.Module,
    include: Iterable | str | type | None = None,
    exclude: Iterable | str | type | None = None,
    *,
    skip_first: bool = False,
    skip_last: bool = False,
    types: tuple[type, ...] = PRUNABLE_TYPES,
    allow_shared: bool = False,
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs whose weights the pruners may touch, in model order.

    ``include``/``exclude`` take layer names (as in ``model.named_modules()``) or layer types;
    ``skip_first``/``skip_last`` leave the input and output layers dense (they are the most sensitive).
    A name that is not a prunable layer of the model raises ``ValueError``; so does an empty result, and
    so does a selected layer whose weight another module shares (tied weights), unless ``allow_shared``
    (for counting only: a mask on a shared weight would reach one of its users).
    A module used at two places of the model is one layer.
    """
    check_module(model)
    for flag, value in (("skip_first", skip_first), ("skip_last", skip_last), ("allow_shared", allow_shared)):
        check_flag(value, flag)
    if isinstance(types, type):
        types = (types,)
    if not isinstance(types, tuple) or not types or not all(isinstance(t, type) for t in types):
        raise TypeError(f"types must be a tuple of module classes; got {types!r}")
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
    for name, module in layers:
        _check_prunable(module, name)
    if not allow_shared:
        _check_not_shared(model, layers)
    return layers


def check_layers(layers, *, finite: bool = False) -> list[tuple[str, nn.Module]]:
    """The one rule for a ``layers`` argument: ``(name, module)`` pairs with a prunable weight.

    ``layers`` is read once (an iterator or generator is fine) and returned as a list. Refused, naming
    the item: a non-pair, a name that is not a str, a module without a floating-point weight, the same
    module twice, two layers sharing one weight, an empty list, and with ``finite`` NaN/inf weights.
    """
    if isinstance(layers, (str, bytes, nn.Module)) or not isinstance(layers, Iterable):
        raise TypeError("layers must be a list of (name, module) pairs, e.g. prunable_layers(model); "
                        f"got {type(layers).__name__}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: pass (name, module) pairs, e.g. prunable_layers(model)")
    seen: dict = {}
    for i, item in enumerate(layers):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"layers[{i}] must be a (name, module) pair, e.g. from prunable_layers(model); got {item!r}"[:300])
        name, module = item
        weight = _check_prunable(module, f"layers[{i}] {name!r}")
        if finite and weight.numel() and not bool(torch.isfinite(weight.detach()).all()):
            raise ValueError(f"layer {name!r} has NaN or inf weights; magnitudes cannot rank them "
                             "(fix the training run, or load finite weights, before pruning)")
        stored = module.parametrizations["weight"].original if parametrize.is_parametrized(module, "weight") else weight
        for key, what in ((id(module), "module"), (_storage_key(stored), "weight")):
            if key is None:
                continue
            if key in seen:
                if what == "module":
                    raise ValueError(f"layers lists the same module twice: {seen[key]!r} and {name!r}")
                raise _shared_error(f"{name!r}", f"{seen[key]!r}")
            seen[key] = name
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
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor; got {type(scores).__name__}")
    if scores.is_complex() or scores.dtype == torch.bool:
        raise TypeError(f"scores must be real numbers (float or int); got dtype {scores.dtype}")
    flat = scores.detach().reshape(-1)
    n = flat.numel()
    k = check_int(k, "k", 0)
    if k > n:
        raise ValueError(f"k must be in [0, {n}] (the number of scores); got {k}")
    if flat.is_floating_point() and bool(torch.isnan(flat).any()):
        raise ValueError("scores holds NaN values, which have no rank")
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


def _measured_layers(model: nn.Module, layers, select: dict) -> list:
    if layers is None:
        return prunable_layers(model, allow_shared=True, **select)
    if select:
        raise TypeError(f"pass either layers or selection arguments {sorted(select)}, not both")
    return check_layers(layers)


@torch.no_grad()
def sparsity(model: nn.Module, layers=None, **select) -> float:
    """Fraction of prunable weights that are exactly zero (masked or permanent alike).

    ``layers``: a list of ``(name, module)`` pairs; by default :func:`prunable_layers` with ``select``.
    """
    zeros = total = 0
    for _, module in _measured_layers(model, layers, select):
        z, n = _zero_count(module)
        zeros += z
        total += n
    return zeros / total if total else 0.0


@torch.no_grad()
def layer_sparsities(model: nn.Module, layers=None, **select) -> dict[str, float]:
    """``{layer name: fraction of its weights that are zero}`` for the prunable layers."""
    out = {}
    for name, module in _measured_layers(model, layers, select):
        z, n = _zero_count(module)
        out[name] = z / n if n else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# Magnitude selection shared by every unstructured pruner (one-shot, iterative, gradual, rewinding)
# ---------------------------------------------------------------------------------------------


def magnitude_scores(module: nn.Module) -> torch.Tensor:
    """|w|, with already-masked entries at -1 so they rank below every live weight (even a live zero)."""
    w = _check_prunable(module).detach().abs()
    mask = _mask_buffer(module)
    return w if mask is None else torch.where(mask.bool(), w, torch.full_like(w, -1.0))


def _n_masked(module: nn.Module) -> int:
    mask = _mask_buffer(module)
    return 0 if mask is None else int((mask == 0).sum())


@torch.no_grad()
def _keep_masks(layers, target_sparsity: float) -> tuple[list[torch.Tensor], float]:
    """Keep-masks (in each weight's dtype) pruning exactly ``round(target * total)`` of ``layers``' weights.

    The selection of :func:`smallest_k` over the concatenated :func:`magnitude_scores`, done in fewer
    passes: scores are written into one buffer, masks straight from it, and only the entries tied at the
    cut are looked up by position. Returns the masks and the largest pruned magnitude.
    """
    weights = [m.weight.detach() for _, m in layers]
    devices = {w.device for w in weights}
    if len(devices) > 1:
        raise ValueError(f"layers are on several devices {sorted(map(str, devices))}; a global ranking needs "
                         "one (move the model with model.to(device), or use scope='layer')")
    offsets = [0]
    for w in weights:
        offsets.append(offsets[-1] + w.numel())
    n = offsets[-1]
    flat = torch.empty(n, dtype=functools.reduce(torch.promote_types, [w.dtype for w in weights]),
                       device=weights[0].device)
    already = 0
    for (_, module), w, start, end in zip(layers, weights, offsets, offsets[1:]):
        flat[start:end].copy_(w.reshape(-1)).abs_()  # copy_ converts: layers may mix fp16/bf16/fp32
        mask = _mask_buffer(module)
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
    keeps = [torch.logical_not(flat[a:b] < cut).view(w.shape)
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
    layers = check_layers(layers, finite=True)
    groups = [layers] if scope == "global" else [[item] for item in layers]
    threshold, planned = 0.0, []
    for group in groups:
        keeps, group_threshold = _keep_masks(group, target_sparsity)
        threshold = max(threshold, group_threshold)
        planned += [(module, keep) for (_, module), keep in zip(group, keeps)]
    for module, keep in planned:  # every mask computed first, then applied: all or nothing
        apply_mask(module, keep)
    return threshold


def _plain_tensors(model: nn.Module) -> dict:
    """``{plain name: stored tensor}``: parameters (a masked weight as its ``original``) and persistent buffers."""
    own = {}
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        prefix = f"{name}." if name else ""
        for pname, tensor in _stored_weights(module):
            if parametrize.is_parametrized(module, pname) and (
                    len(module.parametrizations[pname]) != 1 or _mask_module(module) is None or pname != "weight"):
                raise ValueError(f"{prefix}{pname} has a parametrization other than the course's mask; its stored "
                                 "original cannot be set from a plain weight")
            own[f"{prefix}{pname}"] = tensor
        for bname, b in module.named_buffers(recurse=False):
            if b is not None and bname not in module._non_persistent_buffers_set:
                own[f"{prefix}{bname}"] = b
    return own


@torch.no_grad()
def load_weights_keep_masks(model: nn.Module, state_dict: dict) -> None:
    """Copy a dense ``state_dict`` (plain ``conv1.weight`` names) into a model; its masks stay as they are.

    Used by weight rewinding: survivors get the saved values, pruned weights stay zero (the mask still
    multiplies them). The dict must name exactly the model's parameters and buffers, each with the
    model's shape (nothing is broadcast); mask entries are refused (masks are never replaced here).
    Nothing is copied unless every entry fits.
    """
    check_module(model)
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict of tensors; got {type(state_dict).__name__}")
    if not state_dict:
        raise ValueError("state_dict is empty")
    masks = sorted(k for k in state_dict if isinstance(k, str) and "parametrizations" in k.split("."))
    if masks:
        raise ValueError(f"state_dict holds mask/parametrization entries {masks[:3]}: load_weights_keep_masks keeps "
                         "the model's masks; pass plain names (pruning_utils.plain_state_dict) or use "
                         "model.load_state_dict to replace masks too")
    own = _plain_tensors(model)
    extra, missing = sorted(set(state_dict) - set(own), key=str), sorted(set(own) - set(state_dict))
    if extra or missing:
        raise ValueError(f"state_dict does not match the model: entries the model lacks {extra[:5]}, "
                         f"model entries it lacks {missing[:5]}")
    for key, value in state_dict.items():
        target = own[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] must be a tensor; got {type(value).__name__}")
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"state_dict[{key!r}] has shape {tuple(value.shape)}, the model's is {tuple(target.shape)}")
        if value.dtype != target.dtype and not (value.is_floating_point() and target.is_floating_point()):
            raise TypeError(f"state_dict[{key!r}] has dtype {value.dtype}, the model's is {target.dtype}")
    for key, value in state_dict.items():
        own[key].copy_(value)


# ---------------------------------------------------------------------------------------------
# N:M semi-structured sparsity (2:4 and friends), through the same masks
# ---------------------------------------------------------------------------------------------


def _check_nm(n, m) -> tuple[int, int]:
    n, m = check_int(n, "n", 1), check_int(m, "m", 1)
    if n > m:
        raise ValueError(f"n must be <= m (n kept of every m weights, 0 < n <= m); got n={n}, m={m}")
    return n, m


def _nm_groups(tensor: torch.Tensor, m: int, what: str) -> torch.Tensor:
    """``tensor`` as ``(rows, groups, m)``: groups of ``m`` consecutive entries along the input dimension.

    The input dimension is everything after dim 0: a Linear's ``in_features``, a Conv's flattened
    ``in_channels * kh * kw`` per output channel (what torch's semi-structured kernels see after
    reshaping the weight to 2-D).
    """
    if tensor.dim() < 2:
        raise ValueError(f"{what} must have an output and an input dimension (2-D or more); got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(tensor.shape)})")
    cols = tensor[0].numel()
    if cols % m:
        raise ValueError(f"{what} has shape {tuple(tensor.shape)}: its input dimension {cols} (everything after dim 0) "
                         f"is not a multiple of m={m}, so it cannot be split into groups of {m}")
    return tensor.reshape(tensor.shape[0], cols // m, m)


def _check_scores(scores, shape, what: str) -> torch.Tensor:
    check_tensor(scores, what)
    if scores.is_complex() or scores.dtype == torch.bool:
        raise TypeError(f"{what} must hold real numbers (float or int); got dtype {scores.dtype}")
    if shape is not None and tuple(scores.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(scores.shape)}, the weight's is {tuple(shape)}")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise ValueError(f"{what} holds NaN values, which have no rank")
    return scores.detach()


def _nm_keep(scores: torch.Tensor, n: int, m: int, live: torch.Tensor | None, what: str) -> torch.Tensor:
    """Bool keep-mask: in every group of ``m``, the ``n`` entries first by (live, score, lowest index)."""
    groups = _nm_groups(scores, m, what)
    # lexicographic order by stable sorts: the last sort is the primary key; equal scores keep index order
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)
    if live is not None:
        alive = torch.gather(live.reshape(groups.shape).to(torch.int8), -1, order)
        order = torch.gather(order, -1, torch.argsort(alive, dim=-1, descending=True, stable=True))
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
    keep.scatter_(-1, order[..., :n], True)
    return keep.view(scores.shape)


@torch.no_grad()
def nm_mask(weight_or_scores, n: int = 2, m: int = 4) -> torch.Tensor:
    """Bool keep-mask keeping the ``n`` largest of every ``m`` consecutive entries along the input dimension.

    ``weight_or_scores``: a prunable layer (ranked by :func:`magnitude_scores`, |w| with already-masked
    entries lowest) or a tensor of scores of the weight's shape (ranked by value, largest kept: pass
    ``weight.abs()`` to rank a raw weight by magnitude). Groups run along the input dimension: a
    Linear's dim 1, a Conv's flattened ``in_channels * kh * kw`` per output channel. Ties are broken by
    position: the lowest index is kept first. The mask is a fresh tensor (a value); nothing is applied.
    """
    n, m = _check_nm(n, m)
    if isinstance(weight_or_scores, nn.Module):
        _check_prunable(weight_or_scores, "weight_or_scores")
        scores, what = magnitude_scores(weight_or_scores), f"weight_or_scores ({type(weight_or_scores).__name__}) weight"
    else:
        scores, what = _check_scores(weight_or_scores, None, "weight_or_scores"), "weight_or_scores"
    return _nm_keep(scores, n, m, None, what)


@torch.no_grad()
def apply_nm_sparsity(model_or_layers, n: int = 2, m: int = 4, *, score=None, include=None,
                      exclude=None) -> dict[str, float]:
    """Mask every prunable layer to the N:M pattern (``n`` kept of every ``m`` along the input dimension).

    ``model_or_layers``: a model (its :func:`prunable_layers` with ``include``/``exclude``) or a list of
    ``(name, module)`` pairs. ``score``: None for magnitude, or a callable ``(name, module) -> tensor`` of
    the weight's shape (larger is kept). On a layer that already has a mask, the weights it prunes rank
    below every live weight, whatever their score, and the new mask multiplies the old one: the result
    keeps at most ``n`` of every ``m`` (fewer where a group had fewer than ``n`` live weights) and never
    revives a pruned weight. Every mask is computed before any is applied (all or nothing); a layer whose
    input dimension is not a multiple of ``m`` is refused, naming it. Returns ``{layer: sparsity}``.
    """
    n, m = _check_nm(n, m)
    if score is not None and not callable(score):
        raise TypeError(f"score must be None (magnitude) or a callable (name, module) -> tensor; got {type(score).__name__}")
    if isinstance(model_or_layers, nn.Module):
        layers = prunable_layers(model_or_layers, include, exclude)
        leave_out = "leave it dense with exclude=[{!r}]"
    else:
        leave_out = "leave it dense: drop ({!r}, module) from the layers passed"
        if include is not None or exclude is not None:
            raise TypeError("include/exclude select layers of a model; with a list of layers, pass only the layers wanted")
        layers = check_layers(model_or_layers)
    planned = []
    for name, module in layers:
        weight = module.weight
        if score is None:
            scores = magnitude_scores(module)
        else:
            scores = _check_scores(score(name, module), weight.shape, f"score({name!r}, module)")
        live = _mask_buffer(module)
        try:  # the shape is refused where the groups are made (as check_nm_pattern does), with the way out
            keep = _nm_keep(scores.to(weight.device), n, m, None if live is None else live != 0,
                            f"layer {name!r} ({type(module).__name__}) weight")
        except ValueError as exc:
            raise ValueError(f"{exc}: " + leave_out.format(name)) from None
        planned.append((module, keep))
    for module, keep in planned:  # every mask computed first, then applied: all or nothing
        apply_mask(module, keep)
    return {name: _zero_count(module)[0] / module.weight.numel() for name, module in layers}


@torch.no_grad()
def check_nm_pattern(model_or_module, n: int = 2, m: int = 4, *, include=None, exclude=None) -> dict:
    """Exact check of the N:M pattern on the *effective* weights (what the forward pass uses).

    A group of ``m`` consecutive weights along the input dimension conforms when at most ``n`` of its
    weights are non-zero (a NaN counts as non-zero). Returns a dict::

        {"conforms": bool,            # every group of every checked layer conforms
         "sparsity": float,           # fraction of the checked weights that are zero
         "conforming": float,         # fraction of all groups that conform
         "layers": {name: {"conforms": bool, "sparsity": float, "groups": int, "conforming": float}}}

    ``model_or_module``: a model, or one layer (reported under its type name). ``include``/``exclude``
    as in :func:`prunable_layers`; a layer whose input dimension is not a multiple of ``m`` is refused,
    naming it (exclude it).
    """
    n, m = _check_nm(n, m)
    check_module(model_or_module, "model_or_module")
    layers = prunable_layers(model_or_module, include, exclude, allow_shared=True)
    report, zeros, total, good, groups = {}, 0, 0, 0, 0
    for name, module in layers:
        w = module.weight.detach()
        label = name or type(module).__name__
        try:
            grouped = _nm_groups(w, m, f"layer {label!r} weight")
        except ValueError as exc:
            raise ValueError(f"{exc}: leave it out with exclude=[{name!r}]" if name else str(exc)) from None
        ok = (grouped != 0).sum(-1) <= n
        z, g, k = int((w == 0).sum()), ok.numel(), int(ok.sum())
        report[label] = {"conforms": k == g, "sparsity": z / w.numel(), "groups": g, "conforming": k / g}
        zeros, total, good, groups = zeros + z, total + w.numel(), good + k, groups + g
    return {"conforms": good == groups, "sparsity": zeros / total, "conforming": good / groups, "layers": report}


# torch's CUTLASS packing (torch/sparse/_semi_structured_conversions.py, sparse_semi_structured_from_dense_cutlass):
# 2:4 for fp16/bf16/int8 (1:2 for fp32); a 4-bit code per group (two 2-bit indices) packed into metadata words;
# the weight shapes torch.sparse.to_sparse_semi_structured accepts (SparseSemiStructuredTensorCUTLASS).
_SEMI_STRUCTURED = {  # dtype: (kept of every, group, metadata word bytes, min rows, min cols)
    torch.float16: (2, 4, 2, 32, 64),
    torch.bfloat16: (2, 4, 2, 32, 64),
    torch.int8: (2, 4, 4, 16, 128),
    torch.float32: (1, 2, 2, 32, 32),
}


def semi_structured_bytes(n_rows: int, n_cols: int, dtype: torch.dtype = torch.float16) -> dict[str, float]:
    """Exact bytes of a ``n_rows x n_cols`` weight in the compressed 2:4 form vs dense.

    The compressed form keeps half the values (2 of every 4; fp32 keeps 1 of every 2) plus metadata:
    for each group a 4-bit code, the two 2-bit positions of its kept values, so 2 bits per kept value
    for fp16/bf16/int8 (4 bits per kept fp32 value, whose groups are 1:2), as NVIDIA's Ampere sparse
    tensor cores read it. These are the sizes torch's own packing allocates
    (``torch.sparse._semi_structured_conversions.sparse_semi_structured_from_dense_cutlass``, the CUTLASS
    backend of ``torch.sparse.to_sparse_semi_structured``; e.g. its docstring's 128x128 fp16 example
    gives values of shape (128, 64) and int16 metadata of shape (128, 8)). Shapes the CUTLASS backend
    refuses (``n_rows``/``n_cols`` not multiples of its minimum block: (32, 64) for fp16/bf16, (16, 128)
    for int8, (32, 32) for fp32) are refused here too. (torch's default backend, cuSPARSELt, accepts
    smaller blocks, 16 x 16 for fp16/bf16 and 32 x 32 for int8, and packs values and metadata into one
    tensor whose layout its library decides, so its bytes are not counted here.) Returns
    ``{"values", "metadata", "compressed", "dense"}`` in bytes and ``"ratio"`` (compressed / dense).
    """
    n_rows, n_cols = check_int(n_rows, "n_rows", 1), check_int(n_cols, "n_cols", 1)
    if dtype not in _SEMI_STRUCTURED:
        raise ValueError(f"dtype must be one of {', '.join(map(str, _SEMI_STRUCTURED))} (the semi-structured kernels' "
                         f"dtypes); got {dtype!r}")
    kept, group, word, min_rows, min_cols = _SEMI_STRUCTURED[dtype]
    for arg, value, step in (("n_rows", n_rows, min_rows), ("n_cols", n_cols, min_cols)):
        if value % step:
            raise ValueError(f"{arg} must be a multiple of {step} for {dtype} (the smallest block of the CUTLASS "
                             f"backend of torch.sparse.to_sparse_semi_structured, whose packing this counts, is "
                             f"{min_rows} x {min_cols}); got {value}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    values = n_rows * (n_cols // group * kept) * itemsize
    metadata = n_rows * (n_cols // group) * 4 // 8  # a 4-bit code per group, packed into whole metadata words
    assert metadata % word == 0
    dense = n_rows * n_cols * itemsize
    return {"values": values, "metadata": metadata, "compressed": values + metadata, "dense": dense,
            "ratio": (values + metadata) / dense}
