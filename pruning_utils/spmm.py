"""A small CPU kernel for sparse (CSR) x dense products, compiled on first use.

torch's generic CSR x dense kernel runs at about a quarter of the dense GEMM's FLOP rate on a CPU, so a
90%-sparse layer, with 10x fewer multiply-adds, is only ~2.5x faster than dense at batch 64. Sparse
inference engines do better with a kernel specialised for one layout, and so does this one (60 lines
of C):

* The weight ``W`` (out x in) is CSR; the activations are kept *feature-major*, ``X^T`` (in x batch),
  row-major. Output row ``r`` is ``bias[r] + sum_k W[r, col_k] * X^T[col_k, :]``: for every non-zero
  weight, one broadcast and a few vector multiply-adds over a contiguous row of the batch, with the
  accumulators held in registers.
* The output ``Y^T = W X^T`` is feature-major too, so a stack of such layers passes activations
  along without a transpose.
* Rows are shared out with OpenMP. With a PyPI torch on Linux the kernel links the ``libgomp.so.1``
  torch has already loaded, so it uses torch's own thread pool (``torch.set_num_threads`` applies).

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

__all__ = ["available", "check_weight", "csr_matmul", "status"]

SOURCE = r"""
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));   /* 8 floats: one AVX register, or two SSE/NEON ones */
static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* out[r, :] = bias[r] + sum over k in row r of val[k] * x[col[k], :]
   x: (in_features, n) and out: (rows, n), both row-major float32; bias may be NULL. */
void csr_matmul(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
                const float *x, float *out, int64_t rows, int64_t n) {
    const int64_t work = (int64_t)crow[rows] * n;
#pragma omp parallel for schedule(dynamic, 16) if (work > 32768)  /* dynamic: a busy core delays only its chunks */
    for (int64_t r = 0; r < rows; ++r) {
        const float b = bias ? bias[r] : 0.0f;
        const int32_t k0 = crow[r], k1 = crow[r + 1];
        float *o = out + r * n;
        if (n == 1) {                    /* one input: a sparse dot product per row, four partial sums */
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            int32_t k = k0;
            for (; k + 4 <= k1; k += 4) {
                s0 += val[k] * x[col[k]];         s1 += val[k + 1] * x[col[k + 1]];
                s2 += val[k + 2] * x[col[k + 2]]; s3 += val[k + 3] * x[col[k + 3]];
            }
            for (; k < k1; ++k) s0 += val[k] * x[col[k]];
            o[0] = b + ((s0 + s1) + (s2 + s3));
            continue;
        }
        int64_t j = 0;
        for (; j + 64 <= n; j += 64) {   /* 64 columns: eight independent accumulators */
            v8 a0 = {b, b, b, b, b, b, b, b}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int32_t k = k0; k < k1; ++k) {
                const float v = val[k];
                const float *xr = x + (int64_t)col[k] * n + j;
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
                const float *xr = x + (int64_t)col[k] * n + j;
                a0 += v * ld(xr); a1 += v * ld(xr + 8);
            }
            st(o + j, a0); st(o + j + 8, a1);
        }
        for (; j + 8 <= n; j += 8) {
            v8 a0 = {b, b, b, b, b, b, b, b};
            for (int32_t k = k0; k < k1; ++k) a0 += val[k] * ld(x + (int64_t)col[k] * n + j);
            st(o + j, a0);
        }
        for (; j < n; ++j) {             /* the last few columns */
            float a = b;
            for (int32_t k = k0; k < k1; ++k) a += val[k] * x[(int64_t)col[k] * n + j];
            o[j] = a;
        }
    }
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
    cc = _compiler()
    if cc is None:
        _status = "unavailable (no C compiler found; set CC): torch's CSR kernel is used"
        return
    errors = []
    with tempfile.TemporaryDirectory(prefix="pruning-spmm-") as tmp:
        src = Path(tmp) / "spmm.c"
        src.write_text(SOURCE)
        for i, flags in enumerate(_FLAG_SETS):
            out = Path(tmp) / f"spmm{i}{'.dylib' if sys.platform == 'darwin' else '.so'}"
            cmd = [cc, *flags, "-shared", "-fPIC", str(src), "-o", str(out)]
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
            ptr = ctypes.c_void_p
            lib.csr_matmul.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, ctypes.c_int64, ctypes.c_int64]
            lib.csr_matmul.restype = None
            _lib = lib
            _status = f"compiled with {Path(cc).name} {' '.join(flags)}"
            return
    _status = "unavailable (compiling failed: " + "; ".join(errors) + "): torch's CSR kernel is used"


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
    only: no autograd graph is recorded. Raises RuntimeError when the kernel is not available.
    """
    if not available():
        raise RuntimeError(f"the native CSR kernel is {status()}")
    check_weight(weight, bias)
    rows, cols = weight.shape
    if xt.dim() != 2 or xt.shape[0] != cols or xt.dtype != torch.float32:
        raise ValueError(f"xt must be a float32 ({cols}, n) tensor; got {xt.dtype} {tuple(xt.shape)}")
    if xt.device.type != "cpu":
        raise ValueError("the native CSR kernel runs on the CPU only")
    return _run(weight.crow_indices().contiguous(), weight.col_indices().contiguous(), weight.values().contiguous(),
                None if bias is None else bias.contiguous(), xt.contiguous(), rows)


def check_weight(weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """What the kernel runs: a 2-D CSR ``weight`` on the CPU with int32 indices and float32 values, and a
    float32 ``bias`` of one value per row (or None). Anything else raises ValueError saying what."""
    if weight.layout != torch.sparse_csr or weight.dim() != 2:
        raise ValueError("weight must be a 2-D sparse CSR tensor")
    crow, col, val = weight.crow_indices(), weight.col_indices(), weight.values()
    if crow.dtype != torch.int32 or col.dtype != torch.int32 or val.dtype != torch.float32:
        raise ValueError(f"weight must have int32 indices and float32 values; got {crow.dtype}, {val.dtype}")
    rows = weight.shape[0]
    if bias is not None and (bias.shape != (rows,) or bias.dtype != torch.float32):
        raise ValueError(f"bias must be a float32 ({rows},) tensor; got {bias.dtype} {tuple(bias.shape)}")
    if weight.device.type != "cpu" or (bias is not None and bias.device.type != "cpu"):
        raise ValueError("the native CSR kernel runs on the CPU only")


def _run(crow, col, val, bias, xt, rows: int) -> torch.Tensor:
    """The call itself, on contiguous tensors already checked (by csr_matmul, or once by CSRLinear)."""
    out = torch.empty(rows, xt.shape[1], dtype=torch.float32)
    _lib.csr_matmul(crow.data_ptr(), col.data_ptr(), val.data_ptr(), None if bias is None else bias.data_ptr(),
                    xt.data_ptr(), out.data_ptr(), rows, xt.shape[1])
    return out
