"""Knowledge distillation while fine-tuning a pruned network (Hinton, Vinyals & Dean 2015).

The pruned *student* learns from two signals: the true labels (cross-entropy) and the dense
*teacher*'s softened output distribution. With temperature ``T`` and weight ``alpha``::

    loss = alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

Dividing logits by ``T`` shrinks the soft term's gradient by ``1 / T²``; the ``T²`` factor gives it back,
so changing the temperature does not silently change how much the soft targets weigh.

The teacher is frozen: eval mode (its batch-norm statistics never move), ``requires_grad=False`` and
its outputs computed under ``torch.no_grad``. Training runs through the course's one loop,
:func:`pruning_utils.train`, so masks, progress bars, history and callbacks (a gradual pruning
schedule, for instance) work exactly as everywhere else.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_module, check_optimizer, check_positive, check_tensor, check_unit
from .config import Profile, get_device, get_profile
from .masks import _storage_key
from .training import _check_classes, _model_device, build_optimizer, final_lr, train

__all__ = ["DistillationFineTuner", "distillation_loss", "soft_targets"]


ALPHA_HINT = " (0: labels only, 1: teacher only)"


def _check_temperature(temperature) -> float:
    return check_positive(temperature, "temperature")


def _check_alpha(alpha) -> float:
    return check_unit(alpha, "alpha", ALPHA_HINT)


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / temperature)``: the softened class distribution a teacher hands over.

    >>> soft_targets(torch.tensor([[2.0, 0.0]]), 1e9).tolist()
    [[0.5, 0.5]]
    """
    check_tensor(logits, "logits", floating=True)
    return F.softmax(logits / _check_temperature(temperature), dim=-1)


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor) -> None:
    check_tensor(student_logits, "student_logits", floating=True)
    check_tensor(teacher_logits, "teacher_logits", floating=True)
    check_tensor(targets, "targets")
    if student_logits.dim() != 2:
        raise ValueError(f"student_logits must have shape (batch, classes); got {tuple(student_logits.shape)}")
    if tuple(teacher_logits.shape) != tuple(student_logits.shape):
        raise ValueError(
            f"teacher_logits shape {tuple(teacher_logits.shape)} does not match student_logits shape "
            f"{tuple(student_logits.shape)}: teacher and student must predict the same classes for the same batch"
        )
    if targets.dim() != 1 or targets.shape[0] != student_logits.shape[0]:
        raise ValueError(f"targets of shape {tuple(targets.shape)} do not match a batch of "
                         f"{student_logits.shape[0]} logits: one class index per sample, shape (batch,)")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices; got dtype {targets.dtype}")
    _check_classes(targets, student_logits.shape[1], "targets")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets)``, batch mean.

    The teacher's logits are detached: gradients reach the student only.
    """
    temperature, alpha = _check_temperature(temperature), _check_alpha(alpha)
    _check_logits(student_logits, teacher_logits, targets)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2
    hard = F.cross_entropy(student_logits, targets)
    return alpha * soft + (1.0 - alpha) * hard


def _num_classes(model: nn.Module) -> int | None:
    """The class count a model declares: a ``num_classes`` attribute, else its last Linear's outputs."""
    declared = getattr(model, "num_classes", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else last.out_features


def _tensors(model: nn.Module):
    """Every parameter and buffer of ``model`` with its name (shared ones under each of their names)."""
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def _shared_tensor(student: nn.Module, teacher: nn.Module) -> tuple[str, str] | None:
    """The first ``(student name, teacher name)`` of a parameter or buffer both models hold, else None.

    Shared means the same object or the same memory (a view, ``nn.Parameter(t.data)``, a ``copy.copy``).
    """
    by_id, by_storage = {}, {}
    for name, tensor in _tensors(teacher):
        by_id.setdefault(id(tensor), name)
        where = _storage_key(tensor)
        if where is not None:
            by_storage.setdefault(where, name)
    for name, tensor in _tensors(student):
        other = by_id.get(id(tensor))
        if other is None:
            where = _storage_key(tensor)
            other = None if where is None else by_storage.get(where)
        if other is not None:
            return name, other
    return None


class DistillationFineTuner:
    """Fine-tune ``student_model`` on labels plus the soft outputs of a frozen ``teacher_model``.

    ``temperature`` must be > 0 and ``alpha`` (the weight of the teacher's term) in [0, 1]. The teacher
    is put in eval mode, frozen (``requires_grad_(False)``) and moved to the student's device (or
    ``device``); copy the student *before* building the fine-tuner, or the copy is frozen too.
    A student that shares any parameter or buffer with the teacher (the same object, the same
    memory, or a ``copy.copy``) is refused: freezing the teacher would freeze it, and training it would
    change the teacher. Make the student with ``copy.deepcopy(teacher_model)``.

    >>> teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    >>> kd = DistillationFineTuner(student, teacher, temperature=2.0, alpha=0.5)
    >>> round(kd.distillation_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([0])).item(), 4)
    0.5493
    """

    def __init__(self, student_model: nn.Module, teacher_model: nn.Module, temperature: float = 4.0,
                 alpha: float = 0.5, *, device=None):
        check_module(student_model, "student_model")
        check_module(teacher_model, "teacher_model")
        if student_model is teacher_model:
            raise ValueError("student_model and teacher_model are the same object; distil into a copy "
                             "(copy.deepcopy(teacher_model)) so the teacher stays unchanged")
        shared = _shared_tensor(student_model, teacher_model)
        if shared is not None:
            raise ValueError(
                f"student_model and teacher_model share a tensor (student {shared[0]!r} is teacher {shared[1]!r}): "
                "the teacher is frozen, so the student would be frozen too and training it would change the "
                "teacher; distil into copy.deepcopy(teacher_model)"
            )
        if not any(p.requires_grad for p in student_model.parameters()):
            raise ValueError("student_model has no parameter with requires_grad=True (a copy of a frozen teacher?); "
                             "call student_model.requires_grad_(True) first")
        self.temperature = _check_temperature(temperature)
        self.alpha = _check_alpha(alpha)
        n_student, n_teacher = _num_classes(student_model), _num_classes(teacher_model)
        if n_student is not None and n_teacher is not None and n_student != n_teacher:
            raise ValueError(f"teacher_model predicts {n_teacher} classes but student_model predicts {n_student}; "
                             "distillation needs the same classes")
        self.student = student_model
        self.teacher = teacher_model
        self.device = get_device(device) if device is not None else _model_device(student_model)
        self.student.to(self.device)
        self._freeze_teacher()

    def _freeze_teacher(self) -> None:
        self.teacher.to(self.device)
        self.teacher.eval()
        self.teacher.requires_grad_(False)

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's logits for ``inputs`` (eval mode, no gradient)."""
        check_tensor(inputs, "inputs")
        if self.teacher.training:  # someone called .train() on it: batch-norm statistics must not move
            self.teacher.eval()
        return self.teacher(inputs.to(_model_device(self.teacher)))

    def distillation_loss(self, student_logits, teacher_logits, targets) -> torch.Tensor:
        """The combined loss of the module docstring with this fine-tuner's temperature and alpha."""
        return distillation_loss(student_logits, teacher_logits, targets, self.temperature, self.alpha)

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The ``loss_fn(outputs, targets, inputs)`` that :func:`pruning_utils.train` calls."""
        return self.distillation_loss(outputs, self.teacher_logits(inputs).to(outputs.device), targets)

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One optimizer step of the student on one batch; return the loss."""
        check_tensor(inputs, "inputs")
        check_tensor(targets, "targets")
        check_optimizer(optimizer, self.student, model_name="student_model")
        self.student.train()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        loss = self.loss_fn(self.student(inputs), targets, inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def fit(self, train_loader, epochs: int | None = None, *, optimizer: torch.optim.Optimizer | None = None,
            scheduler=None, lr: float | None = None, profile: str | Profile | None = None, val_loader=None,
            device=None, callbacks=None, progress: bool = True, desc: str = "distil") -> dict:
        """Train the student for ``epochs`` with :func:`pruning_utils.train` and the distillation loss.

        Defaults mirror :func:`pruning_utils.fine_tune` so that runs with and without a teacher compare
        fairly: the profile's ``finetune_epochs`` and a constant LR of ``10 x`` its final LR
        (``lr`` overrides it; pass ``optimizer``/``scheduler`` to take full control). ``callbacks`` run
        inside the loop (masks hold by themselves; a :class:`~pruning_utils.GradualPruner` can prune).
        Returns the loop's history; its losses are distillation losses.
        """
        prof = get_profile(profile)
        epochs = prof.finetune_epochs if epochs is None else epochs
        if device is not None:
            self.device = get_device(device)
            self.student.to(self.device)
        self._freeze_teacher()
        if optimizer is None:
            optimizer = build_optimizer(self.student, prof, lr=10 * final_lr(prof) if lr is None else lr)
        elif lr is not None:
            raise ValueError("pass either optimizer or lr, not both")
        else:
            check_optimizer(optimizer, self.student, model_name="student_model")
        return train(self.student, train_loader, epochs=epochs, profile=prof, optimizer=optimizer,
                     scheduler=scheduler, val_loader=val_loader, device=self.device, loss_fn=self.loss_fn,
                     callbacks=callbacks, progress=progress, desc=desc)
