"""Profiles, seeding, device choice and the cache directory shared by the whole course.

A *profile* fixes every size in the course (dataset, model, epochs, batch size) so that one code
path serves a laptop (``quick``: sklearn's 8x8 digits, a small CNN, seconds on a CPU) and a GPU
(``full``: CIFAR-10 with a CIFAR ResNet-56, long enough for paper-style numbers).
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checks import check_int

PROFILE_ENV = "PRUNING_PROFILE"
CACHE_ENV = "PRUNING_CACHE_DIR"
DATA_ENV = "PRUNING_DATA_DIR"


@dataclass(frozen=True)
class Profile:
    """Every size the course depends on, in one place."""

    name: str
    dataset: str
    model: str
    model_kwargs: dict = field(default_factory=dict)
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

    def replace(self, **changes) -> "Profile":
        """Return a copy with some fields changed (``profile.replace(epochs=2)``)."""
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
    # Renda et al. 2020 / He et al. 2016 recipe for ResNet-56 on CIFAR-10: SGD 0.1, momentum 0.9,
    # weight decay 1e-4, batch 128, 182 epochs, LR x0.1 at epochs 91 and 136.
    "full": Profile(
        name="full",
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
    ),
}


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


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed python, numpy and torch, pick deterministic kernels, and return a seeded generator."""
    seed = check_int(seed, "seed", 0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Deterministic cuBLAS needs this workspace setting; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return ``prefer`` if given, else the best available device: cuda, then mps, then cpu."""
    if prefer is not None:
        try:
            return torch.device(prefer)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda'; got {prefer!r}") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def save_checkpoint(obj, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically: write a temp file beside it, then rename.

    A crash mid-write never leaves a truncated checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not one the course wrote."""


def load_checkpoint(path: str | Path, map_location="cpu"):
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it to have it rebuilt"
        ) from exc


def setup_course(seed: int | None = None, device=None, verbose: bool = True):
    """Seed everything, choose the device and report the profile: the first step of every notebook.

    Returns ``(profile, device)``.
    """
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
