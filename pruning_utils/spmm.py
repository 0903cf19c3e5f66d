"""A small CPU kernel for sparse (CSR) x dense products, compiled on first use.

torch's generic CSR x dense kernel runs at about a quarter of the dense GEMM's FLOP rate on a CPU, so a
90%-sparse layer, with 10x fewer multiply-adds, is only ~2.5x faster than dense at batch 64. Sparse
inference engines do better with a kernel specialised for one layout, and so does this one (90 lines
of C):

* The weight ``W`` (out x in) is CSR; the activations are kept *feature-major*, ``X^T`` (in x batch),
  row-major. Output row ``r`` is ``bias[r] + sum_k W[r, col_k] * X^T[col_k, :]``: for every non-zero
  weight, one broadcast and a few vector multiply-adds over a contiguous row of the batch, with the
  accumulators held in registers.
* The output ``Y^T = W X^T`` is feature-major too, so a stack of such layers passes activations
  along without a transpose.
* Rows are shared out with OpenMP. With a PyPI torch on Linux the kernel links the ``libgomp.so.1``
  torch has already loaded, so it uses torch's own thread pool (``torch.set_num_threads`` applies).
* It never trusts the indices: every row range and every column index is checked where the kernel
  reads it, not in an earlier pass (a bad one never becomes an address), and the failed invariants
  come back as a code, which :func:`csr_matmul` turns into the ValueError of :func:`check_csr`.
  Checking as it goes costs about 1% at batch 64 (the indices are loaded anyway); a separate pass
  over the indices before every call, as torch's kernel gets, costs more (the timings are in
  ``benchmarks/sparse_inference.py``).

The C source below is compiled with the system's C compiler (``$CC``, else ``cc``) into a temporary
directory the first time :func:`available` or :func:`csr_matmul` is called, loaded with ``ctypes``,
and the directory is removed. Without a compiler (or with ``PRUNING_NATIVE_SPMM=0``) nothing is
compiled, :func:`available` is False and :class:`~pruning_utils.csr.CSRLinear` uses torch's kernel.
:func:`status` says which, and why.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["available", "check_csr", "check_weight", "csr_matmul", "status"]

SOURCE = r"""
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));   /* 8 floats: one AVX register, or two SSE/NEON ones */
static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* The kernel checks the CSR invariants as it goes, so no input makes it read or write out of bounds:
   each row's range [crow[r], crow[r+1]) must lie in [0, nnz], and each column index, where it is used,
   in [0, cols) - a bad one is noted and replaced by 0 before it becomes an address. Defining
   CSR_UNCHECKED builds the kernel without them (benchmarks/sparse_inference.py times what they cost). */
#ifdef CSR_UNCHECKED
#define CHECKS 0
#else
#define CHECKS 1
#endif
static inline int64_t column(int32_t c, int64_t cols, int *bad) {
    if (!CHECKS || __builtin_expect((uint64_t)(int64_t)c < (uint64_t)cols, 1)) return c;  /* c < 0 wraps */
    *bad = 1;
    return 0;
}
#define COL(k) column(col[k], cols, &bad)

/* out[r, :] = bias[r] + sum over k in row r of val[k] * x[col[k], :]
   x: (cols, n) and out: (rows, n), both row-major float32; bias may be NULL; crow holds rows + 1
   entries, col and val nnz. Returns 0, or the invariants that failed (the output is then garbage):
   1 crow[0] != 0, 2 crow[rows] != nnz, 4 a row's range decreases or leaves [0, nnz], 8 a column
   index outside [0, cols). */
int csr_matmul(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
               const float *x, float *out, int64_t rows, int64_t cols, int64_t nnz, int64_t n) {
    if (CHECKS && (crow[0] != 0 || crow[rows] != nnz)) return (crow[0] != 0) | (crow[rows] != nnz) << 1;
    if (CHECKS && nnz > 0 && cols == 0) return 8;   /* no column to stand in for a bad one */
    int failed = 0;
    /* dynamic: a busy core delays only its own chunks */
#pragma omp parallel for schedule(dynamic, 16) reduction(|:failed) if (nnz * n > 32768)
    for (int64_t r = 0; r < rows; ++r) {
        const float b = bias ? bias[r] : 0.0f;
        const int32_t k0 = crow[r], k1 = crow[r + 1];
        float *o = out + r * n;
        int bad = 0;
        if (CHECKS && (k0 < 0 || k1 < k0 || k1 > nnz)) { failed |= 4; continue; }
        if (n == 1) {                    /* one input: a sparse dot product per row, four partial sums */
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            int64_t k = k0;
            for (; k + 4 <= k1; k += 4) {
                s0 += val[k] * x[COL(k)];         s1 += val[k + 1] * x[COL(k + 1)];
                s2 += val[k + 2] * x[COL(k + 2)]; s3 += val[k + 3] * x[COL(k + 3)];
            }
            for (; k < k1; ++k) s0 += val[k] * x[COL(k)];
            o[0] = b + ((s0 + s1) + (s2 + s3));
            failed |= bad << 3;
            continue;
        }
        int64_t j = 0;
        for (; j + 64 <= n; j += 64) {   /* 64 columns: eight independent accumulators */
            v8 a0 = {b, b, b, b, b, b, b, b}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int32_t k = k0; k < k1; ++k) {
                const float v = val[k];
                const float *xr = x + COL(k) * n + j;
                a0 += v * ld(xr);      a1 += v * ld(xr + 8);  a2 += v * ld(xr + 16); a3 += v * ld(xr + 24);
                a4 += v * ld(xr + 32); a5 += v * ld(xr + 40); a6 += v * ld(xr + 48); a7 += v * ld(xr + 56);
            }
            st(o + j, a0);      st(o + j + 8, a1);  st(o + j + 16, a2); st(o + j + 24, a3);
            st(o + j + 32, a4); st(o + j + 40, a5); st(o + j + 48, a6); st(o + j + 56, a7);
        }
        for (; j + 16 <= n; j += 16) {
            v8 a0 = {b, b, b, b, b, b, b, b}, a1 = a0;
            for (int32_t k = k0; k < k1; ++k) {
                const float v = val[k];
                const float *xr = x + COL(k) * n + j;
                a0 += v * ld(xr); a1 += v * ld(xr + 8);
            }
            st(o + j, a0); st(o + j + 8, a1);
        }
        for (; j + 8 <= n; j += 8) {     /* two accumulators, so one's additions do not wait for the other's */
            v8 a0 = {b, b, b, b, b, b, b, b}, a1 = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t k = k0;
            for (; k + 2 <= k1; k += 2) {
                a0 += val[k] * ld(x + COL(k) * n + j); a1 += val[k + 1] * ld(x + COL(k + 1) * n + j);
            }
            if (k < k1) a0 += val[k] * ld(x + COL(k) * n + j);
            st(o + j, a0 + a1);
        }
        for (; j < n; ++j) {             /* the last few columns */
            float a0 = b, a1 = 0.0f;
            int64_t k = k0;
            for (; k + 2 <= k1; k += 2) {
                a0 += val[k] * x[COL(k) * n + j]; a1 += val[k + 1] * x[COL(k + 1) * n + j];
            }
            if (k < k1) a0 += val[k] * x[COL(k) * n + j];
            o[j] = a0 + a1;
        }
        failed |= bad << 3;
    }
    return failed;
}
"""

# Tried in order: the fastest build this machine's compiler accepts.
_FLAG_SETS = (
    ["-O3", "-fno-tree-vectorize", "-march=native", "-fopenmp"],
    ["-O3", "-fno-tree-vectorize", "-fopenmp"],
    ["-O3", "-fno-tree-vectorize"],
)

_lib = None
_status: str | None = None
_lock = threading.Lock()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _load() -> None:
    """Compile and load the kernel once per process; afterwards ``_lib`` is set or ``_status`` says why not."""
    if _status is not None:
        return
    with _lock:
        if _status is None:
            _build()


def _build() -> None:
    global _lib, _status
    if os.environ.get("PRUNING_NATIVE_SPMM", "1").strip().lower() in {"0", "false", "no", "off"}:
        _status = "off (PRUNING_NATIVE_SPMM=0): torch's CSR kernel is used"
        return
    _lib, _status = _compile()


def _compile(defines: tuple[str, ...] = ()) -> tuple[ctypes.CDLL | None, str]:
    """Build :data:`SOURCE` (with ``-D`` ``defines``) in a temporary directory and load it: ``(library, how
    it was built)``, or ``(None, why not)``."""
    cc = _compiler()
    if cc is None:
        return None, "unavailable (no C compiler found; set CC): torch's CSR kernel is used"
    errors = []
    with tempfile.TemporaryDirectory(prefix="pruning-spmm-") as tmp:
        src = Path(tmp) / "spmm.c"
        src.write_text(SOURCE)
        for i, flags in enumerate(_FLAG_SETS):
            out = Path(tmp) / f"spmm{i}{'.dylib' if sys.platform == 'darwin' else '.so'}"
            cmd = [cc, *flags, *(f"-D{d}" for d in defines), "-shared", "-fPIC", str(src), "-o", str(out)]
            try:
                result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{' '.join(flags)}: {exc}")
                continue
            if result.returncode != 0:
                errors.append(f"{' '.join(flags)}: {result.stderr.strip().splitlines()[-1:]}")
                continue
            try:
                lib = ctypes.CDLL(str(out))  # the mapping outlives the file, so the directory can go
            except OSError as exc:
                errors.append(f"{' '.join(flags)}: {exc}")
                continue
            ptr, i64 = ctypes.c_void_p, ctypes.c_int64
            lib.csr_matmul.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64]
            lib.csr_matmul.restype = ctypes.c_int
            return lib, f"compiled with {Path(cc).name} {' '.join(flags)}"
    return None, "unavailable (compiling failed: " + "; ".join(errors) + "): torch's CSR kernel is used"


def available() -> bool:
    """True when the kernel is compiled and loaded (compiles it on the first call)."""
    _load()
    return _lib is not None


def status() -> str:
    """How the kernel was built, or why torch's CSR kernel is used instead."""
    _load()
    return _status


def csr_matmul(weight: torch.Tensor, xt: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``weight @ xt + bias[:, None]`` for a CSR ``weight`` (float32, int32 indices) and a dense ``xt``.

    ``xt`` is (in_features, n); the result is a new contiguous (out_features, n) tensor. Inference
    only: no autograd graph is recorded. A ``weight`` whose indices break the CSR invariants raises
    the ValueError of :func:`check_csr`. Raises RuntimeError when the kernel is not available.
    """
    if not available():
        raise RuntimeError(f"the native CSR kernel is {status()}")
    check_weight(weight, bias)
    rows, cols = weight.shape
    if not isinstance(xt, torch.Tensor) or xt.dim() != 2 or xt.shape[0] != cols or xt.dtype != torch.float32:
        got = f"{xt.dtype} {tuple(xt.shape)}" if isinstance(xt, torch.Tensor) else type(xt).__name__
        raise ValueError(f"xt must be a float32 ({cols}, n) tensor; got {got}")
    if xt.device.type != "cpu":
        raise ValueError("the native CSR kernel runs on the CPU only")
    return _run(weight, bias, xt.contiguous())


def check_weight(weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """What the kernel runs: a 2-D CSR ``weight`` on the CPU with int32 indices and float32 values, and a
    float32 ``bias`` of one value per row (or None). Anything else raises ValueError saying what."""
    if not isinstance(weight, torch.Tensor) or weight.layout != torch.sparse_csr or weight.dim() != 2:
        raise ValueError("weight must be a 2-D sparse CSR tensor")
    crow, col, val = weight.crow_indices(), weight.col_indices(), weight.values()
    if crow.dtype != torch.int32 or col.dtype != torch.int32 or val.dtype != torch.float32:
        raise ValueError(f"weight must have int32 indices and float32 values; got {crow.dtype}, {val.dtype}")
    rows = weight.shape[0]
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (rows,)
                             or bias.dtype != torch.float32):
        got = f"{bias.dtype} {tuple(bias.shape)}" if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must be a float32 ({rows},) tensor; got {got}")
    if weight.device.type != "cpu" or (bias is not None and bias.device.type != "cpu"):
        raise ValueError("the native CSR kernel runs on the CPU only")


def check_csr(weight: torch.Tensor, name: str = "weight") -> None:
    """The CSR invariants every kernel relies on (torch's too: its CSR products crash on bad indices).

    For an (m, n) CSR ``weight``: ``crow_indices`` holds m + 1 entries, starts at 0, never decreases and
    ends at nnz, the length of both ``col_indices`` and ``values``; every column index is in [0, n).
    (Columns need not be sorted within a row: every kernel sums them in any order.) Three vectorised
    reductions (the one over the column indices costs most); a failure raises ValueError naming
    ``name``, the invariant and where it fails.
    """
    if not isinstance(weight, torch.Tensor) or weight.layout != torch.sparse_csr or weight.dim() != 2:
        raise ValueError(f"{name} must be a 2-D sparse CSR tensor")
    rows, cols = weight.shape
    crow, col, val = weight.crow_indices(), weight.col_indices(), weight.values()
    nnz = col.numel()

    def fail(what: str):
        raise ValueError(f"{name} is not a valid CSR matrix: {what}")

    if crow.dim() != 1 or crow.numel() != rows + 1:
        fail(f"crow_indices must hold rows + 1 = {rows + 1} entries; it has shape {tuple(crow.shape)}")
    if col.dim() != 1 or val.dim() != 1 or val.numel() != nnz:
        fail(f"col_indices and values must be 1-D and of one length (nnz); got shapes {tuple(col.shape)} "
             f"and {tuple(val.shape)}")
    first, last = crow[::rows].tolist() if rows else crow.tolist() * 2  # crow[0], crow[rows]
    step = int(torch.diff(crow).min()) if rows else 0
    low, high = (int(v) for v in torch.aminmax(col)) if nnz else (0, -1)
    if first != 0:
        fail(f"crow_indices must start at 0; crow_indices[0] = {first}")
    if step < 0:
        r = int(torch.nonzero(torch.diff(crow) < 0)[0])
        fail(f"crow_indices must not decrease; crow_indices[{r + 1}] = {int(crow[r + 1])} < "
             f"crow_indices[{r}] = {int(crow[r])}")
    if last != nnz:
        fail(f"crow_indices must end at nnz = {nnz} (the length of col_indices and values); "
             f"crow_indices[{rows}] = {last}")
    if low < 0 or high >= cols:
        k = int(torch.nonzero((col < 0) | (col >= cols))[0])
        fail(f"column indices must lie in [0, {cols}); col_indices[{k}] = {int(col[k])}")


_FAILED = ((1, "crow_indices does not start at 0"), (2, "crow_indices does not end at nnz"),
           (4, "a row's range in crow_indices decreases or leaves [0, nnz]"), (8, "a column index is out of range"))


def _run(weight: torch.Tensor, bias: torch.Tensor | None, xt: torch.Tensor, name: str = "weight",
         lib=None) -> torch.Tensor:
    """The call itself, for a ``weight`` and ``bias`` that passed :func:`check_weight` and a contiguous
    float32 ``xt`` of shape (in_features, n) on the CPU: the caller (csr_matmul, CSRLinear) sees to that.
    The kernel checks the indices itself; a failure raises :func:`check_csr`'s ValueError about ``name``.
    ``lib`` is the compiled library (another build of :data:`SOURCE` only in the benchmark)."""
    rows, cols = weight.shape
    crow, col, val = weight.crow_indices().contiguous(), weight.col_indices().contiguous(), weight.values().contiguous()
    bias = None if bias is None else bias.contiguous()
    nnz, n = col.numel(), xt.shape[1]
    if crow.numel() != rows + 1 or val.numel() != nnz or n == 0:  # the lengths the kernel is given, or no
        check_csr(weight, name)                                     # product to check the columns with
    out = torch.empty(rows, n, dtype=torch.float32)
    failed = (_lib if lib is None else lib).csr_matmul(
        crow.data_ptr(), col.data_ptr(), val.data_ptr(), None if bias is None else bias.data_ptr(),
        xt.data_ptr(), out.data_ptr(), rows, cols, nnz, n)
    if failed:
        check_csr(weight, name)  # says which invariant and where
        raise ValueError(f"{name} is not a valid CSR matrix: "  # the indices changed during the call
                         + "; ".join(what for bit, what in _FAILED if failed & bit))
    return out
