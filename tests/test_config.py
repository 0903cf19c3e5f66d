import random

import numpy as np
import pytest
import torch

from pruning_utils import config
from pruning_utils.config import (
    CheckpointError,
    cache_dir,
    data_dir,
    get_device,
    get_profile,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)


def test_default_profile_is_quick_and_env_selects_full(monkeypatch):
    assert get_profile().name == "quick"
    assert get_profile().dataset == "digits"
    monkeypatch.setenv("PRUNING_PROFILE", "full")
    assert get_profile().name == "full"
    assert get_profile().dataset == "cifar10"


@pytest.mark.parametrize("bad", ["fast", "", 3])
def test_unknown_profile_names_the_choices(bad, monkeypatch):
    if bad == "":
        monkeypatch.setenv("PRUNING_PROFILE", "turbo")
        bad = None
    with pytest.raises(ValueError, match=r"profile must be one of \['full', 'quick'\]"):
        get_profile(bad)


def test_profiles_share_one_code_path_only_sizes_differ():
    quick, full = get_profile("quick"), get_profile("full")
    assert set(vars(quick)) == set(vars(full))
    assert quick.epochs < full.epochs


def test_seed_everything_repeats_every_random_source():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_seed_rejects_negative():
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


@pytest.mark.parametrize("value, minimum, error", [
    (True, 0, TypeError),     # a bool is not a count
    (2.0, 0, TypeError),
    ("3", 1, TypeError),
    (None, 1, TypeError),
    (0, 1, ValueError),
    (-1, 0, ValueError),
])
def test_check_int_names_the_argument_and_the_rule(value, minimum, error):
    with pytest.raises(error, match=f"^rounds must be an int >= {minimum}; got "):
        config.check_int(value, "rounds", minimum)


def test_check_int_accepts_numpy_integers_and_returns_a_python_int():
    value = config.check_int(np.int64(5), "epochs", 1)
    assert value == 5 and type(value) is int
    assert config.check_int(0, "epochs", 0) == 0


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device().type == "cpu"
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        get_device("warp-drive")


def test_cache_and_data_dirs_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir().is_dir()
    assert data_dir() == tmp_path / "c" / "data"
    monkeypatch.setenv("PRUNING_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d" and data_dir().is_dir()


def test_checkpoint_round_trip_and_atomic_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"w": torch.arange(3.0), "note": "x"}, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["note"] == "x"

    def explode(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(config.torch, "save", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"w": torch.zeros(1)}, path)
    # The old checkpoint is intact and no temp file is left behind.
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_unreadable_or_missing_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
