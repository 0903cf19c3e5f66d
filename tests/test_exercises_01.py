"""The checkers of notebook 01's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import copy

import pytest
import torch
from torch import nn

from pruning_utils import SimplePruner, evaluate, sparsity
from pruning_utils.exercises import check_compounded_sparsity, check_most_sensitive_layer


def _trained_mlp():
    """A small MLP trained on a separable 3-class problem (its layers matter unequally)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=gen)
    y = (x[:, :3] * torch.tensor([1.0, 2.0, 3.0])).argmax(dim=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    loader = [(x[i:i + 60], y[i:i + 60]) for i in range(0, 240, 60)]
    return model.eval(), loader


def _accuracy_with_one_layer_pruned(model, loader, name, rate):
    pruned = copy.deepcopy(model)
    SimplePruner(pruned, rate, include=[name], verbose=False).apply_magnitude_pruning()
    return evaluate(pruned, loader)["accuracy"]


def test_most_sensitive_layer_agrees_with_pruning_each_layer_through_simple_pruner(capsys):
    model, loader = _trained_mlp()
    accuracy = {n: _accuracy_with_one_layer_pruned(model, loader, n, 0.9) for n in ("0", "2", "4")}
    worst = min(accuracy, key=accuracy.get)
    assert sorted(accuracy.values())[0] < sorted(accuracy.values())[1], accuracy  # one clear answer
    assert check_most_sensitive_layer(worst, model, loader, rate=0.9) is True
    assert "right:" in capsys.readouterr().out
    for other in set(accuracy) - {worst}:
        assert check_most_sensitive_layer(other, model, loader, rate=0.9) is False
        assert "not yet: prune one layer at a time" in capsys.readouterr().out


def test_most_sensitive_layer_leaves_the_model_unpruned():
    model, loader = _trained_mlp()
    before = copy.deepcopy(model.state_dict())
    check_most_sensitive_layer("0", model, loader)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(answer="conv9"), ValueError, "answer must be the name of one prunable layer"),
    (dict(answer=2), TypeError, "answer must be a non-empty str"),
    (dict(answer="0", rate=1.0), ValueError, "rate must be in"),
    (dict(answer="0", model="net"), TypeError, "model"),
])
def test_most_sensitive_layer_refuses_bad_input(kwargs, error, match):
    model, loader = _trained_mlp()
    args = dict(answer="0", model=model, loader=loader) | kwargs
    with pytest.raises(error, match=match):
        check_most_sensitive_layer(**args)


@pytest.mark.parametrize("rate, times", [(0.5, 3), (0.3, 2), (0.9, 1)])
def test_compounded_sparsity_matches_repeated_simple_pruner_calls(rate, times, capsys):
    model = nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 3))
    pruned = copy.deepcopy(model)
    pruner = SimplePruner(pruned, rate, verbose=False)
    for _ in range(times):
        pruner.apply_magnitude_pruning()
    measured = sparsity(pruned)
    assert check_compounded_sparsity(measured, rate=rate, times=times, model=model) is True
    assert check_compounded_sparsity(1 - (1 - rate) ** times, rate=rate, times=times) is True
    assert "right:" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [0.5, 0.75, 1.0, 0.0])
def test_compounded_sparsity_rejects_wrong_answers_with_the_hint(wrong, capsys):
    assert check_compounded_sparsity(wrong, rate=0.5, times=3) is False
    assert "of the weights still alive" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(answer=87.5), ValueError, r"answer must be in \[0, 1\] \(a fraction"),
    (dict(answer="0.875"), TypeError, "answer must be a number"),
    (dict(answer=0.875, times=0), ValueError, "times must be an int >= 1"),
    (dict(answer=0.875, rate=1.5), ValueError, "rate must be in"),
    (dict(answer=0.875, model=3), TypeError, "model"),
])
def test_compounded_sparsity_refuses_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        check_compounded_sparsity(**kwargs)
