"""pruning_utils: the tested helpers of the hands-on pruning course.

Notebooks import everything from here; see DESIGN.md for the module map.
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
from .data import DATASETS, DatasetNotAvailableError, Loaders, download_dataset, get_loaders
from .masks import (
    apply_mask,
    check_fraction,
    enforce_masks,
    get_mask,
    is_masked,
    layer_sparsities,
    load_weights_keep_masks,
    magnitude_prune,
    make_permanent,
    prunable_layers,
    sparsity,
)
from .models import MLP, SmallCNN, build_model, cifar_resnet
from .training import (
    BaselineResult,
    Callback,
    TrainState,
    baseline_path,
    build_model_for,
    build_optimizer,
    build_scheduler,
    evaluate,
    final_lr,
    fine_tune,
    lr_schedule,
    train,
    train_baseline,
)
from .iterative import IterativePruner, per_iteration_rate, sparsity_schedule
from .rewinding import LRRewindPruner, iterative_targets
from .unstructured import SimplePruner, ThresholdPruner
from .structured import StructuredPruner, find_channel_groups, fold_batchnorm, prune_resnet, prune_simple_cnn
from .metrics import (
    CSRLinear,
    SensitivityScan,
    analysis_table,
    analyze_pruned_model,
    checkpoint_sizes,
    compare_latency,
    count_flops,
    count_parameters,
    format_analysis,
    load_sparse,
    measure_latency,
    plain_state_dict,
    save_sparse,
    sensitivity_scan,
    sparse_flops,
    to_dense_linear,
    to_sparse_linear,
)
from .distillation import DistillationFineTuner, distillation_loss, soft_targets
from .gradual import GradualPruner, cubic_sparsity, pruning_steps

# pipeline.py and course.py are also scripts (python -m pruning_utils.pipeline / .course); importing them
# on first use keeps runpy from finding them already imported (and warning) when they run as __main__.
_LAZY = {
    "PipelineResult": "pipeline", "create_pruning_pipeline": "pipeline", "load_pruned_model": "pipeline",
    "record_results": "course", "save_figure": "course", "colab_url": "course",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
