import collections
import copy
import dataclasses
import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path
import random

import numpy as np
import pytest
import torch

from pruning_utils import config
from pruning_utils.config import (
    PROFILES,
    CheckpointError,
    Profile,
    atomic_path,
    cache_dir,
    data_dir,
    get_device,
    get_profile,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    write_atomic,
)
from pruning_utils.training import _profile_key

ROOT = Path(__file__).resolve().parents[1]


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
    with pytest.raises(ValueError, match=r"profile must be one of \['full', 'gpu', 'paper', 'quick', 'smoke'\]"):
        get_profile(bad)


def test_profiles_share_one_code_path_only_sizes_differ():
    quick, full = get_profile("quick"), get_profile("full")
    assert set(vars(quick)) == set(vars(full))
    assert quick.epochs < full.epochs
    # the GPU profile's code path at toy size: what CI runs of it
    gpu, smoke = get_profile("gpu"), get_profile("smoke")
    assert (smoke.model, smoke.loader, smoke.channels_last) == (gpu.model, gpu.loader, gpu.channels_last)
    assert (smoke.dataset, gpu.dataset) == ("cifar10_smoke", "cifar10")  # the same format, generated files
    assert smoke.precision != "fp32" and smoke.epochs < gpu.epochs < full.epochs
    assert full.replace(name="paper") == get_profile("paper")  # full is the paper recipe's older name


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


# --- Profile: immutable, every field checked ----------------------------------------------------

QUICK_KWARGS = {"in_channels": 1, "num_classes": 10, "widths": (16, 32, 64), "input_size": 8}


def make_profile(**changes):
    fields = dict(name="mine", dataset="digits", model="small_cnn", model_kwargs=dict(QUICK_KWARGS))
    return Profile(**{**fields, **changes})


@pytest.mark.parametrize("mutate", [
    lambda kw: kw.__setitem__("widths", (1, 2, 3)),
    lambda kw: kw.__delitem__("widths"),
    lambda kw: kw.update(widths=(1, 2, 3)),
    lambda kw: kw.pop("widths"),
    lambda kw: kw.popitem(),
    lambda kw: kw.setdefault("depth", 3),
    lambda kw: kw.clear(),
    lambda kw: kw.__ior__({"widths": (1,)}),
    lambda kw: kw.__init__({"widths": (1,)}),  # a second __init__ must not refill it either
])
def test_profile_model_kwargs_are_read_only(mutate):
    saved = copy.deepcopy(dict(PROFILES["quick"].model_kwargs))
    try:
        for prof in (PROFILES["quick"], make_profile()):
            try:
                mutate(prof.model_kwargs)
            except TypeError as exc:
                assert "read-only" in str(exc) and "replace" in str(exc)
            assert dict(prof.model_kwargs) == QUICK_KWARGS
    finally:  # where the dict was mutable, put the shared profile back for the other tests
        if dict(PROFILES["quick"].model_kwargs) != saved:
            object.__setattr__(PROFILES["quick"], "model_kwargs", saved)
    with pytest.raises(TypeError, match="read-only"):
        PROFILES["quick"].model_kwargs["widths"] = (1, 2, 3)


def test_a_dict_passed_to_a_profile_is_copied_and_nested_values_frozen():
    kwargs = {"in_channels": 1, "widths": [8, 16], "extra": {"a": [1]}}
    prof = make_profile(model_kwargs=kwargs, lr_milestones=[0.3, 0.6])
    kwargs["widths"].append(32)  # the caller's dict stays theirs
    kwargs["in_channels"] = 3
    assert prof.model_kwargs == {"in_channels": 1, "widths": (8, 16), "extra": {"a": (1,)}}
    assert prof.lr_milestones == (0.3, 0.6) and isinstance(prof.lr_milestones, tuple)
    with pytest.raises(TypeError, match="read-only"):
        prof.model_kwargs["extra"]["a"] = 2
    plain = prof.model_kwargs.to_dict()  # what a checkpoint stores: weights_only=True reads it back
    assert type(plain) is dict and type(plain["extra"]) is dict and plain == prof.model_kwargs


def test_profiles_hash_compare_copy_and_pickle():
    quick = PROFILES["quick"]
    twin = dataclasses.replace(quick)
    assert twin == quick and hash(twin) == hash(quick)
    assert len({quick, twin, PROFILES["full"]}) == 2  # usable as set members / dict keys
    assert make_profile(model_kwargs={"widths": [1, 2]}) == make_profile(model_kwargs={"widths": (1, 2)})
    for clone in (copy.copy(quick), copy.deepcopy(quick), pickle.loads(pickle.dumps(quick))):
        assert clone == quick and hash(clone) == hash(quick)
        with pytest.raises(TypeError, match="read-only"):
            clone.model_kwargs["widths"] = ()
    assert quick.replace(epochs=2).epochs == 2 and dataclasses.replace(quick, epochs=3).epochs == 3
    assert quick.replace(epochs=2).model_kwargs == quick.model_kwargs


def test_the_profile_key_and_printout_stay_what_a_plain_dict_gave():
    """The cached baselines are named by a hash of the profile as JSON; notebook 00 prints model_kwargs."""
    for prof in (*PROFILES.values(), make_profile(model_kwargs={"widths": (8, 16), "in_channels": 1})):
        plain = {f.name: getattr(prof, f.name) for f in dataclasses.fields(prof)
                 if f.name not in ("budgets", "check_claims")}  # what the notebooks read: not in the key
        plain["model_kwargs"] = dict(prof.model_kwargs)  # what the profile held before it was frozen
        blob = json.dumps(plain, sort_keys=True, default=str)
        assert _profile_key(prof) == hashlib.sha256(blob.encode()).hexdigest()[:10]
        assert str(prof.model_kwargs) == str(dict(prof.model_kwargs))
        assert dataclasses.asdict(prof)["model_kwargs"] == dict(prof.model_kwargs)
    assert str(PROFILES["quick"].model_kwargs) == str(QUICK_KWARGS)


@pytest.mark.parametrize("field, value, error, message", [
    ("epochs", 0, ValueError, "epochs must be an int >= 1"),
    ("epochs", 2.5, TypeError, "epochs must be an int >= 1"),
    ("batch_size", 0, ValueError, "batch_size must be an int >= 1"),
    ("batch_size", True, TypeError, "batch_size must be an int"),
    ("lr", 0, ValueError, "lr must be a finite number > 0"),
    ("lr", float("nan"), ValueError, "lr must be a finite number > 0"),
    ("lr", "0.1", TypeError, "lr must be a finite number > 0"),
    ("momentum", -0.1, ValueError, r"momentum must be in \[0, 1\]"),
    ("momentum", 1.5, ValueError, r"momentum must be in \[0, 1\]"),
    ("weight_decay", -1e-4, ValueError, "weight_decay must be a finite number >= 0"),
    ("weight_decay", float("inf"), ValueError, "weight_decay must be a finite number >= 0"),
    ("weight_decay", None, TypeError, "weight_decay must be a finite number >= 0; got None"),
    ("lr_milestones", (0.75, 0.5), ValueError, r"lr_milestones must be fractions of the run in \(0, 1\), in ascending"),
    ("lr_milestones", (0.5, 0.5), ValueError, "ascending"),
    ("lr_milestones", (0.5, 1.0), ValueError, r"\(0, 1\)"),
    ("lr_milestones", (0.0, 0.5), ValueError, r"lr_milestones must be fractions of the run in \(0, 1\)"),
    ("lr_milestones", (50, 75), ValueError, r"lr_milestones must be fractions of the run in \(0, 1\)"),
    ("lr_milestones", 0.5, TypeError, "lr_milestones must be a list of numbers"),
    ("lr_milestones", "0.5", TypeError, "lr_milestones must be a list of numbers"),
    ("lr_gamma", 0, ValueError, r"lr_gamma must be in \(0, 1\]"),
    ("lr_gamma", 1.5, ValueError, r"lr_gamma must be in \(0, 1\]"),
    ("finetune_epochs", -1, ValueError, "finetune_epochs must be an int >= 0"),
    ("num_workers", -1, ValueError, "num_workers must be an int >= 0"),
    ("num_workers", 1.0, TypeError, "num_workers must be an int >= 0"),
    ("num_threads", 0, ValueError, "num_threads must be an int >= 1"),
    ("seed", -1, ValueError, "seed must be an int >= 0"),
    ("name", "", ValueError, "name must be a non-empty str"),
    ("name", 3, TypeError, "name must be a non-empty str"),
    ("dataset", None, TypeError, "dataset must be a non-empty str"),
    ("model", " ", ValueError, "model must be a non-empty str"),
    ("model_kwargs", [("depth", 20)], TypeError, "model_kwargs must be a dict"),
    ("model_kwargs", {1: 2}, TypeError, "model_kwargs must be a dict of keyword arguments"),
])
def test_every_profile_field_is_checked_on_creation_and_on_replace(field, value, error, message):
    with pytest.raises(error, match=message):
        make_profile(**{field: value})
    with pytest.raises(error, match=message):
        PROFILES["quick"].replace(**{field: value})
    with pytest.raises(error, match=message):
        dataclasses.replace(PROFILES["full"], **{field: value})


def test_profile_edge_values_are_accepted_in_canonical_types():
    prof = make_profile(weight_decay=0, lr_milestones=(), num_threads=None, finetune_epochs=0, momentum=0,
                        lr_gamma=1, epochs=np.int64(4), lr=1, seed=np.int32(3))
    assert prof.lr_milestones == () and prof.weight_decay == 0.0 and prof.lr_gamma == 1.0
    assert type(prof.epochs) is int and prof.epochs == 4 and type(prof.seed) is int
    assert type(prof.lr) is float and type(prof.weight_decay) is float


# --- devices -----------------------------------------------------------------------------------


def test_get_device_refuses_a_device_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda' is not available: torch sees no CUDA GPU"):
        get_device("cuda")
    with pytest.raises(ValueError, match="device 'cuda:0' is not available"):
        get_device(torch.device("cuda:0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert get_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="device 'cuda:2' is not available: this machine has cpu, cuda:0 to cuda:1"):
        get_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'mps' is not available"):
        get_device("mps")
    with pytest.raises(ValueError, match="device must be a torch device name"):
        get_device("nonsense")


# --- atomic files ------------------------------------------------------------------------------


@pytest.fixture
def umask():
    def set_(mask):
        previous.append(os.umask(mask))
    previous = []
    yield set_
    if previous:
        os.umask(previous[0])


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_written_files_get_the_umask_permissions(tmp_path, umask, mask):
    umask(mask)
    expected = 0o666 & ~mask
    assert stat.S_IMODE(save_checkpoint({"w": torch.ones(2)}, tmp_path / "a.pt").stat().st_mode) == expected
    assert stat.S_IMODE(write_atomic(tmp_path / "b.txt", "text").stat().st_mode) == expected
    (tmp_path / "reference").write_text("text")  # what open() gives a new file
    assert stat.S_IMODE((tmp_path / "reference").stat().st_mode) == expected


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint({"w": torch.ones(2)}, tmp_path / "a.pt")
    expected = ["fsync file", "replace"] + (["fsync dir"] if os.name != "nt" else [])
    assert events == expected
    events.clear()
    write_atomic(tmp_path / "b.txt", b"bytes")
    assert events == expected and (tmp_path / "b.txt").read_bytes() == b"bytes"


def _temps(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


def test_the_temp_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    target = tmp_path / "ckpt.pt"
    save_checkpoint({"w": torch.arange(3.0)}, target)
    # another process dies in the middle of writing (no exception handler runs: os._exit)
    script = (
        "import os, sys, torch\n"
        "from pruning_utils import config\n"
        "def die(obj, f):\n"
        "    open(f, 'wb').write(b'half a checkpoint'); os._exit(3)\n"
        "config.torch.save = die\n"
        "config.save_checkpoint({'w': torch.zeros(3)}, sys.argv[1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(target)], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert len(_temps(tmp_path)) == 1  # what the killed save left behind
    assert torch.equal(load_checkpoint(target)["w"], torch.arange(3.0))  # the old checkpoint is intact
    save_checkpoint({"w": torch.ones(3)}, target)
    assert _temps(tmp_path) == []
    assert torch.equal(load_checkpoint(target)["w"], torch.ones(3))


def test_stale_temps_are_removed_but_never_a_live_writers(tmp_path):
    target = tmp_path / "ckpt.pt"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(finished.stdout), os.getppid()
    names = {
        "dead": f".ckpt.pt.{dead_pid}-0123abcd.tmp",  # its process has ended
        "mine": f".ckpt.pt.{os.getpid()}-0123abcd.tmp",  # this process, not writing it now
        "live": f".ckpt.pt.{live_pid}-0123abcd.tmp",  # another process, still running
        "old legacy": ".ckpt.pt.a1b2c3d4.tmp",  # an older course's name, two hours old
        "new legacy": ".ckpt.pt.e5f6g7h8.tmp",  # the same, written a moment ago
        "other file": ".other.pt.12-0123abcd.tmp",  # the temp of another target
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / names["old legacy"], (two_hours_ago, two_hours_ago))
    save_checkpoint({"w": torch.ones(1)}, target)
    kept = sorted(names[k] for k in ("live", "new legacy", "other file"))
    if os.name == "nt":  # no process check there: only age counts
        kept = sorted(names[k] for k in ("dead", "live", "new legacy", "other file"))
    assert _temps(tmp_path) == kept


def test_concurrent_atomic_writes_use_unique_temp_files(tmp_path):
    target = tmp_path / "f.txt"
    with atomic_path(target) as first, atomic_path(target) as second:
        first.write_bytes(b"first")
        second.write_bytes(b"second")
        assert len(_temps(tmp_path)) == 2 and not target.exists()  # nothing visible until the rename
    assert target.read_bytes() == b"first" and _temps(tmp_path) == []  # the outer block renamed last


def test_a_failed_or_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = write_atomic(tmp_path / "f.txt", "old")
    for error in (RuntimeError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half")
                raise error
        assert target.read_text() == "old" and _temps(tmp_path) == []
    with pytest.raises(TypeError, match="data must be bytes or str"):
        write_atomic(target, 3)
    assert write_atomic(tmp_path / "sub" / "u.txt", "é").read_bytes() == "é".encode("utf-8")


def test_saving_over_a_directory_is_refused_and_leaves_it_alone(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inside").write_text("keep")
    with pytest.raises(ValueError, match="path must be a file path, not a directory"):
        save_checkpoint({"w": torch.ones(1)}, tmp_path / "d")
    assert (tmp_path / "d" / "inside").read_text() == "keep" and _temps(tmp_path) == []


# --- reading checkpoints ---------------------------------------------------------------------


def assert_one_line_naming(exc_info, path, phrase):
    message = str(exc_info.value)
    assert str(path) in message, message
    assert phrase in message, message
    assert "\n" not in message and "\x1b" not in message, message


def test_damaged_and_foreign_files_raise_one_line_checkpoint_errors(tmp_path):
    good = save_checkpoint({"w": torch.arange(1000.0)}, tmp_path / "good.pt")
    cases = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "is empty"
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated.pt"] = "truncated, damaged or not a torch checkpoint"
    (tmp_path / "folder.pt").mkdir()
    cases["folder.pt"] = "is a directory, not a file"
    torch.save({"path": Path("x")}, tmp_path / "pickle.pt")  # a class weights_only refuses
    path_class = f"pathlib.{type(Path()).__name__}"
    cases["pickle.pt"] = f"holds a Python object ({path_class}) that torch.load(weights_only=True) refuses"
    (tmp_path / "text.pt").write_text("not a checkpoint at all")
    cases["text.pt"] = "not a torch checkpoint"
    for name, phrase in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        assert_one_line_naming(info, tmp_path / name, phrase)


@pytest.mark.parametrize("content, phrase", [
    ([1, 2], "holds a list, not the dict"),
    (torch.zeros(3), "holds a tensor of shape (3,), not the dict"),
    ({"weight": torch.zeros(3)}, "lacks the key(s) ['state_dict', 'epochs']"),
    ({"state_dict": {}}, "lacks the key(s) ['epochs']"),
    ({"state_dict": [torch.zeros(1)], "epochs": 3}, "'state_dict' should be of type dict; it is a list"),
    ({"state_dict": {}, "epochs": "3"}, "'epochs' should be of type int; it is a str"),
    ({"state_dict": {}, "epochs": True}, "'epochs' should be of type int; it is a bool"),
    (collections.OrderedDict(state_dict={}), "lacks the key(s) ['epochs']"),
])
def test_load_checkpoint_checks_the_structure_it_is_told(tmp_path, content, phrase):
    path = save_checkpoint(content, tmp_path / "x.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, keys={"state_dict": dict, "epochs": int}, what="baseline")
    assert_one_line_naming(info, path, phrase)
    assert str(info.value).startswith(f"baseline {str(path)!r}")
    assert load_checkpoint(path) is not None  # without keys any weights-only file loads


def test_load_checkpoint_returns_a_file_with_the_keys(tmp_path):
    path = save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epochs": 3, "extra": "ok"}, tmp_path / "x.pt")
    ckpt = load_checkpoint(path, keys={"state_dict": dict, "epochs": int})
    assert ckpt["epochs"] == 3 and torch.equal(ckpt["state_dict"]["w"], torch.ones(2))


def test_a_checkpoint_is_byte_for_byte_what_torch_save_writes(tmp_path):
    """torch.save to an open stream writes a bigger zip (a record descriptor per tensor); the course's
    sizes (checkpoint_sizes, README) are those of torch.save to a file name."""
    state = {f"w{i}": torch.full((10,), float(i)) for i in range(20)}
    (tmp_path / "torch").mkdir()
    torch.save(state, tmp_path / "torch" / "ckpt.pt")  # torch names the zip records after the file
    ours = save_checkpoint(state, tmp_path / "ours" / "ckpt.pt")
    assert ours.read_bytes() == (tmp_path / "torch" / "ckpt.pt").read_bytes()


def test_a_checkpoint_holding_a_profiles_settings_loads_back(tmp_path):
    import dataclasses

    from pruning_utils.config import get_profile, load_checkpoint, save_checkpoint

    prof = get_profile("quick")
    path = save_checkpoint({"config": dataclasses.asdict(prof), "kwargs": prof.model_kwargs}, tmp_path / "c.pt")
    loaded = load_checkpoint(path)
    assert loaded["config"] == dataclasses.asdict(prof) and loaded["kwargs"] == dict(prof.model_kwargs)


def test_seed_everything_reseeds_the_loaders_own_shuffling_generators():
    from pruning_utils.config import seed_everything
    from pruning_utils.data import get_loaders

    loaders = get_loaders("quick")

    def first_batch():
        return next(iter(loaders.train))[1]

    seed_everything(3, loaders=loaders)
    a = first_batch()
    first_batch()  # the loader's generator moves on; the global seed alone would not bring it back
    seed_everything(3)
    assert not torch.equal(first_batch(), a)
    seed_everything(3, loaders=loaders.train)
    assert torch.equal(first_batch(), a)
    seed_everything(3, loaders=[loaders.train, loaders.val])
    assert torch.equal(first_batch(), a)
    for bad in ("train", 3, [loaders.train, "val"], iter([loaders.train])):
        with pytest.raises(TypeError, match="loaders must be"):
            seed_everything(3, loaders=bad)


def test_budgets_come_from_the_profile_with_the_quick_values_as_defaults():
    from pruning_utils.config import BUDGETS

    quick, smoke = get_profile("quick"), get_profile("smoke")
    assert {k: quick.budget(k) for k in BUDGETS} == {k: default for k, (default, _) in BUDGETS.items()}
    assert all(smoke.budget(k) <= quick.budget(k) for k in BUDGETS)
    assert smoke.budget("seeds") >= 2  # an interval over seeds needs two
    custom = quick.replace(budgets={"seeds": 4})
    assert custom.budget("seeds") == 4 and custom.budget("distill_epochs") == quick.budget("distill_epochs")
    assert quick.check_claims and not smoke.check_claims
    with pytest.raises(ValueError, match="key must be one of"):
        quick.budget("epochs")
    with pytest.raises(ValueError, match="unknown keys"):
        quick.replace(budgets={"sedes": 3})
    with pytest.raises(ValueError, match=r"budgets\['seeds'\] must be"):
        quick.replace(budgets={"seeds": 0})
    with pytest.raises(TypeError, match="budgets must be a dict"):
        quick.replace(budgets=[3])
    with pytest.raises(TypeError):
        quick.budgets["seeds"] = 9  # read-only, like model_kwargs
