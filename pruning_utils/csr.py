"""Sparse CSR execution of Linear layers: :class:`CSRLinear`, :func:`to_sparse_linear`, :func:`to_dense_linear`.

The product runs on torch's CSR kernel or on the course's compiled one (:mod:`pruning_utils.spmm`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from typing import Callable

import torch
from torch import nn

from . import spmm
from .checks import check_fraction, check_module

__all__ = ["CSRLinear", "to_dense_linear", "to_sparse_linear"]


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
    :func:`to_sparse_linear`). ``in_features`` and ``out_features`` are the weight's shape.

    Neither kernel runs on unchecked indices, however the weight got here (the constructor,
    ``load_state_dict``, ``layer.weight = ...``, an in-place edit of its indices): the native kernel
    checks them as it goes, torch's are checked before every product (:func:`spmm.check_csr`), and a
    broken weight raises a ValueError naming the layer (``name``, which :func:`to_sparse_linear` sets to
    the layer's place in the model) and the invariant.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, kernel: str = "auto",
                 name: str | None = None):
        super().__init__()
        if not isinstance(weight, torch.Tensor) or weight.layout != torch.sparse_csr or weight.dim() != 2:
            raise ValueError("weight must be a 2-D sparse CSR tensor; build the layer with CSRLinear.from_linear")
        spmm.check_csr(weight, "weight")
        self.kernel = _check_kernel(kernel)
        self.name = name
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._check_parameters()

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, *, kernel: str = "auto", name: str | None = None) -> "CSRLinear":
        """The same layer with its (masked) weight in CSR form; zeros are not stored."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear; got {type(linear).__name__}")
        return cls(_to_csr(linear.weight.detach()), linear.bias, kernel=kernel, name=name)

    def __deepcopy__(self, memo):
        # copy.deepcopy cannot reach a CSR tensor's storage; clone() copies its three arrays.
        bias = None if self.bias is None else self.bias.clone()
        replica = type(self)(self.weight.clone(), bias, kernel=self.kernel, name=self.name)
        replica.train(self.training)
        memo[id(self)] = replica
        return replica

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def _label(self) -> str:
        shape = getattr(self.weight, "shape", ())  # (an assignment may have left None)
        return self.name or (f"CSRLinear({shape[1]}, {shape[0]})" if len(shape) == 2 else "CSRLinear")

    def _check_parameters(self) -> None:
        """``weight`` (CSR) and ``bias`` as an assignment may have left them: ValueError if they do not fit."""
        w, b = self.weight, self.bias
        if not isinstance(w, torch.Tensor) or w.layout != torch.sparse_csr or w.dim() != 2:
            raise ValueError(f"{self._label()}.weight must be a 2-D sparse CSR tensor")
        if b is not None and (b.shape != (w.shape[0],) or b.dtype != w.dtype or b.device != w.device):
            raise ValueError(f"{self._label()}.bias must be a {w.dtype} ({w.shape[0]},) tensor on {w.device} like "
                             f"the weight; got {b.dtype} {tuple(b.shape)} on {b.device}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weight = state_dict.get(prefix + "weight")
        if isinstance(weight, torch.Tensor):  # refused with the checkpoint's key, before torch copies it in
            spmm.check_csr(weight, prefix + "weight")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the dense weight."""
        self._check_parameters()
        spmm.check_csr(self.weight, f"{self._label()}.weight")  # to_dense trusts the indices too
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

    def _native_fits(self) -> bool:
        """Whether the weight and bias suit the native kernel (:func:`spmm.check_weight`); checked every time,
        since ``.to()``, an assignment or ``load_state_dict`` may have changed them."""
        try:
            spmm.check_weight(self.weight, self.bias)
        except ValueError:
            return False
        return True

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

    def _check_input(self, x) -> None:
        w = self.weight
        if not isinstance(x, torch.Tensor) or x.layout != torch.strided:
            got = f"a {x.layout} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{self._label()} input must be a dense torch.Tensor; got {got}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self._label()} expects inputs with {self.in_features} features in the last "
                             f"dimension; got shape {tuple(x.shape)}")
        if x.dtype != w.dtype:
            raise TypeError(f"{self._label()} input must be {w.dtype} like its weight; got {x.dtype} "
                            "(convert the input, or the layer with .to(dtype))")
        if x.device != w.device:
            raise ValueError(f"{self._label()} input is on {x.device}, its weight on {w.device}")

    def _check_indices(self, w: torch.Tensor, name: str) -> None:
        """:func:`spmm.check_csr`, skipped when these very index tensors passed it and were not written since.

        The key holds the weight object, the index tensors' storage and their version counters (an
        in-place edit of ``crow_indices()`` or ``col_indices()`` bumps them), so any change is re-checked.
        """
        crow, col = w.crow_indices(), w.col_indices()
        key = (id(w), tuple(w.shape), crow.data_ptr(), col.data_ptr(), crow.numel(), col.numel(),
               crow._version, col._version)
        if getattr(self, "_indices_checked", None) != key:
            spmm.check_csr(w, name)
            self._indices_checked = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_parameters()
        self._check_input(x)
        w, b, name = self.weight, self.bias, f"{self._label()}.weight"
        flat = x.reshape(math.prod(x.shape[:-1]), self.in_features)
        if self.uses_native(x):  # the kernel checks the indices as it goes
            # flat.T is already contiguous when flat came out of a native CSR layer
            out = spmm._run(w, b, flat.T.contiguous(), name).T
        else:
            self._check_indices(w, name)  # torch's CSR kernels trust the indices: a bad one crashes them
            if flat.shape[0] == 1:  # one input: a sparse matrix-vector product
                out = torch.mv(w, flat[0]) if b is None else torch.addmv(b, w, flat[0])
            elif b is None:
                out = (w @ flat.T).T
            else:
                out = torch.addmm(b.unsqueeze(1), w, flat.T).T
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
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

    def convert(name, child):
        if isinstance(child, nn.Linear):  # plain or masked (parametrize subclasses it)
            zeros = 1 - int(torch.count_nonzero(child.weight)) / max(1, child.weight.numel())
            if zeros >= min_sparsity:
                return CSRLinear.from_linear(child, kernel=kernel, name=name)
        return None

    if _replace_children(copy_, convert) == 0:
        raise ValueError(f"model has no nn.Linear layer with at least min_sparsity={min_sparsity} zeros to convert")
    return copy_.eval()


def to_dense_linear(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every :class:`CSRLinear` turned back into a dense ``nn.Linear``."""
    copy_ = copy.deepcopy(check_module(model))
    _replace_children(copy_, lambda _n, child: child.to_linear() if isinstance(child, CSRLinear) else None)
    return copy_
