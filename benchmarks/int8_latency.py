"""int8 on the CPU: when quantized weights make a model faster, and when they only make it smaller.

Run from the repository root::

    python benchmarks/int8_latency.py              # batches 1, 64, 256; 7 rounds; 1 thread
    python benchmarks/int8_latency.py --threads 2 --batches 256 1024

A 1024-wide MLP (three Linear layers, 2.1 M weights, random init, seed 0) is timed with
``compare_latency`` (alternating rounds, median of the per-round ratios) as float32, with torchao's
int8 weight-only quantization (``Int8WeightOnlyConfig``: int8 storage, float math), with torchao's
int8 dynamic-activation + int8-weight quantization (``Int8DynamicActivationInt8WeightConfig``: int8
matrix multiplies), and pruned to 90% (zeros in a dense tensor) then w8a8: unstructured zeros change
nothing for a dense int8 kernel. The course's ``quantize_int8`` is simulated quantization (float
weights on the int8 grid) and is never faster than float32 by construction; it is not timed.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine, quiet_malloc  # noqa: E402
from pruning_utils import MLP, compare_latency, magnitude_prune, make_permanent, prunable_layers  # noqa: E402


def models() -> dict:
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao 0.18's import-time deprecation line
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    torch.manual_seed(0)
    base = MLP(in_features=1024, num_classes=1024, hidden=(1024, 1024)).eval()
    w8, w8a8 = copy.deepcopy(base), copy.deepcopy(base)
    quantize_(w8, Int8WeightOnlyConfig())
    quantize_(w8a8, Int8DynamicActivationInt8WeightConfig())
    sparse = copy.deepcopy(base)
    magnitude_prune(prunable_layers(sparse), 0.9)
    make_permanent(sparse)
    quantize_(sparse, Int8DynamicActivationInt8WeightConfig())
    return {"float32": base, "int8 weights (w8)": w8, "int8 weights + activations (w8a8)": w8a8,
            "90% pruned, then w8a8": sparse}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    quiet_malloc()
    timed = models()
    print(f"machine: {machine()} | load {load()} | {args.threads} thread(s), {args.rounds} rounds")
    print("| batch | " + " | ".join(f"{label} (ms)" for label in timed) + " | " +
          " | ".join(f"{label} vs float32" for label in list(timed)[1:]) + " |")
    print("|---:|" + "---:|" * (2 * len(timed) - 1))
    for batch in args.batches:
        x = torch.randn(batch, 1, 32, 32)  # MLP flattens: 1024 inputs
        with torch.inference_mode():
            result = compare_latency(timed, x, rounds=args.rounds, min_run_time=0.1, num_threads=args.threads)
        times = " | ".join(f"{result[label]['seconds'] * 1e3:.3f}" for label in timed)
        ratios = " | ".join(f"{result[label]['speedup']:.2f}x" for label in list(timed)[1:])
        print(f"| {batch} | {times} | {ratios} |")


if __name__ == "__main__":
    main()
