"""pruning_utils: the tested helpers of the hands-on pruning course.

Notebooks import everything from here. One concern per module:

| module | holds |
|---|---|
| ``checks`` | the one validator per kind of argument (fraction, int, positive number, choice, ...) |
| ``config`` | profiles, seeding, device, cache directory, atomic checkpoints |
| ``data``, ``models`` | the profile's data loaders (DataLoaders, or a DeviceLoader on the GPU profile); SmallCNN, MLP, CIFAR ResNets |
| ``training`` | the one training loop (callbacks, mixed precision), evaluation, fine-tuning, BN recalibration, the cached baseline |
| ``masks`` | the one mask mechanism (parametrize), exact magnitude selection, N:M (2:4) patterns |
| ``unstructured``, ``structured`` | SimplePruner / ThresholdPruner; filter pruning, BatchNorm folding |
| ``iterative``, ``rewinding``, ``gradual``, ``distillation`` | the pruning schedules and knowledge distillation |
| ``params``, ``flops``, ``latency`` | parameter counts, FLOPs, timing |
| ``metrics``, ``sensitivity`` | the analysis report and table; per-layer sensitivity scans |
| ``stats`` | accuracy intervals, paired tests (McNemar), intervals over seeds, the verdict |
| ``robustness`` | per-class accuracy, input corruptions, calibration (ECE) |
| ``quantization`` | int8 weights per output channel (torchao's convention), k-means weight sharing |
| ``oneshot`` | calibration statistics of Linear inputs; one-shot Wanda and SparseGPT pruning (unstructured and N:M) |
| ``transformer`` | TinyViT (heads addressable: separate q/k/v/out layers); pruning attention heads and MLP neurons |
| ``sparse_format``, ``csr``, ``spmm`` | sparse checkpoints; CSR Linear layers; the compiled CSR kernel |
| ``plots``, ``pipeline``, ``course`` | figures; the end-to-end pipeline and CLI (one process or torchrun); running the course, claims per profile |
| ``exercises`` | the exercises' answer checkers |
"""

from .config import (
    PROFILES,
    CheckpointError,
    Profile,
    cache_dir,
    data_dir,
    get_device,
    get_profile,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    setup_course,
)
from .data import (DATASETS, DatasetNotAvailableError, DeviceLoader, Loaders, download_dataset, get_loaders,
                   write_smoke_cifar10)
from .checks import check_fraction, check_int
from .masks import (
    MaskSerializationError,
    apply_mask,
    apply_nm_sparsity,
    check_layers,
    check_nm_pattern,
    enforce_masks,
    get_mask,
    is_masked,
    layer_sparsities,
    load_weights_keep_masks,
    magnitude_prune,
    make_permanent,
    nm_mask,
    prunable_layers,
    semi_structured_bytes,
    smallest_k,
    sparsity,
)
from .models import MLP, SmallCNN, build_model, cifar_resnet
from .training import (
    BaselineResult,
    Callback,
    autocast_dtype,
    TrainState,
    baseline_path,
    build_model_for,
    build_optimizer,
    build_scheduler,
    evaluate,
    final_lr,
    fine_tune,
    finetune_lr,
    lr_schedule,
    recalibrate_batchnorm,
    train,
    train_baseline,
)
from .iterative import IterativePruner, per_iteration_rate, sparsity_schedule
from .rewinding import LRRewindPruner, iterative_targets
from .unstructured import SimplePruner, ThresholdPruner
from .structured import StructuredPruner, find_channel_groups, fold_batchnorm, prune_resnet, prune_simple_cnn
from .depgraph import DependencyGraph, prune_graph
from .params import count_parameters, plain_state_dict
from .flops import count_flops, sparse_flops
from .latency import compare_latency, measure_latency
from .sparse_format import checkpoint_sizes, load_sparse, save_sparse
from .quantization import int8_per_channel, quantize_int8, share_weights
from .oneshot import LayerStats, collect_input_stats, sparsegpt_prune, wanda_prune, wanda_scores
from .transformer import (TinyViT, UnitGroup, activation_importance, attention_head_groups, mlp_neuron_groups,
                          prune_heads, prune_mlp_neurons, prune_units, units_to_keep, weight_norm_importance)
from .csr import CSRLinear, to_dense_linear, to_sparse_linear
from .sensitivity import SensitivityScan, sensitivity_scan
from .metrics import analysis_table, analyze_pruned_model, format_analysis
from .stats import Interval, PairedResult, accuracy_interval, paired_seed_test, paired_test, seed_interval, verdict
from .distillation import DistillationFineTuner, distillation_loss, soft_targets
from .gradual import GradualPruner, cubic_sparsity, pruning_steps
from .robustness import (CORRUPTIONS, compare_per_class, corrupted_accuracy, expected_calibration_error, gaussian_blur,
                         gaussian_noise, model_calibration, per_class_accuracy, pixel_shift, reduce_contrast,
                         reliability_diagram_data)

# pipeline.py and course.py are also scripts (python -m pruning_utils.pipeline / .course); importing them
# on first use keeps runpy from finding them already imported (and warning) when they run as __main__.
_LAZY = {
    "PipelineResult": "pipeline", "create_pruning_pipeline": "pipeline", "load_pruned_model": "pipeline",
    "record_results": "course", "save_figure": "course", "colab_url": "course", "claim_checker": "course",
}

__all__ = [
    "LayerStats",
    "collect_input_stats",
    "sparsegpt_prune",
    "wanda_prune",
    "wanda_scores",
    "TinyViT",
    "UnitGroup",
    "activation_importance",
    "attention_head_groups",
    "mlp_neuron_groups",
    "prune_heads",
    "prune_mlp_neurons",
    "prune_units",
    "units_to_keep",
    "weight_norm_importance",
    "int8_per_channel",
    "quantize_int8",
    "share_weights",
    "compare_per_class",
    "CORRUPTIONS",
    "corrupted_accuracy",
    "expected_calibration_error",
    "gaussian_blur",
    "gaussian_noise",
    "model_calibration",
    "per_class_accuracy",
    "pixel_shift",
    "reduce_contrast",
    "reliability_diagram_data",
    "accuracy_interval",
    "analysis_table",
    "analyze_pruned_model",
    "apply_mask",
    "apply_nm_sparsity",
    "baseline_path",
    "BaselineResult",
    "build_model",
    "build_model_for",
    "claim_checker",
    "build_optimizer",
    "build_scheduler",
    "autocast_dtype",
    "cache_dir",
    "Callback",
    "check_fraction",
    "check_int",
    "check_layers",
    "check_nm_pattern",
    "checkpoint_sizes",
    "CheckpointError",
    "cifar_resnet",
    "colab_url",
    "compare_latency",
    "count_flops",
    "count_parameters",
    "create_pruning_pipeline",
    "CSRLinear",
    "cubic_sparsity",
    "data_dir",
    "DatasetNotAvailableError",
    "DeviceLoader",
    "DATASETS",
    "distillation_loss",
    "DistillationFineTuner",
    "download_dataset",
    "enforce_masks",
    "evaluate",
    "final_lr",
    "finetune_lr",
    "find_channel_groups",
    "fine_tune",
    "fold_batchnorm",
    "format_analysis",
    "get_device",
    "get_loaders",
    "get_mask",
    "get_profile",
    "GradualPruner",
    "Interval",
    "is_masked",
    "iterative_targets",
    "IterativePruner",
    "layer_sparsities",
    "load_checkpoint",
    "load_pruned_model",
    "load_sparse",
    "load_weights_keep_masks",
    "Loaders",
    "lr_schedule",
    "LRRewindPruner",
    "magnitude_prune",
    "make_permanent",
    "MaskSerializationError",
    "measure_latency",
    "MLP",
    "nm_mask",
    "paired_seed_test",
    "paired_test",
    "PairedResult",
    "per_iteration_rate",
    "PipelineResult",
    "plain_state_dict",
    "Profile",
    "PROFILES",
    "prunable_layers",
    "prune_graph",
    "prune_resnet",
    "prune_simple_cnn",
    "pruning_steps",
    "recalibrate_batchnorm",
    "record_results",
    "save_checkpoint",
    "save_figure",
    "save_sparse",
    "seed_everything",
    "seed_interval",
    "semi_structured_bytes",
    "sensitivity_scan",
    "SensitivityScan",
    "setup_course",
    "SimplePruner",
    "SmallCNN",
    "soft_targets",
    "sparse_flops",
    "smallest_k",
    "sparsity",
    "sparsity_schedule",
    "StructuredPruner",
    "DependencyGraph",
    "ThresholdPruner",
    "to_dense_linear",
    "to_sparse_linear",
    "train",
    "train_baseline",
    "TrainState",
    "verdict",
    "write_smoke_cifar10",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
