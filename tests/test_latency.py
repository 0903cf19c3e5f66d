"""Latency helpers refuse bad timing arguments before timing anything (issue 14)."""

import math

import pytest
import torch
from torch import nn

from pruning_utils import latency
from pruning_utils.latency import compare_latency, measure_latency
from pruning_utils.models import SmallCNN


def tiny():
    torch.manual_seed(0)
    return SmallCNN(widths=(4, 4), input_size=8)


X = torch.zeros(1, 1, 8, 8)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(min_run_time=float("nan")), ValueError, "min_run_time must be a finite number > 0; got nan"),  # timed forever
    (dict(min_run_time=float("inf")), ValueError, "min_run_time must be a finite number > 0; got inf"),
    (dict(min_run_time=-1), ValueError, "min_run_time must be a finite number > 0; got -1"),
    (dict(min_run_time=0), ValueError, "min_run_time must be a finite number > 0; got 0"),
    (dict(min_run_time=True), TypeError, "min_run_time must be a finite number > 0; got True"),
    (dict(min_run_time="0.1"), TypeError, "min_run_time must be a finite number > 0; got '0.1'"),
    (dict(num_threads=0), ValueError, "num_threads must be an int >= 1; got 0"),
    (dict(num_threads=1.5), TypeError, "num_threads must be an int >= 1; got 1.5"),
])
def test_bad_timing_arguments_are_refused(kwargs, error, message):
    kwargs = {"rounds": 1, "min_run_time": 0.01, **kwargs}
    with pytest.raises(error, match=message):
        compare_latency({"a": tiny()}, X, **kwargs)
    with pytest.raises(error, match=message):
        measure_latency(tiny(), (1, 1, 8, 8), **kwargs)


def test_models_and_input_are_checked():
    with pytest.raises(TypeError, match=r"models\['b'\] must be a torch.nn.Module; got str"):
        compare_latency({"a": tiny(), "b": "pruned"}, X, rounds=1, min_run_time=0.01)
    with pytest.raises(TypeError, match="example_input must be a torch.Tensor; got list"):
        compare_latency({"a": tiny()}, [[0.0]], rounds=1, min_run_time=0.01)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got str"):
        measure_latency("model", (1, 1, 8, 8))


class _FakeBenchmark:
    """Stands in for torch.utils.benchmark: every measurement reports ``median``."""

    def __init__(self, median):
        outer = self

        class Timer:
            def __init__(self, *args, **kwargs):
                pass

            def blocked_autorange(self, min_run_time):
                return type("Measurement", (), {"median": outer.median})()

        self.median, self.Timer = median, Timer


@pytest.mark.parametrize("median", [float("nan"), float("inf"), 0.0, -1e-3])
def test_a_timer_reporting_an_impossible_time_is_refused(monkeypatch, median):
    monkeypatch.setattr(latency, "_benchmark_module", lambda: _FakeBenchmark(median))
    with pytest.raises(ValueError, match=f"the timer measured {median!r} s for model 'a' in round 1"):
        compare_latency({"a": tiny()}, X, rounds=1, min_run_time=0.01)
    monkeypatch.setattr(latency, "_benchmark_module", lambda: _FakeBenchmark(2e-3))
    result = compare_latency({"a": tiny(), "b": nn.Identity()}, X, rounds=3, min_run_time=0.01)
    assert result["a"]["times"] == [2e-3] * 3 and result["b"]["speedup"] == 1.0
    assert all(math.isfinite(r["seconds"]) for r in result.values())
