"""The compiled CSR kernel (pruning_utils.spmm) and how CSRLinear chooses between it and torch's."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from pruning_utils import spmm
from pruning_utils.csr import CSRLinear, _to_csr, to_sparse_linear

HAS_COMPILER = any(shutil.which(c) for c in (os.environ.get("CC", "cc"), "gcc", "clang"))
needs_native = pytest.mark.skipif(not spmm.available(), reason=f"native CSR kernel {spmm.status()}")


def sparse_matrix(rows, cols, density, seed=0, empty_rows=()):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * (torch.rand(rows, cols, generator=g) < density)
    w[list(empty_rows)] = 0.0
    return w


def test_kernel_is_built_wherever_a_c_compiler_is_found():
    if os.environ.get("PRUNING_NATIVE_SPMM", "1") == "0":
        pytest.skip("turned off by PRUNING_NATIVE_SPMM=0")
    assert spmm.available() == HAS_COMPILER, spmm.status()
    if HAS_COMPILER:
        assert spmm.status().startswith("compiled with")


@needs_native
@pytest.mark.parametrize("n", [1, 3, 8, 15, 16, 17, 40, 64, 65, 130])
@pytest.mark.parametrize("with_bias", [True, False])
def test_csr_matmul_equals_the_dense_product_for_every_tile_width(n, with_bias):
    w = sparse_matrix(37, 50, 0.2, empty_rows=(0, 5, 36))  # empty rows give the bias alone
    xt = torch.randn(50, n)
    bias = torch.randn(37) if with_bias else None
    expected = w @ xt + (bias[:, None] if with_bias else 0)
    out = spmm.csr_matmul(_to_csr(w), xt, bias)
    assert out.shape == (37, n) and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@needs_native
def test_csr_matmul_of_an_all_zero_matrix_and_with_one_or_two_threads():
    torch.testing.assert_close(spmm.csr_matmul(_to_csr(torch.zeros(6, 9)), torch.randn(9, 20), torch.ones(6)),
                               torch.ones(6, 20))
    w, xt = _to_csr(sparse_matrix(512, 512, 0.3)), torch.randn(512, 64)  # big enough to run in parallel
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = spmm.csr_matmul(w, xt)
        torch.set_num_threads(2)
        two = spmm.csr_matmul(w, xt)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(one, two, rtol=0, atol=0)  # each row is summed in the same order
    torch.testing.assert_close(one, w.to_dense() @ xt, rtol=1e-4, atol=1e-4)


@needs_native
def test_csr_matmul_rejects_what_it_cannot_run():
    w = _to_csr(sparse_matrix(4, 6, 0.5))
    with pytest.raises(ValueError, match="xt must be a float32 \\(6, n\\)"):
        spmm.csr_matmul(w, torch.randn(5, 2))
    with pytest.raises(ValueError, match="xt must be a float32"):
        spmm.csr_matmul(w, torch.randn(6, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="bias must be a float32 \\(4,\\)"):
        spmm.csr_matmul(w, torch.randn(6, 2), torch.randn(5))
    with pytest.raises(ValueError, match="int32 indices"):
        spmm.csr_matmul(sparse_matrix(4, 6, 0.5).to_sparse_csr(), torch.randn(6, 2))  # int64 indices
    with pytest.raises(ValueError, match="sparse CSR"):
        spmm.csr_matmul(torch.randn(4, 6), torch.randn(6, 2))


def mlp(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10)).eval()
    with torch.no_grad():
        for layer in model[::2]:
            layer.weight.mul_(torch.rand_like(layer.weight) > 0.8)
    return model


@needs_native
def test_native_and_torch_kernels_give_the_dense_outputs_and_auto_picks_by_batch_size():
    model = mlp()
    native, torch_kernel, auto = (to_sparse_linear(model, kernel=k) for k in ("native", "torch", "auto"))
    for shape in [(1, 40), (5, 40), (8, 40), (33, 40), (2, 9, 40)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x)
            for sparse in (native, torch_kernel, auto):
                torch.testing.assert_close(sparse(x), expected, rtol=1e-5, atol=1e-5)
    first = auto[0]
    assert first.uses_native(torch.randn(8, 40)) and first.uses_native(torch.randn(2, 4, 40))
    assert not first.uses_native(torch.randn(7, 40)) and not first.uses_native(torch.randn(40))
    assert native[0].uses_native(torch.randn(1, 40)) and not torch_kernel[0].uses_native(torch.randn(64, 40))


@needs_native
def test_native_layers_hand_activations_on_feature_major_without_a_copy():
    sparse = to_sparse_linear(mlp(), kernel="native")
    x = torch.randn(16, 40)
    with torch.no_grad():
        hidden = sparse[1](sparse[0](x))  # Linear then ReLU
    assert hidden.shape == (16, 32) and hidden.T.is_contiguous()  # a transposed view of W x^T
    with torch.inference_mode():
        torch.testing.assert_close(sparse(x), mlp()(x), rtol=1e-5, atol=1e-5)


@needs_native
def test_auto_falls_back_to_torch_for_gradients_and_other_dtypes_and_native_says_why():
    auto = CSRLinear.from_linear(mlp()[0])
    x = torch.randn(16, 40, requires_grad=True)
    assert not auto.uses_native(x)
    with torch.no_grad():
        assert auto.uses_native(x)
    double = CSRLinear.from_linear(mlp()[0].double())
    assert not double.uses_native(torch.randn(16, 40, dtype=torch.float64))
    with torch.no_grad():
        torch.testing.assert_close(double(torch.ones(16, 40, dtype=torch.float64)),
                                   mlp()[0].double()(torch.ones(16, 40, dtype=torch.float64)))
    native = CSRLinear.from_linear(mlp()[0], kernel="native")
    assert native.double()._native_fits() is False  # .double() is seen through _apply
    with pytest.raises(ValueError, match="kernel='native' runs float32"):
        native(torch.randn(16, 40, dtype=torch.float64))


def test_a_csr_weight_with_indices_out_of_range_is_refused():
    crow, col = torch.tensor([0, 1, 2], dtype=torch.int32), torch.tensor([0, 7], dtype=torch.int32)
    bad = torch.sparse_csr_tensor(crow, col, torch.ones(2), (2, 3), check_invariants=False)  # column 7 of 3
    with pytest.raises(ValueError, match="weight is not a valid CSR matrix"):
        CSRLinear(bad)


def test_bad_kernel_names_are_refused():
    with pytest.raises(ValueError, match="kernel must be one of"):
        to_sparse_linear(mlp(), kernel="mkl")
    with pytest.raises(ValueError, match="kernel must be one of"):
        CSRLinear.from_linear(nn.Linear(3, 2), kernel="fast")


def run_python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "PRUNING_NATIVE_SPMM"}
    full_env.update(TMPDIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=300)


FALLBACK = """
    import torch
    from torch import nn
    from pruning_utils import spmm, to_sparse_linear
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    sparse = to_sparse_linear(model)
    x = torch.randn(32, 20)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), model(x), rtol=1e-5, atol=1e-5)
    assert not sparse[0].uses_native(x)
    try:
        to_sparse_linear(model, kernel="native")
    except RuntimeError as exc:
        print("refused:", exc)
    print("status:", spmm.status())
"""


@pytest.mark.parametrize("env, reason", [
    ({"PRUNING_NATIVE_SPMM": "0"}, "off (PRUNING_NATIVE_SPMM=0)"),
    ({"CC": "false-compiler-that-is-not-there", "PATH": ""}, "no C compiler found"),
    ({"CC": "false"}, "compiling failed"),
])
def test_without_the_kernel_torchs_is_used_and_native_is_refused_with_the_reason(tmp_path, env, reason):
    if env.get("CC") == "false":
        env = {**env, "CC": shutil.which("false") or pytest.skip("no `false` program")}
    result = run_python(FALLBACK, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert f"status: {reason}" in result.stdout.replace("unavailable (", "")
    assert "refused: kernel='native' was asked for" in result.stdout
    assert reason in result.stdout.split("refused:")[1]


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
def test_compiling_leaves_nothing_on_disk(tmp_path):
    result = run_python("from pruning_utils import spmm; assert spmm.available(), spmm.status()", tmp_path,
                        PRUNING_NATIVE_SPMM="1")
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
