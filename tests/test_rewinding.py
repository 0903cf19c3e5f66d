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


# -- every parameter's optimizer state, every model shape (issue 14) --------------------------------

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from pruning_utils.masks import magnitude_prune  # noqa: E402
from pruning_utils.rewinding import _SaveAtEpoch  # noqa: E402
from pruning_utils.training import build_optimizer, train  # noqa: E402


def _bare_linear():
    return nn.Linear(6, 3)  # the model is the layer: parameters "weight" and "bias", no prefix


def _mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _steps(model, optimizer, n, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    for _ in range(n):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("make_model", [_bare_linear, _mlp])
@pytest.mark.parametrize("masked_at_save", [False, True])
def test_rewind_restores_the_momentum_of_every_parameter(make_model, masked_at_save):
    torch.manual_seed(0)
    model = make_model()
    pruner = LRRewindPruner(model, 0.05, 1, total_epochs=2, profile=PROF, device="cpu")
    if masked_at_save:
        magnitude_prune(prunable_layers(model), 0.3)
    opt = build_optimizer(model, PROF, lr=0.05)  # SGD, momentum 0.9
    _steps(model, opt, 3, seed=0)
    pruner.save_rewind_point(opt)
    # keyed by the parameter objects themselves (a mask keeps the weight object as its "original")
    saved = {p: opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    _steps(model, opt, 3, seed=1)
    magnitude_prune(prunable_layers(model), 0.6)

    fresh_opt = build_optimizer(model, PROF, lr=0.05)  # what retrain builds
    pruner.rewind_weights(fresh_opt)
    params = list(model.parameters())
    assert len(params) == len(saved) == len(fresh_opt.state)
    for p in params:
        assert torch.equal(fresh_opt.state[p]["momentum_buffer"], saved[p])


def test_a_rewind_point_saved_on_a_masked_model_keeps_the_masks_of_now():
    torch.manual_seed(0)
    model = _mlp()
    pruner = LRRewindPruner(model, 0.05, 1, total_epochs=2, profile=PROF, device="cpu")
    magnitude_prune(prunable_layers(model), 0.3)
    pruner.save_rewind_point(build_optimizer(model, PROF))
    assert not any("parametrizations" in k for k in pruner.saved_state["weights"])
    loader = DataLoader(TensorDataset(torch.randn(8, 6), torch.randint(0, 3, (8,))), batch_size=4)
    pruner.prune_and_retrain(loader, "wr", 0.8, epochs=0)
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    assert sparsity(model) == round(0.8 * total) / total, "the masks saved at 30% must not come back"


def test_the_save_callback_refuses_a_train_call_on_another_model(loaders):
    model, other = SmallCNN(widths=(4, 4), input_size=8), SmallCNN(widths=(4, 4), input_size=8)
    pruner = LRRewindPruner(model, 0.05, 0, total_epochs=2, profile=PROF, device="cpu")
    with pytest.raises(ValueError, match=r"_SaveAtEpoch was built for a different model than the one train\(\) is training"):
        train(other, loaders.train, epochs=1, profile=PROF, callbacks=[_SaveAtEpoch(pruner, 0)], progress=False)
    assert pruner.saved_state is None


def test_optimizers_and_other_arguments_are_checked(dense, loaders):
    p = fresh(dense)
    foreign = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    for call in (p.save_rewind_point, p.rewind_learning_rate, p.rewind_weights):
        with pytest.raises(ValueError, match="optimizer updates none of the parameters of model"):
            call(foreign)
        with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer; got str"):
            call("sgd")
    with pytest.raises(TypeError, match="epoch must be an int >= 0; got '1'"):
        p.lr_at("1")
    with pytest.raises(ValueError, match="epoch must be an int >= 0; got -1"):
        p.lr_at(-1)
    with pytest.raises(TypeError, match="progress must be True or False"):
        LRRewindPruner(SmallCNN(widths=(4, 4), input_size=8), rewind_epoch=1, profile=PROF, progress="no")
    weights = {k: v.clone() for k, v in p.model.state_dict().items()}
    with pytest.raises(TypeError, match="iterative must be True or False"):
        p.prune_and_retrain(loaders.train, "lrr", 0.5, iterative="yes")
    with pytest.raises(TypeError, match="epochs must be an int >= 0"):
        p.prune_and_retrain(loaders.train, "lrr", 0.5, epochs=float("nan"))
    with pytest.raises(TypeError, match="train_loader must be an iterable of"):
        p.prune_and_retrain(None, "lrr", 0.5)
    with pytest.raises(TypeError, match="eval_loader must be re-iterable"):
        p.prune_and_retrain(loaders.train, "lrr", 0.5, eval_loader=iter(loaders.val))
    assert p.model.state_dict().keys() == weights.keys(), "refused before pruning"
