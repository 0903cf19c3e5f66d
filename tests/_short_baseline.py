"""A quick baseline trained for 3 epochs instead of 20 (speed), cached where train_baseline looks for it."""

import pytest

from pruning_utils.config import save_checkpoint, seed_everything
from pruning_utils.data import get_loaders
from pruning_utils.training import baseline_path, build_model_for, evaluate, train


def cache_short_baseline(cache) -> None:
    """Train it and store it in ``cache`` as ``train_baseline`` would, so the pipeline takes it as its teacher."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNING_CACHE_DIR", str(cache))
        seed_everything(0)
        model = build_model_for("quick")
        loaders = get_loaders("quick")
        history = train(model, loaders.train, epochs=3, profile="quick", device="cpu", progress=False)
        save_checkpoint({"state_dict": model.state_dict(), "history": history,
                         "test_accuracy": evaluate(model, loaders.test)["accuracy"],
                         "val_accuracy": evaluate(model, loaders.val)["accuracy"]}, baseline_path("quick"))
