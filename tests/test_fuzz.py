"""Every public name of the package, driven with bad values: a clear error naming the argument, or a result.

Each case calls one public function or method with good arguments except one, which gets a bad value
(NaN, inf, negative, bool, str, an iterator, a wrong shape or dtype, a wrong type). The call must raise
``TypeError`` or ``ValueError`` (the package's ``CheckpointError`` and ``DatasetNotAvailableError`` count)
whose message names the argument; any other exception (a crash: IndexError, RuntimeError from deep inside
torch, ZeroDivisionError, ...), a silent return, or a hang (> 30 s) fails the case.
"""

from __future__ import annotations

import math
import re
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pruning_utils as pu
from pruning_utils import exercises as ex

NAN, INF = float("nan"), float("inf")
REAL_BAD = [NAN, INF, -INF, True, "0.5", [0.5], 1 + 1j]
FRACTION_BAD = REAL_BAD + [-0.1, 1.0, 1.5]
UNIT_BAD = REAL_BAD + [-0.1, 1.5]
POSITIVE_BAD = REAL_BAD + [0, -1.0]
CHOICE_BAD = ["", "nonsense", 3, True]
MODEL_BAD = [None, "model", 3, torch.zeros(2)]
TENSOR_BAD = [None, [1.0, 2.0], "x", 3]
FLAG_BAD = ["no", 0, None]


def int_bad(minimum: int) -> list:
    return [1.5, NAN, True, "3", [3], minimum - 1]


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return pu.SmallCNN(widths=(4, 8), input_size=8)


def pruned_cnn() -> nn.Module:
    model = cnn()
    pu.magnitude_prune(pu.prunable_layers(model), 0.5)
    return model


def loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)),
                      batch_size=16)


LOADER_BAD = [None, [], "loader", 3, [(torch.zeros(2, 1, 8, 8),)]]
GROUPS_BAD = [None, "groups", 3, [], ["blocks.0.attn"]]


def _mlp_stats():
    torch.manual_seed(0)
    model = pu.MLP(16, 4, (8,))
    return model, pu.collect_input_stats(model, [torch.randn(8, 16)])


def _layer_stats(k=16):
    return pu.LayerStats(n=4, col_norm=torch.ones(k), hessian=torch.eye(k))


STATS_BAD = [None, {}, "stats", [1], {"net.fc0": 3}, {"nope": None}, {"nope": _layer_stats()}]
LAYERS_BAD = [3, ["nope"], [], "nope", [("x", nn.Linear(2, 2))], [3]]


def resnet8() -> nn.Module:
    torch.manual_seed(0)
    return pu.cifar_resnet(8, in_channels=1)


def vit() -> nn.Module:
    torch.manual_seed(0)
    return pu.TinyViT(dim=16, depth=1, heads=2)
TINY = pu.get_profile("quick").replace(
    epochs=1, model_kwargs={"in_channels": 1, "num_classes": 10, "widths": (4, 8), "input_size": 8})


@dataclass
class Case:
    label: str
    build: Callable[[], tuple[Callable, dict]]  # fresh (callable, good keyword arguments) for every call
    bad: dict[str, list] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # words an error may use for an argument


def _optim(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _rewind_weights():
    pruner = pu.LRRewindPruner(cnn(), rewind_epoch=1, total_epochs=3, profile=TINY)
    optimizer = _optim(pruner.model)
    pruner.save_rewind_point(optimizer)
    return pruner.rewind_weights, dict(optimizer=optimizer)


CASES = [
    # ---- checks, masks, unstructured ------------------------------------------------------------------
    Case("check_fraction", lambda: (pu.check_fraction, dict(value=0.5, name="amount")), {"value": FRACTION_BAD},
         {"value": ("amount",)}),
    Case("check_int", lambda: (pu.check_int, dict(value=3, name="count", minimum=1)), {"value": int_bad(1)},
         {"value": ("count",)}),
    Case("apply_mask", lambda: (pu.apply_mask, dict(module=nn.Linear(4, 4), mask=torch.ones(4, 4))),
         {"module": MODEL_BAD + [nn.ReLU()], "mask": TENSOR_BAD + [torch.ones(4, 3), torch.full((4, 4), 0.5),
                                                                    torch.full((4, 4), NAN)]}),
    Case("get_mask", lambda: (pu.get_mask, dict(module=nn.Linear(2, 2))), {"module": MODEL_BAD}),
    Case("is_masked", lambda: (pu.is_masked, dict(module=nn.Linear(2, 2))), {"module": MODEL_BAD}),
    Case("make_permanent", lambda: (pu.make_permanent, dict(model=pruned_cnn())), {"model": MODEL_BAD}),
    Case("enforce_masks", lambda: (pu.enforce_masks, dict(model=pruned_cnn())), {"model": MODEL_BAD}),
    Case("prunable_layers", lambda: (pu.prunable_layers, dict(model=cnn())),
         {"model": MODEL_BAD + [nn.ReLU()], "include": [3, ["nope"], [3.0]], "exclude": [3, ["nope"]],
          "types": [3, "Linear", (3,)], "skip_first": FLAG_BAD, "skip_last": FLAG_BAD, "allow_shared": FLAG_BAD},
         {"include": ("include",), "exclude": ("exclude",)}),
    Case("magnitude_prune", lambda: (pu.magnitude_prune, dict(layers=pu.prunable_layers(cnn()), target_sparsity=0.5)),
         {"layers": [None, [], "conv1", cnn(), [cnn()], [("x", nn.ReLU())], iter([("x", 3)])],
          "target_sparsity": FRACTION_BAD, "scope": CHOICE_BAD}),
    Case("smallest_k", lambda: (pu.smallest_k, dict(scores=torch.arange(10.0), k=3)),
         {"scores": TENSOR_BAD + [torch.tensor([1.0, NAN]), torch.ones(3, dtype=torch.bool)],
          "k": int_bad(0) + [11]}),
    Case("nm_mask", lambda: (pu.nm_mask, dict(weight_or_scores=torch.rand(4, 8), n=2, m=4)),
         {"weight_or_scores": TENSOR_BAD + [torch.rand(8), torch.rand(4, 6), torch.rand(0, 4), torch.ones(2, 4, dtype=torch.bool),
                                            torch.tensor([[1.0, NAN, 0.0, 0.0]]), nn.ReLU()],
          "n": int_bad(1) + [5], "m": int_bad(1) + [1]}),
    Case("apply_nm_sparsity", lambda: (pu.apply_nm_sparsity, dict(model_or_layers=pu.MLP(16, 4, (8,)), n=2, m=4)),
         {"model_or_layers": MODEL_BAD + [nn.ReLU(), [], [("x", 3)], cnn()], "n": int_bad(1) + [5], "m": int_bad(1),
          "score": [3, "magnitude", lambda name, module: torch.rand(3), lambda name, module: None,
                    lambda name, module: torch.full_like(module.weight, NAN)],
          "include": [3, ["nope"]], "exclude": [3, ["nope"]]},
         {"model_or_layers": ("model", "layer")}),
    Case("check_nm_pattern", lambda: (pu.check_nm_pattern, dict(model_or_module=pu.MLP(16, 4, (8,)), n=2, m=4)),
         {"model_or_module": MODEL_BAD + [nn.ReLU(), cnn()], "n": int_bad(1) + [5], "m": int_bad(1),
          "exclude": [3, ["nope"]]}, {"model_or_module": ("model", "layer")}),
    Case("int8_per_channel", lambda: (pu.int8_per_channel, dict(weight=torch.randn(4, 8))),
         {"weight": TENSOR_BAD + [torch.randn(8), torch.randn(0, 4), torch.ones(2, 4, dtype=torch.int64),
                                  torch.tensor([[1.0, NAN]]), torch.tensor([[1.0, INF]])]}),
    Case("quantize_int8", lambda: (pu.quantize_int8, dict(model=cnn())),
         {"model": MODEL_BAD + [nn.ReLU()], "include": [3, ["nope"]], "exclude": [3, ["nope"]]}),
    Case("share_weights", lambda: (pu.share_weights, dict(model=cnn(), bits=4)),
         {"model": MODEL_BAD + [nn.ReLU()], "bits": int_bad(1) + [9], "max_iter": int_bad(1),
          "include": [3, ["nope"]], "exclude": [3, ["nope"]]}),
    Case("TinyViT", lambda: (pu.TinyViT, dict(image_size=8, patch_size=2, in_channels=1, num_classes=10, dim=16,
                                               depth=1, heads=2, mlp_ratio=2)),
         {"image_size": int_bad(1) + [7], "patch_size": int_bad(1) + [3], "in_channels": int_bad(1),
          "num_classes": int_bad(1), "depth": int_bad(1), "dim": int_bad(1) + [15], "heads": int_bad(1) + [3],
          "mlp_ratio": POSITIVE_BAD},
         {"image_size": ("patch_size",), "dim": ("heads",), "heads": ("dim",)}),
    Case("UnitGroup", lambda: (pu.UnitGroup, dict(block="blocks.0.attn", kind="heads", units=2, size=8,
                                                  producers=["blocks.0.attn.q"], consumers=["blocks.0.attn.out"])),
         {"block": [None, "", 3], "kind": ["", "filters", 3, True], "units": int_bad(1), "size": int_bad(1),
          "producers": [3, [3], None], "consumers": [3, [3], None]}),
    Case("UnitGroup.indices", lambda: (pu.attention_head_groups(vit())[0].indices, dict(units=[0])),
         {"units": [[2], [-1], [0.5], [], [0, 0], "x", None]}),
    Case("attention_head_groups", lambda: (pu.attention_head_groups, dict(model=vit())), {"model": MODEL_BAD + [cnn()]}),
    Case("mlp_neuron_groups", lambda: (pu.mlp_neuron_groups, dict(model=vit())), {"model": MODEL_BAD + [cnn()]}),
    Case("weight_norm_importance", lambda: (pu.weight_norm_importance,
                                            dict(model=vit(), group=pu.mlp_neuron_groups(vit())[0])),
         {"model": MODEL_BAD + [cnn()], "group": [None, "blocks.0.mlp", 3]}),
    Case("activation_importance", lambda: (pu.activation_importance, dict(inputs=torch.randn(2, 1, 8, 8))),
         {"inputs": TENSOR_BAD + [torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.full((2, 1, 8, 8), NAN),
                                  torch.zeros(0, 1, 8, 8)]}),
    Case("units_to_keep", lambda: (pu.units_to_keep, dict(model=vit(), groups=pu.attention_head_groups(vit()), ratio=0.5,
                                                          importance="weight", round_to=1)),
         {"model": MODEL_BAD + [cnn()], "groups": GROUPS_BAD, "ratio": FRACTION_BAD,
          "importance": ["nonsense", 3, None, lambda m, g: torch.ones(1)], "round_to": int_bad(1)},
         {"model": ("group",)}),
    Case("prune_units", lambda: (pu.prune_units, dict(model=vit(), groups=pu.attention_head_groups(vit()),
                                                      keep={"blocks.0.attn": [1]})),
         {"model": MODEL_BAD + [cnn()], "groups": GROUPS_BAD,
          "keep": [None, [1], {}, {"blocks.0.attn": [2]}, {"blocks.0.attn": []}, {"blocks.0.attn": [0.5]},
                   {"blocks.0.attn": "0"}, {"blocks.9.attn": [0]}]},
         {"model": ("group",)}),
    Case("prune_heads", lambda: (pu.prune_heads, dict(model=vit(), ratio=0.5)),
         {"model": MODEL_BAD + [cnn()], "ratio": FRACTION_BAD, "importance": ["nonsense", 3, None],
          "verbose": FLAG_BAD, "groups": [3, ["a"], [999], [-1], "0"]}),
    Case("prune_mlp_neurons", lambda: (pu.prune_mlp_neurons, dict(model=vit(), ratio=0.5)),
         {"model": MODEL_BAD + [cnn()], "ratio": FRACTION_BAD, "importance": ["nonsense", 3, None],
          "verbose": FLAG_BAD, "round_to": int_bad(1)}),
    Case("collect_input_stats", lambda: (pu.collect_input_stats, dict(model=pu.MLP(16, 4, (8,)),
                                                                      batches=[torch.randn(8, 16)])),
         {"model": MODEL_BAD + [nn.ReLU()],
          "batches": [None, [], "x", 3, torch.randn(8, 16), [{"x": 1}], [3], [torch.full((2, 16), NAN)],
                      [torch.randn(2, 5)], [torch.ones(2, 16, dtype=torch.long)], iter([])],
          "layers": LAYERS_BAD, "device": ["nonsense", 3, True]}),
    Case("LayerStats", lambda: (pu.LayerStats, dict(n=4, col_norm=torch.ones(3), hessian=torch.eye(3))),
         {"n": int_bad(1),
          "col_norm": TENSOR_BAD + [torch.ones(3, 1), torch.tensor([1.0, NAN, 1.0]), torch.tensor([-1.0, 1, 1]),
                                    torch.ones(3, dtype=torch.long), torch.ones(0)],
          "hessian": TENSOR_BAD + [torch.eye(2), torch.ones(3), torch.full((3, 3), INF)]}),
    Case("wanda_scores", lambda: (pu.wanda_scores, dict(layer=nn.Linear(16, 8), stats=_layer_stats())),
         {"layer": MODEL_BAD + [nn.Conv2d(1, 1, 1), nn.Linear(4, 8)], "stats": [None, {}, "x", _layer_stats(4)]}),
    Case("wanda_prune", lambda: (pu.wanda_prune, dict(zip(("model", "stats"), _mlp_stats()), sparsity=0.5)),
         {"model": MODEL_BAD + [nn.ReLU(), pu.MLP(8, 4, (8,))], "stats": STATS_BAD, "sparsity": FRACTION_BAD,
          "layers": LAYERS_BAD, "score": CHOICE_BAD, "comparison": CHOICE_BAD, "n": [2], "m": [4]}),
    Case("wanda_prune.nm", lambda: (pu.wanda_prune, dict(zip(("model", "stats"), _mlp_stats()), n=2, m=4)),
         {"n": int_bad(1) + [5], "m": int_bad(1) + [3], "sparsity": [0.5], "comparison": ["layer"]}),
    Case("sparsegpt_prune", lambda: (pu.sparsegpt_prune, dict(zip(("model", "stats"), _mlp_stats()), sparsity=0.5)),
         {"model": MODEL_BAD + [nn.ReLU(), pu.MLP(8, 4, (8,))], "stats": STATS_BAD, "sparsity": FRACTION_BAD,
          "layers": LAYERS_BAD, "blocksize": int_bad(1), "percdamp": [NAN, INF, -1.0, True, "0.01", [0.01]]}),
    Case("sparsegpt_prune.nm", lambda: (pu.sparsegpt_prune, dict(zip(("model", "stats"), _mlp_stats()), n=2, m=4)),
         {"n": int_bad(1) + [5], "m": int_bad(1) + [3], "blocksize": [6], "sparsity": [0.5]}),
    Case("semi_structured_bytes", lambda: (pu.semi_structured_bytes, dict(n_rows=32, n_cols=64)),
         {"n_rows": int_bad(1) + [10], "n_cols": int_bad(1) + [100], "dtype": [None, "float16", torch.float64, 3]}),
    Case("check_layers", lambda: (pu.check_layers, dict(layers=pu.prunable_layers(cnn()))),
         {"layers": [None, [], "conv1", [nn.Linear(2, 2)], [("a", "b")]]}),
    Case("sparsity", lambda: (pu.sparsity, dict(model=cnn())), {"model": MODEL_BAD, "layers": ["conv1", [3], 3]}),
    Case("layer_sparsities", lambda: (pu.layer_sparsities, dict(model=cnn())), {"model": MODEL_BAD,
                                                                                "layers": ["conv1", [3], 3]}),
    Case("load_weights_keep_masks",
         lambda: (pu.load_weights_keep_masks, dict(model=pruned_cnn(), state_dict=pu.plain_state_dict(cnn(1)))),
         {"model": MODEL_BAD, "state_dict": [None, {}, [], "sd", {"conv1.weight": torch.zeros(1)}]}),
    Case("SimplePruner", lambda: (pu.SimplePruner, dict(model=cnn(), pruning_rate=0.5, verbose=False)),
         {"model": MODEL_BAD + [nn.ReLU()], "pruning_rate": FRACTION_BAD, "verbose": FLAG_BAD,
          "skip_first": FLAG_BAD}),
    Case("SimplePruner.apply_magnitude_pruning",
         lambda: (pu.SimplePruner(cnn(), verbose=False).apply_magnitude_pruning, dict(pruning_rate=0.5)),
         {"pruning_rate": FRACTION_BAD}),
    Case("SimplePruner.apply_std_threshold",
         lambda: (pu.SimplePruner(cnn(), verbose=False).apply_std_threshold, dict(quality=1.0)),
         {"quality": [NAN, INF, -1.0, "1", True, None, {"conv1": 1.0}, {"nope": 1.0}]}),
    Case("SimplePruner.get_sparsity", lambda: (pu.SimplePruner.get_sparsity, dict(module=nn.Linear(2, 2))),
         {"module": MODEL_BAD + [nn.ReLU()]}),
    Case("ThresholdPruner", lambda: (pu.ThresholdPruner, dict(model=cnn())),
         {"model": MODEL_BAD + [nn.ReLU()], "skip_last": FLAG_BAD}),
    Case("ThresholdPruner.apply_global_pruning",
         lambda: (pu.ThresholdPruner(cnn()).apply_global_pruning, dict(target_sparsity=0.5)),
         {"target_sparsity": FRACTION_BAD}),
    Case("ThresholdPruner.compute_threshold",
         lambda: (pu.ThresholdPruner.compute_threshold, dict(weights=torch.randn(10), percentile=50)),
         {"weights": TENSOR_BAD + [torch.zeros(0), torch.tensor([1.0, NAN]), torch.arange(3)],
          "percentile": REAL_BAD + [-1, 101, 0.9]}),
    Case("ThresholdPruner.create_mask",
         lambda: (pu.ThresholdPruner.create_mask, dict(weights=torch.randn(10), threshold=0.5)),
         {"weights": TENSOR_BAD, "threshold": [NAN, INF, "0.5", None, [0.5]]}),
    # ---- structured ---------------------------------------------------------------------------------
    Case("StructuredPruner", lambda: (pu.StructuredPruner, dict(model=cnn())),
         {"model": MODEL_BAD, "importance": ["nonsense", 3, None], "round_to": int_bad(1),
          "input_size": [3, "x", (0, 1), (1, NAN)]}),
    Case("StructuredPruner.prune", lambda: (pu.StructuredPruner(cnn()).prune, dict(prune_ratio=0.5)),
         {"prune_ratio": FRACTION_BAD}),
    Case("prune_simple_cnn", lambda: (pu.prune_simple_cnn, dict(model=cnn(), prune_ratio=0.5)),
         {"model": MODEL_BAD, "prune_ratio": FRACTION_BAD}),
    Case("prune_resnet", lambda: (pu.prune_resnet, dict(model=pu.cifar_resnet(20), prune_ratio=0.5)),
         {"model": MODEL_BAD, "prune_ratio": FRACTION_BAD}),
    Case("fold_batchnorm", lambda: (pu.fold_batchnorm, dict(model=cnn())),
         {"model": MODEL_BAD, "example_input": ["x", 3, torch.zeros(1, 3, 8, 8)]}),
    Case("find_channel_groups", lambda: (pu.find_channel_groups, dict(model=cnn())),
         {"model": MODEL_BAD, "exclude": [3, ["nope"]]}),
    Case("DependencyGraph", lambda: (pu.DependencyGraph, dict(model=cnn())),
         {"model": MODEL_BAD, "exclude": [3, ["nope"], [3]], "example_input": [[1.0, 2.0], "x", 3, torch.zeros(1, 3, 8, 8)],
          "input_size": [3, "x", (0, 1), (1, NAN), (1, 2, 8, 8)]}),
    Case("DependencyGraph.prune", lambda: (pu.DependencyGraph(cnn()).prune, dict(prune_ratio=0.5)),
         {"prune_ratio": FRACTION_BAD, "round_to": int_bad(1), "importance": ["nonsense", 3, None],
          "verbose": FLAG_BAD, "groups": [3, ["a"], [999], [-1], "0"]}),
    Case("prune_graph", lambda: (pu.prune_graph, dict(model=cnn(), prune_ratio=0.5)),
         {"model": MODEL_BAD, "prune_ratio": FRACTION_BAD, "round_to": int_bad(1), "importance": ["nonsense", 3],
          "exclude": [3, ["nope"]], "example_input": [[1.0, 2.0], "x", 3, torch.zeros(1, 3, 8, 8), torch.zeros(0, 1, 8, 8)],
          "input_size": [3, (0, 1), (1, 2, 8, 8)]}),
    # ---- models -------------------------------------------------------------------------------------
    Case("SmallCNN", lambda: (pu.SmallCNN, dict(in_channels=1, num_classes=10, widths=(4, 8), input_size=8)),
         {"in_channels": int_bad(1), "num_classes": int_bad(1), "input_size": int_bad(1),
          "widths": [3, "48", (0, 4), (4.5,), (), None]}),
    Case("MLP", lambda: (pu.MLP, dict(in_features=16, num_classes=4, hidden=(8,))),
         {"in_features": int_bad(1), "num_classes": int_bad(1), "hidden": [3, "8", (0,), (8.5,), None]}),
    Case("cifar_resnet", lambda: (pu.cifar_resnet, dict(depth=20)), {"depth": int_bad(8) + [21], "num_classes": int_bad(1)}),
    Case("build_model", lambda: (pu.build_model, dict(name="small_cnn")), {"name": CHOICE_BAD + [None]}),
    # ---- config -------------------------------------------------------------------------------------
    Case("get_profile", lambda: (pu.get_profile, dict(name="quick")), {"name": CHOICE_BAD}, {"name": ("profile",)}),
    Case("seed_everything", lambda: (pu.seed_everything, dict(seed=0)),
         {"seed": int_bad(0), "loaders": ["train", 3, [loader(), "val"]]}),
    Case("setup_course", lambda: (pu.setup_course, dict(verbose=False)), {"verbose": FLAG_BAD}),
    Case("get_device", lambda: (pu.get_device, dict(prefer="cpu")), {"prefer": ["nonsense", 3, True]},
         {"prefer": ("device",)}),
    Case("Profile.replace", lambda: (TINY.replace, dict(epochs=2)),
         {"epochs": int_bad(1), "lr": POSITIVE_BAD, "batch_size": int_bad(1), "seed": int_bad(0),
          "lr_milestones": [(0.5, 0.2), (1.5,), "0.5", (NAN,)], "weight_decay": [NAN, -1.0, "0"],
          "momentum": [NAN, -0.5, 1.5, "0.9"], "num_threads": int_bad(1)}),
    # ---- schedules ----------------------------------------------------------------------------------
    Case("per_iteration_rate", lambda: (pu.per_iteration_rate, dict(target_sparsity=0.9, num_iterations=3)),
         {"target_sparsity": FRACTION_BAD, "num_iterations": int_bad(1)}),
    Case("sparsity_schedule", lambda: (pu.sparsity_schedule, dict(target_sparsity=0.9, num_iterations=3)),
         {"target_sparsity": FRACTION_BAD, "num_iterations": int_bad(1)}),
    Case("iterative_targets", lambda: (pu.iterative_targets, dict(target_sparsity=0.9, per_round=0.2)),
         {"target_sparsity": FRACTION_BAD, "per_round": FRACTION_BAD + [0.0]}),
    Case("cubic_sparsity", lambda: (pu.cubic_sparsity, dict(step=5, initial_sparsity=0.0, final_sparsity=0.9,
                                                               begin_step=0, end_step=10)),
         {"step": [1.5, NAN, True, "3"], "initial_sparsity": FRACTION_BAD, "final_sparsity": FRACTION_BAD,
          "begin_step": int_bad(0), "end_step": int_bad(1)}),
    Case("pruning_steps", lambda: (pu.pruning_steps, dict(begin_step=0, end_step=10, frequency=2)),
         {"begin_step": int_bad(0), "end_step": int_bad(1), "frequency": int_bad(1)}),
    Case("GradualPruner", lambda: (pu.GradualPruner, dict(model=cnn(), final_sparsity=0.5, end_step=10, frequency=2)),
         {"model": MODEL_BAD, "initial_sparsity": FRACTION_BAD, "final_sparsity": FRACTION_BAD,
          "begin_step": int_bad(0), "end_step": int_bad(1), "frequency": int_bad(1), "scope": CHOICE_BAD}),
    Case("GradualPruner.step", lambda: (pu.GradualPruner(cnn(), end_step=10, frequency=2).step, dict(current_step=2)),
         {"current_step": [1.5, NAN, True, "3", None]}),
    # ---- training -----------------------------------------------------------------------------------
    Case("build_optimizer", lambda: (pu.build_optimizer, dict(model=cnn(), profile=TINY)),
         {"model": MODEL_BAD, "profile": CHOICE_BAD, "lr": POSITIVE_BAD}),
    Case("build_scheduler", lambda: (pu.build_scheduler, dict(optimizer=_optim(cnn()), profile=TINY, epochs=3)),
         {"optimizer": [None, "sgd", cnn()], "epochs": int_bad(1)}),
    Case("lr_schedule", lambda: (pu.lr_schedule, dict(profile=TINY, epochs=3)),
         {"epochs": int_bad(1), "lr": POSITIVE_BAD, "profile": CHOICE_BAD}),
    Case("evaluate", lambda: (pu.evaluate, dict(model=cnn(), loader=loader())),
         {"model": MODEL_BAD, "loader": LOADER_BAD, "loss_fn": ["ce", 3]}),
    Case("train", lambda: (pu.train, dict(model=cnn(), train_loader=loader(), profile=TINY, progress=False)),
         {"model": MODEL_BAD, "train_loader": LOADER_BAD, "epochs": int_bad(0), "loss_fn": ["ce", 3],
          "callbacks": [3, ["cb"]], "optimizer": ["sgd", 3], "val_loader": ["loader", 3]}),
    Case("fine_tune", lambda: (pu.fine_tune, dict(model=cnn(), train_loader=loader(), epochs=1, profile=TINY,
                                                    progress=False)),
         {"model": MODEL_BAD, "train_loader": LOADER_BAD, "epochs": int_bad(0), "lr": POSITIVE_BAD}),
    Case("autocast_dtype", lambda: (pu.autocast_dtype, dict(profile=TINY, device="cpu")),
         {"profile": ["nope", 3], "device": ["gpu0", 3]}),
    Case("DeviceLoader", lambda: (pu.DeviceLoader, dict(images=torch.zeros(4, 3, 4, 4, dtype=torch.uint8),
                                                          labels=torch.zeros(4, dtype=torch.long), batch_size=2,
                                                          mean=(0.5,) * 3, std=(0.5,) * 3)),
         {"images": [None, torch.zeros(4, 3, 4, 4), torch.zeros(4, 4, 4, dtype=torch.uint8), "x"],
          "labels": [None, torch.zeros(3, dtype=torch.long), torch.zeros(4), torch.zeros(4, 1, dtype=torch.long)],
          "batch_size": int_bad(1), "mean": [None, 0.5, (0.5,), (NAN,) * 3], "std": [None, (0.0,) * 3, (-1.0,) * 3],
          "pad": [-1, 1.5, "2"], "shuffle": FLAG_BAD, "flip": FLAG_BAD, "channels_last": FLAG_BAD,
          "generator": [3, "g"], "device": ["gpu0", 3]}),
    Case("claim_checker", lambda: (pu.claim_checker, dict(profile=TINY)), {"profile": ["nope", 3]}),
    Case("write_smoke_cifar10", lambda: (pu.write_smoke_cifar10, dict(folder=Path(tempfile.gettempdir()) / "pruning-fuzz-never-written", n_train=10, n_test=10)),
         {"n_train": int_bad(10) + [9], "n_test": int_bad(10), "seed": int_bad(0), "folder": [None, 3]}),
    Case("finetune_lr", lambda: (pu.finetune_lr, dict(profile=TINY)), {"profile": ["nope", 3, 0.5]}),
    Case("recalibrate_batchnorm", lambda: (pu.recalibrate_batchnorm, dict(model=cnn(), loader=loader())),
         {"model": MODEL_BAD + [nn.Linear(2, 2)], "loader": LOADER_BAD, "batches": int_bad(1)}),
    Case("IterativePruner", lambda: (pu.IterativePruner, dict(model=cnn(), train_loader=loader(),
                                                                val_loader=loader(), profile=TINY)),
         {"model": MODEL_BAD, "train_loader": LOADER_BAD, "val_loader": LOADER_BAD, "scope": CHOICE_BAD}),
    Case("IterativePruner.iterative_prune",
         lambda: (pu.IterativePruner(cnn(), loader(), loader(), profile=TINY).iterative_prune,
                  dict(target_sparsity=0.5, num_iterations=2, fine_tune_epochs=0)),
         {"target_sparsity": FRACTION_BAD, "num_iterations": int_bad(1), "fine_tune_epochs": int_bad(0)}),
    Case("LRRewindPruner", lambda: (pu.LRRewindPruner, dict(model=cnn(), initial_lr=0.1, rewind_epoch=1,
                                                              total_epochs=3, profile=TINY)),
         {"model": MODEL_BAD, "initial_lr": POSITIVE_BAD, "rewind_epoch": int_bad(0) + [3],
          "total_epochs": int_bad(1), "scope": CHOICE_BAD}),
    Case("LRRewindPruner.rewind_weights", _rewind_weights, {"optimizer": [None, "sgd", 3]}),
    Case("DistillationFineTuner", lambda: (pu.DistillationFineTuner, dict(student_model=cnn(0), teacher_model=cnn(1))),
         {"student_model": MODEL_BAD, "teacher_model": MODEL_BAD, "temperature": POSITIVE_BAD, "alpha": UNIT_BAD},
         {"student_model": ("student",), "teacher_model": ("teacher",)}),
    Case("distillation_loss", lambda: (pu.distillation_loss, dict(student_logits=torch.randn(4, 10),
                                                                    teacher_logits=torch.randn(4, 10),
                                                                    targets=torch.randint(0, 10, (4,)))),
         {"student_logits": TENSOR_BAD + [torch.randn(4, 9), torch.randn(4)],
          "teacher_logits": TENSOR_BAD + [torch.randn(3, 10)],
          "targets": TENSOR_BAD + [torch.randint(0, 10, (3,)), torch.full((4,), 10), torch.rand(4)],
          "temperature": POSITIVE_BAD, "alpha": UNIT_BAD}),
    Case("soft_targets", lambda: (pu.soft_targets, dict(logits=torch.randn(4, 10), temperature=2.0)),
         {"logits": TENSOR_BAD, "temperature": POSITIVE_BAD}),
    # ---- analysis -----------------------------------------------------------------------------------
    Case("count_parameters", lambda: (pu.count_parameters, dict(model=cnn())), {"model": MODEL_BAD}),
    Case("plain_state_dict", lambda: (pu.plain_state_dict, dict(model=cnn())), {"model": MODEL_BAD}),
    Case("count_flops", lambda: (pu.count_flops, dict(model=cnn(), input_size=(1, 1, 8, 8))),
         {"model": MODEL_BAD, "input_size": [None, 3, "x", (1, 3, 8, 8), (0, 1, 8, 8), (1, 1.5, 8, 8), iter([1])]}),
    Case("sparse_flops", lambda: (pu.sparse_flops, dict(model=cnn(), input_size=(1, 1, 8, 8))),
         {"model": MODEL_BAD, "input_size": [None, 3, (1, 3, 8, 8), (True, 1, 8, 8)]}),
    Case("compare_latency", lambda: (pu.compare_latency, dict(models={"a": cnn()}, example_input=torch.zeros(1, 1, 8, 8),
                                                                rounds=1, min_run_time=0.001)),
         {"models": [None, {}, [cnn()], {"a": "model"}], "example_input": [[1.0, 2.0], "x", 3, torch.zeros(1, 3, 8, 8)],
          "rounds": int_bad(1), "min_run_time": POSITIVE_BAD, "num_threads": int_bad(1)}),
    Case("measure_latency", lambda: (pu.measure_latency, dict(model=cnn(), rounds=1, min_run_time=0.001)),
         {"model": MODEL_BAD, "input_size": [3, (1, 3, 8, 8)], "rounds": int_bad(1), "min_run_time": POSITIVE_BAD}),
    Case("analyze_pruned_model", lambda: (pu.analyze_pruned_model, dict(model=pruned_cnn(), latency=False)),
         {"model": MODEL_BAD, "input_size": [3, "x", (1, 3, 8, 8)], "rounds": int_bad(1), "latency": FLAG_BAD,
          "disk": FLAG_BAD, "verbose": FLAG_BAD}),
    Case("format_analysis", lambda: (pu.format_analysis, dict(result=pu.analyze_pruned_model(cnn(), latency=False,
                                                                                              disk=False))),
         {"result": [None, "x", 3, []]}),
    Case("analysis_table", lambda: (pu.analysis_table, dict(results={"dense": {"accuracy": 0.9}})),
         {"results": [None, "x", [], {}], "columns": [3, "accuracy"], "reference": [3, "missing"]}),
    Case("sensitivity_scan", lambda: (pu.sensitivity_scan, dict(model=cnn(), evaluate_fn=lambda m: 1.0,
                                                                  sparsities=[0.5], progress=False)),
         {"model": MODEL_BAD, "evaluate_fn": [None, 3, "acc", lambda m: NAN, lambda m: "x"],
          "sparsities": ["0.5", 0.5, [], [1.5], [NAN], iter(["a"]), None], "layers": ["nope", [3]]}),
    Case("checkpoint_sizes", lambda: (pu.checkpoint_sizes, dict(model=pruned_cnn())),
         {"model": MODEL_BAD, "encoding": CHOICE_BAD, "fp16": ["yes", 3], "values": CHOICE_BAD + ["int4"],
          "compress": FLAG_BAD}),
    Case("to_sparse_linear", lambda: (pu.to_sparse_linear, dict(model=pu.MLP(16, 4, (8,)))),
         {"model": MODEL_BAD, "min_sparsity": FRACTION_BAD, "kernel": CHOICE_BAD}),
    Case("to_dense_linear", lambda: (pu.to_dense_linear, dict(model=pu.MLP(16, 4, (8,)))), {"model": MODEL_BAD}),
    Case("CSRLinear.from_linear", lambda: (pu.CSRLinear.from_linear, dict(linear=nn.Linear(4, 4))),
         {"linear": MODEL_BAD + [nn.Conv2d(1, 1, 1)], "kernel": CHOICE_BAD}),
    # ---- stats --------------------------------------------------------------------------------------
    Case("accuracy_interval", lambda: (pu.accuracy_interval, dict(correct=300, n=360)),
         {"correct": int_bad(0) + [361], "n": int_bad(1), "confidence": REAL_BAD + [0.3, 1.0, 95],
          "method": CHOICE_BAD}),
    Case("paired_test", lambda: (pu.paired_test, dict(correct_a=[True, False, True], correct_b=[True, True, False])),
         {"correct_a": [None, "101", [], [0.5, 1, 0], [True, False], 3, [[True]]],
          "correct_b": [None, [True], [2, 0, 1]], "names": ["ab", ("a",), (1, 2), None], "confidence": [NAN, 2.0]}),
    Case("seed_interval", lambda: (pu.seed_interval, dict(values=[0.9, 0.92, 0.91])),
         {"values": [None, "0.9", [0.9], [0.9, NAN], [0.9, INF], 0.9, iter(["a", "b"])], "confidence": [NAN, 0.1]}),
    Case("paired_seed_test", lambda: (pu.paired_seed_test, dict(values_a=[0.9, 0.92], values_b=[0.8, 0.85])),
         {"values_a": [None, "0.9", [0.9], [NAN, 0.9]], "values_b": [None, [0.8], [0.8, INF]],
          "names": ["ab", (3, 4)]}),
    Case("verdict", lambda: (pu.verdict, dict(difference=pu.Interval(0.01, -0.01, 0.03))),
         {"difference": [None, 0.5, (0, 1, 2)], "names": ["ab", ("a",)]}),
    # ---- robustness ---------------------------------------------------------------------------------
    Case("per_class_accuracy", lambda: (pu.per_class_accuracy, dict(model=cnn(), loader=loader())),
         {"model": MODEL_BAD, "loader": LOADER_BAD, "num_classes": int_bad(1) + [11], "confidence": [NAN, 2.0]}),
    Case("compare_per_class", lambda: (pu.compare_per_class, dict(model_a=cnn(0), model_b=pruned_cnn(), loader=loader())),
         {"model_a": MODEL_BAD, "model_b": MODEL_BAD + [pu.MLP(64, 3, (8,))],
          "loader": LOADER_BAD + [iter([(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))])],
          "names": ["ab", ("a",), None], "confidence": [NAN, 0.1]}),
    Case("gaussian_noise", lambda: (pu.gaussian_noise, dict(inputs=torch.zeros(2, 1, 4, 4), severity=0.5)),
         {"inputs": TENSOR_BAD + [torch.zeros(2, 4, dtype=torch.long)], "severity": REAL_BAD + [-0.1],
          "generator": [3, "g", torch.zeros(2)]}),
    Case("gaussian_blur", lambda: (pu.gaussian_blur, dict(inputs=torch.zeros(2, 1, 4, 4), severity=1.0)),
         {"inputs": TENSOR_BAD + [torch.zeros(4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long)],
          "severity": REAL_BAD + [-1.0], "generator": [3]}),
    Case("pixel_shift", lambda: (pu.pixel_shift, dict(inputs=torch.zeros(2, 1, 4, 4), severity=1)),
         {"inputs": TENSOR_BAD + [torch.zeros(4, 4)], "severity": int_bad(0), "generator": ["g"]}),
    Case("reduce_contrast", lambda: (pu.reduce_contrast, dict(inputs=torch.zeros(2, 1, 4, 4), severity=0.5)),
         {"inputs": TENSOR_BAD + [torch.zeros(2, 16)], "severity": UNIT_BAD, "generator": [1.5]}),
    Case("corrupted_accuracy", lambda: (pu.corrupted_accuracy, dict(model=cnn(), loader=loader(),
                                                                   corruption="gaussian_noise", severities=[0.0, 0.5])),
         {"model": MODEL_BAD, "loader": LOADER_BAD + [iter([(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))])],
          "corruption": CHOICE_BAD + [None, nn.Linear(2, 2), lambda x, s, g: None, lambda x, s, g: x[:1]],
          "severities": [None, "0.5", 0.5, [], [NAN], [-1.0], [INF], iter(["a"])], "seed": int_bad(0),
          "confidence": [NAN]}),
    Case("expected_calibration_error",
         lambda: (pu.expected_calibration_error, dict(probabilities_or_logits=torch.tensor([[0.6, 0.4], [0.2, 0.8]]),
                                                      targets=torch.tensor([0, 1]))),
         {"probabilities_or_logits": TENSOR_BAD + [torch.zeros(2), torch.tensor([[NAN, 1.0], [0.0, 1.0]]),
                                                   torch.zeros(0, 2), torch.zeros(2, 2, dtype=torch.long)],
          "targets": TENSOR_BAD + [torch.tensor([0]), torch.tensor([0, 2]), torch.tensor([0.0, 1.0]),
                                   torch.tensor([[0, 1]]), torch.tensor([-1, 0])],
          "n_bins": int_bad(1), "kind": CHOICE_BAD}),
    Case("reliability_diagram_data",
         lambda: (pu.reliability_diagram_data, dict(probabilities_or_logits=torch.tensor([[2.0, -1.0], [0.5, 0.8]]),
                                                    targets=torch.tensor([0, 1]))),
         {"probabilities_or_logits": TENSOR_BAD + [torch.ones(2, 2, 2), torch.tensor([[INF, 1.0], [0.0, 1.0]])],
          "targets": TENSOR_BAD + [torch.tensor([0, 1, 1]), torch.tensor([True, False])], "n_bins": int_bad(1),
          "kind": CHOICE_BAD + ["probabilities"]}),
    Case("model_calibration", lambda: (pu.model_calibration, dict(model=cnn(), loader=loader())),
         {"model": MODEL_BAD, "loader": LOADER_BAD, "n_bins": int_bad(1)}),
    # ---- course -------------------------------------------------------------------------------------
    Case("colab_url", lambda: (pu.colab_url, dict(notebook="00_setup_and_baseline.ipynb")),
         {"notebook": [None, 3, "", "../x.ipynb"]}),
    Case("record_results", lambda: (pu.record_results, dict(notebook="01", headline="h",
                                                            accuracy=pu.accuracy_interval(9, 10), seeds=1)),
         {"notebook": [None, 3, ""], "headline": [None, 3],
          "accuracy": [NAN, 0.5, "0.5", True, pu.Interval(1.5, 1.4, 1.6), pu.Interval(0.5, 0.6, 0.7)],
          "seeds": [None, 0, 1.5, True, "3"],
          "sparsity": [NAN, "0.5", 1.5], "params": [1.5, "3", -1, True], "latency_ms": [NAN, -1.0, "1"]}),
    # ---- exercise checkers (notebook 14) -------------------------------------------------------------
    Case("check_coupled_layers", lambda: (ex.check_coupled_layers, dict(answer=["conv1"], model=resnet8(), layer="conv1",
                                                                      input_size=(1, 1, 8, 8))),
         {"answer": ["conv1", b"conv1", 3, None, [1], ["conv1", None]], "model": MODEL_BAD,
          "layer": [None, 3, "", "nope", "bn1", "layer1", nn.Conv2d(1, 16, 3)],
          "input_size": [3, "x", (1, 3, 8, 8), (0, 1, 8, 8), (1, 1.5, 8, 8)]}),
    Case("check_coupled_params_removed", lambda: (ex.check_coupled_params_removed,
                                                  dict(answer=8172, model=resnet8(), layer="conv1", k=4,
                                                       input_size=(1, 1, 8, 8))),
         {"answer": int_bad(0), "model": MODEL_BAD, "layer": [None, 3, "nope", "bn1", "fc"],
          "k": int_bad(1) + [16, 17], "input_size": [3, (1, 3, 8, 8), (True, 1, 8, 8)]}),
    Case("check_flops_matched_ratio", lambda: (ex.check_flops_matched_ratio,
                                               dict(answer=0.34, model=resnet8(), inner_ratio=0.5,
                                                    input_size=(1, 1, 8, 8))),
         {"answer": REAL_BAD + [0.0, 1.0, -0.1, 0.345], "model": MODEL_BAD, "inner_ratio": FRACTION_BAD,
          "input_size": [None, 3, "x", (1, 3, 8, 8), (0, 1, 8, 8)]}),
]


def _arguments():
    for case in CASES:
        for arg, values in case.bad.items():
            for i, value in enumerate(values):
                text = repr(value) if not callable(value) or isinstance(value, nn.Module) else "fn"
                text = re.sub(r" at 0x[0-9a-f]+", "", text)  # the same id in every process (pytest-xdist)
                yield pytest.param(case, arg, value, id=f"{case.label}-{arg}-{i}:{text[:30]}")


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("case, arg, value", list(_arguments()))
def test_bad_value_gets_a_clear_error_naming_the_argument(case, arg, value, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_RESULTS_DIR", str(tmp_path / "results"))
    fn, kwargs = case.build()
    kwargs[arg] = value
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        result = fn(**kwargs)
    except _Hang:
        pytest.fail(f"{case.label}({arg}={value!r}) hung for 30 s")
    except (TypeError, ValueError) as exc:
        words = (arg, *case.names.get(arg, ()))
        assert any(w in str(exc) for w in words), (
            f"{case.label}({arg}={value!r}) raised {type(exc).__name__} without naming {arg!r}: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - any other type is the crash this test is about
        pytest.fail(f"{case.label}({arg}={value!r}) crashed with {type(exc).__name__}: {exc}"[:600])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    pytest.fail(f"{case.label}({arg}={value!r}) was accepted silently and returned {type(result).__name__}")


def test_every_public_callable_is_driven_by_a_case():
    """A new public function or class must get its fuzz case (names that take no arguments are exempt)."""
    driven = {c.label.split(".")[0] for c in CASES}
    exempt = {"cache_dir", "data_dir", "Callback", "TrainState", "BaselineResult", "PipelineResult", "Loaders",
              "SensitivityScan", "WeightMask", "Interval", "PairedResult", "CheckpointError", "DatasetNotAvailableError", "MaskSerializationError",
              "train_baseline", "baseline_path", "build_model_for", "final_lr",
              "create_pruning_pipeline", "load_pruned_model", "load_checkpoint", "save_checkpoint", "save_sparse",
              "load_sparse", "download_dataset", "get_loaders", "save_figure", "CSRLinear"}
    public = {n for n in pu.__all__ if callable(getattr(pu, n))}
    missing = sorted(public - driven - exempt)
    assert not missing, f"public callables without a fuzz case: {missing}"
