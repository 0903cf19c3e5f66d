"""The course's sparse checkpoint format: a bitmask (or CSR indices) plus the non-zero values.

:func:`save_sparse` / :func:`load_sparse` round-trip a state_dict exactly (sparse CSR tensors, such as
the weights of :class:`~pruning_utils.CSRLinear`, come back as the same CSR tensors); :func:`checkpoint_sizes`
compares the file with a dense ``torch.save``. :func:`load_sparse` checks every part of the file before
it builds a tensor: a damaged or foreign file raises :class:`~pruning_utils.CheckpointError`.
"""

from __future__ import annotations

import math
import numbers
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .config import CheckpointError, _describe, check_checkpoint_keys, load_checkpoint, save_checkpoint
from .csr import _quiet_sparse, _to_csr
from .params import plain_state_dict

__all__ = ["ENCODINGS", "checkpoint_sizes", "load_sparse", "save_sparse"]

SPARSE_FORMAT = "pruning_utils.sparse"
SPARSE_VERSION = 1
ENCODINGS = ("bitmask", "csr")
# How each entry is stored: dense, one of ENCODINGS, or "sparse_csr" for a tensor that is a sparse CSR
# tensor in the state_dict itself (its own indices and values, read back as the same CSR tensor).
KINDS = ("dense", *ENCODINGS, "sparse_csr")
_INDEX_DTYPES = (torch.int32, torch.int64)

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


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    """A non-empty ``t`` viewed as ``(out, -1)`` (a vector as one row)."""
    rows = t.shape[0] if t.dim() > 1 else 1
    return t.reshape(rows, t.numel() // rows)


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


def _encode(key: str, tensor: torch.Tensor, encoding: str, values_dtype: torch.dtype | None, blobs: _Blobs) -> dict:
    """The smallest of dense / sparse encodings for one tensor (sparse only for floating tensors)."""
    t = tensor.detach().cpu()
    if t.layout == torch.sparse_csr:
        if t.dim() != 2 or t.dense_dim() != 0:
            raise TypeError(f"state_dict entry {key!r} is a {t.dim()}-D sparse CSR tensor; save_sparse stores "
                            "2-D ones (as CSRLinear holds)")
        values = t.values()
        if values_dtype is not None and values.is_floating_point():
            values = values.to(values_dtype)
        return {"dtype": _dtype_name(t.dtype), "shape": list(t.shape), "kind": "sparse_csr",
                "crow": blobs.add(t.crow_indices()), "col": blobs.add(t.col_indices()), "values": blobs.add(values)}
    if t.layout != torch.strided:
        raise TypeError(f"state_dict entry {key!r} has layout {t.layout}; save_sparse stores dense (strided) "
                        "and sparse CSR tensors")
    stored = t.to(values_dtype) if values_dtype is not None and t.is_floating_point() else t
    entry = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
    parts = {"data": stored}
    kind = "dense"
    if t.is_floating_point() and t.dim() > 0 and t.numel() > 0:
        non_zero = t.reshape(-1) != 0
        if encoding == "bitmask":
            sparse = {"bits": _pack_bits(non_zero), "values": stored.reshape(-1)[non_zero]}
        else:
            csr = _to_csr(_as_matrix(stored))
            sparse = {"crow": csr.crow_indices(), "col": csr.col_indices(), "values": csr.values()}
        if sum(_nbytes(v) for v in sparse.values()) < _nbytes(stored):
            kind, parts = encoding, sparse
    entry["kind"] = kind
    entry.update({name: blobs.add(value) for name, value in parts.items()})
    return entry


class _Reader:
    """Reads the entries of one sparse checkpoint, checking every reference before it is used."""

    def __init__(self, path, blobs):
        self.path = str(path)
        self.blobs = blobs

    def fail(self, message: str, key: str | None = None) -> CheckpointError:
        where = f"sparse checkpoint {self.path!r}" + ("" if key is None else f", entry {key!r}")
        return CheckpointError(f"{where}: {message}")

    def part(self, key, entry, name, dtypes, numel=None) -> torch.Tensor:
        ref = entry.get(name)
        if (not isinstance(ref, (list, tuple)) or len(ref) != 3 or not isinstance(ref[0], str)
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in ref[1:])):
            raise self.fail(f"part {name!r} should be a [blob name, offset, length] reference; got {ref!r:.80}", key)
        blob_name, offset, length = ref
        blob = self.blobs.get(blob_name)
        if blob is None:
            raise self.fail(f"part {name!r} refers to blob {blob_name!r}, which the file does not hold", key)
        if offset + length > blob.numel():
            raise self.fail(f"part {name!r} reads [{offset}, {offset + length}) of blob {blob_name!r}, which holds "
                            f"{blob.numel()} values (truncated?)", key)
        if blob.dtype not in dtypes:
            raise self.fail(f"part {name!r} is {blob.dtype}; expected {' or '.join(map(str, dtypes))}", key)
        if numel is not None and length != numel:
            raise self.fail(f"part {name!r} holds {length} values; the entry's shape needs {numel}", key)
        return blob[offset:offset + length]

    def csr_parts(self, key, entry, rows: int, cols: int, value_dtypes):
        crow = self.part(key, entry, "crow", _INDEX_DTYPES, rows + 1)
        col = self.part(key, entry, "col", _INDEX_DTYPES)
        values = self.part(key, entry, "values", value_dtypes, col.numel())
        try:
            with _quiet_sparse():  # torch checks the indices: a damaged file raises instead of crashing
                torch.sparse_csr_tensor(crow, col, values, size=(rows, cols), check_invariants=True)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise self.fail(f"its CSR indices are damaged ({type(exc).__name__}: {exc})", key) from exc
        return crow, col, values

    def decode(self, key, entry) -> torch.Tensor:
        if not isinstance(key, str):
            raise self.fail(f"entry name {key!r} is not a str")
        if not isinstance(entry, dict):
            raise self.fail(f"should be a dict; it is a {type(entry).__name__}", key)
        dtype = getattr(torch, entry["dtype"], None) if isinstance(entry.get("dtype"), str) else None
        if not isinstance(dtype, torch.dtype):
            raise self.fail(f"dtype {entry.get('dtype')!r} is not a torch dtype", key)
        shape = entry.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise self.fail(f"shape {shape!r:.80} is not a list of sizes >= 0", key)
        shape = tuple(int(s) for s in shape)
        kind = entry.get("kind")
        if kind not in KINDS:
            raise self.fail(f"has unknown kind {kind!r} (this course writes {', '.join(KINDS)})", key)
        n = math.prod(shape)
        floating = dtype.is_floating_point
        # values are stored in the tensor's dtype, or in float16 (save_sparse(..., fp16=True))
        value_dtypes = (dtype, torch.float16) if floating else (dtype,)
        if kind != "dense" and not floating and kind != "sparse_csr":
            raise self.fail(f"a {dtype} tensor stored as {kind!r}; only floating tensors are", key)
        if kind == "dense":
            return self.part(key, entry, "data", value_dtypes, n).to(dtype).reshape(shape)
        if kind == "bitmask":
            mask = _unpack_bits(self.part(key, entry, "bits", (torch.uint8,), (n + 7) // 8), n)
            values = self.part(key, entry, "values", value_dtypes, int(mask.sum()))
            out = torch.zeros(n, dtype=dtype)
            out[mask] = values.to(dtype)
            return out.reshape(shape)
        if kind == "csr":
            rows = shape[0] if len(shape) > 1 else 1
            if n == 0 or not shape:
                raise self.fail(f"a CSR entry needs a non-empty tensor; shape is {shape}", key)
            crow, col, values = self.csr_parts(key, entry, rows, n // rows, value_dtypes)
            with _quiet_sparse():
                matrix = torch.sparse_csr_tensor(crow.long(), col.long(), values.to(dtype), size=(rows, n // rows),
                                                 check_invariants=False)  # checked in csr_parts
            return matrix.to_dense().reshape(shape)
        # sparse_csr: the tensor was a sparse CSR tensor; it comes back as one, with its own index dtypes
        if len(shape) != 2:
            raise self.fail(f"a sparse CSR tensor must be 2-D; shape is {shape}", key)
        crow, col, values = self.csr_parts(key, entry, shape[0], shape[1], value_dtypes)
        with _quiet_sparse():
            return torch.sparse_csr_tensor(crow.clone(), col.clone(), values.to(dtype).clone(), size=shape,
                                           check_invariants=False)  # checked in csr_parts


def save_sparse(model_or_state_dict, path, *, encoding: str = "bitmask", fp16: bool = False) -> Path:
    """Write a compact checkpoint of a (pruned) model: the zeros cost a bit each, or nothing.

    Every floating tensor is stored in the smaller of: dense; ``encoding="bitmask"`` (one bit per entry
    saying "non-zero" + the non-zero values); ``encoding="csr"`` (row pointers and int32 column indices
    of the tensor viewed as ``(out, -1)`` + the non-zero values). A tensor that already is a sparse CSR
    tensor (the weight of a :class:`~pruning_utils.CSRLinear`, from :func:`~pruning_utils.to_sparse_linear`)
    is stored as its own indices and values. All parts are packed into one flat blob per dtype. Masked
    models are saved as if permanent; empty tensors are kept. With ``fp16=True`` floating values are
    stored in half precision (half the bytes, no longer exact). The file is written atomically;
    :func:`load_sparse` reads it back.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}; got {encoding!r}")
    if not isinstance(fp16, bool):
        raise TypeError(f"fp16 must be True or False; got {fp16!r}")
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
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be str; got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict entry {key!r} is not a tensor ({type(value).__name__})")
        entries[key] = _encode(key, value, encoding, values_dtype, blobs)
    payload = {"format": SPARSE_FORMAT, "version": SPARSE_VERSION, "encoding": encoding,
               "entries": entries, "blobs": blobs.tensors()}
    return save_checkpoint(payload, path)


def load_sparse(path) -> dict:
    """Read a :func:`save_sparse` file back into a ``state_dict`` (original dtypes and layouts).

    Every malformed or foreign file (not a dict, another format, missing or mistyped parts, references
    outside the stored data, damaged indices) raises :class:`~pruning_utils.CheckpointError` naming the
    file and the entry.
    """
    payload = load_checkpoint(path, what="sparse checkpoint")
    name = str(path)
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise CheckpointError(f"{name!r} is not a sparse checkpoint written by save_sparse (it holds "
                              f"{_describe(payload)})")
    if payload.get("version") != SPARSE_VERSION:
        raise CheckpointError(f"{name!r} has sparse format version {payload.get('version')!r}; "
                              f"this course reads version {SPARSE_VERSION}")
    check_checkpoint_keys(payload, {"encoding": str, "entries": dict, "blobs": dict}, path, "sparse checkpoint")
    if payload["encoding"] not in ENCODINGS:
        raise CheckpointError(f"sparse checkpoint {name!r} has encoding {payload['encoding']!r}; "
                              f"expected one of {ENCODINGS}")
    blobs = payload["blobs"]
    for blob_name, blob in blobs.items():
        if not isinstance(blob, torch.Tensor) or blob.layout != torch.strided or blob.dim() != 1:
            raise CheckpointError(f"sparse checkpoint {name!r}: blob {blob_name!r} should be a 1-D tensor; "
                                  f"it is {_describe(blob)}")
    reader = _Reader(path, blobs)
    return {key: reader.decode(key, entry) for key, entry in payload["entries"].items()}


def checkpoint_sizes(model: nn.Module, *, encoding: str = "bitmask", fp16: bool = False) -> dict:
    """Bytes on disk of the model's plain ``state_dict`` (``torch.save``) and of :func:`save_sparse`."""
    with tempfile.TemporaryDirectory(prefix="pruning-size-") as tmp:
        state = plain_state_dict(model)
        dense = save_checkpoint(state, Path(tmp) / "dense.pt").stat().st_size
        sparse = save_sparse(state, Path(tmp) / "sparse.pt", encoding=encoding, fp16=fp16).stat().st_size
    return {"dense_bytes": dense, "sparse_bytes": sparse, "size_ratio": dense / sparse}
