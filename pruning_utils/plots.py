"""Matplotlib figures the notebooks share (each returns the figure so it can be saved)."""

from __future__ import annotations

import math
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

__all__ = [
    "plot_accuracy_vs_sparsity",
    "plot_layer_sparsities",
    "plot_samples",
    "plot_training_curves",
    "plot_weight_histograms",
]


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
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


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



def plot_accuracy_vs_sparsity(curves: dict, baseline: float | None = None, title: str = "accuracy vs sparsity"):
    """One line per method: ``curves = {label: (sparsities, accuracies)}`` with values in [0, 1]."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (sp, acc) in curves.items():
        ax.plot([100 * s for s in sp], [100 * a for a in acc], marker="o", label=label)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", linestyle="--", label=f"dense ({100 * baseline:.1f}%)")
    ax.set(xlabel="sparsity of prunable weights (%)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


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
