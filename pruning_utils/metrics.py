"""What pruning really bought: parameters, FLOPs, latency, size on disk, per-layer sensitivity.

Every number here is read through the course's one masking mechanism, so a model still under masks
and the same model after :func:`~pruning_utils.masks.make_permanent` report the same figures.

* :func:`analyze_pruned_model` - one dict (and a printable report) with parameter counts, sparsity of
  the prunable weights and of the whole model, compression ratio, dense and zero-skipping FLOPs,
  checkpoint sizes and measured latency.
* :func:`count_flops` - FLOPs of one forward pass, counted by torch's ``FlopCounterMode`` (2 x MACs of
  every matmul/conv), per layer and in total.
* :func:`compare_latency` / :func:`measure_latency` - ``torch.utils.benchmark`` medians, models timed
  in alternating rounds so a shared machine's drift hits all of them alike.

The pieces live in the modules named after them: :mod:`~pruning_utils.params` (parameter counts),
:mod:`~pruning_utils.flops`, :mod:`~pruning_utils.latency`, :mod:`~pruning_utils.sparse_format`
(sparse checkpoints), :mod:`~pruning_utils.csr` (CSR Linear layers) and
:mod:`~pruning_utils.sensitivity`. This module puts them together in one report and one table.
"""

from __future__ import annotations

import math

from torch import nn

from .checks import check_flag, check_int, check_names
from .flops import _resolve_input_size, sparse_flops
from .latency import measure_latency
from .params import _ratio, count_parameters
from .sparse_format import checkpoint_sizes

__all__ = ["analysis_table", "analyze_pruned_model", "format_analysis"]



def analyze_pruned_model(model: nn.Module, input_size=None, *, latency: bool = True, disk: bool = True,
                         rounds: int = 3, min_run_time: float = 0.05, num_threads: int | None = None,
                         verbose: bool = False) -> dict:
    """Everything pruning changed, in one dict (``verbose=True`` also prints it).

    ``input_size`` includes the batch dimension; by default the course model's own size, else
    ``(1, 3, 224, 224)``. Keys:

    * ``total_params``, ``non_zero_params``, ``model_sparsity`` (zeros among all parameters);
    * ``prunable_params``, ``non_zero_prunable_params``, ``sparsity`` (zeros among Conv/Linear weights:
      what the pruners target; biases and BatchNorm are not prunable);
    * ``compression_ratio`` = total / non-zero parameters (ShrinkBench; ``inf`` when all are zero);
    * ``dense_flops``, ``sparse_flops`` (zeros skipped), ``theoretical_speedup`` = their ratio;
    * with ``disk``: ``dense_bytes`` (``torch.save`` of the plain state_dict), ``sparse_bytes``
      (:func:`save_sparse`), ``size_ratio``;
    * with ``latency``: ``latency_s``, the median forward time for ``input_size``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    input_size = _resolve_input_size(model, input_size)
    check_int(rounds, "rounds", 1)
    for flag, value in (("latency", latency), ("disk", disk), ("verbose", verbose)):
        check_flag(value, flag)
    counts = count_parameters(model)
    dense_flops, remaining = sparse_flops(model, input_size)
    result = {
        "input_size": input_size,
        **counts,
        "sparsity": 1 - _ratio(counts["non_zero_prunable_params"], counts["prunable_params"]),
        "model_sparsity": 1 - _ratio(counts["non_zero_params"], counts["total_params"]),
        "compression_ratio": _ratio(counts["total_params"], counts["non_zero_params"]),
        "dense_flops": dense_flops,
        "sparse_flops": remaining,
        "theoretical_speedup": _ratio(dense_flops, remaining),
    }
    if disk:
        result.update(checkpoint_sizes(model))
    if latency:
        result["latency_s"] = measure_latency(model, input_size, rounds=rounds, min_run_time=min_run_time,
                                              num_threads=num_threads)
    if verbose:
        print(format_analysis(result))
    return result


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def _times(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}x"


def _format_value(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("sparsity", "model_sparsity"):
        return f"{100 * value:.1f}%"
    if key in ("compression_ratio", "theoretical_speedup", "size_ratio", "speedup", "params_reduction",
               "flops_reduction"):
        return _times(value)
    if key.endswith("_bytes"):
        return f"{value / 1024:.1f} KiB"
    if key == "latency_s":
        return f"{1000 * value:.3f} ms"
    if key == "accuracy":
        return f"{100 * value:.2f}%"
    if isinstance(value, int):
        return f"{value:,}" if key.endswith("params") else _si(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_REPORT_ROWS = [
    ("parameters (total)", "total_params"), ("parameters (non-zero)", "non_zero_params"),
    ("prunable weights", "prunable_params"), ("prunable weights (non-zero)", "non_zero_prunable_params"),
    ("sparsity of prunable weights", "sparsity"), ("sparsity of all parameters", "model_sparsity"),
    ("compression ratio (total / non-zero)", "compression_ratio"), ("FLOPs (dense)", "dense_flops"),
    ("FLOPs (zeros skipped)", "sparse_flops"), ("theoretical speed-up", "theoretical_speedup"),
    ("checkpoint (dense state_dict)", "dense_bytes"), ("checkpoint (sparse format)", "sparse_bytes"),
    ("size ratio", "size_ratio"), ("latency (median)", "latency_s"),
]


def format_analysis(result: dict) -> str:
    """A two-column text report of an :func:`analyze_pruned_model` dict."""
    if not isinstance(result, dict) or not any(key in result for _, key in _REPORT_ROWS):
        raise TypeError(f"result must be a dict from analyze_pruned_model; got {type(result).__name__}")
    lines = [f"input size {tuple(result['input_size'])}"] if "input_size" in result else []
    rows = [(label, _format_value(key, result[key])) for label, key in _REPORT_ROWS if key in result]
    width = max(len(label) for label, _ in rows)
    lines += [f"{label:<{width}}  {value:>14}" for label, value in rows]
    return "\n".join(lines)


DEFAULT_COLUMNS = ("accuracy", "sparsity", "non_zero_params", "params_reduction", "sparse_flops", "flops_reduction",
                   "dense_bytes", "sparse_bytes", "latency_s", "speedup")
_HEADERS = {"non_zero_params": "non-zero params", "params_reduction": "fewer params",
            "sparse_flops": "FLOPs (zeros skipped)", "flops_reduction": "fewer FLOPs", "dense_bytes": "dense file",
            "sparse_bytes": "sparse file", "latency_s": "latency", "speedup": "speed-up"}


def analysis_table(results: dict, columns=DEFAULT_COLUMNS, reference: str | None = "dense") -> str:
    """A markdown table, one row per ``{label: analysis dict}`` entry; missing values show as ``-``.

    With a ``reference`` row (default ``"dense"``) two columns compare every model with it:
    ``params_reduction`` = reference parameters / non-zero parameters and ``flops_reduction`` =
    reference FLOPs / FLOPs with zeros skipped, so structured (smaller) and unstructured (sparser)
    models are measured on the same scale.
    """
    if not isinstance(results, dict) or not results:
        raise ValueError("results must be a non-empty dict {label: analysis dict}")
    columns = check_names(columns, "columns", allow_empty=False) if not isinstance(columns, str) else None
    if columns is None:
        raise TypeError("columns must be a list of column names (a single str would be read letter by letter)")
    if reference is not None and reference not in results:
        raise ValueError(f"reference {reference!r} is not one of the results: {list(results)}")
    rows = {}
    for label, r in results.items():
        rows[label] = dict(r)
        if reference is not None:
            ref = results[reference]
            if "total_params" in ref and "non_zero_params" in r:
                rows[label]["params_reduction"] = _ratio(ref["total_params"], r["non_zero_params"])
            if "dense_flops" in ref and "sparse_flops" in r:
                rows[label]["flops_reduction"] = _ratio(ref["dense_flops"], r["sparse_flops"])
    columns = [c for c in columns if any(c in r for r in rows.values())]
    header = "| model | " + " | ".join(_HEADERS.get(c, c.replace("_", " ")) for c in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(_format_value(c, r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


# Before the split these names lived here; a notebook saved then (``metrics.plain_state_dict``) still works.
_MOVED = {
    "count_parameters": "params", "plain_state_dict": "params",
    "check_input_size": "flops", "count_flops": "flops", "default_input_size": "flops", "example_input": "flops",
    "sparse_flops": "flops", "compare_latency": "latency", "measure_latency": "latency",
    "checkpoint_sizes": "sparse_format", "load_sparse": "sparse_format", "save_sparse": "sparse_format",
    "CSRLinear": "csr", "to_dense_linear": "csr", "to_sparse_linear": "csr",
    "SensitivityScan": "sensitivity", "sensitivity_scan": "sensitivity",
}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f".{_MOVED[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
