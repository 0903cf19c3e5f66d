"""int8 weights (against torchao's own quantizer), k-means weight sharing (against scikit-learn's KMeans),
and the sparse format's int8 / codebook values and LZMA compression (exact round trips, exact byte counts)."""

from __future__ import annotations

import copy
import lzma

import pytest
import torch
from sklearn.cluster import KMeans
from torch import nn

import pruning_utils as pu
from pruning_utils.quantization import _linear_init
from pruning_utils.sparse_format import _pack_indices, _unpack_indices


def _model(seed=0):
    torch.manual_seed(seed)
    return pu.SmallCNN(widths=(8, 16), input_size=8)


def _pruned(seed=0, rate=0.7):
    model = _model(seed)
    pu.magnitude_prune(pu.prunable_layers(model), rate)
    return model


def _weights(model):
    return {name: module.weight.detach().clone() for name, module in pu.prunable_layers(model)}


# --- int8 against torchao --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_int8_codes_and_scales_equal_torchaos(seed):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    torch.manual_seed(seed)
    layer = nn.Linear(48, 12)
    with torch.no_grad():
        layer.weight[0].zero_()                       # an all-zero row
        layer.weight[1, :10] = 0                      # pruned weights
        layer.weight[2] *= 1000                       # a row on another scale
    codes, scales = pu.int8_per_channel(layer.weight)
    theirs = copy.deepcopy(layer)
    quantize_(theirs, Int8WeightOnlyConfig())
    assert torch.equal(codes, theirs.weight.qdata)
    assert torch.equal(scales, theirs.weight.scale.reshape(-1))
    assert codes.dtype == torch.int8 and bool((codes[1, :10] == 0).all()) and bool((codes[0] == 0).all())


def test_quantize_int8_model_computes_what_torchaos_int8_model_computes():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    torch.manual_seed(0)
    model = pu.MLP(in_features=32, num_classes=5, hidden=(24,))
    pu.magnitude_prune(pu.prunable_layers(model), 0.5)
    pu.make_permanent(model)
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    pu.quantize_int8(ours)
    quantize_(theirs, Int8WeightOnlyConfig())
    x = torch.randn(16, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(ours(x), model(x), atol=1e-6, rtol=0)  # quantization did change the outputs


def test_quantize_int8_keeps_masks_zeros_and_is_idempotent():
    model = _pruned()
    masks = {name: pu.get_mask(module) for name, module in pu.prunable_layers(model)}
    before = _weights(model)
    report = pu.quantize_int8(model)
    after = _weights(model)
    for name, module in pu.prunable_layers(model):
        assert torch.equal(pu.get_mask(module), masks[name])
        assert bool((after[name][masks[name] == 0] == 0).all())
        rows = before[name].reshape(before[name].shape[0], -1)
        step = rows.abs().amax(1) / 127.5  # one int8 step per row: the error is at most half of it
        err = (after[name] - before[name]).reshape(rows.shape).abs().amax(1)
        assert bool((err <= step / 2 + 1e-7).all())
        assert report[name] <= 1 / 255 + 1e-6
        per_row = [torch.unique(r[r != 0]).numel() for r in after[name].reshape(rows.shape)]
        assert max(per_row) <= 256
    pu.quantize_int8(model)
    assert all(torch.equal(_weights(model)[n], after[n]) for n in after)


def test_quantize_int8_writes_nothing_when_a_layer_is_refused():
    model = _model()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    before = _weights(model)
    with pytest.raises(ValueError, match="fc"):
        pu.quantize_int8(model)
    after = _weights(model)
    assert all(torch.equal(before[n], after[n]) or n == "fc" for n in before)
    assert torch.equal(before["conv1"], after["conv1"])


# --- k-means weight sharing against scikit-learn -------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_share_weights_matches_sklearn_kmeans_from_the_same_linear_init(bits):
    model = _model(seed=bits)  # dense weights: no cluster runs empty (scikit-learn would move an empty one)
    before = _weights(model)
    counts = pu.share_weights(model, bits)
    after = _weights(model)
    k = 2 ** bits
    compared = 0
    for name, w in before.items():
        live = w.reshape(-1) != 0
        if counts[name] < k:  # a cluster ran empty (a small layer): the fixed-point test covers that case
            continue
        compared += 1
        values = w.reshape(-1)[live].double()
        km = KMeans(n_clusters=k, init=_linear_init(values, k).numpy().reshape(-1, 1), n_init=1,
                    algorithm="lloyd", tol=0.0, max_iter=300).fit(values.numpy().reshape(-1, 1))
        expected = torch.from_numpy(km.cluster_centers_.reshape(-1))[torch.from_numpy(km.labels_)].float()
        assert torch.allclose(after[name].reshape(-1)[live], expected, atol=1e-6), name
        assert bool((after[name].reshape(-1)[~live] == 0).all())
        assert counts[name] == torch.unique(after[name][after[name] != 0]).numel() <= k
    assert compared >= 2


def test_share_weights_on_pruned_weights_ends_at_a_fixed_point_of_lloyds_algorithm():
    """Pruned weights leave a gap around zero where linear initialisation puts centroids that get no
    weight: they stay put, and the result is still k-means' fixed point (each weight at its nearest
    centroid, each centroid in use the mean of its weights)."""
    model = _pruned(rate=0.8)
    before = _weights(model)
    pu.share_weights(model, 4)
    for name, w in _weights(model).items():
        live = before[name] != 0
        original, shared = before[name][live].double(), w[live].double()
        centroids = torch.unique(shared)
        nearest = centroids[(original[:, None] - centroids[None, :]).abs().argmin(1)]
        assert torch.allclose(nearest, shared), name
        for c in centroids:
            assert torch.isclose(original[shared == c].mean(), c, atol=1e-6), name


def test_share_weights_keeps_masks_and_leaves_layers_with_few_values_alone():
    model = _pruned()
    masks = {name: pu.get_mask(module) for name, module in pu.prunable_layers(model)}
    with torch.no_grad():
        model.conv1.parametrizations.weight.original.copy_(torch.sign(model.conv1.weight.detach()) * 0.5)
    few = model.conv1.weight.detach().clone()  # values -0.5, 0, 0.5
    pu.share_weights(model, 2)
    assert torch.equal(model.conv1.weight.detach(), few)
    assert all(torch.equal(pu.get_mask(m), masks[n]) for n, m in pu.prunable_layers(model))


def test_share_weights_refuses_bad_bits_and_non_finite_weights():
    with pytest.raises(ValueError, match="bits"):
        pu.share_weights(_model(), 9)
    model = _model()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("inf")
    before = _weights(model)
    with pytest.raises(ValueError, match="'fc'"):
        pu.share_weights(model, 3)
    assert torch.equal(_weights(model)["conv1"], before["conv1"])


# --- the sparse format's quantized values ----------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(1, 9))
def test_index_packing_round_trips_every_value(bits):
    values = torch.arange(2 ** bits).repeat(3)[torch.randperm(3 * 2 ** bits, generator=torch.Generator().manual_seed(bits))]
    packed = _pack_indices(values, bits)
    assert packed.numel() == (values.numel() * bits + 7) // 8
    assert torch.equal(_unpack_indices(packed, values.numel(), bits), values)


def _round_trip(model, tmp_path, **kw):
    path = pu.save_sparse(model, tmp_path / "m.pt", **kw)
    return pu.load_sparse(path), path


@pytest.mark.parametrize("encoding", pu.ENCODINGS if hasattr(pu, "ENCODINGS") else ("bitmask", "csr"))
@pytest.mark.parametrize("compress", [False, True])
def test_int8_values_give_back_a_quantized_model_exactly(tmp_path, encoding, compress):
    model = _pruned()
    pu.quantize_int8(model)
    loaded, _ = _round_trip(model, tmp_path, values="int8", encoding=encoding, compress=compress)
    reference = pu.plain_state_dict(model)
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_int8_values_round_a_float_model_as_quantize_int8_does(tmp_path):
    model = _model()
    loaded, _ = _round_trip(model, tmp_path, values="int8")
    pu.quantize_int8(model)
    reference = pu.plain_state_dict(model)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


@pytest.mark.parametrize("encoding", ["bitmask", "csr"])
def test_codebook_values_round_trip_a_shared_model_with_the_bytes_counted(tmp_path, encoding):
    model = _pruned()
    pu.share_weights(model, 3)
    loaded, path = _round_trip(model, tmp_path, values="codebook", encoding=encoding)
    reference = pu.plain_state_dict(model)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    if encoding == "bitmask":  # each weight: its bitmask, its codebook and its packed indices, to the byte
        entries = torch.load(path, weights_only=True)["entries"]
        for name, module in pu.prunable_layers(model):
            w = module.weight.detach()
            nnz, k = int((w != 0).sum()), torch.unique(w[w != 0]).numel()
            bits = max(1, (k - 1).bit_length())
            entry = entries[f"{name}.weight"]
            assert (entry["bits"][2], entry["values"][2], entry["codebook"][2]) == (
                (w.numel() + 7) // 8, (nnz * bits + 7) // 8, k), name


def test_codebook_refuses_a_tensor_with_too_many_values_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"conv2.weight.*share_weights"):
        pu.save_sparse(_model(), tmp_path / "m.pt", values="codebook")
    assert list(tmp_path.iterdir()) == []


def test_smaller_values_make_smaller_files_and_compression_recognised_on_load(tmp_path):
    model = _pruned(rate=0.9)
    pu.make_permanent(model)
    shared = copy.deepcopy(model)
    pu.share_weights(shared, 4)
    quantized = copy.deepcopy(model)
    pu.quantize_int8(quantized)
    sizes = [pu.checkpoint_sizes(model)["sparse_bytes"],
             pu.checkpoint_sizes(quantized, values="int8")["sparse_bytes"],
             pu.checkpoint_sizes(shared, values="codebook")["sparse_bytes"],
             pu.checkpoint_sizes(shared, values="codebook", compress=True)["sparse_bytes"]]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4, sizes
    path = pu.save_sparse(shared, tmp_path / "c.pt", values="codebook", compress=True)
    assert path.read_bytes()[:6] == b"\xfd7zXZ\x00"
    loaded = pu.load_sparse(path)
    assert all(torch.equal(loaded[k], v) for k, v in pu.plain_state_dict(shared).items())


def test_damaged_or_truncated_compressed_files_are_refused_by_name(tmp_path):
    path = pu.save_sparse(_pruned(), tmp_path / "c.pt", compress=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(pu.CheckpointError, match="c.pt.*(damaged|truncated)"):
        pu.load_sparse(path)
    path.write_bytes(data[:20] + bytes(b ^ 0xFF for b in data[20:60]) + data[60:])
    with pytest.raises(pu.CheckpointError, match="c.pt"):
        pu.load_sparse(path)
    path.write_bytes(lzma.compress(b"not a torch file"))
    with pytest.raises(pu.CheckpointError, match="c.pt"):
        pu.load_sparse(path)


def test_fp16_with_quantized_values_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        pu.save_sparse(_model(), tmp_path / "m.pt", fp16=True, values="int8")
    with pytest.raises(ValueError, match="values"):
        pu.save_sparse(_model(), tmp_path / "m.pt", values="int4")


def test_nearest_centroid_by_binary_search_equals_argmin_over_all_centroids():
    from pruning_utils.quantization import _nearest

    g = torch.Generator().manual_seed(0)
    for k in (1, 2, 7, 256):
        centroids = torch.sort(torch.randn(k, generator=g, dtype=torch.float64)).values
        values = torch.cat([torch.randn(2000, generator=g, dtype=torch.float64) * 2,
                            centroids, (centroids[1:] + centroids[:-1]) / 2])  # on centroids and on midpoints
        expected = (values[:, None] - centroids[None, :]).abs().argmin(dim=1)
        assert torch.equal(_nearest(values, centroids), expected), k


def test_quantizers_refuse_a_weight_under_another_parametrization_and_write_nothing():
    """Writing the effective values into the ``original`` of a foreign parametrization would be wrong."""
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    for quantize in (pu.quantize_int8, lambda m: pu.share_weights(m, 2)):
        model = _model()
        parametrize.register_parametrization(model.fc, "weight", Double())
        before = _weights(model)
        with pytest.raises(ValueError, match="'fc'.*parametrization"):
            quantize(model)
        assert all(torch.equal(before[n], w) for n, w in _weights(model).items())
