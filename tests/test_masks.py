import copy

import pytest
import torch
from torch import nn

from pruning_utils.masks import (
    apply_mask,
    check_fraction,
    enforce_masks,
    get_mask,
    is_masked,
    layer_sparsities,
    magnitude_prune,
    make_permanent,
    prunable_layers,
    smallest_k,
    sparsity,
)
from pruning_utils.models import MLP, SmallCNN


def small_model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(widths=(4, 8), input_size=8)


def random_mask(module, keep=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(module.weight.shape, generator=g) < keep).float()


def test_mask_of_ones_changes_nothing():
    model = small_model()
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    before = model(x)
    for _, m in prunable_layers(model):
        apply_mask(m, torch.ones_like(m.weight))
    assert torch.equal(model(x), before)


def test_masked_entries_get_zero_gradient_and_zero_weight():
    model = small_model()
    conv = model.conv2
    mask = random_mask(conv)
    apply_mask(conv, mask)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    original = conv.parametrizations.weight.original
    assert torch.all(original.grad[mask == 0] == 0)
    assert torch.all(conv.weight[mask == 0] == 0)


def test_parameter_identity_is_kept_so_old_optimizers_still_work():
    model = small_model()
    weight_before = model.fc.weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    apply_mask(model.fc, random_mask(model.fc))
    assert model.fc.parametrizations.weight.original is weight_before
    assert any(p is weight_before for g in opt.param_groups for p in g["params"])


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4),
        lambda ps: torch.optim.Adam(ps, lr=1e-2),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    ],
    ids=["sgd-momentum-wd", "adam", "adamw"],
)
def test_masks_hold_through_200_ordinary_training_steps(make_opt):
    torch.manual_seed(0)
    model = MLP(in_features=16, hidden=(32,), num_classes=4)
    layers = prunable_layers(model)
    masks = {}
    for name, m in layers:
        masks[name] = random_mask(m, keep=0.3, seed=len(name))
        apply_mask(m, masks[name])
    # Build the optimizer *before* any masked step has momentum, the ordinary way.
    opt = make_opt(model.parameters())
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, m in layers:
        assert torch.all(m.weight[masks[name] == 0] == 0), name
        assert torch.any(m.weight[masks[name] == 1] != 0), name
    make_permanent(model)
    for name, m in layers:
        assert not is_masked(m)
        assert torch.all(m.weight[masks[name] == 0] == 0)


def test_masks_only_add_zeros():
    model = small_model()
    a, b = random_mask(model.fc, seed=1), random_mask(model.fc, seed=2)
    apply_mask(model.fc, a)
    apply_mask(model.fc, b)
    assert torch.equal(get_mask(model.fc), a * b)


def test_make_permanent_keeps_outputs_and_leaves_plain_weights():
    model = small_model()
    for i, (_, m) in enumerate(prunable_layers(model)):
        apply_mask(m, random_mask(m, seed=i))
    model.eval()
    x = torch.randn(5, 1, 8, 8)
    before = model(x)
    sp = sparsity(model)
    assert make_permanent(model) == 3
    assert torch.equal(model(x), before)
    assert sparsity(model) == sp
    assert all(isinstance(m.weight, nn.Parameter) for _, m in prunable_layers(model))
    assert not any("parametrizations" in k for k in model.state_dict())


def test_deepcopy_of_a_masked_model_works():
    model = small_model()
    apply_mask(model.fc, random_mask(model.fc))
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    clone = copy.deepcopy(model)
    assert torch.equal(get_mask(clone.fc), get_mask(model.fc))


def test_enforce_masks_is_idempotent_and_cleans_the_hidden_values():
    model = small_model()
    mask = random_mask(model.fc)
    apply_mask(model.fc, mask)
    with torch.no_grad():
        model.fc.parametrizations.weight.original.add_(1.0)  # what weight decay / momentum may do
    enforce_masks(model)
    enforce_masks(model)
    assert torch.all(model.fc.parametrizations.weight.original[mask == 0] == 0)


def test_sparsity_reads_masked_and_permanent_alike_and_counts_by_hand():
    model = small_model()
    for i, (_, m) in enumerate(prunable_layers(model)):
        apply_mask(m, random_mask(m, seed=i))
    zeros = sum(int((m.weight == 0).sum()) for _, m in prunable_layers(model))
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    masked = (sparsity(model), layer_sparsities(model))
    assert masked[0] == zeros / total
    make_permanent(model)
    assert (sparsity(model), layer_sparsities(model)) == masked


def test_prunable_layers_selection():
    model = small_model()
    names = [n for n, _ in prunable_layers(model)]
    assert names == ["conv1", "conv2", "fc"]
    assert [n for n, _ in prunable_layers(model, skip_first=True, skip_last=True)] == ["conv2"]
    assert [n for n, _ in prunable_layers(model, include=nn.Conv2d)] == ["conv1", "conv2"]
    assert [n for n, _ in prunable_layers(model, exclude=["fc", "conv1"])] == ["conv2"]
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3, 2))
    assert [n for n, _ in prunable_layers(conv1d)] == ["0", "2"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"include": ["conv9"]}, r"include names no prunable layer: \['conv9'\]"),
        ({"exclude": ["bn1"]}, r"exclude names no prunable layer: \['bn1'\]"),
        ({"include": ["fc"], "skip_last": True}, r"no prunable layer \(Linear, Conv1d, Conv2d\) left after include=\[.fc.\]"),
    ],
)
def test_prunable_layers_bad_selection(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prunable_layers(small_model(), **kwargs)


def test_model_without_prunable_layers_is_refused():
    with pytest.raises(ValueError, match="no prunable layer"):
        prunable_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), 1.5])
def test_check_fraction_refuses_out_of_range(bad):
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        check_fraction(bad, "amount")


@pytest.mark.parametrize("bad", ["0.5", None, True])
def test_check_fraction_refuses_non_numbers(bad):
    with pytest.raises(TypeError, match="amount must be a number"):
        check_fraction(bad, "amount")


def test_smallest_k_is_exact_with_ties_and_matches_a_sort():
    scores = torch.tensor([3.0, 1.0, 1.0, 1.0, 0.5, 2.0])
    assert smallest_k(scores, 2).tolist() == [False, True, False, False, True, False]
    constant = torch.ones(1000)
    for k in (0, 1, 499, 1000):
        assert int(smallest_k(constant, k).sum()) == k
    torch.manual_seed(0)
    x = torch.randn(10_000)
    chosen = smallest_k(x, 1234)
    brute = torch.zeros_like(chosen)
    brute[torch.argsort(x)[:1234]] = True
    assert torch.equal(chosen, brute)


def test_make_permanent_on_a_copy_leaves_the_original_masked():
    # torch shares the generated Parametrized<Layer> class between a module and its deepcopy, and
    # removing a parametrization deletes the property from that class; make_permanent must not.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    magnitude_prune(prunable_layers(model), 0.5)
    copy_ = copy.deepcopy(model)
    make_permanent(copy_)
    x = torch.randn(3, 6)
    assert is_masked(model[0]) and not is_masked(copy_[0])
    assert torch.equal(model(x), copy_(x))
    second = copy.deepcopy(model)
    make_permanent(model)
    assert is_masked(second[0]) and torch.equal(second(x), model(x))
