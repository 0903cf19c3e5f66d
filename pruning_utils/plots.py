"""Matplotlib figures the notebooks share (each returns the figure so it can be saved)."""

from __future__ import annotations

import math
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

__all__ = [
    "plot_accuracy_vs_sparsity",
    "plot_iterative_history",
    "plot_layer_sparsities",
    "plot_lr_schedules",
    "plot_samples",
    "plot_training_curves",
    "plot_weight_histograms",
    "plot_filter_importance",
    "plot_accuracy_vs_params",
    "plot_speedups",
    "plot_soft_targets",
    "plot_results_by_seed",
    "plot_sparsity_schedule",
    "plot_pruning_runs",
    "plot_tradeoff",
    "plot_sensitivity",
    "plot_speedup_vs_sparsity",
]


from .stats import accuracy_interval, seed_interval


def _finish(fig, *axes):
    """The common last touches: a light grid and a legend on every axis, a tight layout; returns ``fig``."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_training_curves(history: dict, title: str = "training"):
    """Loss and accuracy per epoch from a :func:`pruning_utils.train` history."""
    epochs = history["epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(epochs, history["train_loss"], label="train")
    ax_acc.plot(epochs, [100 * a for a in history["train_acc"]], label="train")
    if history.get("val_loss"):
        ax_loss.plot(epochs, history["val_loss"], label="validation")
        ax_acc.plot(epochs, [100 * a for a in history["val_acc"]], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title=f"{title}: loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title}: accuracy")
    ax_loss.set_yscale("log")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, ax_loss, ax_acc)


def plot_samples(dataset, n: int = 16, title: str = "samples"):
    """A grid of the first ``n`` images of ``dataset`` with their labels."""
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows))
    for i, ax in enumerate(getattr(axes, "flat", [axes])):
        ax.axis("off")
        if i < n:
            x, y = dataset[i]
            img = x.permute(1, 2, 0).squeeze(-1).numpy()
            if img.ndim == 3:
                img = (img - img.min()) / (img.max() - img.min() + 1e-8)
            ax.imshow(img, cmap="gray")
            ax.set_title(str(int(y)), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig



def plot_accuracy_vs_sparsity(curves: dict, baseline: float | None = None, title: str = "accuracy vs sparsity",
                              n: int | None = None):
    """One line per method: ``curves = {label: (sparsities, accuracies)}`` with values in [0, 1].

    With ``n`` (the number of test images) each line gets a shaded 95% Wilson interval
    (:func:`pruning_utils.stats.accuracy_interval`): points whose bands overlap may not differ at all.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, (sp, acc)) in enumerate(curves.items()):
        x = [100 * s for s in sp]
        ax.plot(x, [100 * a for a in acc], marker="o", label=label, color=f"C{i}")
        if n is not None:
            bands = [accuracy_interval(round(a * n), n) for a in acc]
            ax.fill_between(x, [100 * b.low for b in bands], [100 * b.high for b in bands], color=f"C{i}",
                            alpha=0.15, linewidth=0)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", linestyle="--", label=f"dense ({100 * baseline:.1f}%)")
    ax.set(xlabel="sparsity of prunable weights (%)", ylabel="test accuracy (%)", title=title)
    return _finish(fig, ax)


def plot_weight_histograms(before, after, title: str = "weights", bins: int = 80):
    """Histograms of a layer's weights before pruning and of the survivors after it."""
    before = before.detach().flatten().cpu()
    after = after.detach().flatten().cpu()
    survivors = after[after != 0]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    edges = torch.linspace(float(before.min()), float(before.max()), bins + 1).numpy()
    ax.hist(before.numpy(), bins=edges, alpha=0.5, label=f"before ({before.numel():,d} weights)")
    ax.hist(survivors.numpy(), bins=edges, alpha=0.7, label=f"kept ({survivors.numel():,d})")
    ax.set(xlabel="weight value", ylabel="count", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_layer_sparsities(tables: dict, title: str = "sparsity per layer"):
    """Grouped bars: ``tables = {label: {layer: sparsity}}`` (same layers in each)."""
    labels = list(tables)
    layers = list(next(iter(tables.values())))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(layers)), 3.8))
    for i, label in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(layers))]
        ax.bar(xs, [100 * tables[label][layer] for layer in layers], width=width, label=label)
    ax.set_xticks(range(len(layers)), layers)
    ax.set(ylabel="sparsity (%)", ylim=(0, 100), title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_filter_importance(scores, keep=None, title: str = "filter importance"):
    """One layer's filter scores as bars, most important first; filters not in ``keep`` are marked pruned."""
    from matplotlib.patches import Patch

    scores = torch.as_tensor(scores).detach().cpu().float()
    order = torch.argsort(scores, descending=True, stable=True)
    kept = torch.ones(len(scores), dtype=torch.bool)
    if keep is not None:
        kept[:] = False
        kept[torch.as_tensor(keep, dtype=torch.long).cpu()] = True
    fig, ax = plt.subplots(figsize=(max(6.5, 0.12 * len(scores)), 3.5))
    colors = ["tab:blue" if kept[i] else "tab:red" for i in order.tolist()]
    ax.bar(range(len(scores)), scores[order].numpy(), color=colors, width=0.85)
    if keep is not None:
        ax.legend(handles=[Patch(color="tab:blue", label=f"kept ({int(kept.sum())})"),
                           Patch(color="tab:red", label=f"pruned ({int((~kept).sum())})")])
    ax.set(xlabel="filters, sorted by score", ylabel="score", title=title)
    ax.set_xticks([])
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_params(curves: dict, dense_params: int, baseline: float | None = None,
                            title: str = "accuracy vs parameters removed"):
    """``curves = {method: {stage: (parameter counts, accuracies in [0, 1])}}``: a colour per method,
    a line style per stage (e.g. dotted before fine-tuning, solid after)."""
    styles = [":", "-", "--", "-."]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (method, stages) in enumerate(curves.items()):
        for j, (stage, (params, acc)) in enumerate(stages.items()):
            ax.plot([100 * (1 - p / dense_params) for p in params], [100 * a for a in acc], color=f"C{k}",
                    linestyle=styles[j % len(styles)], marker="o", label=f"{method}, {stage}")
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", linestyle="--", label=f"dense ({100 * baseline:.1f}%)")
    ax.set(xlabel="parameters removed (% of the dense model)", ylabel="test accuracy (%)", title=title)
    return _finish(fig, ax)


def plot_speedups(factors: dict, title: str = "how many times smaller / faster than dense"):
    """Grouped bars of "x times" factors: ``factors = {setting: {measure: factor}}``, with a line at 1x."""
    settings = list(factors)
    measures = list(dict.fromkeys(m for f in factors.values() for m in f))
    width = 0.8 / len(measures)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(settings)), 4))
    for i, measure in enumerate(measures):
        xs = [j + (i - (len(measures) - 1) / 2) * width for j in range(len(settings))]
        values = [factors[s].get(measure, float("nan")) for s in settings]
        bars = ax.bar(xs, values, width=width, label=measure)
        ax.bar_label(bars, labels=[f"{v:.1f}x" if v == v else "" for v in values], fontsize=8, padding=2)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(settings)), settings)
    ax.set_yscale("log")
    top = max(v for f in factors.values() for v in f.values())
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if t <= 1.5 * top]
    ax.set_yticks(ticks, [f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set(ylabel="factor vs dense", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_iterative_history(history: list, initial: float | None = None, title: str = "iterative pruning"):
    """Sawtooth of accuracy after each prune and each fine-tune, against the sparsity reached."""
    xs, ys = [], []
    if initial is not None:
        xs.append(0.0)
        ys.append(100 * initial)
    for r in history:
        xs += [100 * r["sparsity"], 100 * r["sparsity"]]
        ys += [100 * r["acc_after_prune"], 100 * r["acc_after_finetune"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(xs, ys, color="gray", alpha=0.5)
    ax.scatter([100 * r["sparsity"] for r in history], [100 * r["acc_after_prune"] for r in history],
               marker="v", color="tab:red", label="after pruning", zorder=3)
    ax.scatter([100 * r["sparsity"] for r in history], [100 * r["acc_after_finetune"] for r in history],
               marker="o", color="tab:green", label="after fine-tuning", zorder=3)
    ax.set(xlabel="sparsity (%)", ylabel="accuracy (%)", title=title)
    return _finish(fig, ax)


def plot_lr_schedules(schedules: dict, offsets: dict | None = None, title: str = "learning rate"):
    """Step plots of learning-rate lists; ``offsets`` shifts a schedule to start at that epoch."""
    offsets = offsets or {}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, lrs in schedules.items():
        start = offsets.get(name, 0)
        ax.step(range(start, start + len(lrs)), lrs, where="post", label=name)
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="learning rate", title=title)
    return _finish(fig, ax)


def plot_soft_targets(probs: dict, title: str = "teacher's soft targets"):
    """Grouped bars: one class distribution per label, ``probs = {label: probabilities per class}``."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    n = len(probs)
    width = 0.8 / max(n, 1)
    for i, (label, p) in enumerate(probs.items()):
        p = torch.as_tensor(p).detach().flatten().cpu()
        ax.bar([c + (i - (n - 1) / 2) * width for c in range(len(p))], p.tolist(), width=width, label=label)
    ax.set(xlabel="class", ylabel="probability", title=title)
    ax.set_xticks(range(len(p)))
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_results_by_seed(results: dict, baseline: float | None = None, title: str = "test accuracy",
                         ylabel: str = "test accuracy (%)"):
    """One column per method: a dot per seed, a line at the mean and, with 2 or more seeds, the 95%
    Student-t interval of the mean (:func:`pruning_utils.stats.seed_interval`) as an error bar;
    ``results = {label: [fractions]}``."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(results) + 2), 3.8))
    for i, (label, values) in enumerate(results.items()):
        if len(values) >= 2:
            band = seed_interval(values)
            ax.errorbar([i + 0.33], [100 * band.estimate], yerr=[[100 * (band.estimate - band.low)],
                                                                  [100 * (band.high - band.estimate)]],
                        color=f"C{i}", capsize=4, label="95% interval of the mean" if i == 0 else None)
        values = [100 * v for v in values]
        ax.hlines(sum(values) / len(values), i - 0.3, i + 0.3, color=f"C{i}", linewidth=2.5,
                  label="mean" if i == 0 else None)
        ax.scatter([i] * len(values), values, color=f"C{i}", alpha=0.7, zorder=3)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", linestyle="--", label=f"dense ({100 * baseline:.1f}%)")
    ax.legend(loc="lower right")
    bands = [seed_interval(v) for v in results.values() if len(v) >= 2]
    lows = [100 * min(v) for v in results.values()] + [100 * b.low for b in bands]
    highs = [100 * max(v) for v in results.values()] + [100 * b.high for b in bands]
    if baseline is not None:
        lows.append(100 * baseline)
        highs.append(100 * baseline)
    pad = max(1.0, 0.15 * (max(highs) - min(lows)))
    ax.set_ylim(min(lows) - pad, min(100.0, max(highs) + pad))
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(list(results))
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_sparsity_schedule(steps, values, applied=None, title: str = "sparsity schedule"):
    """A schedule's curve (``values`` at ``steps``) and, as a staircase, the ``(step, target)`` updates applied."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(list(steps), [100 * v for v in values], label="schedule")
    if applied:
        xs, ys = zip(*applied)
        ax.step(xs, [100 * y for y in ys], where="post", color="tab:red", alpha=0.7, label="masks updated")
        ax.scatter(xs, [100 * y for y in ys], color="tab:red", s=14, zorder=3)
    ax.set(xlabel="training step", ylabel="sparsity (%)", title=title)
    return _finish(fig, ax)


def plot_pruning_runs(runs: dict, title: str = "pruning during training"):
    """Sparsity (top) and accuracy (bottom) against the training step for each run.

    ``runs = {label: {"step": [...], "sparsity": [...], "accuracy": [...]}}`` with fractions in [0, 1].
    """
    fig, (ax_s, ax_a) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for label, r in runs.items():
        ax_s.plot(r["step"], [100 * s for s in r["sparsity"]], label=label)
        ax_a.plot(r["step"], [100 * a for a in r["accuracy"]], label=label)
    ax_s.set(ylabel="sparsity (%)", title=title)
    ax_a.set(xlabel="training step", ylabel="validation accuracy (%)")
    return _finish(fig, ax_s, ax_a)


def plot_tradeoff(results: dict, x: str, y: str = "accuracy", *, xlabel: str | None = None,
                  ylabel: str = "test accuracy (%)", logx: bool = True, title: str = "accuracy vs cost"):
    """One labelled point per model: ``results = {label: {x: value, y: fraction in [0, 1]}}``.

    ``x`` is a cost (bytes, seconds, FLOPs): lower is better, so the best models sit top-left.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    placed = []
    for label, r in results.items():
        px, py = r[x], 100 * r[y]
        ax.scatter(px, py, s=40, zorder=3)
        # models that land on (almost) the same point get their labels stacked instead of overprinted
        near = sum(1 for qx, qy in placed if abs(math.log(px / qx)) < 0.05 and abs(py - qy) < 0.15)
        placed.append((px, py))
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(5, 4 + 10 * near), fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel or x.replace("_", " "), ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_sensitivity(scan, title: str = "sensitivity: one layer pruned at a time"):
    """A :class:`~pruning_utils.sensitivity.SensitivityScan`: metric per sparsity, one line per layer."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [100 * s for s in scan.sparsities]
    for name, values in scan.results.items():
        ax.plot(xs, [100 * v for v in values], marker="o", label=name)
    ax.axhline(100 * scan.dense, color="gray", linestyle="--", label=f"dense ({100 * scan.dense:.1f}%)")
    ax.set(xlabel="sparsity of that one layer (%)", ylabel="validation accuracy (%)", title=title)
    return _finish(fig, ax)


def plot_speedup_vs_sparsity(curves: dict, title: str = "sparse CSR vs dense"):
    """Measured speed-up per sparsity: ``curves = {label: (sparsities, speedups)}``, with a line at 1x."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (sp, factor) in curves.items():
        ax.plot([100 * s for s in sp], factor, marker="o", label=label)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="as fast as dense")
    ax.set_yscale("log")
    ax.set(xlabel="sparsity (%)", ylabel="speed-up over dense (x)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig
