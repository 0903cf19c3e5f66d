"""sensitivity_scan checks its sparsities and what evaluate_fn returns (issue 14)."""

import pytest
import torch

from pruning_utils.models import MLP
from pruning_utils.sensitivity import SensitivityScan, sensitivity_scan


def tiny():
    torch.manual_seed(0)
    return MLP(in_features=6, hidden=(4,), num_classes=3)


def zeros_metric(model):
    """Minus the number of zero weights: a metric we can predict for each pruned copy."""
    return -float(sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, torch.nn.Linear)))


@pytest.mark.parametrize("sparsities", ["0.5", b"0.5", 0.5, None, object()])
def test_sparsities_must_be_a_list_of_numbers(sparsities):
    with pytest.raises(TypeError, match="sparsities must be a list of numbers; got"):
        sensitivity_scan(tiny(), zeros_metric, sparsities, progress=False)


def test_any_iterable_of_fractions_gives_the_same_scan():
    expected = sensitivity_scan(tiny(), zeros_metric, [0.25, 0.5], progress=False)
    for sparsities in ((0.25, 0.5), iter([0.25, 0.5]), torch.tensor([0.25, 0.5])):
        scan = sensitivity_scan(tiny(), zeros_metric, sparsities, progress=False)
        assert scan.sparsities == [0.25, 0.5] and scan.results == expected.results
    # fc1 has 24 weights, fc2 (the output layer) 12: pruning 50% of fc1 zeroes 12 of them
    assert expected.results["fc1"] == [-6.0, -12.0]


@pytest.mark.parametrize("value, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), ("good", TypeError), (None, TypeError),
    (True, TypeError), ({"accuracy": 0.9}, TypeError), (torch.tensor([0.1, 0.2]), TypeError),
])
def test_evaluate_fn_must_return_a_finite_number(value, error):
    with pytest.raises(error, match=r"evaluate_fn's result for the dense model must be a finite number; got"):
        sensitivity_scan(tiny(), lambda m: value, [0.5], progress=False)


def test_the_error_names_the_layer_and_sparsity_that_gave_a_bad_value():
    def breaks_when_fc2_is_pruned(model):
        return float("nan") if bool((model.fc2.weight == 0).any()) else 1.0

    with pytest.raises(ValueError, match=r"evaluate_fn's result for layer 'fc2' at sparsity 0.5 must be a finite number; got nan"):
        sensitivity_scan(tiny(), breaks_when_fc2_is_pruned, [0.5], progress=False)
    # a one-element tensor is a number
    scan = sensitivity_scan(tiny(), lambda m: torch.tensor(0.75), [0.5], progress=False)
    assert scan.dense == 0.75 and scan.results["fc1"] == [0.75]


def test_other_arguments_are_checked():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got str"):
        sensitivity_scan("model", zeros_metric, [0.5], progress=False)
    with pytest.raises(TypeError, match="progress must be True or False; got 'no'"):
        sensitivity_scan(tiny(), zeros_metric, [0.5], progress="no")
    scan = SensitivityScan([0.5, 0.9], 1.0, {"fc1": [0.99, 0.5]})
    assert scan.max_sparsity(0) == {"fc1": 0.0} and scan.max_sparsity(0.01) == {"fc1": 0.5}
    for tolerance, error in ((float("nan"), ValueError), (-0.1, ValueError), ("0.1", TypeError), (None, TypeError)):
        with pytest.raises(error, match="tolerance must be a finite number >= 0"):
            scan.max_sparsity(tolerance)


def test_layers_are_names():
    with pytest.raises(TypeError, match=r"layers must hold names \(str\); got 3"):
        sensitivity_scan(tiny(), zeros_metric, [0.5], layers=[3], progress=False)
    with pytest.raises(TypeError, match="layers must be a name or a list of names"):
        sensitivity_scan(tiny(), zeros_metric, [0.5], layers=3, progress=False)
    scan = sensitivity_scan(tiny(), zeros_metric, [0.5], layers=iter(["fc2"]), progress=False)
    assert list(scan.results) == ["fc2"]
