"""The checker of notebook 05's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import pytest
import torch

from pruning_utils import soft_targets
from pruning_utils.exercises import check_soft_targets

LOGITS = torch.tensor([2.0, -1.0, 0.5, 6.0, -3.0])


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 20.0])
def test_soft_targets_accepts_torch_softmax_and_the_package_helper(temperature, capsys):
    assert check_soft_targets(torch.softmax(LOGITS / temperature, dim=0), LOGITS, temperature) is True
    assert check_soft_targets(soft_targets(LOGITS, temperature), LOGITS, temperature) is True
    assert check_soft_targets(torch.softmax(LOGITS / temperature, dim=0).tolist(), LOGITS.tolist(), temperature)
    assert "right:" in capsys.readouterr().out


def test_soft_targets_names_the_temperature_one_mistake(capsys):
    assert check_soft_targets(torch.softmax(LOGITS, dim=0), LOGITS, 4.0) is False
    assert "T = 1" in capsys.readouterr().out


def test_soft_targets_names_unnormalised_answers(capsys):
    assert check_soft_targets(torch.exp(LOGITS / 4.0), LOGITS, 4.0) is False
    assert "sum to 1" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [torch.softmax(LOGITS * 4.0, dim=0), torch.full((5,), 0.2),
                                   torch.softmax(LOGITS / 4.0, dim=0).flip(0)])
def test_soft_targets_refuses_wrong_distributions_with_the_hint(wrong, capsys):
    assert check_soft_targets(wrong, LOGITS, 4.0) is False
    assert capsys.readouterr().out.startswith("not yet:")


@pytest.mark.parametrize("answer, logits, temperature, error, words", [
    (torch.ones(5) / 5, LOGITS, 0.0, ValueError, "temperature"),
    (torch.ones(5) / 5, LOGITS, "4", TypeError, "temperature"),
    (torch.ones(4) / 4, LOGITS, 4.0, ValueError, "answer"),
    (torch.ones(5, dtype=torch.long), LOGITS, 4.0, TypeError, "answer"),
    (torch.ones(5) / 5, LOGITS.view(1, 5), 4.0, ValueError, "logits"),
    (torch.ones(5) / 5, torch.tensor([1.0, float("nan"), 0, 0, 0]), 4.0, ValueError, "logits"),
    (torch.ones(1), torch.ones(1), 4.0, ValueError, "logits"),
    ("abc", LOGITS, 4.0, TypeError, "answer"),
])
def test_soft_targets_refuses_bad_input_by_name(answer, logits, temperature, error, words):
    with pytest.raises(error, match=words):
        check_soft_targets(answer, logits, temperature)
