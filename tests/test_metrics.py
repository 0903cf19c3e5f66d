import copy
import math

import pytest
import torch
from torch import nn

from pruning_utils.masks import apply_mask, is_masked, magnitude_prune, make_permanent, prunable_layers, sparsity
from pruning_utils.csr import CSRLinear, to_dense_linear, to_sparse_linear
from pruning_utils.flops import count_flops, sparse_flops
from pruning_utils.latency import measure_latency
from pruning_utils.metrics import analysis_table, analyze_pruned_model, format_analysis
from pruning_utils.params import count_parameters, plain_state_dict
from pruning_utils.sensitivity import sensitivity_scan
from pruning_utils.models import MLP, SmallCNN
from _pruned_models import pruned_cnn, pruned_mlp


# --- counts and sparsity ---------------------------------------------------------------------


def test_masked_and_permanent_models_report_the_same_numbers():
    masked = pruned_cnn()
    permanent = copy.deepcopy(masked)
    make_permanent(permanent)
    assert is_masked(masked.conv1) and not is_masked(permanent.conv1)
    a = analyze_pruned_model(masked, latency=False)
    b = analyze_pruned_model(permanent, latency=False)
    assert a == b
    assert a["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert a["sparsity"] == pytest.approx(sparsity(masked))


def test_counts_match_a_brute_force_count_and_skip_bias_and_batchnorm():
    model = pruned_cnn()
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    counts = count_parameters(model)
    assert counts["prunable_params"] == sum(w.numel() for w in weights)
    assert counts["non_zero_prunable_params"] == sum(int((w != 0).sum()) for w in weights)
    # the masked model's parameters() holds the hidden originals; the count is the same
    assert counts["total_params"] == sum(p.numel() for p in model.parameters())
    # zeroing every bias and BatchNorm scale changes the whole-model sparsity, not the prunable one
    before = analyze_pruned_model(model, latency=False, disk=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm2d):
                m.weight.zero_()
    after = analyze_pruned_model(model, latency=False, disk=False)
    assert after["sparsity"] == before["sparsity"]
    assert after["model_sparsity"] > before["model_sparsity"]
    assert after["non_zero_params"] == after["non_zero_prunable_params"]


def test_everything_pruned_gives_defined_ratios():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    for layer in (model[0], model[2]):
        apply_mask(layer, torch.zeros_like(layer.weight))
        with torch.no_grad():
            layer.bias.zero_()
    result = analyze_pruned_model(model, (1, 6), latency=False)
    assert result["non_zero_params"] == 0 and result["sparsity"] == 1.0 and result["model_sparsity"] == 1.0
    assert math.isinf(result["compression_ratio"])
    assert result["sparse_flops"] == 0 and math.isinf(result["theoretical_speedup"])
    assert "inf" in format_analysis(result)


def test_model_without_prunable_layers_reports_zero_sparsity():
    result = analyze_pruned_model(nn.Sequential(nn.BatchNorm1d(4)), (2, 4), latency=False, disk=False)
    assert result["prunable_params"] == 0 and result["sparsity"] == 0.0
    assert result["theoretical_speedup"] == 1.0  # no FLOPs at all: 0/0 is "no change"
    assert result["compression_ratio"] == 2.0  # BatchNorm's bias starts at zero: 8 parameters, 4 non-zero


# --- FLOPs -----------------------------------------------------------------------------------


def tiny_conv_linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 4))


def test_flops_equal_a_hand_count():
    model = tiny_conv_linear()
    # conv: 2 filters x 3x3 output positions x (1 channel x 3x3 kernel) MACs; linear: 18 x 4 MACs; 2 FLOPs/MAC
    conv_macs, linear_macs = 2 * 3 * 3 * 9, 18 * 4
    total, per_module = count_flops(model, (1, 1, 5, 5))
    assert total == 2 * (conv_macs + linear_macs)
    assert per_module == {"0": 2 * conv_macs, "2": 2 * linear_macs}
    assert count_flops(model, (3, 1, 5, 5))[0] == 3 * total  # linear in the batch


def test_sparse_flops_scale_each_layer_by_its_density():
    model = tiny_conv_linear()
    mask = torch.ones_like(model[0].weight)
    mask.view(-1)[:12] = 0  # 12 of 18 conv weights pruned
    apply_mask(model[0], mask)
    dense, remaining = sparse_flops(model, (1, 1, 5, 5))
    assert dense == 2 * (162 + 72)
    assert remaining == 2 * (162 * 6 // 18 + 72)


def test_wrong_input_size_is_a_clear_error():
    model = SmallCNN()
    with pytest.raises(ValueError, match=r"input_size=\(1, 3, 224, 224\) does not fit SmallCNN"):
        analyze_pruned_model(model, (1, 3, 224, 224), latency=False)
    with pytest.raises(ValueError, match="input_size=.*does not fit"):
        measure_latency(model, (1, 5, 8, 8))
    for bad in ((1, 0, 8, 8), "1x1x8x8", (1.0, 1, 8, 8), ()):
        with pytest.raises(ValueError, match="input_size must be an input shape"):
            count_flops(model, bad)


def test_default_input_size_comes_from_the_model():
    assert analyze_pruned_model(SmallCNN(), latency=False, disk=False)["input_size"] == (1, 1, 8, 8)
    assert analyze_pruned_model(MLP(in_features=20), latency=False, disk=False)["input_size"] == (1, 20)


def test_latency_is_measured_and_training_mode_restored():
    model = SmallCNN(widths=(4, 4, 4))
    model.train()
    seconds = measure_latency(model, rounds=1, min_run_time=0.01)
    assert 0 < seconds < 1
    assert model.training
    result = analyze_pruned_model(model, rounds=1, min_run_time=0.01)
    assert result["latency_s"] > 0


# --- sparse checkpoints ----------------------------------------------------------------------


def test_plain_state_dict_matches_the_permanent_models():
    model = pruned_cnn()
    permanent = copy.deepcopy(model)
    make_permanent(permanent)
    plain, reference = plain_state_dict(model), permanent.state_dict()
    assert plain.keys() == reference.keys()
    assert all(torch.equal(plain[k], reference[k]) for k in reference)


# --- CSR execution ---------------------------------------------------------------------------


def test_csr_linear_outputs_match_dense_and_convert_back():
    model = pruned_mlp(0.9)
    sparse_model = to_sparse_linear(model)
    layers = [m for m in sparse_model.modules() if isinstance(m, CSRLinear)]
    assert len(layers) == 3
    assert layers[0].nnz == int((model.fc1.weight != 0).sum())
    assert is_masked(model.fc1)  # the original model is left as it was
    x = torch.randn(16, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(sparse_model(x), model(x), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(sparse_model(x), model(x), rtol=1e-5, atol=1e-5)
    dense_again = to_dense_linear(sparse_model)
    assert not any(isinstance(m, CSRLinear) for m in dense_again.modules())
    with torch.no_grad():
        assert torch.equal(dense_again.fc1.weight, model.fc1.weight)
        torch.testing.assert_close(dense_again(x), model(x))


def test_csr_linear_without_bias_and_with_extra_dimensions():
    torch.manual_seed(0)
    layer = nn.Linear(12, 5, bias=False)
    apply_mask(layer, (torch.rand(5, 12) > 0.7).float())
    csr = CSRLinear.from_linear(layer)
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(csr(x), layer(x))
    with pytest.raises(ValueError, match="12 features"):
        csr(torch.randn(2, 11))
    assert copy.deepcopy(csr).nnz == csr.nnz


def test_to_sparse_linear_respects_min_sparsity_and_refuses_models_without_linear():
    model = pruned_mlp(0.0)
    magnitude_prune([("fc1", model.fc1)], 0.9, scope="layer")
    converted = to_sparse_linear(model, min_sparsity=0.5)
    assert isinstance(converted.fc1, CSRLinear) and type(converted.fc2) is not CSRLinear
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        to_sparse_linear(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match="min_sparsity"):
        to_sparse_linear(model, min_sparsity=1.5)


# --- sensitivity -----------------------------------------------------------------------------


def test_sensitivity_scan_prunes_one_layer_at_a_time():
    torch.manual_seed(0)
    model = MLP(in_features=20, hidden=(16, 8), num_classes=3)
    layers = dict(prunable_layers(model))
    total = sum(m.weight.numel() for m in layers.values())

    def zero_fraction(m):  # a metric we can predict: minus the fraction of zero weights
        return -sum(int((w.weight == 0).sum()) for _, w in prunable_layers(m)) / total

    scan = sensitivity_scan(model, zero_fraction, sparsities=[0.5, 0.9], progress=False)
    assert scan.dense == 0.0 and list(scan.results) == list(layers)
    for name, values in scan.results.items():
        n = layers[name].weight.numel()
        assert values == [pytest.approx(-round(s * n) / total) for s in (0.5, 0.9)]
    assert not any(is_masked(m) for m in model.modules())  # the model itself was not pruned
    allowed = scan.max_sparsity(tolerance=0.1)
    expected = {name: max([0.0] + [s for s in (0.5, 0.9) if round(s * layers[name].weight.numel()) / total <= 0.1])
                for name in layers}
    assert allowed == expected
    assert "| fc1 |" in scan.to_markdown()


def test_sensitivity_scan_bad_input():
    model = MLP(in_features=20, hidden=(16,), num_classes=3)
    with pytest.raises(ValueError, match="sparsities"):
        sensitivity_scan(model, lambda m: 0.0, sparsities=[1.2], progress=False)
    with pytest.raises(ValueError, match="sparsities"):
        sensitivity_scan(model, lambda m: 0.0, sparsities=[], progress=False)
    with pytest.raises(TypeError, match="evaluate_fn"):
        sensitivity_scan(model, 0.5, progress=False)
    with pytest.raises(ValueError, match="include names no prunable layer"):
        sensitivity_scan(model, lambda m: 0.0, layers=["nope"], progress=False)


# --- tables ----------------------------------------------------------------------------------


def test_analysis_table_formats_every_row():
    dense = SmallCNN(widths=(8, 16, 16))
    rows = {"dense": analyze_pruned_model(dense, latency=False),
            "pruned": {**analyze_pruned_model(pruned_cnn(), latency=False), "accuracy": 0.95}}
    table = analysis_table(rows).splitlines()
    assert table[0].startswith("| model | accuracy | sparsity | non-zero params | fewer params |")
    assert table[2].startswith("| dense | - | 0.0% |")
    assert table[3].startswith("| pruned | 95.00% | 90.0% |")
    expected = rows["dense"]["total_params"] / rows["pruned"]["non_zero_params"]
    assert f"| {expected:.2f}x |" in table[3]
    assert "fewer params" not in analysis_table(rows, reference=None)
    with pytest.raises(ValueError, match="results must be"):
        analysis_table({})
    with pytest.raises(ValueError, match="reference 'base'"):
        analysis_table(rows, reference="base")


def test_csr_linear_single_input_path_matches_dense():
    torch.manual_seed(0)
    layer = nn.Linear(30, 7)
    apply_mask(layer, (torch.rand(7, 30) > 0.8).float())
    csr = CSRLinear.from_linear(layer)
    assert csr.weight.col_indices().dtype == torch.int32
    for x in (torch.randn(1, 30), torch.randn(30), torch.randn(1, 1, 30)):
        with torch.no_grad():
            torch.testing.assert_close(csr(x), layer(x))
    no_bias = nn.Linear(30, 7, bias=False)
    x = torch.randn(1, 30)
    with torch.no_grad():
        torch.testing.assert_close(CSRLinear.from_linear(no_bias)(x), no_bias(x))


def test_models_pruned_with_torch_prune_are_read_through_their_masks():
    import torch.nn.utils.prune as torch_prune

    torch.manual_seed(0)
    ours = SmallCNN(widths=(8, 16, 16))
    theirs = copy.deepcopy(ours)
    magnitude_prune(prunable_layers(ours), 0.8)
    layers = [(m, "weight") for m in theirs.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(layers, pruning_method=torch_prune.L1Unstructured, amount=0.8)
    # torch keeps the original values in weight_orig: reading parameters() finds no new zeros
    assert all(int((m.weight_orig == 0).sum()) == 0 for m, _ in layers)
    a = analyze_pruned_model(ours, latency=False)
    b = analyze_pruned_model(theirs, latency=False)
    assert a == b and a["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert plain_state_dict(theirs).keys() == plain_state_dict(ours).keys()


def test_timing_and_flop_counting_give_every_submodule_its_own_mode_back():
    model = SmallCNN(widths=(4, 4, 4))
    model.train()
    model.bn1.eval()  # e.g. a frozen BatchNorm inside a model that is training
    count_flops(model, (1, 1, 8, 8))
    measure_latency(model, rounds=1, min_run_time=0.01)
    assert model.training and model.conv1.training and not model.bn1.training


def test_names_that_moved_out_of_metrics_still_resolve_there():
    from pruning_utils import csr, metrics, params, sensitivity

    assert metrics.plain_state_dict is params.plain_state_dict
    assert metrics.sensitivity_scan is sensitivity.sensitivity_scan and metrics.CSRLinear is csr.CSRLinear
    with pytest.raises(AttributeError):
        metrics.not_a_name  # noqa: B018
