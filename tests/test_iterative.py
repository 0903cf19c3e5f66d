import copy

import pytest
import torch

from pruning_utils.config import get_profile, seed_everything
from pruning_utils.iterative import IterativePruner, per_iteration_rate, sparsity_schedule
from pruning_utils.masks import get_mask, is_masked, prunable_layers, sparsity
from pruning_utils.models import SmallCNN
from pruning_utils.training import train

TINY = get_profile("quick").replace(epochs=2, finetune_epochs=1)


@pytest.fixture(scope="module")
def trained(loaders):
    seed_everything(0)
    model = SmallCNN(widths=(8, 16), input_size=8)
    train(model, loaders.train, profile=TINY, progress=False)
    return model


@pytest.mark.parametrize("target, n", [(0.9, 1), (0.9, 4), (0.95, 7), (0.5, 3)])
def test_per_iteration_rate_compounds_to_the_target(target, n):
    rate = per_iteration_rate(target, n)
    assert 1 - (1 - rate) ** n == pytest.approx(target)
    steps = sparsity_schedule(target, n)
    assert len(steps) == n and steps[-1] == target
    assert all(a < b for a, b in zip(steps, steps[1:]))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_iterative_prune_reaches_the_target_and_records_history(loaders, trained, scope):
    model = copy.deepcopy(trained)
    pruner = IterativePruner(model, loaders.train, loaders.val, device="cpu", scope=scope, profile=TINY)
    out = pruner.iterative_prune(target_sparsity=0.9, num_iterations=3, fine_tune_epochs=1, permanent=False)
    assert out is model
    layers = prunable_layers(model)
    if scope == "global":
        total = sum(m.weight.numel() for _, m in layers)
        assert abs(sparsity(model) * total - round(0.9 * total)) < 1
    else:
        for name, m in layers:
            assert abs(int((m.weight == 0).sum()) - round(0.9 * m.weight.numel())) <= 1, name
    h = pruner.history
    assert [r["iteration"] for r in h] == [1, 2, 3]
    sp = [r["sparsity"] for r in h]
    assert sp == sorted(sp) and sp[-1] == pytest.approx(0.9, abs=1e-3)
    assert all(0 <= r["acc_after_prune"] <= 1 and 0 <= r["acc_after_finetune"] <= 1 for r in h)
    assert pruner.initial_accuracy is not None


def test_masks_hold_through_fine_tuning_and_earlier_zeros_stay(loaders, trained):
    model = copy.deepcopy(trained)
    pruner = IterativePruner(model, loaders.train, loaders.val, device="cpu", profile=TINY)
    pruner.iterative_prune(0.5, 1, 0, permanent=False)
    first = {n: get_mask(m).clone() for n, m in prunable_layers(model)}
    pruner.fine_tune(2, learning_rate=0.05)
    for name, m in prunable_layers(model):
        assert torch.all(m.weight[first[name] == 0] == 0)
    pruner.iterative_prune(0.8, 2, 1, permanent=True)
    for name, m in prunable_layers(model):
        assert not is_masked(m)
        assert torch.all(m.weight[first[name] == 0] == 0), "an earlier zero came back"


def test_permanent_by_default(loaders, trained):
    model = copy.deepcopy(trained)
    IterativePruner(model, loaders.train, loaders.val, device="cpu", profile=TINY).iterative_prune(0.6, 2, 0)
    assert not any(is_masked(m) for _, m in prunable_layers(model))
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    assert round(sparsity(model) * total) == round(0.6 * total)


@pytest.mark.parametrize(
    "args, message",
    [
        ((1.0, 2, 1), r"target_sparsity must be in \[0, 1\)"),
        ((-0.1, 2, 1), "target_sparsity"),
        ((0.5, 0, 1), "num_iterations must be an int >= 1"),
        ((0.5, 2, -1), "fine_tune_epochs must be an int >= 0"),
    ],
)
def test_bad_input(loaders, trained, args, message):
    model = copy.deepcopy(trained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = IterativePruner(model, loaders.train, loaders.val, device="cpu", profile=TINY)
    with pytest.raises(ValueError, match=message):
        pruner.iterative_prune(*args)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_empty_loaders_and_bad_scope_are_refused(loaders, trained):
    with pytest.raises(ValueError, match="train_loader is empty"):
        IterativePruner(trained, [], loaders.val)
    with pytest.raises(ValueError, match="val_loader is empty"):
        IterativePruner(trained, loaders.train, [])
    with pytest.raises(ValueError, match="scope must be"):
        IterativePruner(trained, loaders.train, loaders.val, scope="row")


def test_device_defaults_to_the_best_available(loaders, trained):
    pruner = IterativePruner(copy.deepcopy(trained), loaders.train, loaders.val)
    assert pruner.device.type in ("cpu", "cuda", "mps")


# -- inputs checked where they enter (issue 14) ---------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(learning_rate=-1.0), ValueError, "learning_rate must be a finite number > 0; got -1.0"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate must be a finite number > 0; got nan"),
    (dict(permanent="yes"), TypeError, "permanent must be True or False; got 'yes'"),
])
def test_bad_arguments_are_refused_before_the_model_is_pruned(loaders, trained, kwargs, error, message):
    model = copy.deepcopy(trained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = IterativePruner(model, loaders.train, loaders.val, device="cpu", profile=TINY)
    with pytest.raises(error, match=message):
        pruner.iterative_prune(0.5, 2, 1, **kwargs)
    assert model.state_dict().keys() == before.keys() and not any(is_masked(m) for _, m in prunable_layers(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fine_tune_names_its_learning_rate(loaders, trained):
    pruner = IterativePruner(copy.deepcopy(trained), loaders.train, loaders.val, device="cpu", profile=TINY)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0; got nan"):
        pruner.fine_tune(1, float("nan"))


@pytest.mark.parametrize("which, loader, error, message", [
    ("train_loader", 5, TypeError, "train_loader must be an iterable of"),
    ("train_loader", None, TypeError, "train_loader must be an iterable of .*got None"),
    ("val_loader", "digits", TypeError, "val_loader must be an iterable of"),
    ("val_loader", [(torch.zeros(2, 1, 8, 8),)], ValueError,
     r"val_loader must yield \(inputs, targets\) pairs; got a tuple of length 1"),
    ("val_loader", (b for b in [(torch.zeros(1, 1, 8, 8), torch.zeros(1).long())]), TypeError,
     "val_loader must be re-iterable"),
])
def test_loaders_must_be_reiterable_batches(loaders, trained, which, loader, error, message):
    args = {"train_loader": loaders.train, "val_loader": loaders.val, which: loader}
    with pytest.raises(error, match=message):
        IterativePruner(trained, args["train_loader"], args["val_loader"])


def test_model_and_progress_are_checked(loaders, trained):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got str"):
        IterativePruner("model", loaders.train, loaders.val)
    with pytest.raises(TypeError, match="progress must be True or False; got 'no'"):
        IterativePruner(trained, loaders.train, loaders.val, progress="no")
