"""Iterative pruning: prune a little, fine-tune, repeat (Han et al. 2015's prune-retrain loop).

Each of ``n`` iterations removes the same fraction ``r = 1 - (1 - s)^(1/n)`` of the weights still
alive, so that after the last one exactly ``s`` of them are zero. Masks come from the course's one
masking mechanism and hold through every fine-tune.
"""

from __future__ import annotations

from torch import nn

from .checks import check_flag, check_fraction, check_int, check_module, check_positive, check_scope
from .config import Profile, get_device, get_profile
from .masks import layer_sparsities, magnitude_prune, make_permanent, prunable_layers, sparsity
from .training import _check_loader, evaluate, fine_tune

__all__ = ["IterativePruner", "per_iteration_rate", "sparsity_schedule"]


def per_iteration_rate(target_sparsity: float, num_iterations: int) -> float:
    """Fraction of the remaining weights to prune each iteration so ``num_iterations`` reach the target.

    >>> round(per_iteration_rate(0.875, 3), 6)
    0.5
    """
    target_sparsity = check_fraction(target_sparsity, "target_sparsity")
    num_iterations = check_int(num_iterations, "num_iterations", 1)
    return 1.0 - (1.0 - target_sparsity) ** (1.0 / num_iterations)


def sparsity_schedule(target_sparsity: float, num_iterations: int) -> list[float]:
    """Overall sparsity after each iteration; the last entry is exactly the target."""
    rate = per_iteration_rate(target_sparsity, num_iterations)
    steps = [1.0 - (1.0 - rate) ** (i + 1) for i in range(num_iterations)]
    steps[-1] = float(target_sparsity)
    return steps


def _check_learning_rate(learning_rate) -> float | None:
    return None if learning_rate is None else check_positive(learning_rate, "learning_rate")


class IterativePruner:
    """Prune to a target sparsity in several prune / fine-tune rounds.

    ``scope="global"`` (default) ranks all layers' weights together; ``"layer"`` prunes every layer to
    the same sparsity. ``history`` holds one record per iteration for plotting.
    """

    def __init__(self, model: nn.Module, train_loader, val_loader, device=None, *, scope: str = "global",
                 profile: str | Profile | None = None, include=None, exclude=None, progress: bool = False):
        check_module(model)
        check_scope(scope)
        check_flag(progress, "progress")
        for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
            if loader is None:
                raise TypeError(f"{name} must be an iterable of (inputs, targets) batches; got None")
            _check_loader(loader, name, reiterable=True)  # read once per round
        self.model = model
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.device = get_device(device)
        self.model.to(self.device)
        self.scope = scope
        self.profile = get_profile(profile)
        self.layers = prunable_layers(model, include, exclude)
        self.progress = progress
        self.history: list[dict] = []
        self.initial_accuracy: float | None = None

    def evaluate(self) -> float:
        """Validation accuracy of the model now (a fraction in [0, 1])."""
        return evaluate(self.model, self.val_loader, device=self.device)["accuracy"]

    def fine_tune(self, epochs: int, learning_rate: float | None = None) -> dict:
        """Retrain for ``epochs`` at a constant LR (default: the profile's fine-tuning LR); masks hold."""
        check_int(epochs, "epochs", 0)
        learning_rate = _check_learning_rate(learning_rate)
        return fine_tune(self.model, self.train_loader, epochs=epochs, lr=learning_rate, profile=self.profile,
                         device=self.device, progress=self.progress)

    def iterative_prune(self, target_sparsity: float, num_iterations: int, fine_tune_epochs: int,
                        learning_rate: float | None = None, permanent: bool = True) -> nn.Module:
        """Reach ``target_sparsity`` in ``num_iterations`` prune + fine-tune rounds; return the model.

        With ``permanent=True`` (the default) the masks are folded into the weights at the end.
        Every argument is checked before the model is touched.
        """
        steps = sparsity_schedule(target_sparsity, num_iterations)
        check_int(fine_tune_epochs, "fine_tune_epochs", 0)
        learning_rate = _check_learning_rate(learning_rate)
        check_flag(permanent, "permanent")
        self.initial_accuracy = self.evaluate()
        self.history = []
        for i, step_target in enumerate(steps, start=1):
            magnitude_prune(self.layers, step_target, scope=self.scope)
            after_prune = self.evaluate()
            self.fine_tune(fine_tune_epochs, learning_rate)
            self.history.append({
                "iteration": i,
                "target": step_target,
                "sparsity": sparsity(self.model, self.layers),
                "acc_after_prune": after_prune,
                "acc_after_finetune": self.evaluate(),
            })
        self.final_layer_sparsities = layer_sparsities(self.model, self.layers)
        if permanent:
            make_permanent(self.model)
        return self.model
