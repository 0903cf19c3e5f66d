"""Notebook 06's exercise checker: right answers pass, typical wrong ones fail with their hint, bad input is refused."""

import pytest

from pruning_utils import LRRewindPruner, build_model_for, get_profile
from pruning_utils.exercises import check_rewind_lr


@pytest.mark.parametrize("epoch", [0, 5, 9, 10, 14, 15, 19])
def test_rewind_lr_matches_the_pruner_schedule(epoch, capsys):
    """The LR the package's rewinding pruner replays from ``epoch`` is accepted."""
    prof = get_profile("quick")
    pruner = LRRewindPruner(build_model_for(prof), initial_lr=prof.lr, rewind_epoch=epoch, profile=prof)
    assert check_rewind_lr(pruner.lr_at(epoch), epoch, "quick") is True
    assert capsys.readouterr().out.startswith("right:")


def test_rewind_lr_by_hand(capsys):
    """quick: 20 epochs, LR 0.05, x0.1 at epochs 10 and 15."""
    assert check_rewind_lr(0.05, 9, "quick") and check_rewind_lr(0.005, 10, "quick")
    assert check_rewind_lr(0.0005, 15, "quick")
    assert not check_rewind_lr(0.005, 9, "quick")
    capsys.readouterr()


@pytest.mark.parametrize("wrong, hint", [(0.05, "epoch 0"), (0.0005, "final LR"), (0.01, "is not it")])
def test_rewind_lr_wrong(wrong, hint, capsys):
    assert check_rewind_lr(wrong, 10, "quick") is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and hint in out


@pytest.mark.parametrize("args, error, word", [
    (("0.005", 10), TypeError, "answer"),
    ((0.0, 10), ValueError, "answer"),
    ((0.005, 20), ValueError, "rewind_epoch"),
    ((0.005, -1), ValueError, "rewind_epoch"),
    ((0.005, 10.0), TypeError, "rewind_epoch"),
])
def test_rewind_lr_bad_input(args, error, word):
    with pytest.raises(error, match=word):
        check_rewind_lr(*args, profile="quick")


def test_rewind_lr_bad_profile():
    with pytest.raises((ValueError, TypeError), match="profile|quick"):
        check_rewind_lr(0.005, 10, "no-such-profile")
