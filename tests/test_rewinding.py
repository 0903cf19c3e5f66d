import copy

import pytest
import torch

from pruning_utils.config import get_profile, seed_everything
from pruning_utils.masks import get_mask, prunable_layers, sparsity
from pruning_utils.models import SmallCNN
from pruning_utils.rewinding import LRRewindPruner, iterative_targets
from pruning_utils.training import lr_schedule

# T = 6 epochs, LR x0.1 at epochs 3 and 4 (milestones 0.5, 0.75); rewind point T - t = 2.
PROF = get_profile("quick").replace(epochs=6, lr=0.05)
T, REWIND = 6, 2


@pytest.fixture(scope="module")
def dense(loaders):
    seed_everything(0)
    model = SmallCNN(widths=(8, 16), input_size=8)
    pruner = LRRewindPruner(model, initial_lr=0.05, rewind_epoch=REWIND, profile=PROF, device="cpu")
    history = pruner.train_dense(loaders.train)
    return pruner, history


def fresh(dense):
    """A copy of the trained pruner (model and rewind point) for one experiment."""
    pruner, _ = dense
    clone = copy.copy(pruner)
    clone.model = copy.deepcopy(pruner.model)
    clone.layers = prunable_layers(clone.model)
    return clone


def test_dense_training_follows_the_schedule_and_saves_the_rewind_point(dense):
    pruner, history = dense
    assert history["lr"] == pytest.approx(lr_schedule(PROF, epochs=T, lr=0.05))
    assert pruner.saved_state["epoch"] == REWIND
    assert pruner.saved_state["lr"] == pytest.approx(lr_schedule(PROF, epochs=T, lr=0.05)[REWIND])
    # the rewind weights differ from the final ones: training went on after the rewind point
    final = pruner.model.state_dict()
    assert any(not torch.equal(final[k], v) for k, v in pruner.saved_state["weights"].items())
    assert pruner.saved_state["optimizer"], "momentum buffers are part of the rewind point"


def test_lrr_replays_the_schedule_from_T_minus_t(dense, loaders):
    p = fresh(dense)
    records = p.prune_and_retrain(loaders.train, "lrr", 0.5)
    full = lr_schedule(PROF, epochs=T, lr=0.05)
    t = T - REWIND
    assert records[0]["lrs"] == pytest.approx([full[T - t + i] for i in range(t)])


def test_ft_uses_the_final_learning_rate(dense, loaders):
    p = fresh(dense)
    records = p.prune_and_retrain(loaders.train, "ft", 0.5)
    final = lr_schedule(PROF, epochs=T, lr=0.05)[-1]
    assert records[0]["lrs"] == pytest.approx([final] * (T - REWIND))


def test_wr_restores_saved_weights_for_survivors_and_zero_for_pruned(dense, loaders):
    p = fresh(dense)
    saved = p.saved_state["weights"]
    records = p.prune_and_retrain(loaders.train, "wr", 0.7, epochs=0)
    assert records[0]["lrs"] == []
    for name, m in prunable_layers(p.model):
        mask = get_mask(m)
        expected = saved[f"{name}.weight"] * mask
        assert torch.equal(m.weight, expected), name
    # non-prunable tensors (BatchNorm) are rewound too
    assert torch.equal(p.model.bn1.weight, saved["bn1.weight"])
    assert torch.equal(p.model.bn1.running_mean, saved["bn1.running_mean"])


def test_wr_restores_momentum_by_parameter_name(dense, loaders):
    p = fresh(dense)
    p.prune_and_retrain(loaders.train, "wr", 0.5, epochs=0)
    opt = torch.optim.SGD(p.model.parameters(), lr=0.1, momentum=0.9)
    from pruning_utils.rewinding import _load_state_by_name

    _load_state_by_name(p.model, opt, p.saved_state["optimizer"])
    original = p.model.fc.parametrizations.weight.original
    assert torch.equal(opt.state[original]["momentum_buffer"], p.saved_state["optimizer"]["fc.weight"]["momentum_buffer"])


@pytest.mark.parametrize("mode", ["ft", "lrr", "wr"])
def test_masks_hold_while_retraining_in_every_mode(dense, loaders, mode):
    p = fresh(dense)
    records = p.prune_and_retrain(loaders.train, mode, 0.8, eval_loader=loaders.val)
    assert sparsity(p.model) == pytest.approx(0.8, abs=1e-3)
    assert records[0]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert 0 <= records[0]["acc_after_retrain"] <= 1


def test_iterative_rounds_prune_20_percent_of_the_survivors(dense, loaders):
    targets = iterative_targets(0.6)
    assert targets[:3] == pytest.approx([0.2, 0.36, 0.488]) and targets[-1] == 0.6
    p = fresh(dense)
    records = p.prune_and_retrain(loaders.train, "lrr", 0.6, iterative=True, epochs=1)
    assert [r["sparsity"] for r in records] == pytest.approx(targets, abs=1e-3)


def test_rewind_learning_rate_sets_the_saved_lr(dense):
    pruner, _ = dense
    opt = torch.optim.SGD(pruner.model.parameters(), lr=123.0)
    assert pruner.rewind_learning_rate(opt) == pruner.saved_state["lr"]
    assert all(g["lr"] == pruner.saved_state["lr"] for g in opt.param_groups)


def test_bad_input(dense, loaders):
    model = SmallCNN(widths=(4, 4), input_size=8)
    with pytest.raises(ValueError, match=r"rewind_epoch must be an int in \[0, 6\)"):
        LRRewindPruner(model, rewind_epoch=6, profile=PROF)
    with pytest.raises(ValueError, match="initial_lr"):
        LRRewindPruner(model, initial_lr=0, rewind_epoch=1, profile=PROF)
    with pytest.raises(RuntimeError, match="no rewind point"):
        LRRewindPruner(model, rewind_epoch=1, profile=PROF).rewind_learning_rate(torch.optim.SGD(model.parameters(), lr=1))
    p = fresh(dense)
    with pytest.raises(ValueError, match="mode must be one of"):
        p.prune_and_retrain(loaders.train, "rewind", 0.5)
    with pytest.raises(ValueError, match="target_sparsity"):
        p.prune_and_retrain(loaders.train, "lrr", 1.0)
