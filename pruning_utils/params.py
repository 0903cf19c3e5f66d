"""Parameters as the forward pass sees them: counts (total, non-zero, prunable) and the plain state_dict.

Every figure is read through the course's one masking mechanism (and ``torch.nn.utils.prune``'s
``weight_orig``/``weight_mask`` pairs), so a masked model and the same model after
:func:`~pruning_utils.masks.make_permanent` report the same numbers.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from .checks import check_module
from .masks import PRUNABLE_TYPES

__all__ = ["count_parameters", "plain_state_dict"]



def _is_parametrization_path(name: str) -> bool:
    return "parametrizations" in name.split(".")


def _torch_prune_mask(module: nn.Module, pname: str) -> torch.Tensor | None:
    """The mask ``torch.nn.utils.prune`` keeps beside ``<name>_orig`` (it leaves the original's values)."""
    if not pname.endswith("_orig"):
        return None
    mask = getattr(module, f"{pname[:-5]}_mask", None)
    return mask if isinstance(mask, torch.Tensor) else None


def _effective_parameters(module: nn.Module):
    """``(name, tensor, stored parameter, mask buffer name)`` for the parameters of ``module`` itself,
    each read as the forward pass sees it: a masked weight as ``original * mask`` (its zeros show).

    Both the course's masks (``torch.nn.utils.parametrize``) and ``torch.nn.utils.prune``'s
    ``weight_orig`` / ``weight_mask`` pairs are read this way; the mask buffer is named so that callers
    do not count or save it as a tensor of its own.
    """
    for pname, p in module.named_parameters(recurse=False):
        mask = _torch_prune_mask(module, pname)
        if mask is None:
            yield pname, p, p, None
        else:
            yield pname[:-5], p * mask, p, f"{pname[:-5]}_mask"
    if parametrize.is_parametrized(module):
        for pname in module.parametrizations:
            yield pname, getattr(module, pname), module.parametrizations[pname].original, None


def _logical_parameters(model: nn.Module):
    """``(modules, name, tensor)`` for every parameter of the model as the forward pass sees it, once.

    A parameter shared by several modules (tied weights) comes once, with every module that holds it
    under the same name, so a caller can tell whether any of them is a prunable layer.
    """
    first: dict[int, tuple[list, str, torch.Tensor]] = {}
    for name, module in model.named_modules():
        if _is_parametrization_path(name):
            continue
        for pname, tensor, stored, _ in _effective_parameters(module):
            if id(stored) not in first:
                first[id(stored)] = ([module], pname, tensor)
            elif first[id(stored)][1] == pname:
                first[id(stored)][0].append(module)
    yield from first.values()


@torch.no_grad()
def count_parameters(model: nn.Module) -> dict:
    """Total and non-zero parameters, for the whole model and for its prunable (Conv/Linear) weights."""
    check_module(model)
    total = non_zero = prunable = prunable_non_zero = 0
    for modules, pname, tensor in _logical_parameters(model):
        n, nz = tensor.numel(), int(torch.count_nonzero(tensor))
        total += n
        non_zero += nz
        # not biases, not BatchNorm; a weight tied between an Embedding and a Linear head counts as prunable
        if pname == "weight" and any(isinstance(m, PRUNABLE_TYPES) for m in modules):
            prunable += n
            prunable_non_zero += nz
    return {"total_params": total, "non_zero_params": non_zero,
            "prunable_params": prunable, "non_zero_prunable_params": prunable_non_zero}


def _ratio(a: float, b: float) -> float:
    """a / b, with x/0 = inf (everything removed) and 0/0 = 1 (nothing there to remove)."""
    if b:
        return a / b
    return math.inf if a else 1.0


@torch.no_grad()
def plain_state_dict(model: nn.Module) -> dict:
    """The ``state_dict`` the model would have with every mask made permanent (model untouched).

    A masked layer contributes ``weight`` as the forward pass sees it, zeros included, instead of
    ``parametrizations.weight.original`` + the mask buffer (or ``torch.nn.utils.prune``'s
    ``weight_orig`` + ``weight_mask``).
    """
    out = {}
    for name, module in check_module(model).named_modules():
        if _is_parametrization_path(name):
            continue
        prefix = f"{name}." if name else ""
        params = list(_effective_parameters(module))
        masks = {mask for *_, mask in params if mask is not None}
        tensors = [(pname, tensor) for pname, tensor, _, _ in params]
        tensors += [(bname, b) for bname, b in module.named_buffers(recurse=False)
                    if bname not in module._non_persistent_buffers_set and bname not in masks]
        for key, tensor in tensors:
            out[f"{prefix}{key}"] = tensor.detach().clone()
    return out
