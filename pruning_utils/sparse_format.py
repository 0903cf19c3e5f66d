"""The course's sparse checkpoint format: a bitmask (or CSR indices) plus the non-zero values.

:func:`save_sparse` / :func:`load_sparse` round-trip a state_dict exactly; :func:`checkpoint_sizes`
compares the file with a dense ``torch.save``.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .config import CheckpointError, load_checkpoint, save_checkpoint
from .csr import _quiet_sparse, _to_csr
from .params import plain_state_dict

__all__ = ["ENCODINGS", "checkpoint_sizes", "load_sparse", "save_sparse"]

SPARSE_FORMAT = "pruning_utils.sparse"
SPARSE_VERSION = 1
ENCODINGS = ("bitmask", "csr")



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
