"""The uncertainty helpers, checked against independent computations (hand formulas, brute force, scipy)."""

import itertools
import math

import pytest
import torch
from scipy.stats import binomtest

from pruning_utils import stats
from pruning_utils.stats import Interval, accuracy_interval, paired_seed_test, paired_test, seed_interval, verdict

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@pytest.mark.parametrize("correct, n", [(342, 360), (360, 360), (0, 360), (7, 10), (1, 1)])
def test_wilson_interval_matches_the_hand_formula_and_scipy(correct, n):
    p = correct / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    got = accuracy_interval(correct, n)
    assert got.estimate == pytest.approx(p)
    assert (got.low, got.high) == pytest.approx((max(0, centre - half), min(1, centre + half)), abs=1e-12)
    ref = binomtest(correct, n).proportion_ci(0.95, method="wilson")
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high), abs=1e-9)


@pytest.mark.parametrize("correct, n", [(342, 360), (0, 20), (20, 20), (3, 7)])
def test_exact_interval_matches_scipy_clopper_pearson(correct, n):
    got = accuracy_interval(correct, n, method="exact", confidence=0.9)
    ref = binomtest(correct, n).proportion_ci(0.9, method="exact")
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_one_image_on_360_is_far_inside_the_interval():
    """The course's scale: 95% on 360 images is known to within a band about 4.6 points wide."""
    got = accuracy_interval(342, 360)
    assert 0.04 < got.high - got.low < 0.05
    assert got.low < 339 / 360 and got.high > 345 / 360  # three images either way stay inside


def brute_force_mcnemar(b, c):
    """Two-sided exact p: total probability of the splits of b + c at most as likely as (b, c)."""
    m = b + c
    probs = [math.comb(m, i) / 2**m for i in range(m + 1)]
    return min(1.0, sum(q for q in probs if q <= probs[b] * (1 + 1e-12)))


@pytest.mark.parametrize("only_a, only_b, both, neither", [(10, 2, 300, 48), (5, 5, 340, 10), (0, 0, 350, 10),
                                                           (9, 0, 341, 10), (1, 7, 330, 22)])
def test_paired_test_counts_the_mcnemar_table_by_hand(only_a, only_b, both, neither):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    result = paired_test(torch.tensor(a), b, names=("pruned", "dense"))
    n = len(a)
    assert (result.only_a, result.only_b, result.n) == (only_a, only_b, n)
    assert result.difference.estimate == pytest.approx((only_a - only_b) / n)
    assert result.accuracy_a.estimate == pytest.approx(sum(a) / n)
    assert result.p_value == pytest.approx(brute_force_mcnemar(only_a, only_b))
    if only_a + only_b:
        assert result.p_value == pytest.approx(binomtest(only_a, only_a + only_b).pvalue)
    assert result.difference.low <= result.difference.estimate <= result.difference.high


def test_paired_difference_interval_covers_by_brute_force():
    """Exact conditional interval: over every split of m = 12 discordant images, coverage >= 95% for any q."""
    n, m = 100, 12
    for q in (0.2, 0.5, 0.8):
        covered = 0.0
        for k in range(m + 1):
            a = [True] * k + [False] * (m - k) + [True] * (n - m)
            b = [False] * k + [True] * (m - k) + [True] * (n - m)
            d = paired_test(a, b).difference
            truth = m / n * (2 * q - 1)
            if d.low <= truth <= d.high:
                covered += math.comb(m, k) * q**k * (1 - q) ** (m - k)
        assert covered >= 0.95


def test_verdicts():
    assert verdict(Interval(0.02, 0.01, 0.03), ("global", "uniform")) == "global better"
    assert verdict(Interval(-0.02, -0.03, -0.01), ("global", "uniform")) == "uniform better"
    assert verdict(Interval(0.01, -0.01, 0.03), ("global", "uniform")) == stats.NO_DIFFERENCE
    clear = paired_test([True] * 40 + [True] * 300, [False] * 40 + [True] * 300, names=("a", "b"))
    assert clear.verdict == "a better" and clear.p_value < 1e-6 and "a better" in str(clear)
    tie = paired_test([True, False] * 5 + [True] * 300, [False, True] * 5 + [True] * 300)
    assert tie.verdict == stats.NO_DIFFERENCE and tie.p_value == 1.0


def test_seed_interval_is_the_student_t_interval_by_hand():
    values = [0.91, 0.93, 0.92]
    mean, sd = 0.92, 0.01
    t975_df2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5% quantile (tables)
    got = seed_interval(values)
    assert got.estimate == pytest.approx(mean)
    assert (got.low, got.high) == pytest.approx((mean - t975_df2 * sd / math.sqrt(3), mean + t975_df2 * sd / math.sqrt(3)))


def test_paired_seed_test_uses_per_seed_differences():
    a, b = [0.90, 0.95, 0.80], [0.88, 0.925, 0.785]  # A is 1.5-2.5 points above B on every seed
    interval, word = paired_seed_test(a, b, names=("LRR", "FT"))
    assert interval.estimate == pytest.approx(0.02) and interval.low > 0
    assert word == "LRR better"
    unpaired = seed_interval([x - y for x, y in itertools.product(a, b)])
    assert unpaired.low < 0 < unpaired.high  # the same numbers unpaired: not detectable


def test_seeds_that_vary_nothing_give_no_verdict():
    with pytest.warns(UserWarning, match="seeds did not change the result"):
        interval, word = paired_seed_test([0.90, 0.95, 0.80], [0.88, 0.93, 0.78])
    assert interval.high - interval.low == pytest.approx(0, abs=1e-9) and word == stats.NO_DIFFERENCE


@pytest.mark.parametrize("call, error, message", [
    (lambda: accuracy_interval(5, 0), ValueError, "n must be"),
    (lambda: accuracy_interval(11, 10), ValueError, "correct must be at most n"),
    (lambda: accuracy_interval(-1, 10), ValueError, "correct must be"),
    (lambda: accuracy_interval(5.5, 10), TypeError, "correct must be"),
    (lambda: accuracy_interval(5, 10, confidence=95), ValueError, "confidence"),
    (lambda: accuracy_interval(5, 10, method="normal"), ValueError, "method"),
    (lambda: paired_test([True, False], [True]), ValueError, "same test images"),
    (lambda: paired_test([], []), ValueError, "non-empty"),
    (lambda: paired_test([0.5, 1.0], [1, 0]), ValueError, "True/False"),
    (lambda: paired_test("1010", [1, 0, 1, 0]), TypeError, "correct_a"),
    (lambda: paired_test([1, 0], [1, 0], names="ab"), TypeError, "names"),
    (lambda: seed_interval([0.9]), ValueError, "at least 2"),
    (lambda: seed_interval([0.9, float("nan")]), ValueError, "values"),
    (lambda: seed_interval("0.9"), TypeError, "values"),
    (lambda: paired_seed_test([0.9, 0.8], [0.9]), ValueError, "same seeds"),
    (lambda: verdict((0, 1, 2)), TypeError, "difference"),
])
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_evaluate_per_image_feeds_the_paired_test():
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from pruning_utils.training import evaluate

    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    model = nn.Linear(4, 3)
    result = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=16), per_image=True)
    with torch.no_grad():
        expected = model(x).argmax(1) == y
    assert torch.equal(result["correct"], expected)
    assert result["accuracy"] == pytest.approx(expected.float().mean().item())
    same = paired_test(result["correct"], expected)
    assert same.only_a == same.only_b == 0 and same.verdict == stats.NO_DIFFERENCE
