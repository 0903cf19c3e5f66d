"""Pruning and quantization ("Deep Compression", Han et al. 2016): int8 weights and shared weights.

Two ways to spend fewer bits on each weight that pruning kept; both leave a pruned weight exactly zero
and a layer's mask in place, so pruning and quantization compose in either order:

* :func:`int8_per_channel` / :func:`quantize_int8` - symmetric int8 per output channel in the convention
  of torchao's ``Int8WeightOnlyConfig`` (``scale = max|w| / 127.5`` per row, codes ``-128..127``, round
  half to even; the unit tests check the codes and scales against torchao's own). The model keeps float
  weights that lie exactly on the int8 grid (simulated quantization): it runs anywhere, and
  ``save_sparse(..., values="int8")`` stores the codes without further loss.
* :func:`share_weights` - weight sharing by k-means (Deep Compression, Section 3): the live weights of
  each layer are clustered into ``2**bits`` shared values with linear initialisation between their
  minimum and maximum (their Section 3.2 found it best), and each weight is replaced by its centroid.
  ``save_sparse(..., values="codebook")`` then stores a ``bits``-bit index per kept weight.

Only the weights of the prunable layers (Conv/Linear) are quantized; biases and normalisation
parameters stay in floating point, as in Deep Compression.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_int
from .masks import _weight_storage, prunable_layers

__all__ = ["int8_per_channel", "quantize_int8", "share_weights"]

INT8_MIN, INT8_MAX = -128, 127
_INT8_STEPS = (INT8_MAX - INT8_MIN) / 2  # 127.5: torchao's symmetric range for int8


def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes and one float32 scale per output channel (row) of ``weight``.

    ``weight ≈ codes * scale[:, None, ...]``: ``scale = max|row| / 127.5`` (at least float32's eps, so an
    all-zero row gets codes 0), ``codes = round(weight * (1 / scale))`` clamped to ``-128..127``; zeros stay
    zero. This is torchao's ``Int8WeightOnlyConfig`` convention. Returns ``(codes, scales)`` as new tensors.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating torch.Tensor; got {type(weight).__name__}"
                        + (f" of dtype {weight.dtype}" if isinstance(weight, torch.Tensor) else ""))
    if weight.dim() < 2 or weight.numel() == 0:
        raise ValueError(f"weight must be a non-empty tensor with at least 2 dimensions (output channels "
                         f"first); got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    if not torch.isfinite(w).all():
        raise ValueError("weight has NaN or infinite entries; int8 codes need finite weights")
    rows = w.reshape(w.shape[0], -1)
    scales = (rows.abs().amax(dim=1) / _INT8_STEPS).clamp(min=torch.finfo(torch.float32).eps)
    codes = torch.round(rows * (1.0 / scales[:, None])).clamp(INT8_MIN, INT8_MAX).to(torch.int8)  # as torchao computes it
    return codes.reshape(w.shape), scales


def _dequantize(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (codes.reshape(codes.shape[0], -1).float() * scales[:, None]).reshape(codes.shape)


def _int8_stored(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and scales that give back ``weight`` exactly when its rows already lie on an int8 grid.

    A row through :func:`int8_per_channel` once has its largest magnitude at code 127 or -128, so its
    scale was that magnitude / 127 or / 128 (up to one float32 step): the candidate that reproduces the
    row bit for bit is kept. Any other row gets :func:`int8_per_channel`'s fresh codes (it is rounded).
    """
    codes, scales = int8_per_channel(weight)
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    amax = rows.abs().amax(dim=1)
    found = torch.zeros(rows.shape[0], dtype=torch.bool)
    for steps in (127.0, 128.0):
        base = amax / steps
        for cand in (base, torch.nextafter(base, base * 2), torch.nextafter(base, torch.zeros_like(base))):
            cand_codes = torch.round(rows / cand[:, None]).clamp(INT8_MIN, INT8_MAX)
            exact = (cand_codes * cand[:, None] == rows).all(dim=1) & (amax > 0) & ~found
            scales = torch.where(exact, cand, scales)
            codes = torch.where(exact.reshape(-1, *[1] * (codes.dim() - 1)),
                                cand_codes.to(torch.int8).reshape(codes.shape), codes)
            found |= exact
    return codes, scales


@torch.no_grad()
def quantize_int8(model: nn.Module, include=None, exclude=None) -> dict[str, float]:
    """Round every prunable layer's weight to its int8 grid (:func:`int8_per_channel`), in place.

    The weights stay float tensors holding ``codes * scale`` (simulated quantization), masks stay as
    they are and pruned weights stay zero. Applying it twice changes nothing more. ``include`` /
    ``exclude`` select layers as :func:`~pruning_utils.prunable_layers` does. Returns
    ``{layer: largest |change| / max |w|}`` (at most 1/255 per layer).
    """
    layers = prunable_layers(model, include, exclude)
    planned = []
    for name, module in layers:
        weight = module.weight.detach()
        try:
            codes, scales = _int8_stored(weight)  # a row already on its int8 grid stays as it is
        except ValueError as exc:
            raise ValueError(f"layer {name!r}: {exc}") from None
        planned.append((name, _weight_storage(module, name), weight.clone(), _dequantize(codes, scales)))
    report = {}
    for name, stored, before, after in planned:  # all checked first, then written: all or nothing
        stored.copy_(after.to(stored.dtype))
        peak = before.abs().max().item()
        report[name] = (before.float() - after).abs().max().item() / peak if peak > 0 else 0.0
    return report


def _linear_init(values: torch.Tensor, k: int) -> torch.Tensor:
    low, high = values.min(), values.max()
    return torch.linspace(0.0, 1.0, k, dtype=values.dtype) * (high - low) + low


def _nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of each value's nearest centroid (ties to the lower index), for ascending ``centroids``.

    In one dimension only the two centroids around a value can be nearest, so a binary search replaces
    the distance to every centroid (``argmin`` over a values x k matrix): O(n log k) instead of O(n k).
    Lloyd's algorithm keeps 1-D centroids in order (each is the mean of a contiguous run of values).
    """
    right = torch.searchsorted(centroids, values).clamp(max=centroids.numel() - 1)
    left = (right - 1).clamp(min=0)
    take_left = (values - centroids[left]).abs() <= (centroids[right] - values).abs()
    return torch.where(take_left, left, right)


def _kmeans_1d(values: torch.Tensor, k: int, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on a 1-D float64 tensor from the linear initialisation; ``(centroids, labels)``.

    Ties in distance go to the lower centroid; a centroid that loses all its points keeps its place.
    Stops when no label changes (or after ``max_iter`` rounds).
    """
    centroids = _linear_init(values, k)
    labels = None
    for _ in range(max_iter):
        new = _nearest(values, centroids)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros(k, dtype=values.dtype).index_add_(0, labels, values)
        counts = torch.bincount(labels, minlength=k)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids, labels


@torch.no_grad()
def share_weights(model: nn.Module, bits: int, include=None, exclude=None, *, max_iter: int = 100) -> dict[str, int]:
    """Weight sharing by k-means (Deep Compression, Section 3), per prunable layer, in place.

    The layer's non-zero weights are clustered into at most ``2**bits`` values (1-D k-means, Lloyd's
    algorithm from centroids spread linearly between the smallest and largest weight, float64) and each
    is replaced by its centroid; zero (pruned) weights stay zero and masks stay as they are. A layer
    with no more distinct non-zero weights than ``2**bits`` is left unchanged. ``bits`` is 1..8.
    Returns ``{layer: number of distinct non-zero values now}``.
    """
    bits = check_int(bits, "bits", 1)
    if bits > 8:
        raise ValueError(f"bits must be an int from 1 to 8 (at most 256 shared values per layer); got {bits}")
    max_iter = check_int(max_iter, "max_iter", 1)
    k = 2 ** bits
    layers = prunable_layers(model, include, exclude)
    planned = []
    for name, module in layers:
        weight = module.weight.detach()
        if not torch.isfinite(weight).all():
            raise ValueError(f"layer {name!r} has NaN or infinite weights; k-means needs finite ones")
        flat = weight.reshape(-1).double().cpu()
        live = flat != 0
        if int(live.sum()) > k and torch.unique(flat[live]).numel() > k:
            centroids, labels = _kmeans_1d(flat[live], k, max_iter)
            shared = flat.clone()
            shared[live] = centroids[labels]
            planned.append((_weight_storage(module, name), shared.reshape(weight.shape).to(weight.device)))
    for stored, shared in planned:
        stored.copy_(shared.to(stored.dtype))
    return {name: int(torch.unique(module.weight.detach()[module.weight.detach() != 0]).numel())
            for name, module in layers}
