"""Per-layer sensitivity: prune one layer at a time over a grid of sparsities and record a metric."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .checks import check_flag, check_fraction, check_module, check_names, check_non_negative, check_numbers, check_real
from .masks import magnitude_prune, prunable_layers

__all__ = ["SensitivityScan", "sensitivity_scan"]


@dataclass
class SensitivityScan:
    """Metric of the model with ONE layer pruned, per layer and sparsity (higher metric = better)."""

    sparsities: list[float]
    dense: float
    results: dict[str, list[float]]

    def max_sparsity(self, tolerance: float = 0.01) -> dict[str, float]:
        """Per layer, the highest scanned sparsity whose metric stays within ``tolerance`` of dense.

        A layer that tolerates more pruning gets a higher share of it: the basis of a non-uniform
        allocation (0.0 when even the lowest scanned sparsity costs more than ``tolerance``).
        """
        tolerance = check_non_negative(tolerance, "tolerance")
        out = {}
        for name, values in self.results.items():
            ok = [s for s, v in zip(self.sparsities, values) if v >= self.dense - tolerance]
            out[name] = max(ok, default=0.0)
        return out

    def to_markdown(self) -> str:
        header = "| layer | " + " | ".join(f"{100 * s:g}%" for s in self.sparsities) + " |"
        lines = [header, "|---|" + "---:|" * len(self.sparsities)]
        for name, values in self.results.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
        return "\n".join(lines)


def sensitivity_scan(model: nn.Module, evaluate_fn: Callable[[nn.Module], float],
                     sparsities=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95), *, layers=None, progress: bool = True,
                     **select) -> SensitivityScan:
    """Prune one layer at a time (magnitude, on a copy) to each sparsity and record ``evaluate_fn(copy)``.

    ``evaluate_fn`` takes a model and returns a number where higher is better (e.g. validation
    accuracy). ``layers`` are names of prunable layers (default: all, or those ``select`` picks as in
    :func:`~pruning_utils.masks.prunable_layers`). The model itself is never changed.
    ``sparsities`` is a list of fractions in [0, 1) (not a single number, not a string). A value of
    ``evaluate_fn`` that is not a finite real number raises an error naming the layer and sparsity.
    """
    check_module(model)
    if not callable(evaluate_fn):
        raise TypeError(f"evaluate_fn must be a callable model -> float; got {type(evaluate_fn).__name__}")
    sparsities = check_numbers(sparsities, "sparsities", check_fraction)
    check_flag(progress, "progress")
    layers = None if layers is None else check_names(layers, "layers")
    names = [n for n, _ in prunable_layers(model, include=layers, **select)]
    from tqdm.auto import tqdm

    def metric(trial, where: str) -> float:  # e.g. evaluate(trial, loader)["accuracy"], not the dict
        value = evaluate_fn(trial)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        return check_real(value, f"evaluate_fn's result for {where}")

    dense = metric(model, "the dense model")
    results: dict[str, list[float]] = {}
    for name in tqdm(names, desc="sensitivity scan", disable=not progress, leave=False):
        row = []
        for s in sparsities:
            trial = copy.deepcopy(model)
            layer = dict(trial.named_modules())[name]
            magnitude_prune([(name, layer)], s, scope="layer")
            row.append(metric(trial, f"layer {name!r} at sparsity {s:g}"))
        results[name] = row
    return SensitivityScan(sparsities, dense, results)
