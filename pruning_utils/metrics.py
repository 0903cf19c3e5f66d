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
* :func:`save_sparse` / :func:`load_sparse` - a compact checkpoint: a bitmask (or CSR indices) plus the
  non-zero values; it round-trips exactly.
* :func:`to_sparse_linear` / :func:`to_dense_linear` - run the Linear layers of a pruned model as
  sparse CSR matrix products (torch's kernel or the course's compiled one, :mod:`pruning_utils.spmm`)
  and back.
* :func:`sensitivity_scan` - prune one layer at a time over a grid of sparsities and record a metric.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import statistics
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from .config import CheckpointError, check_int, load_checkpoint, save_checkpoint
from . import spmm
from .masks import PRUNABLE_TYPES, check_fraction, magnitude_prune, prunable_layers

__all__ = [
    "CSRLinear",
    "SensitivityScan",
    "analysis_table",
    "analyze_pruned_model",
    "checkpoint_sizes",
    "compare_latency",
    "count_flops",
    "count_parameters",
    "format_analysis",
    "load_sparse",
    "measure_latency",
    "plain_state_dict",
    "save_sparse",
    "sparse_flops",
    "sensitivity_scan",
    "to_dense_linear",
    "to_sparse_linear",
]

SPARSE_FORMAT = "pruning_utils.sparse"
SPARSE_VERSION = 1
ENCODINGS = ("bitmask", "csr")


# ---------------------------------------------------------------------------------------------
# Parameters, read through the masks
# ---------------------------------------------------------------------------------------------


def _is_parametrization_path(name: str) -> bool:
    return "parametrizations" in name.split(".")


def _torch_prune_mask(module: nn.Module, pname: str) -> torch.Tensor | None:
    """The mask ``torch.nn.utils.prune`` keeps beside ``<name>_orig`` (it leaves the original's values)."""
    if not pname.endswith("_orig"):
        return None
    mask = getattr(module, f"{pname[:-5]}_mask", None)
    return mask if isinstance(mask, torch.Tensor) else None


def _effective_parameters(module: nn.Module):
    """``(name, tensor, stored parameter, mask buffer name)`` for the parameters of ``module`` itself,
    each read as the forward pass sees it: a masked weight as ``original * mask`` (its zeros show).

    Both the course's masks (``torch.nn.utils.parametrize``) and ``torch.nn.utils.prune``'s
    ``weight_orig`` / ``weight_mask`` pairs are read this way; the mask buffer is named so that callers
    do not count or save it as a tensor of its own.
    """
    for pname, p in module.named_parameters(recurse=False):
        mask = _torch_prune_mask(module, pname)
        if mask is None:
            yield pname, p, p, None
        else:
            yield pname[:-5], p * mask, p, f"{pname[:-5]}_mask"
    if parametrize.is_parametrized(module):
        for pname in module.parametrizations:
            yield pname, getattr(module, pname), module.parametrizations[pname].original, None


def _logical_parameters(model: nn.Module):
    """``(module, name, tensor)`` for every parameter of the model as the forward pass sees it, once."""
    seen = set()
    for name, module in model.named_modules():
        if _is_parametrization_path(name):
            continue
        for pname, tensor, stored, _ in _effective_parameters(module):
            if id(stored) not in seen:
                seen.add(id(stored))
                yield module, pname, tensor


@torch.no_grad()
def count_parameters(model: nn.Module) -> dict:
    """Total and non-zero parameters, for the whole model and for its prunable (Conv/Linear) weights."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    total = non_zero = prunable = prunable_non_zero = 0
    for module, pname, tensor in _logical_parameters(model):
        n, nz = tensor.numel(), int(torch.count_nonzero(tensor))
        total += n
        non_zero += nz
        if pname == "weight" and isinstance(module, PRUNABLE_TYPES):  # not biases, not BatchNorm
            prunable += n
            prunable_non_zero += nz
    return {"total_params": total, "non_zero_params": non_zero,
            "prunable_params": prunable, "non_zero_prunable_params": prunable_non_zero}


def _ratio(a: float, b: float) -> float:
    """a / b, with x/0 = inf (everything removed) and 0/0 = 1 (nothing there to remove)."""
    if b:
        return a / b
    return math.inf if a else 1.0


@torch.no_grad()
def plain_state_dict(model: nn.Module) -> dict:
    """The ``state_dict`` the model would have with every mask made permanent (model untouched).

    A masked layer contributes ``weight`` as the forward pass sees it, zeros included, instead of
    ``parametrizations.weight.original`` + the mask buffer (or ``torch.nn.utils.prune``'s
    ``weight_orig`` + ``weight_mask``).
    """
    out = {}
    for name, module in model.named_modules():
        if _is_parametrization_path(name):
            continue
        prefix = f"{name}." if name else ""
        params = list(_effective_parameters(module))
        masks = {mask for *_, mask in params if mask is not None}
        tensors = [(pname, tensor) for pname, tensor, _, _ in params]
        tensors += [(bname, b) for bname, b in module.named_buffers(recurse=False)
                    if bname not in module._non_persistent_buffers_set and bname not in masks]
        for key, tensor in tensors:
            out[f"{prefix}{key}"] = tensor.detach().clone()
    return out


# ---------------------------------------------------------------------------------------------
# Input size and FLOPs
# ---------------------------------------------------------------------------------------------


def check_input_size(input_size) -> tuple:
    """An input shape with the batch dimension, e.g. ``(1, 3, 32, 32)``; anything else is refused."""
    if (not isinstance(input_size, (tuple, list, torch.Size)) or not input_size
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_size)):
        raise ValueError(f"input_size must be an input shape with the batch dimension, e.g. (1, 3, 32, 32); "
                         f"got {input_size!r}")
    return tuple(input_size)


def default_input_size(model: nn.Module) -> tuple | None:
    """The input shape the course's models declare (SmallCNN: ``input_shape``, MLP: ``in_features``)."""
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return (1, *shape)
    features = getattr(model, "in_features", None)
    return (1, features) if isinstance(features, int) else None


def _resolve_input_size(model: nn.Module, input_size) -> tuple:
    if input_size is None:
        input_size = default_input_size(model) or (1, 3, 224, 224)
    return check_input_size(input_size)


def example_input(model: nn.Module, input_size) -> torch.Tensor:
    """Zeros of ``input_size`` on the model's device and dtype."""
    param = next(model.parameters(), None)
    return torch.zeros(check_input_size(input_size), device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None else None)


def _does_not_fit(model: nn.Module, input_size, exc: Exception) -> ValueError:
    return ValueError(f"input_size={tuple(input_size)} does not fit {type(model).__name__}: {exc}")


@contextlib.contextmanager
def _eval_mode(*models: nn.Module):
    """Put the models in eval mode; afterwards give every submodule back its own train/eval flag."""
    modes = {m: m.training for model in models for m in model.modules()}
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


@torch.no_grad()
def count_flops(model: nn.Module, input_size) -> tuple[int, dict[str, int]]:
    """FLOPs of one eval-mode forward pass on ``input_size``: ``(total, {module name: flops})``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (a matmul or conv counts 2 FLOPs per
    multiply-accumulate; elementwise ops, BatchNorm and pooling count 0). The per-module dict has every
    module that ran a counted op, parents included (a block's entry is the sum of its layers').
    An input size that does not fit the model raises ``ValueError`` naming it.
    """
    x = example_input(model, input_size)
    try:
        with _eval_mode(model), FlopCounterMode(display=False) as counter:
            model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise _does_not_fit(model, input_size, exc) from exc
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if "." in key:  # "<ModelClass>.<module name>"
            name = key.split(".", 1)[1]
            if not _is_parametrization_path(name):
                per_module[name] = sum(ops.values())
    return counter.get_total_flops(), per_module


@torch.no_grad()
def sparse_flops(model: nn.Module, input_size) -> tuple[int, int]:
    """``(dense FLOPs, FLOPs left if every multiplication by a zero weight were skipped)``.

    ShrinkBench's theoretical count: each Conv/Linear layer's FLOPs scale with the fraction of its
    weights that are non-zero; FLOPs outside those layers stay as they are.
    """
    total, per_module = count_flops(model, input_size)
    saved = 0.0
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and name in per_module:
            w = module.weight
            saved += per_module[name] * (1 - int(torch.count_nonzero(w)) / w.numel())
    return total, round(total - saved)


# ---------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------


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
    """
    benchmark = _benchmark_module()
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict {label: model}")
    check_int(rounds, "rounds", 1)
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
                    raise ValueError(f"example input of shape {tuple(example_input.shape)} does not fit "
                                     f"model {label!r} ({type(m).__name__}): {exc}") from exc
            for r in range(rounds):
                order = list(timers.items())
                for label, timer in (order if r % 2 == 0 else order[::-1]):
                    times[label].append(timer.blocked_autorange(min_run_time=min_run_time).median)
        finally:
            torch.set_num_threads(previous_threads)
    ref = times[next(iter(models))]
    return {label: {"seconds": statistics.median(t), "speedup": statistics.median(a / b for a, b in zip(ref, t)),
                    "times": t} for label, t in times.items()}


def measure_latency(model: nn.Module, input_size=None, *, rounds: int = 3, min_run_time: float = 0.1,
                    num_threads: int | None = None) -> float:
    """Median seconds of one forward pass on zeros of ``input_size`` (default: the model's own size)."""
    input_size = _resolve_input_size(model, input_size)
    try:
        result = compare_latency({"model": model}, example_input(model, input_size), rounds=rounds,
                                 min_run_time=min_run_time, num_threads=num_threads)
    except ValueError as exc:
        if exc.__cause__ is None:
            raise
        raise _does_not_fit(model, input_size, exc.__cause__) from exc.__cause__
    return result["model"]["seconds"]


# ---------------------------------------------------------------------------------------------
# Sparse checkpoints
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_sparse():
    """Silence torch's "sparse CSR support is in beta" notice: true, and not the learner's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def _to_csr(matrix: torch.Tensor) -> torch.Tensor:
    """A 2-D tensor in CSR form, with int32 indices whenever they fit: half the index bytes on disk,
    and the CPU's sparse kernels run faster with them."""
    with _quiet_sparse():
        csr = matrix.to_sparse_csr()
        if matrix.numel() >= 2**31:
            return csr
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape,
                                       check_invariants=False)  # built from a valid CSR


_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
_BIT_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)


def _pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A flat bool tensor as bytes, 8 entries per byte (most significant bit first)."""
    pad = (-mask.numel()) % 8
    bits = torch.cat([mask.reshape(-1), mask.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
    return (bits * _BIT_WEIGHTS).sum(dim=1).to(torch.uint8)


def _unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    return ((packed.reshape(-1, 1) >> _BIT_SHIFTS) & 1).reshape(-1)[:n].bool()


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _dtype_name(dtype: torch.dtype) -> str:
    # interned: pickle then writes each dtype / blob name once and refers back to it in every entry
    return sys.intern(str(dtype).removeprefix("torch."))


class _Blobs:
    """Tensors packed end to end, one flat blob per dtype: a file with a handful of storages instead of
    several per layer (each storage costs a zip record in ``torch.save``, which adds up on small models)."""

    def __init__(self):
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, tensor: torch.Tensor) -> list:
        """Append ``tensor`` (flattened); return its reference ``[blob name, offset, numel]``."""
        name = _dtype_name(tensor.dtype)
        offset = self.sizes.get(name, 0)
        self.parts.setdefault(name, []).append(tensor.reshape(-1))
        self.sizes[name] = offset + tensor.numel()
        return [name, offset, tensor.numel()]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: torch.cat(parts) for name, parts in self.parts.items()}


def _encode(tensor: torch.Tensor, encoding: str, values_dtype: torch.dtype | None, blobs: _Blobs) -> dict:
    """The smallest of dense / sparse encodings for one tensor (sparse only for floating tensors)."""
    t = tensor.detach().cpu()
    stored = t.to(values_dtype) if values_dtype is not None and t.is_floating_point() else t
    entry = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
    parts = {"data": stored}
    kind = "dense"
    if t.is_floating_point() and t.dim() > 0:
        non_zero = t.reshape(-1) != 0
        if encoding == "bitmask":
            sparse = {"bits": _pack_bits(non_zero), "values": stored.reshape(-1)[non_zero]}
        else:
            csr = _to_csr(stored.reshape(t.shape[0], -1) if t.dim() > 1 else stored.reshape(1, -1))
            sparse = {"crow": csr.crow_indices(), "col": csr.col_indices(), "values": csr.values()}
        if sum(_nbytes(v) for v in sparse.values()) < _nbytes(stored):
            kind, parts = encoding, sparse
    entry["kind"] = kind
    entry.update({name: blobs.add(value) for name, value in parts.items()})
    return entry


def _decode(key: str, entry: dict, blobs: dict) -> torch.Tensor:
    def part(name):
        blob, offset, numel = entry[name]
        return blobs[blob][offset:offset + numel]

    try:
        dtype = getattr(torch, entry["dtype"])
        shape = tuple(entry["shape"])
        if entry["kind"] == "dense":
            return part("data").to(dtype).reshape(shape)
        n = math.prod(shape)
        values = part("values").to(dtype)
        if entry["kind"] == "bitmask":
            out = torch.zeros(n, dtype=dtype)
            out[_unpack_bits(part("bits"), n)] = values
            return out.reshape(shape)
        if entry["kind"] == "csr":
            rows = shape[0] if len(shape) > 1 else 1
            with _quiet_sparse():  # invariants checked: a damaged file raises instead of crashing
                matrix = torch.sparse_csr_tensor(part("crow").long(), part("col").long(), values,
                                                 size=(rows, n // rows), check_invariants=True)
            return matrix.to_dense().reshape(shape)
    except (KeyError, AttributeError, RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"sparse checkpoint entry {key!r} is damaged: {exc}") from exc
    raise CheckpointError(f"sparse checkpoint entry {key!r} has unknown kind {entry.get('kind')!r}")


def save_sparse(model_or_state_dict, path, *, encoding: str = "bitmask", fp16: bool = False) -> Path:
    """Write a compact checkpoint of a (pruned) model: the zeros cost a bit each, or nothing.

    Every floating tensor is stored in the smaller of: dense; ``encoding="bitmask"`` (one bit per entry
    saying "non-zero" + the non-zero values); ``encoding="csr"`` (row pointers and int32 column indices
    of the tensor viewed as ``(out, -1)`` + the non-zero values). All parts are packed into one flat
    blob per dtype. Masked models are saved as if permanent. With ``fp16=True`` floating values are
    stored in half precision (half the bytes, no longer exact). The file is written atomically;
    :func:`load_sparse` reads it back.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}; got {encoding!r}")
    if isinstance(model_or_state_dict, nn.Module):
        state = plain_state_dict(model_or_state_dict)
    elif isinstance(model_or_state_dict, dict):
        state = model_or_state_dict
    else:
        raise TypeError(f"model_or_state_dict must be an nn.Module or a state_dict; "
                        f"got {type(model_or_state_dict).__name__}")
    values_dtype = torch.float16 if fp16 else None
    blobs, entries = _Blobs(), {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict entry {key!r} is not a tensor ({type(value).__name__})")
        entries[key] = _encode(value, encoding, values_dtype, blobs)
    payload = {"format": SPARSE_FORMAT, "version": SPARSE_VERSION, "encoding": encoding,
               "entries": entries, "blobs": blobs.tensors()}
    return save_checkpoint(payload, path)


def load_sparse(path) -> dict:
    """Read a :func:`save_sparse` file back into a plain ``state_dict`` (dense tensors, original dtypes)."""
    payload = load_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a sparse checkpoint written by save_sparse")
    if payload.get("version") != SPARSE_VERSION:
        raise CheckpointError(f"{str(path)!r} has sparse format version {payload.get('version')!r}; "
                              f"this course reads version {SPARSE_VERSION}")
    return {key: _decode(key, entry, payload["blobs"]) for key, entry in payload["entries"].items()}


def checkpoint_sizes(model: nn.Module, *, encoding: str = "bitmask", fp16: bool = False) -> dict:
    """Bytes on disk of the model's plain ``state_dict`` (``torch.save``) and of :func:`save_sparse`."""
    with tempfile.TemporaryDirectory(prefix="pruning-size-") as tmp:
        state = plain_state_dict(model)
        dense = save_checkpoint(state, Path(tmp) / "dense.pt").stat().st_size
        sparse = save_sparse(state, Path(tmp) / "sparse.pt", encoding=encoding, fp16=fp16).stat().st_size
    return {"dense_bytes": dense, "sparse_bytes": sparse, "size_ratio": dense / sparse}


# ---------------------------------------------------------------------------------------------
# Sparse CSR execution of Linear layers
# ---------------------------------------------------------------------------------------------


_KERNELS = ("auto", "native", "torch")


def _check_kernel(kernel: str) -> str:
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}; got {kernel!r}")
    if kernel == "native" and not spmm.available():
        raise RuntimeError(f"kernel='native' was asked for, but the native CSR kernel is {spmm.status()}")
    return kernel


class CSRLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose weight is a sparse CSR matrix.

    ``y = x W^T + b`` is computed as ``(W x^T + b)^T``: work proportional to the non-zero weights.
    Indices are int32, which the CPU kernels run faster than int64. Two kernels do the product:

    * ``"native"`` - the course's compiled kernel (:mod:`pruning_utils.spmm`) for float32 on the CPU.
      It returns ``y`` as a transposed view of a feature-major ``y^T``, so the next CSR layer reads its
      input without a copy.
    * ``"torch"`` - ``torch.addmm`` / ``torch.addmv`` on the CSR tensor (any dtype and device).

    ``"auto"`` (the default) uses the native kernel whenever it is available and applies (float32,
    CPU, no gradient wanted, at least 8 inputs), else torch's. Build the layer with :meth:`from_linear` (or
    :func:`to_sparse_linear`).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, kernel: str = "auto"):
        super().__init__()
        if weight.layout != torch.sparse_csr or weight.dim() != 2:
            raise ValueError("weight must be a 2-D sparse CSR tensor; build the layer with CSRLinear.from_linear")
        try:  # once, here: the kernels trust the indices, and a bad one would read outside the input
            with _quiet_sparse():
                torch.sparse_csr_tensor(weight.crow_indices(), weight.col_indices(), weight.values(), weight.shape,
                                        check_invariants=True)
        except RuntimeError as exc:
            raise ValueError(f"weight is not a valid CSR matrix: {exc}") from exc
        self.kernel = _check_kernel(kernel)
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, *, kernel: str = "auto") -> "CSRLinear":
        """The same layer with its (masked) weight in CSR form; zeros are not stored."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear; got {type(linear).__name__}")
        return cls(_to_csr(linear.weight.detach()), linear.bias, kernel=kernel)

    def __deepcopy__(self, memo):
        # copy.deepcopy cannot reach a CSR tensor's storage; clone() copies its three arrays.
        bias = None if self.bias is None else self.bias.clone()
        replica = type(self)(self.weight.clone(), bias, kernel=self.kernel)
        replica.train(self.training)
        memo[id(self)] = replica
        return replica

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the dense weight."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                          device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.weight.to_dense())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def _apply(self, fn, *args, **kwargs):
        self._fits = None  # .to(), .double(), .cuda() ... may change what the native kernel can run
        return super()._apply(fn, *args, **kwargs)

    def _native_fits(self) -> bool:
        """Whether the weight suits the native kernel (:func:`spmm.check_weight`) and is contiguous; cached."""
        if getattr(self, "_fits", None) is None:
            w, b = self.weight, self.bias
            try:
                spmm.check_weight(w, b)
            except ValueError:
                self._fits = False
            else:
                parts = (w.crow_indices(), w.col_indices(), w.values()) + (() if b is None else (b,))
                self._fits = all(t.is_contiguous() for t in parts)
        return self._fits

    def uses_native(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` runs on the native kernel.

        ``"auto"`` keeps torch's kernel for fewer than 8 inputs (one vector register of batch
        columns): there torch's sparse matrix-vector product is as fast or faster.
        """
        if self.kernel == "torch" or (self.kernel == "auto" and x.numel() < 8 * self.in_features):
            return False
        if not spmm.available():
            return False
        fits = self._native_fits() and x.dtype == torch.float32 and x.device.type == "cpu"
        if self.kernel == "native" and not fits:
            raise ValueError("kernel='native' runs float32 CPU tensors with int32 indices; got input "
                             f"{x.dtype} on {x.device}, weight {self.weight.values().dtype} on {self.weight.device}")
        return fits and not (x.requires_grad and torch.is_grad_enabled())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"CSRLinear expects inputs with {self.in_features} features in the last dimension; "
                             f"got shape {tuple(x.shape)}")
        flat = x.reshape(-1, self.in_features)
        if self.uses_native(x):
            w = self.weight  # flat.T is already contiguous when flat came out of a native CSR layer
            out = spmm._run(w.crow_indices(), w.col_indices(), w.values(), self.bias, flat.T.contiguous(),
                            self.out_features).T
        elif flat.shape[0] == 1:  # one input: a sparse matrix-vector product
            out = torch.mv(self.weight, flat[0]) if self.bias is None else torch.addmv(self.bias, self.weight, flat[0])
        elif self.bias is None:
            out = (self.weight @ flat.T).T
        else:
            out = torch.addmm(self.bias.unsqueeze(1), self.weight, flat.T).T
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / (self.in_features * self.out_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, density={density:.3f}, kernel={self.kernel}")


def _replace_children(model: nn.Module, convert: Callable[[str, nn.Module], nn.Module | None], prefix: str = "") -> int:
    count = 0
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        new = convert(full, child)
        if new is not None:
            setattr(model, name, new)
            count += 1
        else:
            count += _replace_children(child, convert, f"{full}.")
    return count


def to_sparse_linear(model: nn.Module, *, min_sparsity: float = 0.0, kernel: str = "auto") -> nn.Module:
    """A copy of ``model`` (eval mode, inference only) whose Linear layers run as CSR sparse products.

    A masked layer's zeros are left out of the CSR weight. Layers with fewer than ``min_sparsity`` zeros
    stay dense. ``kernel`` picks the product for every converted layer (see :class:`CSRLinear`). The
    original model is not changed. Sparse CSR pays on a CPU only at high sparsity (see notebook 08).
    """
    min_sparsity = check_fraction(min_sparsity, "min_sparsity")
    kernel = _check_kernel(kernel)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    copy_ = copy.deepcopy(model)

    def convert(_name, child):
        if isinstance(child, nn.Linear):  # plain or masked (parametrize subclasses it)
            zeros = 1 - int(torch.count_nonzero(child.weight)) / child.weight.numel()
            if zeros >= min_sparsity:
                return CSRLinear.from_linear(child, kernel=kernel)
        return None

    if _replace_children(copy_, convert) == 0:
        raise ValueError(f"model has no nn.Linear layer with at least min_sparsity={min_sparsity} zeros to convert")
    return copy_.eval()


def to_dense_linear(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every :class:`CSRLinear` turned back into a dense ``nn.Linear``."""
    copy_ = copy.deepcopy(model)
    _replace_children(copy_, lambda _n, child: child.to_linear() if isinstance(child, CSRLinear) else None)
    return copy_


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Sensitivity scan
# ---------------------------------------------------------------------------------------------


@dataclass
class SensitivityScan:
    """Metric of the model with ONE layer pruned, per layer and sparsity (higher metric = better)."""

    sparsities: list[float]
    dense: float
    results: dict[str, list[float]]

    def max_sparsity(self, tolerance: float = 0.01) -> dict[str, float]:
        """Per layer, the highest scanned sparsity whose metric stays within ``tolerance`` of dense.

        A layer that tolerates more pruning gets a higher share of it: the basis of a non-uniform
        allocation (0.0 when even the lowest scanned sparsity costs more than ``tolerance``).
        """
        out = {}
        for name, values in self.results.items():
            ok = [s for s, v in zip(self.sparsities, values) if v >= self.dense - tolerance]
            out[name] = max(ok, default=0.0)
        return out

    def to_markdown(self) -> str:
        header = "| layer | " + " | ".join(f"{100 * s:g}%" for s in self.sparsities) + " |"
        lines = [header, "|---|" + "---:|" * len(self.sparsities)]
        for name, values in self.results.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
        return "\n".join(lines)


def sensitivity_scan(model: nn.Module, evaluate_fn: Callable[[nn.Module], float],
                     sparsities=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95), *, layers=None, progress: bool = True,
                     **select) -> SensitivityScan:
    """Prune one layer at a time (magnitude, on a copy) to each sparsity and record ``evaluate_fn(copy)``.

    ``evaluate_fn`` takes a model and returns a number where higher is better (e.g. validation
    accuracy). ``layers`` are names of prunable layers (default: all, or those ``select`` picks as in
    :func:`~pruning_utils.masks.prunable_layers`). The model itself is never changed.
    """
    if not callable(evaluate_fn):
        raise TypeError(f"evaluate_fn must be a callable model -> float; got {type(evaluate_fn).__name__}")
    if isinstance(sparsities, (int, float)) or not sparsities:
        raise ValueError(f"sparsities must be a non-empty list of fractions in [0, 1); got {sparsities!r}")
    sparsities = [check_fraction(s, "sparsities") for s in sparsities]
    names = [n for n, _ in prunable_layers(model, include=layers, **select)]
    from tqdm.auto import tqdm

    dense = float(evaluate_fn(model))
    results: dict[str, list[float]] = {}
    for name in tqdm(names, desc="sensitivity scan", disable=not progress, leave=False):
        row = []
        for s in sparsities:
            trial = copy.deepcopy(model)
            layer = dict(trial.named_modules())[name]
            magnitude_prune([(name, layer)], s, scope="layer")
            row.append(float(evaluate_fn(trial)))
        results[name] = row
    return SensitivityScan(sparsities, dense, results)
