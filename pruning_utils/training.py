"""The course's one training loop, its evaluation, and the cached dense baseline.

Every later topic trains through :func:`train`: pruning masks, gradual schedules and distillation
hook in through ``callbacks`` and ``loss_fn`` instead of writing a loop of their own.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import hashlib
import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checks import check_flag, check_int, check_module, check_name, check_optimizer, check_positive
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
    "autocast_dtype",
    "TrainState",
    "baseline_path",
    "build_model_for",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "final_lr",
    "finetune_lr",
    "lr_schedule",
    "fine_tune",
    "recalibrate_batchnorm",
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

    def _check_trains(self, model: nn.Module, state: TrainState | None) -> None:
        """Refuse to run inside a :func:`train` call that trains another model than ``model``.

        A callback built for one model acts on that model; in ``train(other, callbacks=[cb])`` it would
        silently act on a model nobody trains. ``model`` may be the trained model or a part of it (a
        wrapper such as DDP trains the module it holds). ``state=None`` (a direct call) is not checked.
        """
        if state is None or model is state.model or any(m is model for m in state.model.modules()):
            return
        raise ValueError(
            f"{type(self).__name__} was built for a different model than the one train() is training: "
            f"it acts on a {type(model).__name__} (id {id(model):#x}), train() trains a "
            f"{type(state.model).__name__} (id {id(state.model):#x}); build it on the model you pass to train()"
        )


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[TrainState], None]):
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        self.fn(state)


def _as_callbacks(callbacks) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes)) or not (isinstance(callbacks, (Callback, Iterable)) or callable(callbacks)):
        raise TypeError(f"callbacks must be a Callback, a function of TrainState, or a list of them; "
                        f"got {callbacks!r} ({type(callbacks).__name__})")
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
    check_module(model)
    prof = get_profile(profile)
    lr = prof.lr if lr is None else lr
    lr = check_positive(lr, "lr")
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=prof.momentum, weight_decay=prof.weight_decay)


def _milestones(prof: Profile, epochs: int) -> list[int]:
    return sorted({max(1, round(f * epochs)) for f in prof.lr_milestones if round(f * epochs) < epochs})


def build_scheduler(optimizer: torch.optim.Optimizer, profile: str | Profile | None = None, *, epochs: int):
    """The profile's step schedule: LR times ``lr_gamma`` at each milestone fraction of ``epochs``."""
    check_optimizer(optimizer)
    epochs = check_int(epochs, "epochs", 1)
    prof = get_profile(profile)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_milestones(prof, epochs), gamma=prof.lr_gamma)


def lr_schedule(profile: str | Profile | None = None, *, epochs: int, lr: float | None = None) -> list[float]:
    """The learning rate of every epoch of an ``epochs``-long run under the profile's step schedule.

    The same numbers :func:`build_scheduler` produces, as a plain list (rewinding replays a slice of it).

    >>> lr_schedule("quick", epochs=4)
    [0.05, 0.05, 0.005000000000000001, 0.0005000000000000001]
    """
    prof = get_profile(profile)
    epochs = check_int(epochs, "epochs", 1)
    lr = check_positive(prof.lr if lr is None else lr, "lr")
    steps = _milestones(prof, epochs)
    return [lr * prof.lr_gamma ** sum(e >= m for m in steps) for e in range(epochs)]


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


_LOSS_CONVENTION = ("loss_fn must be a callable loss_fn(outputs, targets) -> scalar tensor, such as "
                   "nn.CrossEntropyLoss(), or the course's loss_fn(outputs, targets, inputs) -> scalar tensor")


def _is_torch_loss(loss_fn) -> bool:
    while isinstance(loss_fn, functools.partial):
        loss_fn = loss_fn.func
    if isinstance(loss_fn, nn.modules.loss._Loss):
        return True
    return getattr(loss_fn, "__module__", None) == "torch.nn.functional"


def _loss_arity(loss_fn) -> int:
    """How many positional arguments ``loss_fn`` takes: 2 ``(outputs, targets)`` or 3 ``(..., inputs)``.

    torch's own losses (an ``nn.modules.loss._Loss`` such as ``nn.CrossEntropyLoss()``, a function of
    ``torch.nn.functional``, or a ``functools.partial`` of one) take ``(outputs, targets)``. Any other
    callable is read once from its signature (an ``nn.Module``'s from its ``forward``): one that accepts
    a third positional argument (required or with a default, or ``*args``) gets the inputs; one with
    exactly two gets ``(outputs, targets)``.
    """
    if _is_torch_loss(loss_fn):  # nn.CrossEntropyLoss(), F.cross_entropy (whose 3rd argument is weight)
        return 2
    target = loss_fn.forward if isinstance(loss_fn, nn.Module) else loss_fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the documented 3-argument form
        return 3
    kinds = inspect.Parameter
    positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is kinds.empty for p in positional)
    varargs = any(p.kind is kinds.VAR_POSITIONAL for p in params)
    keyword_only = [p.name for p in params if p.kind is kinds.KEYWORD_ONLY and p.default is kinds.empty]
    if not keyword_only:
        if required == 3 or (required == 2 and (varargs or len(positional) >= 3)):
            return 3  # a third parameter with a default (inputs=None) still receives the inputs
        if required == 2:
            return 2
        if required < 2 and (varargs or len(positional) >= 3):
            return 3
        if required < 2 and len(positional) == 2:
            return 2
    raise TypeError(f"{_LOSS_CONVENTION}; got {getattr(loss_fn, '__name__', type(loss_fn).__name__)} "
                    f"with signature {inspect.signature(target)}")


def _as_loss(loss_fn) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss_fn`` as the loop calls it, ``(outputs, targets, inputs)``; ``None`` is cross-entropy."""
    if loss_fn is None:
        return _cross_entropy
    if not callable(loss_fn):
        raise TypeError(f"{_LOSS_CONVENTION}; got {loss_fn!r} ({type(loss_fn).__name__})")
    if _loss_arity(loss_fn) == 2:
        return lambda outputs, targets, inputs: loss_fn(outputs, targets)
    return loss_fn


def _checked_loss(loss, name: str = "loss_fn") -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{name} must return a scalar tensor; got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"{name} must return a scalar tensor (reduce over the batch, e.g. reduction='mean'); "
                         f"got a tensor of shape {tuple(loss.shape)}")
    return loss


def _check_loader(loader, name: str, *, reiterable: bool = False) -> None:
    """An iterable of ``(inputs, targets)`` batches; with ``reiterable``, one that can be read again.

    A list (or other sequence) of batches has its first batch checked here; a DataLoader's batches are
    checked as they come (reading one here would advance a shuffling loader's generator).
    """
    if isinstance(loader, (str, bytes, torch.Tensor)) or not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of (inputs, targets) batches; got {type(loader).__name__}")
    if reiterable and isinstance(loader, collections.abc.Iterator):
        raise TypeError(f"{name} must be re-iterable (a DataLoader or a list of batches), not an iterator "
                        f"({type(loader).__name__}): it would yield nothing after the first pass")
    try:
        empty = len(loader) == 0
    except TypeError:
        empty = False
    if empty:
        raise ValueError(f"{name} is empty: it yields no batches")
    if isinstance(loader, collections.abc.Sequence):
        _check_batch(loader[0], name)


def _check_batch(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(inputs, targets)`` batch of ``name``: two tensors, one integer class index per input."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        what = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(f"{name} must yield (inputs, targets) pairs; got {what}")
    inputs, targets = batch
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(f"{name} must yield (inputs, targets) pairs of tensors; got "
                        f"({type(inputs).__name__}, {type(targets).__name__})")
    if targets.dim() != 1 or inputs.dim() == 0 or targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"{name} yields inputs of shape {tuple(inputs.shape)} with targets of shape "
                         f"{tuple(targets.shape)}: targets must be one class index per input, shape (batch,)")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"{name} yields targets of dtype {targets.dtype}: targets must be integer class indices")
    return inputs, targets


def _batch(batch, name: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """One checked ``(inputs, targets)`` batch of ``name``, moved to ``device``."""
    inputs, targets = _check_batch(batch, name)
    if targets.dtype != torch.long:  # int32/uint8 class indices: cross-entropy wants int64
        targets = targets.long()
    return inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)  # async from pinned memory


def _forward(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, name: str, first: bool) -> torch.Tensor:
    """``model(inputs)``; the first batch's failure says which loader and shape did not fit."""
    if first:
        try:
            outputs = model(inputs)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            raise ValueError(f"a batch of {name} with inputs of shape {tuple(inputs.shape)} does not fit "
                             f"model {type(model).__name__}: {exc}") from exc
    else:
        outputs = model(inputs)
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2 or outputs.shape[0] != targets.shape[0]:
        what = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ValueError(f"model must return logits of shape (batch, classes) = ({targets.shape[0]}, classes) "
                         f"for a batch of {name}; got {what}")
    if first or targets.device.type == "cpu":  # on an accelerator the check would wait for it every step
        _check_classes(targets, outputs.shape[1], f"{name} yields targets")
    return outputs


def _check_classes(targets: torch.Tensor, classes: int, what: str) -> None:
    """Every target a class index in [0, classes) (cross-entropy would fail, on a GPU with a device assert)."""
    if targets.numel() and bool(((targets < 0) | (targets >= classes)).any()):
        raise ValueError(f"{what} outside [0, {classes}) (the model predicts {classes} classes): "
                         f"min {int(targets.min())}, max {int(targets.max())}")


def _check_scheduler(scheduler, optimizer) -> None:
    if not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must be an LR scheduler with a step() method; got {type(scheduler).__name__}")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError("scheduler was built for a different optimizer than the one train() uses; "
                         "build it from the optimizer you pass to train()")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device=None, loss_fn=None, *, per_image: bool = False) -> dict:
    """Accuracy and mean loss of ``model`` on ``loader``; the model's train/eval mode is restored.

    Returns ``{"accuracy": float in [0, 1], "loss": float}``; with ``per_image`` also ``"correct"``, a
    bool tensor (one per image, in loader order) for paired comparisons (:func:`pruning_utils.stats.paired_test`).
    """
    check_module(model)
    _check_loader(loader, "loader")
    check_flag(per_image, "per_image")
    return _evaluate(model, loader, device, _as_loss(loss_fn), "loader", per_image)


@torch.no_grad()
def _evaluate(model: nn.Module, loader, device, loss_fn, name: str, per_image: bool = False) -> dict:
    """:func:`evaluate` on checked arguments; errors about the batches name the argument ``name``."""
    device = get_device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    correct, total, loss_sum, hits = 0, 0, 0.0, []
    try:
        for batch in loader:
            inputs, targets = _batch(batch, name, device)
            outputs = _forward(model, inputs, targets, name, first=total == 0)
            loss_sum += float(_checked_loss(loss_fn(outputs, targets, inputs))) * targets.numel()
            right = outputs.argmax(dim=1) == targets
            correct += int(right.sum())
            if per_image:
                hits.append(right.cpu())
            total += targets.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError(f"{name} is empty: it yields no samples")
    result = {"accuracy": correct / total, "loss": loss_sum / total}
    if per_image:
        result["correct"] = torch.cat(hits)
    return result


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
    * ``loss_fn``: defaults to cross-entropy. Either a 2-argument loss ``loss_fn(outputs, targets)`` such
      as ``nn.CrossEntropyLoss()``, or the course's ``loss_fn(outputs, targets, inputs)`` (distillation
      needs the inputs for its teacher); which one is read once from its signature.
    * ``callbacks``: :class:`Callback` objects or functions called after every optimizer step.

    ``train_loader`` must be re-iterable (a DataLoader or a list, not a generator) and yield
    ``(inputs, targets)`` pairs; a non-finite loss stops training with a ``ValueError`` (the weights
    would be NaN from then on).

    The history is a dict of per-epoch lists: ``epoch``, ``lr``, ``train_loss``, ``train_acc`` and,
    with ``val_loader``, ``val_loss`` and ``val_acc``.
    """
    check_module(model)
    prof = get_profile(profile)
    epochs = prof.epochs if epochs is None else epochs
    epochs = check_int(epochs, "epochs", 0)
    _check_loader(train_loader, "train_loader", reiterable=True)
    if val_loader is not None:
        _check_loader(val_loader, "val_loader", reiterable=True)
    check_flag(progress, "progress")
    check_name(desc, "desc")  # the progress bar's label
    if optimizer is not None:
        check_optimizer(optimizer, model)
    loss_fn = _as_loss(loss_fn)
    cbs = _as_callbacks(callbacks)
    device = get_device(device)
    model.to(device)
    if optimizer is None:
        optimizer = build_optimizer(model, prof)
        if scheduler is None and epochs > 0:  # zero epochs: nothing to schedule
            scheduler = build_scheduler(optimizer, prof, epochs=epochs)
    if scheduler is not None:
        _check_scheduler(scheduler, optimizer)
    amp_dtype = autocast_dtype(prof, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    if prof.channels_last:
        model.to(memory_format=torch.channels_last)

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
        for batch in train_loader:
            inputs, targets = _batch(batch, "train_loader", device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = _forward(model, inputs, targets, "train_loader", first=state.step == 0)
                loss = _checked_loss(loss_fn(outputs, targets, inputs))
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise ValueError(f"the training loss is {loss_value} at epoch {epoch + 1}, step {state.step + 1}: "
                                 "training diverged (lower the learning rate) or train_loader yields NaN/inf inputs")
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: scale the loss so small gradients do not flush to zero; skip steps with inf
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            state.step += 1
            state.loss = loss_value
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
            val = _evaluate(model, val_loader, device, loss_fn, "val_loader")
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


def autocast_dtype(profile: str | Profile | None = None, device=None) -> torch.dtype | None:
    """The dtype :func:`train` autocasts to for the profile's ``precision`` on ``device`` (None: fp32).

    ``"auto"`` means bf16 on a CUDA GPU that supports it, fp16 (with a gradient scaler) on an older
    CUDA GPU such as a T4, and fp32 elsewhere; ``"bf16"``/``"fp16"`` are used as given, on any device
    whose autocast supports them (the smoke profile runs bf16 on the CPU).
    """
    prof = get_profile(profile)
    device = get_device(device)
    if prof.precision == "fp32":
        return None
    if prof.precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if prof.precision == "bf16" else torch.float16


def final_lr(profile: str | Profile | None = None) -> float:
    """The learning rate at the end of the profile's schedule (where the dense training ended)."""
    prof = get_profile(profile)
    return prof.lr * prof.lr_gamma ** len(prof.lr_milestones)


FINETUNE_LR_FACTOR = 10


def finetune_lr(profile: str | Profile | None = None) -> float:
    """The course's one learning rate for fine-tuning after pruning: ``10 x`` the profile's final LR.

    Renda et al. (2020) define fine-tuning as training on at the *final* learning rate of the dense
    schedule; after heavy pruning that rate is too small to repair the network in the few epochs the
    course can afford (notebook 06 measures both). Ten times the final rate (0.005 on the quick
    profile, one schedule step above the end) is what :func:`fine_tune`, and through it every notebook,
    uses unless the notebook says why it differs.
    """
    return FINETUNE_LR_FACTOR * final_lr(profile)


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

    Defaults: the profile's ``finetune_epochs`` and :func:`finetune_lr` (10 x its final learning rate),
    the course's one retraining recipe. Masks from :mod:`pruning_utils.masks` hold throughout.
    """
    for key in ("optimizer", "scheduler"):
        if key in train_kwargs:
            raise TypeError(f"fine_tune builds its own {key} (constant lr); call train(...) to pass one")
    prof = get_profile(profile)
    epochs = prof.finetune_epochs if epochs is None else epochs
    epochs = check_int(epochs, "epochs", 0)
    lr = finetune_lr(prof) if lr is None else lr
    optimizer = build_optimizer(model, prof, lr=lr)
    return train(model, train_loader, epochs=epochs, profile=prof, optimizer=optimizer,
                 desc=train_kwargs.pop("desc", "fine-tune"), **train_kwargs)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader, *, batches: int | None = 10, device=None) -> nn.Module:
    """Re-estimate every BatchNorm layer's running mean and variance from ``batches`` batches of ``loader``.

    Pruning changes what each layer outputs, so statistics measured on the dense network no longer
    fit. This runs forward passes in train mode with no gradients and no weight change, averaging the
    batch statistics equally (``momentum=None`` while it runs, put back afterwards); the model's
    train/eval mode is restored. ``batches=None`` reads the whole loader. Pass a list of batches to use
    the same ones for several models (a shuffling DataLoader gives new batches each time). Returns
    ``model``.
    """
    check_module(model)
    _check_loader(loader, "loader")
    if batches is not None:
        batches = check_int(batches, "batches", 1)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError(f"model has no BatchNorm layer to recalibrate ({type(model).__name__})")
    for bn in norms:
        if not bn.track_running_stats or bn.running_mean is None:
            raise ValueError(f"model's BatchNorm layers must track running statistics; "
                             f"{type(bn).__name__} was built with track_running_stats=False")
    device = get_device(device) if device is not None else _model_device(model)
    saved = [(bn.momentum, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
             for bn in norms]
    was_training = model.training
    seen = 0
    try:
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average: every batch counts the same
        model.train()
        for batch in loader:
            if batches is not None and seen == batches:
                break
            inputs, targets = _batch(batch, "loader", device)
            _forward(model, inputs, targets, "loader", first=seen == 0)
            seen += 1
        if seen == 0:
            raise ValueError("loader is empty: it yields no batches")
    except BaseException:
        for bn, (_, mean, var, count) in zip(norms, saved):  # all or nothing
            bn.running_mean.copy_(mean), bn.running_var.copy_(var), bn.num_batches_tracked.copy_(count)
        raise
    finally:
        model.train(was_training)
        for bn, (momentum, *_) in zip(norms, saved):
            bn.momentum = momentum
    return model


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


# Profile fields that cannot change the dense baseline: what the notebooks do after it.
_NOT_IN_BASELINE_KEY = ("check_claims", "budgets")


def _profile_key(prof: Profile) -> str:
    fields = {k: v for k, v in dataclasses.asdict(prof).items() if k not in _NOT_IN_BASELINE_KEY}
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def baseline_path(profile: str | Profile | None = None) -> Path:
    """Where the profile's baseline checkpoint is cached (the name changes when the profile does)."""
    prof = get_profile(profile)
    return cache_dir() / f"baseline-{prof.name}-{_profile_key(prof)}.pt"


def train_baseline(
    profile: str | Profile | None = None, *, retrain: bool = False, device=None, progress: bool = True
) -> BaselineResult:
    """Train the profile's dense baseline once and cache it; later calls load the cached copy.

    Each call returns a new model object in eval mode (ready to evaluate or time; :func:`train` and
    :func:`fine_tune` switch it to train mode themselves), so a notebook can prune it without touching
    the cache.
    Either way it leaves the global random generators (python, numpy, torch) exactly as
    ``seed_everything(profile.seed)`` leaves them: what follows is repeatable whether the baseline was
    trained now or loaded (a cached load does not train, so it could not otherwise end in the state
    training ends in).
    """
    check_flag(retrain, "retrain")
    check_flag(progress, "progress")
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
        seed_everything(prof.seed)  # the state a fresh train leaves (see the docstring)
        return BaselineResult(model.to(device).eval(), history, test_acc, val_acc, path, trained_now=False)

    seed_everything(prof.seed)
    model = build_model_for(prof)
    loaders = get_loaders(prof)
    # The cached baseline is the same whoever trains it: under the profile's thread count (the quick
    # profile's one thread), not the caller's (a notebook sets it in its first cell, a script may not;
    # float sums over other thread counts round differently and train a different model).
    threads = torch.get_num_threads()
    if prof.num_threads:
        torch.set_num_threads(prof.num_threads)
    try:
        history = train(model, loaders.train, profile=prof, val_loader=loaders.val, device=device,
                        progress=progress, desc=f"baseline ({prof.name})")
    finally:
        torch.set_num_threads(threads)
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
    seed_everything(prof.seed)  # the same state as after a cached load
    return BaselineResult(model.eval(), history, test_acc, val_acc, path, trained_now=True)
