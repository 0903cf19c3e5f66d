"""The checkers of notebook 12's exercises: right answers pass, wrong ones fail with the hint, bad input is refused."""

import pytest
import torch
from torch import nn

from pruning_utils import compare_per_class, expected_calibration_error
from pruning_utils.exercises import check_ece, check_most_forgotten_class, check_pies

# The notebook's exercise 1, by hand with 3 bins: (1/3, 2/3] holds 0.6 (wrong) and 0.55 (right): accuracy 0.5,
# mean confidence 0.575; (2/3, 1] holds 0.9, 0.7, 0.8, all right: accuracy 1, confidence 0.8.
# ECE = 2/5 * 0.075 + 3/5 * 0.2 = 0.15 (the plain mean of the two gaps would be 0.1375, the error rate 0.2).
PROBS = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]]
TARGETS = [0, 1, 1, 0, 1]


def test_ece_accepts_the_hand_computed_value(capsys):
    assert check_ece(0.15, PROBS, TARGETS, n_bins=3) is True
    assert check_ece(0.1502, torch.tensor(PROBS), torch.tensor(TARGETS), n_bins=3) is True  # rounded to 3 decimals
    assert "right: ECE = 0.1500" in capsys.readouterr().out


@pytest.mark.parametrize("n_bins", [1, 2, 5, 10, 15])
def test_ece_agrees_with_the_package_on_random_predictions(n_bins, capsys):
    gen = torch.Generator().manual_seed(n_bins)
    probs = torch.softmax(3 * torch.randn(200, 4, generator=gen, dtype=torch.float64), dim=1)
    targets = torch.randint(0, 4, (200,), generator=gen)
    reference = expected_calibration_error(probs, targets, n_bins=n_bins, kind="probabilities")
    assert check_ece(reference, probs, targets, n_bins=n_bins) is True
    assert check_ece(reference + 0.01, probs, targets, n_bins=n_bins) is False


def test_ece_puts_a_confidence_on_an_edge_in_the_lower_bin(capsys):
    # 0.6 lies on the edge between (0.4, 0.6] and (0.6, 0.8] of 5 bins (and 0.6 * 5 rounds above 3):
    # (0.4, 0.6] holds 0.6 (wrong), (0.6, 0.8] holds 0.8 and 0.7 (both right)
    probs, targets = [[0.6, 0.4], [0.8, 0.2], [0.3, 0.7]], [1, 0, 1]
    by_hand = 1 / 3 * abs(0 - 0.6) + 2 / 3 * abs(1 - 0.75)
    reference = expected_calibration_error(torch.tensor(probs, dtype=torch.float64), torch.tensor(targets), n_bins=5)
    assert reference == pytest.approx(by_hand, abs=1e-9)
    assert check_ece(by_hand, probs, targets, n_bins=5) is True
    # in float32, 0.6 and 0.8 round up past their edges: both the package and the checker follow the stored value
    as32 = torch.tensor(probs, dtype=torch.float32)
    assert check_ece(expected_calibration_error(as32, torch.tensor(targets), n_bins=5), as32, targets, n_bins=5)


@pytest.mark.parametrize("answer, words", [
    (0.1375, "plain mean"),
    (15.0, "percent"),
    (0.2, "error rate"),
    (0.3, "bins by confidence"),
])
def test_ece_names_the_mistake(answer, words, capsys):
    assert check_ece(answer, PROBS, TARGETS, n_bins=3) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and words in out


@pytest.mark.parametrize("answer, probs, targets, n_bins, error, words", [
    (-0.1, PROBS, TARGETS, 3, ValueError, "answer"),
    ("0.15", PROBS, TARGETS, 3, TypeError, "answer"),
    (0.1, [[0.9, 0.2]], [0], 3, ValueError, "sum"),
    (0.1, [[1.2, -0.2]], [0], 3, ValueError, "probabilities"),
    (0.1, [0.9, 0.1], [0], 3, ValueError, "probabilities"),
    (0.1, [[0.5, float("nan")]], [0], 3, ValueError, "probabilities"),
    (0.1, "abc", [0], 3, TypeError, "probabilities"),
    (0.1, PROBS, TARGETS[:3], 3, ValueError, "targets"),
    (0.1, PROBS, [0, 1, 2, 0, 1], 3, ValueError, "targets"),
    (0.1, PROBS, [0.0, 1.0, 1.0, 0.0, 1.0], 3, ValueError, "targets"),
    (0.1, PROBS, TARGETS, 0, ValueError, "n_bins"),
])
def test_ece_refuses_bad_input_by_name(answer, probs, targets, n_bins, error, words):
    with pytest.raises(error, match=words):
        check_ece(answer, probs, targets, n_bins=n_bins)


class Fixed(nn.Module):
    """A 'model' that predicts fixed labels: input ``x`` holds each image's index into ``labels``."""

    def __init__(self, labels, classes):
        super().__init__()
        self.register_buffer("labels", torch.as_tensor(labels))
        self.scale = nn.Parameter(torch.ones(()))
        self.classes = classes

    def forward(self, x):
        return self.scale * nn.functional.one_hot(self.labels[x.long().flatten()], self.classes).float()


# 12 images: classes 0 (4 images), 1 (4), 2 (4). Dense gets 11 right; pruned loses 1 image of class 0 and 2 of
# class 2, and is weakest on class 1 (it already was, with the dense model as wrong there as it is).
TRUE = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
DENSE = [0, 0, 0, 0, 1, 1, 1, 0, 2, 2, 2, 2]
PRUNED = [0, 0, 0, 1, 1, 0, 0, 0, 2, 2, 0, 1]  # class 0: -1/4; class 1: 3/4 -> 1/4 = -2/4; class 2: -2/4
LOADER = [(torch.arange(0, 6).view(6, 1).float(), torch.tensor(TRUE[:6])),
          (torch.arange(6, 12).view(6, 1).float(), torch.tensor(TRUE[6:]))]


def test_most_forgotten_class_accepts_every_tied_class(capsys):
    dense, pruned = Fixed(DENSE, 3), Fixed(PRUNED, 3)
    assert check_most_forgotten_class(1, dense, pruned, LOADER) is True
    assert check_most_forgotten_class(2, dense, pruned, LOADER) is True
    assert "tied: [1, 2]" in capsys.readouterr().out
    # the package's per-class comparison puts one of them first too
    assert compare_per_class(dense, pruned, LOADER)[0].label in (1, 2)


def test_most_forgotten_class_refuses_a_smaller_loss(capsys):
    assert check_most_forgotten_class(0, Fixed(DENSE, 3), Fixed(PRUNED, 3), LOADER) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and "class 0 lost +25.0%" in out


def test_most_forgotten_class_names_the_weakest_class_mistake(capsys):
    dense = Fixed([0, 0, 0, 0, 1, 1, 0, 0, 2, 2, 2, 2], 3)   # class 1: 2/4 right
    pruned = Fixed([0, 0, 0, 0, 1, 0, 0, 0, 2, 2, 0, 0], 3)  # class 1: 1/4 (lost 1/4); class 2: 2/4 (lost 2/4)
    assert check_most_forgotten_class(2, dense, pruned, LOADER) is True
    capsys.readouterr()
    assert check_most_forgotten_class(1, dense, pruned, LOADER) is False
    out = capsys.readouterr().out
    assert "weakest" in out and "lost against the dense model" in out


def test_most_forgotten_class_names_classes_the_loader_lacks(capsys):
    assert check_most_forgotten_class(7, Fixed(DENSE, 3), Fixed(PRUNED, 3), LOADER) is False
    assert "[0, 1, 2]" in capsys.readouterr().out


@pytest.mark.parametrize("answer, dense, pruned, error, words", [
    (-1, Fixed(DENSE, 3), Fixed(PRUNED, 3), ValueError, "answer"),
    ("1", Fixed(DENSE, 3), Fixed(PRUNED, 3), TypeError, "answer"),
    (1, "model", Fixed(PRUNED, 3), TypeError, "dense_model"),
    (1, Fixed(DENSE, 3), None, TypeError, "pruned_model"),
])
def test_most_forgotten_class_refuses_bad_input_by_name(answer, dense, pruned, error, words):
    with pytest.raises(error, match=words):
        check_most_forgotten_class(answer, dense, pruned, LOADER)


# 3 models x 5 images. Image 1: dense votes 2, 2, 5 -> 2; pruned 3, 3, 3 -> 3: a PIE. Image 4: dense 1, 1, 1;
# pruned 4, 4, 1 -> 4: a PIE. Image 3: dense model 0 says 0, pruned model 0 says 1, but both modal labels are 0.
# No vote is tied.
DENSE_P = torch.tensor([[1, 2, 3, 0, 1], [1, 2, 4, 0, 1], [1, 5, 3, 0, 1]])
PRUNED_P = torch.tensor([[1, 3, 3, 1, 4], [2, 3, 3, 0, 4], [1, 3, 3, 0, 1]])


def vote_pies(dense, pruned):
    """The PIEs by an independent count of the votes with bincount (argmax returns the first maximum, so a tie
    goes to the smallest label; torch.mode documents no tie rule)."""
    k = int(max(dense.max(), pruned.max())) + 1
    modal = lambda p: torch.stack([p[:, i].bincount(minlength=k).argmax() for i in range(p.shape[1])])
    return (modal(dense) != modal(pruned)).nonzero().flatten().tolist()


def test_pies_accepts_indices_in_any_order_and_a_mask(capsys):
    assert vote_pies(DENSE_P, PRUNED_P) == [1, 4]
    assert check_pies([4, 1], DENSE_P, PRUNED_P) is True
    assert check_pies(torch.tensor([1, 4]), DENSE_P, PRUNED_P) is True
    assert check_pies(torch.tensor([False, True, False, False, True]), DENSE_P, PRUNED_P) is True
    assert check_pies([False, True, False, False, True], DENSE_P, PRUNED_P) is True
    assert "2 PIEs among 5 images" in capsys.readouterr().out


def test_pies_agree_with_a_vote_count_on_random_populations(capsys):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        dense = torch.randint(0, 4, (5, 40), generator=gen)
        pruned = torch.randint(0, 4, (5, 40), generator=gen)
        right = vote_pies(dense, pruned)
        assert check_pies(right, dense, pruned) is True
        # dropping a PIE whose votes are not tied must fail (a tied one counts either way)
        untied = [i for i in right if (dense[:, i].bincount() == dense[:, i].bincount().max()).sum() == 1
                  and (pruned[:, i].bincount() == pruned[:, i].bincount().max()).sum() == 1]
        if untied:
            assert check_pies([i for i in right if i != untied[0]], dense, pruned) is False


def test_pies_accept_either_choice_on_a_tied_vote(capsys):
    dense = torch.tensor([[1, 0], [2, 0]])   # image 0: 1 and 2 tie (smallest: 1)
    pruned = torch.tensor([[2, 0], [2, 0]])  # image 0: 2 -> a PIE under the smallest-label rule
    assert vote_pies(dense, pruned) == [0]
    assert check_pies([0], dense, pruned) is True
    assert check_pies([], dense, pruned) is True   # with the tie broken the other way, no PIE
    assert "1 images have a tied vote" in capsys.readouterr().out
    assert check_pies([1], dense, pruned) is False


@pytest.mark.parametrize("answer, words", [
    ([0, 2, 3], "modal labels agree"),
    ([1, 3, 4], "one dense and one pruned model"),
    ([1], "1 PIEs are missing"),
    ([1, 4, 0], "1 images are not PIEs"),
])
def test_pies_name_the_mistake(answer, words, capsys):
    assert check_pies(answer, DENSE_P, PRUNED_P) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and words in out


@pytest.mark.parametrize("answer, dense, pruned, error, words", [
    ([1], DENSE_P, PRUNED_P[:, :4], ValueError, "same images"),
    ([1], DENSE_P.float(), PRUNED_P, ValueError, "dense_predictions"),
    ([1], DENSE_P[0], PRUNED_P, ValueError, "dense_predictions"),
    ([1], DENSE_P, -PRUNED_P, ValueError, "pruned_predictions"),
    ([1], DENSE_P, "abc", TypeError, "pruned_predictions"),
    ([7], DENSE_P, PRUNED_P, ValueError, "answer"),
    ([True, False], DENSE_P, PRUNED_P, ValueError, "answer"),
    ([0.5], DENSE_P, PRUNED_P, ValueError, "answer"),
    ("1", DENSE_P, PRUNED_P, TypeError, "answer"),
])
def test_pies_refuse_bad_input_by_name(answer, dense, pruned, error, words):
    with pytest.raises(error, match=words):
        check_pies(answer, dense, pruned)
