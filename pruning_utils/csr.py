"""Sparse CSR execution of Linear layers: :class:`CSRLinear`, :func:`to_sparse_linear`, :func:`to_dense_linear`.

The product runs on torch's CSR kernel or on the course's compiled one (:mod:`pruning_utils.spmm`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Callable

import torch
from torch import nn

from . import spmm
from .checks import check_fraction

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
