"""Gradual magnitude pruning with the cubic schedule of Zhu & Gupta (2017, "To prune, or not to prune").

Sparsity rises from ``s_i`` to ``s_f`` while the network trains, fast at first (when there are many
redundant weights) and slowly near the end::

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (end_step - t0))³     for t0 <= t <= end_step

(the paper writes ``end_step - t0`` as ``n·Δt``). *When* to prune is decided by the pure function
:func:`cubic_sparsity` and :func:`pruning_steps`; *what* to prune by the course's one masking
mechanism (:func:`pruning_utils.masks.magnitude_prune`). Between pruning steps the masks hold through
every optimizer update by themselves.

Pruning happens at ``t0, t0 + Δt, t0 + 2Δt, ...`` and always at ``end_step`` as well, so the final
sparsity is reached exactly at ``end_step`` even when ``end_step - t0`` is not a multiple of ``Δt``.
"""

from __future__ import annotations


from torch import nn

from .checks import check_flag, check_fraction, check_int, check_scope, check_step
from .masks import magnitude_prune, prunable_layers, sparsity
from .training import Callback

__all__ = ["GradualPruner", "cubic_sparsity", "pruning_steps"]


def _check_schedule(initial_sparsity, final_sparsity, begin_step, end_step, frequency=1):
    initial = check_fraction(initial_sparsity, "initial_sparsity")
    final = check_fraction(final_sparsity, "final_sparsity")
    if final < initial:
        raise ValueError(f"final_sparsity must be >= initial_sparsity (masks only add zeros); "
                         f"got final_sparsity={final!r} < initial_sparsity={initial!r}")
    begin = check_int(begin_step, "begin_step", 0)
    end = check_int(end_step, "end_step", begin + 1)
    frequency = check_int(frequency, "frequency", 1)
    return initial, final, begin, end, frequency


def cubic_sparsity(step: int, initial_sparsity: float = 0.0, final_sparsity: float = 0.9, begin_step: int = 0,
                   end_step: int = 10000) -> float:
    """Target sparsity at ``step`` under the cubic schedule; ``s_i`` before ``begin_step``, ``s_f`` after ``end_step``.

    >>> round(cubic_sparsity(50, 0.0, 0.8, 0, 100), 6)   # half-way: 0.8 * (1 - 0.5**3)
    0.7
    """
    initial, final, begin, end, _ = _check_schedule(initial_sparsity, final_sparsity, begin_step, end_step)
    step = check_step(step)
    if step <= begin:
        return initial
    if step >= end:
        return final
    remaining = 1.0 - (step - begin) / (end - begin)
    return final + (initial - final) * remaining**3


def pruning_steps(begin_step: int = 0, end_step: int = 10000, frequency: int = 100) -> list[int]:
    """The steps at which the masks are updated: every ``frequency`` steps from ``begin_step``, plus ``end_step``.

    >>> pruning_steps(0, 10, 4)
    [0, 4, 8, 10]
    """
    _, _, begin, end, frequency = _check_schedule(0.0, 0.0, begin_step, end_step, frequency)
    steps = list(range(begin, end + 1, frequency))
    if steps[-1] != end:
        steps.append(end)
    return steps


class GradualPruner(Callback):
    """Raise the sparsity of ``model`` along the cubic schedule while it trains.

    Use it either way:

    * calling ``pruner.step(global_step)`` from your own loop after every optimizer step, or
    * as a callback of :func:`pruning_utils.train` (``callbacks=[pruner]``); it then counts the
      optimizer steps it has seen (``pruner.current_step``), so one pruner can span several ``train`` calls.
      ``train`` must train the pruner's ``model`` (or a model that contains it), else ``ValueError``.

    ``scope="global"`` (default) ranks all prunable layers' weights together; ``"layer"`` brings every
    layer to the same sparsity. ``include``/``exclude``/``skip_first``/``skip_last`` choose the layers
    (see :func:`pruning_utils.prunable_layers`). ``history`` gets one record per mask update.

    If the steps it is shown skip a pruning step (say ``step`` is called every 10 steps with
    ``frequency=25``), the next call catches up to the most recent scheduled target, so ``end_step``'s
    final sparsity is never missed.
    """

    def __init__(self, model: nn.Module, initial_sparsity: float = 0.0, final_sparsity: float = 0.9,
                 begin_step: int = 0, end_step: int = 10000, frequency: int = 100, *, scope: str = "global",
                 include=None, exclude=None, skip_first: bool = False, skip_last: bool = False):
        (self.initial_sparsity, self.final_sparsity, self.begin_step, self.end_step,
         self.frequency) = _check_schedule(initial_sparsity, final_sparsity, begin_step, end_step, frequency)
        check_scope(scope)
        check_flag(skip_first, "skip_first")
        check_flag(skip_last, "skip_last")
        self.model = model
        self.scope = scope
        self.layers = prunable_layers(model, include, exclude, skip_first=skip_first, skip_last=skip_last)
        self.current_step = 0  # optimizer steps seen as a callback
        self.last_pruned_step: int | None = None
        self.history: list[dict] = []

    # -- when (pure) -------------------------------------------------------------------------------

    def compute_sparsity(self, step: int) -> float:
        """Target sparsity of the schedule at ``step`` (a pure function of the step)."""
        return cubic_sparsity(step, self.initial_sparsity, self.final_sparsity, self.begin_step, self.end_step)

    def pruning_steps(self) -> list[int]:
        """Every step at which this pruner updates the masks."""
        return pruning_steps(self.begin_step, self.end_step, self.frequency)

    def schedule(self) -> list[tuple[int, float]]:
        """``(step, target sparsity)`` of every mask update, in order."""
        return [(s, self.compute_sparsity(s)) for s in self.pruning_steps()]

    def is_pruning_step(self, step: int) -> bool:
        """True when the masks are updated at ``step``."""
        step = check_step(step)
        return self.begin_step <= step <= self.end_step and (
            (step - self.begin_step) % self.frequency == 0 or step == self.end_step)

    def _due_step(self, step: int) -> int | None:
        """The latest scheduled pruning step at or before ``step`` (None before ``begin_step``)."""
        if step < self.begin_step:
            return None
        if step >= self.end_step:
            return self.end_step
        return self.begin_step + (step - self.begin_step) // self.frequency * self.frequency

    # -- what (the one masking mechanism) ----------------------------------------------------------

    def step(self, current_step: int) -> float | None:
        """Update the masks if a pruning step is due at ``current_step``; return the target applied, else None."""
        current_step = check_step(current_step, "current_step")
        due = self._due_step(current_step)
        if due is None or (self.last_pruned_step is not None and due <= self.last_pruned_step):
            return None
        target = self.compute_sparsity(due)
        magnitude_prune(self.layers, target, scope=self.scope)
        self.last_pruned_step = due
        self.history.append({"step": current_step, "target": target,
                             "sparsity": sparsity(self.model, self.layers)})
        return target

    @property
    def done(self) -> bool:
        """True once the final sparsity has been applied."""
        return self.last_pruned_step == self.end_step

    # -- callback of pruning_utils.train -------------------------------------------------------------

    def on_train_begin(self, state) -> None:
        """Apply the schedule's target for the step training starts from (``initial_sparsity`` at step 0).

        Refuses (``ValueError``) a ``train`` call that trains another model than the pruner's: the pruner
        would prune a model nobody trains.
        """
        self._check_trains(self.model, state)
        self.step(self.current_step)

    def on_step_end(self, state) -> None:
        """Count one optimizer step and prune if the schedule says so."""
        self.current_step += 1
        self.step(self.current_step)
