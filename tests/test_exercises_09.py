"""The checkers of notebook 09's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from pruning_utils import build_model_for, get_profile, layer_sparsities, magnitude_prune, make_permanent, prunable_layers
from pruning_utils.exercises import check_compression_ratio, check_emptiest_layer


def _small(zeros_conv: int, zeros_fc: int) -> nn.Module:
    """Conv (1->4, 3x3: 36 weights) + BN + Linear (64 -> 10: 640 weights) with the first weights zeroed."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(1, 4, 3, bias=False))
    model.add_module("bn", nn.BatchNorm2d(4))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(64, 10))
    with torch.no_grad():
        for layer, k in ((model.conv, zeros_conv), (model.fc, zeros_fc)):
            layer.weight.add_(torch.sign(layer.weight) * 0.01)   # no accidental zeros
            layer.weight.view(-1)[:k] = 0
    return model


def _masked_cnn(target: float) -> nn.Module:
    torch.manual_seed(0)
    model = build_model_for(get_profile("quick"))
    magnitude_prune(prunable_layers(model), target)
    return model


def test_emptiest_layer_is_the_largest_fraction_not_the_largest_count(capsys):
    model = _small(zeros_conv=30, zeros_fc=320)          # conv 30/36 = 83% zero, fc 320/640 = 50% (more zeros)
    assert check_emptiest_layer("conv", model) is True
    assert "83.33%" in capsys.readouterr().out
    assert check_emptiest_layer("fc", model) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and "fraction" in out and "largest layer" in out


def test_emptiest_layer_of_a_masked_cnn_matches_layer_sparsities(capsys):
    model = _masked_cnn(0.98)                             # global ranking: the layers end up unevenly sparse
    shares = layer_sparsities(model)
    best = max(shares, key=shares.get)
    assert check_emptiest_layer(best, model) is True
    for name in shares:
        if shares[name] < shares[best]:
            assert check_emptiest_layer(name, model) is False
            assert "not yet:" in capsys.readouterr().out


def test_emptiest_layer_accepts_any_of_tied_layers(capsys):
    model = _small(zeros_conv=36, zeros_fc=640)           # both layers fully zero
    assert check_emptiest_layer("conv", model) is True
    assert check_emptiest_layer("fc", model) is True
    assert "conv / fc" in capsys.readouterr().out


@pytest.mark.parametrize("answer, model, error, words", [
    (3, "small", TypeError, "answer"),
    ("", "small", ValueError, "answer"),
    ("bn", "small", ValueError, "conv"),                 # not a prunable layer: the allowed names are listed
    ("fc", None, TypeError, "model"),
])
def test_emptiest_layer_refuses_bad_input_by_name(answer, model, error, words):
    with pytest.raises(error, match=words):
        check_emptiest_layer(answer, _small(1, 1) if model == "small" else model)


def _ratio_by_hand(model: nn.Module) -> float:
    """Independent count: a permanent copy's plain parameters."""
    plain = copy.deepcopy(model)
    make_permanent(plain)
    total = sum(p.numel() for p in plain.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in plain.parameters())
    return total / nonzero


def test_compression_ratio_of_a_masked_cnn_counts_every_parameter(capsys):
    model = _masked_cnn(0.98)
    right = _ratio_by_hand(model)
    total = sum(p.numel() for p in build_model_for(get_profile("quick")).parameters())
    assert total == 25_978 and right > 30     # (the fresh model's batch-norm biases are zeros too)
    assert check_compression_ratio(right, model) is True
    assert check_compression_ratio(round(right, 1), model) is True     # as printed, one decimal
    assert f"{total:,} / " in capsys.readouterr().out


def test_compression_ratio_sees_torch_prune_masks(capsys):
    model = _small(0, 0)
    torch_prune.l1_unstructured(model.fc, "weight", amount=0.5)        # 320 of fc's 640 weights masked
    total = 36 + 8 + 640 + 10                                          # the 4 batch-norm biases start at 0
    assert check_compression_ratio(total / (total - 320 - 4), model) is True
    assert check_compression_ratio(total / total, model) is False      # the stored weight_orig has no zeros


def test_compression_ratio_names_the_prunable_only_and_the_inverted_answers(capsys):
    model = _masked_cnn(0.98)
    weights = sum(m.weight.numel() for _, m in prunable_layers(model))
    alive = sum(int(torch.count_nonzero(m.weight)) for _, m in prunable_layers(model))
    assert check_compression_ratio(weights / alive, model) is False
    assert "prunable weights only" in capsys.readouterr().out
    assert check_compression_ratio(1 / _ratio_by_hand(model), model) is False
    assert "other way up" in capsys.readouterr().out
    assert check_compression_ratio(0.9 * _ratio_by_hand(model), model) is False
    assert capsys.readouterr().out.startswith("not yet:")


@pytest.mark.parametrize("answer, error", [("34.7", TypeError), (0.0, ValueError), (-3.0, ValueError),
                                           (float("nan"), ValueError), (float("inf"), ValueError)])
def test_compression_ratio_refuses_bad_answers_by_name(answer, error):
    with pytest.raises(error, match="answer"):
        check_compression_ratio(answer, _small(1, 1))


def test_compression_ratio_refuses_a_model_that_is_not_one_or_has_no_nonzero():
    with pytest.raises(TypeError, match="model"):
        check_compression_ratio(2.0, [nn.Linear(2, 2)])
    empty = nn.Linear(3, 2)
    with torch.no_grad():
        empty.weight.zero_()
        empty.bias.zero_()
    with pytest.raises(ValueError, match="infinite"):
        check_compression_ratio(2.0, empty)
