"""Input sizes and FLOPs: torch's ``FlopCounterMode`` per layer, and the zero-skipping (sparse) count."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .checks import check_module
from .masks import PRUNABLE_TYPES
from .params import _is_parametrization_path

__all__ = ["check_input_size", "count_flops", "default_input_size", "example_input", "sparse_flops"]



def check_input_size(input_size) -> tuple:
    """An input shape with the batch dimension, e.g. ``(1, 3, 32, 32)``; anything else is refused."""
    if (not isinstance(input_size, (tuple, list, torch.Size)) or not input_size
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_size)):
        raise ValueError(f"input_size must be an input shape with the batch dimension, e.g. (1, 3, 32, 32); "
                         f"got {input_size!r}")
    return tuple(input_size)


def default_input_size(model: nn.Module) -> tuple | None:
    """The input shape the course's models declare (SmallCNN: ``input_shape``, MLP: ``in_features``)."""
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return (1, *shape)
    features = getattr(model, "in_features", None)
    return (1, features) if isinstance(features, int) else None


def _resolve_input_size(model: nn.Module, input_size) -> tuple:
    check_module(model)
    if input_size is None:
        input_size = default_input_size(model) or (1, 3, 224, 224)
    return check_input_size(input_size)


def example_input(model: nn.Module, input_size) -> torch.Tensor:
    """Zeros of ``input_size`` on the model's device and dtype."""
    check_module(model)
    param = next(model.parameters(), None)
    return torch.zeros(check_input_size(input_size), device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None else None)


def _does_not_fit(model: nn.Module, input_size, exc: Exception) -> ValueError:
    return ValueError(f"input_size={tuple(input_size)} does not fit {type(model).__name__}: {exc}")


@contextlib.contextmanager
def _eval_mode(*models: nn.Module):
    """Put the models in eval mode; afterwards give every submodule back its own train/eval flag."""
    modes = {m: m.training for model in models for m in model.modules()}
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


@torch.no_grad()
def count_flops(model: nn.Module, input_size) -> tuple[int, dict[str, int]]:
    """FLOPs of one eval-mode forward pass on ``input_size``: ``(total, {module name: flops})``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (a matmul or conv counts 2 FLOPs per
    multiply-accumulate; elementwise ops, BatchNorm and pooling count 0). The per-module dict has every
    module that ran a counted op, parents included (a block's entry is the sum of its layers').
    An input size that does not fit the model raises ``ValueError`` naming it.
    """
    x = example_input(model, input_size)
    try:
        with _eval_mode(model), FlopCounterMode(display=False) as counter:
            model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise _does_not_fit(model, input_size, exc) from exc
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if "." in key:  # "<ModelClass>.<module name>"
            name = key.split(".", 1)[1]
            if not _is_parametrization_path(name):
                per_module[name] = sum(ops.values())
    return counter.get_total_flops(), per_module


@torch.no_grad()
def sparse_flops(model: nn.Module, input_size) -> tuple[int, int]:
    """``(dense FLOPs, FLOPs left if every multiplication by a zero weight were skipped)``.

    ShrinkBench's theoretical count: each Conv/Linear layer's FLOPs scale with the fraction of its
    weights that are non-zero; FLOPs outside those layers stay as they are.
    """
    total, per_module = count_flops(model, input_size)
    saved = 0.0
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and name in per_module:
            w = module.weight
            saved += per_module[name] * (1 - int(torch.count_nonzero(w)) / w.numel())
    return total, round(total - saved)
