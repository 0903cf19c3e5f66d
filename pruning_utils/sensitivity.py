"""Per-layer sensitivity: prune one layer at a time over a grid of sparsities and record a metric."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .checks import check_fraction
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
    """
    if not callable(evaluate_fn):
        raise TypeError(f"evaluate_fn must be a callable model -> float; got {type(evaluate_fn).__name__}")
    if isinstance(sparsities, (int, float)) or not sparsities:
        raise ValueError(f"sparsities must be a non-empty list of fractions in [0, 1); got {sparsities!r}")
    sparsities = [check_fraction(s, "sparsities") for s in sparsities]
    names = [n for n, _ in prunable_layers(model, include=layers, **select)]
    from tqdm.auto import tqdm

    dense = float(evaluate_fn(model))
    results: dict[str, list[float]] = {}
    for name in tqdm(names, desc="sensitivity scan", disable=not progress, leave=False):
        row = []
        for s in sparsities:
            trial = copy.deepcopy(model)
            layer = dict(trial.named_modules())[name]
            magnitude_prune([(name, layer)], s, scope="layer")
            row.append(float(evaluate_fn(trial)))
        results[name] = row
    return SensitivityScan(sparsities, dense, results)
