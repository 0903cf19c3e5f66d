"""The dependency-graph pruner (``prune_graph``) on 25 classification models: what it prunes, and whether it is right.

Run from the repository root::

    python benchmarks/structured_zoo.py                       # all 25 models, 30% and 50%
    python benchmarks/structured_zoo.py --models resnet18 mobilenet_v2 --ratios 0.5

Every model is randomly initialised (seed 0) and in eval mode; inputs are 64x64 where the model allows,
224x224 where it needs it (ViT-B/16, Swin-T, MaxViT-T) and 299x299 for Inception v3. Columns:

* outcome: ``ok`` (a pruned model came back and passed every check), ``clear error`` (a ValueError with a
  message), ``crash`` (any other exception), ``WRONG`` (a check below failed: a silently wrong model);
* groups: coupled groups pruned / frozen (frozen: every unit must stay; groups holding a parameter only
  are not counted; the reasons, layer numbers written ``#``, are in the notes, the model's output left out);
* params and FLOPs: how many times fewer (``flops.count_flops``, batch 1);
* ratio 0: the model pruned at ratio 0 gives outputs ``torch.equal`` to the original's;
* oracle: the groups whose pruning only removes the pruned channels' contributions (no norm reads across
  them) are pruned alone, and the result is compared to the ORIGINAL with those channels' consumer input
  columns zeroed (computed here): the largest difference relative to the output's scale (``-`` when no such
  group). This runs on a copy with Kaiming-scaled weights and random norm statistics (:func:`lively`), and
  in brackets is how much that pruning changes the output: the check must see a difference far below it
  (MaxViT's float32 attention amplifies rounding to ~1e-5; in float64 the same check gives ~1e-13);
* fwd+bwd: a training-mode forward and backward on a batch of 2 run on the pruned model;
* time: tracing plus pruning, seconds.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine, quiet_malloc  # noqa: E402
from pruning_utils import MLP, SmallCNN, cifar_resnet  # noqa: E402
from pruning_utils.depgraph import DependencyGraph  # noqa: E402
from pruning_utils.flops import count_flops  # noqa: E402


def _tv(name: str, **kwargs):
    def build():
        import torchvision

        return getattr(torchvision.models, name)(weights=None, **kwargs)
    return build


MODELS = {  # key: (table name, builder, input size)
    "small_cnn": ("SmallCNN", lambda: SmallCNN(), (1, 1, 8, 8)),
    "mlp": ("MLP", lambda: MLP(), (1, 784)),
    "resnet20": ("ResNet-20", lambda: cifar_resnet(20), (1, 3, 32, 32)),
    "resnet56": ("ResNet-56", lambda: cifar_resnet(56), (1, 3, 32, 32)),
    "resnet18": ("ResNet-18", _tv("resnet18"), (1, 3, 64, 64)),
    "resnet50": ("ResNet-50", _tv("resnet50"), (1, 3, 64, 64)),
    "wide_resnet50_2": ("Wide-ResNet-50-2", _tv("wide_resnet50_2"), (1, 3, 64, 64)),
    "vgg11": ("VGG-11", _tv("vgg11"), (1, 3, 64, 64)),
    "vgg16_bn": ("VGG-16-bn", _tv("vgg16_bn"), (1, 3, 64, 64)),
    "alexnet": ("AlexNet", _tv("alexnet"), (1, 3, 64, 64)),
    "vit_b_16": ("ViT-B/16", _tv("vit_b_16"), (1, 3, 224, 224)),
    "resnext50_32x4d": ("ResNeXt-50", _tv("resnext50_32x4d"), (1, 3, 64, 64)),
    "mobilenet_v2": ("MobileNet v2", _tv("mobilenet_v2"), (1, 3, 64, 64)),
    "mobilenet_v3_large": ("MobileNet v3-L", _tv("mobilenet_v3_large"), (1, 3, 64, 64)),
    "efficientnet_b0": ("EfficientNet-B0", _tv("efficientnet_b0"), (1, 3, 64, 64)),
    "mnasnet1_0": ("MNASNet 1.0", _tv("mnasnet1_0"), (1, 3, 64, 64)),
    "regnet_y_400mf": ("RegNet-Y-400MF", _tv("regnet_y_400mf"), (1, 3, 64, 64)),
    "shufflenet_v2_x1_0": ("ShuffleNet v2", _tv("shufflenet_v2_x1_0"), (1, 3, 64, 64)),
    "squeezenet1_0": ("SqueezeNet 1.0", _tv("squeezenet1_0"), (1, 3, 64, 64)),
    "densenet121": ("DenseNet-121", _tv("densenet121"), (1, 3, 64, 64)),
    "googlenet": ("GoogLeNet", _tv("googlenet", aux_logits=False, init_weights=True), (1, 3, 64, 64)),
    "inception_v3": ("Inception v3", _tv("inception_v3", aux_logits=False, init_weights=True), (1, 3, 299, 299)),
    "convnext_tiny": ("ConvNeXt-T", _tv("convnext_tiny"), (1, 3, 64, 64)),
    "swin_t": ("Swin-T", _tv("swin_t"), (1, 3, 224, 224)),
    "maxvit_t": ("MaxViT-T", _tv("maxvit_t"), (1, 3, 224, 224)),
}

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SLOW_FOR_TORCH_PRUNING = {"vit_b_16", "swin_t", "maxvit_t"}


def zeroed_reference(model: nn.Module, graph: DependencyGraph) -> nn.Module:
    """The original with the removed channels' consumer input columns zeroed (the independent check)."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for (name, kind), kept in graph.kept.items():
            if kind != "in":
                continue
            m = ref.get_submodule(name)
            if isinstance(m, _CONVS) and m.groups > 1 and m.in_channels // m.groups == 1:
                continue  # depthwise: its outputs are the same channels, zeroed where they are read
            width = m.weight.shape[1]
            if isinstance(m, _CONVS) and m.groups > 1:
                kept = kept[kept < width]
            m.weight[:, sorted(set(range(width)) - set(kept.tolist()))] = 0
    return ref


@torch.no_grad()
def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy whose signal neither vanishes nor is a constant, so the oracle compares something.

    torchvision's random init can leave the logits equal to the head's bias (GoogLeNet's std-0.01
    weights) or the blocks' output scaled by 1e-6 (ConvNeXt's layer scale); a check that pruned and
    zeroed models agree would then hold for any pruning. Here Conv/Linear weights are re-drawn with
    Kaiming scaling, norms get random statistics and affine parameters, tiny parameters become ones.
    """
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (*_CONVS, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
        for p in m.parameters(recurse=False):
            if p.numel() and float(p.abs().max()) < 1e-3:
                p.fill_(1.0)
    return model.eval()


def run(key: str, ratio: float) -> dict:
    name, build, size = MODELS[key]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(size)
    row = dict(model=name, ratio=ratio, input="x".join(map(str, size[1:])))
    try:
        start = time.perf_counter()
        graph = DependencyGraph(model, x)
        pruned = graph.prune(ratio)
        row["time"] = time.perf_counter() - start
    except ValueError as exc:
        row.update(outcome="clear error", notes=str(exc).splitlines()[0][:120])
        return row
    except Exception as exc:  # noqa: BLE001 - a crash is what this column reports
        row.update(outcome="crash", notes=f"{type(exc).__name__}: {exc}"[:120])
        traceback.print_exc()
        return row
    problems = []
    pruned_groups = len(graph.removed)
    # frozen groups with a layer in them (groups of a parameter alone, e.g. Swin's bias tables, not counted)
    frozen = [g for g in graph.groups if g.frozen and any(not w.startswith("dim ") for _, w, _ in g.members)]
    row["groups"] = f"{pruned_groups} / {len(frozen)}"
    reasons = {}
    for g in frozen:
        if "model's output" in g.frozen:
            continue
        reason = re.sub(r" \(node '[^']*'\)", "", re.sub(r"\d+", "#", g.frozen))[:110]
        reasons[reason] = reasons.get(reason, 0) + 1
    row["notes"] = "; ".join(f"{n}x {r}" for r, n in sorted(reasons.items(), key=lambda t: -t[1])[:2])
    total_b, _ = count_flops(model, size)
    total_a, _ = count_flops(pruned, size)
    params_b = sum(p.numel() for p in model.parameters())
    params_a = sum(p.numel() for p in pruned.parameters())
    row["params"], row["flops"] = params_b / params_a, total_b / total_a
    with torch.no_grad():
        same = DependencyGraph(model, x).prune(0.0)
        row["ratio0"] = bool(torch.equal(same(x), model(x)))
    if not row["ratio0"]:
        problems.append("ratio 0 differs")
    live = lively(model)
    graph_live = DependencyGraph(live, x)
    exact = [g.index for g in graph_live.groups if g.prunable and g.exact]
    row["oracle"] = row["change"] = None
    if exact:
        only = graph_live.prune(ratio, groups=exact)
        ref = zeroed_reference(live, graph_live)
        with torch.no_grad():
            got, want, dense = only(x), ref(x), live(x)
        scale = want.abs().max().clamp(min=1e-12)
        row["oracle"] = float((got - want).abs().max() / scale)
        row["change"] = float((dense - want).abs().max() / scale)
        if row["oracle"] > 1e-3 or not row["oracle"] < 1e-2 * row["change"]:
            problems.append(f"oracle differs by {row['oracle']:.1e} (pruning changes the output by "
                            f"{row['change']:.1e})")
    try:
        pruned.train()
        pruned(torch.cat([x, x])).sum().backward()
        row["fwdbwd"] = True
    except Exception as exc:  # noqa: BLE001
        row["fwdbwd"] = False
        problems.append(f"backward: {type(exc).__name__}")
    row["outcome"] = "ok" if not problems else "WRONG"
    if problems:
        row["notes"] = "; ".join(problems)
    return row


def _fmt(row: dict) -> str:
    def f(v, spec):
        return "-" if v is None else format(v, spec)
    yes = {True: "yes", False: "NO", None: "-"}
    return (f"| {row['model']} | {row['input']} | {row['ratio']:.0%} | {row['outcome']} | {row.get('groups', '-')} "
            f"| {f(row.get('params'), '.2f')}x | {f(row.get('flops'), '.2f')}x | {yes[row.get('ratio0')]} "
            f"| {f(row.get('oracle'), '.0e')} ({f(row.get('change'), '.0e')}) | {yes[row.get('fwdbwd')]} | {f(row.get('time'), '.1f')} "
            f"| {row.get('notes', '')} |")


def cross_check(keys, ratio: float) -> None:
    """Pruned shapes against Torch-Pruning's, when it is installed (an optional extra, never required)."""
    try:
        import torch_pruning as tp  # noqa: F401
    except ImportError:
        print("\ntorch_pruning is not installed: the cross-check against it is skipped.")
        return
    print("\nCross-check against torch_pruning (MagnitudePruner, L1, same ratio, the layers making the logits "
          "ignored):")
    slow = [k for k in keys if k in SLOW_FOR_TORCH_PRUNING]
    if slow:
        print(f"- skipped {', '.join(slow)}: Torch-Pruning ran out of time and memory on the attention models "
              f"(issue 19)")
    for key in (k for k in keys if k not in SLOW_FOR_TORCH_PRUNING):
        name, build, size = MODELS[key]
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(size)
        try:
            graph = DependencyGraph(model, x)
            ours = graph.prune(ratio)
            theirs = copy.deepcopy(model)
            # the layers that make the logits stay whole, as ours keep them (the output's group)
            heads = [n for g in graph.groups if g.frozen and "model's output" in g.frozen
                     for n, what, _ in g.members if what.startswith("weight dim 0")]
            tp.pruner.MagnitudePruner(theirs, x, importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=ratio,
                                      ignored_layers=[theirs.get_submodule(n) for n in heads]).step()
        except Exception as exc:  # noqa: BLE001
            print(f"- {name}: not compared ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        a, b = dict(ours.named_parameters()), dict(theirs.named_parameters())
        diff = [n for n in a if n in b and a[n].shape != b[n].shape]
        try:
            with torch.no_grad():
                theirs(x)
            runs = "their model runs"
        except Exception as exc:  # noqa: BLE001
            runs = f"their model fails: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        print(f"- {name}: {len(a) - len(diff)} of {len(a)} parameter shapes agree"
              + (f"; differ e.g. {diff[0]}: ours {tuple(a[diff[0]].shape)}, theirs {tuple(b[diff[0]].shape)}"
                 if diff else "") + f" ({runs})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.3, 0.5])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    quiet_malloc()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()} | load {load()}\n")
    print("| model | input | ratio | outcome | groups pruned / frozen | params | FLOPs | ratio 0 equal | oracle (change) "
          "| fwd+bwd | time (s) | notes |")
    print("|---|---|---:|---|---:|---:|---:|---|---:|---|---:|---|")
    counts: dict[float, dict[str, int]] = {}
    for key in args.models:
        for ratio in args.ratios:
            row = run(key, ratio)
            counts.setdefault(ratio, {}).setdefault(row["outcome"], 0)
            counts[ratio][row["outcome"]] += 1
            print(_fmt(row), flush=True)
    print()
    for ratio, c in counts.items():
        print(f"{ratio:.0%}: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items())) + f" of {sum(c.values())}")
    cross_check(args.models, args.ratios[-1])


if __name__ == "__main__":
    main()
