"""Unstructured magnitude pruning: per layer (:class:`SimplePruner`) and global (:class:`ThresholdPruner`).

Both compute masks from weight magnitudes and hand them to :mod:`pruning_utils.masks`, the course's one
masking mechanism, so pruned weights stay zero through any later training.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_flag, check_fraction, check_non_negative, check_percent, check_real, check_tensor
from .masks import (
    apply_mask,
    get_mask,
    layer_sparsities,
    magnitude_prune,
    magnitude_scores,
    make_permanent,
    prunable_layers,
    smallest_k,
    sparsity,
)

__all__ = ["SimplePruner", "ThresholdPruner", "magnitude_mask"]


@torch.no_grad()
def magnitude_mask(module: nn.Module, amount: float) -> torch.Tensor:
    """Keep-mask that prunes ``round(amount * remaining)`` more of the layer's smallest live weights.

    ``amount`` is a fraction of the weights still alive, as in torch's ``PruningContainer``: calling it
    twice at 0.5 leaves 25% of the weights.
    """
    amount = check_fraction(amount, "amount")
    mask = get_mask(module)
    already = 0 if mask is None else int((mask == 0).sum())
    k_new = round(amount * (module.weight.numel() - already))
    return ~smallest_k(magnitude_scores(module), already + k_new)


class SimplePruner:
    """Per-layer L1 (magnitude) pruning: every prunable layer loses the same fraction of its weights.

    :meth:`apply_std_threshold` is Han et al.'s (2015, Section 4) per-layer rule instead: prune the
    weights below "a quality parameter multiplied by the standard deviation of a layer's weights".

    >>> from pruning_utils import SmallCNN
    >>> pruner = SimplePruner(SmallCNN(), pruning_rate=0.5, verbose=False)
    >>> round(pruner.apply_magnitude_pruning()["fc"], 2)
    0.5
    """

    def __init__(self, model: nn.Module, pruning_rate: float = 0.3, *, include=None, exclude=None,
                 skip_first: bool = False, skip_last: bool = False, verbose: bool = True):
        self.model = model
        self.pruning_rate = check_fraction(pruning_rate, "pruning_rate")
        check_flag(verbose, "verbose")
        self.layers = prunable_layers(model, include, exclude, skip_first=skip_first, skip_last=skip_last)
        self.verbose = verbose

    def apply_magnitude_pruning(self, pruning_rate: float | None = None) -> dict[str, float]:
        """Prune ``pruning_rate`` of each layer's *remaining* weights; return ``{layer: sparsity}``.

        Calling it twice compounds like torch's ``PruningContainer``: 0.5 then 0.5 leaves 25%.
        """
        rate = self.pruning_rate if pruning_rate is None else check_fraction(pruning_rate, "pruning_rate")
        return self._apply([magnitude_mask(module, rate) for _, module in self.layers])

    def _apply(self, masks: list, notes: dict | None = None) -> dict[str, float]:
        """Apply one mask per layer (all computed first: all or nothing); print and return the sparsities."""
        for (_, module), mask in zip(self.layers, masks):
            apply_mask(module, mask)
        table = layer_sparsities(self.model, self.layers)
        if self.verbose:
            for name, s in table.items():
                print(f"pruned {name:<24} {s:7.2%} sparse" + (f" ({notes[name]})" if notes else ""))
        return table

    def apply_std_threshold(self, quality) -> dict[str, float]:
        """Han et al.'s threshold: prune each layer's live weights with ``|w| <= q * std``; return ``{layer: sparsity}``.

        ``quality`` is one ``q >= 0`` for every layer, or a dict ``{layer name: q}`` naming each pruned
        layer, as Han et al. chose it per layer from a sensitivity analysis (their Section 5). The
        standard deviation is that of the layer's live (unmasked) weights, so a second call prunes
        further, like :meth:`apply_magnitude_pruning`. One shared ``q`` gives nearly equal sparsities:
        for bell-shaped weights the fraction below ``q * std`` depends on ``q``, not on the layer's scale.
        """
        names = [name for name, _ in self.layers]
        if isinstance(quality, dict):
            unknown = sorted(set(map(str, quality)) - set(names))
            missing = [n for n in names if n not in quality]
            if unknown or missing:
                raise ValueError(f"quality must give one q for each pruned layer {names}; "
                                 + (f"unknown {unknown}" if unknown else f"missing {missing}"))
            qs = {n: check_non_negative(quality[n], f"quality[{n!r}]") for n in names}
        else:
            q = check_non_negative(quality, "quality")
            qs = dict.fromkeys(names, q)
        masks = []
        for name, module in self.layers:
            w = module.weight.detach()
            live = get_mask(module)
            alive = w.reshape(-1) if live is None else w[live.bool()]
            std = float(alive.std()) if alive.numel() > 1 else 0.0
            masks.append(w.abs() > qs[name] * std)
        return self._apply(masks, {name: f"q = {q:g}" for name, q in qs.items()})

    @staticmethod
    def get_sparsity(module: nn.Module) -> float:
        """Fraction of ``module.weight`` that is exactly zero (reads through the mask)."""
        if not isinstance(getattr(module, "weight", None), torch.Tensor):
            raise TypeError(f"module must have a weight tensor; got {type(module).__name__}")
        w = module.weight
        return int((w == 0).sum()) / w.numel()

    def sparsity(self) -> float:
        """Fraction of all weights of the pruned layers that are zero."""
        return sparsity(self.model, self.layers)

    def remove_pruning_reparametrization(self) -> int:
        """Fold the masks into plain weights (zeros stay zeros); return how many layers were folded."""
        return make_permanent(self.model)


class ThresholdPruner:
    """Global magnitude pruning: one magnitude threshold across every prunable layer.

    Layers with many small weights lose more of them, layers with large weights fewer: the network,
    not a uniform rate, decides where sparsity goes. (Han et al. 2015 set their threshold per layer,
    :meth:`SimplePruner.apply_std_threshold`; one global ranking is, for example, what Frankle &
    Carbin 2019 used for their VGG-19 and ResNet-18 experiments.)
    """

    def __init__(self, model: nn.Module, *, include=None, exclude=None, skip_first: bool = False,
                 skip_last: bool = False):
        self.model = model
        self.layers = prunable_layers(model, include, exclude, skip_first=skip_first, skip_last=skip_last)
        self.masks: dict[str, torch.Tensor] = {}

    @staticmethod
    def compute_threshold(weights: torch.Tensor, percentile: float) -> float:
        """Magnitude below which ``percentile`` percent of ``weights`` lie (the k-th smallest |w|).

        ``percentile`` is a percent in [0, 100] (90 for 90%), as in the original API; a
        value strictly between 0 and 1 is refused, since it is almost always a fraction meant as a percent.
        Uses ``kthvalue`` (linear time, no size limit) instead of ``torch.quantile``.
        """
        percentile = check_percent(percentile, "percentile")
        flat = check_tensor(weights, "weights", floating=True, finite=True, nonempty=True).detach().abs().reshape(-1)
        k = round(percentile / 100 * flat.numel())
        return 0.0 if k == 0 else float(torch.kthvalue(flat.cpu(), k).values)

    @staticmethod
    def create_mask(weights: torch.Tensor, threshold: float) -> torch.Tensor:
        """Keep-mask (1.0 keeps) of the weights whose magnitude is strictly above ``threshold``."""
        check_tensor(weights, "weights", floating=True)
        if isinstance(threshold, torch.Tensor) and threshold.numel() == 1:
            threshold = threshold.item()
        threshold = check_real(threshold, "threshold")
        return (weights.detach().abs() > threshold).to(weights.dtype)

    def apply_global_pruning(self, target_sparsity: float) -> float:
        """Prune the smallest weights across all layers until exactly ``target_sparsity`` of them are zero.

        The count is exact (up to rounding to one weight) even when magnitudes tie. Returns the
        threshold: the largest magnitude that was pruned.
        """
        threshold = magnitude_prune(self.layers, target_sparsity, scope="global")
        self.masks = {name: get_mask(module) for name, module in self.layers}
        return threshold

    def apply_masks_during_training(self) -> None:
        """Re-apply the masks (idempotent). Kept for the original API: the masks already hold by themselves.

        Only a layer that lost its mask (made permanent, then trained) gets it back; the stored weights
        are not written.
        """
        for name, module in self.layers:
            if name in self.masks:
                if get_mask(module) is None:  # e.g. the model was made permanent and then trained
                    apply_mask(module, self.masks[name])

    def layer_sparsities(self) -> dict[str, float]:
        """``{layer: fraction zero}`` for the layers this pruner manages."""
        return layer_sparsities(self.model, self.layers)

    def sparsity(self) -> float:
        """Fraction of all managed weights that are zero."""
        return sparsity(self.model, self.layers)

    def remove_pruning_reparametrization(self) -> int:
        """Fold the masks into plain weights; return how many layers were folded."""
        return make_permanent(self.model)
