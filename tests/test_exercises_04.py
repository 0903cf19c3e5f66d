"""Notebook 04's exercise checkers: right answers pass, typical wrong ones fail with their hint, bad input is refused."""

import copy

import pytest
import torch
from torch import nn

from pruning_utils.exercises import check_alive_weights, check_round_rate


@pytest.mark.parametrize("target, rounds", [(0.98, 6), (0.9, 6), (0.5, 1), (0.99, 12), (0.0, 3)])
def test_round_rate_right(target, rounds, capsys):
    rate = 1 - (1 - target) ** (1 / rounds)  # the compounding rule, written out independently
    assert check_round_rate(rate, target, rounds) is True
    assert check_round_rate(round(rate, 4), target, rounds) is True
    assert capsys.readouterr().out.startswith("right:")


@pytest.mark.parametrize("wrong, hint", [
    (0.98 / 6, "ORIGINAL weights"),                      # linear split of the target
    (0.98, "final sparsity"),                            # the target itself
    (100 * (1 - 0.02 ** (1 / 6)), "not a percent"),      # a percent
    (0.3, "is not it"),
    (-1.0, "is not it"),
])
def test_round_rate_wrong(wrong, hint, capsys):
    assert check_round_rate(wrong, 0.98, 6) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and hint in out


def test_round_rate_compounds():
    """The accepted rate, applied round after round to the survivors, leaves 1 - target alive."""
    rate = 1 - 0.02 ** (1 / 6)
    alive = 1.0
    for _ in range(6):
        alive -= rate * alive
    assert alive == pytest.approx(0.02)
    assert not check_round_rate(rate + 1e-3, 0.98, 6)


@pytest.mark.parametrize("args, error, word", [
    (("0.48", 0.98, 6), TypeError, "answer"),
    ((float("nan"), 0.98, 6), ValueError, "answer"),
    ((0.48, 1.0, 6), ValueError, "target_sparsity"),
    ((0.48, -0.1, 6), ValueError, "target_sparsity"),
    ((0.48, 0.98, 0), ValueError, "num_iterations"),
    ((0.48, 0.98, 2.5), TypeError, "num_iterations"),
    ((0.48, 0.98, True), TypeError, "num_iterations"),
])
def test_round_rate_bad_input(args, error, word):
    with pytest.raises(error, match=word):
        check_round_rate(*args)


def _pruned_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    with torch.no_grad():
        model[0].weight[model[0].weight.abs() < 0.2] = 0
        model[2].weight[:, ::3] = 0  # a third pruned: alive != zeros
    return model


def test_alive_weights_right(capsys):
    model = _pruned_model()
    for name, module in (("0", model[0]), ("2", model[2])):
        alive = sum(1 for w in module.weight.flatten().tolist() if w != 0)
        assert 0 < alive < module.weight.numel()
        assert check_alive_weights(alive, model, name) is True
    assert "right:" in capsys.readouterr().out


def test_alive_weights_masked_model():
    """A parametrized (masked) layer is counted through its masked weight."""
    from pruning_utils import SimplePruner
    model = copy.deepcopy(_pruned_model())
    SimplePruner(model, pruning_rate=0.5).apply_magnitude_pruning()
    alive = int((model[2].weight != 0).sum())
    assert alive <= model[2].weight.numel() // 2
    assert check_alive_weights(alive, model, "2")


def test_alive_weights_wrong(capsys):
    model = _pruned_model()
    weight = model[2].weight
    alive, total = int((weight != 0).sum()), weight.numel()
    for wrong, hint in ((total - alive, "pruned (zero)"), (total, "in all"), (alive + 1, "is not it")):
        assert check_alive_weights(wrong, model, "2") is False
        out = capsys.readouterr().out
        assert out.startswith("not yet:") and hint in out


@pytest.mark.parametrize("args, error, word", [
    ((3.0, "model", "0"), TypeError, "answer"),
    ((-1, "model", "0"), ValueError, "answer"),
    ((3, "not a model", "0"), TypeError, "model"),
    ((3, "model", 0), TypeError, "layer"),
    ((3, "model", "conv9"), ValueError, "layer"),
    ((3, "model", "1"), ValueError, "layer"),  # Flatten has no weight
])
def test_alive_weights_bad_input(args, error, word):
    model = _pruned_model()
    args = tuple(model if a == "model" else a for a in args)
    with pytest.raises(error, match=word):
        check_alive_weights(*args)
