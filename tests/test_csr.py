"""No input reaches a CSR kernel unchecked (native or torch's), and CSRLinear's input and parameter checks.

The corrupted weights are run in a subprocess: on unchecked indices both kernels read outside their
buffers, and a segfault must fail the test, not end the test run.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from pruning_utils import spmm
from pruning_utils.csr import CSRLinear, to_sparse_linear

# Each corruption of a valid 64 x 64 CSR weight (crow, col, val; nnz stored values), and what the error says.
CORRUPTIONS = {
    "column beyond in_features": ("col[3] = 10**8", "column indices must lie in [0, 64); col_indices[3] = 100000000"),
    "negative column": ("col[-1] = -10**8", "col_indices[{last}] = -100000000"),
    "crow decreasing": ("crow[32] = nnz", "crow_indices must not decrease; crow_indices[33] ="),
    "negative crow": ("crow[32] = -10**8", "crow_indices must not decrease; crow_indices[32] = -100000000"),
    "crow[-1] beyond nnz": ("crow[-1] = nnz + 10**8", "crow_indices must end at nnz = {nnz}"),
    "crow[0] not 0": ("crow[0] = 5", "crow_indices must start at 0; crow_indices[0] = 5"),
    "crow too short": ("crow = crow[:33]", "crow_indices must hold rows + 1 = 65 entries"),
    "values too short": ("val = val[:1]", "col_indices and values must be 1-D and of one length"),
}
NO_COLUMNS = "column indices must lie in [0, 0); col_indices[0] = 0"  # a (1, 0) weight holding one value
IN_PLACE = ("column beyond in_features", "negative column", "crow decreasing", "negative crow",
            "crow[-1] beyond nnz", "crow[0] not 0")  # the ones an in-place edit of the indices can make

SCRIPT = """
import sys, warnings
import torch
from torch import nn
from pruning_utils import spmm, to_sparse_linear
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
path, corruptions = sys.argv[1], {corruptions!r}
kernels = ["native", "torch"] if spmm.available() else ["torch"]

def corrupted(weight, edit):
    parts = dict(crow=weight.crow_indices().clone(), col=weight.col_indices().clone(), val=weight.values().clone(),
                 nnz=weight.values().numel())
    exec(edit, {{}}, parts)
    return torch.sparse_csr_tensor(parts["crow"], parts["col"], parts["val"], weight.shape, check_invariants=False)

def attempt(case, op, run):
    try:
        out = run()
    except ValueError as exc:
        print(f"refused {{case}} | {{op}} | {{exc}}", flush=True)
    else:
        print(f"computed {{case}} | {{op}} | {{tuple(out.shape)}}", flush=True)

torch.manual_seed(0)
dense = nn.Sequential(nn.Linear(64, 64))
with torch.no_grad():
    dense[0].weight.mul_(torch.rand(64, 64) < 0.3)
print("nnz", int(torch.count_nonzero(dense[0].weight)))
for case, edit in corruptions.items():
    for kernel in kernels:
        model = to_sparse_linear(dense, kernel=kernel)  # its layer is named "0"
        layer = model[0]
        bad = corrupted(layer.weight, edit)
        if path == "csr_matmul":
            if kernel != "native":
                continue
            for n in (1, 64):
                attempt(case, f"native batch {{n}}", lambda: spmm.csr_matmul(bad, torch.randn(64, n), layer.bias))
            continue
        if path == "load_state_dict":
            def load_and_run():
                model.load_state_dict({{"0.weight": bad, "0.bias": layer.bias}})
                return model(torch.randn(64, 64))
            attempt(case, f"{{kernel}} load", load_and_run)
            continue
        if path == "assign":
            layer.weight = bad
        elif path == "in place":  # the same edit, made on the layer's own index tensors
            exec(edit, {{}}, dict(crow=layer.weight.crow_indices(), col=layer.weight.col_indices(), nnz=layer.nnz))
        for n in (1, 64):
            attempt(case, f"{{kernel}} batch {{n}}", lambda: model(torch.randn(n, 64)))
        attempt(case, f"{{kernel}} to_linear", lambda: layer.to_linear())
if path == "csr_matmul":  # a weight with no columns at all: the kernel has no column to read instead
    nowhere = torch.sparse_csr_tensor(torch.tensor([0, 1], dtype=torch.int32), torch.tensor([0], dtype=torch.int32),
                                      torch.ones(1), (1, 0), check_invariants=False)
    attempt("no columns", "native batch 64", lambda: spmm.csr_matmul(nowhere, torch.randn(0, 64)))
print("done")
"""


@pytest.mark.parametrize("path", ["csr_matmul", "load_state_dict", "assign", "in place"])
def test_corrupted_indices_are_refused_on_every_path_into_the_kernels(tmp_path, path):
    if path == "csr_matmul" and not spmm.available():
        pytest.skip(f"native CSR kernel {spmm.status()}")
    cases = {c: edit for c, (edit, _) in CORRUPTIONS.items() if path != "in place" or c in IN_PLACE}
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT.format(corruptions=cases)), path],
                            capture_output=True, text=True, env=env, timeout=300)
    crashed = f" (killed by {signal.Signals(-result.returncode).name})" if result.returncode < 0 else ""
    assert result.returncode == 0, f"exit {result.returncode}{crashed}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert result.stdout.endswith("done\n")
    first, *rest = result.stdout.splitlines()[:-1]
    nnz = int(first.removeprefix("nnz "))
    lines = [line.split(" | ") for line in rest]
    computed = [line for line in lines if line[0].startswith("computed")]
    assert not computed, computed  # every corrupted weight is refused, not run
    kernels = ["native", "torch"] if spmm.available() else ["torch"]
    ops = {"csr_matmul": ["native batch 1", "native batch 64"], "load_state_dict": [f"{k} load" for k in kernels]}
    ops = ops.get(path, [f"{k} {op}" for k in kernels for op in ("batch 1", "batch 64", "to_linear")])
    expected = [f"refused {c}|{op}" for c in cases for op in ops]
    expected += ["refused no columns|native batch 64"] if path == "csr_matmul" else []
    assert sorted(f"{status}|{op}" for status, op, _ in lines) == sorted(expected)
    name = "weight" if path == "csr_matmul" else "0.weight"
    for status, op, message in lines:
        case = status.removeprefix("refused ")
        fragment = NO_COLUMNS if case == "no columns" else CORRUPTIONS[case][1].format(nnz=nnz, last=nnz - 1)
        assert message.startswith(f"{name} is not a valid CSR matrix: "), (status, op, message)
        assert fragment in message, (status, op, message)


def masked_linear(rows=30, cols=40, seed=0, bias=True):
    torch.manual_seed(seed)
    layer = nn.Linear(cols, rows, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) > 0.7)
    return layer


@pytest.mark.parametrize("kernel", ["native", "torch"])
def test_an_empty_batch_does_not_skip_the_index_check(kernel):
    if kernel == "native" and not spmm.available():
        pytest.skip(f"native CSR kernel {spmm.status()}")
    layer = CSRLinear.from_linear(masked_linear(), kernel=kernel)
    with torch.no_grad():
        assert layer(torch.randn(0, 40)).shape == (0, 30) and layer(torch.randn(2, 0, 40)).shape == (2, 0, 30)
        layer.weight.col_indices()[0] = 40  # one past the last column
        with pytest.raises(ValueError, match=r"CSRLinear\(40, 30\)\.weight is not a valid CSR matrix: column indices "
                                             r"must lie in \[0, 40\); col_indices\[0\] = 40"):
            layer(torch.randn(0, 40))


def test_an_assigned_weight_is_rechecked_for_the_native_kernel_and_sets_the_shape():
    layer = CSRLinear.from_linear(masked_linear())
    x = torch.randn(16, 40)
    with torch.no_grad():
        layer(x)  # the native kernel ran on the int32 weight
        wide = masked_linear(30, 56, seed=1)
        layer.weight = wide.weight.detach().to_sparse_csr()  # int64 indices, 56 columns
        assert (layer.in_features, layer.out_features) == (56, 30)
        assert not layer.uses_native(torch.randn(16, 56))  # int64 indices: torch's kernel
        x = torch.randn(16, 56)
        torch.testing.assert_close(layer(x), x @ wide.weight.T + layer.bias, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="expects inputs with 56 features"):
            layer(torch.randn(16, 40))
        layer.bias = torch.zeros(1)  # would broadcast silently in torch.addmm
        with pytest.raises(ValueError, match=r"CSRLinear\(56, 30\)\.bias must be a torch.float32 \(30,\) tensor"):
            layer(x)
    if spmm.available():
        native = CSRLinear.from_linear(masked_linear(), kernel="native")
        native.weight = masked_linear().weight.detach().to_sparse_csr()
        with pytest.raises(ValueError, match="kernel='native' runs float32 CPU tensors with int32 indices"):
            native(torch.randn(16, 40))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("kernel", ["auto", "native", "torch"])
def test_inputs_of_the_wrong_kind_get_a_clear_error_and_odd_ones_the_right_result(kernel):
    if kernel == "native" and not spmm.available():
        pytest.skip(f"native CSR kernel {spmm.status()}")
    dense = masked_linear()
    layer = CSRLinear.from_linear(dense, kernel=kernel)
    with torch.no_grad():
        for bad, error, match in [(torch.randn(16, 40).double(), TypeError, "must be torch.float32 like its"),
                                  (torch.ones(16, 40, dtype=torch.int64), TypeError, "got torch.int64"),
                                  (torch.tensor(1.0), ValueError, "40 features in the last dimension; got shape ()"),
                                  ([0.0] * 40, TypeError, "input must be a dense torch.Tensor; got list"),
                                  (torch.randn(16, 40).to_sparse(), TypeError, "got a torch.sparse_coo tensor")]:
            with pytest.raises(error, match=match.replace("(", r"\(").replace(")", r"\)")):
                layer(bad)
        wide = torch.randn(16, 80)
        for x in (wide[:, ::2], torch.randn(40, 16).T, torch.randn(40), torch.randn(3, 5, 40), torch.randn(70000, 40)):
            torch.testing.assert_close(layer(x), dense(x), rtol=1e-5, atol=1e-5)  # strided, 1-D, 3-D, a big batch
        nan = torch.full((16, 40), float("nan"))
        assert layer(nan).isnan().all()
        for shape in [(40, 0), (0, 40)]:  # no outputs, no inputs (y = bias)
            empty = nn.Linear(shape[1], shape[0])
            x = torch.randn(16, shape[1])
            torch.testing.assert_close(to_sparse_linear(nn.Sequential(empty), kernel=kernel)(x), empty(x))
        no_weights = masked_linear()
        no_weights.weight.zero_()
        x = torch.randn(16, 40)
        torch.testing.assert_close(CSRLinear.from_linear(no_weights, kernel=kernel)(x), no_weights.bias.expand(16, 30))


@pytest.mark.parametrize("kernel", ["native", "torch"])
def test_columns_need_not_be_sorted_within_a_row(kernel):
    if kernel == "native" and not spmm.available():
        pytest.skip(f"native CSR kernel {spmm.status()}")
    crow = torch.tensor([0, 3, 3, 5], dtype=torch.int32)
    col = torch.tensor([2, 0, 2, 1, 0], dtype=torch.int32)  # unsorted, and column 2 twice in row 0
    val = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    weight = torch.sparse_csr_tensor(crow, col, val, (3, 3), check_invariants=False)
    expected = torch.tensor([[2.0, 0.0, 4.0], [0.0, 0.0, 0.0], [5.0, 4.0, 0.0]])
    layer = CSRLinear(weight, torch.zeros(3), kernel=kernel)
    x = torch.randn(8, 3)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ expected.T)
    torch.testing.assert_close(layer.to_linear().weight.detach(), expected)


def test_an_index_edited_after_a_checked_forward_is_caught_again():
    """The torch path remembers a passed check; an in-place edit of the indices must void it."""
    script = textwrap.dedent("""
        import warnings, torch
        from torch import nn
        from pruning_utils.csr import CSRLinear
        warnings.simplefilter("ignore")
        lin = nn.Linear(16, 8)
        with torch.no_grad():
            lin.weight[:, ::2] = 0
        layer = CSRLinear.from_linear(lin, kernel="torch")
        x = torch.randn(1, 16)
        assert torch.allclose(layer(x), lin(x), atol=1e-6)
        layer(x)  # the second call skips the check
        layer.weight.col_indices()[3] = 10_000
        try:
            layer(x)
        except ValueError as exc:
            print("REFUSED", "column indices must lie in" in str(exc))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "REFUSED True" in result.stdout
