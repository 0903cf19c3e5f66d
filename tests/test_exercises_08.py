"""The checkers of notebook 08's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import pytest
import torch
from torch import nn

from pruning_utils import magnitude_prune, sparse_flops
from pruning_utils.exercises import check_conv_flops, check_csr_bytes

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


def _torch_csr_bytes(weight, index_dtype, value_dtype):
    """Independent: build the CSR tensor with torch and add up the bytes of its three arrays."""
    csr = weight.to(value_dtype).to_sparse_csr()
    crow, col = csr.crow_indices().to(index_dtype), csr.col_indices().to(index_dtype)
    values = csr.values()
    return sum(t.numel() * t.element_size() for t in (crow, col, values)), int(values.numel())


@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
@pytest.mark.parametrize("value_dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape, density", [((64, 48), 0.1), ((7, 300), 0.5), ((1, 5), 1.0), ((10, 10), 0.0)])
def test_csr_bytes_accepts_what_torch_stores(shape, density, index_dtype, value_dtype, capsys):
    torch.manual_seed(0)
    weight = torch.randn(shape) * (torch.rand(shape) < density)
    right, nnz = _torch_csr_bytes(weight, getattr(torch, index_dtype), getattr(torch, value_dtype))
    assert check_csr_bytes(right, nnz, shape[0], index_dtype, value_dtype) is True
    assert capsys.readouterr().out.startswith("right:")


def test_csr_bytes_names_the_missing_row_pointers_and_indices(capsys):
    nnz, rows = 419_431, 2048                            # fc1 of a 90%-sparse 2048x2048 layer
    assert check_csr_bytes(nnz * 8, nnz, rows) is False   # values and column indices, no row pointers
    assert "row pointers" in capsys.readouterr().out
    assert check_csr_bytes(nnz * 4, nnz, rows) is False   # values only
    assert "column index" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [0, 2048 * 2048 * 4, 419_431 * 12 + 2049 * 8, 419_431 * 8 + 2049 * 4 + 1])
def test_csr_bytes_refuses_wrong_sizes_with_the_hint(wrong, capsys):
    assert check_csr_bytes(wrong, 419_431, 2048, "int32") is False   # int64 sizes or off by one are wrong here
    assert capsys.readouterr().out.startswith("not yet:")


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer=10.5, nnz=1, rows=1), TypeError, "answer"),
    (dict(answer=-1, nnz=1, rows=1), ValueError, "answer"),
    (dict(answer=10, nnz=-1, rows=1), ValueError, "nnz"),
    (dict(answer=10, nnz=1, rows=0), ValueError, "rows"),
    (dict(answer=10, nnz=True, rows=1), TypeError, "nnz"),
    (dict(answer=10, nnz=1, rows=1, index_dtype="int16"), ValueError, "index_dtype"),
    (dict(answer=10, nnz=1, rows=1, index_dtype=torch.int32), ValueError, "index_dtype"),
    (dict(answer=10, nnz=1, rows=1, value_dtype="int8"), ValueError, "value_dtype"),
])
def test_csr_bytes_refuses_bad_input_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        check_csr_bytes(**kwargs)


def _pruned_conv(in_ch, out_ch, kernel, stride, padding, sparsity, groups=1):
    torch.manual_seed(1)
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups)
    if sparsity:
        magnitude_prune([("conv", conv)], sparsity, scope="layer")
    return conv


@pytest.mark.parametrize("args, input_size", [
    ((1, 16, 3, 1, 1, 0.0), (1, 1, 8, 8)),
    ((16, 32, 3, 1, 1, 0.9), (1, 16, 8, 8)),
    ((3, 8, 5, 2, 0, 0.5), (2, 3, 17, 13)),
    ((8, 8, 3, 1, 1, 0.75, 4), (1, 8, 6, 6)),
])
def test_conv_flops_agrees_with_torchs_flop_counter(args, input_size, capsys):
    conv = _pruned_conv(*args)
    _, right = sparse_flops(nn.Sequential(conv), input_size)   # independent: FlopCounterMode x density
    assert check_conv_flops(right, conv, input_size) is True
    assert capsys.readouterr().out.startswith("right:")


def test_conv_flops_names_the_dense_count_and_the_macs(capsys):
    conv = _pruned_conv(16, 32, 3, 1, 1, 0.9)
    dense, right = sparse_flops(nn.Sequential(conv), (1, 16, 8, 8))
    assert check_conv_flops(dense, conv, (1, 16, 8, 8)) is False
    assert "dense count" in capsys.readouterr().out
    assert check_conv_flops(right // 2, conv, (1, 16, 8, 8)) is False
    assert "multiply-accumulates" in capsys.readouterr().out
    assert check_conv_flops(right + 2, conv, (1, 16, 8, 8)) is False
    assert "output position" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer=1.5, layer=nn.Conv2d(1, 2, 3), input_size=(1, 1, 8, 8)), TypeError, "answer"),
    (dict(answer=1, layer=nn.Linear(4, 2), input_size=(1, 4)), TypeError, "Conv2d"),
    (dict(answer=1, layer="conv", input_size=(1, 1, 8, 8)), TypeError, "layer"),
    (dict(answer=1, layer=nn.Conv2d(1, 2, 3), input_size=(1, 3, 8, 8)), ValueError, "input_size"),
    (dict(answer=1, layer=nn.Conv2d(1, 2, 3), input_size=(1, 1, 0, 8)), ValueError, "input_size"),
    (dict(answer=1, layer=nn.Conv2d(1, 2, 3), input_size=8), ValueError, "input_size"),
])
def test_conv_flops_refuses_bad_input_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        check_conv_flops(**kwargs)
