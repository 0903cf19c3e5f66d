"""Fine-tuning vs learning-rate rewinding vs weight rewinding (Renda, Frankle & Carbin, ICLR 2020).

A dense network is trained for ``T`` epochs under a step schedule; the rewind point is epoch
``T - t``. After pruning, the survivors are retrained for ``t`` epochs in one of three ways:

* ``"ft"``  fine-tuning: keep the trained weights, constant LR = the schedule's final (smallest) LR;
* ``"lrr"`` learning-rate rewinding: keep the trained weights, replay the LR schedule from epoch ``T - t``;
* ``"wr"``  weight rewinding: reset the survivors to their values at epoch ``T - t`` (and the optimizer
  state saved there), then replay the schedule from there, as in lottery-ticket rewinding.
"""

from __future__ import annotations

import copy
import math
import re

import torch
from torch import nn

from .checks import check_choice, check_flag, check_fraction, check_int, check_optimizer, check_positive, check_scope
from .config import Profile, get_device, get_profile
from .masks import load_weights_keep_masks, magnitude_prune, prunable_layers, sparsity
from .params import plain_state_dict
from .training import Callback, _check_loader, build_optimizer, evaluate, lr_schedule, train

__all__ = ["LRRewindPruner", "MODES", "iterative_targets"]

MODES = ("ft", "lrr", "wr")


def iterative_targets(target_sparsity: float, per_round: float = 0.2) -> list[float]:
    """Sparsity after each round when every round prunes ``per_round`` of the remaining weights.

    The last round stops exactly at the target (Renda et al. prune 20% per round).

    >>> [round(s, 3) for s in iterative_targets(0.5)]
    [0.2, 0.36, 0.488, 0.5]
    """
    target = check_fraction(target_sparsity, "target_sparsity")
    per_round = check_fraction(per_round, "per_round")
    if per_round == 0:
        raise ValueError("per_round must be in (0, 1); got 0")
    if target == 0:
        return [0.0]
    rounds = math.ceil(math.log(1 - target) / math.log(1 - per_round) - 1e-9)
    steps = [1 - (1 - per_round) ** (i + 1) for i in range(rounds - 1)]
    return steps + [target]


_PARAMETRIZED = re.compile(r"(^|\.)parametrizations\.(\w+)\.original$")


def _plain_name(name: str) -> str:
    """``conv1.parametrizations.weight.original`` -> ``conv1.weight``: masked or not, one name.

    A model that is itself the layer (a bare ``nn.Linear``) has no prefix:
    ``parametrizations.weight.original`` -> ``weight``.
    """
    return _PARAMETRIZED.sub(r"\1\2", name)


def _state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's per-parameter state (momentum buffers) keyed by parameter name.

    Index-based ``optimizer.state_dict()`` breaks once masks are attached: parametrize moves each
    masked weight, which reorders ``model.parameters()``.
    """
    names = {id(p): _plain_name(n) for n, p in model.named_parameters()}
    return {names[id(p)]: copy.deepcopy(st) for p, st in optimizer.state.items() if id(p) in names}


def _load_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    for name, param in model.named_parameters():
        st = saved.get(_plain_name(name))
        if st is not None:
            optimizer.state[param] = copy.deepcopy(st)


class _SaveAtEpoch(Callback):
    def __init__(self, pruner: "LRRewindPruner", epoch: int):
        self.pruner, self.epoch = pruner, epoch

    def on_train_begin(self, state):
        self._check_trains(self.pruner.model, state)
        if self.epoch == 0:
            self.pruner.save_rewind_point(state.optimizer)

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.epoch:  # after `epoch` epochs: the weights epoch `epoch` starts from
            self.pruner.save_rewind_point(state.optimizer)


class LRRewindPruner:
    """Prune a trained network and retrain it by fine-tuning, LR rewinding or weight rewinding.

    ``initial_lr`` and the profile's step schedule over ``total_epochs`` (default: the profile's
    epochs) define the LR at every epoch; ``rewind_epoch`` is ``T - t``.
    """

    def __init__(self, model: nn.Module, initial_lr: float = 0.1, rewind_epoch: int = 10, *,
                 total_epochs: int | None = None, profile: str | Profile | None = None, device=None,
                 scope: str = "global", progress: bool = False):
        self.profile = get_profile(profile)
        self.total_epochs = self.profile.epochs if total_epochs is None else total_epochs
        check_int(self.total_epochs, "total_epochs", 1)
        check_int(rewind_epoch, "rewind_epoch", 0)
        if rewind_epoch >= self.total_epochs:
            raise ValueError(f"rewind_epoch must be an int in [0, {self.total_epochs}) (total_epochs); got {rewind_epoch!r}")
        initial_lr = check_positive(initial_lr, "initial_lr")
        check_scope(scope)
        check_flag(progress, "progress")
        self.model = model
        self.initial_lr = float(initial_lr)
        self.rewind_epoch = rewind_epoch
        self.device = get_device(device)
        self.scope = scope
        self.progress = progress
        self.layers = prunable_layers(model)
        self.schedule = lr_schedule(self.profile, epochs=self.total_epochs, lr=self.initial_lr)
        self.saved_state: dict | None = None
        self.trained_state: dict | None = None

    # -- the original API (save_rewind_point / rewind_learning_rate), made real ---------------

    def lr_at(self, epoch: int) -> float:
        """The dense schedule's LR at ``epoch`` (0-based; epochs past the end get the final LR)."""
        epoch = check_int(epoch, "epoch", 0)
        return self.schedule[min(epoch, self.total_epochs - 1)]

    def save_rewind_point(self, optimizer: torch.optim.Optimizer) -> dict:
        """Remember the weights, the optimizer state and the LR of the rewind epoch.

        ``optimizer`` must be the one training the pruner's model. Weights are kept under plain names
        (``conv1.weight``) without masks, so rewinding keeps whatever masks the model has by then.
        """
        check_optimizer(optimizer, self.model)
        self.saved_state = {
            "epoch": self.rewind_epoch,
            "lr": self.lr_at(self.rewind_epoch),
            # plain names, no masks: loading it later keeps the masks the model has *then*
            "weights": plain_state_dict(self.model),
            "optimizer": _state_by_name(self.model, optimizer),
        }
        return self.saved_state

    def rewind_weights(self, optimizer: torch.optim.Optimizer) -> None:
        """Weight rewinding: reset the weights and ``optimizer``'s per-parameter state to the rewind point.

        Masks are kept: survivors get their saved values, pruned weights stay zero. Every parameter's
        optimizer state (SGD momentum, Adam moments) is matched by name, masked or not, so it is the
        saved one whether or not masks were attached since.
        """
        if self.saved_state is None:
            raise RuntimeError("no rewind point saved yet: call save_rewind_point (or train_dense) first")
        check_optimizer(optimizer, self.model)
        load_weights_keep_masks(self.model, self.saved_state["weights"])
        _load_state_by_name(self.model, optimizer, self.saved_state["optimizer"])

    def rewind_learning_rate(self, optimizer: torch.optim.Optimizer) -> float:
        """Set every param group's LR to the rewind point's LR; return it."""
        if self.saved_state is None:
            raise RuntimeError("no rewind point saved yet: call save_rewind_point (or train_dense) first")
        check_optimizer(optimizer, self.model)
        for group in optimizer.param_groups:
            group["lr"] = self.saved_state["lr"]
        return self.saved_state["lr"]

    # -- dense training with the rewind point ----------------------------------------------------

    def train_dense(self, train_loader, val_loader=None) -> dict:
        """Train the dense model for ``total_epochs`` under the schedule, saving the rewind point."""
        optimizer = build_optimizer(self.model, self.profile, lr=self.initial_lr)
        history = train(self.model, train_loader, epochs=self.total_epochs, profile=self.profile,
                        optimizer=optimizer, scheduler=self._replay(optimizer, 0), val_loader=val_loader,
                        device=self.device, callbacks=[_SaveAtEpoch(self, self.rewind_epoch)],
                        progress=self.progress, desc="dense")
        self.trained_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return history

    def _replay(self, optimizer, start: int):
        """Scheduler that sets epoch i's LR to the dense schedule's LR at ``start + i``."""
        base = optimizer.param_groups[0]["lr"]
        for group in optimizer.param_groups:
            group["lr"] = self.lr_at(start)
            group["initial_lr"] = base
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: self.lr_at(start + i) / base)

    # -- prune + retrain -------------------------------------------------------------------------

    def retrain(self, train_loader, mode: str, epochs: int | None = None, val_loader=None) -> dict:
        """Retrain the (masked) model for ``epochs`` (default ``T - rewind_epoch``) in ``mode``."""
        check_choice(mode, "mode", MODES)
        epochs = self.total_epochs - self.rewind_epoch if epochs is None else epochs
        check_int(epochs, "epochs", 0)
        _check_loader(train_loader, "train_loader", reiterable=True)  # before weight rewinding touches the model
        if val_loader is not None:
            _check_loader(val_loader, "val_loader", reiterable=True)
        if mode == "wr" and self.saved_state is None:
            raise RuntimeError("weight rewinding needs a rewind point: call train_dense or save_rewind_point first")
        optimizer = build_optimizer(self.model, self.profile, lr=self.initial_lr)
        if mode == "ft":
            scheduler = self._replay(optimizer, self.total_epochs - 1)  # the final LR, every epoch
        else:
            if mode == "wr":
                self.rewind_weights(optimizer)
            scheduler = self._replay(optimizer, self.rewind_epoch)
        return train(self.model, train_loader, epochs=epochs, profile=self.profile, optimizer=optimizer,
                     scheduler=scheduler, val_loader=val_loader, device=self.device,
                     progress=self.progress, desc=f"retrain ({mode})")

    def prune_and_retrain(self, train_loader, mode: str, target_sparsity: float, *, iterative: bool = False,
                          per_round: float = 0.2, epochs: int | None = None, eval_loader=None) -> list[dict]:
        """Prune to ``target_sparsity`` (one-shot, or ``per_round`` of the survivors per round) and retrain.

        Returns one record per round: sparsity, accuracy after pruning and after retraining (on
        ``eval_loader`` when given) and the LRs used.
        """
        check_choice(mode, "mode", MODES)
        check_flag(iterative, "iterative")
        if epochs is not None:
            check_int(epochs, "epochs", 0)
        _check_loader(train_loader, "train_loader", reiterable=True)  # all checked before the first prune
        if eval_loader is not None:
            _check_loader(eval_loader, "eval_loader", reiterable=True)
        targets = iterative_targets(target_sparsity, per_round) if iterative else [check_fraction(target_sparsity, "target_sparsity")]
        records = []
        for i, target in enumerate(targets, start=1):
            magnitude_prune(self.layers, target, scope=self.scope)
            record = {"round": i, "sparsity": sparsity(self.model, self.layers)}
            if eval_loader is not None:
                record["acc_after_prune"] = evaluate(self.model, eval_loader, device=self.device)["accuracy"]
            history = self.retrain(train_loader, mode, epochs=epochs)
            record["lrs"] = history["lr"]
            if eval_loader is not None:
                record["acc_after_retrain"] = evaluate(self.model, eval_loader, device=self.device)["accuracy"]
            records.append(record)
        return records
