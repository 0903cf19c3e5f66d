"""The course's one training loop, its evaluation, and the cached dense baseline.

Every later topic trains through :func:`train`: pruning masks, gradual schedules and distillation
hook in through ``callbacks`` and ``loss_fn`` instead of writing a loop of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checks import check_int, check_positive
from .config import (
    CheckpointError,
    Profile,
    cache_dir,
    get_device,
    get_profile,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from .data import get_loaders, input_shape
from .models import build_model

__all__ = [
    "BaselineResult",
    "Callback",
    "TrainState",
    "baseline_path",
    "build_model_for",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "final_lr",
    "lr_schedule",
    "fine_tune",
    "train",
    "train_baseline",
]


@dataclass
class TrainState:
    """What a callback sees: the model, the optimizer and where the loop is."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0  # current epoch, 0-based
    step: int = 0  # optimizer steps taken so far (global, across epochs)
    loss: float = float("nan")  # loss of the last batch
    history: dict = field(default_factory=dict)


class Callback:
    """Hooks into :func:`train`. Override what you need; a plain function counts as ``on_step_end``."""

    def on_train_begin(self, state: TrainState) -> None:
        """Called once before the first batch."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after every ``optimizer.step()``; ``state.step`` is already incremented."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after each epoch's evaluation and LR-scheduler step."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[TrainState], None]):
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        self.fn(state)


def _as_callbacks(callbacks) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise TypeError(f"callbacks must be Callback objects or functions of TrainState; got {cb!r}")
    return out


def build_optimizer(model: nn.Module, profile: str | Profile | None = None, *, lr: float | None = None):
    """SGD with the profile's momentum and weight decay (``lr`` overrides the profile's)."""
    prof = get_profile(profile)
    lr = prof.lr if lr is None else lr
    lr = check_positive(lr, "lr")
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=prof.momentum, weight_decay=prof.weight_decay)


def _milestones(prof: Profile, epochs: int) -> list[int]:
    return sorted({max(1, round(f * epochs)) for f in prof.lr_milestones if round(f * epochs) < epochs})


def build_scheduler(optimizer: torch.optim.Optimizer, profile: str | Profile | None = None, *, epochs: int):
    """The profile's step schedule: LR times ``lr_gamma`` at each milestone fraction of ``epochs``."""
    prof = get_profile(profile)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_milestones(prof, epochs), gamma=prof.lr_gamma)


def lr_schedule(profile: str | Profile | None = None, *, epochs: int, lr: float | None = None) -> list[float]:
    """The learning rate of every epoch of an ``epochs``-long run under the profile's step schedule.

    The same numbers :func:`build_scheduler` produces, as a plain list (rewinding replays a slice of it).

    >>> lr_schedule("quick", epochs=4)
    [0.05, 0.05, 0.005000000000000001, 0.0005000000000000001]
    """
    prof = get_profile(profile)
    lr = prof.lr if lr is None else lr
    steps = _milestones(prof, epochs)
    return [lr * prof.lr_gamma ** sum(e >= m for m in steps) for e in range(epochs)]


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


def _check_loader(loader, name: str) -> None:
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of (inputs, targets) batches; got {type(loader).__name__}")
    try:
        empty = len(loader) == 0
    except TypeError:
        empty = False
    if empty:
        raise ValueError(f"{name} is empty: it yields no batches")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device=None, loss_fn=None) -> dict:
    """Accuracy and mean loss of ``model`` on ``loader``; the model's train/eval mode is restored.

    Returns ``{"accuracy": float in [0, 1], "loss": float}``.
    """
    _check_loader(loader, "loader")
    device = get_device(device) if device is not None else _model_device(model)
    loss_fn = loss_fn or _cross_entropy
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            loss_sum += float(loss_fn(outputs, targets, inputs)) * targets.numel()
            correct += int((outputs.argmax(dim=1) == targets).sum())
            total += targets.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("loader is empty: it yields no samples")
    return {"accuracy": correct / total, "loss": loss_sum / total}


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def train(
    model: nn.Module,
    train_loader,
    *,
    epochs: int | None = None,
    profile: str | Profile | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    val_loader=None,
    device=None,
    loss_fn: Callable | None = None,
    callbacks=None,
    progress: bool = True,
    desc: str = "train",
) -> dict:
    """Train ``model`` for ``epochs`` and return its history.

    * ``optimizer``: defaults to :func:`build_optimizer` from the profile, and then ``scheduler``
      defaults to the profile's step schedule. Pass your own optimizer (and scheduler, stepped once per
      epoch) to take control.
    * ``loss_fn(outputs, targets, inputs) -> loss``: defaults to cross-entropy; distillation passes its own.
    * ``callbacks``: :class:`Callback` objects or functions called after every optimizer step.

    The history is a dict of per-epoch lists: ``epoch``, ``lr``, ``train_loss``, ``train_acc`` and,
    with ``val_loader``, ``val_loss`` and ``val_acc``.
    """
    prof = get_profile(profile)
    epochs = prof.epochs if epochs is None else epochs
    epochs = check_int(epochs, "epochs", 0)
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    device = get_device(device)
    model.to(device)
    if optimizer is None:
        optimizer = build_optimizer(model, prof)
        if scheduler is None:
            scheduler = build_scheduler(optimizer, prof, epochs=epochs)
    loss_fn = loss_fn or _cross_entropy
    cbs = _as_callbacks(callbacks)

    history: dict[str, list] = {"epoch": [], "lr": [], "train_loss": [], "train_acc": []}
    if val_loader is not None:
        history.update(val_loss=[], val_acc=[])
    state = TrainState(model=model, optimizer=optimizer, history=history)
    for cb in cbs:
        cb.on_train_begin(state)

    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        state.epoch = epoch
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = 0.0, 0, 0
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            loss = loss_fn(outputs, targets, inputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.step += 1
            state.loss = float(loss.detach())
            loss_sum += state.loss * targets.numel()
            correct += int((outputs.detach().argmax(dim=1) == targets).sum())
            seen += targets.numel()
            for cb in cbs:
                cb.on_step_end(state)
        history["epoch"].append(epoch + 1)
        history["lr"].append(lr)
        history["train_loss"].append(loss_sum / max(seen, 1))
        history["train_acc"].append(correct / max(seen, 1))
        if val_loader is not None:
            val = evaluate(model, val_loader, device=device, loss_fn=loss_fn)
            history["val_loss"].append(val["loss"])
            history["val_acc"].append(val["accuracy"])
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", val_acc=f"{val['accuracy']:.3f}")
        else:
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}")
        if scheduler is not None:
            scheduler.step()
        for cb in cbs:
            cb.on_epoch_end(state)
    bar.close()
    return history


def final_lr(profile: str | Profile | None = None) -> float:
    """The learning rate at the end of the profile's schedule (what "fine-tuning" retrains at)."""
    prof = get_profile(profile)
    return prof.lr * prof.lr_gamma ** len(prof.lr_milestones)


def fine_tune(
    model: nn.Module,
    train_loader,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    profile: str | Profile | None = None,
    **train_kwargs,
) -> dict:
    """Retrain a (pruned) model at a constant small LR with :func:`train`; return the history.

    Defaults: the profile's ``finetune_epochs`` and ``10 x`` its final learning rate. Masks from
    :mod:`pruning_utils.masks` hold throughout; nothing else is needed.
    """
    prof = get_profile(profile)
    epochs = prof.finetune_epochs if epochs is None else epochs
    lr = 10 * final_lr(prof) if lr is None else lr
    optimizer = build_optimizer(model, prof, lr=lr)
    return train(model, train_loader, epochs=epochs, profile=prof, optimizer=optimizer,
                 desc=train_kwargs.pop("desc", "fine-tune"), **train_kwargs)


# ---------------------------------------------------------------------------------------------
# The cached dense baseline
# ---------------------------------------------------------------------------------------------


@dataclass
class BaselineResult:
    """The dense baseline: a fresh copy of the trained model and how it got there."""

    model: nn.Module
    history: dict
    test_accuracy: float
    val_accuracy: float
    checkpoint: Path
    trained_now: bool  # False when it came from the cache


def build_model_for(profile: str | Profile | None = None) -> nn.Module:
    """A freshly initialised model of the profile's architecture (seed first for repeatability)."""
    prof = get_profile(profile)
    return build_model(prof.model, **prof.model_kwargs)


def _profile_key(prof: Profile) -> str:
    blob = json.dumps(dataclasses.asdict(prof), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def baseline_path(profile: str | Profile | None = None) -> Path:
    """Where the profile's baseline checkpoint is cached (the name changes when the profile does)."""
    prof = get_profile(profile)
    return cache_dir() / f"baseline-{prof.name}-{_profile_key(prof)}.pt"


def train_baseline(
    profile: str | Profile | None = None, *, retrain: bool = False, device=None, progress: bool = True
) -> BaselineResult:
    """Train the profile's dense baseline once and cache it; later calls load the cached copy.

    Each call returns a new model object, so a notebook can prune it without touching the cache.
    """
    prof = get_profile(profile)
    path = baseline_path(prof)
    device = get_device(device)
    model = build_model_for(prof)
    if path.exists() and not retrain:
        ckpt = load_checkpoint(path)
        try:
            model.load_state_dict(ckpt["state_dict"])
            history, test_acc, val_acc = ckpt["history"], ckpt["test_accuracy"], ckpt["val_accuracy"]
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is not a baseline of profile {prof.name!r} ({exc}); "
                "delete it or call train_baseline(retrain=True)"
            ) from exc
        return BaselineResult(model.to(device), history, test_acc, val_acc, path, trained_now=False)

    seed_everything(prof.seed)
    model = build_model_for(prof)
    loaders = get_loaders(prof)
    history = train(model, loaders.train, profile=prof, val_loader=loaders.val, device=device,
                    progress=progress, desc=f"baseline ({prof.name})")
    test_acc = evaluate(model, loaders.test, device=device)["accuracy"]
    val_acc = history["val_acc"][-1] if history["val_acc"] else evaluate(model, loaders.val, device=device)["accuracy"]
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(
        {
            "state_dict": state,
            "history": history,
            "test_accuracy": test_acc,
            "val_accuracy": val_acc,
            "profile": prof.name,
            "input_shape": list(input_shape(prof.dataset)),
        },
        path,
    )
    return BaselineResult(model, history, test_acc, val_acc, path, trained_now=True)
