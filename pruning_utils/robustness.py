"""What pruning forgets (Hooker et al. 2019): per-class accuracy, corrupted inputs, calibration.

Average accuracy can hide what a pruned model loses. This module measures three things the average
does not show, each with the intervals of :mod:`pruning_utils.stats`:

* :func:`per_class_accuracy` / :func:`compare_per_class` - accuracy per class with a Wilson interval,
  and two models compared class by class on the same images (exact McNemar, :func:`stats.paired_test`),
  sorted by the accuracy the second model lost.
* :func:`gaussian_noise`, :func:`gaussian_blur`, :func:`pixel_shift`, :func:`reduce_contrast` - input
  corruptions made on the fly, pure functions of a batch and a severity (``CORRUPTIONS`` names them),
  and :func:`corrupted_accuracy`, the accuracy with its interval at each severity.
* :func:`reliability_diagram_data` / :func:`expected_calibration_error` / :func:`model_calibration` -
  the expected calibration error of Guo et al. 2017 (equal-width confidence bins) and the data of the
  reliability diagram.

Every model pass goes through :func:`pruning_utils.training.evaluate` (the course's one evaluation loop):
the logits are read through its ``loss_fn`` hook, which sees every batch's outputs and targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checks import (check_choice, check_int, check_module, check_non_negative, check_numbers, check_real,
                     check_tensor, check_unit)
from .stats import Interval, PairedResult, _check_confidence, _check_names, accuracy_interval, paired_test
from .training import _check_batch, _check_loader, evaluate

__all__ = [
    "CORRUPTIONS",
    "ClassAccuracy",
    "ClassComparison",
    "ReliabilityDiagram",
    "compare_per_class",
    "corrupted_accuracy",
    "expected_calibration_error",
    "gaussian_blur",
    "gaussian_noise",
    "model_calibration",
    "per_class_accuracy",
    "pixel_shift",
    "reduce_contrast",
    "reliability_diagram_data",
]


# ---- one pass of the model: logits and targets in loader order ---------------------------------------

def _predictions(model: nn.Module, loader, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits, targets, correct)`` of ``model`` on ``loader`` (CPU, loader order), read through evaluate."""
    logits, targets = [], []

    def record(outputs: torch.Tensor, batch_targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        logits.append(outputs.detach().float().cpu())
        targets.append(batch_targets.detach().cpu())
        return F.cross_entropy(outputs, batch_targets)

    result = evaluate(model, loader, device, loss_fn=record, per_image=True)
    return torch.cat(logits), torch.cat(targets), result["correct"]


# ---- per-class accuracy -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassAccuracy:
    """One class: ``correct`` of its ``n`` test images, and the Wilson interval (None when ``n`` is 0)."""

    label: int
    correct: int
    n: int
    accuracy: Interval | None

    def __str__(self) -> str:
        return f"class {self.label}: {self.correct}/{self.n} = {self.accuracy if self.n else 'no images'}"


def _class_counts(correct: torch.Tensor, targets: torch.Tensor, num_classes: int, confidence: float):
    n = torch.bincount(targets, minlength=num_classes)
    right = torch.bincount(targets[correct], minlength=num_classes)
    return [ClassAccuracy(c, int(right[c]), int(n[c]),
                          accuracy_interval(int(right[c]), int(n[c]), confidence) if int(n[c]) else None)
            for c in range(num_classes)]


def _num_classes(num_classes, classes: int, targets: torch.Tensor) -> int:
    if num_classes is None:
        return classes
    num_classes = check_int(num_classes, "num_classes", 1)
    if num_classes > classes:
        raise ValueError(f"num_classes must be at most the model's {classes} outputs; got {num_classes}")
    if targets.numel() and int(targets.max()) >= num_classes:
        raise ValueError(f"num_classes = {num_classes} but the loader holds class {int(targets.max())}: "
                         f"num_classes must exceed every target")
    return num_classes


def per_class_accuracy(model: nn.Module, loader, num_classes: int | None = None, device=None,
                       confidence: float = 0.95) -> list[ClassAccuracy]:
    """Accuracy of ``model`` on each class of ``loader``: one :class:`ClassAccuracy` per class, by label.

    ``num_classes`` defaults to the model's number of outputs; a class without test images gets
    ``n = 0`` and ``accuracy = None``. Intervals are Wilson intervals (:func:`stats.accuracy_interval`).
    """
    check_module(model)
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", 1)  # before the pass; its range after it
    confidence = _check_confidence(confidence)
    logits, targets, correct = _predictions(model, loader, device)
    num_classes = _num_classes(num_classes, logits.shape[1], targets)
    return _class_counts(correct, targets, num_classes, confidence)


@dataclass(frozen=True)
class ClassComparison:
    """Models A and B on the images of one class: the paired test, and which images only A gets right.

    ``only_a_indices`` are positions in loader order (the images B "forgot", when A is the dense model).
    """

    label: int
    result: PairedResult
    only_a_indices: torch.Tensor

    @property
    def lost(self) -> float:
        """Accuracy of A minus accuracy of B on this class (what B lost)."""
        return self.result.difference.estimate

    @property
    def verdict(self) -> str:
        return self.result.verdict

    def __str__(self) -> str:
        return f"class {self.label}: {self.result}"


def _named_pass(model: nn.Module, name: str, loader, device):
    """:func:`_predictions`, its errors saying which of the two models they are about."""
    try:
        return _predictions(model, loader, device)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} on loader: {exc}") from exc


def compare_per_class(model_a: nn.Module, model_b: nn.Module, loader, names=("A", "B"), device=None,
                      confidence: float = 0.95) -> list[ClassComparison]:
    """Compare ``model_a`` and ``model_b`` class by class on the same images of ``loader``.

    Each class gets :func:`stats.paired_test` on its images (exact McNemar and an exact interval of the
    difference A - B) and its verdict; the list is sorted by the accuracy lost (A - B), largest first,
    so with A the dense model and B the pruned one the classes pruning hurts most come first. Classes
    without test images are left out. ``loader`` must yield the same images in the same order on both
    passes (no shuffling).
    """
    check_module(model_a, "model_a")
    check_module(model_b, "model_b")
    _check_loader(loader, "loader", reiterable=True)
    confidence = _check_confidence(confidence)
    names = _check_names(names)
    logits_a, targets, correct_a = _named_pass(model_a, "model_a", loader, device)
    logits_b, targets_b, correct_b = _named_pass(model_b, "model_b", loader, device)
    if logits_a.shape[1] != logits_b.shape[1]:
        raise ValueError(f"model_a and model_b must predict the same classes; got {logits_a.shape[1]} and "
                         f"{logits_b.shape[1]} outputs")
    if not torch.equal(targets, targets_b):
        raise ValueError("loader yielded different targets on its two passes: it must give the same images in "
                         "the same order (a test loader, shuffle=False)")
    out = []
    for c in range(logits_a.shape[1]):
        where = (targets == c).nonzero().flatten()
        if where.numel() == 0:
            continue
        a, b = correct_a[where], correct_b[where]
        out.append(ClassComparison(c, paired_test(a, b, names, confidence), where[a & ~b]))
    return sorted(out, key=lambda r: (-r.lost, r.label))


# ---- corruptions ------------------------------------------------------------------------------------
#
# All four act on the batch as the loader gives it, i.e. on the normalised tensor x_n = (x - mean) / std
# (per channel). That is acceptable because each of them commutes with that affine map, up to a
# rescaling of the severity:
# * blur and shift are linear with weights summing to 1 (edge pixels replicated, shift filled with 0),
#   so blurring x_n is normalising the blurred x; the shift's fill of 0 is the dataset mean in pixel space;
# * contrast scales around the image's own mean, which the affine map carries along exactly;
# * noise of std s on x_n is noise of std s * std (per channel) on the pixels: severity is in units of
#   the dataset's pixel standard deviation, which makes one severity mean the same on every dataset.
# Nothing is clipped to the valid pixel range (ImageNet-C clips to [0, 1]); severities are therefore
# this module's own scale, not ImageNet-C's five levels.

def _images(inputs, name: str = "inputs") -> torch.Tensor:
    inputs = check_tensor(inputs, name, floating=True)
    if inputs.dim() != 4:
        raise ValueError(f"{name} must be a batch of images of shape (batch, channels, height, width); got shape "
                         f"{tuple(inputs.shape)}")
    return inputs


def _check_generator(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    return generator


def gaussian_noise(inputs: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``inputs + severity * eps`` with ``eps ~ N(0, 1)`` drawn independently per element.

    The noise is drawn on the CPU from ``generator`` (the same generator state gives the same noise on
    any device), then moved to the batch's device. Severity 0 returns a copy of ``inputs``.
    """
    inputs = check_tensor(inputs, "inputs", floating=True)
    severity = check_non_negative(severity, "severity")
    generator = _check_generator(generator)
    if severity == 0:
        return inputs.clone()
    eps = torch.randn(inputs.shape, generator=generator, dtype=torch.float32)
    return inputs + severity * eps.to(device=inputs.device, dtype=inputs.dtype)


def gaussian_blur(inputs: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur each channel with a Gaussian kernel of standard deviation ``severity`` pixels.

    Kernel ``k(d) = exp(-d^2 / (2 severity^2))`` for integer offsets ``|d| <= ceil(3 severity)`` (at most
    twice the image's larger side, where a wider kernel only adds replicated edge pixels), normalised to sum 1, applied along height then width (separable); the image's edge pixels are
    replicated as padding, so a constant image stays constant. Severity 0 returns a copy.
    ``generator`` is unused (the blur is deterministic); it is accepted so every corruption has one form.
    """
    inputs = _images(inputs)
    severity = check_non_negative(severity, "severity")
    _check_generator(generator)
    if severity == 0:
        return inputs.clone()
    h, w = inputs.shape[-2:]
    radius = max(1, min(math.ceil(3 * severity), 2 * max(h, w)))
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (d / severity) ** 2)  # (d / s)^2, not d^2 / s^2: no 0 / 0 for a tiny s
    kernel = (kernel / kernel.sum()).to(device=inputs.device, dtype=inputs.dtype)
    c = inputs.shape[1]
    x = F.pad(inputs, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def pixel_shift(inputs: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Move the image ``severity`` pixels down and ``severity`` pixels right: ``out[y, x] = in[y - s, x - s]``.

    The uncovered top rows and left columns are 0 (on a normalised batch: the dataset mean). A shift of
    the image's size or more leaves only the fill. Severity 0 returns a copy; ``generator`` is unused.
    """
    inputs = _images(inputs)
    s = check_int(severity, "severity", 0)
    _check_generator(generator)
    out = torch.zeros_like(inputs)
    h, w = inputs.shape[-2:]
    if s < h and s < w:
        out[..., s:, s:] = inputs[..., : h - s, : w - s]
    return out


def reduce_contrast(inputs: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m + (1 - severity) * (x - m)``, ``m`` the mean of each image's channel; severity in [0, 1].

    Severity 0 is the identity (a copy), 1 leaves every channel flat at its mean. ``generator`` is unused.
    """
    inputs = _images(inputs)
    severity = check_unit(severity, "severity")
    _check_generator(generator)
    if severity == 0:
        return inputs.clone()  # m + (x - m) is x only up to rounding
    m = inputs.mean(dim=(2, 3), keepdim=True)
    return m + (1 - severity) * (inputs - m)


def _shift_severity(value, name: str) -> float:
    return check_int(value, name, 0)


CORRUPTIONS: dict[str, tuple[Callable, Callable]] = {
    # name: (corruption(inputs, severity, generator), severity check)
    "gaussian_noise": (gaussian_noise, check_non_negative),
    "blur": (gaussian_blur, check_non_negative),
    "shift": (pixel_shift, _shift_severity),
    "contrast": (reduce_contrast, check_unit),
}


class _CorruptedLoader:
    """``loader`` with each batch's inputs passed through ``corruption(inputs, severity, generator)``."""

    def __init__(self, loader, corruption: Callable, severity, generator: torch.Generator):
        self.loader, self.corruption, self.severity, self.generator = loader, corruption, severity, generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            inputs, targets = _check_batch(batch, "loader")
            corrupted = self.corruption(inputs, self.severity, self.generator)
            if not isinstance(corrupted, torch.Tensor) or corrupted.shape != inputs.shape:
                what = tuple(corrupted.shape) if isinstance(corrupted, torch.Tensor) else type(corrupted).__name__
                raise ValueError(f"corruption must return a tensor of the batch's shape {tuple(inputs.shape)}; "
                                 f"got {what}")
            yield corrupted, targets


def corrupted_accuracy(model: nn.Module, loader, corruption, severities, *, seed: int = 0, device=None,
                       confidence: float = 0.95) -> dict[float, Interval]:
    """Accuracy of ``model`` on ``loader`` with its inputs corrupted, at each severity: ``{severity: Interval}``.

    ``corruption`` is a name of ``CORRUPTIONS`` (``"gaussian_noise"``, ``"blur"``, ``"shift"``,
    ``"contrast"``) or a callable ``corruption(inputs, severity, generator) -> tensor`` of the same shape.
    Each severity starts from a fresh ``torch.Generator`` seeded with ``seed``, so a result is reproducible
    and one severity's noise does not depend on the others. The corruption acts on the batches as the
    loader gives them (normalised; see the module's notes on why that is the same corruption).
    Intervals are Wilson intervals over the test images.
    """
    check_module(model)
    _check_loader(loader, "loader", reiterable=True)
    if isinstance(corruption, str):
        fn, check = CORRUPTIONS[check_choice(corruption, "corruption", tuple(CORRUPTIONS))]
    elif callable(corruption) and not isinstance(corruption, nn.Module):
        fn, check = corruption, check_real
    else:
        raise TypeError(f"corruption must be one of {', '.join(map(repr, CORRUPTIONS))} or a callable "
                        f"corruption(inputs, severity, generator); got {type(corruption).__name__}")
    severities = check_numbers(severities, "severities", check)
    seed = check_int(seed, "seed", 0)
    confidence = _check_confidence(confidence)
    out = {}
    for severity in severities:
        generator = torch.Generator().manual_seed(seed)
        correct = evaluate(model, _CorruptedLoader(loader, fn, severity, generator), device, per_image=True)["correct"]
        out[severity] = accuracy_interval(int(correct.sum()), correct.numel(), confidence)
    return out


# ---- calibration ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReliabilityDiagram:
    """Equal-width confidence bins: ``edges`` (n_bins + 1), and per bin its ``counts``, ``accuracy`` and mean
    ``confidence`` (NaN for an empty bin); ``ece`` = sum over bins of counts / n * |accuracy - confidence|."""

    edges: list[float]
    counts: list[int]
    accuracy: list[float]
    confidence: list[float]
    ece: float
    n: int

    @property
    def gaps(self) -> list[float]:
        """``confidence - accuracy`` per bin (positive: overconfident); NaN for an empty bin."""
        return [c - a for a, c in zip(self.accuracy, self.confidence)]


def _probabilities(scores, kind: str) -> torch.Tensor:
    scores = check_tensor(scores, "probabilities_or_logits", floating=True, finite=True, nonempty=True)
    if scores.dim() != 2:
        raise ValueError(f"probabilities_or_logits must have shape (n, classes); got {tuple(scores.shape)}")
    kind = check_choice(kind, "kind", ("auto", "probabilities", "logits"))
    scores = scores.detach().cpu().double()
    is_probability = bool(((scores >= 0) & (scores <= 1)).all()) and bool(
        torch.allclose(scores.sum(dim=1), torch.ones(scores.shape[0], dtype=torch.float64), atol=1e-4))
    if kind == "probabilities" and not is_probability:
        raise ValueError("probabilities_or_logits must hold rows of probabilities in [0, 1] summing to 1 with "
                         "kind='probabilities'; pass kind='logits' for raw model outputs")
    if kind == "logits" or (kind == "auto" and not is_probability):
        return torch.softmax(scores, dim=1)
    return scores


def reliability_diagram_data(probabilities_or_logits: torch.Tensor, targets, n_bins: int = 15,
                             kind: str = "auto") -> ReliabilityDiagram:
    """The reliability diagram of Guo et al. 2017 ("On Calibration of Modern Neural Networks", eq. 3).

    Each prediction's confidence is its largest probability, and it is right when that class is the
    target. Bin ``m`` (1-based) holds the confidences in ``((m - 1) / n_bins, m / n_bins]``; per bin,
    ``accuracy`` is the share right and ``confidence`` the mean confidence, and
    ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``.

    ``kind``: ``"auto"`` (rows of numbers in [0, 1] summing to 1 are probabilities, anything else is
    logits and goes through a softmax), ``"probabilities"`` or ``"logits"``.
    """
    probs = _probabilities(probabilities_or_logits, kind)
    targets = check_tensor(targets, "targets")
    if targets.dim() != 1 or targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be a 1-D tensor of integer class indices; got shape {tuple(targets.shape)}, "
                         f"dtype {targets.dtype}")
    if targets.shape[0] != probs.shape[0]:
        raise ValueError(f"targets and probabilities_or_logits must cover the same images; got {targets.shape[0]} "
                         f"targets for {probs.shape[0]} rows")
    targets = targets.cpu().long()
    if bool(((targets < 0) | (targets >= probs.shape[1])).any()):
        raise ValueError(f"targets must be class indices in [0, {probs.shape[1]}); got min {int(targets.min())}, "
                         f"max {int(targets.max())}")
    n_bins = check_int(n_bins, "n_bins", 1)
    confidence, predicted = probs.max(dim=1)
    right = (predicted == targets).double()
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    index = torch.bucketize(confidence, edges[1:-1], right=False)  # edges[m-1] < c <= edges[m] -> bin m - 1
    counts = torch.bincount(index, minlength=n_bins)
    right_sum = torch.bincount(index, weights=right, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    nonzero = counts > 0
    weight = counts.double()  # an int64 tensor divided would give float32
    acc = torch.full((n_bins,), math.nan, dtype=torch.float64)
    conf = torch.full((n_bins,), math.nan, dtype=torch.float64)
    acc[nonzero] = right_sum[nonzero] / weight[nonzero]
    conf[nonzero] = conf_sum[nonzero] / weight[nonzero]
    n = probs.shape[0]
    ece = float((weight[nonzero] / n * (acc[nonzero] - conf[nonzero]).abs()).sum())
    return ReliabilityDiagram(edges.tolist(), counts.tolist(), acc.tolist(), conf.tolist(), ece, n)


def expected_calibration_error(probabilities_or_logits: torch.Tensor, targets, n_bins: int = 15,
                               kind: str = "auto") -> float:
    """Expected calibration error (Guo et al. 2017) with ``n_bins`` equal-width confidence bins, in [0, 1].

    See :func:`reliability_diagram_data` for the bins and the formula.
    """
    return reliability_diagram_data(probabilities_or_logits, targets, n_bins, kind).ece


def model_calibration(model: nn.Module, loader, n_bins: int = 15, device=None) -> ReliabilityDiagram:
    """The reliability diagram (and ECE) of ``model`` on ``loader``, from its softmax probabilities."""
    check_module(model)
    n_bins = check_int(n_bins, "n_bins", 1)
    logits, targets, _ = _predictions(model, loader, device)
    return reliability_diagram_data(logits, targets, n_bins, kind="logits")
