"""The checker of notebook 07's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import numpy as np
import pytest

from pruning_utils import cubic_sparsity
from pruning_utils.exercises import check_linear_sparsity


@pytest.mark.parametrize("initial, final, begin, end", [(0.0, 0.98, 0, 90), (0.2, 0.9, 10, 50), (0.5, 0.5, 0, 7)])
def test_linear_sparsity_accepts_every_step_of_an_evenly_spaced_ramp(initial, final, begin, end, capsys):
    ramp = np.linspace(initial, final, end - begin + 1)        # independent: equal steps from s_i to s_f
    for step in range(begin, end + 1):
        assert check_linear_sparsity(float(ramp[step - begin]), step, final, begin, end, initial) is True
    assert capsys.readouterr().out.count("right:") == end - begin + 1


def test_linear_sparsity_clamps_outside_the_ramp(capsys):
    assert check_linear_sparsity(0.1, 3, 0.9, begin_step=5, end_step=20, initial_sparsity=0.1) is True
    assert check_linear_sparsity(0.9, 500, 0.9, begin_step=5, end_step=20, initial_sparsity=0.1) is True
    assert check_linear_sparsity(0.0, -4, 0.9, begin_step=0, end_step=20) is True   # before the ramp (as cubic_sparsity)


def test_linear_sparsity_names_the_cubic_value_when_given_it(capsys):
    cubic = cubic_sparsity(30, 0.0, 0.98, 0, 90)
    assert check_linear_sparsity(cubic, 30, 0.98, 0, 90) is False
    assert "cubic schedule" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [0.98 * 31 / 90, 0.98 * 29 / 90, 0.98, 0.0, 30 / 90])
def test_linear_sparsity_refuses_wrong_values_with_the_hint(wrong, capsys):
    assert check_linear_sparsity(wrong, 30, 0.98, 0, 90) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and "linear ramp" in out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer="0.3", step=30), TypeError, "answer"),
    (dict(answer=1.5, step=30), ValueError, "answer"),
    (dict(answer=float("nan"), step=30), ValueError, "answer"),
    (dict(answer=0.3, step=3.5), TypeError, "step"),
    (dict(answer=0.3, step=True), TypeError, "step"),
    (dict(answer=0.3, step=30, end_step=0), ValueError, "end_step"),
    (dict(answer=0.3, step=30, final_sparsity=1.0), ValueError, "final_sparsity"),
    (dict(answer=0.3, step=30, initial_sparsity=0.99), ValueError, "sparsity"),
])
def test_linear_sparsity_refuses_bad_input_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        check_linear_sparsity(**kwargs)
