"""The checkers of notebook 03's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import numpy as np
import pytest
import torch
from torch import nn

from pruning_utils import SmallCNN, StructuredPruner
from pruning_utils.exercises import check_conv_params, check_removed_filters


@pytest.fixture
def model():
    torch.manual_seed(3)
    return SmallCNN(in_channels=1, num_classes=10, widths=(16, 32, 64), input_size=8).eval()


def l1_smallest(layer, count):
    """Independent: numpy's sum of |w| per filter, the `count` smallest."""
    scores = np.abs(layer.weight.detach().numpy()).reshape(layer.weight.shape[0], -1).sum(axis=1)
    return sorted(np.argsort(scores, kind="stable")[:count].tolist())


@pytest.mark.parametrize("layer_name, ratio", [("conv1", 0.25), ("conv2", 0.5), ("conv3", 0.75), ("fc", 0.3)])
def test_removed_filters_accepts_what_the_pruner_removes(model, layer_name, ratio, capsys):
    layer = getattr(model, layer_name)
    kept = StructuredPruner(model).select_channels(layer, None, ratio).tolist()
    gone = [j for j in range(layer.weight.shape[0]) if j not in kept]
    assert gone == l1_smallest(layer, len(gone))            # the pruner and numpy agree ...
    assert check_removed_filters(gone, layer, ratio) is True  # ... and so does the checker
    assert check_removed_filters(torch.tensor(gone[::-1]), layer, ratio) is True   # any order, a tensor too
    assert capsys.readouterr().out.count("right:") == 2


def test_removed_filters_accepts_either_side_of_a_tie(capsys):
    layer = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([3.0, 1.0, 1.0, 2.0]).view(4, 1, 1, 1))
    assert check_removed_filters([1], layer, 0.25) is True
    assert check_removed_filters([2], layer, 0.25) is True
    assert check_removed_filters([3], layer, 0.25) is False
    assert check_removed_filters([], layer, 0.0) is True       # nothing goes at ratio 0


def test_removed_filters_keeps_at_least_one_filter(capsys):
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.1, 0.1, 0.1]]))
    assert check_removed_filters([1], layer, 0.9) is True       # round(0.9 * 2) = 2 would remove both
    assert check_removed_filters([0, 1], layer, 0.9) is False
    assert "of the 2 filters go" in capsys.readouterr().out


def test_removed_filters_names_the_usual_mistakes(model, capsys):
    layer = model.conv2
    gone = l1_smallest(layer, 16)
    kept = [j for j in range(32) if j not in gone]
    assert check_removed_filters(kept, layer, 0.5) is False
    assert "filters that stay" in capsys.readouterr().out
    scores = np.abs(layer.weight.detach().numpy()).reshape(32, -1).sum(axis=1)
    largest = np.argsort(-scores, kind="stable")[:8].tolist()
    assert check_removed_filters(largest, layer, 0.25) is False
    assert "largest filters" in capsys.readouterr().out
    assert check_removed_filters(gone[:15], layer, 0.5) is False
    assert "16 of the 32 filters go" in capsys.readouterr().out
    assert check_removed_filters(gone[1:] + [kept[0]], layer, 0.5) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and "smallest sums" in out


@pytest.mark.parametrize("answer, layer, ratio, error, words", [
    ("0, 1", "conv", 0.5, TypeError, "answer"),
    ([0, 1.0], "conv", 0.5, TypeError, "answer"),
    ([0, -1], "conv", 0.5, ValueError, "answer"),
    ([0, 32], "conv", 0.5, ValueError, "indices 0 to 31"),
    ([3, 3], "conv", 0.5, ValueError, "repeat"),
    ([0], "bn", 0.5, TypeError, "layer"),
    ([0], "grouped", 0.5, ValueError, "groups"),
    ([0], None, 0.5, TypeError, "layer"),
    ([0], "conv", 1.0, ValueError, "prune_ratio"),
    ([0], "conv", "0.5", TypeError, "prune_ratio"),
])
def test_removed_filters_refuses_bad_input_by_name(model, answer, layer, ratio, error, words):
    layers = {"conv": model.conv2, "bn": model.bn2, "grouped": nn.Conv2d(4, 4, 3, groups=2), None: None}
    with pytest.raises(error, match=words):
        check_removed_filters(answer, layers[layer], ratio)


def test_conv_params_matches_the_pruned_layer(model, capsys):
    pruner = StructuredPruner(model)
    pruned = pruner.prune(0.5)
    for name, out_gone, in_gone in (("conv1", 8, 0), ("conv2", 16, 8), ("conv3", 32, 16), ("fc", 0, 128)):
        real = sum(p.numel() for p in getattr(pruned, name).parameters())
        assert check_conv_params(real, getattr(model, name), out_gone, in_gone) is True, name
    assert capsys.readouterr().out.count("right:") == 4


@pytest.mark.parametrize("shape, k, j", [((1, 6, 5), 2, 0), ((8, 12, 3), 5, 3), ((3, 4, (1, 2)), 0, 2)])
def test_conv_params_counts_a_bias_when_there_is_one(shape, k, j, capsys):
    cin, cout, kernel = shape
    layer = nn.Conv2d(cin, cout, kernel, bias=True)
    fresh = nn.Conv2d(cin - j, cout - k, kernel, bias=True)          # independent: build the smaller layer
    assert check_conv_params(sum(p.numel() for p in fresh.parameters()), layer, k, j) is True
    assert check_conv_params(fresh.weight.numel(), layer, k, j) is False
    assert "bias" in capsys.readouterr().out.splitlines()[-1]


def test_conv_params_names_the_usual_mistakes(model, capsys):
    conv = model.conv2                   # 16 -> 32, 3x3, no bias
    assert check_conv_params(16 * 16 * 9, conv, 16, 8) is False          # forgot the inputs
    assert "input channels" in capsys.readouterr().out
    assert check_conv_params(16 * 8 * 9 + 16, conv, 16, 8) is False      # a bias it does not have
    assert "no bias" in capsys.readouterr().out
    assert check_conv_params(32 * 16 * 9, conv, 16, 8) is False          # the count before pruning
    assert "before pruning" in capsys.readouterr().out
    assert check_conv_params(1000, conv, 16, 8) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and "kernel elements" in out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer=1152.0, filters_removed=16, inputs_removed=8), TypeError, "answer"),
    (dict(answer=-1, filters_removed=16), ValueError, "answer"),
    (dict(answer=1152, filters_removed=32), ValueError, "filters_removed"),
    (dict(answer=1152, filters_removed=-1), ValueError, "filters_removed"),
    (dict(answer=1152, filters_removed=True), TypeError, "filters_removed"),
    (dict(answer=1152, inputs_removed=16), ValueError, "inputs_removed"),
    (dict(answer=1152, inputs_removed=2.0), TypeError, "inputs_removed"),
])
def test_conv_params_refuses_bad_input_by_name(model, kwargs, error, words):
    with pytest.raises(error, match=words):
        check_conv_params(layer=model.conv2, **kwargs)


def test_conv_params_refuses_a_layer_it_cannot_count(model):
    with pytest.raises(TypeError, match="layer"):
        check_conv_params(10, model.bn2)
    with pytest.raises(ValueError, match="groups"):
        check_conv_params(10, nn.Conv2d(4, 4, 3, groups=4))
