"""Latency: ``torch.utils.benchmark`` medians, models timed in alternating rounds on a shared machine."""

from __future__ import annotations

import logging
import math
import statistics

import torch
from torch import nn

from .checks import check_int, check_module, check_positive, check_tensor
from .flops import _does_not_fit, _eval_mode, _resolve_input_size, example_input

__all__ = ["compare_latency", "measure_latency"]


def _check_timing(rounds, min_run_time, num_threads) -> tuple[int, float, int | None]:
    rounds = check_int(rounds, "rounds", 1)
    min_run_time = check_positive(min_run_time, "min_run_time")  # nan/inf would time forever
    num_threads = None if num_threads is None else check_int(num_threads, "num_threads", 1)
    return rounds, min_run_time, num_threads



@torch.no_grad()
def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _benchmark_module():
    log = logging.getLogger("torch.utils.cpp_extension")  # its import warns about CUDA_HOME; irrelevant here
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark


def compare_latency(models: dict, example_input: torch.Tensor, *, rounds: int = 5, min_run_time: float = 0.2,
                    num_threads: int | None = None) -> dict[str, dict[str, float]]:
    """Time each model's forward pass (eval mode, no grad) with ``torch.utils.benchmark``.

    The models are timed in alternating order for ``rounds`` rounds (a shared machine's speed drifts);
    each returns ``{"seconds": median time, "speedup": median over rounds of first model's time / this,
    "times": the per-round times}``. ``num_threads`` defaults to torch's current thread count.
    ``min_run_time`` (seconds per measurement) must be a finite number > 0, ``rounds`` and ``num_threads``
    ints >= 1; a timer that reports a time that is not a finite number > 0 raises ``ValueError``.
    """
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict {label: model}")
    for label, m in models.items():
        check_module(m, f"models[{label!r}]")
    check_tensor(example_input, "example_input")
    rounds, min_run_time, num_threads = _check_timing(rounds, min_run_time, num_threads)
    benchmark = _benchmark_module()
    previous_threads = torch.get_num_threads()
    threads = previous_threads if num_threads is None else num_threads
    times: dict[str, list[float]] = {label: [] for label in models}
    timers = {label: benchmark.Timer("forward(model, x)", globals={"forward": _forward, "model": m, "x": example_input},
                                     num_threads=threads) for label, m in models.items()}
    with _eval_mode(*models.values()):
        torch.set_num_threads(threads)
        try:
            for label, m in models.items():
                try:
                    for _ in range(3):  # warm-up: allocator growth and one-off kernel choices
                        _forward(m, example_input)
                except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                    raise ValueError(f"example_input of shape {tuple(example_input.shape)} does not fit "
                                     f"model {label!r} ({type(m).__name__}): {exc}") from exc
            for r in range(rounds):
                order = list(timers.items())
                for label, timer in (order if r % 2 == 0 else order[::-1]):
                    seconds = float(timer.blocked_autorange(min_run_time=min_run_time).median)
                    if not (math.isfinite(seconds) and seconds > 0):
                        raise ValueError(f"the timer measured {seconds!r} s for model {label!r} in round {r + 1}: "
                                         "a time must be a finite number > 0")
                    times[label].append(seconds)
        finally:
            torch.set_num_threads(previous_threads)
    ref = times[next(iter(models))]
    return {label: {"seconds": statistics.median(t), "speedup": statistics.median(a / b for a, b in zip(ref, t)),
                    "times": t} for label, t in times.items()}


def measure_latency(model: nn.Module, input_size=None, *, rounds: int = 3, min_run_time: float = 0.1,
                    num_threads: int | None = None) -> float:
    """Median seconds of one forward pass on zeros of ``input_size`` (default: the model's own size)."""
    check_module(model)
    _check_timing(rounds, min_run_time, num_threads)
    input_size = _resolve_input_size(model, input_size)
    try:
        result = compare_latency({"model": model}, example_input(model, input_size), rounds=rounds,
                                 min_run_time=min_run_time, num_threads=num_threads)
    except ValueError as exc:
        if exc.__cause__ is None:
            raise
        raise _does_not_fit(model, input_size, exc.__cause__) from exc.__cause__
    return result["model"]["seconds"]
