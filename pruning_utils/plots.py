"""Matplotlib figures the notebooks share (each returns the figure so it can be saved)."""

from __future__ import annotations

import math
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_samples", "plot_training_curves"]


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

