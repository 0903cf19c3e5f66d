"""How sure a measured difference is: accuracy intervals, paired tests, intervals over seeds, a verdict.

On the quick profile's 360 test images one image is 0.28 points, and the standard error of a 95%
accuracy is about 1.1 points: two models a point apart may well be equally good. Every comparison a
notebook draws goes through this module and prints its interval and verdict.

* :func:`accuracy_interval` - a Wilson (or exact Clopper-Pearson) interval for ``correct`` out of ``n``.
* :func:`paired_test` - two models on the *same* test images: the exact McNemar test on the images
  where they disagree, and an exact interval for the accuracy difference. Pairing removes the
  difficulty of the images from the comparison, so it detects smaller differences than two separate
  intervals.
* :func:`seed_interval` / :func:`paired_seed_test` - mean and Student-t interval over seeds, and the
  interval of the per-seed paired difference (each seed's A and B share data order and test set).
* :func:`verdict` - ``"A better"``, ``"B better"`` or ``"no difference detectable here"``: a side wins
  only when the whole interval of the difference lies on its side of zero.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .checks import check_choice, check_int, check_name, check_numbers, check_real, check_unit

__all__ = [
    "Interval",
    "PairedResult",
    "accuracy_interval",
    "paired_seed_test",
    "paired_test",
    "seed_interval",
    "verdict",
]

NO_DIFFERENCE = "no difference detectable here"


def _check_confidence(confidence) -> float:
    confidence = check_unit(confidence, "confidence")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), e.g. 0.95; got {confidence!r}")
    return confidence


@dataclass(frozen=True)
class Interval:
    """An estimate with its ``confidence`` interval ``[low, high]``; ``percent`` formats as points."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95
    percent: bool = True

    def __str__(self) -> str:
        if self.percent:
            return (f"{100 * self.estimate:.2f}% [{100 * self.low:.2f}, {100 * self.high:.2f}] "
                    f"({100 * self.confidence:g}% interval)")
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}] ({100 * self.confidence:g}% interval)"

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def accuracy_interval(correct: int, n: int, confidence: float = 0.95, method: str = "wilson") -> Interval:
    """Interval for an accuracy of ``correct`` right out of ``n`` test images.

    ``method="wilson"`` (default: good coverage even near 100%) or ``"exact"`` (Clopper-Pearson, never
    narrower than it should be).
    """
    n = check_int(n, "n", 1)
    correct = check_int(correct, "correct", 0)
    if correct > n:
        raise ValueError(f"correct must be at most n = {n}; got {correct}")
    confidence = _check_confidence(confidence)
    method = check_choice(method, "method", ("wilson", "exact"))
    p = correct / n
    alpha = 1 - confidence
    if method == "wilson":
        z = _normal_quantile(1 - alpha / 2)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = max(0.0, centre - half), min(1.0, centre + half)
    else:
        low, high = _clopper_pearson(correct, n, alpha)
    return Interval(p, low, high, confidence)


def _clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def _as_correct(values, name: str) -> torch.Tensor:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be one bool (right/wrong) per test image; got a str")
    try:
        t = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be one bool (right/wrong) per test image; got {type(values).__name__}") from exc
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of right/wrong per test image; got shape "
                         f"{tuple(t.shape)}")
    if t.dtype != torch.bool:
        if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} must hold True/False (or 1/0) per test image")
        t = t.bool()
    return t.cpu()


@dataclass(frozen=True)
class PairedResult:
    """Two models compared on the same test images (``difference`` = accuracy of A minus B)."""

    names: tuple[str, str]
    n: int
    accuracy_a: Interval
    accuracy_b: Interval
    difference: Interval
    only_a: int  # images A gets right and B wrong
    only_b: int
    p_value: float  # exact McNemar (two-sided binomial test on the discordant images)

    @property
    def verdict(self) -> str:
        return verdict(self.difference, self.names)

    def __str__(self) -> str:
        a, b = self.names
        return (f"{a} {100 * self.accuracy_a.estimate:.2f}% vs {b} {100 * self.accuracy_b.estimate:.2f}% on the same "
                f"{self.n} images: difference {self.difference}; {self.only_a} images only {a} gets right, "
                f"{self.only_b} only {b}; McNemar p = {self.p_value:.3g} -> {self.verdict}")


def _mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar: P(at least as unbalanced a split of the b + c discordant images | fair coin)."""
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def paired_test(correct_a, correct_b, names=("A", "B"), confidence: float = 0.95) -> PairedResult:
    """Compare two models on the same test images from their per-image right/wrong (bools).

    The difference of the accuracies is ``(only_a - only_b) / n``. Its interval is exact, conditional
    on the number ``m`` of discordant images: ``only_a`` is binomial(``m``, ``q``), ``q`` gets a
    Clopper-Pearson interval, and the difference is ``m / n * (2 q - 1)``.
    """
    a, b = _as_correct(correct_a, "correct_a"), _as_correct(correct_b, "correct_b")
    if a.numel() != b.numel():
        raise ValueError(f"correct_a and correct_b must cover the same test images; got {a.numel()} and {b.numel()}")
    names = _check_names(names)
    confidence = _check_confidence(confidence)
    n = a.numel()
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    m = only_a + only_b
    diff = (only_a - only_b) / n
    if m == 0:
        low = high = 0.0
    else:
        q_low, q_high = _clopper_pearson(only_a, m, 1 - confidence)
        low, high = m / n * (2 * q_low - 1), m / n * (2 * q_high - 1)
    return PairedResult(names, n, accuracy_interval(int(a.sum()), n, confidence),
                        accuracy_interval(int(b.sum()), n, confidence), Interval(diff, low, high, confidence),
                        only_a, only_b, _mcnemar_p(only_a, only_b))


def _check_names(names) -> tuple[str, str]:
    if not isinstance(names, (tuple, list)) or len(names) != 2:
        raise TypeError(f"names must be a pair of labels, e.g. ('global', 'uniform'); got {names!r}")
    return check_name(names[0], "names[0]"), check_name(names[1], "names[1]")


def _t_quantile(p: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


def seed_interval(values, confidence: float = 0.95, percent: bool = True) -> Interval:
    """Mean over seeds with a Student-t interval (needs at least 2 values)."""
    values = check_numbers(values, "values", check_real)
    if len(values) < 2:
        raise ValueError(f"values must hold at least 2 seeds' results for an interval; got {len(values)}")
    confidence = _check_confidence(confidence)
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, confidence, percent)


def paired_seed_test(values_a, values_b, names=("A", "B"), confidence: float = 0.95) -> tuple[Interval, str]:
    """The per-seed differences ``a_i - b_i`` (same seed, same data order): their mean, t-interval and verdict.

    When every seed gives the same difference the seeds varied nothing: the verdict is then "no
    difference detectable here" (with a warning to compare on the test images with :func:`paired_test`).
    """
    a = check_numbers(values_a, "values_a", check_real)
    b = check_numbers(values_b, "values_b", check_real)
    if len(a) != len(b):
        raise ValueError(f"values_a and values_b must come from the same seeds; got {len(a)} and {len(b)} values")
    names = _check_names(names)
    differences = [x - y for x, y in zip(a, b)]
    interval = seed_interval(differences, confidence)
    if max(differences) - min(differences) <= 1e-9 * max(1.0, abs(interval.estimate)):
        # Every seed gave the same difference: the seeds varied nothing, so they are one measurement,
        # not several, and a zero-width interval would overstate what is known.
        warnings.warn("every seed gave the same difference: the seeds did not change the result, so the "
                      "interval over seeds says nothing; compare the models on the test images with paired_test",
                      stacklevel=2)
        return interval, NO_DIFFERENCE
    return interval, verdict(interval, names)


def verdict(difference: Interval, names=("A", "B")) -> str:
    """``"<A> better"`` when the interval of A - B lies above 0, ``"<B> better"`` below, else no difference."""
    if not isinstance(difference, Interval):
        raise TypeError(f"difference must be an Interval; got {type(difference).__name__}")
    a, b = _check_names(names)
    if difference.low > 0:
        return f"{a} better"
    if difference.high < 0:
        return f"{b} better"
    return NO_DIFFERENCE
