"""The complete pipeline: a trained dense network in, a pruned checkpoint out.

1. real data from the profile and the cached dense baseline (:func:`pruning_utils.train_baseline`);
2. the baseline is the frozen teacher, a copy of it the student;
3. the student trains with the distillation loss while a :class:`~pruning_utils.GradualPruner` raises
   its sparsity along the cubic schedule to the target, then keeps training at the target to recover;
4. the pruned student is evaluated on the test set, its masks are made permanent and it is saved
   atomically, with everything needed to rebuild and check it.

Run it from a shell::

    python -m pruning_utils.pipeline --profile quick --sparsity 0.9 --epochs 10 --out pruned.pt

or on several GPUs (or CPU processes) with PyTorch's launcher, the same command under ``torchrun``::

    torchrun --nproc-per-node 4 -m pruning_utils.pipeline --profile gpu --sparsity 0.9 --out pruned.pt

Under torchrun (``WORLD_SIZE`` > 1) each process trains a DistributedDataParallel copy of the student
on its share of every batch (a seeded DistributedSampler, reshuffled each epoch); the global batch and
the number of steps stay those of one process, so the schedule, the learning rate and the distillation
are unchanged. The masks are computed on every process from identical weights and checked equal after
every update (an all-reduce of a checksum); rank 0 prepares the baseline, writes the one checkpoint and
shows the progress bars and the result; every process evaluates the same model on the whole test set.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import inspect
import math
import numbers
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .checks import check_fraction, check_int, check_numbers, check_positive, check_scope, check_share, check_unit
from .config import (PROFILES, CheckpointError, Profile, _first_line, cache_dir, get_device, get_profile,
                     load_checkpoint, save_checkpoint, seed_everything)
from .data import DeviceLoader, get_loaders, input_shape
from .distillation import ALPHA_HINT, DistillationFineTuner
from .gradual import GradualPruner
from .masks import _mask_buffer, make_permanent, prunable_layers
from .masks import sparsity as _sparsity
from .params import count_parameters
from .models import build_model
from .training import Callback, build_optimizer, evaluate, train_baseline

__all__ = ["PipelineResult", "create_pruning_pipeline", "default_checkpoint_path", "load_pruned_model", "main"]


@dataclass
class PipelineResult:
    """What one pipeline run produced (accuracies are fractions in [0, 1]; sizes assume float32)."""

    profile: str
    target_sparsity: float
    sparsity: float  # measured: zeros among the prunable weights
    dense_accuracy: float  # the teacher, on the test set
    pruned_accuracy: float  # the pruned student, on the test set
    epochs: int
    total_params: int  # every parameter of the model (batch-norm and biases included)
    nonzero_params: int
    dense_size_mb: float  # total_params * 4 bytes
    sparse_size_mb: float  # nonzero values only; an index format adds overhead on top
    checkpoint: Path
    checkpoint_mb: float  # the file on disk (weights stored densely, zeros included)
    temperature: float
    alpha: float
    history: dict = field(repr=False, default_factory=dict)
    sparsity_history: list = field(repr=False, default_factory=list)
    model: nn.Module | None = field(repr=False, default=None)

    @property
    def accuracy_drop(self) -> float:
        """Dense minus pruned test accuracy (negative when pruning helped)."""
        return self.dense_accuracy - self.pruned_accuracy

    @property
    def compression_ratio(self) -> float:
        """Parameters of the dense model per parameter left non-zero (``inf`` when none is left)."""
        return self.total_params / self.nonzero_params if self.nonzero_params else math.inf

    def summary(self) -> dict:
        """The numbers as a flat dict (for a results table or JSON)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("history", "sparsity_history", "model")}
        out["checkpoint"] = str(self.checkpoint)
        out["accuracy_drop"] = self.accuracy_drop
        out["compression_ratio"] = self.compression_ratio
        return out

    def __str__(self) -> str:
        return "\n".join([
            f"profile {self.profile}: pruned to {self.sparsity:.2%} sparsity (target {self.target_sparsity:.2%}) "
            f"in {self.epochs} epoch{'s' if self.epochs != 1 else ''}",
            f"test accuracy: dense {self.dense_accuracy:.2%} -> pruned {self.pruned_accuracy:.2%}",
            f"parameters: {self.nonzero_params:,} of {self.total_params:,} non-zero "
            f"({self.compression_ratio:.1f}x fewer); {self.dense_size_mb:.3f} MB dense, "
            f"{self.sparse_size_mb:.3f} MB of non-zero values",
            f"checkpoint: {self.checkpoint} ({self.checkpoint_mb:.3f} MB)",
        ])


def default_checkpoint_path(profile: str | Profile | None = None, sparsity: float = 0.9) -> Path:
    """Where the pipeline saves its checkpoint when ``out`` is not given (in the cache directory)."""
    prof = get_profile(profile)
    return cache_dir() / f"pruned-{prof.name}-{round(100 * check_fraction(sparsity, 'sparsity'), 2):g}.pt"


def create_pruning_pipeline(profile: str | Profile | None = None, sparsity: float = 0.9, epochs: int | None = None,
                            out: str | Path | None = None, *, temperature: float = 4.0, alpha: float = 0.7,
                            scope: str = "global", prune_fraction: float = 0.75, frequency: int | None = None,
                            lr: float | None = None, seed: int | None = None, device=None,
                            progress: bool = True) -> PipelineResult:
    """Prune the profile's baseline to ``sparsity`` by gradual pruning with distillation; save and report.

    * ``epochs``: training epochs of the student (default: half the profile's baseline epochs). The
      sparsity ramps up over the first ``prune_fraction`` of the steps (cubic schedule, masks updated
      every ``frequency`` steps, default about 20 updates) and stays at the target for the rest.
    * ``temperature``/``alpha``: the distillation loss (``alpha=0`` trains on the labels only).
    * ``lr``: SGD's starting learning rate, annealed to zero with a cosine (default: the profile's
      initial LR; on the quick profile it recovers far more at high sparsity than a small constant LR).
    * ``out``: checkpoint path (default :func:`default_checkpoint_path`), checked to be a file path in a
      writable folder (created if missing); written atomically.
    * ``device``: where to train (default: the best available); one this machine lacks is refused.
    * ``seed``: seeds every random source and the order of the training batches (default: the
      profile's seed); the data split and the baseline stay those of the profile.

    Returns a :class:`PipelineResult`; its ``model`` is the pruned network with permanent zeros.
    Every argument is checked before any training starts.

    Under ``torchrun`` (``WORLD_SIZE`` > 1, or a process group already started) it trains with
    DistributedDataParallel, one process per GPU (``cuda:LOCAL_RANK``, backend nccl) or on the CPU
    (gloo); see the module docstring. Every process returns the same model and numbers (its ``history``
    is that of its own share of the batches); only rank 0 writes ``out``.
    """
    prof = get_profile(profile)
    target = check_fraction(sparsity, "sparsity")
    epochs = max(1, prof.epochs // 2) if epochs is None else check_int(epochs, "epochs", 1)
    prune_fraction = check_share(prune_fraction, "prune_fraction")
    if frequency is not None:
        check_int(frequency, "frequency", 1)
    check_scope(scope)
    temperature, alpha = check_positive(temperature, "temperature"), check_unit(alpha, "alpha", ALPHA_HINT)
    lr = None if lr is None else check_positive(lr, "lr")
    seed = prof.seed if seed is None else seed
    seed = check_int(seed, "seed", 0)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False; got {progress!r}")
    out = _check_out(default_checkpoint_path(prof, target) if out is None else out)
    device = get_device(device)  # also: is it on this machine?
    run = functools.partial(_run, prof, target, epochs, out, temperature=temperature, alpha=alpha, scope=scope,
                            prune_fraction=prune_fraction, frequency=frequency, lr=lr, seed=seed)
    if not _distributed_requested():
        return run(device=device, progress=progress, world=None)
    device = _rank_device(device, _env_int("LOCAL_RANK", 0))
    with _process_group(device) as world:
        return run(device=device, progress=progress and world.rank == 0, world=world)


def _run(prof: Profile, target: float, epochs: int, out: Path, *, temperature: float, alpha: float, scope: str,
         prune_fraction: float, frequency: int | None, lr: float | None, seed: int, device: torch.device,
         progress: bool, world: _World | None) -> PipelineResult:
    """:func:`create_pruning_pipeline` on checked arguments, in one process (``world=None``) or as one rank."""
    if world is None:
        loaders = get_loaders(prof)
        baseline = train_baseline(prof, device=device, progress=progress)
    else:  # rank 0 first: it may download the data and train the baseline; the others then read its files
        if world.rank == 0:
            loaders = get_loaders(prof)
            baseline = train_baseline(prof, device=device, progress=progress)
        dist.barrier(group=world.group)
        if world.rank != 0:
            loaders = get_loaders(prof)
            baseline = train_baseline(prof, device=device, progress=progress)
    teacher = baseline.model.to(device)
    student = copy.deepcopy(teacher).requires_grad_(True)
    dense_accuracy = evaluate(teacher, loaders.test, device=device)["accuracy"]

    train_loader = loaders.train if world is None else _shard(loaders.train, world, seed)
    total_steps = epochs * len(train_loader)
    end_step = max(1, round(prune_fraction * total_steps))
    frequency = frequency or max(1, round(end_step / 20))
    pruner = GradualPruner(student, 0.0, target, begin_step=0, end_step=end_step, frequency=frequency, scope=scope)
    trained, callbacks = student, [pruner]
    if world is not None:
        trained = _wrap(student, pruner, prof, device)
        callbacks = [_SetEpoch(train_loader.sampler), pruner, _SameMasks(pruner, world)]
    distiller = DistillationFineTuner(trained, teacher, temperature=temperature, alpha=alpha, device=device)

    seed_everything(seed, loaders=loaders.train)  # the loader's generator too: the order of the batches
    optimizer = build_optimizer(trained, prof, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = distiller.fit(train_loader, epochs, optimizer=optimizer, scheduler=scheduler, profile=prof,
                            val_loader=loaders.val, callbacks=callbacks, progress=progress, desc=f"prune to {target:.0%}")
    if not pruner.done:  # cannot happen with end_step <= total_steps; a guard for future edits
        raise RuntimeError(f"the schedule ended before end_step={end_step}")
    if world is not None:
        _broadcast_batchnorm(student)  # rank 0's running statistics: from here on, one model on every rank
        _check_same(world, student.state_dict().values(), "the trained student (weights, masks, statistics)")

    make_permanent(student)
    pruned_accuracy = evaluate(student, loaders.test, device=device)["accuracy"]
    reached = _prunable_sparsity(student)
    counts = count_parameters(student)
    total, nonzero = counts["total_params"], counts["non_zero_params"]
    if world is None or world.rank == 0:
        save_checkpoint(
            _checkpoint(student, prof, target_sparsity=target, sparsity=reached, test_accuracy=pruned_accuracy,
                        dense_accuracy=dense_accuracy, epochs=epochs, temperature=distiller.temperature,
                        alpha=distiller.alpha, seed=seed),
            out,
        )
    checkpoint_bytes = out.stat().st_size if world is None else _size_from_rank0(out, world)
    return PipelineResult(
        profile=prof.name, target_sparsity=target, sparsity=reached, dense_accuracy=dense_accuracy,
        pruned_accuracy=pruned_accuracy, epochs=epochs, total_params=total, nonzero_params=nonzero,
        dense_size_mb=total * 4 / 2**20, sparse_size_mb=nonzero * 4 / 2**20, checkpoint=out,
        checkpoint_mb=checkpoint_bytes / 2**20, temperature=distiller.temperature, alpha=distiller.alpha,
        history=history, sparsity_history=pruner.history, model=student,
    )


# ---------------------------------------------------------------------------------------------
# Many processes: torchrun, DistributedDataParallel
# ---------------------------------------------------------------------------------------------

# How long the other ranks wait for rank 0 to download the data and train a baseline that is not cached
# yet (the paper profile's takes hours on one GPU); torchrun stops every process as soon as one fails.
_BASELINE_WAIT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class _World:
    """This process's place in a torchrun job; ``group`` (gloo, CPU tensors) carries the pipeline's own
    small collectives: the wait for the baseline, the checksums, the checkpoint's size."""

    rank: int
    size: int
    group: object


def _env_int(name: str, default: int) -> int:
    """The integer torchrun put in the environment variable ``name`` (``default`` when it is unset)."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer (torchrun sets it); got {raw!r}") from None


def _distributed_requested() -> bool:
    """True under torchrun with more than one process (or in an already started process group of > 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    size = _env_int("WORLD_SIZE", 1)
    if size > 1 and not dist.is_available():
        raise ValueError(f"WORLD_SIZE={size} asks for torch.distributed, which this build of torch lacks")
    return size > 1


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank``: ``cuda:LOCAL_RANK`` (one GPU per process), or the CPU."""
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"under torchrun the pipeline trains on cuda (one GPU per process) or cpu; got device "
                         f"{str(device)!r} (pass --device cpu)")
    if device.index is not None:
        raise ValueError(f"under torchrun each process uses the GPU cuda:LOCAL_RANK; pass device 'cuda', not "
                         f"{str(device)!r} (choose GPUs with CUDA_VISIBLE_DEVICES)")
    count = torch.cuda.device_count()
    if not 0 <= local_rank < count:
        raise ValueError(f"LOCAL_RANK={local_rank} has no GPU: this machine has {count}; start at most {count} "
                         f"processes per machine (torchrun --nproc-per-node {count})")
    return torch.device("cuda", local_rank)


@contextmanager
def _process_group(device: torch.device):
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) unless one is already running, and
    leave it at the end, on error too. Yields this process's :class:`_World`."""
    own = not dist.is_initialized()
    if own:
        if device.type == "cuda":
            torch.cuda.set_device(device)
            bind = {"device_id": device} if _accepts(dist.init_process_group, "device_id") else {}  # torch >= 2.3
            dist.init_process_group("nccl", **bind)
        else:
            dist.init_process_group("gloo")
    group = None
    try:
        group = dist.new_group(backend="gloo", timeout=_BASELINE_WAIT)
        yield _World(dist.get_rank(), dist.get_world_size(), group)
    finally:
        if own:
            dist.destroy_process_group()
        elif group is not None:
            dist.destroy_process_group(group)


class _DeviceShard:
    """This rank's share of a :class:`~pruning_utils.data.DeviceLoader`: the images ``sampler`` picks,
    in batches of ``batch_size``, cropped, flipped and normalised on the device by the loader itself."""

    def __init__(self, loader: DeviceLoader, sampler: DistributedSampler, batch_size: int):
        self.loader, self.sampler, self.batch_size = loader, sampler, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        return self.loader._batches(torch.tensor(list(self.sampler), dtype=torch.long), self.batch_size)


def _shard(loader, world: _World, seed: int):
    """``loader``'s training data split across the ranks by a DistributedSampler (seeded with ``seed``;
    :class:`_SetEpoch` reshuffles it every epoch), in batches of ``ceil(batch_size / world size)``: the
    batches of all ranks together are as large as one process's, so the steps and the schedule stay the
    same. (The sampler repeats up to ``size - 1`` images so that every rank gets as many.)"""
    sampler = DistributedSampler(loader.dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)
    batch_size = math.ceil(loader.batch_size / world.size)
    if isinstance(loader, DeviceLoader):
        return _DeviceShard(loader, sampler, batch_size)
    return DataLoader(loader.dataset, batch_size=batch_size, sampler=sampler, num_workers=loader.num_workers,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers,
                      pin_memory=loader.pin_memory, generator=torch.Generator().manual_seed(seed))


class _SetEpoch(Callback):
    """``sampler.set_epoch(epoch)`` before every epoch: a new order each epoch, the same on every rank."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def on_train_begin(self, state) -> None:
        self.sampler.set_epoch(state.epoch)

    def on_epoch_end(self, state) -> None:
        self.sampler.set_epoch(state.epoch + 1)


def _wrap(student: nn.Module, pruner: GradualPruner, prof: Profile, device: torch.device) -> DistributedDataParallel:
    """``student`` in DistributedDataParallel, its masks in place first (the schedule's step 0, which the
    pruner would apply when training begins) so that DDP sees the model it will train."""
    pruner.step(0)
    if prof.channels_last:  # what train() would do, before DDP registers the parameters
        student.to(memory_format=torch.channels_last)
    # No buffer broadcast before every forward: masks are identical by construction (checked by
    # _SameMasks), and batch norm keeps each rank's statistics until _broadcast_batchnorm hands rank 0's
    # to all at the end. (torch 2.14 renamed broadcast_buffers to forward_sync_buffers.)
    name = "forward_sync_buffers" if _accepts(DistributedDataParallel, "forward_sync_buffers") else "broadcast_buffers"
    return DistributedDataParallel(student.to(device), device_ids=[device.index] if device.type == "cuda" else None,
                                   **{name: False})


def _accepts(fn, name: str) -> bool:
    """True when ``fn`` (a function or a class) takes the keyword argument ``name`` in this torch."""
    return name in inspect.signature(fn).parameters


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _checksum(tensors) -> torch.Tensor:
    """An int64 checksum of the bits of ``tensors`` (position-weighted, so a moved value changes it too;
    int64 arithmetic wraps around, the same way on every rank)."""
    total = torch.zeros((), dtype=torch.int64)
    for i, tensor in enumerate(tensors, start=1):
        flat = tensor.detach().contiguous().reshape(-1)
        bits = flat.view(_SAME_SIZE_INT[flat.element_size()]) if flat.element_size() in _SAME_SIZE_INT else (
            flat.view(torch.uint8))
        bits = bits.to(torch.int64)
        weights = torch.arange(1, bits.numel() + 1, dtype=torch.int64, device=bits.device)
        total = total * 1_000_003 + i + int((bits * weights).sum())
    return total


def _check_same(world: _World, tensors, what: str) -> None:
    """RuntimeError unless ``tensors`` are bit for bit the same on every rank (all-reduce of a checksum)."""
    mine = _checksum(list(tensors))
    both = torch.stack([mine, -mine])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=world.group)  # the largest and the smallest checksum
    if int(both[0]) != -int(both[1]):
        raise RuntimeError(f"{what} differ between the {world.size} processes (rank {world.rank}'s checksum is "
                           f"{int(mine)}, others reach {int(both[0])} or {-int(both[1])})")


class _SameMasks(Callback):
    """After every mask update of ``pruner``: the masks must be the same on every rank, else RuntimeError."""

    def __init__(self, pruner: GradualPruner, world: _World):
        self.pruner, self.world, self.checked = pruner, world, None

    def on_train_begin(self, state) -> None:
        self._check()

    def on_step_end(self, state) -> None:
        if self.pruner.last_pruned_step != self.checked:
            self._check()

    def _check(self) -> None:
        self.checked = self.pruner.last_pruned_step
        masks = [_mask_buffer(module) for _, module in self.pruner.layers]
        _check_same(self.world, [m for m in masks if m is not None], f"the masks of step {self.checked}")


@torch.no_grad()
def _broadcast_batchnorm(model: nn.Module) -> None:
    """Give every rank rank 0's batch-norm running statistics (DDP synchronises gradients, not buffers)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for buffer in module.buffers(recurse=False):
                dist.broadcast(buffer, src=0)


def _size_from_rank0(out: Path, world: _World) -> int:
    """The size of the checkpoint rank 0 wrote; the other ranks wait here until it is written."""
    size = torch.tensor([out.stat().st_size if world.rank == 0 else 0], dtype=torch.int64)
    dist.broadcast(size, src=0, group=world.group)
    return int(size)


def _check_out(out) -> Path:
    """``out`` as a Path to a file the pipeline can write: not a directory, in a folder that is (or can be
    made) a writable directory. Checked before any training starts."""
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a file path (str or Path); got {out!r} ({type(out).__name__})")
    out = Path(out)
    if out.is_dir() or not out.name:
        raise ValueError(f"out must be a file path, not a directory; got {str(out)!r}")
    if out.exists() and not out.is_file():
        raise ValueError(f"out must be a regular file path; {str(out)!r} exists and is not a file")
    folder = out.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folders below it will be created
    if not existing.is_dir():
        raise ValueError(f"out's folder {str(folder)!r} cannot be created: {str(existing)!r} is a file, "
                         "not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"out's folder {str(existing)!r} is not writable; choose another --out")
    return out


def _prunable_sparsity(model: nn.Module) -> float:
    """Zeros among the prunable weights of ``model`` (what the pipeline reports as ``sparsity``)."""
    return _sparsity(model, prunable_layers(model))


# What a pipeline checkpoint holds (every key, with its type): written by _checkpoint, read by load_pruned_model.
_CHECKPOINT_KEYS = {
    "state_dict": dict, "profile": str, "model": str, "model_kwargs": dict, "input_shape": (list, tuple),
    "target_sparsity": numbers.Real, "sparsity": numbers.Real, "test_accuracy": numbers.Real,
    "dense_accuracy": numbers.Real, "epochs": numbers.Integral, "temperature": numbers.Real,
    "alpha": numbers.Real, "seed": numbers.Integral,
}
# Recorded sparsity vs the zeros in the weights: the same count, so only float rounding may differ.
_SPARSITY_TOLERANCE = 1e-9


def _checkpoint(model: nn.Module, prof: Profile, **meta) -> dict:
    """The pipeline checkpoint of ``model`` (permanent zeros) with the metadata ``meta`` (every other key of
    ``_CHECKPOINT_KEYS``)."""
    return {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "profile": prof.name,
        "model": prof.model,
        "model_kwargs": prof.model_kwargs.to_dict(),  # plain containers: weights_only reads them
        "input_shape": list(input_shape(prof.dataset)),
        **meta,
    }


def load_pruned_model(path: str | Path, device=None) -> tuple[nn.Module, dict]:
    """Rebuild the network a pipeline checkpoint holds; return ``(model, checkpoint dict)``.

    Loaded with ``weights_only=True`` (:func:`pruning_utils.load_checkpoint`) and checked: the file must
    hold every key the pipeline writes, with values of the right types and ranges; its profile must be one
    of the course's; its model and model_kwargs must build a network that takes its weights and its
    input shape; and its recorded sparsity must be the zeros in those weights. Anything else raises
    :class:`~pruning_utils.CheckpointError` naming the file and what is wrong.
    """
    device = get_device(device)
    ckpt = load_checkpoint(path, keys=_CHECKPOINT_KEYS, what="pipeline checkpoint")
    where = f"pipeline checkpoint {str(path)!r}"

    def fail(message: str) -> CheckpointError:
        return CheckpointError(f"{where} {message}")

    state = ckpt["state_dict"]
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise fail(f"has a state_dict entry {bad!r} that is not a tensor ({type(state[bad]).__name__})")
    if ckpt["profile"] not in PROFILES:
        raise fail(f"names profile {ckpt['profile']!r}, which this course does not have (one of {sorted(PROFILES)})")
    try:
        check_fraction(ckpt["target_sparsity"], "target_sparsity")
        for key in ("sparsity", "test_accuracy", "dense_accuracy", "alpha"):
            check_unit(ckpt[key], key)
        check_int(ckpt["epochs"], "epochs", 1)
        check_positive(ckpt["temperature"], "temperature")
        check_int(ckpt["seed"], "seed", 0)
        shape = check_numbers(ckpt["input_shape"], "input_shape", lambda v, n: check_int(v, n, 1))
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width); got {ckpt['input_shape']!r}")
    except (TypeError, ValueError) as exc:
        raise fail(f"has a bad value: {exc}") from exc
    try:
        model = build_model(ckpt["model"], **ckpt["model_kwargs"])
    except (TypeError, ValueError) as exc:
        raise fail(f"records model {ckpt['model']!r} with model_kwargs {ckpt['model_kwargs']!r}, which does not "
                   f"build ({_first_line(exc)})") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise fail(f"has weights that do not fit its model {ckpt['model']!r} {ckpt['model_kwargs']!r} "
                   f"({' '.join(str(exc).split())[:300]})") from exc
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except (RuntimeError, ValueError) as exc:
        raise fail(f"records input_shape {shape}, which its model does not take ({_first_line(exc)})") from exc
    reached = _prunable_sparsity(model)
    if not math.isclose(reached, ckpt["sparsity"], rel_tol=0.0, abs_tol=_SPARSITY_TOLERANCE):
        raise fail(f"records sparsity {ckpt['sparsity']:.10g}, but its prunable weights are {reached:.10g} zeros")
    return model.to(device), ckpt


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pruning_utils.pipeline",
        description="Gradual magnitude pruning with distillation from the cached dense baseline; "
                    "saves the pruned checkpoint and prints the results.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="course profile (default: $PRUNING_PROFILE or quick)")
    parser.add_argument("--sparsity", type=float, default=0.9, help="target sparsity in [0, 1) (default 0.9)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: half the baseline's)")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint path (default: in the cache directory)")
    parser.add_argument("--temperature", type=float, default=4.0, help="distillation temperature > 0 (default 4)")
    parser.add_argument("--alpha", type=float, default=0.7, help="weight of the teacher's term in [0, 1] (default 0.7)")
    parser.add_argument("--lr", type=float, default=None, help="starting learning rate (default: the profile's)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's)")
    parser.add_argument("--scope", choices=("global", "layer"), default="global", help="magnitude ranking scope")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        threads = getattr(get_profile(args.profile), "num_threads", None)
        if threads:  # as setup_course does in the notebooks: the quick profile runs on one thread
            torch.set_num_threads(threads)
        result = create_pruning_pipeline(args.profile, args.sparsity, args.epochs, args.out,
                                         temperature=args.temperature, alpha=args.alpha, scope=args.scope,
                                         lr=args.lr, seed=args.seed, device=args.device,
                                         progress=not args.no_progress)
        rank = _env_int("RANK", 0)  # under torchrun: rank 0 prints, the others have the same result
    except (TypeError, ValueError, OSError) as exc:  # CheckpointError is a ValueError
        parser.error(" ".join(str(exc).split()))  # one line; exits with status 2 after the usage line
    if rank == 0:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
