"""Checkers for the notebooks' exercises: ``check_<name>(answer)`` says right or wrong, with a hint.

Each checker recomputes the answer independently (never from a stored number), prints a one-line
verdict and returns True or False, so a learner can call it from the exercise cell and a solutions
notebook can assert on it. The worked solutions are in ``notebooks/solutions/``.
"""

from __future__ import annotations

__all__: list[str] = []


def _report(ok: bool, right: str, hint: str) -> bool:
    """Print ``right`` or ``hint`` and return ``ok`` (the one way every checker answers)."""
    print(f"right: {right}" if ok else f"not yet: {hint}")
    return bool(ok)


# --- notebook 00 ---------------------------------------------------------------------------------------

__all__ += ["check_prunable_weights", "check_wilson_interval"]


def check_prunable_weights(answer, model) -> bool:
    """Exercise 00.2: how many prunable weights ``model`` has (the weights of its conv and linear layers).

    Recounted here from every Conv/Linear module's ``weight`` (biases and batch-norm parameters excluded).
    """
    from .checks import check_int, check_module
    from .masks import PRUNABLE_TYPES

    answer = check_int(answer, "answer", 0)
    model = check_module(model)
    right = sum(m.weight.numel() for m in model.modules() if isinstance(m, PRUNABLE_TYPES))
    total = sum(p.numel() for p in model.parameters())
    if answer == total and total != right:
        hint = (f"{answer:,} is every parameter; the prunable ones are the weight tensors of the conv and linear "
                f"layers only, without their biases or batch-norm scales and shifts")
    else:
        hint = "add up weight.numel() over the nn.Conv2d and nn.Linear layers (not their biases)"
    return _report(answer == right, f"{right:,} prunable weights ({right / total:.1%} of {total:,} parameters)", hint)


def check_wilson_interval(answer, correct: int, n: int, confidence: float = 0.95) -> bool:
    """Exercise 00.4: the Wilson score interval ``(low, high)``, as fractions, for ``correct`` right out of ``n``.

    Recomputed here from the formula, with the normal quantile from :mod:`statistics`:
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``. Right within 1e-4 (0.01 points) at each end.
    """
    import math
    from statistics import NormalDist

    from .checks import check_int, check_numbers, check_unit

    bounds = check_numbers(answer, "answer", lambda v, name: check_unit(v, name, " (fractions: 0.964 for 96.4%)"))
    if len(bounds) != 2:
        raise ValueError(f"answer must be the pair (low, high); got {len(bounds)} numbers")
    low, high = bounds
    if low > high:
        raise ValueError(f"answer must be (low, high) with low <= high; got ({low!r}, {high!r})")
    n = check_int(n, "n", 1)
    correct = check_int(correct, "correct", 0)
    if correct > n:
        raise ValueError(f"correct must be at most n = {n}; got {correct}")
    confidence = check_unit(confidence, "confidence")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), e.g. 0.95; got {confidence!r}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    right = (max(0.0, centre - half), min(1.0, centre + half))
    wald = (p - z * math.sqrt(p * (1 - p) / n), p + z * math.sqrt(p * (1 - p) / n))

    def close(a, b):
        return abs(a[0] - b[0]) <= 1e-4 and abs(a[1] - b[1]) <= 1e-4

    if close((low, high), wald) and not close((low, high), right):
        hint = ("that is the normal-approximation (Wald) interval p ± z·sqrt(p(1-p)/n); Wilson's is centred "
                "at (p + z²/2n) / (1 + z²/n), pulled towards 1/2, and stays inside [0, 1]")
    else:
        hint = f"use z = {z:.4f} (the {confidence:.0%} normal quantile) and p = {correct}/{n} in Wilson's formula"
    return _report(close((low, high), right), f"[{100 * right[0]:.2f}%, {100 * right[1]:.2f}%] for {correct} of {n}",
                   hint)


# --- notebook 01 ---------------------------------------------------------------------------------------

__all__ += ["check_compounded_sparsity", "check_most_sensitive_layer"]


def check_compounded_sparsity(answer, rate: float = 0.5, times: int = 3, model=None) -> bool:
    """Exercise 01.2: the sparsity (a fraction) after ``times`` calls of per-layer pruning at ``rate``.

    Each call prunes ``round(rate * alive)`` more weights of every layer (a fraction of the weights still
    alive). With ``model`` the count is redone layer by layer with that rounding; without it, the exact
    ``1 - (1 - rate) ** times``. Right within 0.05 points.
    """
    from .checks import check_fraction, check_int, check_module, check_unit
    from .masks import prunable_layers

    answer = check_unit(answer, "answer", " (a fraction of the weights: 0.9 for 90%)")
    rate = check_fraction(rate, "rate")
    times = check_int(times, "times", 1)
    if model is None:
        right = 1 - (1 - rate) ** times
    else:
        sizes = [m.weight.numel() for _, m in prunable_layers(check_module(model))]
        zeros = [0] * len(sizes)
        for _ in range(times):
            zeros = [z + round(rate * (n - z)) for z, n in zip(zeros, sizes)]
        right = sum(zeros) / sum(sizes)
    hint = (f"each call prunes {rate:.0%} of the weights still alive, not {rate:.0%} of all of them: "
            f"after one call {1 - rate:.0%} remain; what remains after {times}?")
    return _report(abs(answer - right) <= 5e-4, f"{right:.2%} of the weights are zero after {times} calls at {rate:.0%}",
                   hint)


def check_most_sensitive_layer(answer, model, loader, rate: float = 0.9) -> bool:
    """Exercise 01.1: the layer whose magnitude pruning at ``rate`` (that layer alone) costs most test accuracy.

    Recomputed here: each prunable layer of a copy of ``model`` in turn keeps its ``1 - rate`` largest
    ``|w|``; the layer with the lowest test accuracy on ``loader`` is the answer (any of several tied).
    """
    import copy

    import torch

    from .checks import check_fraction, check_module, check_name
    from .masks import apply_mask, prunable_layers
    from .training import evaluate

    answer = check_name(answer, "answer")
    model = check_module(model)
    rate = check_fraction(rate, "rate")
    names = [name for name, _ in prunable_layers(model)]
    if answer not in names:
        raise ValueError(f"answer must be the name of one prunable layer of model, one of {names}; got {answer!r}")
    accuracy = {}
    for name in names:
        pruned = copy.deepcopy(model)
        layer = dict(pruned.named_modules())[name]
        magnitude = layer.weight.detach().abs().reshape(-1)
        keep = torch.zeros_like(magnitude, dtype=torch.bool)
        keep[torch.topk(magnitude, magnitude.numel() - round(rate * magnitude.numel())).indices] = True
        apply_mask(layer, keep.view_as(layer.weight))
        accuracy[name] = evaluate(pruned, loader)["accuracy"]
    worst = min(accuracy.values())
    table = ", ".join(f"{n} {a:.1%}" for n, a in accuracy.items())
    return _report(accuracy[answer] == worst, f"{answer} alone at {rate:.0%} leaves the lowest accuracy ({table})",
                   f"prune one layer at a time at {rate:.0%} and compare the accuracies; {answer} alone leaves "
                   f"{accuracy[answer]:.1%}, another layer does more damage")

# --- notebook 02 ---------------------------------------------------------------------------------------

__all__ += ["check_global_zero_count", "check_partial_sparsity"]


def _prunable_sizes(model, layers=None) -> tuple[dict, list]:
    """``{name: weight count}`` of ``model``'s prunable layers, and ``layers`` checked against them."""
    from .checks import check_module, check_names
    from .masks import prunable_layers

    sizes = {name: m.weight.numel() for name, m in prunable_layers(check_module(model))}
    if layers is not None:
        layers = check_names(layers, "layers", allow_empty=False)
        unknown = [n for n in layers if n not in sizes]
        if unknown:
            raise ValueError(f"layers must name prunable layers of model, among {sorted(sizes)}; got {unknown}")
    return sizes, layers


def check_global_zero_count(answer, model, target_sparsity: float) -> bool:
    """Exercise 02.1: how many weights are zero after global pruning of ``model`` to ``target_sparsity``.

    The course selects exactly ``round(target * total)`` weights over all prunable layers (ties
    included), however many calls it took to get there; ``total`` is recounted from ``model``.
    """
    from .checks import check_fraction, check_int

    answer = check_int(answer, "answer", 0)
    target = check_fraction(target_sparsity, "target_sparsity")
    total = sum(_prunable_sizes(model)[0].values())
    right = round(target * total)
    return _report(answer == right, f"{right:,d} of {total:,d} prunable weights are zero at {target:.0%}",
                   f"the count is exact: round(target x all prunable weights of the model), not per layer and "
                   f"not the earlier target's count plus a fraction; {answer:,d} is not it")


def check_partial_sparsity(answer, model, layers, target_sparsity: float) -> bool:
    """Exercise 02.3: the whole network's sparsity (a fraction) when only ``layers`` are pruned to ``target_sparsity``.

    Recomputed from the layer sizes: ``round(target * size of the chosen layers)`` zeros over all
    prunable weights of ``model``. Right within 0.05 points.
    """
    from .checks import check_fraction, check_unit

    answer = check_unit(answer, "answer", " (a fraction of the weights: 0.9 for 90%)")
    sizes, layers = _prunable_sizes(model, layers)
    target = check_fraction(target_sparsity, "target_sparsity")
    chosen = sum(sizes[n] for n in set(layers))
    right = round(target * chosen) / sum(sizes.values())
    return _report(abs(answer - right) <= 5e-4,
                   f"{right:.2%} of the whole network: {chosen:,d} of {sum(sizes.values()):,d} weights can be pruned",
                   f"the other layers stay dense, so the sparsity is {target:.0%} of the chosen layers' share of all "
                   f"prunable weights, not {target:.0%}")

# --- notebook 03 ---------------------------------------------------------------------------------------

__all__ += ["check_removed_filters", "check_conv_params"]


def _filter_layer(layer, name: str = "layer"):
    """``layer`` as an ungrouped Conv1d/2d/3d or Linear (the layers whose filters the course prunes)."""
    from torch import nn

    from .checks import check_module

    layer = check_module(layer, name)
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        raise TypeError(f"{name} must be a Conv1d/2d/3d or Linear layer; got {type(layer).__name__}")
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(f"{name} must be an ungrouped layer (groups=1); got groups={layer.groups}")
    return layer


def check_removed_filters(answer, layer, prune_ratio: float) -> bool:
    """Exercise 03.1: the indices of the filters of ``layer`` that L1 ranking removes at ``prune_ratio``.

    Recomputed here from the weight alone: each output channel's sum of ``|w|`` (in float64), and
    ``round(prune_ratio * filters)`` of them go (at least one filter stays). Any set of that size whose
    largest score is no larger than the smallest kept score is right (ties may go either way).
    """
    from .checks import check_fraction, check_int, check_numbers

    layer = _filter_layer(layer)
    ratio = check_fraction(prune_ratio, "prune_ratio")
    weight = layer.weight.detach().double().cpu()
    filters = weight.shape[0]
    removed = check_numbers(answer, "answer", lambda v, n: check_int(v, n, 0), allow_empty=True)
    if any(i >= filters for i in removed):
        raise ValueError(f"answer must hold filter indices 0 to {filters - 1} of layer; got {sorted(removed)}")
    if len(set(removed)) != len(removed):
        raise ValueError(f"answer must not repeat an index; got {sorted(removed)}")
    scores = [float(weight[j].abs().sum()) for j in range(filters)]
    count = filters - max(1, filters - round(ratio * filters))
    kept = [j for j in range(filters) if j not in set(removed)]
    ok = len(removed) == count and (not removed or not kept
                                    or max(scores[j] for j in removed) <= min(scores[j] for j in kept))
    smallest = sorted(range(filters), key=lambda j: (scores[j], j))[:count]
    largest_first = sorted(range(filters), key=lambda j: (-scores[j], j))
    largest = largest_first[:count]
    if ok:
        hint = ""
    elif len(removed) == filters - count and set(removed) == set(largest_first[:filters - count]):
        hint = "those are the filters that stay; the answer is the ones that go"
    elif len(removed) != count:
        hint = (f"at prune_ratio {ratio:g}, round({ratio:g} x {filters}) = {count} of the {filters} filters go; "
                f"you gave {len(removed)}")
    elif count and set(removed) == set(largest):
        hint = "those are the largest filters; L1 ranking removes the filters with the smallest sum of |w|"
    else:
        hint = "sum |w| over each filter (weight[j] for output channel j), then take the smallest sums"
    return _report(ok, f"the {count} filters with the smallest L1 norms go: {sorted(smallest)}", hint)


def check_conv_params(answer, layer, filters_removed: int = 0, inputs_removed: int = 0) -> bool:
    """Exercise 03.2: how many parameters ``layer`` has after losing ``filters_removed`` of its output
    channels and ``inputs_removed`` of its input channels (the previous layer's pruned filters).

    Recomputed here from the layer's shape: ``out x in x kernel elements``, plus one bias per kept
    output channel if the layer has a bias. The layer itself is not changed.
    """
    import math

    from .checks import check_int

    layer = _filter_layer(layer)
    answer = check_int(answer, "answer", 0)
    out_channels, in_channels = layer.weight.shape[:2]
    k = check_int(filters_removed, "filters_removed", 0)
    j = check_int(inputs_removed, "inputs_removed", 0)
    if k >= out_channels:
        raise ValueError(f"filters_removed must leave at least one of the {out_channels} filters (0 to "
                         f"{out_channels - 1}); got {k}")
    if j >= in_channels:
        raise ValueError(f"inputs_removed must leave at least one of the {in_channels} input channels (0 to "
                         f"{in_channels - 1}); got {j}")
    kernel = math.prod(layer.weight.shape[2:])
    has_bias = layer.bias is not None
    out, inp = out_channels - k, in_channels - j
    right = out * inp * kernel + (out if has_bias else 0)
    outputs_only = out * in_channels * kernel + (out if has_bias else 0)
    if answer == right:
        hint = ""
    elif j and answer == outputs_only:
        hint = f"the layer also loses {j} input channels (the previous layer's removed filters): each kept filter is thinner"
    elif answer == out * inp * kernel + (0 if has_bias else out):
        hint = ("count the bias too: one per kept filter" if has_bias else "this layer has no bias (bias=False): "
                "count the weights only")
    elif answer == out_channels * in_channels * kernel + (out_channels if has_bias else 0):
        hint = "that is the count before pruning"
    else:
        hint = f"kept filters x kept input channels x {kernel} kernel elements" + (" + one bias per kept filter"
                                                                                   if has_bias else "")
    return _report(answer == right, f"{out} filters x {inp} inputs x {kernel} = {right:,d} parameters"
                   + (" (bias included)" if has_bias else ""), hint)


# --- notebook 04 ---------------------------------------------------------------------------------------

__all__ += ["check_round_rate", "check_alive_weights"]

def check_round_rate(answer, target_sparsity, num_iterations) -> bool:
    """Notebook 04, exercise 4: the fraction of the surviving weights each of ``num_iterations`` rounds
    removes so that they compound to ``target_sparsity``.

    The right rate is found here by bisection on "the share still alive after the rounds is
    ``1 - target_sparsity``" (not from the closed form the package uses); answers within 5e-4 count.
    """
    from .checks import check_fraction, check_int, check_real

    answer = check_real(answer, "answer")
    target = check_fraction(target_sparsity, "target_sparsity")
    rounds = check_int(num_iterations, "num_iterations", 1)
    low, high = 0.0, 1.0
    for _ in range(60):  # alive(r) = (1 - r) ** rounds falls as r grows
        mid = (low + high) / 2
        low, high = (mid, high) if (1 - mid) ** rounds > 1 - target else (low, mid)
    right = (low + high) / 2
    ok = abs(answer - right) <= 5e-4
    if ok:
        hint = ""
    elif abs(answer - 100 * right) <= 5e-2:
        hint = "give the rate as a fraction of the surviving weights (0.3 for 30%), not a percent"
    elif abs(answer - target / rounds) <= 5e-4:
        hint = (f"{answer:.4f} removes the same share of the ORIGINAL weights each round; each round prunes a "
                "share of the weights still alive, and the shares compound: (1 - r) ** rounds = 1 - target")
    elif abs(answer - target) <= 5e-4:
        hint = "that is the final sparsity; the per-round rate is the share of the survivors each round removes"
    else:
        hint = f"{answer!r} is not it: after {rounds} rounds, (1 - r) ** {rounds} of the weights must be left"
    return _report(ok, f"each round removes {right:.4f} of the survivors ({rounds} rounds -> {target:.2%})", hint)


def check_alive_weights(answer, model, layer) -> bool:
    """Notebook 04, exercise 5: how many weights of ``model``'s layer ``layer`` are non-zero (counted here
    from the weight itself, masked or made permanent)."""
    import torch

    from .checks import check_int, check_module, check_name

    answer = check_int(answer, "answer", 0)
    model = check_module(model, "model")
    layer = check_name(layer, "layer")
    layers = {name: module for name, module in model.named_modules()
              if isinstance(getattr(module, "weight", None), torch.Tensor)}
    if layer not in layers:
        raise ValueError(f"layer must name a layer of model with a weight, one of {sorted(layers)}; got {layer!r}")
    weight = layers[layer].weight.detach()
    right, total = int(torch.count_nonzero(weight)), weight.numel()
    ok = answer == right
    if ok:
        hint = ""
    elif answer == total - right:
        hint = "that is the number of pruned (zero) weights; count the non-zero ones"
    elif answer == total:
        hint = f"{layer} has {total} weights in all; count only those that are not zero"
    else:
        hint = f"{answer} is not it: count the non-zero entries of {layer}.weight (torch.count_nonzero)"
    return _report(ok, f"{layer} keeps {right} of its {total} weights", hint)


# --- notebook 05 ---------------------------------------------------------------------------------------

__all__ += ["check_soft_targets"]


def check_soft_targets(answer, logits, temperature: float) -> bool:
    """Exercise 05.5: the teacher's soft targets ``softmax(logits / T)`` for one image's logits.

    Recomputed here in float64 as ``exp(z_i / T - max) / sum_j exp(z_j / T - max)``; right within 1e-4
    per class.
    """
    import math

    import torch

    from .checks import check_numbers, check_positive, check_real, check_tensor

    def vector(value, name):
        if isinstance(value, torch.Tensor):
            return check_tensor(value, name, floating=True, finite=True)
        return torch.tensor(check_numbers(value, name, check_real), dtype=torch.float64)

    temperature = check_positive(temperature, "temperature")
    logits = vector(logits, "logits")
    if logits.dim() != 1 or logits.numel() < 2:
        raise ValueError(f"logits must be one image's logits, a 1-D tensor of 2 or more classes; got shape "
                         f"{tuple(logits.shape)}")
    answer = vector(answer, "answer")
    if answer.shape != logits.shape:
        raise ValueError(f"answer must hold one probability per class, shape {tuple(logits.shape)}; "
                         f"got {tuple(answer.shape)}")
    scaled = [float(z) / temperature for z in logits.double()]
    top = max(scaled)
    weights = [math.exp(z - top) for z in scaled]
    right = torch.tensor([w / sum(weights) for w in weights], dtype=torch.float64)
    answer = answer.double()
    ok = bool((answer - right).abs().max() <= 1e-4)
    plain = torch.tensor([math.exp(float(z) - float(logits.max())) for z in logits.double()], dtype=torch.float64)
    plain = plain / plain.sum()
    if not ok and temperature != 1.0 and bool((answer - plain).abs().max() <= 1e-4):
        hint = f"these are the probabilities at T = 1; divide the logits by T = {temperature:g} first"
    elif not ok and abs(float(answer.sum()) - 1.0) > 1e-3:
        hint = f"the probabilities must sum to 1 (yours sum to {float(answer.sum()):.4f}): normalise by the sum"
    else:
        hint = "softmax(logits / T): exp of each logit divided by T, over the sum of them all"
    return _report(ok, f"at T = {temperature:g} the top class gets {float(right.max()):.3f}", hint)

# --- notebook 06 ---------------------------------------------------------------------------------------

__all__ += ["check_rewind_lr"]


def check_rewind_lr(answer, rewind_epoch, profile=None) -> bool:
    """Notebook 06, exercise 3: the learning rate LR rewinding starts from when it rewinds to epoch
    ``rewind_epoch`` of the profile's dense run (its step schedule at that epoch, 0-based).

    Recomputed here by stepping torch's own ``MultiStepLR`` through the dense run, milestones at the
    profile's fractions of its epochs; answers within 0.1% count.
    """
    import torch

    from .checks import check_int, check_positive
    from .config import get_profile

    answer = check_positive(answer, "answer")
    prof = get_profile(profile)
    epoch = check_int(rewind_epoch, "rewind_epoch", 0)
    if epoch >= prof.epochs:
        raise ValueError(f"rewind_epoch must be an epoch of the dense run, 0 to {prof.epochs - 1}; got {epoch}")
    milestones = sorted({max(1, round(f * prof.epochs)) for f in prof.lr_milestones if round(f * prof.epochs) < prof.epochs})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=prof.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=prof.lr_gamma)
    for _ in range(epoch):
        optimizer.step()
        scheduler.step()
    right = optimizer.param_groups[0]["lr"]
    final = prof.lr * prof.lr_gamma ** len(milestones)
    ok = abs(answer - right) <= 1e-3 * right
    if ok:
        hint = ""
    elif abs(answer - prof.lr) <= 1e-3 * prof.lr:
        hint = f"{answer:g} is the LR of epoch 0; by epoch {epoch} the schedule has passed milestones {milestones}"
    elif abs(answer - final) <= 1e-3 * final:
        hint = f"{answer:g} is the final LR (fine-tuning's); rewinding replays the schedule from epoch {epoch}"
    else:
        hint = f"{answer:g} is not it: read the dense schedule (trainer.schedule) at epoch {epoch}"
    return _report(ok, f"LR rewinding to epoch {epoch} starts at {right:g} (milestones at epochs {milestones})", hint)


# --- notebook 07 ---------------------------------------------------------------------------------------

__all__ += ["check_linear_sparsity"]


def check_linear_sparsity(answer, step: int, final_sparsity: float = 0.98, begin_step: int = 0,
                          end_step: int = 90, initial_sparsity: float = 0.0) -> bool:
    """Exercise 07.3: the target sparsity (a fraction) of a *linear* schedule at ``step``.

    Recomputed here: ``s_i + (s_f - s_i) * (t - t_0) / (end - t_0)``, clamped to ``s_i`` before
    ``begin_step`` and ``s_f`` after ``end_step``. Right within 1e-6.
    """
    from .checks import check_step, check_unit
    from .gradual import _check_schedule, cubic_sparsity

    answer = check_unit(answer, "answer", " (a fraction of the weights: 0.49 for 49%)")
    step = check_step(step)
    initial, final, begin, end, _ = _check_schedule(initial_sparsity, final_sparsity, begin_step, end_step)
    progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
    right = initial + (final - initial) * progress
    if abs(answer - cubic_sparsity(step, initial, final, begin, end)) <= 1e-6 and abs(answer - right) > 1e-6:
        hint = "that is the cubic schedule's value; a linear one moves by the same amount every step"
    else:
        hint = (f"a linear ramp from {initial:.2%} at step {begin} to {final:.2%} at step {end}: what fraction "
                f"of the ramp has step {step} covered (clamped to [0, 1])?")
    return _report(abs(answer - right) <= 1e-6, f"{right:.4%} at step {step}", hint)


# --- notebook 08 ---------------------------------------------------------------------------------------

__all__ += ["check_conv_flops", "check_csr_bytes"]

_CSR_INDEX_DTYPES = ("int32", "int64")
_CSR_VALUE_DTYPES = ("float32", "float16", "bfloat16", "float64")


def check_csr_bytes(answer, nnz: int, rows: int, index_dtype: str = "int32", value_dtype: str = "float32") -> bool:
    """Exercise 08.6: the bytes of one matrix in CSR form with ``nnz`` stored values and ``rows`` rows.

    Recomputed here from the three arrays CSR keeps: ``nnz`` values and ``nnz`` column indices, and
    ``rows + 1`` row pointers, each at its dtype's element size (read from torch). Right exactly.
    """
    import torch

    from .checks import check_choice, check_int

    answer = check_int(answer, "answer", 0)
    nnz = check_int(nnz, "nnz", 0)
    rows = check_int(rows, "rows", 1)
    index = torch.empty(0, dtype=getattr(torch, check_choice(index_dtype, "index_dtype", _CSR_INDEX_DTYPES)))
    value = torch.empty(0, dtype=getattr(torch, check_choice(value_dtype, "value_dtype", _CSR_VALUE_DTYPES)))
    arrays = {"values": nnz * value.element_size(), "column indices": nnz * index.element_size(),
              "row pointers": (rows + 1) * index.element_size()}
    right = sum(arrays.values())
    if answer == right - arrays["row pointers"]:
        hint = f"add the row pointers: {rows} rows need {rows + 1} of them, {index.element_size()} bytes each"
    elif answer == arrays["values"]:
        hint = "every stored value also needs its column index, and the rows need their pointers"
    else:
        hint = (f"CSR keeps three arrays: the {nnz:,} values ({value_dtype}), one {index_dtype} column index per "
                f"value and {rows + 1:,} {index_dtype} row pointers; add their bytes")
    return _report(answer == right, f"{right:,} bytes (" + ", ".join(f"{k} {v:,}" for k, v in arrays.items()) + ")",
                   hint)


def check_conv_flops(answer, layer, input_size) -> bool:
    """Exercise 08.7: FLOPs of ``layer`` (a ``Conv2d``, maybe pruned) on ``input_size`` if its zero weights are skipped.

    Recomputed here without a FLOP counter: the layer is run on zeros of ``input_size`` to get its output
    shape ``(N, C_out, H, W)``; every output value of channel ``o`` needs one multiply-accumulate per
    non-zero weight of filter ``o``, and a multiply-accumulate counts as 2 FLOPs (bias not counted, as
    in torch's ``FlopCounterMode``): ``2 * N * H * W * (non-zero weights)``. Right exactly.
    """
    import torch
    from torch import nn

    from .checks import check_int, check_module
    from .flops import check_input_size, example_input

    answer = check_int(answer, "answer", 0)
    layer = check_module(layer, "layer")
    if not isinstance(layer, nn.Conv2d):
        raise TypeError(f"layer must be a torch.nn.Conv2d; got {type(layer).__name__}")
    input_size = check_input_size(input_size)
    try:
        with torch.no_grad():
            out = layer(example_input(layer, input_size))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"input_size={input_size} does not fit {layer}: {exc}") from exc
    batch, _, height, width = out.shape
    weight = layer.weight.detach()
    nonzero, positions = int(torch.count_nonzero(weight)), batch * height * width
    right = 2 * positions * nonzero
    if answer == 2 * positions * weight.numel() and nonzero < weight.numel():
        hint = "that is the dense count: skip the multiplications by zero weights (count only the non-zero ones)"
    elif answer == positions * nonzero:
        hint = "that counts multiply-accumulates; FLOPs count each as 2 (a multiply and an add)"
    else:
        hint = (f"every output position ({batch} x {height} x {width} of them per output channel) multiplies "
                f"by each non-zero weight of that channel's filter: 2 FLOPs per non-zero weight per position")
    return _report(answer == right, f"{right:,} FLOPs ({nonzero:,} non-zero weights x {positions:,} output "
                                    f"positions x 2)", hint)



# --- notebook 09 ---------------------------------------------------------------------------------------

__all__ += ["check_compression_ratio", "check_emptiest_layer"]


def _layer_zero_shares(model) -> dict:
    """``{conv/linear layer: (zeros, weights)}``, counted from each layer's weight as the forward pass sees it
    (masked with ``torch.nn.utils.parametrize`` or ``torch.nn.utils.prune``, the weight is the masked one)."""
    from .checks import check_module
    from .masks import PRUNABLE_TYPES

    shares = {}
    for name, layer in check_module(model).named_modules():
        if isinstance(layer, PRUNABLE_TYPES):
            weight = layer.weight.detach()
            shares[name] = (int((weight == 0).sum()), weight.numel())
    return shares


def check_emptiest_layer(answer, model) -> bool:
    """Exercise 09.1: the prunable layer of ``model`` with the largest *fraction* of zero weights.

    Recomputed here by counting the zeros of every Conv/Linear weight; any of several layers tied for the
    largest fraction is right.
    """
    from .checks import check_name

    answer = check_name(answer, "answer")
    shares = _layer_zero_shares(model)
    if answer not in shares:
        raise ValueError(f"answer must be the name of one prunable layer of model, one of {sorted(shares)}; "
                         f"got {answer!r}")
    fraction = {name: zeros / n for name, (zeros, n) in shares.items()}
    best = max(fraction.values())
    right = sorted(name for name, f in fraction.items() if f == best)
    most_zeros = max(shares, key=lambda name: shares[name][0])
    if fraction[answer] != best and answer == most_zeros:
        hint = (f"{answer} has the most zeros ({shares[answer][0]:,}) but it is also the largest layer: compare "
                f"the fraction of each layer's weights that is zero")
    else:
        hint = f"{answer} is {fraction[answer]:.2%} zero; another layer is emptier (layer_sparsities(model))"
    return _report(fraction[answer] == best, f"{' / '.join(right)}: {100 * best:.2f}% of its weights are zero", hint)


def _all_parameters(model):
    """Every parameter of ``model`` once, as the forward pass sees it: the masked weight of a layer masked with
    ``torch.nn.utils.parametrize`` or ``torch.nn.utils.prune``, not the stored original."""
    import torch
    from torch.nn.utils import parametrize

    seen, out = set(), []
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # its `original` is counted through the parametrized module's attribute
        names = list(module.parametrizations) if parametrize.is_parametrized(module) else []
        for name in names:
            out.append(getattr(module, name).detach())
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if name.endswith("_orig") and isinstance(getattr(module, name[:-5] + "_mask", None), torch.Tensor):
                out.append(getattr(module, name[:-5]).detach())  # torch.nn.utils.prune: weight = orig * mask
            else:
                out.append(p.detach())
    return out


def check_compression_ratio(answer, model) -> bool:
    """Exercise 09.4: every parameter of ``model`` per non-zero one (batch-norm and biases count too).

    Recomputed here from the tensors the forward pass uses (masked weights where a layer is masked). Right
    within 0.5% (``34.7`` for ``25,978 / 749``).
    """
    from .checks import check_module, check_positive

    answer = check_positive(answer, "answer")
    tensors = _all_parameters(check_module(model))
    total = sum(t.numel() for t in tensors)
    nonzero = sum(int((t != 0).sum()) for t in tensors)
    if nonzero == 0:
        raise ValueError("model has no non-zero parameter: its compression ratio is infinite")
    right = total / nonzero
    shares = _layer_zero_shares(model)
    weights = sum(n for _, n in shares.values())
    weights_left = weights - sum(z for z, _ in shares.values())

    def near(value):
        return abs(answer - value) <= 5e-3 * value

    if weights_left and near(weights / weights_left) and not near(right):
        hint = ("that counts the prunable weights only; the ratio counts every parameter, and the batch-norm "
                "and bias parameters are never pruned")
    elif near(nonzero / total) or near(1 / right):
        hint = "that is the share left non-zero; the ratio is the other way up (total / non-zero)"
    else:
        hint = "count every parameter of the model and the non-zero ones among them (as the forward pass sees them)"
    return _report(near(right), f"{total:,} / {nonzero:,} = {right:.2f}x", hint)


# --- notebook 10 ---------------------------------------------------------------------------------------

__all__ += ["check_semi_structured_bytes", "check_follows_nm", "check_nm_kept"]

_TWO_FOUR_DTYPES = ("float16", "bfloat16", "int8")  # the dtypes whose semi-structured groups are 2:4


def check_semi_structured_bytes(answer, n_rows: int, n_cols: int, dtype=None) -> bool:
    """Exercise 10.1: bytes of a ``n_rows x n_cols`` weight in the compressed 2:4 form (values + metadata).

    Recomputed here from the definition: two of every four values are kept, at the dtype's size
    (fp16 by default; bf16 and int8 too), and each kept value carries a 2-bit position in its group of
    four. ``n_cols`` (the input dimension) must be a multiple of 4. No block shape is asked for here:
    torch's kernels also need whole blocks, 32 x 64 for fp16 with the CUTLASS backend (the layout
    ``semi_structured_bytes`` counts, which notebook 10 pads to) and 16 x 16 with cuSPARSELt (torch's
    default). fp32 is refused: its semi-structured groups are 1:2.
    """
    import torch

    from .checks import check_int

    answer = check_int(answer, "answer", 0)
    n_rows, n_cols = check_int(n_rows, "n_rows", 1), check_int(n_cols, "n_cols", 1)
    if n_cols % 4:
        raise ValueError(f"n_cols must be a multiple of 4 (whole groups of four along the input dimension); got {n_cols}")
    dtype = torch.float16 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or str(dtype).removeprefix("torch.") not in _TWO_FOUR_DTYPES:
        raise ValueError(f"dtype must be one of torch.{', torch.'.join(_TWO_FOUR_DTYPES)} (the 2:4 dtypes; fp32 "
                         f"is stored 1:2); got {dtype!r}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    kept = n_rows * n_cols // 2
    values, metadata_bits = kept * itemsize, kept * 2
    right = values + metadata_bits // 8
    dense = n_rows * n_cols * itemsize
    if answer == dense:
        hint = "that is the dense size; the compressed form keeps only two of every four values"
    elif answer == values:
        hint = "that counts the kept values only: add the metadata, 2 bits per kept value (its position 0-3)"
    elif answer == values + kept:
        hint = "the metadata is 2 bits per kept value (four positions need 2 bits), not a byte"
    elif answer == 8 * right:
        hint = "that is in bits; the answer is in bytes"
    else:
        hint = (f"kept values: half of {n_rows} x {n_cols}, {itemsize} byte(s) each; plus 2 bits of metadata "
                "per kept value")
    return _report(answer == right, f"{values:,} bytes of values + {metadata_bits // 8:,} bytes of metadata = "
                                    f"{right:,} bytes ({right / dense:.4f} of the dense {dense:,})", hint)


def check_follows_nm(answer, tensor, n: int = 2, m: int = 4) -> bool:
    """Exercise 10.2: whether ``tensor`` follows the N:M pattern (at most ``n`` non-zeros in each group of ``m``).

    Groups run along the input dimension: everything after dim 0, flattened (a conv weight's
    ``in_channels * kh * kw``). Re-counted here group by group in plain Python; a NaN counts as non-zero.
    """
    from .checks import check_flag, check_int, check_tensor

    answer = check_flag(answer, "answer")
    n, m = check_int(n, "n", 1), check_int(m, "m", 1)
    if n > m:
        raise ValueError(f"n must be <= m (n kept of every m weights); got n={n}, m={m}")
    check_tensor(tensor, "tensor")
    if tensor.dim() < 2 or tensor.numel() == 0:
        raise ValueError(f"tensor must have an output and an input dimension and hold values; got shape {tuple(tensor.shape)}")
    rows = tensor.detach().reshape(tensor.shape[0], -1).tolist()
    if len(rows[0]) % m:
        raise ValueError(f"tensor's input dimension {len(rows[0])} (everything after dim 0) is not a multiple of m={m}")
    worst = None  # (row, first column, non-zeros) of the first group with more than n non-zeros
    for r, row in enumerate(rows):
        for c in range(0, len(row), m):
            count = sum(1 for v in row[c:c + m] if v != 0)  # NaN != 0 is True: a NaN counts as non-zero
            if count > n and worst is None:
                worst = (r, c, count)
    right = worst is None
    if answer and not right:
        r, c, count = worst
        hint = (f"row {r}, weights {c}..{c + m - 1} along the input dimension hold {count} non-zeros, more "
                f"than {n}")
    else:
        hint = (f"every group of {m} consecutive weights along the input dimension holds at most {n} non-zeros "
                f"(fewer than {n} is allowed: the pattern limits the non-zeros, it does not require them)")
    verdict = (f"it follows {n}:{m}" if right else
               f"it does not follow {n}:{m} (row {worst[0]}, weights {worst[1]}..{worst[1] + m - 1}: {worst[2]} non-zeros)")
    return _report(answer == right, verdict, hint)


def check_nm_kept(answer, model_or_layer, n: int = 2, m: int = 4, exclude=None) -> bool:
    """Exercise 10.3: how many weights an N:M mask keeps in a layer, or in a model's prunable layers.

    ``model_or_layer``: one Conv/Linear layer, or a model (its prunable layers, less ``exclude``).
    Recounted here per layer: every row keeps ``n`` of each of its ``cols / m`` groups. Each layer's
    input dimension must be a multiple of ``m`` (exclude the first conv where it is not).
    """
    from .checks import check_int, check_module
    from .masks import prunable_layers

    answer = check_int(answer, "answer", 0)
    n, m = check_int(n, "n", 1), check_int(m, "m", 1)
    if n > m:
        raise ValueError(f"n must be <= m (n kept of every m weights); got n={n}, m={m}")
    layers = prunable_layers(check_module(model_or_layer, "model_or_layer"), exclude=exclude, allow_shared=True)
    right = total = 0
    for name, layer in layers:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        if cols % m:
            raise ValueError(f"layer {name or type(layer).__name__!r} has an input dimension of {cols}, not a "
                             f"multiple of m={m}" + (f": leave it out with exclude=[{name!r}]" if name else ""))
        right += rows * (cols // m) * n
        total += rows * cols
    if answer == total - right:
        hint = f"that is the number of weights the mask removes; it keeps the other {n} of every {m}"
    elif answer == total:
        hint = "that is every weight of the layers; the mask keeps n of every m"
    else:
        hint = f"each row keeps {n} of every {m} consecutive weights along its input dimension: rows x (cols / {m}) x {n}"
    return _report(answer == right, f"{right:,} of {total:,} weights kept ({right / total:.2%})", hint)


# --- notebook 11 ---------------------------------------------------------------------------------------

__all__ += ["check_int8_codes", "check_codebook_bytes"]


def check_int8_codes(answer, weight) -> bool:
    """Exercise 11.1: the int8 codes of ``weight`` (one row, or one row per output channel).

    Recomputed here from the rule in plain Python: per row ``scale = max|w| / 127.5``, code =
    ``w / scale`` rounded and clamped to -128..127 (torchao's ``Int8WeightOnlyConfig`` convention; the
    package's :func:`~pruning_utils.int8_per_channel` is tested against torchao). Where ``w / scale``
    is exactly halfway between two codes (always so for the row's largest magnitude, at +-127.5) both
    are accepted: float32 rounding decides which one a library gets. ``answer``: a list, or a nested
    list / tensor of the weight's shape.
    """
    import math

    import torch

    from .checks import check_tensor

    weight = check_tensor(weight if isinstance(weight, torch.Tensor) else torch.as_tensor(weight, dtype=torch.float32)
                          if isinstance(weight, (list, tuple)) else weight, "weight", floating=True, finite=True,
                          nonempty=True)
    rows = weight.detach().double().reshape(1, -1) if weight.dim() == 1 else weight.detach().double().reshape(weight.shape[0], -1)
    try:
        given = torch.as_tensor(answer.tolist() if isinstance(answer, torch.Tensor) else answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"answer must be a list (or tensor) of integer codes; got {type(answer).__name__}") from exc
    if given.numel() != rows.numel():
        raise ValueError(f"answer must hold {rows.numel()} codes, one per weight; got {given.numel()}")
    given = given.reshape(rows.shape)

    def allowed(steps: float) -> list[list[set]]:
        """Per weight, the codes the rule allows: w / scale rounded, both neighbours where it is a tie
        (the largest weight always is, at +-127.5: float32 arithmetic then decides, as in torchao)."""
        out = []
        for row in rows.tolist():
            peak = max(abs(v) for v in row)
            cells = []
            for v in row:
                exact = v / peak * steps if peak else 0.0
                near = {math.floor(exact), math.ceil(exact)} if abs(abs(exact - math.floor(exact)) - 0.5) < 1e-9 \
                    else {round(exact)}
                cells.append({min(127, max(-128, c)) for c in near})
            out.append(cells)
        return out

    def fits(rule) -> bool:
        return all(g in cell for grow, rrow in zip(given.tolist(), rule) for g, cell in zip(grow, rrow))

    right = allowed(127.5)
    ok = fits(right)
    if not ok and fits(allowed(127.0)):
        hint = "that uses scale = max|w| / 127; this course (and torchao) divides by 127.5 and allows -128"
    elif bool((given != given.round()).any()):
        hint = "codes are integers: round w / scale to the nearest integer"
    elif bool((given.abs() > 128).any()):
        hint = "codes lie in -128..127: divide each weight by scale = max|w| / 127.5"
    else:
        hint = "per row: scale = max|w| / 127.5, then code = round(w / scale), clamped to -128..127"
    right = [["/".join(map(str, sorted(cell))) for cell in row] for row in right]
    shown = right[0] if len(right) == 1 else right
    return _report(ok, f"codes {shown}", hint)


def check_codebook_bytes(answer, layer) -> bool:
    """Exercise 11.2: bytes of ``layer``'s weight in the codebook form, before entropy coding.

    Recounted from the definition of ``save_sparse(..., values="codebook")``: a bitmask of one bit per
    weight (rounded up to whole bytes), ``ceil(log2 k)`` bits per non-zero weight for its index into the
    ``k`` distinct non-zero values (at least 1 bit; rounded up to whole bytes), and the ``k`` values at
    the weight's element size. The layer's weights must already be shared (``k <= 256``).
    """
    import math

    from .checks import check_int
    from .masks import _check_prunable

    answer = check_int(answer, "answer", 0)
    weight = _check_prunable(layer, "layer").detach()
    flat = [v for v in weight.reshape(-1).tolist()]
    kept = [v for v in flat if v != 0]
    k = len(set(kept))
    if k > 256:
        raise ValueError(f"layer has {k:,} distinct non-zero weights; share them first (share_weights(model, bits)): "
                         "the codebook form holds at most 256")
    bits = max(1, math.ceil(math.log2(k))) if k > 1 else 1
    bitmask, indices, codebook = (len(flat) + 7) // 8, (len(kept) * bits + 7) // 8, k * weight.element_size()
    right = bitmask + indices + codebook
    if answer == len(flat) * weight.element_size():
        hint = "that is the dense float size; the codebook form stores positions, short indices and k values"
    elif answer == indices + codebook:
        hint = "add the bitmask: one bit per weight, kept or not, says where the non-zero weights are"
    elif answer == bitmask + len(kept) + codebook:
        hint = f"an index takes ceil(log2 k) = {bits} bits, not a whole byte"
    elif answer == bitmask + indices:
        hint = f"add the codebook itself: its {k} values at {weight.element_size()} bytes each"
    else:
        hint = (f"bitmask ceil(numel / 8) + indices ceil(kept x ceil(log2 k) / 8) + codebook k x "
                f"{weight.element_size()} bytes")
    return _report(answer == right, f"bitmask {bitmask:,} + indices {indices:,} ({len(kept):,} x {bits} bits) + "
                                    f"codebook {codebook:,} ({k} values) = {right:,} bytes", hint)


# --- notebook 12 ---------------------------------------------------------------------------------------

__all__ += ["check_ece", "check_most_forgotten_class", "check_pies"]


def _float_rows(values, name: str) -> list[list[float]]:
    """``values`` (a tensor or nested sequence) as a non-empty (n, classes) list of finite floats."""
    import torch

    from .checks import check_tensor

    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor or a nested list of numbers of shape (n, classes); got "
                            f"{type(values).__name__}") from exc
    values = check_tensor(values, name, floating=True, finite=True, nonempty=True)
    if values.dim() != 2:
        raise ValueError(f"{name} must have shape (n, classes); got {tuple(values.shape)}")
    return values.detach().cpu().double().tolist()


def _int_vector(values, name: str) -> list[int]:
    """``values`` (a tensor or sequence of integers) as a list of ints."""
    import torch

    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a 1-D tensor or list of integers; got {type(values).__name__}") from exc
    if values.dim() != 1 or values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D tensor or list of integers; got shape {tuple(values.shape)}, "
                         f"dtype {values.dtype}")
    return [int(v) for v in values.tolist()]


def check_ece(answer, probabilities, targets, n_bins: int = 15) -> bool:
    """Exercise 12.1: the expected calibration error of ``probabilities`` (one row per prediction) for ``targets``.

    Recounted here in plain Python (Guo et al. 2017, eq. 3): a prediction's confidence is its row's largest
    probability (the first of equal ones is the predicted class), bin ``m`` of ``n_bins`` equal-width bins
    holds the confidences in ``((m - 1) / n_bins, m / n_bins]`` (0 goes to the first), and
    ``ECE = sum over bins of |B| / n * |accuracy(B) - mean confidence(B)|``. ``answer`` is a fraction in
    [0, 1]; it is right within 0.0005.
    """
    from .checks import check_int, check_non_negative

    answer = check_non_negative(answer, "answer")
    rows = _float_rows(probabilities, "probabilities")
    labels = _int_vector(targets, "targets")
    n_bins = check_int(n_bins, "n_bins", 1)
    if len(labels) != len(rows):
        raise ValueError(f"targets must give one label per row of probabilities; got {len(labels)} for {len(rows)} rows")
    classes = len(rows[0])
    for i, row in enumerate(rows):
        if min(row) < 0 or abs(sum(row) - 1) > 1e-6:
            raise ValueError(f"probabilities must hold rows of numbers >= 0 summing to 1; row {i} is {row}")
    if any(not 0 <= t < classes for t in labels):
        raise ValueError(f"targets must be class indices in [0, {classes}); got {labels}")
    bins = [[] for _ in range(n_bins)]
    for row, target in zip(rows, labels):
        confidence = max(row)
        m = next(m for m in range(1, n_bins + 1) if confidence <= m / n_bins)
        bins[m - 1].append((confidence, row.index(confidence) == target))
    n = len(rows)
    gaps = [(abs(sum(r for _, r in b) / len(b) - sum(c for c, _ in b) / len(b)), len(b)) for b in bins if b]
    right = sum(gap * size / n for gap, size in gaps)
    unweighted = sum(gap for gap, _ in gaps) / len(gaps)
    error = 1 - sum(row.index(max(row)) == t for row, t in zip(rows, labels)) / n
    near = lambda a, b: abs(a - b) <= 5e-4
    ok = near(answer, right)
    if near(answer / 100, right):
        hint = "that looks like percent: give the ECE as a fraction in [0, 1]"
    elif near(answer, unweighted):
        hint = "that is the plain mean of the bins' gaps; weight each bin by its share |B| / n of the predictions"
    elif near(answer, error):
        hint = "that is the error rate; the ECE compares each bin's accuracy with its mean confidence"
    else:
        hint = (f"sort the predictions into {n_bins} bins by confidence (largest probability), then add "
                f"|B| / n x |accuracy - mean confidence| over the bins")
    return _report(ok, f"ECE = {right:.4f} over {len(gaps)} non-empty bins of {n_bins}", hint)


def check_most_forgotten_class(answer, dense_model, pruned_model, loader) -> bool:
    """Exercise 12.2: the class whose test accuracy ``pruned_model`` lost most against ``dense_model``.

    Recomputed from both models' per-image right/wrong on ``loader`` (unshuffled) and its labels: per class,
    the dense model's accuracy minus the pruned one's on that class's images. Any of several tied classes
    is right.
    """
    import torch

    from .checks import check_int, check_module
    from .training import evaluate

    answer = check_int(answer, "answer", 0)
    check_module(dense_model, "dense_model")
    check_module(pruned_model, "pruned_model")
    right_dense = evaluate(dense_model, loader, per_image=True)["correct"]
    right_pruned = evaluate(pruned_model, loader, per_image=True)["correct"]
    labels = torch.cat([batch[1].reshape(-1).cpu() for batch in loader])
    if labels.numel() != right_dense.numel():
        raise ValueError("loader must yield the same images on every pass (a test loader, shuffle=False)")
    loss, pruned_acc = {}, {}
    for c in sorted(set(labels.tolist())):
        where = labels == c
        n = int(where.sum())
        loss[c] = (int(right_dense[where].sum()) - int(right_pruned[where].sum())) / n
        pruned_acc[c] = int(right_pruned[where].sum()) / n
    most = max(loss.values())
    best = [c for c, v in loss.items() if v == most]
    weakest = min(pruned_acc, key=pruned_acc.get)
    if answer not in loss:
        hint = f"the loader holds the classes {sorted(loss)}"
    elif answer == weakest:
        hint = (f"class {answer} is where the pruned model is weakest ({pruned_acc[answer]:.1%}), but the question is "
                f"what it lost against the dense model on that class: {loss[answer]:+.1%}")
    else:
        hint = (f"class {answer} lost {loss[answer]:+.1%}; per class, take the dense model's accuracy minus the "
                f"pruned model's on that class's images, and find the largest")
    tie = f" (tied: {best})" if len(best) > 1 else ""
    return _report(answer in best, f"class {best[0]} lost most: {most:+.1%} of its images{tie}", hint)


def check_pies(answer, dense_predictions, pruned_predictions) -> bool:
    """Exercise 12.3: the PIEs, the images where the two populations' modal labels differ (Hooker et al. 2019).

    ``dense_predictions`` and ``pruned_predictions``: predicted labels, one row per model and one column
    per image (the same images in the same order). ``answer``: the PIEs' column indices (any order) or a
    bool mask over the images. Votes are recounted per image; a tie goes to the smallest tied label (the
    notebook's rule: ``argmax`` over vote counts returns the first maximum; ``torch.mode`` documents no tie
    rule), and an image where either population's vote is tied is accepted either way, since another rule
    could move it in or out.
    """
    import torch

    def predictions(values, name):
        if not isinstance(values, torch.Tensor):
            try:
                values = torch.as_tensor(values)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"{name} must be a 2-D tensor of labels (models, images); got "
                                f"{type(values).__name__}") from exc
        if values.dim() != 2 or values.numel() == 0 or values.is_floating_point() or values.dtype == torch.bool:
            raise ValueError(f"{name} must be a non-empty 2-D integer tensor of labels (models, images); got shape "
                             f"{tuple(values.shape)}, dtype {values.dtype}")
        if bool((values < 0).any()):
            raise ValueError(f"{name} must hold class labels >= 0")
        return values.cpu().tolist()

    dense = predictions(dense_predictions, "dense_predictions")
    pruned = predictions(pruned_predictions, "pruned_predictions")
    n = len(dense[0])
    if len(pruned[0]) != n:
        raise ValueError(f"dense_predictions and pruned_predictions must cover the same images; got {n} and "
                         f"{len(pruned[0])} columns")

    def vote(rows, i):
        counts = {}
        for row in rows:
            counts[row[i]] = counts.get(row[i], 0) + 1
        top = max(counts.values())
        winners = sorted(label for label, k in counts.items() if k == top)
        return winners[0], len(winners) > 1

    pies, tied, agree_once = set(), set(), set()
    for i in range(n):
        (d, d_tie), (p, p_tie) = vote(dense, i), vote(pruned, i)
        if d != p:
            pies.add(i)
        if d_tie or p_tie:
            tied.add(i)
        if dense[0][i] != pruned[0][i]:
            agree_once.add(i)
    if isinstance(answer, torch.Tensor) and answer.dtype == torch.bool or (
            isinstance(answer, (list, tuple)) and answer and all(isinstance(a, bool) for a in answer)):
        mask = answer.tolist() if isinstance(answer, torch.Tensor) else list(answer)
        if len(mask) != n:
            raise ValueError(f"answer as a bool mask must have one entry per image ({n}); got {len(mask)}")
        chosen = {i for i, flag in enumerate(mask) if flag}
    else:
        chosen = _int_vector(answer, "answer") if not isinstance(answer, (list, tuple)) or answer else []
        if any(not 0 <= i < n for i in chosen):
            raise ValueError(f"answer must hold image indices in [0, {n}); got {sorted(chosen)}")
        chosen = set(chosen)
    ok = (chosen ^ pies) <= tied
    if chosen == set(range(n)) - pies:
        hint = "those are the images where the modal labels agree; a PIE is where they differ"
    elif chosen == agree_once and chosen != pies:
        hint = "that compares one dense and one pruned model; compare each population's modal label (most frequent prediction)"
    else:
        missing, extra = sorted(pies - chosen - tied), sorted(chosen - pies - tied)
        hint = (f"per image, take each population's most frequent label; {len(missing)} PIEs are missing"
                + (f" (e.g. {missing[:5]})" if missing else "") + f", {len(extra)} images are not PIEs"
                + (f" (e.g. {extra[:5]})" if extra else ""))
    note = f"; {len(tied)} images have a tied vote and count either way" if tied else ""
    return _report(ok, f"{len(pies)} PIEs among {n} images{note}", hint)


# --- notebook 13 ---------------------------------------------------------------------------------------

__all__ += ["check_wanda_scores", "check_heads_params_removed", "check_wanda_nm_keep"]


def _float_matrix(value, name: str):
    """``value`` as a finite float64 2-D tensor (a tensor or nested lists), else a clear error."""
    import torch

    from .checks import check_tensor

    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a 2-D tensor or a list of rows of numbers; got {type(value).__name__}") from exc
    check_tensor(value, name, finite=True, nonempty=True)
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers; got dtype {value.dtype}")
    return value.detach().cpu().to(torch.float64)


def check_wanda_scores(answer, weight, inputs) -> bool:
    """Exercise 13.1: Wanda's score of every weight of a layer ``weight`` (out x in) for calibration ``inputs``.

    ``inputs``: rows of length ``in`` (shape ``(..., in)``: every leading index, image or token, is one row).
    Recomputed here in plain Python: ``score[i][j] = |weight[i][j]| * sqrt(sum over rows r of inputs[r][j]**2)``.
    ``answer``: a tensor or nested list of ``weight``'s shape; right within a relative 1e-6.
    """
    weight, inputs, answer = _float_matrix(weight, "weight"), _float_matrix(inputs, "inputs"), _float_matrix(answer, "answer")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features); got shape {tuple(weight.shape)}")
    n_in = weight.shape[1]
    if inputs.shape[-1] != n_in:
        raise ValueError(f"inputs must have {n_in} features in the last dimension (weight has {n_in} inputs); "
                         f"got shape {tuple(inputs.shape)}")
    if tuple(answer.shape) != tuple(weight.shape):
        raise ValueError(f"answer must have weight's shape {tuple(weight.shape)} (one score per weight); "
                         f"got {tuple(answer.shape)}")
    rows = inputs.reshape(-1, n_in).tolist()
    norms = [sum(r[j] ** 2 for r in rows) ** 0.5 for j in range(n_in)]
    right = [[abs(w) * norms[j] for j, w in enumerate(row)] for row in weight.tolist()]

    def same(a, b) -> bool:
        return all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for ra, rb in zip(a, b) for x, y in zip(ra, rb))

    got = answer.tolist()
    squared = [[abs(w) * norms[j] ** 2 for j, w in enumerate(row)] for row in weight.tolist()]
    signed = [[w * norms[j] for j, w in enumerate(row)] for row in weight.tolist()]
    mean_abs = [sum(abs(r[j]) for r in rows) / len(rows) for j in range(n_in)]
    by_mean = [[abs(w) * mean_abs[j] for j, w in enumerate(row)] for row in weight.tolist()]
    if same(got, squared):
        hint = "that multiplies by the squared norm; Wanda uses the L2 norm ||X_j||_2 itself (the square root)"
    elif same(got, signed):
        hint = "the score uses |W[i, j]|, the weight's absolute value"
    elif same(got, by_mean):
        hint = "that is the mean |x_j|; Wanda's statistic is the L2 norm over all rows, sqrt(sum of x_j**2)"
    elif same(got, [[abs(w) for w in row] for row in weight.tolist()]):
        hint = "that is magnitude alone; multiply each column j by the norm of input feature j"
    else:
        hint = ("feature j's norm is taken over every input row (image x token), down column j of the inputs; "
                "score[i, j] = |W[i, j]| times the norm of column j")
    text = "[" + ", ".join(f"{v:.4g}" for v in norms) + "]"
    return _report(same(got, right), f"the input-feature norms are {text}; each weight's score is |w| times its column's norm",
                   hint)


def check_heads_params_removed(answer, dim: int = 64, heads: int = 4, k: int = 1) -> bool:
    """Exercise 13.2: parameters removed from one TinyViT attention block by pruning ``k`` of its ``heads`` heads.

    Recounted here by building the block (``MultiHeadSelfAttention(dim, heads)``), removing ``k`` heads with
    :func:`pruning_utils.transformer.prune_units` and counting every parameter (weights and biases) before
    and after.
    """
    from torch import nn

    from .checks import check_int
    from .transformer import MultiHeadSelfAttention, attention_head_groups, prune_units

    answer = check_int(answer, "answer", 0)
    dim, heads = check_int(dim, "dim", 1), check_int(heads, "heads", 1)
    k = check_int(k, "k", 0)
    if dim % heads:
        raise ValueError(f"dim must be divisible by heads (each head gets dim // heads features); got dim={dim}, heads={heads}")
    if k >= heads:
        raise ValueError(f"k must be smaller than heads (at least one head stays); got k={k}, heads={heads}")

    class Block(nn.Module):  # the attention module, where attention_head_groups looks for it
        def __init__(self):
            super().__init__()
            self.attn = MultiHeadSelfAttention(dim, heads)

    block = Block()
    small = prune_units(block, attention_head_groups(block), {"attn": list(range(heads - k))})
    count = lambda m: sum(p.numel() for p in m.parameters())
    right = count(block) - count(small)
    head_dim = dim // heads
    if answer == 4 * k * head_dim * dim:
        hint = "that counts the weights only: q, k and v also lose the biases of the removed heads' rows"
    elif answer == k * head_dim * (3 * dim + 3):
        hint = "out loses the removed heads' columns too (its bias stays: out's outputs are not pruned)"
    elif answer == k * head_dim * (4 * dim + 4):
        hint = "out's bias belongs to its outputs, which stay; only q, k and v lose biases"
    else:
        hint = (f"a head owns {head_dim} rows of q, k and v (weights and biases) and {head_dim} columns of out's "
                f"{dim}-row weight")
    return _report(answer == right, f"{right:,} parameters removed ({count(block):,} -> {count(small):,})", hint)


def check_wanda_nm_keep(answer, weights, col_norm, n: int = 2, m: int = 4) -> bool:
    """Exercise 13.3: which weights of one row a Wanda ``n:m`` mask keeps, given the input-feature norms.

    ``weights``: one output row (1-D); ``col_norm``: ``||X_j||_2`` for each of its inputs. In every group of
    ``m`` consecutive inputs the ``n`` largest ``|w_j| * col_norm[j]`` are kept (of equal scores the lower
    index). ``answer``: the kept indices (a list or 1-D integer tensor, any order) or a bool mask.
    Recomputed here in plain Python.
    """
    import torch

    from .checks import check_int, check_tensor

    n, m = check_int(n, "n", 1), check_int(m, "m", 1)
    if n > m:
        raise ValueError(f"n must be <= m (n kept of every m weights); got n={n}, m={m}")
    w = _float_matrix(weights, "weights")
    norms = _float_matrix(col_norm, "col_norm")
    if w.dim() != 1 or norms.dim() != 1 or w.numel() != norms.numel():
        raise ValueError(f"weights and col_norm must be 1-D of the same length (one norm per input); got shapes "
                         f"{tuple(w.shape)} and {tuple(norms.shape)}")
    if bool((norms < 0).any()):
        raise ValueError("col_norm holds negative values; norms are >= 0")
    size = w.numel()
    if size % m:
        raise ValueError(f"weights has {size} inputs, not a multiple of m={m}")
    if isinstance(answer, torch.Tensor) and answer.dtype == torch.bool or (
            isinstance(answer, (list, tuple)) and answer and all(isinstance(a, bool) for a in answer)):
        flags = check_tensor(answer, "answer").tolist() if isinstance(answer, torch.Tensor) else list(answer)
        if len(flags) != size:
            raise ValueError(f"answer as a bool mask must have one entry per weight ({size}); got {len(flags)}")
        chosen = [i for i, f in enumerate(flags) if f]
    else:
        chosen = _int_vector(answer, "answer") if not isinstance(answer, (list, tuple)) or answer else []
        if any(not 0 <= i < size for i in chosen) or len(set(chosen)) != len(chosen):
            raise ValueError(f"answer must hold distinct weight indices in [0, {size}); got {sorted(chosen)}")
    chosen = set(chosen)

    def top(scores):
        kept = set()
        for start in range(0, size, m):
            group = sorted(range(start, start + m), key=lambda j: (-scores[j], j))
            kept.update(group[:n])
        return kept

    wl, nl = w.tolist(), norms.tolist()
    right = top([abs(a) * b for a, b in zip(wl, nl)])
    if chosen == right:
        hint = ""
    elif chosen == top([abs(a) for a in wl]):
        hint = "that is what magnitude keeps; Wanda ranks |w_j| times the norm of input j"
    elif len(chosen) == len(right) and chosen == set(sorted(range(size), key=lambda j: (-abs(wl[j]) * nl[j], j))[:len(right)]):
        hint = f"that keeps the best half of the whole row; N:M keeps {n} of every group of {m} consecutive weights"
    elif chosen == set(range(size)) - right:
        hint = "those are the weights the mask removes; the answer is the kept ones"
    else:
        hint = f"score each weight |w_j| * col_norm[j], then keep the {n} highest of each group of {m} consecutive inputs"
    return _report(chosen == right, f"kept: {sorted(right)}", hint)


# --- notebook 14 ---------------------------------------------------------------------------------------

__all__ += ["check_coupled_layers", "check_coupled_params_removed", "check_flops_matched_ratio"]


def _output_group(model, layer, input_size):
    """``(graph, group)``: the dependency graph of ``model`` and the group holding ``layer``'s output channels.

    ``layer`` names a Conv or Linear module of ``model``. When its output channels are split over several
    groups (a residual stream widened by a zero-padding shortcut), the first of them in the graph's order.
    """
    from torch import nn

    from .checks import check_module, check_name
    from .depgraph import DependencyGraph

    model = check_module(model)
    layer = check_name(layer, "layer")
    modules = dict(model.named_modules())
    if not isinstance(modules.get(layer), (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        convs = [n for n, m in modules.items() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
        what = "no module" if layer not in modules else f"a {type(modules[layer]).__name__}"
        raise ValueError(f"layer must name a Conv or Linear layer of the model; {layer!r} is {what} "
                         f"(its Conv/Linear layers: {', '.join(convs[:6])}{', ...' if len(convs) > 6 else ''})")
    graph = DependencyGraph(model, input_size=input_size)
    for group in graph.groups:
        if any(name == layer and what.startswith("weight dim 0") for name, what, _ in group.members):
            return graph, group
    raise ValueError(f"layer {layer!r}: the dependency graph found no group holding its output channels "
                     f"(it does not run in the model's forward?)")


def check_coupled_layers(answer, model, layer: str, input_size=None) -> bool:
    """Exercise 14.1: the layers coupled with ``layer``'s output channels (they lose the same channels).

    ``answer``: an iterable of layer names (str), any order; right when it is exactly the set of names in
    the :class:`~pruning_utils.depgraph.CoupledGroup` holding ``layer``'s output channels, ``layer``
    included (a parameter that is not a module, e.g. a class token, counts by the name the graph prints).
    Recomputed here with ``DependencyGraph(model, input_size=input_size)``.
    """
    from torch import nn

    from .checks import check_names

    if isinstance(answer, (str, bytes)):
        raise TypeError(f"answer must be a list of layer names (str), not one str; got {answer!r} "
                        f"(wrap it in a list: [{answer!r}, ...])")
    names = set(check_names(answer, "answer"))
    graph, group = _output_group(model, layer, input_size)
    modules = dict(graph.model.named_modules())
    right = list(dict.fromkeys(name for name, _, _ in group.members))
    kinds: dict[str, set] = {}
    for name, what, _ in group.members:
        kinds.setdefault(name, set()).add("out" if what.startswith("weight dim 0") else
                                          "in" if what.startswith("weight dim 1") else "other")
    missing = [n for n in right if n not in names]
    extra = sorted(names - set(right))
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm, nn.GroupNorm)
    pieces = []
    carriers = [n for n in missing if "out" in kinds[n] and "in" in kinds[n]]
    if carriers:
        pieces.append(f"{len(carriers)} missing layer(s) read these channels and write them again, one filter per "
                      f"channel (a depthwise conv): it carries each channel through: its weight and its norm lose "
                      f"them too")
    norms = [n for n in missing if isinstance(modules.get(n), norm_types)]
    if norms:
        pieces.append(f"{len(norms)} missing norm layer(s) after a producer: a BatchNorm/norm holds the same channels")
    consumers = [n for n in missing if kinds[n] == {"in"}]
    if consumers:
        pieces.append(f"{len(consumers)} missing layer(s): each reads these channels as inputs (its weight dim 1 "
                      f"loses the same columns)")
    producers = [n for n in missing if kinds[n] == {"out"} and n != layer]
    if producers:
        pieces.append(f"{len(producers)} other layer(s) write into the same channels (an addition joins them: "
                      f"they must lose the same output channels)")
    if layer in missing:
        pieces.append(f"{layer!r} itself belongs to the answer")
    rest = [n for n in missing if n not in {*carriers, *norms, *consumers, *producers, layer}]
    if rest:
        pieces.append(f"{len(rest)} other member(s) of the group are missing (parameters count by their name)")
    if extra:
        pieces.append(f"{', '.join(map(repr, extra))} does not touch these channels")
    hint = "; ".join(pieces)
    return _report(not missing and not extra,
                   f"{len(right)} layers lose {layer!r}'s output channels together: {', '.join(right)}", hint)


def _removed_parameters(model, pruned) -> dict[str, int]:
    """How many elements each parameter of ``model`` loses in ``pruned`` (same names; buffers not counted)."""
    after = {n: p.numel() for n, p in pruned.named_parameters()}
    return {n: p.numel() - after.get(n, 0) for n, p in model.named_parameters() if p.numel() != after.get(n, 0)}


def check_coupled_params_removed(answer, model, layer: str, k: int, input_size=None) -> bool:
    """Exercise 14.2: how many parameters leave ``model`` when ``k`` units of ``layer``'s output group go.

    Parameters: weights, biases and norms' affine weights (buffers such as running statistics do not
    count). Recounted here by really pruning that group alone: ``DependencyGraph(model,
    input_size=input_size).prune(k / units, groups=[its index])`` (``channels_to_keep`` then keeps exactly
    ``units - k``), counting every parameter before and after.
    """
    from torch import nn

    from .checks import check_int
    from .structured import channels_to_keep

    answer = check_int(answer, "answer", 0)
    k = check_int(k, "k", 1)
    graph, group = _output_group(model, layer, input_size)
    if group.frozen:
        raise ValueError(f"layer {layer!r}: the group holding its output channels (group {group.index}) is frozen, "
                         f"it cannot be pruned: {group.frozen}")
    free = group.units - group.frozen_units
    if k >= free:
        raise ValueError(f"k must be smaller than the {free} prunable units of the group holding {layer!r}'s "
                         f"output channels (at least one stays); got k={k}")
    ratio = k / group.units  # channels_to_keep keeps units - round(ratio * units) = units - k
    if group.units - channels_to_keep(group.units, ratio) != k:  # pragma: no cover - rounding guard
        raise ValueError(f"k={k} cannot be removed exactly from {group.units} units by a ratio")
    pruned = graph.prune(ratio, groups=[group.index])
    lost = _removed_parameters(graph.model, pruned)
    right = sum(lost.values())
    modules = dict(graph.model.named_modules())
    kinds: dict[str, set] = {}
    for name, what, _ in group.members:
        kinds.setdefault(name, set()).add("out" if what.startswith("weight dim 0") else
                                          "in" if what.startswith("weight dim 1") else "other")
    owner = lambda p: p.rpartition(".")[0]  # noqa: E731
    layer_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    norms = sum(v for p, v in lost.items() if owner(p) in modules and not isinstance(modules[owner(p)], layer_types)
                and owner(p) in kinds)
    consumers = sum(v for p, v in lost.items() if kinds.get(owner(p)) == {"in"})
    biases = sum(v for p, v in lost.items() if p.endswith(".bias") and isinstance(modules.get(owner(p)), layer_types))
    own = sum(v for p, v in lost.items() if owner(p) == layer)
    alternatives = [(right - norms, "that leaves out the norm layers: each keeps a weight and a bias per channel, "
                                    "and they lose the removed channels' ones"),
                    (right - consumers, "the layers that read these channels lose their input columns too "
                                        "(weight dim 1): count those"),
                    (right - biases, "the removed channels' biases go too"),
                    (own, f"that is {layer!r}'s own rows only; every layer of the group loses the same channels "
                          f"(print the graph's group)")]
    hint = next((h for v, h in alternatives if v != right and answer == v),
                f"add up, over every member of the group, the parameters of the {k} removed channels: rows of the "
                f"producers (weights and biases), the norms' weight and bias, the consumers' input columns")
    return _report(answer == right, f"{right:,} parameters leave the model when {k} of the {group.units} units of "
                                    f"group {group.index} go ({len(lost)} tensors shrink)", hint)


def check_flops_matched_ratio(answer, model, inner_ratio: float, input_size) -> bool:
    """Exercise 14.3: the ratio at which pruning the residual streams too costs the FLOPs of inner-only pruning.

    Recomputed here: the target is ``count_flops(StructuredPruner(model).prune(inner_ratio), input_size)[0]``
    (inner channels only, Li et al.); then ``StructuredPruner(model, residual=True).prune(r)`` for every
    ``r`` of the grid 0.01, 0.02, ..., 0.99 (one pruner; importance l1; the FLOPs depend only on how many
    channels each group keeps, so ratios keeping the same counts are counted once). ``answer``: a grid
    point; right when its FLOPs are as close to the target as the closest ones (ties accepted).
    """
    import math
    import numbers

    from .checks import check_fraction, check_module
    from .flops import check_input_size, count_flops
    from .structured import StructuredPruner, channels_to_keep

    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        raise TypeError(f"answer must be a ratio on the grid 0.01, 0.02, ..., 0.99; got {answer!r} "
                        f"({type(answer).__name__})")
    answer = float(answer)
    if not (math.isfinite(answer) and 0.0 < answer < 1.0):
        raise ValueError(f"answer must be a ratio in (0, 1) on the grid 0.01, 0.02, ..., 0.99; got {answer!r}")
    step = round(answer * 100)
    if abs(answer * 100 - step) > 1e-6:
        raise ValueError(f"answer must be a grid point 0.01, 0.02, ..., 0.99 (two decimals); got {answer!r}")
    model = check_module(model)
    inner_ratio = check_fraction(inner_ratio, "inner_ratio")
    input_size = check_input_size(input_size)
    target = count_flops(StructuredPruner(model, input_size=input_size).prune(inner_ratio), input_size)[0]
    pruner = StructuredPruner(model, residual=True, input_size=input_size)
    by_counts: dict[tuple, int] = {}
    flops: dict[int, int] = {}
    for i in range(1, 100):
        counts = tuple(channels_to_keep(g.units, i / 100, pruner.round_to) for g in pruner.groups)
        if counts not in by_counts:
            by_counts[counts] = count_flops(pruner.prune(i / 100), input_size)[0]
        flops[i] = by_counts[counts]
    best = min(abs(f - target) for f in flops.values())
    matches = [i for i, f in flops.items() if abs(f - target) == best]
    got = flops[step]
    dense = count_flops(model, input_size)[0]
    if abs(inner_ratio - answer) < 1e-9:
        hint = ("residual=True removes more FLOPs at the same ratio (the block outputs, the residual streams, go "
                "too), so the same FLOPs come at a lower ratio: look lower")
    elif got < target:
        hint = f"at {answer:.2f} residual pruning leaves {got:,} FLOPs, fewer than {target:,}: it prunes too many; look lower"
    else:
        hint = f"at {answer:.2f} residual pruning leaves {got:,} FLOPs, more than {target:,}: it prunes too few; look higher"
    grid = ", ".join(f"{i / 100:.2f}" for i in matches)
    return _report(step in matches, f"inner-only pruning at {inner_ratio:g} leaves {target:,} of {dense:,} FLOPs; "
                                    f"residual pruning comes closest at {grid} ({flops[matches[0]]:,} FLOPs)", hint)
