"""robustness: per-class accuracy, corruptions and calibration, each against an independent computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pruning_utils as pu


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return pu.SmallCNN(widths=(4, 8), input_size=8).eval()


def _data(n: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _loader(x, y, batch_size: int = 32, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def _brute_correct(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return torch.tensor([bool(model(x[i:i + 1]).argmax(1).item() == y[i].item()) for i in range(len(y))])


# ---- per-class accuracy -----------------------------------------------------------------------------

def test_per_class_accuracy_matches_a_brute_force_count():
    model, (x, y) = _model(), _data()
    right = _brute_correct(model, x, y)
    rows = pu.per_class_accuracy(model, _loader(x, y))
    assert [r.label for r in rows] == list(range(10))
    for r in rows:
        n = sum(1 for i in range(len(y)) if y[i] == r.label)
        correct = sum(1 for i in range(len(y)) if y[i] == r.label and right[i])
        assert (r.correct, r.n) == (correct, n)
        if n:
            assert r.accuracy == pu.accuracy_interval(correct, n)
        else:
            assert r.accuracy is None


def test_per_class_accuracy_class_without_images_and_num_classes():
    model = _model()
    x, _ = _data(40)
    y = torch.tensor([0, 1, 2] * 13 + [0])  # classes 3..9 have no images
    rows = pu.per_class_accuracy(model, _loader(x, y), num_classes=3)
    assert [r.n for r in rows] == [14, 13, 13]
    full = pu.per_class_accuracy(model, _loader(x, y))
    assert len(full) == 10 and full[5].n == 0 and full[5].accuracy is None
    with pytest.raises(ValueError, match="num_classes"):
        pu.per_class_accuracy(model, _loader(x, y), num_classes=2)  # target 2 exists
    with pytest.raises(ValueError, match="num_classes"):
        pu.per_class_accuracy(model, _loader(x, y), num_classes=11)  # the model has 10 outputs


def test_compare_per_class_against_brute_force_and_sorted_by_loss():
    a, b, (x, y) = _model(0), _model(1), _data(120)
    ra, rb = _brute_correct(a, x, y), _brute_correct(b, x, y)
    rows = pu.compare_per_class(a, b, _loader(x, y), names=("dense", "pruned"))
    assert {r.label for r in rows} == {int(c) for c in y.unique()}
    for r in rows:
        idx = [i for i in range(len(y)) if y[i] == r.label]
        only_a = [i for i in idx if ra[i] and not rb[i]]
        only_b = [i for i in idx if rb[i] and not ra[i]]
        assert (r.result.n, r.result.only_a, r.result.only_b) == (len(idx), len(only_a), len(only_b))
        assert r.only_a_indices.tolist() == only_a
        assert r.lost == pytest.approx((len(only_a) - len(only_b)) / len(idx))
        assert r.verdict == pu.paired_test(ra[idx], rb[idx], ("dense", "pruned")).verdict
    lost = [r.lost for r in rows]
    assert lost == sorted(lost, reverse=True)


def test_compare_per_class_model_with_itself_loses_nothing():
    model, (x, y) = _model(), _data()
    rows = pu.compare_per_class(model, model, _loader(x, y))
    assert all(r.lost == 0 and r.only_a_indices.numel() == 0 and r.verdict == "no difference detectable here"
               for r in rows)


def test_compare_per_class_refuses_a_shuffling_loader():
    model, (x, y) = _model(), _data()
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="same order"):
        pu.compare_per_class(model, model, _loader(x, y, shuffle=True))


# ---- corruptions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gaussian_noise", "blur", "shift", "contrast"])
def test_severity_zero_is_the_identity_and_a_copy(name):
    fn, _ = pu.CORRUPTIONS[name]
    x = torch.randn(3, 2, 6, 5)
    out = fn(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)
    out.add_(1.0)
    assert not torch.equal(out, x)  # a value, not an alias of the batch


def test_gaussian_noise_statistics_match_the_formula():
    x = torch.randn(400, 3, 8, 8)
    severity = 0.7
    noise = pu.gaussian_noise(x, severity, torch.Generator().manual_seed(1)) - x
    n = noise.numel()
    assert abs(float(noise.mean())) < 4 * severity / math.sqrt(n)
    assert float(noise.std()) == pytest.approx(severity, rel=0.01)


def test_gaussian_noise_is_deterministic_given_a_generator():
    x = torch.zeros(4, 1, 5, 5)
    a = pu.gaussian_noise(x, 0.5, torch.Generator().manual_seed(3))
    b = pu.gaussian_noise(x, 0.5, torch.Generator().manual_seed(3))
    c = pu.gaussian_noise(x, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("s", [1, 2, 3])
def test_pixel_shift_moves_pixels_by_the_stated_amount(s):
    x = torch.randn(2, 3, 7, 6)
    out = pu.pixel_shift(x, s)
    for i in range(7):
        for j in range(6):
            expected = x[..., i - s, j - s] if i >= s and j >= s else torch.zeros(2, 3)
            assert torch.equal(out[..., i, j], expected)
    assert torch.equal(pu.pixel_shift(x, 7), torch.zeros_like(x))


def test_gaussian_blur_of_an_impulse_is_the_gaussian_kernel():
    sigma = 1.0
    x = torch.zeros(1, 2, 15, 15, dtype=torch.float64)
    x[:, :, 7, 7] = 1.0
    out = pu.gaussian_blur(x, sigma)
    d = torch.arange(-7, 8, dtype=torch.float64)
    g = torch.where(d.abs() <= 3, torch.exp(-d ** 2 / (2 * sigma ** 2)), torch.zeros(()))
    g = g / g.sum()
    expected = torch.outer(g, g)
    assert torch.allclose(out[0, 0], expected) and torch.allclose(out[0, 1], expected)
    const = torch.full((2, 1, 5, 5), 3.0)
    assert torch.allclose(pu.gaussian_blur(const, 2.0), const)  # edges replicated: a constant stays constant


def test_reduce_contrast_scales_around_each_channels_mean():
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    m = x.mean(dim=(2, 3), keepdim=True)
    out = pu.reduce_contrast(x, 0.25)
    assert torch.allclose(out, m + 0.75 * (x - m))
    assert torch.allclose(out.std(dim=(2, 3)), 0.75 * x.std(dim=(2, 3)))
    assert torch.allclose(pu.reduce_contrast(x, 1.0), m.expand_as(x))


def test_corrupted_accuracy_against_a_manual_loop():
    model, (x, y) = _model(), _data()
    loader = _loader(x, y)
    result = pu.corrupted_accuracy(model, loader, "gaussian_noise", [0.0, 1.0, 3.0], seed=5)
    assert list(result) == [0.0, 1.0, 3.0]
    assert result[0.0].estimate == pu.evaluate(model, loader)["accuracy"]
    for severity in (1.0, 3.0):
        g = torch.Generator().manual_seed(5)
        right = 0
        with torch.no_grad():
            for xb, yb in loader:
                right += int((model(pu.gaussian_noise(xb, severity, g)).argmax(1) == yb).sum())
        assert result[severity] == pu.accuracy_interval(right, len(y))
    again = pu.corrupted_accuracy(model, loader, "gaussian_noise", [0.0, 1.0, 3.0], seed=5)
    assert again == result


def test_corrupted_accuracy_by_name_and_each_severity_on_its_own():
    model, (x, y) = _model(), _data()
    loader = _loader(x, y)
    shifted = pu.corrupted_accuracy(model, loader, "shift", [2])
    assert shifted[2].estimate == int(_brute_correct(model, pu.pixel_shift(x, 2), y).sum()) / len(y)
    blurred = pu.corrupted_accuracy(model, loader, "blur", [1.5])
    assert blurred[1.5].estimate == int(_brute_correct(model, pu.gaussian_blur(x, 1.5), y).sum()) / len(y)
    both = pu.corrupted_accuracy(model, loader, "gaussian_noise", [0.5, 2.0], seed=1)
    alone = pu.corrupted_accuracy(model, loader, "gaussian_noise", [2.0], seed=1)
    assert alone[2.0] == both[2.0]  # each severity starts from its own seeded generator


def test_corrupted_accuracy_takes_a_callable_corruption():
    model, (x, y) = _model(), _data()
    result = pu.corrupted_accuracy(model, _loader(x, y), lambda xb, s, g: xb * 0 + s, [0.0, 2.0])
    for s in (0.0, 2.0):
        right = int(_brute_correct(model, torch.full_like(x, s), y).sum())
        assert result[s].estimate == right / len(y)
    with pytest.raises(ValueError, match="corruption"):
        pu.corrupted_accuracy(model, _loader(x, y), lambda xb, s, g: xb[:, :, :4], [1.0])


# ---- calibration ------------------------------------------------------------------------------------

def test_ece_by_hand_on_a_tiny_example():
    probs = torch.tensor([[0.90, 0.10],   # conf 0.90, right  -> bin 5 (0.8, 1.0]
                          [0.85, 0.15],   # conf 0.85, wrong  -> bin 5
                          [0.30, 0.70],   # conf 0.70, right  -> bin 4 (0.6, 0.8]
                          [0.35, 0.65],   # conf 0.65, wrong  -> bin 4
                          [0.45, 0.55],   # conf 0.55, right  -> bin 3 (0.4, 0.6]
                          [0.60, 0.40]],  # conf 0.60, right  -> bin 3 (an upper edge belongs to its bin)
                         dtype=torch.float64)
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    # bin 5: acc 1/2, conf (0.90 + 0.85) / 2 = 0.875 -> |gap| 0.375, weight 2/6
    # bin 4: acc 1/2, conf (0.70 + 0.65) / 2 = 0.675 -> |gap| 0.175, weight 2/6
    # bin 3: acc 2/2, conf (0.55 + 0.60) / 2 = 0.575 -> |gap| 0.425, weight 2/6
    expected = (2 * 0.375 + 2 * 0.175 + 2 * 0.425) / 6  # = 0.325
    assert pu.expected_calibration_error(probs, targets, n_bins=5) == pytest.approx(expected, abs=1e-12)
    data = pu.reliability_diagram_data(probs, targets, n_bins=5)
    assert data.counts == [0, 0, 2, 2, 2]
    assert data.accuracy[2:] == pytest.approx([1.0, 0.5, 0.5])
    assert data.confidence[2:] == pytest.approx([0.575, 0.675, 0.875])
    assert all(math.isnan(v) for v in data.accuracy[:2] + data.confidence[:2])
    assert data.edges == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # the same predictions as logits give the same ECE
    assert pu.expected_calibration_error(probs.log(), targets, n_bins=5) == pytest.approx(expected)


def test_ece_of_a_perfectly_calibrated_predictor_is_near_zero():
    g = torch.Generator().manual_seed(0)
    n = 100_000
    conf = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    probs = torch.stack([conf, 1 - conf], dim=1)
    right = torch.rand(n, generator=g, dtype=torch.float64) < conf  # right with probability = confidence
    targets = torch.where(right, 0, 1)
    assert pu.expected_calibration_error(probs, targets) < 0.01


def test_ece_of_an_overconfident_predictor_is_its_gap():
    n = 1000
    conf = torch.tensor([0.9] * 500 + [0.7] * 500, dtype=torch.float64)
    probs = torch.stack([conf, 1 - conf], dim=1)
    targets = torch.ones(n, dtype=torch.long)
    targets[:350] = 0        # 70% right where it says 90%
    targets[500:750] = 0     # 50% right where it says 70%
    assert pu.expected_calibration_error(probs, targets) == pytest.approx(0.2)
    gaps = [g for g in pu.reliability_diagram_data(probs, targets).gaps if not math.isnan(g)]
    assert gaps == pytest.approx([0.2, 0.2])  # bins (0.6, 0.7333] and (0.8667, 0.9333] of the 15


def test_model_calibration_matches_the_logits_computed_directly():
    model, (x, y) = _model(), _data()
    with torch.no_grad():
        logits = model(x)
    data = pu.model_calibration(model, _loader(x, y), n_bins=10)
    assert data.ece == pytest.approx(pu.expected_calibration_error(logits, y, n_bins=10))
    assert sum(data.counts) == len(y) == data.n


# ---- bad input --------------------------------------------------------------------------------------

def test_bad_inputs_get_errors_naming_the_argument():
    probs, targets = torch.tensor([[0.6, 0.4], [0.2, 0.8]]), torch.tensor([0, 1])
    model, (x, y) = _model(), _data(8)
    cases = [
        (lambda: pu.expected_calibration_error(probs, targets, n_bins=0), ValueError, "n_bins"),
        (lambda: pu.expected_calibration_error(probs, targets, n_bins=2.5), TypeError, "n_bins"),
        (lambda: pu.expected_calibration_error(probs[0], targets), ValueError, "probabilities_or_logits"),
        (lambda: pu.expected_calibration_error(probs, torch.tensor([0, 1, 1])), ValueError, "same images"),
        (lambda: pu.expected_calibration_error(probs, torch.tensor([0, 2])), ValueError, "targets"),
        (lambda: pu.expected_calibration_error(probs, torch.tensor([0.0, 1.0])), ValueError, "targets"),
        (lambda: pu.expected_calibration_error(probs * 2, targets, kind="probabilities"), ValueError, "kind"),
        (lambda: pu.expected_calibration_error(torch.empty(0, 2), torch.empty(0, dtype=torch.long)), ValueError,
         "probabilities_or_logits"),
        (lambda: pu.gaussian_noise(x, -1.0), ValueError, "severity"),
        (lambda: pu.gaussian_noise(x, 0.5, generator=3), TypeError, "generator"),
        (lambda: pu.reduce_contrast(x, 1.5), ValueError, "severity"),
        (lambda: pu.pixel_shift(x, 1.5), TypeError, "severity"),
        (lambda: pu.gaussian_blur(x[0], 1.0), ValueError, "inputs"),
        (lambda: pu.corrupted_accuracy(model, _loader(x, y), "nonsense", [1.0]), ValueError, "corruption"),
        (lambda: pu.corrupted_accuracy(model, _loader(x, y), "contrast", [0.5, 2.0]), ValueError, "severities"),
        (lambda: pu.corrupted_accuracy(model, _loader(x, y), "blur", []), ValueError, "severities"),
        (lambda: pu.corrupted_accuracy(model, [], "blur", [1.0]), ValueError, "loader"),
        (lambda: pu.per_class_accuracy(model, []), ValueError, "loader"),
        (lambda: pu.model_calibration(model, _loader(x, y), n_bins=0), ValueError, "n_bins"),
        (lambda: pu.compare_per_class(model, "b", _loader(x, y)), TypeError, "model_b"),
    ]
    for call, error, word in cases:
        with pytest.raises(error, match=word):
            call()
