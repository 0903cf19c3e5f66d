"""How much training each notebook does on the gpu profile, and the minutes that makes on a GPU.

    python benchmarks/gpu_notebook_minutes.py                       # every topic notebook, in order
    python benchmarks/gpu_notebook_minutes.py notebooks/06_lr_rewinding.ipynb
    python benchmarks/gpu_notebook_minutes.py --epoch-seconds 6.5   # a measured ResNet-20 epoch (gpu_epoch.py)

No machine of this course can download CIFAR-10, and the work of a notebook does not depend on the
pixels, so each notebook runs here as it is, on the CPU, under ``gpu_count``: the gpu profile with
every budget, epoch count, batch size and model unchanged, but reading a generated CIFAR-10-format
set of 100 training and 50 test images. Inside the notebook's kernel a forward hook on every Conv and
Linear layer adds up the multiply-accumulates (MACs) each call does, three times over where a
backward pass follows (forward + the two products of the backward). A batch of the training loader
stands for the gpu profile's whole epoch of 45,000 images, a batch of the test loader for its
10,000 images and of the validation loader for its 5,000: the work of each call is scaled by the
real split's size over the generated one's. Forwards on tensors that come from no loader (a fixed
batch for timing, a list of calibration batches) count once. A loop that takes only the first few
batches of a loader counts as a whole epoch of it (an upper bound; such passes are forward-only
calibration and are small here).

The result is a count, the same on any machine: each notebook's work in *ResNet-20 epochs* (one
epoch = 45,000 images x 3 x the dense ResNet-20's 40.6 M MACs per image). Minutes follow from one
number, the seconds a GPU takes for one such epoch: measure it with ``benchmarks/gpu_epoch.py`` and
pass ``--epoch-seconds``. Without it the table gives an **estimate** at ``--tflops`` effective
(default 2: small 16-64-channel convolutions at batch 256 are bound by memory traffic on a T4, whose
fp16 tensor-core peak is 65 TFLOPS). Time outside the counted layers (data augmentation on the
device, optimizer steps, the CPU latency cells, SparseGPT's matrix algebra) is not in the estimate.
The baseline is trained in the first notebook that needs it and read from the cache after, as on
Colab, so notebook 00 carries it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = {"train": 45_000, "val": 5_000, "test": 10_000}  # the gpu profile's CIFAR-10 splits
GENERATED = (100, 50)  # training and test images of the generated set (the validation split is 10% of training)

# Runs in every notebook kernel (IPython startup file): the counting profile and the hooks.
STARTUP = r'''
import json as _json, os as _os, math as _math
import torch as _torch
from torch import nn as _nn
import pruning_utils.config as _cfg
import pruning_utils.data as _data

_cfg.PROFILES["gpu_count"] = _cfg.PROFILES["gpu"].replace(name="gpu_count", dataset="cifar10_smoke", num_threads=1)
_SCALE = _json.loads(_os.environ["PRUNING_COUNT_SCALE"])   # split size -> real / generated, per kind
_OUT = _os.environ["PRUNING_COUNT_FILE"]
_totals = {"train_macs": 0.0, "eval_macs": 0.0}
_tags, _state = {}, {"depth": 0, "scale": 1.0}

def _save():
    tmp = _OUT + ".tmp"
    with open(tmp, "w") as f:
        _json.dump(_totals, f)
    _os.replace(tmp, _OUT)

_batches = _data.DeviceLoader._batches
def _counted_batches(self, order, batch_size):
    if self.pad or self.flip:  # the augmented training split
        scale = _SCALE["train"]
    else:                      # the test or validation split by its size; any other loader counts once
        scale = {_SCALE["test_size"]: _SCALE["test"], _SCALE["val_size"]: _SCALE["val"]}.get(len(self.images), 1.0)
    for x, y in _batches(self, order, batch_size):
        _tags.clear()
        _tags[x.data_ptr()] = scale
        yield x, y
    _save()
_data.DeviceLoader._batches = _counted_batches

def _pre(module, args):
    if _state["depth"] == 0:
        first = args[0] if args and isinstance(args[0], _torch.Tensor) else None
        _state["scale"] = _tags.get(first.data_ptr(), 1.0) if first is not None else 1.0
    _state["depth"] += 1

def _post(module, args, output):  # called even when the forward raised (always_call), so depth stays right
    _state["depth"] = max(0, _state["depth"] - 1)
    if not isinstance(output, _torch.Tensor):
        return
    if isinstance(module, (_nn.Conv1d, _nn.Conv2d, _nn.Conv3d)):
        macs = output.numel() * (module.in_channels // module.groups) * _math.prod(module.kernel_size)
    elif isinstance(module, _nn.Linear):
        macs = output.numel() * module.in_features
    else:
        return
    backward = _torch.is_grad_enabled() and module.weight.requires_grad
    _totals["train_macs" if backward else "eval_macs"] += macs * (3 if backward else 1) * _state["scale"]

_nn.modules.module.register_module_forward_pre_hook(_pre)
_nn.modules.module.register_module_forward_hook(_post, always_call=True)
import atexit as _atexit
_atexit.register(_save)
'''


def resnet20_epoch_macs() -> float:
    """MACs of one training epoch of the dense ResNet-20 on the gpu profile: 45,000 x 3 x forward."""
    from pruning_utils import cifar_resnet, count_flops

    flops, _ = count_flops(cifar_resnet(20), (1, 3, 32, 32))  # 2 FLOPs per multiply-accumulate
    forward = flops / 2
    return REAL["train"] * 3 * forward, forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to count (default: every topic notebook)")
    parser.add_argument("--epoch-seconds", type=float, default=None,
                        help="measured seconds of one gpu-profile ResNet-20 epoch on your GPU (gpu_epoch.py)")
    parser.add_argument("--tflops", type=float, default=2.0,
                        help="effective TFLOPS for the estimate when --epoch-seconds is not given (default 2)")
    args = parser.parse_args(argv)
    for flag, value in (("--epoch-seconds", args.epoch_seconds), ("--tflops", args.tflops)):
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error(f"{flag} must be a positive finite number; got {value}")
    from pruning_utils.course import find_notebooks, run_notebook
    from pruning_utils.data import write_smoke_cifar10

    notebooks = [Path(p) for p in args.notebooks] or find_notebooks(ROOT / "notebooks")
    epoch_macs, forward = resnet20_epoch_macs()
    if args.epoch_seconds is not None:
        epoch_s, basis = args.epoch_seconds, f"a measured {args.epoch_seconds:g} s per ResNet-20 epoch"
    else:
        epoch_s = 2 * epoch_macs / (args.tflops * 1e12)
        basis = (f"ESTIMATE: {args.tflops:g} effective TFLOPS, i.e. {epoch_s:.1f} s per ResNet-20 epoch "
                 f"(not measured on a GPU)")
    work = Path(tempfile.mkdtemp(prefix="gpu-count-"))
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-count.py").write_text(STARTUP)
    cache = work / "cache"
    write_smoke_cifar10(cache / "data" / "cifar-10-smoke-batches-py", n_train=GENERATED[0], n_test=GENERATED[1])
    n_val = round(0.1 * GENERATED[0])
    scale = {"train": REAL["train"] / (GENERATED[0] - n_val), "val": REAL["val"] / n_val,
             "test": REAL["test"] / GENERATED[1], "test_size": GENERATED[1], "val_size": n_val}
    os.environ.update(IPYTHONDIR=str(work / "ipython"), PRUNING_PROFILE="gpu_count", PRUNING_CACHE_DIR=str(cache),
                      PRUNING_COUNT_SCALE=json.dumps(scale))
    print(f"machine (counting only): {machine()}")
    print(f"ResNet-20: {forward / 1e6:.1f} M MACs per 32x32 image; one gpu-profile epoch = {epoch_macs / 1e12:.2f} T MACs")
    print(f"minutes from {basis}\n")
    print("| notebook | training (ResNet-20 epochs) | evaluation (ResNet-20 epochs) | minutes on the GPU | counted in (s, CPU) |")
    print("|---|---:|---:|---:|---:|")
    total = 0.0
    for nb in notebooks:
        out = work / f"{nb.stem}.json"
        os.environ["PRUNING_COUNT_FILE"] = str(out)
        start = time.perf_counter()
        try:
            run_notebook(nb, timeout=3600, save=False)
        except Exception as exc:  # report and go on: one notebook's failure says nothing of the others
            print(f"| {nb.stem} | failed: {type(exc).__name__}: {str(exc).splitlines()[-1][:120] if str(exc) else ''} | | | |")
            continue
        seconds = time.perf_counter() - start
        counts = json.loads(out.read_text())
        train_e, eval_e = counts["train_macs"] / epoch_macs, counts["eval_macs"] / epoch_macs
        minutes = (train_e + eval_e) * epoch_s / 60
        total += minutes
        print(f"| {nb.stem} | {train_e:.1f} | {eval_e:.1f} | {minutes:.1f} | {seconds:.0f} |", flush=True)
    print(f"| all | | | {total:.0f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
