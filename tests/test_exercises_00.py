"""The checkers of notebook 00's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import math

import pytest
from scipy.stats import binomtest, norm
from torch import nn

from pruning_utils import MLP, build_model_for, get_profile
from pruning_utils.exercises import check_prunable_weights, check_wilson_interval


def test_prunable_weights_of_the_course_models(capsys):
    # counted from the layer shapes by hand: SmallCNN 1->16->32->64 (3x3 convs, no bias) + Linear(256, 10);
    # MLP 64-300-100-10
    assert check_prunable_weights(16 * 9 + 16 * 32 * 9 + 32 * 64 * 9 + 256 * 10, build_model_for(get_profile("quick")))
    assert check_prunable_weights(64 * 300 + 300 * 100 + 100 * 10, MLP(in_features=64)) is True
    assert "50,200 prunable weights" in capsys.readouterr().out


def test_prunable_weights_names_the_all_parameters_answer(capsys):
    mlp = MLP(in_features=64)
    assert check_prunable_weights(sum(p.numel() for p in mlp.parameters()), mlp) is False
    assert "every parameter" in capsys.readouterr().out
    assert check_prunable_weights(50_199, mlp) is False
    assert capsys.readouterr().out.startswith("not yet:")


def test_prunable_weights_counts_conv1d_and_skips_batch_norm():
    model = nn.Sequential(nn.Conv1d(2, 3, 5), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(3 * 4, 2))
    assert check_prunable_weights(2 * 3 * 5 + 12 * 2, model) is True


@pytest.mark.parametrize("answer, model, error, words", [
    (3.5, "mlp", TypeError, "answer"), ("10", "mlp", TypeError, "answer"), (-1, "mlp", ValueError, "answer"),
    (True, "mlp", TypeError, "answer"), (10, "not a model", TypeError, "model"),
])
def test_prunable_weights_refuses_bad_input_by_name(answer, model, error, words):
    with pytest.raises(error, match=words):
        check_prunable_weights(answer, MLP(in_features=4) if model == "mlp" else model)


def _wilson_by_inversion(k, n, confidence=0.95):
    """Independent: Wilson's interval is the set of p whose score test (normal z) does not reject k/n."""
    z = norm.ppf(1 - (1 - confidence) / 2)
    phat = k / n
    # solve (phat - p)^2 = z^2 p (1 - p) / n for p: a quadratic a p^2 + b p + c = 0
    a, b, c = 1 + z * z / n, -(2 * phat + z * z / n), phat * phat
    root = math.sqrt(b * b - 4 * a * c)
    return max(0.0, (-b - root) / (2 * a)), min(1.0, (-b + root) / (2 * a))   # rounding can step past 0 or 1


@pytest.mark.parametrize("k, n", [(354, 360), (176, 180), (0, 20), (20, 20), (7, 13)])
def test_wilson_interval_accepts_the_interval_from_the_score_test(k, n, capsys):
    low, high = _wilson_by_inversion(k, n)
    assert check_wilson_interval((low, high), k, n) is True
    assert check_wilson_interval([round(low, 5), round(high, 5)], k, n) is True
    assert capsys.readouterr().out.count("right:") == 2


def test_wilson_interval_at_another_confidence_and_the_package_agree(capsys):
    from pruning_utils import accuracy_interval

    low, high = _wilson_by_inversion(90, 100, 0.9)
    assert check_wilson_interval((low, high), 90, 100, confidence=0.9) is True
    package = accuracy_interval(354, 360)
    assert check_wilson_interval((package.low, package.high), 354, 360) is True


def test_wilson_interval_names_the_wald_interval(capsys):
    p, n = 354 / 360, 360
    half = 1.959964 * math.sqrt(p * (1 - p) / n)
    assert check_wilson_interval((p - half, p + half), 354, n) is False
    assert "Wald" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [(0.9641, 0.9930), (0.96, 0.99)])
def test_wilson_interval_refuses_wrong_values_with_the_hint(wrong, capsys):
    exact = binomtest(354, 360).proportion_ci(0.95, method="exact")   # Clopper-Pearson: a different interval
    assert check_wilson_interval((exact.low, exact.high), 354, 360) is False
    assert check_wilson_interval(wrong, 354, 360) is False
    out = capsys.readouterr().out
    assert out.count("not yet:") == 2 and "z = 1.9600" in out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer=0.97, correct=354, n=360), TypeError, "answer"),
    (dict(answer=(96.4, 99.2), correct=354, n=360), ValueError, "fractions"),
    (dict(answer=(0.9, 0.95, 0.99), correct=354, n=360), ValueError, "pair"),
    (dict(answer=(0.99, 0.96), correct=354, n=360), ValueError, "low <= high"),
    (dict(answer=(0.96, 0.99), correct=361, n=360), ValueError, "correct"),
    (dict(answer=(0.96, 0.99), correct=354, n=0), ValueError, "n"),
    (dict(answer=(0.96, 0.99), correct=354.0, n=360), TypeError, "correct"),
    (dict(answer=(0.96, 0.99), correct=354, n=360, confidence=1.0), ValueError, "confidence"),
])
def test_wilson_interval_refuses_bad_input_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        check_wilson_interval(**kwargs)
