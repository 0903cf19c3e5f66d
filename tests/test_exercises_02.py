"""The checkers of notebook 02's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import copy

import pytest
from torch import nn

from pruning_utils import ThresholdPruner, sparsity
from pruning_utils.exercises import check_global_zero_count, check_partial_sparsity


def _model():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8, 5))


def _zeros(model):
    return sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_global_zero_count_matches_two_rounds_of_global_pruning(capsys):
    model = _model()
    pruned = copy.deepcopy(model)
    pruner = ThresholdPruner(pruned)
    pruner.apply_global_pruning(0.95)
    pruner.apply_global_pruning(0.97)
    assert check_global_zero_count(_zeros(pruned), model, 0.97) is True
    assert "right:" in capsys.readouterr().out


@pytest.mark.parametrize("offset", [-1, 1, 100])
def test_global_zero_count_rejects_a_wrong_count_with_the_hint(offset, capsys):
    model = _model()
    pruned = copy.deepcopy(model)
    ThresholdPruner(pruned).apply_global_pruning(0.97)
    assert check_global_zero_count(_zeros(pruned) + offset, model, 0.97) is False
    assert "the count is exact" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(answer=0.97), TypeError, "answer must be an int"),
    (dict(answer=-3), ValueError, "answer must be an int >= 0"),
    (dict(answer=10, target_sparsity=97), ValueError, "target_sparsity must be in"),
    (dict(answer=10, model="net"), TypeError, "model"),
])
def test_global_zero_count_refuses_bad_input(kwargs, error, match):
    args = dict(answer=10, model=_model(), target_sparsity=0.97) | kwargs
    with pytest.raises(error, match=match):
        check_global_zero_count(**args)


@pytest.mark.parametrize("layers", [["0", "2"], ["2"], "5"])
def test_partial_sparsity_matches_pruning_only_those_layers(layers, capsys):
    model = _model()
    pruned = copy.deepcopy(model)
    ThresholdPruner(pruned, include=layers).apply_global_pruning(0.95)
    assert check_partial_sparsity(sparsity(pruned), model, layers, 0.95) is True
    assert "right:" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [0.95, 0.5, 0.0])
def test_partial_sparsity_rejects_wrong_answers_with_the_hint(wrong, capsys):
    assert check_partial_sparsity(wrong, _model(), ["0", "2"], 0.95) is False
    assert "the other layers stay dense" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(answer=85.0), ValueError, r"answer must be in \[0, 1\] \(a fraction"),
    (dict(layers=["conv9"]), ValueError, "layers must name prunable layers"),
    (dict(layers=[]), ValueError, "layers must not be empty"),
    (dict(layers=[2]), TypeError, "layers must hold names"),
    (dict(target_sparsity=1.0), ValueError, "target_sparsity must be in"),
])
def test_partial_sparsity_refuses_bad_input(kwargs, error, match):
    args = dict(answer=0.5, model=_model(), layers=["0", "2"], target_sparsity=0.95) | kwargs
    with pytest.raises(error, match=match):
        check_partial_sparsity(**args)
