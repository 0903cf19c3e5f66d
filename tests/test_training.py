import functools
import pytest
import torch

from pruning_utils.config import CheckpointError, get_profile, seed_everything
from pruning_utils.data import get_loaders
from pruning_utils.models import SmallCNN
from pruning_utils.training import (
    Callback,
    baseline_path,
    build_model_for,
    build_optimizer,
    build_scheduler,
    evaluate,
    final_lr,
    fine_tune,
    finetune_lr,
    recalibrate_batchnorm,
    train,
    train_baseline,
)

TINY = get_profile("quick").replace(
    epochs=3, model_kwargs={"in_channels": 1, "num_classes": 10, "widths": (8, 16), "input_size": 8}
)


def fresh_model(seed=0):
    seed_everything(seed)
    return build_model_for(TINY)


def test_training_improves_accuracy_on_digits(loaders):
    model = fresh_model()
    before = evaluate(model, loaders.val)["accuracy"]
    history = train(model, loaders.train, profile=TINY, val_loader=loaders.val, progress=False)
    after = evaluate(model, loaders.val)
    assert before < 0.3 < 0.85 < after["accuracy"]
    assert history["val_acc"][-1] == pytest.approx(after["accuracy"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["epoch"] == [1, 2, 3] and len(history["lr"]) == 3


def test_two_seeded_runs_give_identical_weights(loaders):
    def run():
        seed_everything(0)
        model = build_model_for(TINY)
        train(model, get_loaders("quick").train, profile=TINY, progress=False)
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_counts_correct_predictions_by_hand(loaders):
    model = fresh_model()
    model.eval()
    with torch.no_grad():
        x, y = loaders.test.dataset.tensors
        expected = (model(x).argmax(1) == y).float().mean().item()
        expected_loss = torch.nn.functional.cross_entropy(model(x), y).item()
    model.train()
    result = evaluate(model, loaders.test)
    assert result["accuracy"] == pytest.approx(expected)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert model.training, "evaluate must restore the model's train mode"


def test_callbacks_see_every_step_and_epoch(loaders):
    steps, epochs, began = [], [], []

    class Recorder(Callback):
        def on_train_begin(self, state):
            began.append(state.step)

        def on_epoch_end(self, state):
            epochs.append(state.epoch)

    train(fresh_model(), loaders.train, profile=TINY, epochs=2, progress=False,
          callbacks=[Recorder(), lambda state: steps.append(state.step)])
    assert began == [0]
    assert steps == list(range(1, 2 * len(loaders.train) + 1))
    assert epochs == [0, 1]


def test_profile_schedule_steps_the_learning_rate(loaders):
    prof = TINY.replace(epochs=4, lr=0.1)
    history = train(fresh_model(), loaders.train, profile=prof, progress=False)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_custom_loss_is_used(loaders):
    calls = []

    def loss_fn(outputs, targets, inputs):
        calls.append(inputs.shape[0])
        return torch.nn.functional.cross_entropy(outputs, targets)

    train(fresh_model(), loaders.train, profile=TINY, epochs=1, loss_fn=loss_fn, progress=False)
    assert sum(calls) == len(loaders.train.dataset)


def test_build_scheduler_milestones():
    opt = build_optimizer(fresh_model(), TINY)
    sched = build_scheduler(opt, get_profile("full"), epochs=182)
    assert sorted(sched.milestones) == [91, 136]  # Renda et al.'s ResNet-56 schedule


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"epochs": -1}, ValueError, "epochs must be an int >= 0; got -1"),
        ({"epochs": 1.5}, TypeError, r"epochs must be an int >= 0; got 1.5 \(float\)"),
        ({"callbacks": [42]}, TypeError, "callbacks"),
    ],
)
def test_train_rejects_bad_arguments(loaders, kwargs, error, message):
    with pytest.raises(error, match=message):
        train(fresh_model(), loaders.train, profile=TINY, progress=False, **kwargs)


def test_empty_loader_is_refused():
    with pytest.raises(ValueError, match="train_loader is empty"):
        train(fresh_model(), [], profile=TINY, progress=False)
    with pytest.raises(ValueError, match="loader is empty"):
        evaluate(fresh_model(), [])


def test_baseline_is_trained_once_then_loaded_from_cache():
    first = train_baseline(TINY, progress=False)
    assert first.trained_now and first.checkpoint.exists()
    assert first.checkpoint == baseline_path(TINY)
    second = train_baseline(TINY, progress=False)
    assert not second.trained_now
    assert not first.model.training and not second.model.training  # eval mode, trained now or loaded
    assert second.model is not first.model  # a fresh copy the caller may prune
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)
    assert second.test_accuracy == first.test_accuracy
    assert second.history == first.history
    # another profile gets another checkpoint; what only the notebooks read does not retrain it
    assert baseline_path(TINY.replace(epochs=4)) != baseline_path(TINY)
    assert baseline_path(TINY.replace(precision="bf16")) != baseline_path(TINY)
    assert baseline_path(TINY.replace(budgets={"seeds": 7}, check_claims=False)) == baseline_path(TINY)


def test_damaged_baseline_checkpoint_gives_a_clear_error():
    path = baseline_path(TINY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=path.name):
        train_baseline(TINY, progress=False)
    fixed = train_baseline(TINY, retrain=True, progress=False)
    assert fixed.trained_now


def test_quick_baseline_reaches_95_percent():
    # The course's promise for notebook 00: >= 95% test accuracy on digits.
    result = train_baseline("quick", progress=False)
    assert isinstance(result.model, SmallCNN)
    assert result.test_accuracy >= 0.95


# --- inputs checked where they enter (issue 14) --------------------------------------------------

import inspect  # noqa: E402
import random  # noqa: E402

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


def few_batches(n=32, batch_size=8, channels=1, seed=0):
    """A small random loader shaped like the digits (4 batches)."""
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, channels, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size)


def trained_weights(loss_fn=None, epochs=1):
    model = fresh_model()
    history = train(model, few_batches(), profile=TINY, epochs=epochs, loss_fn=loss_fn, progress=False, device="cpu")
    return model.state_dict(), history


def ce(outputs, targets):
    return torch.nn.functional.cross_entropy(outputs, targets)


def test_loss_convention_is_read_from_the_signature_two_or_three_arguments():
    from pruning_utils.training import fine_tune

    # 2 arguments (outputs, targets), as nn.CrossEntropyLoss(): the same run as the default loss
    reference, ref_history = trained_weights()
    for loss_fn in (nn.CrossEntropyLoss(), torch.nn.functional.cross_entropy, ce):
        weights, history = trained_weights(loss_fn)
        assert all(torch.equal(reference[k], weights[k]) for k in reference), loss_fn
        assert history["train_loss"] == ref_history["train_loss"]
    model, loader = fresh_model(), few_batches()
    assert evaluate(model, loader, loss_fn=nn.CrossEntropyLoss()) == evaluate(model, loader)
    a, b = fresh_model(), fresh_model()
    fine_tune(a, loader, epochs=1, profile=TINY, device="cpu", progress=False)
    fine_tune(b, loader, epochs=1, profile=TINY, device="cpu", progress=False, loss_fn=nn.CrossEntropyLoss())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    # 3 arguments (outputs, targets, inputs), the course's form: the inputs arrive
    seen = {}

    def with_inputs(outputs, targets, inputs):
        seen["inputs"] = inputs.shape
        return ce(outputs, targets)

    def varargs(*args):
        seen["n"] = len(args)
        return ce(args[0], args[1])

    class ModuleLoss(nn.Module):  # an nn.Module's convention is read from its forward
        def forward(self, outputs, targets, inputs):
            seen["module"] = inputs.shape
            return ce(outputs, targets)

    def defaulted(outputs, targets, inputs=None):  # a default does not stop the inputs from arriving
        seen["defaulted"] = None if inputs is None else inputs.shape
        return ce(outputs, targets)

    for loss_fn in (with_inputs, varargs, ModuleLoss(), defaulted):
        train(fresh_model(), few_batches(), profile=TINY, epochs=1, loss_fn=loss_fn, progress=False, device="cpu")
    assert seen == {"inputs": (8, 1, 8, 8), "n": 3, "module": (8, 1, 8, 8), "defaulted": (8, 1, 8, 8)}
    # torch's own losses take (outputs, targets): F.cross_entropy's third parameter is a class weight
    smoothed = functools.partial(torch.nn.functional.cross_entropy, label_smoothing=0.1)
    model, loader = fresh_model(), few_batches()
    x, y = next(iter(loader))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model.eval()(x), y, label_smoothing=0.1).item()
    assert evaluate(model, [(x, y)], loss_fn=smoothed)["loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss_fn, error", [
    ("cross_entropy", TypeError),
    (lambda outputs: outputs.sum(), TypeError),
    (lambda outputs, targets, inputs, extra: outputs.sum(), TypeError),
    (lambda outputs, targets, *, weight: outputs.sum(), TypeError),
])
def test_a_loss_of_another_convention_is_refused_before_training(loss_fn, error):
    model = fresh_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=r"loss_fn must be a callable loss_fn\(outputs, targets\)"):
        train(model, few_batches(), profile=TINY, epochs=1, loss_fn=loss_fn, progress=False, device="cpu")
    with pytest.raises(error, match=r"loss_fn must be a callable"):
        evaluate(model, few_batches(), loss_fn=loss_fn)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_loss_must_be_a_finite_scalar_tensor():
    kw = dict(profile=TINY, epochs=1, progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor .*got a tensor of shape \(8,\)"):
        train(fresh_model(), few_batches(), loss_fn=nn.CrossEntropyLoss(reduction="none"), **kw)
    with pytest.raises(TypeError, match="loss_fn must return a scalar tensor; got float"):
        train(fresh_model(), few_batches(), loss_fn=lambda out, y: 1.0, **kw)
    nan_inputs = [(torch.full((4, 1, 8, 8), float("nan")), torch.zeros(4, dtype=torch.long))]
    model = fresh_model()
    before = {k: v.clone() for k, v in model.named_parameters()}
    with pytest.raises(ValueError, match="training loss is nan at epoch 1, step 1"):
        train(model, nan_inputs, **kw)
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters()), "no NaN step was taken"


def test_optimizer_and_scheduler_must_belong_to_the_trained_model():
    kw = dict(profile=TINY, epochs=1, progress=False, device="cpu")
    model, other = fresh_model(0), fresh_model(1)
    foreign = build_optimizer(other, TINY)
    with pytest.raises(ValueError, match="optimizer updates none of the parameters of model .*different model"):
        train(model, few_batches(), optimizer=foreign, **kw)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer; got str"):
        train(model, few_batches(), optimizer="sgd", **kw)
    own = build_optimizer(model, TINY)
    with pytest.raises(ValueError, match="scheduler was built for a different optimizer"):
        train(model, few_batches(), optimizer=own, scheduler=build_scheduler(foreign, TINY, epochs=1), **kw)
    with pytest.raises(TypeError, match="scheduler must be an LR scheduler"):
        train(model, few_batches(), optimizer=own, scheduler="step", **kw)
    # an optimizer over part of the model (a frozen body) is fine: only that part moves
    head_only = torch.optim.SGD(model.fc.parameters(), lr=0.1)
    conv = model.conv1.weight.clone()
    train(model, few_batches(), optimizer=head_only, **kw)
    assert torch.equal(model.conv1.weight, conv)


@pytest.mark.parametrize("loader, error, message", [
    ([(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 0)], ValueError,
     r"train_loader must yield \(inputs, targets\) pairs; got a tuple of length 3"),
    ([torch.zeros(2, 1, 8, 8)], ValueError, r"train_loader must yield \(inputs, targets\) pairs; got Tensor"),
    ([([0.0] * 64, [1])], TypeError, r"pairs of tensors; got \(list, list\)"),
    ([(torch.zeros(8, 1, 8, 8), torch.zeros(4, dtype=torch.long))], ValueError,
     r"train_loader yields inputs of shape \(8, 1, 8, 8\) with targets of shape \(4,\)"),
    (few_batches(channels=3), ValueError, r"a batch of train_loader with inputs of shape \(8, 3, 8, 8\) does not fit model SmallCNN"),
    ((b for b in few_batches()), TypeError, "train_loader must be re-iterable"),
    (torch.zeros(4, 1, 8, 8), TypeError, "train_loader must be an iterable of"),
    ([(torch.zeros(4, 1, 8, 8), torch.zeros(4))], TypeError, "train_loader yields targets of dtype torch.float32"),
    ([(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 10, 2]))], ValueError,
     r"train_loader yields targets outside \[0, 10\) \(the model predicts 10 classes\): min 0, max 10"),
])
def test_bad_batches_name_the_loader(loader, error, message):
    with pytest.raises(error, match=message):
        train(fresh_model(), loader, profile=TINY, epochs=2, progress=False, device="cpu")


def test_evaluate_checks_its_loader_and_reads_a_generator_once():
    model = fresh_model()
    with pytest.raises(ValueError, match=r"a batch of loader with inputs of shape \(8, 3, 8, 8\)"):
        evaluate(model, few_batches(channels=3))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got str"):
        evaluate("model", few_batches())
    assert evaluate(model, (b for b in few_batches())) == evaluate(model, few_batches())


def test_model_outputs_must_be_logits_per_sample():
    flat = nn.Sequential(nn.Flatten(0), nn.Linear(8 * 64, 10))  # mixes the batch: one row of logits
    with pytest.raises(ValueError, match=r"model must return logits of shape \(batch, classes\) = \(8, classes\)"):
        train(flat, few_batches(), profile=TINY, epochs=1, progress=False, device="cpu")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"progress": "yes"}, TypeError, "progress must be True or False; got 'yes'"),
    ({"desc": 5}, TypeError, "desc must be a"),
    ({"callbacks": "cb"}, TypeError, "callbacks must be a Callback, a function of TrainState, or a list of them; got 'cb'"),
])
def test_train_rejects_more_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        train(fresh_model(), few_batches(), profile=TINY, **{"progress": False, **kwargs})


def test_helpers_reject_bad_arguments():
    from pruning_utils.training import fine_tune, lr_schedule

    for call in (lambda: train("model", few_batches(), profile=TINY, progress=False), lambda: build_optimizer("model")):
        with pytest.raises(TypeError, match="model must be a torch.nn.Module; got str"):
            call()
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer; got str"):
        build_scheduler("opt", epochs=3)
    opt = build_optimizer(fresh_model(), TINY)
    for epochs in (0, -1):
        with pytest.raises(ValueError, match=f"epochs must be an int >= 1; got {epochs}"):
            build_scheduler(opt, TINY, epochs=epochs)
        with pytest.raises(ValueError, match=f"epochs must be an int >= 1; got {epochs}"):
            lr_schedule(TINY, epochs=epochs)
    with pytest.raises(TypeError, match="epochs must be an int >= 1; got 2.5"):
        lr_schedule(TINY, epochs=2.5)
    for lr in (float("nan"), -1.0, 0.0):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            lr_schedule(TINY, epochs=3, lr=lr)
    with pytest.raises(TypeError, match="fine_tune builds its own optimizer"):
        fine_tune(fresh_model(), few_batches(), epochs=1, optimizer=opt, progress=False)
    with pytest.raises(TypeError, match="retrain must be True or False; got 'yes'"):
        train_baseline(TINY, retrain="yes", progress=False)
    with pytest.raises(TypeError, match="progress must be True or False; got 'no'"):
        train_baseline(TINY, progress="no")
    assert not baseline_path(TINY).exists(), "a refused call trains nothing"


def rng_draws():
    return torch.rand(3), np.random.rand(), random.random()


def test_baseline_leaves_the_global_rng_as_a_fresh_seed_cached_or_not():
    prof = TINY.replace(epochs=1, seed=3)
    seed_everything(prof.seed)
    expected = rng_draws()  # what a fresh seed_everything(seed) hands out next

    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    first = train_baseline(prof, progress=False, device="cpu")
    after_training = rng_draws()
    torch.manual_seed(22), np.random.seed(22), random.seed(22)  # a different state before the cached call
    second = train_baseline(prof, progress=False, device="cpu")
    after_loading = rng_draws()

    assert first.trained_now and not second.trained_now
    for got in (after_training, after_loading):
        assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and got[2] == expected[2]
    assert "seed_everything(profile.seed)" in inspect.getdoc(train_baseline)


def test_a_bad_validation_batch_is_named_val_loader():
    bad_val = [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))]  # 3 channels: does not fit the model
    with pytest.raises(ValueError, match="val_loader"):
        train(fresh_model(), few_batches(), profile=TINY, epochs=1, val_loader=bad_val, progress=False, device="cpu")


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int16])
def test_integer_targets_of_any_width_train_like_int64_ones(dtype):
    data = [(x, y) for x, y in few_batches()]
    narrow = [(x, y.to(dtype)) for x, y in data]
    a, b = fresh_model(), fresh_model()
    train(a, data, profile=TINY, epochs=1, progress=False, device="cpu")
    train(b, narrow, profile=TINY, epochs=1, progress=False, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert evaluate(b, narrow) == evaluate(b, data)


# ---- the one fine-tuning recipe --------------------------------------------------------------------


def test_fine_tune_trains_at_the_course_recipe_rate_ten_times_the_final_lr(loaders):
    prof = get_profile("quick")
    # quick: lr 0.05, two milestones, gamma 0.1 -> final 0.0005, recipe 0.005 (by hand)
    assert final_lr(prof) == pytest.approx(0.0005) and finetune_lr(prof) == pytest.approx(0.005)
    assert finetune_lr(prof.replace(lr=0.2)) == pytest.approx(0.02)
    seen = []
    fine_tune(fresh_model(), loaders.train, epochs=1, profile=prof, progress=False,
              callbacks=[lambda state: seen.append(state.optimizer.param_groups[0]["lr"])])
    assert seen and all(lr == pytest.approx(0.005) for lr in seen)


# ---- BatchNorm recalibration -----------------------------------------------------------------------


class _ConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3, momentum=0.3)
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).mean(dim=(2, 3)))


def _batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 1, 6, 6, generator=g) * (i + 1), torch.randint(0, 2, (4,), generator=g)) for i in range(n)]


def test_recalibrate_batchnorm_gives_the_plain_average_of_the_batch_statistics():
    torch.manual_seed(0)
    model = _ConvBN().eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    batches = _batches(5)
    with torch.no_grad():  # by hand: the mean of the per-batch means and of the unbiased per-batch variances
        outs = [model.conv(x) for x, _ in batches]
        mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
        var = torch.stack([o.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for o in outs]).mean(0)
    assert recalibrate_batchnorm(model, batches, batches=None) is model
    torch.testing.assert_close(model.bn.running_mean, mean)
    torch.testing.assert_close(model.bn.running_var, var)
    assert not model.training and model.bn.momentum == 0.3  # mode and momentum put back
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())  # no weight changed
    recalibrate_batchnorm(model, batches, batches=2)  # only the first two batches
    with torch.no_grad():
        torch.testing.assert_close(model.bn.running_mean, torch.stack([o.mean(dim=(0, 2, 3)) for o in outs[:2]]).mean(0))


def test_recalibrate_batchnorm_repairs_statistics_a_pruning_made_stale(loaders):
    from pruning_utils import SimplePruner

    model = train_baseline(TINY, progress=False).model
    calibration = [next(iter(loaders.train)) for _ in range(3)]
    rng = torch.Generator().manual_seed(0)
    for _, layer in SimplePruner(model, 0.5, verbose=False).layers:  # a random mask shifts every layer's output
        from pruning_utils import apply_mask
        apply_mask(layer, torch.rand(layer.weight.shape, generator=rng) >= 0.5)
    stale = evaluate(model, loaders.test)["loss"]
    recalibrate_batchnorm(model, calibration)
    assert evaluate(model, loaders.test)["loss"] < stale


def test_recalibrate_batchnorm_refuses_bad_input_and_changes_nothing_on_failure():
    with pytest.raises(ValueError, match="model has no BatchNorm"):
        recalibrate_batchnorm(torch.nn.Linear(3, 2), [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))])
    model = _ConvBN()
    with pytest.raises(TypeError, match="loader must be an iterable"):
        recalibrate_batchnorm(model, torch.randn(3))
    with pytest.raises((TypeError, ValueError), match="batches must be"):
        recalibrate_batchnorm(model, _batches(2), batches=0)
    with pytest.raises(ValueError, match="track running statistics"):
        recalibrate_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(3, track_running_stats=False)),
                              [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = _batches(2) + [(torch.randn(4, 2, 6, 6), torch.zeros(4, dtype=torch.long))]  # third batch: wrong channels
    with pytest.raises((RuntimeError, ValueError)):
        recalibrate_batchnorm(model, bad, batches=None)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # all or nothing
    assert model.bn.momentum == 0.3 and model.training


def test_baseline_trains_under_the_profiles_thread_count_whoever_calls(monkeypatch):
    """The cached baseline must not depend on the caller's torch thread count (a notebook's first cell
    sets the profile's, a script may not): train_baseline trains under the profile's own, then restores."""
    import pruning_utils.training as training

    seen = []
    real_train = training.train

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        profile = TINY.replace(epochs=1, num_threads=1)
        train_baseline(profile, retrain=True, progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
