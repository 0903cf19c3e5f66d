"""N:M semi-structured sparsity (2:4 and friends) through the course's one mask mechanism.

Independent computations: a brute-force pattern check (a Python loop over every group), torch's own
2:4 sparsifier (``torch.ao.pruning.WeightNormSparsifier``), torch's own CUTLASS packing for the bytes.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pruning_utils import (
    SmallCNN,
    apply_mask,
    apply_nm_sparsity,
    check_nm_pattern,
    get_mask,
    make_permanent,
    nm_mask,
    prunable_layers,
    semi_structured_bytes,
)


def brute_force_keep(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the n largest of every m along the flattened input dim, lowest index first on ties (plain loops)."""
    rows = scores.reshape(scores.shape[0], -1)
    keep = np.zeros(rows.shape, dtype=bool)
    for r in range(rows.shape[0]):
        for g in range(0, rows.shape[1], m):
            block = [(-float(rows[r, g + i]), i) for i in range(m)]  # sort by score desc, then index asc
            for _, i in sorted(block)[:n]:
                keep[r, g + i] = True
    return keep.reshape(scores.shape)


def brute_force_conforms(weight: torch.Tensor, n: int, m: int) -> bool:
    rows = weight.detach().reshape(weight.shape[0], -1).tolist()
    return all(sum(v != 0 for v in row[g:g + m]) <= n for row in rows for g in range(0, len(row), m))


def cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(widths=(4, 8), input_size=8)  # conv1's input dim is 1*3*3 = 9: not a multiple of 4


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
@pytest.mark.parametrize("shape", [(6, 16), (5, 4, 3, 4), (3, 8, 3)])
def test_nm_mask_equals_brute_force(n, m, shape):
    g = torch.Generator().manual_seed(n * 10 + m)
    scores = torch.randn(shape, generator=g)
    keep = nm_mask(scores, n, m)
    assert keep.dtype == torch.bool and keep.shape == scores.shape
    assert np.array_equal(keep.numpy(), brute_force_keep(scores.numpy(), n, m))
    assert brute_force_conforms(scores * keep, n, m)
    assert int(keep.sum()) == scores.numel() // m * n


def test_nm_mask_ties_keep_lowest_index_first():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0]])
    assert nm_mask(scores, 2, 4).tolist() == [[True, True, False, False, False, True, True, False]]
    assert nm_mask(torch.zeros(2, 8), 1, 4).tolist() == [[True, False, False, False] * 2] * 2


def test_nm_mask_of_a_layer_ranks_by_magnitude_and_masked_lowest():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-5.0, 1.0, 4.0, -2.0]]))
    assert nm_mask(layer).tolist() == [[True, False, True, False]]
    apply_mask(layer, torch.tensor([[0.0, 1.0, 1.0, 1.0]]))  # -5 pruned: ranks below every live weight
    assert nm_mask(layer).tolist() == [[False, False, True, True]]


def test_equals_torch_ao_weight_norm_sparsifier_2_4():
    sparsifier_cls = pytest.importorskip("torch.ao.pruning").WeightNormSparsifier
    torch.manual_seed(0)
    ours, theirs = nn.Sequential(nn.Linear(64, 16), nn.Linear(16, 8)), None
    theirs = copy.deepcopy(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.pruning may warn that it is deprecated
        sparsifier = sparsifier_cls(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
        sparsifier.prepare(theirs, [{"tensor_fqn": "0.weight"}, {"tensor_fqn": "1.weight"}])
        sparsifier.step()
    apply_nm_sparsity(ours, 2, 4)
    for i in (0, 1):
        torch_mask = theirs[i].parametrizations.weight[0].mask.bool()
        assert torch.equal(get_mask(ours[i]).bool(), torch_mask)


def test_apply_nm_sparsity_masks_every_layer_and_reports():
    model = cnn()
    before = {name: m.weight.detach().clone() for name, m in prunable_layers(model)}
    result = apply_nm_sparsity(model, 2, 4, exclude=["conv1"])
    assert result == {"conv2": 0.5, "fc": 0.5}
    for name in result:
        layer = dict(model.named_modules())[name]
        expected = brute_force_keep(before[name].abs().numpy(), 2, 4)
        assert np.array_equal(get_mask(layer).bool().numpy(), expected)
        # masks are values: the stored weight is not written
        assert torch.equal(layer.parametrizations.weight.original, before[name])
    assert get_mask(model.conv1) is None
    report = check_nm_pattern(model, exclude=["conv1"])
    assert report["conforms"] and report["conforming"] == 1.0 and report["sparsity"] == 0.5
    assert report["layers"]["fc"] == {"conforms": True, "sparsity": 0.5, "groups": 10 * 32, "conforming": 1.0}


def test_custom_score_and_existing_mask_keep_the_pattern_and_revive_nothing():
    model = cnn()
    layers = prunable_layers(model, exclude=["conv1"])
    g = torch.Generator().manual_seed(3)
    old = {name: (torch.rand(m.weight.shape, generator=g) > 0.7).float() for name, m in layers}
    for name, module in layers:
        apply_mask(module, old[name])
    scores = {name: torch.rand(m.weight.shape, generator=g) for name, m in layers}
    apply_nm_sparsity(layers, 2, 4, score=lambda name, module: scores[name])
    for name, module in layers:
        mask = get_mask(module)
        assert not bool((mask > old[name]).any()), "a pruned weight came back"
        # expected: live first, then by score, then lowest index
        key = torch.where(old[name].bool(), scores[name] + 2.0, scores[name] - 2.0)
        assert np.array_equal(mask.bool().numpy(), brute_force_keep(key.numpy(), 2, 4) & old[name].bool().numpy())
        assert brute_force_conforms(module.weight, 2, 4)


def test_masks_hold_through_training_and_make_permanent():
    model = cnn()
    apply_nm_sparsity(model, 2, 4, exclude=["conv1"])
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert brute_force_conforms(model.conv2.weight, 2, 4) and brute_force_conforms(model.fc.weight, 2, 4)
    assert check_nm_pattern(model, exclude=["conv1"])["conforms"]
    out = model(x)
    assert make_permanent(model) == 2
    assert torch.equal(model(x), out)
    assert brute_force_conforms(model.fc.weight, 2, 4) and check_nm_pattern(model, exclude="conv1")["conforms"]


def test_check_nm_pattern_counts_nonconforming_groups_exactly():
    layer = nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                                         [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
    report = check_nm_pattern(layer, 2, 4)
    assert report["layers"]["Linear"] == {"conforms": False, "sparsity": 10 / 16, "groups": 4, "conforming": 3 / 4}
    assert not report["conforms"] and report["conforming"] == 3 / 4
    assert check_nm_pattern(layer, 3, 4)["conforms"]
    with torch.no_grad():
        layer.weight[1, 4:6] = float("nan")  # NaN counts as non-zero
    assert check_nm_pattern(layer, 1, 4)["layers"]["Linear"]["conforming"] == 1 / 4


def test_bad_shapes_and_arguments_are_refused_and_change_nothing():
    model = cnn()
    with pytest.raises(ValueError, match=r"conv1.*exclude=\['conv1'\]"):
        apply_nm_sparsity(model, 2, 4)  # conv1 (9 inputs) is refused ...
    assert all(get_mask(m) is None for _, m in prunable_layers(model))  # ... and nothing was applied
    with pytest.raises(ValueError, match=r"conv1.*drop"):
        apply_nm_sparsity(prunable_layers(model), 2, 4)  # a list of layers: no exclude to suggest
    with pytest.raises(ValueError, match=r"\(3, 6\)"):
        nm_mask(torch.rand(3, 6), 2, 4)
    with pytest.raises(ValueError, match="conv1"):
        check_nm_pattern(model)
    for kwargs, err, word in [(dict(n=5, m=4), ValueError, "n"), (dict(n=0), ValueError, "n"),
                              (dict(m=4.0), TypeError, "m"), (dict(n=True), TypeError, "n")]:
        with pytest.raises(err, match=word):
            nm_mask(torch.rand(2, 8), **kwargs)
        with pytest.raises(err, match=word):
            apply_nm_sparsity(model, exclude=["conv1"], **kwargs)
    with pytest.raises(ValueError, match="score"):
        apply_nm_sparsity(model, exclude=["conv1"], score=lambda name, module: torch.rand(3))
    with pytest.raises(ValueError, match="NaN"):
        nm_mask(torch.tensor([[1.0, float("nan"), 0.0, 0.0]]))
    assert all(get_mask(m) is None for _, m in prunable_layers(model))


@pytest.mark.parametrize("dtype, shape", [(torch.float16, (1024, 1024)), (torch.bfloat16, (64, 128)),
                                          (torch.int8, (32, 256)), (torch.float32, (64, 96))])
def test_semi_structured_bytes_equal_torchs_cutlass_packing(dtype, shape):
    convert = pytest.importorskip("torch.sparse._semi_structured_conversions").sparse_semi_structured_from_dense_cutlass
    pattern = [0.0, 1.0] if dtype == torch.float32 else [0.0, 0.0, 1.0, 1.0]  # torch packs fp32 as 1:2
    dense = torch.tensor(pattern).tile((shape[0], shape[1] // len(pattern))).to(dtype)
    packed, meta = convert(dense)
    sizes = semi_structured_bytes(*shape, dtype=dtype)
    assert sizes["values"] == packed.numel() * packed.element_size()
    assert sizes["metadata"] == meta.numel() * meta.element_size()
    assert sizes["dense"] == dense.numel() * dense.element_size()
    assert sizes["compressed"] == sizes["values"] + sizes["metadata"]
    kept_bits = 4 if dtype == torch.float32 else 2
    assert sizes["metadata"] * 8 == dense.numel() // len(pattern) * (len(pattern) // 2) * kept_bits


def test_semi_structured_bytes_of_a_1024_square_fp16_layer():
    # by hand: 1024*512 kept fp16 values (2 B) + 2 bits per kept value
    sizes = semi_structured_bytes(1024, 1024)
    assert sizes["compressed"] == 1024 * 512 * 2 + 1024 * 512 * 2 // 8 == 1_179_648
    assert sizes["dense"] == 2_097_152 and sizes["ratio"] == 0.5625
    with pytest.raises(ValueError, match="n_cols"):
        semi_structured_bytes(1024, 100)
    with pytest.raises(ValueError, match="n_rows"):
        semi_structured_bytes(10, 1024)
    with pytest.raises(ValueError, match="dtype"):
        semi_structured_bytes(32, 64, dtype=torch.float64)


def test_shape_rules_match_torchs_semi_structured_constraints():
    cutlass = pytest.importorskip("torch.sparse").SparseSemiStructuredTensorCUTLASS._DTYPE_SHAPE_CONSTRAINTS
    for dtype, c in cutlass.items():
        semi_structured_bytes(c.sparse_min_rows, c.sparse_min_cols, dtype=dtype)
        with pytest.raises(ValueError, match="n_cols"):
            semi_structured_bytes(c.sparse_min_rows, c.sparse_min_cols + 4, dtype=dtype)


@pytest.mark.skipif(not torch.cuda.is_available() or not hasattr(torch.sparse, "to_sparse_semi_structured"),
                    reason="torch.sparse.to_sparse_semi_structured needs a CUDA GPU")
def test_our_2_4_mask_is_accepted_by_torchs_semi_structured_kernels():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("semi-structured sparsity needs compute capability 8.0+")
    torch.manual_seed(0)
    layer = nn.Linear(128, 64).half().cuda()
    apply_nm_sparsity([("fc", layer)], 2, 4)
    make_permanent(layer)
    x = torch.randn(32, 128, dtype=torch.float16, device="cuda")
    dense_out = layer(x)
    sparse = torch.sparse.to_sparse_semi_structured(layer.weight.detach())
    assert torch.equal(sparse.to_dense(), layer.weight.detach())
    sparse_out = nn.functional.linear(x, sparse, layer.bias)
    assert torch.allclose(sparse_out, dense_out, atol=1e-2, rtol=1e-2)
