"""Profiles, seeding, device choice, the cache directory and atomic files shared by the whole course.

A *profile* fixes every size in the course (dataset, model, epochs, batch size) so that one code
path serves a laptop (``quick``: sklearn's 8x8 digits, a small CNN, seconds on a CPU) and a GPU
(``full``: CIFAR-10 with a CIFAR ResNet-56, long enough for paper-style numbers).

Every file the course writes goes through :func:`atomic_path` (a temp file beside the target, fsynced,
renamed over it): a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import random
import re
import secrets
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .checks import (check_choice, check_flag, check_int, check_name, check_non_negative, check_numbers, check_positive,
                     check_share, check_unit)

PROFILE_ENV = "PRUNING_PROFILE"
CACHE_ENV = "PRUNING_CACHE_DIR"
DATA_ENV = "PRUNING_DATA_DIR"


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


class FrozenDict(dict):
    """A read-only ``dict``: what a :class:`Profile` holds as ``model_kwargs``.

    It is a ``dict`` (so ``build_model(name, **kwargs)``, ``json.dumps``, ``dataclasses.asdict`` and
    ``repr`` behave exactly as with the plain dict it was made from) whose every mutating method raises
    ``TypeError``; it is hashable, so a :class:`Profile` is too. Lists and dicts inside are frozen to
    tuples and FrozenDicts. (``types.MappingProxyType`` would not do: ``dataclasses.asdict`` cannot copy
    it and it prints as ``mappingproxy({...})``.)
    """

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        dict.update(self, *args, **kwargs)
        for key, value in dict.items(self):
            dict.__setitem__(self, key, _freeze(value))
        return self

    def __init__(self, *args, **kwargs):  # filled once, in __new__: calling __init__ again changes nothing
        pass

    def _read_only(self, *args, **kwargs):
        raise TypeError("Profile.model_kwargs is read-only; make a changed profile with "
                        "profile.replace(model_kwargs={...})")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:
        return hash(frozenset(self.items()))

    def to_dict(self) -> dict:
        """A plain, mutable ``dict`` copy (nested FrozenDicts too): what a checkpoint stores, since
        ``torch.load(weights_only=True)`` reads plain containers only."""
        return {k: v.to_dict() if isinstance(v, FrozenDict) else v for k, v in self.items()}

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


# A checkpoint that stores a profile's settings (dataclasses.asdict(profile)) holds FrozenDicts; let
# torch.load(weights_only=True) rebuild them, as it rebuilds plain dicts.
torch.serialization.add_safe_globals([FrozenDict])


def _freeze(value):
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(value)
    return value


def _check_milestones(values, name: str) -> tuple[float, ...]:
    try:  # a list of numbers in (0, 1] (a TypeError names the rule), then: not 1, ascending
        milestones = tuple(check_numbers(values, name, check_share, allow_empty=True))
    except ValueError:
        milestones = None
    if milestones is None or any(m >= 1.0 for m in milestones) or any(
            a >= b for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"{name} must be fractions of the run in (0, 1), in ascending order; got {values!r}")
    return milestones


# What each budget of a notebook experiment means, and its value on the quick profile.
BUDGETS = {
    "seeds": (3, "seeds for a comparison of retrained models"),
    "more_seeds": (5, "seeds where a difference is small and needs more of them"),
    "mask_seeds": (10, "random masks drawn for a control (notebook 01)"),
    "iterative_epochs": (12, "retraining epochs shared by the rounds of iterative pruning (notebook 04)"),
    "distill_epochs": (5, "fine-tuning epochs with and without a teacher (notebook 05)"),
    "gradual_epochs": (6, "training epochs of a gradual pruning run (notebook 07)"),
    "population": (5, "dense models trained from scratch for a population of models (notebook 12): each is a "
                      "whole baseline run"),
    "transformer_epochs": (40, "training epochs of the TinyViT baseline (notebook 13)"),
    "rewind_epochs": (20, "the dense run T of notebook 06, its own; every retraining budget is its last three "
                          "quarters (quick: the baseline's epochs)"),
    "scratch_epochs": (10, "epochs of each from-scratch run, large-sparse vs small-dense (notebook 07)"),
    "pipeline_epochs": (10, "epochs of each pipeline run, gradual pruning + distillation (notebook 09)"),
}


def _check_budgets(values) -> FrozenDict:
    if not isinstance(values, Mapping):
        raise TypeError(f"budgets must be a dict {{name: int}}; got {type(values).__name__}")
    unknown = sorted(map(str, set(values) - set(BUDGETS)))
    if unknown:
        raise ValueError(f"budgets has unknown keys {unknown}; the keys are {', '.join(BUDGETS)}")
    return FrozenDict({key: check_int(values.get(key, default), f"budgets[{key!r}]", 1)
                       for key, (default, _) in BUDGETS.items()})


LOADERS = ("torch", "device")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass(frozen=True)
class Profile:
    """Every size the course depends on, in one place (immutable; every field checked on creation).

    ``model_kwargs`` is a read-only dict; change a profile with ``profile.replace(epochs=2)``.
    """

    name: str
    dataset: str
    model: str
    model_kwargs: Mapping = field(default_factory=FrozenDict)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Step schedule: the LR is multiplied by ``lr_gamma`` at these fractions of the run.
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    # Epochs of retraining after each pruning step in the topic notebooks.
    finetune_epochs: int = 5
    num_workers: int = 0
    # CPU threads for torch (None: torch's default). The quick profile's tiny model runs fastest on
    # one thread, and on a busy 2-core machine two threads can be 10x slower (threads spin-wait).
    num_threads: int | None = None
    seed: int = 0
    # How batches are made: "torch" (a DataLoader, CPU-side transforms) or "device" (the whole split as
    # one uint8 tensor on the training device, cropped/flipped/normalised there in batch).
    loader: str = "torch"
    # Training arithmetic: "fp32", "bf16" or "fp16" autocast (fp16 with a gradient scaler), or "auto"
    # (bf16 on a GPU that has it, else fp16 on a GPU, fp32 on the CPU). Evaluation runs in fp32.
    precision: str = "fp32"
    channels_last: bool = False
    # Whether the notebooks assert their claims on this profile (see course.claim_checker): False where
    # the sizes are too small (smoke) or the claims have not been measured at these sizes yet.
    check_claims: bool = True
    # The notebooks' budgets: how many seeds and epochs each kind of experiment gets (BUDGETS lists the
    # keys and what they mean); keys left out take the quick profile's value.
    budgets: Mapping = field(default_factory=FrozenDict)

    def __post_init__(self):
        if not isinstance(self.model_kwargs, Mapping) or not all(isinstance(k, str) for k in self.model_kwargs):
            raise TypeError(f"model_kwargs must be a dict of keyword arguments (str keys) for the model; "
                            f"got {self.model_kwargs!r}")
        checked = {
            "name": check_name(self.name, "name"),
            "dataset": check_name(self.dataset, "dataset"),
            "model": check_name(self.model, "model"),
            "model_kwargs": FrozenDict(self.model_kwargs),
            "epochs": check_int(self.epochs, "epochs", 1),
            "batch_size": check_int(self.batch_size, "batch_size", 1),
            "lr": check_positive(self.lr, "lr"),
            "momentum": check_unit(self.momentum, "momentum"),
            "weight_decay": check_non_negative(self.weight_decay, "weight_decay"),
            "lr_milestones": _check_milestones(self.lr_milestones, "lr_milestones"),
            "lr_gamma": check_share(self.lr_gamma, "lr_gamma"),
            "finetune_epochs": check_int(self.finetune_epochs, "finetune_epochs", 0),
            "num_workers": check_int(self.num_workers, "num_workers", 0),
            "num_threads": None if self.num_threads is None else check_int(self.num_threads, "num_threads", 1),
            "seed": check_int(self.seed, "seed", 0),
            "loader": check_choice(self.loader, "loader", LOADERS),
            "precision": check_choice(self.precision, "precision", PRECISIONS),
            "channels_last": check_flag(self.channels_last, "channels_last"),
            "check_claims": check_flag(self.check_claims, "check_claims"),
            "budgets": _check_budgets(self.budgets),
        }
        for key, value in checked.items():  # canonical types (a frozen dataclass: set through object)
            object.__setattr__(self, key, value)

    def budget(self, key: str) -> int:
        """The profile's budget ``key`` (one of :data:`BUDGETS`), e.g. ``PROFILE.budget("seeds")``."""
        if key not in BUDGETS:
            raise ValueError(f"key must be one of {', '.join(map(repr, BUDGETS))}; got {key!r}")
        return self.budgets[key]

    def replace(self, **changes) -> "Profile":
        """Return a copy with some fields changed (``profile.replace(epochs=2)``), checked like a new one."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        dataset="digits",
        model="small_cnn",
        model_kwargs={"in_channels": 1, "num_classes": 10, "widths": (16, 32, 64), "input_size": 8},
        epochs=20,
        batch_size=64,
        lr=0.05,
        weight_decay=5e-4,
        finetune_epochs=3,
        num_threads=1,
    ),
    # Colab-class GPUs (a T4): ResNet-20 on CIFAR-10 in a short step schedule, the data on the GPU,
    # mixed precision, channels_last. Sized so each notebook's training fits in minutes, not hours.
    "gpu": Profile(
        name="gpu",
        dataset="cifar10",
        model="cifar_resnet",
        model_kwargs={"depth": 20, "num_classes": 10},
        epochs=40,
        batch_size=256,
        lr=0.2,  # 0.1 at batch 128 (He et al. 2016), scaled linearly with the batch
        weight_decay=5e-4,
        lr_milestones=(0.5, 0.75),
        # The retraining budgets below are sized by benchmarks/gpu_notebook_minutes.py (the epochs each
        # notebook trains, counted; minutes estimated, since no GPU has run them yet): see README.
        finetune_epochs=2,
        loader="device",
        precision="auto",
        channels_last=True,
        check_claims=False,  # not yet measured on CIFAR-10 at these sizes
        budgets={"seeds": 3, "more_seeds": 3, "mask_seeds": 5, "iterative_epochs": 4, "distill_epochs": 4,
                 "gradual_epochs": 4, "population": 3, "transformer_epochs": 30, "rewind_epochs": 8,
                 "scratch_epochs": 10, "pipeline_epochs": 6},
    ),
    # Renda et al. 2020 / He et al. 2016 recipe for ResNet-56 on CIFAR-10: SGD 0.1, momentum 0.9,
    # weight decay 1e-4, batch 128, 182 epochs, LR x0.1 at epochs 91 and 136. Hours on one GPU.
    "paper": Profile(
        name="paper",
        dataset="cifar10",
        model="cifar_resnet",
        model_kwargs={"depth": 56, "num_classes": 10},
        epochs=182,
        batch_size=128,
        lr=0.1,
        weight_decay=1e-4,
        lr_milestones=(0.5, 0.75),
        finetune_epochs=40,
        num_workers=2,
        check_claims=False,  # the notebooks' claims are not measured at these sizes
        budgets={"seeds": 3, "more_seeds": 5, "mask_seeds": 10, "iterative_epochs": 60, "distill_epochs": 40,
                 "gradual_epochs": 91, "population": 3, "transformer_epochs": 100, "rewind_epochs": 182,
                 "scratch_epochs": 91, "pipeline_epochs": 91},
    ),
    # The GPU profile's code path (CIFAR-10 files, a ResNet, the device loader, bf16 autocast,
    # channels_last) at toy size, so CI runs it on a CPU; it checks that things execute, not accuracy.
    # It reads a small CIFAR-10-format archive (tests and `make smoke` generate one).
    "smoke": Profile(
        name="smoke",
        dataset="cifar10_smoke",
        model="cifar_resnet",
        model_kwargs={"depth": 8, "num_classes": 10},
        epochs=2,
        batch_size=64,
        lr=0.1,
        weight_decay=5e-4,
        lr_milestones=(0.5,),
        finetune_epochs=1,
        num_threads=1,
        loader="device",
        precision="bf16",
        channels_last=True,
        check_claims=False,
        budgets={"seeds": 2, "more_seeds": 2, "mask_seeds": 2, "iterative_epochs": 2, "distill_epochs": 1,
                 "gradual_epochs": 1, "population": 2, "transformer_epochs": 1, "rewind_epochs": 2,
                 "scratch_epochs": 1, "pipeline_epochs": 1},
    ),
}
PROFILES["full"] = PROFILES["paper"].replace(name="full")  # the name earlier versions of the course used


def get_profile(name: str | Profile | None = None) -> Profile:
    """Return the profile called ``name``, or the one named by ``$PRUNING_PROFILE`` (default quick).

    >>> get_profile("quick").dataset
    'digits'
    """
    if isinstance(name, Profile):
        return name
    if name is None:
        name = os.environ.get(PROFILE_ENV, "").strip() or "quick"
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(
            f"profile must be one of {sorted(PROFILES)} (argument or ${PROFILE_ENV}); got {name!r}"
        )
    return PROFILES[name]


# ---------------------------------------------------------------------------------------------
# Seeding and devices
# ---------------------------------------------------------------------------------------------


def _shuffling_generators(loaders) -> list[torch.Generator]:
    """The own ``generator`` of each loader in ``loaders`` (a Loaders tuple, one loader or a list)."""
    from torch.utils.data import DataLoader

    from .data import DeviceLoader

    kinds = (DataLoader, DeviceLoader)
    items = [loaders] if isinstance(loaders, kinds) else loaders
    if isinstance(items, (str, bytes)) or not isinstance(items, (tuple, list)) or not all(
            isinstance(item, kinds) for item in items):
        raise TypeError("loaders must be a DataLoader (or DeviceLoader), a list of them or get_loaders()'s "
                        f"Loaders; got {type(loaders).__name__}")
    return [item.generator for item in items if item.generator is not None]


def seed_everything(seed: int = 0, loaders=None) -> torch.Generator:
    """Seed python, numpy and torch, pick deterministic kernels, and return a seeded generator.

    A shuffling DataLoader draws its batch order from its own generator, which the global seed does not
    reach: pass ``loaders`` (``get_loaders()``'s result, one DataLoader or a list) to reseed those
    generators with ``seed`` too, so a seed means the same batches whatever ran before.
    """
    seed = check_int(seed, "seed", 0)
    generators = [] if loaders is None else _shuffling_generators(loaders)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Deterministic cuBLAS needs this workspace setting; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    for generator in generators:
        generator.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def _check_available(device: torch.device, prefer) -> torch.device:
    """``device`` if this machine has it, else ValueError saying what it has."""
    if device.type == "cpu":
        return device
    here = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        here.append("cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}")
    if _mps_available():
        here.append("mps")
    have = "this machine has " + ", ".join(here)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} is not available: torch sees no CUDA GPU ({have})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {prefer!r} is not available: {have}")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {prefer!r} is not available: torch sees no Apple GPU ({have})")
        return device
    try:  # any other backend (xpu, ...): ask torch for a tensor there
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
        raise ValueError(f"device {prefer!r} is not available ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); {have}") from exc
    return device


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return ``prefer`` if given (checked to exist on this machine), else the best available device:
    cuda, then mps, then cpu. A name torch does not know, or a device this machine lacks (``"cuda"``
    without a GPU), raises ValueError."""
    if prefer is not None:
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda'; got {prefer!r}") from exc
        return _check_available(device, prefer if isinstance(prefer, str) else str(prefer))
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Directory for cached checkpoints: ``$PRUNING_CACHE_DIR`` or ``~/.cache/pruning-course``."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pruning-course").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory for datasets: ``$PRUNING_DATA_DIR`` or ``<cache_dir>/data``."""
    env = os.environ.get(DATA_ENV)
    path = Path(env).expanduser() if env else cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------

# A write goes to ``<folder>/.<name>.<pid>-<8 hex>.tmp/<name>``: a private temp folder beside the target
# holding a file of the target's own name (``torch.save`` names its zip records after the file, so the
# checkpoint is byte for byte what ``torch.save(obj, path)`` writes), then renamed over the target. A
# process killed in the middle of a write leaves its temp folder behind; the next write of the same target
# removes it once its process is gone (where the OS cannot tell, e.g. on Windows, once it is an hour old).
_STALE_AFTER_S = 3600.0
_ACTIVE: set[str] = set()  # this process's temp folders being written now (any thread)
_ACTIVE_LOCK = threading.Lock()


def _temp_pattern(path: Path) -> re.Pattern:
    # group 1: the writer's pid; the second form is the temp file name of earlier course versions (mkstemp)
    return re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)-[0-9a-f]{8}|[a-z0-9_]{8})\.tmp")


def _process_alive(pid: int) -> bool | None:
    """True / False where the OS can tell, None where it cannot (Windows: os.kill would end it)."""
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return None
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete what interrupted writes of ``path`` left behind (never a live writer's temp)."""
    pattern = _temp_pattern(path)
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return
    for tmp in candidates:
        pid = pattern.fullmatch(tmp.name).group(1)
        with _ACTIVE_LOCK:
            if str(tmp) in _ACTIVE:
                continue
        if pid is not None and int(pid) == os.getpid():
            stale = True  # this process, and not among its writes in progress
        else:
            alive = None if pid is None else _process_alive(int(pid))
            if alive is None:  # an older course's temp name, or an OS that cannot tell: go by age
                try:
                    alive = time.time() - tmp.stat().st_mtime < _STALE_AFTER_S
                except OSError:
                    continue
            stale = not alive
        if stale:
            _remove(tmp)


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the OS lets a directory be opened (not on Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Write ``path`` atomically: ``with atomic_path(p) as tmp: write the file tmp``.

    ``tmp`` is an empty file of the same name as ``path`` in a private temp folder beside it, created
    with the umask's normal permissions; the block writes it by name with any writer
    (``torch.save(obj, tmp)``, ``fig.savefig(tmp)``, ``tmp.write_bytes(...)``). On success it is fsynced
    and renamed over ``path``, and the folder is fsynced (where the OS allows). If the block raises,
    the temp file is removed and ``path`` is left as it was. What earlier interrupted writes of ``path``
    left behind is removed first. The one mechanism behind :func:`save_checkpoint`, :func:`write_atomic`
    and the course's result files.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file path, not a directory; got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    while True:
        folder = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    with _ACTIVE_LOCK:
        _ACTIVE.add(str(folder))
    tmp = folder / path.name
    binary = getattr(os, "O_BINARY", 0)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | binary, 0o666))  # 0o666 & ~umask
        yield tmp
        fd = os.open(tmp, os.O_RDWR | binary)  # fsync flushes the file, whichever descriptor wrote it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        _remove(folder)  # empty after the rename; the half-written file after an error
        with _ACTIVE_LOCK:
            _ACTIVE.discard(str(folder))
    _fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (:func:`atomic_path`); return the path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or str; got {type(data).__name__}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def save_checkpoint(obj, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`atomic_path`): temp file, fsync, rename.

    A crash mid-write never leaves a truncated checkpoint behind, and the next save removes the temp
    file such a crash left. (``torch.save`` gets the temp file's name, not an open file: to a stream it
    writes a zip record descriptor per tensor, a bigger file.)
    """
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not one the course wrote."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, without terminal colour codes, at most ``limit`` characters."""
    text = _ANSI.sub("", str(exc)).strip()
    line = text.splitlines()[0].strip() if text else ""
    if len(line) > limit:
        line = line[:limit - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = sorted(map(repr, obj))
        return f"a dict with keys {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}" if keys else "an empty dict"
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def check_checkpoint_keys(obj, keys: Mapping[str, type | tuple], path: str | Path, what: str = "checkpoint") -> dict:
    """``obj`` (a loaded checkpoint) as a dict holding every key of ``keys`` with a value of its type(s);
    else :class:`CheckpointError` naming the file and what is wrong. Returns ``obj``."""
    where = f"{what} {str(path)!r}"
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where} holds {_describe(obj)}, not the dict with keys {sorted(keys)} it should hold")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CheckpointError(f"{where} lacks the key(s) {missing} (it holds {_describe(obj)}): not a {what} "
                              "written by this course")
    for key, types in keys.items():
        value = obj[key]
        wrong_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
        if wrong_bool or not isinstance(value, types):
            raise CheckpointError(f"{where}: {key!r} should be of type {_type_names(types)}; "
                                  f"it is {_describe(value)} ({value!r:.60})")
    return obj


def load_checkpoint(path: str | Path, map_location="cpu", *, keys: Mapping[str, type | tuple] | None = None,
                    what: str = "checkpoint"):
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` naming the file.

    A missing, empty, truncated or foreign file, a directory, or one holding objects ``weights_only``
    refuses gives a one-line CheckpointError saying which. With ``keys`` (``{"state_dict": dict, ...}``)
    the file must hold a dict with those keys and types (:func:`check_checkpoint_keys`); ``what`` names
    the kind of file in the messages.
    """
    path = Path(path)
    where = f"{what} {str(path)!r}"
    if path.is_dir():
        raise CheckpointError(f"{where} is a directory, not a file")
    if not path.exists():
        raise CheckpointError(f"{where} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{where} is not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{where} is empty (0 bytes; an interrupted copy?); delete it to have it rebuilt")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = _ANSI.sub("", str(exc))
        refused = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        if refused:
            raise CheckpointError(
                f"{where} holds a Python object ({refused.group(1)}) that torch.load(weights_only=True) refuses "
                "to load (only tensors, numbers, strings, lists and dicts are allowed): not a checkpoint "
                "written by this course") from exc
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.DOTALL)
        detail = " ".join(detail.group(1).split())[:120] if detail else _first_line(exc)
        raise CheckpointError(f"{where} is not a torch checkpoint or is damaged ({detail}); "
                              "delete it to have it rebuilt") from exc
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"{where} cannot be read: truncated, damaged or not a torch checkpoint "
                              f"({_first_line(exc)}); delete it to have it rebuilt") from exc
    if keys is not None:
        check_checkpoint_keys(obj, keys, path, what)
    return obj


def setup_course(seed: int | None = None, device=None, verbose: bool = True):
    """Seed everything, choose the device and report the profile: the first step of every notebook.

    Returns ``(profile, device)``.
    """
    check_flag(verbose, "verbose")
    profile = get_profile()
    seed_everything(profile.seed if seed is None else seed)
    if profile.num_threads:
        torch.set_num_threads(profile.num_threads)
    dev = get_device(device)
    if verbose:
        import platform

        print(
            f"profile={profile.name} (dataset={profile.dataset}, model={profile.model}) | device={dev} "
            f"({torch.get_num_threads()} CPU threads) | "
            f"torch {torch.__version__} | python {platform.python_version()}"
        )
    return profile, dev
