"""Per-layer sensitivity: prune one layer at a time over a grid of sparsities and record a metric."""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from .checks import check_fraction, check_module, check_numbers
from .masks import magnitude_prune, prunable_layers
from .training import _check_flag

__all__ = ["SensitivityScan", "sensitivity_scan"]


def _finite_real(value, rule: str) -> float:
    """A finite real number (a one-element tensor counts); else an error ``"<rule>; got <value>"``."""
    # TODO(checks.py): "a finite real number, any sign" is a kind checks.py lacks (check_positive needs > 0).
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{rule}; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{rule}; got {value!r}")
    return value


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
        tolerance = _finite_real(tolerance, "tolerance must be a finite number >= 0")
        if tolerance < 0:
            raise ValueError(f"tolerance must be a finite number >= 0; got {tolerance!r}")
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
    _check_flag(progress, "progress")
    if layers is not None:
        if isinstance(layers, (str, type)):
            layers = [layers]
        if not isinstance(layers, Iterable):
            raise TypeError(f"layers must be a list of layer names (or layer types); got {layers!r}")
        layers = list(layers)
        for layer in layers:
            if not isinstance(layer, (str, type)):
                raise TypeError(f"layers takes layer names (or layer types); got {layer!r} ({type(layer).__name__})")
    names = [n for n, _ in prunable_layers(model, include=layers, **select)]
    from tqdm.auto import tqdm

    def metric(trial, where: str) -> float:
        return _finite_real(evaluate_fn(trial), f"evaluate_fn must return a finite number (higher is better, "
                                                f"e.g. evaluate(model, loader)['accuracy']) for {where}")

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
