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
    assert second.model is not first.model  # a fresh copy the caller may prune
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)
    assert second.test_accuracy == first.test_accuracy
    assert second.history == first.history
    # another profile gets another checkpoint
    assert baseline_path(TINY.replace(epochs=4)) != baseline_path(TINY)


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
