import copy

import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn

from pruning_utils.masks import get_mask, is_masked, prunable_layers, sparsity
from pruning_utils.models import MLP, SmallCNN
from pruning_utils.unstructured import SimplePruner, ThresholdPruner


def model_pair(seed=0):
    torch.manual_seed(seed)
    model = SmallCNN(widths=(8, 16), input_size=8)
    return model, copy.deepcopy(model)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---- SimplePruner ------------------------------------------------------------------------------


def test_std_threshold_prunes_below_q_times_each_layers_std_like_han_et_al():
    model, ref = model_pair()
    pruner = SimplePruner(model, verbose=False)
    table = pruner.apply_std_threshold(0.8)
    for name, layer in prunable_layers(ref):  # by hand, on the untouched copy
        w = layer.weight.detach().numpy().ravel()
        expected = (abs(w) <= 0.8 * w.std(ddof=1)).mean()
        assert table[name] == pytest.approx(expected)
        assert torch.equal(get_mask(dict(model.named_modules())[name]).bool(),
                           layer.weight.detach().abs() > 0.8 * layer.weight.detach().std())


def test_std_threshold_takes_one_quality_per_layer_and_compounds_on_live_weights():
    model, ref = model_pair()
    names = [n for n, _ in prunable_layers(model)]
    assert names == ["conv1", "conv2", "fc"]
    table = SimplePruner(model, verbose=False).apply_std_threshold({"conv1": 0.0, "conv2": 0.5, "fc": 1.5})
    assert table["conv1"] == 0.0 and 0 < table["conv2"] < table["fc"]
    layer = model.conv2
    alive = layer.weight.detach()[get_mask(layer).bool()]
    SimplePruner(model, include=["conv2"], verbose=False).apply_std_threshold(1.0)  # the std of what is left
    expected = 1 - float((alive.abs() > alive.std()).sum()) / layer.weight.numel()
    assert SimplePruner.get_sparsity(layer) == pytest.approx(expected)


@pytest.mark.parametrize("quality, error, message", [
    (-0.5, ValueError, "quality must be a finite number >= 0"),
    (float("nan"), ValueError, "quality must be"),
    ("1", TypeError, "quality must be"),
    ({"conv1": 1.0}, ValueError, "missing"),
    ({"conv1": 1.0, "conv2": 1.0, "fc": 1.0, "nope": 1.0}, ValueError, "unknown"),
    ({"conv1": 1.0, "conv2": -1.0, "fc": 1.0}, ValueError, "quality\\['conv2'\\]"),
])
def test_std_threshold_refuses_bad_quality_and_changes_nothing(quality, error, message):
    model, ref = model_pair()
    with pytest.raises(error, match=message):
        SimplePruner(model, verbose=False).apply_std_threshold(quality)
    assert not any(is_masked(m) for _, m in prunable_layers(model))


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.9])
def test_simple_pruner_matches_torch_l1_unstructured(rate):
    ours, theirs = model_pair()
    SimplePruner(ours, rate, verbose=False).apply_magnitude_pruning()
    for (name, m), (_, t) in zip(prunable_layers(ours), prunable_layers(theirs)):
        tprune.l1_unstructured(t, "weight", amount=rate)
        assert torch.equal(get_mask(m), t.weight_mask), name  # random init: no ties


def test_simple_pruner_twice_compounds_like_torch_pruning_container():
    ours, theirs = model_pair()
    pruner = SimplePruner(ours, 0.5, verbose=False)
    pruner.apply_magnitude_pruning()
    table = pruner.apply_magnitude_pruning()
    for (name, m), (_, t) in zip(prunable_layers(ours), prunable_layers(theirs)):
        tprune.l1_unstructured(t, "weight", amount=0.5)
        tprune.l1_unstructured(t, "weight", amount=0.5)
        assert torch.equal(get_mask(m), t.weight_mask), name
        assert table[name] == pytest.approx(0.75, abs=1 / m.weight.numel())


def test_simple_pruner_prints_a_sparsity_table(capsys):
    model, _ = model_pair()
    SimplePruner(model, 0.5).apply_magnitude_pruning()
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == ["conv1", "conv2", "fc"]
    assert all(line.endswith("sparse") for line in out)


def test_get_sparsity_reads_through_the_mask():
    model, _ = model_pair()
    pruner = SimplePruner(model, 0.4, verbose=False)
    pruner.apply_magnitude_pruning()
    # the tutorial read weight_orig and reported 0%; we read the effective weight
    w = model.fc.weight
    assert pruner.get_sparsity(model.fc) == int((w == 0).sum()) / w.numel() > 0.39


def test_remove_reparametrization_keeps_zeros_and_outputs():
    model, _ = model_pair()
    pruner = SimplePruner(model, 0.6, verbose=False)
    pruner.apply_magnitude_pruning()
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    before, sp = model(x), pruner.sparsity()
    assert pruner.remove_pruning_reparametrization() == 3
    assert not any(is_masked(m) for _, m in prunable_layers(model))
    assert torch.equal(model(x), before)
    assert pruner.sparsity() == sp


def test_simple_pruner_respects_include_exclude():
    model, _ = model_pair()
    table = SimplePruner(model, 0.5, exclude=["fc"], verbose=False).apply_magnitude_pruning()
    assert set(table) == {"conv1", "conv2"}
    assert not is_masked(model.fc)


# ---- ThresholdPruner ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.2, 0.7, 0.95])
def test_global_pruning_matches_torch_global_unstructured(target):
    ours, theirs = model_pair(1)
    threshold = ThresholdPruner(ours).apply_global_pruning(target)
    params = [(m, "weight") for _, m in prunable_layers(theirs)]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=target)
    for (name, m), (t, _) in zip(prunable_layers(ours), params):
        assert torch.equal(get_mask(m), t.weight_mask), name
    # every pruned weight is <= threshold, every kept one >= threshold
    originals = [t.weight_orig.detach().abs() for t, _ in params]
    pruned = torch.cat([o[t.weight_mask == 0] for o, (t, _) in zip(originals, params)])
    kept = torch.cat([o[t.weight_mask == 1] for o, (t, _) in zip(originals, params)])
    assert float(pruned.max()) == pytest.approx(threshold) and float(kept.min()) >= threshold


@pytest.mark.parametrize("target", [0.1, 0.5, 0.9, 0.999])
def test_global_sparsity_exact_with_ties(target):
    # Layers initialised to a constant: every magnitude ties; ">= threshold" alone would keep or cut all.
    model = MLP(in_features=64, hidden=(32, 16))
    for _, m in prunable_layers(model):
        nn.init.constant_(m.weight, 0.5)
    ThresholdPruner(model).apply_global_pruning(target)
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    zeros = sum(int((m.weight == 0).sum()) for _, m in prunable_layers(model))
    assert zeros == round(target * total)


def test_pruning_an_already_pruned_model_further_is_exact():
    model, _ = model_pair(2)
    pruner = ThresholdPruner(model)
    pruner.apply_global_pruning(0.5)
    old = {n: get_mask(m).clone() for n, m in prunable_layers(model)}
    pruner.apply_global_pruning(0.8)
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    assert pruner.sparsity() * total == round(0.8 * total)
    for name, m in prunable_layers(model):
        assert torch.all(get_mask(m)[old[name] == 0] == 0), "an old zero came back"
    # a lower target cannot bring weights back: sparsity stays where it was
    pruner.apply_global_pruning(0.3)
    assert pruner.sparsity() * total == round(0.8 * total)


def test_live_zero_weights_are_not_preferred_over_masked_ones():
    # after make_permanent-free pruning, weights that are exactly zero but unmasked must not
    # steal the slots of already-masked weights when pruning further
    model = MLP(in_features=4, hidden=(), num_classes=2)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]))
    pruner = ThresholdPruner(model)
    pruner.apply_global_pruning(0.25)
    assert pruner.sparsity() == 0.25 and get_mask(model.fc1)[0, 0] == 0


def test_masks_dict_and_apply_masks_during_training_is_idempotent():
    model, _ = model_pair()
    pruner = ThresholdPruner(model)
    pruner.apply_global_pruning(0.6)
    assert set(pruner.masks) == {"conv1", "conv2", "fc"}
    assert all(torch.equal(pruner.masks[n], get_mask(m)) for n, m in prunable_layers(model))
    before = state(model)
    pruner.apply_masks_during_training()
    pruner.apply_masks_during_training()
    after = state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_global_masks_survive_sgd_with_momentum_and_weight_decay():
    # The tutorial's masks were applied once to weight.data; momentum then revived pruned weights.
    torch.manual_seed(0)
    model = MLP(in_features=64, hidden=(32,))
    pruner = ThresholdPruner(model)
    pruner.apply_global_pruning(0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert sparsity(model) == pytest.approx(0.8, abs=1 / 2400)
    for name, m in prunable_layers(model):
        assert torch.all(m.weight[pruner.masks[name] == 0] == 0)


def test_skip_first_and_last_layers_stay_dense():
    model, _ = model_pair()
    pruner = ThresholdPruner(model, skip_first=True, skip_last=True)
    pruner.apply_global_pruning(0.9)
    assert list(pruner.masks) == ["conv2"]
    assert pruner.layer_sparsities()["conv2"] == pytest.approx(0.9, abs=1e-3)
    assert not is_masked(model.conv1) and not is_masked(model.fc)


def test_compute_threshold_and_create_mask():
    w = torch.tensor([-4.0, 1.0, -2.0, 3.0])
    assert ThresholdPruner.compute_threshold(w, 50) == 2.0
    assert ThresholdPruner.compute_threshold(w, 0) == 0.0
    assert ThresholdPruner.create_mask(w, 2.0).tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="percentile"):
        ThresholdPruner.compute_threshold(w, 150)


def test_large_model_global_pruning_is_exact():
    # tens of millions of weights: torch.quantile refuses inputs this large; we do not use it
    model = nn.Sequential(nn.Linear(4096, 4096), nn.Linear(4096, 1024))
    pruner = ThresholdPruner(model)
    pruner.apply_global_pruning(0.9)
    total = 4096 * 4096 + 4096 * 1024
    assert round(pruner.sparsity() * total) == round(0.9 * total)


# ---- bad input leaves the model untouched ------------------------------------------------------


@pytest.mark.parametrize("bad, error", [(1.0, ValueError), (-0.2, ValueError), (float("nan"), ValueError),
                                        ("0.5", TypeError), (None, TypeError)])
def test_bad_amounts_are_refused_and_change_nothing(bad, error):
    model, _ = model_pair()
    before = state(model)
    with pytest.raises(error, match="target_sparsity"):
        ThresholdPruner(model).apply_global_pruning(bad)
    with pytest.raises(error, match="pruning_rate"):
        SimplePruner(model, bad)
    if bad is not None:  # None means "the rate given to the constructor"
        with pytest.raises(error, match="pruning_rate"):
            SimplePruner(model, 0.5, verbose=False).apply_magnitude_pruning(bad)
    after = state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_bad_layer_selection_is_refused():
    model, _ = model_pair()
    with pytest.raises(ValueError, match=r"include names no prunable layer: \['conv7'\]"):
        SimplePruner(model, 0.5, include=["conv7"])
    with pytest.raises(ValueError, match="no prunable layer"):
        ThresholdPruner(nn.Sequential(nn.ReLU()))
