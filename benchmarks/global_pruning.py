"""Global magnitude pruning: our ``ThresholdPruner`` against ``torch.nn.utils.prune.global_unstructured``.

Run from the repository root::

    python benchmarks/global_pruning.py             # ResNet-50 (random init), 5 rounds
    python benchmarks/global_pruning.py --rounds 9
    python benchmarks/global_pruning.py --quick     # ResNet-18, finishes in seconds

Each timed call prunes a fresh, unpruned copy of the same seeded model; the copies are made outside the
timed region. Ours and torch's are timed alternately (which goes first alternates per round too), and
the table reports the median time of each and the median of the per-round ratios ours/torch, since a
shared machine's speed drifts between rounds. The "pruned" columns count the weights that are exactly
zero in the effective (masked) weights of every Conv2d/Linear layer; "wanted" is ``round(target * total)``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.utils.prune as prune
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from pruning_utils import ThresholdPruner  # noqa: E402

PRUNABLE = (nn.Conv2d, nn.Linear)


def build_model(quick: bool) -> nn.Module:
    from torchvision.models import resnet18, resnet50

    torch.manual_seed(0)
    model = (resnet18 if quick else resnet50)(weights=None)
    return model.eval()


def prunable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, PRUNABLE)]


def prune_ours(model: nn.Module, target: float) -> None:
    ThresholdPruner(model).apply_global_pruning(target)


def prune_torch(model: nn.Module, target: float) -> None:
    params = [(m, "weight") for m in prunable(model)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=target)


@torch.no_grad()
def pruned_count(model: nn.Module) -> tuple[int, int]:
    """(weights exactly zero in the effective weights, total prunable weights)."""
    zeros = total = 0
    for m in prunable(model):
        w = m.weight  # ours: parametrization original * mask; torch: the hook's weight_orig * weight_mask
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros, total


def timed(fn, model: nn.Module, target: float) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(model, target)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds per target (default 5; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="ResNet-18 instead of ResNet-50")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.9])
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    base = build_model(args.quick)
    name = "resnet18" if args.quick else "resnet50"
    total = sum(m.weight.numel() for m in prunable(base))
    print(f"machine: {machine()}")
    print(f"model: {name}(weights=None), seed 0, {len(prunable(base))} Conv2d/Linear layers, "
          f"{total:,} prunable weights | {args.rounds} rounds, median time, median of per-round ratios\n")

    # warm-up on a small model: the first calls pay for lazy imports and first-use set-up
    for fn in (prune_ours, prune_torch):
        torch.manual_seed(1)
        fn(nn.Sequential(nn.Conv2d(3, 64, 3), nn.Flatten(), nn.Linear(256, 1000)), 0.5)

    rows = []
    for target in args.targets:
        wanted = round(target * total)
        times = {"ours": [], "torch": []}
        counts = {}
        for r in range(args.rounds):
            order = [("ours", prune_ours), ("torch", prune_torch)]
            if r % 2:
                order.reverse()
            for label, fn in order:
                model = copy.deepcopy(base)  # fresh, unpruned copy, outside the timed region
                times[label].append(timed(fn, model, target))
                counts[label] = pruned_count(model)[0]
                del model
        ratios = [o / t for o, t in zip(times["ours"], times["torch"])]
        rows.append((target, statistics.median(times["ours"]), statistics.median(times["torch"]),
                     statistics.median(ratios), counts["ours"], counts["torch"], wanted))

    print("| target | ours (s) | torch (s) | ratio ours/torch | ours pruned | torch pruned | wanted |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for target, t_ours, t_torch, ratio, c_ours, c_torch, wanted in rows:
        print(f"| {target:g} | {t_ours:.4f} | {t_torch:.4f} | {ratio:.2f}x | {c_ours:,} | {c_torch:,} | {wanted:,} |")
    exact = all(r[4] == r[6] and r[5] == r[6] for r in rows)
    print(f"\nexact sparsity (pruned == wanted) for both: {'yes' if exact else 'NO'}")


if __name__ == "__main__":
    main()
