"""The course's argument rules: one validator per kind of argument, used by every module.

Each validator takes the value and the argument's name, returns the value in its canonical type, and
raises ``TypeError`` (wrong type) or ``ValueError`` (wrong value) with a message that names the argument
and says what is allowed. A new helper looks here first instead of writing its own check.

| kind | rule | validator |
|---|---|---|
| amount of weights to prune | a real number in [0, 1) (1.0 would remove every weight) | :func:`check_fraction` |
| weight in a mix (alpha) | a real number in [0, 1] | :func:`check_unit` |
| share of something that must not be empty | a real number in (0, 1] | :func:`check_share` |
| percent (``compute_threshold``'s ``percentile``) | a real number in [0, 100]; (0, 1) refused as a likely fraction | :func:`check_percent` |
| any finite number (a threshold) | a finite real number | :func:`check_real` |
| weight decay | a finite real number >= 0 | :func:`check_non_negative` |
| a name (profile, dataset) | a non-empty str | :func:`check_name` |
| rate, temperature, time | a finite real number > 0 | :func:`check_positive` |
| count, epoch, size | an int (not a bool) >= minimum | :func:`check_int` |
| training step | an int (not a bool), any sign | :func:`check_step` |
| one of a few names | a str among the choices | :func:`check_choice` |
| pruning scope | ``"global"`` or ``"layer"`` | :func:`check_scope` |
| names (layers, columns) | a str or an iterable of str | :func:`check_names` |
| a list of numbers | a list/tuple/iterable of numbers, not a str | :func:`check_numbers` |
| a switch (progress, verbose) | True or False (not a str: ``"no"`` would be true) | :func:`check_flag` |
| an optimizer | a ``torch.optim.Optimizer`` (that updates some parameter of the model) | :func:`check_optimizer` |
| a model | a ``torch.nn.Module`` | :func:`check_module` |
| a tensor | a ``torch.Tensor``, optionally floating point and finite | :func:`check_tensor` |
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable

import torch
from torch import nn

__all__ = [
    "SCOPES",
    "check_choice",
    "check_flag",
    "check_fraction",
    "check_int",
    "check_module",
    "check_name",
    "check_names",
    "check_non_negative",
    "check_numbers",
    "check_optimizer",
    "check_percent",
    "check_positive",
    "check_real",
    "check_scope",
    "check_share",
    "check_step",
    "check_tensor",
    "check_unit",
]

SCOPES = ("global", "layer")


def _real(value, name: str, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})") from exc


def check_fraction(value, name: str) -> float:
    """The course's one amount rule: a real number in [0, 1). Return it as a float.

    1.0 is refused on purpose: it would remove every weight of the network.
    """
    given = value
    value = _real(value, name, "a number in [0, 1)")
    if math.isnan(value) or not 0.0 <= value < 1.0:
        hint = " (1.0 would remove every weight)" if value == 1.0 else ""
        if isinstance(given, numbers.Integral) and value > 1:
            hint = " (a fraction of the weights, not a count or a percent)"
        elif 1.0 < value <= 100.0:
            hint = f" (a fraction, not a percent: {value:g}% is {value / 100:g})"
        raise ValueError(f"{name} must be in [0, 1){hint}; got {given!r}")
    return value


def check_percent(value, name: str) -> float:
    """A percent in [0, 100] (90 means 90%). A value strictly between 0 and 1 is refused: it is almost
    always a fraction passed where a percent is expected (0.9 for 90%)."""
    value = _real(value, name, "a percent in [0, 100]")
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be a percent in [0, 100]; got {value!r}")
    if 0.0 < value < 1.0:
        raise ValueError(f"{name} is a percent in [0, 100] (90 means 90%); got {value!r}, which looks like a "
                         f"fraction: pass {100 * value:g} for {100 * value:g}%")
    return value


def check_real(value, name: str) -> float:
    """A finite real number."""
    value = _real(value, name, "a finite number")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return value


def check_unit(value, name: str, hint: str = "") -> float:
    """A real number in [0, 1] (a mixing weight such as distillation's ``alpha``)."""
    value = _real(value, name, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be in [0, 1]{hint}; got {value!r}")
    return value


def check_share(value, name: str) -> float:
    """A real number in (0, 1]: a share of something that must not be empty (e.g. of the training set)."""
    value = _real(value, name, "a number in (0, 1]")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1]; got {value!r}")
    return value


def check_positive(value, name: str) -> float:
    """A finite real number > 0 (a learning rate, a temperature, a time)."""
    value = _real(value, name, "a finite number > 0")
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def check_non_negative(value, name: str) -> float:
    """A finite real number >= 0 (a weight decay)."""
    value = _real(value, name, "a finite number >= 0")
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return value


def check_name(value, name: str) -> str:
    """A non-empty str."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a non-empty str; got {value!r} ({type(value).__name__})")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty str; got {value!r}")
    return value


def check_int(value, name: str, minimum: int = 0) -> int:
    """The course's one integer-argument rule: an int (not a bool) of at least ``minimum``.

    A value of the wrong type raises TypeError, one that is too small ValueError; both name the
    argument and what it allows.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def check_step(value, name: str = "step") -> int:
    """A training step: an int (not a bool); negative steps are allowed (before the schedule starts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int (a training step); got {value!r} ({type(value).__name__})")
    return int(value)


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    """One of ``choices`` (strings); the error lists them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        allowed = " or ".join(map(repr, choices)) if len(choices) <= 2 else f"one of {', '.join(map(repr, choices))}"
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return value


def check_scope(scope) -> str:
    """``"global"`` (one ranking across all layers) or ``"layer"`` (every layer to the same sparsity)."""
    return check_choice(scope, "scope", SCOPES)


def check_numbers(values, name: str, check: Callable[[object, str], float], *, allow_empty: bool = False) -> list:
    """A list, tuple or other iterable of numbers (not a str or bytes), each passed through ``check``.

    The iterable is read once; a single number is refused (wrap it in a list).
    """
    if isinstance(values, (str, bytes)) or isinstance(values, numbers.Number) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of numbers; got {values!r} ({type(values).__name__})")
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    out = [check(v, name) for v in list(values)]
    if not out and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return out


def check_names(values, name: str, *, allow_empty: bool = True) -> list[str]:
    """One name (a str) or an iterable of names, read once, returned as a list of str."""
    if isinstance(values, str):
        return [values]
    if isinstance(values, bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a name or a list of names; got {values!r} ({type(values).__name__})")
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{name} must hold names (str); got {v!r} ({type(v).__name__})")
    if not out and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return out


def check_module(value, name: str = "model") -> nn.Module:
    """A ``torch.nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(value).__name__}")
    return value


def check_tensor(value, name: str, *, floating: bool = False, finite: bool = False,
                 nonempty: bool = False) -> torch.Tensor:
    """A ``torch.Tensor``; with ``floating`` a floating-point one, with ``finite`` free of NaN/inf."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if finite and value.numel() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} holds NaN or inf values")
    return value


def check_flag(value, name: str) -> bool:
    """A True/False switch such as ``progress`` (not a string: ``"no"`` would be true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")
    return value


def check_optimizer(optimizer, model: nn.Module | None = None, name: str = "optimizer", model_name: str = "model"):
    """A ``torch.optim.Optimizer``; given ``model``, one that updates at least one of its parameters.

    (An optimizer may hold only some of them, to train part of a model; one that holds none was built
    for another model and would train nothing.)
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{name} must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    if model is not None:
        own = {id(p) for p in model.parameters()}
        if not any(id(p) in own for group in optimizer.param_groups for p in group["params"]):
            raise ValueError(f"{name} updates none of the parameters of {model_name} ({type(model).__name__}): "
                             f"it was built for a different model; build it from {model_name}.parameters()")
    return optimizer
