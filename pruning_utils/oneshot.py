"""One-shot pruning from calibration data: no retraining, a few batches of inputs.

Magnitude pruning looks at the weights alone. The one-shot methods that work on large transformers
also look at what flows *into* each Linear layer on a small calibration set:

* **Wanda** (Sun et al., ICLR 2024) scores weight ``W[i, j]`` by ``|W[i, j]| * ||X_j||_2``, where
  ``||X_j||_2`` is the norm of input feature ``j`` over all calibration rows (tokens x batch), and
  compares weights *within each output row*: every row keeps its top ``1 - sparsity`` by score.
* **SparseGPT** (Frantar & Alistarh, ICML 2023) reconstructs the layer's output: with the Hessian of
  the layer-wise squared error, ``H = 2 X^T X / n``, it sweeps the columns left to right, chooses the
  mask block by block (``w^2 / [H^-1]_jj^2``, the OBS saliency) and, after each pruned column,
  updates the weights not yet visited so that ``W' X`` stays close to ``W X`` (the surviving weights
  change).

Three steps, a few lines in a notebook::

    stats = collect_input_stats(model, calibration_batches)    # forward pre-hooks, removed afterwards
    wanda_prune(model, stats, sparsity=0.5)                     # or n=2, m=4 for 2:4
    sparsegpt_prune(other_model, stats, n=2, m=4)               # updates the kept weights too

Every mask goes through the course's one mask mechanism (:func:`pruning_utils.masks.apply_mask`,
:func:`~pruning_utils.masks.apply_nm_sparsity`): masks only add zeros, and every layer's mask (and,
for SparseGPT, its new weights) is computed before any layer is changed (all or nothing).

The statistics are taken once, from the model as it is (here: dense) and every selected layer is
pruned from them. The papers' reference code prunes transformer blocks one after another, feeding
the *pruned* earlier blocks' outputs to the later ones; to do that, call :func:`collect_input_stats`
and a pruner per block (``layers=``).
"""

from __future__ import annotations

import collections.abc
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .checks import check_choice, check_fraction, check_int, check_module, check_non_negative, check_tensor
from .config import get_device
from .training import _model_device
from .masks import (
    _weight_storage,
    apply_mask,
    apply_nm_sparsity,
    check_layers,
    get_mask,
    nm_mask,
    prunable_layers,
    smallest_k,
)

__all__ = [
    "LayerStats",
    "collect_input_stats",
    "sparsegpt_prune",
    "wanda_prune",
    "wanda_scores",
]

SCORES = ("wanda", "magnitude")
COMPARISONS = ("row", "layer")


@dataclass(frozen=True)
class LayerStats:
    """Calibration statistics of one Linear layer's inputs, rows ``x`` of length ``in_features``.

    ``n``: how many input rows were seen (tokens x batch: an input of shape ``(..., in_features)``
    counts ``prod(...)`` rows). ``col_norm``: ``||X_j||_2``, the norm of each input feature over all
    rows, shape ``(in_features,)`` (Wanda's statistic). ``hessian``: ``2 X^T X / n``, shape
    ``(in_features, in_features)`` (SparseGPT's Hessian of the layer-wise squared error).
    float64 when collected on the CPU, float32 on an accelerator (GPU/MPS), on that device.
    """

    n: int
    col_norm: torch.Tensor
    hessian: torch.Tensor

    def __post_init__(self):
        check_int(self.n, "n", 1)
        check_tensor(self.col_norm, "col_norm", floating=True, finite=True, nonempty=True)
        check_tensor(self.hessian, "hessian", floating=True, finite=True)
        if self.col_norm.dim() != 1:
            raise ValueError(f"col_norm must be 1-D (one norm per input feature); got shape {tuple(self.col_norm.shape)}")
        if bool((self.col_norm < 0).any()):
            raise ValueError("col_norm holds negative values; norms are >= 0")
        k = self.col_norm.numel()
        if tuple(self.hessian.shape) != (k, k):
            raise ValueError(f"hessian must have shape ({k}, {k}) for {k} input features; got {tuple(self.hessian.shape)}")

    def __repr__(self) -> str:
        return (f"LayerStats(n={self.n}, in_features={self.col_norm.numel()}, dtype={self.col_norm.dtype}, "
                f"device={self.col_norm.device})")


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


def _select_linears(model: nn.Module, layers, arg: str = "layers") -> list[tuple[str, nn.Module]]:
    """``(name, Linear)`` pairs of ``model``: every Linear of :func:`prunable_layers` when ``layers`` is
    None, else the names (or ``(name, module)`` pairs, e.g. from ``prunable_layers``) given."""
    if layers is None:
        return prunable_layers(model, types=(nn.Linear,))
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(layers, (bytes, nn.Module)) or not isinstance(layers, Iterable):
        raise TypeError(f"{arg} must be None, layer names or (name, module) pairs of model's nn.Linear layers; "
                        f"got {type(layers).__name__}")
    layers = list(layers)
    if layers and all(isinstance(item, tuple) for item in layers):
        pairs = check_layers(layers)
        own = dict(model.named_modules())
        for name, module in pairs:
            if own.get(name) is not module:
                raise ValueError(f"{arg} names {name!r}, which is not that module of model (pass pairs from "
                                 "prunable_layers(model), or layer names)")
        names = [name for name, _ in pairs]
    else:
        for item in layers:
            if not isinstance(item, str):
                raise TypeError(f"{arg} must hold layer names (str) or (name, module) pairs; got {item!r}"[:300])
        names = layers
    if not names:
        raise ValueError(f"{arg} is empty: pass None (every nn.Linear) or some layer names")
    linears = sorted(name for name, module in model.named_modules() if isinstance(module, nn.Linear))
    unknown = [name for name in names if name not in linears]
    if unknown:
        raise ValueError(f"{arg} names layers that are not nn.Linear layers of model: {unknown[:8]}; model's "
                         f"Linear layers are {linears[:12]}")
    return prunable_layers(model, include=names, types=(nn.Linear,))


def _batch_inputs(batch, i: int) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch[0]
    what = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
    raise TypeError(f"batches must yield input tensors or (inputs, targets) pairs; batch {i} is {what}")


class _Accumulator:
    """Running sums for one layer: rows, sum of squares per feature, X^T X."""

    def __init__(self, name: str, in_features: int):
        self.name, self.in_features = name, in_features
        self.n, self.sumsq, self.xtx = 0, None, None

    def __call__(self, module, args, kwargs):
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            what = f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"batches: layer {self.name!r} was called with a {what} input; calibration needs "
                            "floating-point inputs")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"batches: layer {self.name!r} got an input of shape {tuple(x.shape)}; expected (..., "
                             f"{self.in_features})")
        dtype = torch.float64 if x.device.type == "cpu" else torch.float32
        rows = x.detach().reshape(-1, self.in_features).to(dtype)
        if self.xtx is None:
            self.sumsq = torch.zeros(self.in_features, dtype=dtype, device=x.device)
            self.xtx = torch.zeros(self.in_features, self.in_features, dtype=dtype, device=x.device)
        self.n += rows.shape[0]
        self.sumsq += (rows * rows).sum(0)
        self.xtx.addmm_(rows.T, rows)

    def result(self) -> LayerStats:
        if not self.n:
            raise ValueError(f"layer {self.name!r} saw no input rows during calibration (it was never called, or "
                             "only with empty inputs): leave it out with layers=[...] or check the model's forward")
        if not (bool(torch.isfinite(self.sumsq).all()) and bool(torch.isfinite(self.xtx).all())):
            raise ValueError(f"batches: layer {self.name!r} got NaN or inf inputs during calibration")
        return LayerStats(n=self.n, col_norm=self.sumsq.sqrt(), hessian=self.xtx * (2.0 / self.n))


@torch.no_grad()
def collect_input_stats(model: nn.Module, batches, layers=None, *, device=None) -> dict[str, LayerStats]:
    """Run ``model`` (in eval mode, without gradients) over ``batches`` and record each Linear's inputs.

    ``batches``: an iterable of input tensors or of ``(inputs, targets)`` pairs (a DataLoader, a list;
    targets are ignored). ``layers``: None for every ``nn.Linear`` of :func:`prunable_layers`, or layer
    names / ``(name, module)`` pairs. ``device``: where the inputs go (default: the model's device; the
    model is not moved). Forward pre-hooks collect, per layer, the number of input rows ``n`` (an input
    of shape ``(..., in_features)`` is flattened to rows), the sum of squares of each input feature and
    ``X^T X``, in float64 on the CPU, float32 on an accelerator. The hooks are removed and the model's
    train/eval mode restored even on error.

    Returns ``{layer name: LayerStats}`` (``n``, ``col_norm`` = ``||X_j||_2``, ``hessian`` = ``2 X^T X / n``).
    Empty ``batches``, or a selected layer that saw no input, raise ``ValueError`` naming it.
    """
    check_module(model)
    if isinstance(batches, (str, bytes, torch.Tensor, dict)) or not isinstance(batches, Iterable):
        raise TypeError("batches must be an iterable of input tensors or (inputs, targets) pairs (a DataLoader, "
                        f"a list); got {type(batches).__name__} (wrap one tensor in a list: [x])")
    selected = _select_linears(model, layers)
    device = get_device(device) if device is not None else _model_device(model)
    accumulators = {name: _Accumulator(name, module.in_features) for name, module in selected}
    was_training = model.training
    handles = []
    count = 0
    try:
        for name, module in selected:
            handles.append(module.register_forward_pre_hook(accumulators[name], with_kwargs=True))
        model.eval()
        for i, batch in enumerate(batches):
            inputs = _batch_inputs(batch, i).to(device)
            if count:
                model(inputs)
            else:  # the first batch's failure says which argument and shape did not fit
                try:
                    model(inputs)
                except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                    if isinstance(exc, torch.cuda.OutOfMemoryError) or str(exc).startswith("batches: "):
                        raise
                    raise ValueError(f"a batch of batches with inputs of shape {tuple(inputs.shape)} does not fit "
                                     f"model {type(model).__name__}: {exc}") from exc
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not count:
        raise ValueError("batches is empty: it yields no batches to calibrate with")
    return {name: acc.result() for name, acc in accumulators.items()}


# ---------------------------------------------------------------------------------------------
# Shared checks of the pruners
# ---------------------------------------------------------------------------------------------


def _check_stats_for(stats, name: str, module: nn.Linear) -> LayerStats:
    if not isinstance(stats, collections.abc.Mapping):
        raise TypeError(f"stats must be the dict collect_input_stats returns; got {type(stats).__name__}")
    if name not in stats:
        raise ValueError(f"stats has no entry for layer {name!r} (it has {sorted(stats)[:8]}): collect it with "
                         "collect_input_stats(model, batches), or leave the layer out with layers=[...]")
    return _check_layer_stats(stats[name], module, f"stats[{name!r}]")


def _check_layer_stats(value, module: nn.Linear, what: str) -> LayerStats:
    if not isinstance(value, LayerStats):
        raise TypeError(f"{what} must be a LayerStats (from collect_input_stats); got {type(value).__name__}")
    k = module.in_features
    if tuple(value.col_norm.shape) != (k,) or tuple(value.hessian.shape) != (k, k):
        raise ValueError(f"{what} is for a layer with {value.col_norm.numel()} input features; this layer has {k} "
                         "(statistics of another model or layer?)")
    return value


def _check_linear(layer, name: str = "layer") -> nn.Linear:
    check_module(layer, name)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{name} must be an nn.Linear (one-shot pruning reads its inputs' statistics); "
                        f"got {type(layer).__name__}")
    return layer


def _amount(sparsity, n, m) -> tuple[float | None, int | None, int | None]:
    """``(sparsity, None, None)`` for unstructured pruning, or ``(None, n, m)`` for N:M."""
    if n is None and m is None:
        return check_fraction(0.5 if sparsity is None else sparsity, "sparsity"), None, None
    if sparsity is not None:
        raise TypeError("pass either sparsity (unstructured) or n and m (N:M), not both")
    if n is None or m is None:
        raise TypeError(f"N:M pruning needs both n and m (e.g. n=2, m=4); got n={n!r}, m={m!r}")
    n, m = check_int(n, "n", 1), check_int(m, "m", 1)
    if n > m:
        raise ValueError(f"n must be <= m (n kept of every m weights); got n={n}, m={m}")
    return None, n, m


def _check_nm_width(name: str, module: nn.Linear, m: int) -> None:
    if module.in_features % m:
        raise ValueError(f"layer {name!r} has {module.in_features} input features, not a multiple of m={m}: "
                         f"leave it dense with layers=[...] without {name!r}")


def _pruners_layers(model, stats, layers, need_stats: bool = True) -> list[tuple[str, nn.Module]]:
    """The layers a pruner touches: ``layers``, or every layer ``stats`` names (in model order)."""
    check_module(model)
    if layers is None and need_stats:
        if not isinstance(stats, collections.abc.Mapping):
            raise TypeError(f"stats must be the dict collect_input_stats returns; got {type(stats).__name__}")
        if not stats:
            raise ValueError("stats is empty: collect it with collect_input_stats(model, batches)")
        return _select_linears(model, list(stats), "stats")
    return _select_linears(model, layers)


def _sparsities(layers) -> dict[str, float]:
    return {name: float((module.weight == 0).sum()) / module.weight.numel() for name, module in layers}


# ---------------------------------------------------------------------------------------------
# Wanda
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def wanda_scores(layer: nn.Linear, stats: LayerStats) -> torch.Tensor:
    """Wanda's score of every weight: ``|W[i, j]| * ||X_j||_2``, shape of ``layer.weight``.

    ``W`` is the weight the forward pass uses (a masked weight is zero); ``||X_j||_2`` is
    ``stats.col_norm``, broadcast over the output rows. Larger scores are kept. In the weight's dtype,
    at least float32.
    """
    _check_linear(layer)
    _check_layer_stats(stats, layer, "stats")
    weight = layer.weight.detach()
    dtype = torch.promote_types(weight.dtype, torch.float32)  # fp16/bf16 weights: scores in float32 (no overflow)
    return weight.abs().to(dtype) * stats.col_norm.to(device=weight.device, dtype=dtype)


def _live_ranked(scores: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scores with already-masked entries at -1 (below every live weight); and the layer's live mask."""
    live = get_mask(module)
    if live is None:
        return scores, None
    live = live != 0
    return torch.where(live, scores, torch.full_like(scores, -1.0)), live


def _smallest_keep(scores: torch.Tensor, sparsity: float, live: torch.Tensor | None) -> torch.Tensor:
    """Keep-mask pruning exactly ``round(sparsity * numel)`` of ``scores`` (at least those already masked)."""
    already = 0 if live is None else int((~live).sum())
    return ~smallest_k(scores, max(round(sparsity * scores.numel()), already))


@torch.no_grad()
def wanda_prune(model: nn.Module, stats=None, sparsity=None, *, n=None, m=None, layers=None,
                score: str = "wanda", comparison: str = "row") -> dict[str, float]:
    """Prune ``model``'s Linear layers one-shot by Wanda's score ``|W| * ||X_j||_2`` (no retraining).

    Unstructured (``sparsity``, default 0.5): with ``comparison="row"`` (Wanda's choice) each output row
    loses exactly ``round(sparsity * in_features)`` weights, its lowest-scoring; ``"layer"`` ranks the
    whole layer at once. N:M (``n=2, m=4``): in every group of ``m`` consecutive inputs of a row, the
    ``n`` best scores are kept (:func:`~pruning_utils.masks.apply_nm_sparsity` with Wanda's score).
    ``score="magnitude"`` ranks by ``|W|`` alone (the baseline, the same comparison groups; ``stats``
    may then be None). ``layers``: None for every layer ``stats`` has (every Linear for magnitude), or
    layer names / ``(name, module)`` pairs. Ties are broken by position (the first weights are pruned
    first; in N:M the lowest index is kept first). Already-masked weights rank below every live one.
    Returns ``{layer: sparsity}`` after pruning.
    """
    check_choice(score, "score", SCORES)
    check_choice(comparison, "comparison", COMPARISONS)
    sparsity, n, m = _amount(sparsity, n, m)
    if n is not None and comparison != "row":
        raise ValueError("comparison applies to unstructured sparsity; N:M always compares within groups of m")
    use_stats = score == "wanda" or stats is not None
    selected = _pruners_layers(model, stats, layers, need_stats=use_stats)
    scores = {}
    for name, module in selected:
        if use_stats:
            layer_stats = _check_stats_for(stats, name, module)
        if n is not None:
            _check_nm_width(name, module, m)
        w = module.weight.detach()
        scores[name] = wanda_scores(module, layer_stats) if score == "wanda" else w.abs()
    if n is not None:
        return apply_nm_sparsity(selected, n, m, score=lambda name, module: scores[name])
    planned = []
    for name, module in selected:
        ranked, live = _live_ranked(scores[name], module)
        if comparison == "layer":
            keep = _smallest_keep(ranked, sparsity, live)
        else:
            keep = torch.stack([_smallest_keep(row, sparsity, None if live is None else live[i])
                                for i, row in enumerate(ranked)])
        planned.append((module, keep))
    for module, keep in planned:  # every mask computed first, then applied: all or nothing
        apply_mask(module, keep)
    return _sparsities(selected)


# ---------------------------------------------------------------------------------------------
# SparseGPT
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def _sparsegpt_weight(weight: torch.Tensor, hessian: torch.Tensor, live: torch.Tensor | None, sparsity, n, m,
                      blocksize: int, percdamp: float, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one weight (Algorithm 1; IST-DASLab/sparsegpt ``fasterprune``): new weight, keep-mask.

    ``live``: the existing mask as bool (its zeros stay pruned) or None.
    """
    dtype = torch.float64 if weight.device.type == "cpu" else torch.float32
    W = weight.detach().to(dtype=dtype, copy=True)
    H = hessian.to(device=weight.device, dtype=dtype, copy=True)
    rows, columns = W.shape
    dead = torch.diag(H) == 0  # inputs that were always zero: their weights are zeroed, as the reference does
    H[dead, dead] = 1
    W[:, dead] = 0
    diag = torch.arange(columns, device=W.device)
    H[diag, diag] += percdamp * torch.mean(torch.diag(H))
    try:  # the upper Cholesky factor of H^-1: row i holds the OBS update of the columns after i
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except torch.linalg.LinAlgError as exc:
        raise ValueError(f"layer {name!r}: the damped Hessian is not positive definite (percdamp={percdamp:g}); "
                         "use a larger percdamp or more calibration data") from exc
    prune = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        old1 = None if live is None else ~live[:, i1:i2]
        prune1 = torch.zeros_like(W1, dtype=torch.bool)
        if sparsity is not None:  # adaptive mask of the whole block (all rows), from its current weights
            ranked = W1 ** 2 / d1[None, :] ** 2
            if old1 is not None:
                ranked = torch.where(old1, torch.full_like(ranked, -1.0), ranked)
            already = 0 if old1 is None else int(old1.sum())
            prune1 = smallest_k(ranked, max(round(sparsity * ranked.numel()), already))
        for i in range(i2 - i1):
            if n is not None and i % m == 0:  # N:M: the group of m columns starting here, from current weights
                ranked = W1[:, i:i + m] ** 2 / d1[i:i + m][None, :] ** 2
                if old1 is not None:
                    ranked = torch.where(old1[:, i:i + m], torch.full_like(ranked, -1.0), ranked)
                prune1[:, i:i + m] = ~nm_mask(ranked, n, m)
            if old1 is not None:
                prune1[:, i] |= old1[:, i]
            w = W1[:, i]
            q = torch.where(prune1[:, i], torch.zeros_like(w), w)
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]  # OBS: compensate in the columns not yet visited
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        prune[:, i1:i2] = prune1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # the block's updates, carried to the later blocks at once
    return W.to(weight.dtype), ~prune


@torch.no_grad()
def sparsegpt_prune(model: nn.Module, stats, sparsity=None, *, n=None, m=None, layers=None, blocksize: int = 128,
                    percdamp: float = 0.01) -> dict[str, float]:
    """Prune ``model``'s Linear layers one-shot with SparseGPT and update their remaining weights.

    For each layer, from the Hessian ``H = 2 X^T X / n`` of ``stats``: damp it
    (``H + percdamp * mean(diag H) * I``), take the upper Cholesky factor of ``H^-1``, then sweep the
    columns in blocks of ``blocksize``. The mask is chosen from the current (already updated) weights by
    the OBS saliency ``w^2 / [H^-1]_jj^2``: unstructured (``sparsity``, default 0.5), exactly
    ``round(sparsity * size)`` of each block (all rows together, as in the paper); N:M (``n=2, m=4``),
    the ``n`` most salient of each group of ``m`` columns of a row. Each pruned column's error is spread
    over the columns not yet visited (the OBS update), so ``W' X`` stays close to ``W X``.

    The new weights are written into the layer's stored weight (a masked layer's
    ``parametrizations.weight.original``) and the mask is applied with
    :func:`~pruning_utils.masks.apply_mask`; every layer's result is computed before any is changed.
    Inputs that were always zero in calibration (``H_jj = 0``) get zero weights, as in the reference code
    (IST-DASLab/sparsegpt). Computed in float64 on the CPU, float32 on an accelerator. ``layers``: None for
    every layer ``stats`` has, or layer names / ``(name, module)`` pairs. Returns ``{layer: sparsity}``.
    """
    sparsity, n, m = _amount(sparsity, n, m)
    blocksize = check_int(blocksize, "blocksize", 1)
    percdamp = check_non_negative(percdamp, "percdamp")
    if n is not None and blocksize % m:
        raise ValueError(f"blocksize must be a multiple of m={m} so that N:M groups do not straddle blocks; "
                         f"got blocksize={blocksize}")
    selected = _pruners_layers(model, stats, layers)
    checked = []
    for name, module in selected:
        layer_stats = _check_stats_for(stats, name, module)
        if n is not None:
            _check_nm_width(name, module, m)
        if not bool(torch.isfinite(module.weight.detach()).all()):
            raise ValueError(f"layer {name!r} has NaN or inf weights")
        checked.append((name, module, layer_stats, _weight_storage(module, name)))
    planned = []
    for name, module, layer_stats, stored in checked:
        live = get_mask(module)
        new, keep = _sparsegpt_weight(module.weight.detach(), layer_stats.hessian, None if live is None else live != 0,
                                      sparsity, n, m, blocksize, percdamp, name)
        planned.append((module, stored, new, keep))
    for module, stored, new, keep in planned:  # every layer computed first, then changed: all or nothing
        stored.copy_(new)
        apply_mask(module, keep)
    return _sparsities(selected)
