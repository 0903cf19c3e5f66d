"""Size on disk: a pruned model's dense ``state_dict`` against the course's sparse checkpoint formats.

Run from the repository root::

    python benchmarks/checkpoint_size.py            # LeNet-300-100 MLP, ResNet-20 and a 2048-wide Linear stack
    python benchmarks/checkpoint_size.py --sparsities 0.5 0.9

Each model (seed 0) is pruned with the course's global ``magnitude_prune`` and written four ways, all
with ``torch.save``: the plain ``state_dict`` (dense), ``save_sparse`` with a bitmask (one bit per weight
+ the non-zero values), with CSR (int32 column indices + row pointers + values), and the bitmask with
fp16 values. Every sparse file is read back with ``load_sparse`` and compared with the dense weights
(exact for fp32). Two more columns quantize the kept weights first (Deep Compression's second and third
steps): ``quantize_int8`` then ``values="int8"``, and ``share_weights(model, 5)`` (32 shared values per
layer) then ``values="codebook"`` with ``compress=True`` (LZMA); both files must give back the quantized
model exactly. Sizes are bytes of the files. Goal (issue 8): the sparse checkpoint >= 7x smaller
than dense at 90% sparsity. At 90% a bitmask file can be at most 1 / (0.1 + 1/32) = 7.6x smaller with
fp32 values, so per-tensor overhead must stay small: it does for wide layers, less so for small models.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from pruning_utils import (  # noqa: E402
    MLP,
    cifar_resnet,
    make_permanent,
    quantize_int8,
    share_weights,
    load_sparse,
    magnitude_prune,
    plain_state_dict,
    prunable_layers,
    save_checkpoint,
    save_sparse,
)

GOAL_SPARSITY, GOAL_RATIO = 0.9, 7.0


def models() -> dict:
    return {
        "LeNet-300-100 (266k)": lambda: MLP(),
        "ResNet-20 (270k)": lambda: cifar_resnet(20),
        "Linear stack 3x2048 (12.6M)": lambda: nn.Sequential(
            nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048)),
    }


def sizes(model: nn.Module, folder: Path) -> dict:
    reference = plain_state_dict(model)
    out = {"dense": save_checkpoint(reference, folder / "dense.pt").stat().st_size}
    for label, options in (("bitmask", {}), ("csr", {"encoding": "csr"}), ("bitmask fp16", {"fp16": True})):
        path = save_sparse(model, folder / f"{label}.pt", **options)
        out[label] = path.stat().st_size
        restored = load_sparse(path)
        exact = all(torch.equal(restored[k], v) for k, v in reference.items())
        if not options.get("fp16") and not exact:
            raise AssertionError(f"{label} checkpoint did not round-trip exactly")
    make_permanent(model)
    for label, quantize, options in (("int8", quantize_int8, {"values": "int8"}),
                                     ("5-bit + LZMA", lambda m: share_weights(m, 5),
                                      {"values": "codebook", "compress": True})):
        quantized = copy.deepcopy(model)
        quantize(quantized)
        path = save_sparse(quantized, folder / "quantized.pt", **options)
        out[label] = path.stat().st_size
        restored, expected = load_sparse(path), plain_state_dict(quantized)
        if not all(torch.equal(restored[k], v) for k, v in expected.items()):
            raise AssertionError(f"{label} checkpoint did not give back the quantized model exactly")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95])
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    print("sizes in KiB; ratio = dense bytes / sparse bytes; fp32 formats verified to round-trip exactly\n")
    print("| model | sparsity | dense | bitmask | ratio | CSR | ratio | bitmask fp16 | ratio | int8 | ratio "
          "| 5-bit + LZMA | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    goal = []
    with tempfile.TemporaryDirectory(prefix="checkpoint-size-") as tmp:
        for name, build in models().items():
            for target in args.sparsities:
                torch.manual_seed(0)
                model = build()
                magnitude_prune(prunable_layers(model), target)
                s = sizes(model, Path(tmp))
                cells = [f"{s['dense'] / 1024:,.1f}"]
                for label in ("bitmask", "csr", "bitmask fp16", "int8", "5-bit + LZMA"):
                    cells += [f"{s[label] / 1024:,.1f}", f"{s['dense'] / s[label]:.2f}x"]
                if abs(target - GOAL_SPARSITY) < 1e-9:
                    goal.append((name, s["dense"] / s["bitmask"]))
                print(f"| {name} | {100 * target:g}% | " + " | ".join(cells) + " |", flush=True)
    if goal:
        detail = ", ".join(f"{n}: {r:.2f}x" for n, r in goal)
        met = [n for n, r in goal if r >= GOAL_RATIO]
        print(f"\ngoal >= {GOAL_RATIO:g}x smaller at {100 * GOAL_SPARSITY:g}% (bitmask, fp32 values): "
              f"met for {len(met)} of {len(goal)} models ({detail})")


if __name__ == "__main__":
    main()
