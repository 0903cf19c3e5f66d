"""The course's sparse checkpoint format: a bitmask (or CSR indices) plus the non-zero values.

The values can be stored as floats (the tensor's dtype or float16), as int8 codes with one scale per
output channel, or as ``bits``-bit indices into a per-tensor codebook of shared values (Deep
Compression's weight sharing); ``compress=True`` adds LZMA entropy coding over the whole file.

:func:`save_sparse` / :func:`load_sparse` round-trip a state_dict exactly (sparse CSR tensors, such as
the weights of :class:`~pruning_utils.CSRLinear`, come back as the same CSR tensors); :func:`checkpoint_sizes`
compares the file with a dense ``torch.save``. :func:`load_sparse` checks every part of the file before
it builds a tensor: a damaged or foreign file raises :class:`~pruning_utils.CheckpointError`.
"""

from __future__ import annotations

import lzma
import math
import numbers
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .checks import check_choice, check_flag
from .config import CheckpointError, _describe, atomic_path, check_checkpoint_keys, load_checkpoint, save_checkpoint
from .csr import _quiet_sparse, _to_csr
from .params import plain_state_dict
from .quantization import _dequantize, _int8_stored

__all__ = ["ENCODINGS", "VALUES", "checkpoint_sizes", "load_sparse", "save_sparse"]

SPARSE_FORMAT = "pruning_utils.sparse"
SPARSE_VERSION = 1
ENCODINGS = ("bitmask", "csr")
# How each entry is stored: dense, one of ENCODINGS, or "sparse_csr" for a tensor that is a sparse CSR
# tensor in the state_dict itself (its own indices and values, read back as the same CSR tensor).
KINDS = ("dense", *ENCODINGS, "sparse_csr")
_INDEX_DTYPES = (torch.int32, torch.int64)
# How the values of a weight (a floating tensor of >= 2 dims) are stored: "float" in the tensor's dtype,
# "float16", "int8" codes with a float32 scale per output channel, "codebook" indices of ceil(log2 k) bits
# into the tensor's k <= 256 distinct non-zero values. Vectors (biases, norms) are stored as floats.
VALUES = ("float", "float16", "int8", "codebook")
CODEBOOK_MAX = 256
_XZ_MAGIC = b"\xfd7zXZ\x00"
_MAX_UNPACKED = 1 << 32  # a compressed file may not unpack to more than 4 GiB (a damaged or hostile file)

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
_BIT_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)


def _pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A flat bool tensor as bytes, 8 entries per byte (most significant bit first)."""
    pad = (-mask.numel()) % 8
    bits = torch.cat([mask.reshape(-1), mask.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
    return (bits * _BIT_WEIGHTS).sum(dim=1).to(torch.uint8)


def _unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    return ((packed.reshape(-1, 1) >> _BIT_SHIFTS) & 1).reshape(-1)[:n].bool()


def _pack_indices(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """Non-negative integers below ``2**bits`` as ``bits`` bits each (most significant first), packed in bytes."""
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    return _pack_bits(((indices.reshape(-1, 1).long() >> shifts) & 1).bool())


def _unpack_indices(packed: torch.Tensor, n: int, bits: int) -> torch.Tensor:
    weights = 2 ** torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    return (_unpack_bits(packed, n * bits).reshape(n, bits).long() * weights).sum(dim=1)


def _codebook_bits(k: int) -> int:
    return max(1, math.ceil(math.log2(k))) if k > 1 else 1


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


def _quantized_parts(key: str, t: torch.Tensor, values: str):
    """``(effective tensor, quant entry fields, stored values or None)`` for a weight under int8 / codebook."""
    if values == "int8":
        codes, scales = _int8_stored(t)
        return _dequantize(codes, scales).to(t.dtype), {"quant": "int8"}, {"scales": scales}, codes
    flat = t.reshape(-1)
    codebook = torch.unique(flat[flat != 0])
    if codebook.numel() > CODEBOOK_MAX:
        raise ValueError(f"state_dict entry {key!r} has {codebook.numel():,} distinct non-zero values; "
                         f"values='codebook' stores at most {CODEBOOK_MAX} per tensor: share its weights first "
                         "(pruning_utils.share_weights(model, bits)) or use values='int8'")
    return t, {"quant": "codebook", "index_bits": _codebook_bits(codebook.numel())}, {"codebook": codebook}, None


def _encode(key: str, tensor: torch.Tensor, encoding: str, values: str, blobs: _Blobs) -> dict:
    """The smallest of dense / sparse encodings for one tensor (sparse only for floating tensors)."""
    values_dtype = torch.float16 if values == "float16" else None
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
    if values in ("int8", "codebook") and t.is_floating_point() and t.dim() >= 2 and t.numel() > 0:
        return _encode_quantized(key, t, encoding, values, blobs)
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


def _encode_quantized(key: str, t: torch.Tensor, encoding: str, values: str, blobs: _Blobs) -> dict:
    """A weight whose values are int8 codes (+ scales) or codebook indices (+ the codebook).

    int8: dense codes, or the positions (bitmask / CSR) plus the non-zero codes, whichever is smaller.
    codebook: always the positions plus one index per non-zero value.
    """
    if not torch.isfinite(t).all():
        raise ValueError(f"state_dict entry {key!r} has NaN or infinite values; values={values!r} needs finite ones")
    effective, fields, extra, codes = _quantized_parts(key, t, values)
    entry = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape), **fields}
    non_zero = effective.reshape(-1) != 0
    if values == "int8":
        flat_values = codes.reshape(-1)[non_zero]
    else:
        flat_values = _pack_indices(torch.searchsorted(extra["codebook"], effective.reshape(-1)[non_zero]),
                                    fields["index_bits"])
    if encoding == "bitmask":
        sparse = {"bits": _pack_bits(non_zero), "values": flat_values}
    else:
        csr = _to_csr(_as_matrix(effective))
        sparse = {"crow": csr.crow_indices(), "col": csr.col_indices(), "values": flat_values}
    kind, parts = encoding, sparse
    if values == "int8" and _nbytes(codes) <= sum(_nbytes(v) for v in sparse.values()):
        kind, parts = "dense", {"data": codes}
    entry["kind"] = kind
    entry.update({name: blobs.add(value) for name, value in {**parts, **extra}.items()})
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
        """CSR row pointers, columns and values, checked; ``value_dtypes=None``: the positions only (the
        values are another encoding's, read by the caller)."""
        crow = self.part(key, entry, "crow", _INDEX_DTYPES, rows + 1)
        col = self.part(key, entry, "col", _INDEX_DTYPES)
        values = (torch.ones(col.numel()) if value_dtypes is None
                  else self.part(key, entry, "values", value_dtypes, col.numel()))
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
        if "quant" in entry:
            return self.decode_quantized(key, entry, dtype, shape, kind, n)
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
        return self.decode_csr_tensor(key, shape, value_dtypes, entry, dtype)

    def decode_csr_tensor(self, key, shape, value_dtypes, entry, dtype) -> torch.Tensor:
        if len(shape) != 2:
            raise self.fail(f"a sparse CSR tensor must be 2-D; shape is {shape}", key)
        crow, col, values = self.csr_parts(key, entry, shape[0], shape[1], value_dtypes)
        with _quiet_sparse():
            return torch.sparse_csr_tensor(crow.clone(), col.clone(), values.to(dtype).clone(), size=shape,
                                           check_invariants=False)  # checked in csr_parts

    def decode_quantized(self, key, entry, dtype, shape, kind, n) -> torch.Tensor:
        """An int8 / codebook weight: its positions (dense, bitmask or CSR), then its values."""
        quant = entry["quant"]
        if quant not in ("int8", "codebook"):
            raise self.fail(f"has unknown value quantization {quant!r} (this course writes 'int8', 'codebook')", key)
        if not dtype.is_floating_point or len(shape) < 2 or n == 0:
            raise self.fail(f"a {quant} entry must be a non-empty floating tensor of >= 2 dims; it is {dtype} "
                            f"of shape {shape}", key)
        if kind not in ("dense", *ENCODINGS) or (quant == "codebook" and kind == "dense"):
            raise self.fail(f"a {quant} entry cannot be stored as {kind!r}", key)
        rows = shape[0]
        if kind == "dense":
            where = None
            count = n
        elif kind == "bitmask":
            where = _unpack_bits(self.part(key, entry, "bits", (torch.uint8,), (n + 7) // 8), n)
            count = int(where.sum())
        else:
            crow, col, _ = self.csr_parts(key, entry, rows, n // rows, None)
            row_of = torch.repeat_interleave(torch.arange(rows), crow[1:].long() - crow[:-1].long())
            where = torch.zeros(n, dtype=torch.bool)
            where[row_of * (n // rows) + col.long()] = True
            count = col.numel()
        if quant == "int8":
            codes = self.part(key, entry, "data" if kind == "dense" else "values", (torch.int8,), count)
            scales = self.part(key, entry, "scales", (torch.float32,), rows)
            if not torch.isfinite(scales).all() or bool((scales <= 0).any()):
                raise self.fail("its int8 scales must be finite and positive", key)
            flat = codes if where is None else torch.zeros(n, dtype=torch.int8).masked_scatter_(where, codes)
            return _dequantize(flat.reshape(shape), scales).to(dtype)
        bits = entry.get("index_bits")
        if not isinstance(bits, numbers.Integral) or isinstance(bits, bool) or not 1 <= bits <= 8:
            raise self.fail(f"codebook index width {bits!r} should be 1..8 bits", key)
        codebook = self.part(key, entry, "codebook", (dtype,))
        if not (1 if count else 0) <= codebook.numel() <= CODEBOOK_MAX:
            raise self.fail(f"its codebook holds {codebook.numel()} values for {count} non-zero entries; "
                            f"expected {1 if count else 0}..{CODEBOOK_MAX}", key)
        indices = _unpack_indices(self.part(key, entry, "values", (torch.uint8,), (count * bits + 7) // 8),
                                  count, int(bits))
        if count and int(indices.max()) >= codebook.numel():
            raise self.fail(f"an index ({int(indices.max())}) points past its codebook of {codebook.numel()}", key)
        out = torch.zeros(n, dtype=dtype)
        out[where] = codebook[indices]
        return out.reshape(shape)


def save_sparse(model_or_state_dict, path, *, encoding: str = "bitmask", fp16: bool = False, values: str = "float",
                compress: bool = False) -> Path:
    """Write a compact checkpoint of a (pruned) model: the zeros cost a bit each, or nothing.

    Every floating tensor is stored in the smaller of: dense; ``encoding="bitmask"`` (one bit per entry
    saying "non-zero" + the non-zero values); ``encoding="csr"`` (row pointers and int32 column indices
    of the tensor viewed as ``(out, -1)`` + the non-zero values). A tensor that already is a sparse CSR
    tensor (the weight of a :class:`~pruning_utils.CSRLinear`, from :func:`~pruning_utils.to_sparse_linear`)
    is stored as its own indices and values. All parts are packed into one flat blob per dtype. Masked
    models are saved as if permanent; empty tensors are kept. With ``fp16=True`` floating values are
    stored in half precision (half the bytes, no longer exact; the same as ``values="float16"``).

    ``values`` says how the values of each weight (a floating tensor of two or more dimensions) are
    stored: ``"float"`` (its own dtype), ``"float16"``, ``"int8"`` (:func:`~pruning_utils.int8_per_channel`
    codes with one float32 scale per output channel: lossless for a model already through
    :func:`~pruning_utils.quantize_int8`, otherwise it rounds) or ``"codebook"`` (the tensor's k <= 256
    distinct non-zero values once, and a ``ceil(log2 k)``-bit index per non-zero weight: lossless; a
    tensor with more distinct values is refused, run :func:`~pruning_utils.share_weights` first).
    Vectors (biases, normalisation parameters) stay floats. ``compress=True`` passes the whole file
    through LZMA (an entropy coder, standing in for Deep Compression's Huffman coding); :func:`load_sparse`
    recognises it. The file is written atomically; :func:`load_sparse` reads it back.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}; got {encoding!r}")
    check_flag(fp16, "fp16")
    check_flag(compress, "compress")
    values = check_choice(values, "values", VALUES)
    if fp16 and values not in ("float", "float16"):
        raise ValueError(f"fp16=True stores float16 values; it cannot be combined with values={values!r}")
    values = "float16" if fp16 else values
    if isinstance(model_or_state_dict, nn.Module):
        state = plain_state_dict(model_or_state_dict)
    elif isinstance(model_or_state_dict, dict):
        state = model_or_state_dict
    else:
        raise TypeError(f"model_or_state_dict must be an nn.Module or a state_dict; "
                        f"got {type(model_or_state_dict).__name__}")
    blobs, entries = _Blobs(), {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be str; got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict entry {key!r} is not a tensor ({type(value).__name__})")
        entries[key] = _encode(key, value, encoding, values, blobs)
    payload = {"format": SPARSE_FORMAT, "version": SPARSE_VERSION, "encoding": encoding,
               "entries": entries, "blobs": blobs.tensors()}
    if not compress:
        return save_checkpoint(payload, path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        tmp.write_bytes(lzma.compress(tmp.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    return Path(path)


def _load_payload(path):
    """The checkpoint's object; a file that starts with the XZ magic is unpacked first (compress=True)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(len(_XZ_MAGIC)) == _XZ_MAGIC
    except OSError:
        compressed = False  # load_checkpoint names what is wrong with the path
    if not compressed:
        return load_checkpoint(path, what="sparse checkpoint")
    decompressor = lzma.LZMADecompressor()
    try:
        raw = decompressor.decompress(path.read_bytes(), max_length=_MAX_UNPACKED)
    except lzma.LZMAError as exc:
        raise CheckpointError(f"sparse checkpoint {str(path)!r} is LZMA-compressed but damaged ({exc})") from exc
    if not decompressor.eof:
        raise CheckpointError(f"sparse checkpoint {str(path)!r} is LZMA-compressed but truncated, or unpacks to more "
                              f"than {_MAX_UNPACKED:,} bytes")
    with tempfile.TemporaryDirectory(prefix="pruning-sparse-") as tmp:
        inner = Path(tmp) / path.name
        inner.write_bytes(raw)
        try:
            return load_checkpoint(inner, what="sparse checkpoint")
        except CheckpointError as exc:
            raise CheckpointError(str(exc).replace(str(inner), str(path))) from exc


def load_sparse(path) -> dict:
    """Read a :func:`save_sparse` file back into a ``state_dict`` (original dtypes and layouts).

    Every malformed or foreign file (not a dict, another format, missing or mistyped parts, references
    outside the stored data, damaged indices) raises :class:`~pruning_utils.CheckpointError` naming the
    file and the entry.
    """
    payload = _load_payload(path)
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


def checkpoint_sizes(model: nn.Module, *, encoding: str = "bitmask", fp16: bool = False, values: str = "float",
                     compress: bool = False) -> dict:
    """Bytes on disk of the model's plain ``state_dict`` (``torch.save``) and of :func:`save_sparse`
    (with the same keyword arguments)."""
    with tempfile.TemporaryDirectory(prefix="pruning-size-") as tmp:
        state = plain_state_dict(model)
        dense = save_checkpoint(state, Path(tmp) / "dense.pt").stat().st_size
        sparse = save_sparse(state, Path(tmp) / "sparse.pt", encoding=encoding, fp16=fp16, values=values,
                             compress=compress).stat().st_size
    return {"dense_bytes": dense, "sparse_bytes": sparse, "size_ratio": dense / sparse}
