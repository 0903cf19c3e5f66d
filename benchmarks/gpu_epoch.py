"""How long one training epoch of the gpu profile takes here, and what its fast path buys.

    python benchmarks/gpu_epoch.py                 # the gpu profile on the best device (a GPU if present)
    python benchmarks/gpu_epoch.py --batches 10    # time fewer batches (a CPU takes minutes per epoch)

Data: synthetic CIFAR-shaped uint8 images (45,000, the gpu profile's training split), since no machine
here can download CIFAR-10; the time of an epoch does not depend on the pixels. Both rows run the one
training loop (`train`) on a `DeviceLoader` holding the images on the device, side by side in this
run: the gpu profile as it is (mixed precision, channels_last) and the same profile in fp32 without
channels_last. `--batches` times that many batches after a warm-up and extrapolates to the epoch: the
table says so. The last column is the estimated baseline time (the profile's epochs x one epoch).
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import load, machine, quiet_malloc
from pruning_utils import DeviceLoader, build_model_for, get_device, get_profile, train
from pruning_utils.data import DATASETS
from pruning_utils.training import autocast_dtype

TRAIN_IMAGES = 45_000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(prof, device: torch.device, batches: int | None, images: torch.Tensor, labels: torch.Tensor):
    """Seconds per epoch of ``prof``'s training on ``device`` (timed on ``batches`` batches if given)."""
    spec = DATASETS["cifar10"]
    count = len(images) if batches is None else min(len(images), batches * prof.batch_size)
    loader = DeviceLoader(images[:count], labels[:count], batch_size=prof.batch_size, mean=spec.mean,
                          std=spec.std, shuffle=True, pad=4, flip=True, device=device,
                          generator=torch.Generator().manual_seed(0), channels_last=prof.channels_last)
    warm = DeviceLoader(images[: 3 * prof.batch_size], labels[: 3 * prof.batch_size], batch_size=prof.batch_size,
                        mean=spec.mean, std=spec.std, pad=4, flip=True, device=device,
                        channels_last=prof.channels_last)
    torch.manual_seed(0)
    model = build_model_for(prof)
    train(model, warm, epochs=1, profile=prof, device=device, progress=False)  # kernels chosen, memory allocated
    _sync(device)
    start = time.perf_counter()
    train(model, loader, epochs=1, profile=prof, device=device, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return seconds * TRAIN_IMAGES / count, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="gpu", help="profile to time (default gpu)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: the best available)")
    parser.add_argument("--batches", type=int, default=None, help="time this many batches and extrapolate")
    args = parser.parse_args(argv)
    quiet_malloc()
    prof = get_profile(args.profile)
    device = get_device(args.device)
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
    else:
        where = machine()
    print(f"device: {device} | {where} | load {load()}")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (TRAIN_IMAGES, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (TRAIN_IMAGES,), generator=g)
    plain = prof.replace(precision="fp32", channels_last=False)
    rows = []
    for label, p in ((f"{prof.name} as profiled", prof), (f"{prof.name}, fp32, no channels_last", plain)):
        seconds, timed = time_epoch(p, device, args.batches, images, labels)
        rows.append((label, p, seconds, timed))
    base = rows[1][2]
    print(f"\nmodel {prof.model} {dict(prof.model_kwargs)}, batch {prof.batch_size}, {TRAIN_IMAGES:,} images per epoch"
          + ("" if args.batches is None else f"; timed {rows[0][3]:,} images and extrapolated"))
    print("| run | autocast | channels_last | s / epoch | images / s | vs fp32 | baseline (est.) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for label, p, seconds, _ in rows:
        dtype = autocast_dtype(p, device)
        print(f"| {label} | {'fp32' if dtype is None else str(dtype).split('.')[-1]} | {p.channels_last} | "
              f"{seconds:.1f} | {TRAIN_IMAGES / seconds:,.0f} | {base / seconds:.2f}x | "
              f"{p.epochs * seconds / 60:.1f} min for {p.epochs} epochs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
