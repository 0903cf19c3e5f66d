"""Structured (filter) pruning: parameters, FLOPs and measured CPU latency, dense vs pruned.

Run from the repository root::

    python benchmarks/structured_speedup.py            # ResNet-56, ResNet-18 and VGG-11 (32x32), 7 rounds
    python benchmarks/structured_speedup.py --models resnet18 vgg11
    python benchmarks/structured_speedup.py --rounds 9
    python benchmarks/structured_speedup.py --quick    # ResNet-20 and a narrow VGG, finishes in seconds
    python benchmarks/structured_speedup.py --threads 1 --round-to 1 16 --fold-bn   # the README's second table
    python benchmarks/structured_speedup.py --threads 1 --round-to 1 --models mobilenet_v2 resnet18 --residual both

Models are randomly initialised (seed 0): which filters go does not change sizes or speed. The two
ResNets (the course's CIFAR ResNet-56, and torchvision's ResNet-18 on 32x32 inputs) lose inner block
channels only (``prune_resnet``), VGG-11 loses filters of every conv and the matching columns of its
Linear head (``prune_simple_cnn``). Each pruned model is timed against the dense one
with ``compare_latency``: ``torch.utils.benchmark`` with all of torch's threads, dense and pruned in
alternating order for several rounds, the median of the per-round speedups. The goal of issue 5 is a
latency speedup of at least 0.8 x the FLOPs reduction; the last columns say whether each run met it.
With ``--fold-bn`` both models are timed as deployed: every BatchNorm folded into the conv before it
(``fold_batchnorm``), which removes a fixed per-call cost that pruning cannot shrink. MobileNetV2
(torchvision, 32x32) loses the channels of its inverted residuals' expansions (depthwise convs follow
them). ``--residual both`` times each model twice: inner channels only (the default, Li et al.) and with
``residual=True``, which also prunes the channels the additions join (a ResNet's block outputs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine, quiet_malloc  # noqa: E402
from pruning_utils import StructuredPruner, cifar_resnet, compare_latency, fold_batchnorm  # noqa: E402

UNSTABLE = 1.5  # dense slowest/fastest round above this: the machine was busy, the speedup is unreliable
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg(config=VGG11, num_classes: int = 10) -> nn.Sequential:
    """VGG with BatchNorm for 32x32 inputs: conv-BN-ReLU blocks, max-pooling to 1x1, a Linear head."""
    layers, prev = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(prev, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            prev = v
    layers += [nn.Flatten(), nn.Linear(prev, num_classes)]
    return nn.Sequential(*layers)


MODELS = {  # --models key: (table name, builder)
    "resnet56": ("ResNet-56", lambda: cifar_resnet(56)),
    "resnet18": ("ResNet-18", lambda: torchvision.models.resnet18(num_classes=10)),
    "vgg11": ("VGG-11", vgg),
    "mobilenet_v2": ("MobileNetV2", lambda: torchvision.models.mobilenet_v2(num_classes=10)),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-20 and a quarter-width VGG-11, short timing")
    parser.add_argument("--rounds", type=int, default=None, help="alternating timing rounds (default 7, quick 2)")
    parser.add_argument("--min-run-time", type=float, default=None,
                        help="seconds per blocked_autorange measurement (default 0.5, quick 0.05)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="which models to prune and time (default: all)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8],
                        help="kept-channel multiples to compare (1 = no rounding)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--residual", choices=["no", "yes", "both"], default="no",
                        help="also prune the channels additions join (block outputs): no (default), yes, both")
    parser.add_argument("--fold-bn", action="store_true",
                        help="time dense and pruned with BatchNorm folded into the convs (fold_batchnorm), "
                             "the form they are deployed in")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 7)
    min_run_time = args.min_run_time or (0.05 if args.quick else 0.5)
    if rounds < 1 or min_run_time <= 0:
        parser.error("--rounds must be >= 1 and --min-run-time > 0")

    quiet_malloc()
    torch.manual_seed(0)
    if args.quick:
        models = {"ResNet-20": cifar_resnet(20), "VGG-11/4": vgg(tuple(v if v == "M" else v // 4 for v in VGG11))}
    else:
        models = {MODELS[key][0]: MODELS[key][1]() for key in args.models}
    print(f"machine: {machine()}")
    print(f"load average at start: {load()} | {rounds} rounds x blocked_autorange({min_run_time} s), "
          f"median of per-round speedups | input 3x32x32, random init (seed 0)"
          f"{' | BatchNorm folded into the convs' if args.fold_bn else ''}\n", flush=True)

    example = torch.randn(1, 3, 32, 32)
    deploy = (lambda m: fold_batchnorm(m, example)) if args.fold_bn else (lambda m: m)
    rows = []
    residuals = {"no": [False], "yes": [True], "both": [False, True]}[args.residual]
    for base, model in models.items():
      model.eval()
      timed_dense = deploy(model)
      for residual in residuals:
        name = f"{base}, block outputs too" if residual else base
        for ratio in args.ratios:
            widths_seen = {}
            for round_to in args.round_to:
                pruner = StructuredPruner(model, round_to=round_to, input_size=(1, 3, 32, 32), residual=residual)
                pruned = pruner.prune(ratio).eval()
                report = pruner.report
                widths = tuple(r.out_after for r in report.rows)
                if widths in widths_seen:  # rounding changed nothing: same model, no need to time it again
                    widths_seen[widths][2].append(round_to)
                    continue
                speedups = []
                for batch in args.batches:
                    x = torch.randn(batch, 3, 32, 32)
                    timing = compare_latency({"dense": timed_dense, "pruned": deploy(pruned)}, x, rounds=rounds,
                                             min_run_time=min_run_time)
                    dense_times = timing["dense"]["times"]
                    spread = max(dense_times) / min(dense_times)  # same model, same input: should be ~1
                    speedups.append((timing["pruned"]["speedup"], spread > UNSTABLE))
                    print(f"  {name} {ratio:.0%} round_to={round_to} batch {batch}: dense "
                          f"{timing['dense']['seconds'] * 1e3:.2f} ms, "
                          f"pruned {timing['pruned']['seconds'] * 1e3:.2f} ms, "
                          f"dense slowest/fastest round {spread:.2f}", flush=True)
                rows.append([name, ratio, [round_to], report.params_ratio, report.flops_ratio, speedups])
                widths_seen[widths] = rows[-1]

    batches = args.batches
    print()
    print("| model | filters pruned | round_to | params ratio | FLOPs ratio | "
          + " | ".join(f"speedup b{b}" for b in batches) + " | "
          + " | ".join(f"speedup/FLOPs b{b}" for b in batches) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * (2 * len(batches)))
    met, unstable = [], 0
    for name, ratio, round_to, p, f, speedups in rows:
        eff = [s / f for s, _ in speedups]
        met += [e >= 0.8 for e in eff]
        unstable += sum(u for _, u in speedups)
        print(f"| {name} | {ratio:.0%} | {' = '.join(map(str, round_to))} | {p:.2f}x | {f:.2f}x | "
              + " | ".join(f"{s:.2f}x{' ⚠' if u else ''}" for s, u in speedups) + " | "
              + " | ".join(f"{e:.3f}{'' if e >= 0.8 else ' ✗'}" for e in eff) + " |")
    print(f"\ngoal speedup >= 0.8 x FLOPs ratio met in {sum(met)} of {len(met)} measurements (✗ = missed); "
          f"'1 = 8' in round_to: rounding kept the same widths, timed once")
    if unstable:
        print(f"⚠ {unstable} measurement(s) unstable: the dense model's slowest round took over "
              f"{UNSTABLE}x its fastest, "
              f"so something else was using the CPU; rerun on a quiet machine"
              + (" or with --threads 1" if torch.get_num_threads() > 1 else ""))
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
