"""The checkers of notebook 10's exercises: right answers pass, wrong ones fail with the hint, bad input is refused.

Independent computations: the package's ``semi_structured_bytes`` (itself tested against torch's CUTLASS
packing) for the bytes, ``check_nm_pattern`` on a layer holding the tensor for the pattern, and the masks
``apply_nm_sparsity`` really builds for the kept counts.
"""

import copy

import pytest
import torch
from torch import nn

from pruning_utils import SmallCNN, apply_nm_sparsity, check_nm_pattern, get_mask, prunable_layers, semi_structured_bytes
from pruning_utils.exercises import check_follows_nm, check_nm_kept, check_semi_structured_bytes


def cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(widths=(8, 16), input_size=8)  # conv1: 1*3*3 = 9 inputs, not a multiple of 4; conv2 72, fc 256


# --- check_semi_structured_bytes ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("shape", [(128, 128), (1024, 3072), (256, 512)])
def test_bytes_right_answer_is_torchs_packing(dtype, shape, capsys):
    right = semi_structured_bytes(*shape, dtype)["compressed"]
    assert check_semi_structured_bytes(right, *shape, dtype=dtype) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_semi_structured_bytes(right + 1, *shape, dtype=dtype) is False
    assert check_semi_structured_bytes(right - 1, *shape, dtype=dtype) is False


def test_bytes_default_dtype_is_fp16():
    assert check_semi_structured_bytes(semi_structured_bytes(64, 128)["compressed"], 64, 128) is True


@pytest.mark.parametrize("wrong, words", [
    (1024 * 3072 * 2, "dense size"),                      # the dense fp16 bytes
    (1024 * 3072, "metadata"),                            # the kept values only
    (1024 * 3072 + 1024 * 3072 // 2, "not a byte"),       # a whole byte per position
    (8 * (1024 * 3072 * 9 // 8), "bits"),                 # the right size in bits
    (12345, "2 bits of metadata"),                        # anything else: the recipe
])
def test_bytes_wrong_answers_get_their_hint(wrong, words, capsys):
    assert check_semi_structured_bytes(wrong, 1024, 3072) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and words in out


@pytest.mark.parametrize("args, error, words", [
    (("3538944", 1024, 3072), TypeError, "answer"),
    ((-1, 1024, 3072), ValueError, "answer"),
    ((100, 0, 64), ValueError, "n_rows"),
    ((100, 16, 30), ValueError, "n_cols"),
    ((100, 16, 64.0), TypeError, "n_cols"),
])
def test_bytes_refuses_bad_input_by_name(args, error, words):
    with pytest.raises(error, match=words):
        check_semi_structured_bytes(*args)


@pytest.mark.parametrize("dtype", [torch.float32, "float16", torch.float64])
def test_bytes_refuses_dtypes_without_2_4_groups(dtype):
    with pytest.raises(ValueError, match="dtype"):
        check_semi_structured_bytes(100, 32, 64, dtype=dtype)


# --- check_follows_nm ---------------------------------------------------------------------------------

def _layer_conforms(tensor, n, m) -> bool:
    """Independent verdict: the package's exact pattern check on a layer holding the tensor."""
    layer = nn.Linear(tensor[0].numel(), tensor.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(tensor.reshape(tensor.shape[0], -1))
    return check_nm_pattern(layer, n, m)["conforms"]


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
@pytest.mark.parametrize("seed", range(4))
def test_follows_nm_agrees_with_check_nm_pattern(n, m, seed, capsys):
    g = torch.Generator().manual_seed(seed)
    tensor = torch.randn(6, 16, generator=g) * (torch.rand(6, 16, generator=g) > 0.6 + 0.1 * seed)
    right = _layer_conforms(tensor, n, m)
    assert check_follows_nm(right, tensor, n, m) is True
    assert check_follows_nm(not right, tensor, n, m) is False
    assert "not yet:" in capsys.readouterr().out


def test_follows_nm_of_a_real_2_4_mask_and_of_a_conv_weight():
    model = cnn()
    apply_nm_sparsity(model, 2, 4, exclude=["conv1"])
    weight = model.conv2.weight.detach()                 # 4-D: groups along in_channels * kh * kw
    assert check_follows_nm(True, weight, 2, 4) is True
    assert check_follows_nm(False, weight, 1, 4) is True
    assert check_follows_nm(True, weight, 4, 8) is True  # 2:4 implies 4:8


def test_follows_nm_hint_names_the_group(capsys):
    t = torch.tensor([[0, 1.5, 0, -2, 3, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 5]])
    assert check_follows_nm(True, t) is False
    assert "row 1, weights 0..3" in capsys.readouterr().out
    assert check_follows_nm(False, t, 4, 8) is False
    assert "at most 4" in capsys.readouterr().out


def test_follows_nm_groups_run_along_the_input_dimension():
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    assert check_follows_nm(True, t, 2, 4) is True       # each row: 2 of 4
    assert check_follows_nm(False, t.T.contiguous(), 2, 4) is True  # its columns as rows: 4 of 4


def test_follows_nm_counts_nan_as_non_zero():
    t = torch.tensor([[float("nan"), 1.0, 1.0, 0.0]])
    assert check_follows_nm(False, t, 2, 4) is True


@pytest.mark.parametrize("args, error, words", [
    (("yes", torch.ones(2, 4)), TypeError, "answer"),
    ((1, torch.ones(2, 4)), TypeError, "answer"),
    ((True, [[1, 0, 0, 0]]), TypeError, "tensor"),
    ((True, torch.ones(4)), ValueError, "tensor"),
    ((True, torch.ones(0, 4)), ValueError, "tensor"),
    ((True, torch.ones(2, 6)), ValueError, "multiple of m=4"),
    ((True, torch.ones(2, 4), 3, 2), ValueError, "n must be <= m"),
    ((True, torch.ones(2, 4), 0, 4), ValueError, "n"),
])
def test_follows_nm_refuses_bad_input_by_name(args, error, words):
    with pytest.raises(error, match=words):
        check_follows_nm(*args)


# --- check_nm_kept -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
def test_nm_kept_equals_the_masks_apply_nm_sparsity_builds(n, m, capsys):
    model = cnn()
    masked = copy.deepcopy(model)
    apply_nm_sparsity(masked, n, m, exclude=["conv1"])
    right = sum(int(get_mask(layer).sum()) for _, layer in prunable_layers(masked, exclude=["conv1"]))
    assert check_nm_kept(right, model, n, m, exclude=["conv1"]) is True
    assert check_nm_kept(right + 1, model, n, m, exclude=["conv1"]) is False
    assert "not yet:" in capsys.readouterr().out


def test_nm_kept_of_one_layer():
    layer = nn.Linear(64, 10)
    assert check_nm_kept(10 * 16, layer, 1, 4) is True
    assert check_nm_kept(10 * 32, layer, 2, 4) is True


@pytest.mark.parametrize("wrong, words", [
    (3 * 160, "removes"),           # the pruned count
    (640, "every weight"),          # all weights
    (7, "rows x (cols / 4)"),       # anything else: the recipe
])
def test_nm_kept_wrong_answers_get_their_hint(wrong, words, capsys):
    assert check_nm_kept(wrong, nn.Linear(64, 10), 1, 4) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and words in out


def test_nm_kept_refuses_a_layer_whose_input_is_not_a_multiple_of_m():
    with pytest.raises(ValueError, match=r"conv1.*exclude=\['conv1'\]"):
        check_nm_kept(1, cnn(), 2, 4)


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((1.5, nn.Linear(8, 2)), {}, TypeError, "answer"),
    ((-3, nn.Linear(8, 2)), {}, ValueError, "answer"),
    ((4, "model"), {}, TypeError, "model_or_layer"),
    ((4, nn.Linear(8, 2), 5, 4), {}, ValueError, "n must be <= m"),
    ((4, nn.Linear(8, 2), 2, 0), {}, ValueError, "m"),
    ((4, SmallCNN()), {"exclude": ["nope"]}, ValueError, "nope"),
])
def test_nm_kept_refuses_bad_input_by_name(args, kwargs, error, words):
    with pytest.raises(error, match=words):
        check_nm_kept(*args, **kwargs)
