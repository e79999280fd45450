"""Experiments: a validated configuration, its data, and a run saved to a folder.

``jaxprop train`` is :func:`run_experiment` on an :class:`ExperimentConfig`. A run
trains every (learning rate, seed) pair side by side with a ``jp.Trainer``, in
compiled chunks of steps; between chunks it reports progress and, every
``checkpoint_every`` steps, writes ``checkpoint.npz`` atomically. ``--resume``
loads that checkpoint and continues with the same compiled chunks, so it ends
with the same bits as a run that was never interrupted.

Imports flow one way: ``config`` (settings and their checks) → ``data`` →
``build`` (network, optimizer, trainer, schedule) → ``store`` (the run's
folder) → ``results`` (metrics, curves, plots, gradient check) → ``driver``
(start, train in chunks, checkpoint). ``jaxprop._cli`` is the edge.
"""

from .build import Experiment, build, make_grid, make_optimizer
from .compare import (
    Compared,
    compared_of,
    comparison,
    format_table,
    read_folders,
    write_comparison,
)
from .config import (
    DATASETS,
    DTYPES,
    FIELDS,
    MOMENTUM,
    OPTIMIZERS,
    ExperimentConfig,
    absolute_paths,
    make_config,
    make_rule,
    read_toml,
)
from .data import Data, load_data, make_net
from .dp import describe_rule
from .driver import CHECKPOINT_SECONDS, run_experiment, start, train_chunks
from .layer_spec import describe_net, format_layers, parse_layers
from .results import (
    SAMPLED_ENTRIES,
    GradientCheck,
    final_metrics,
    gradient_check,
    results_doc,
    write_gradient_check,
    write_results,
)
from .store import (
    OUT_FILES,
    Checkpoint,
    SavedRun,
    SavedStudy,
    check_out_is_free,
    checkpoint_bytes,
    extend_config,
    is_study,
    load_checkpoint,
    load_run,
    prepare_out,
    read_config,
    save_checkpoint,
)
from .study import (
    check_study_out,
    resumed_study,
    study_configs,
    study_rules,
    write_study,
)

__all__ = [
    "CHECKPOINT_SECONDS", "DATASETS", "DTYPES", "FIELDS", "MOMENTUM", "OPTIMIZERS",
    "OUT_FILES", "SAMPLED_ENTRIES", "Checkpoint", "Compared", "Data", "Experiment",
    "ExperimentConfig", "GradientCheck", "SavedRun", "SavedStudy", "absolute_paths",
    "build", "check_out_is_free", "check_study_out", "checkpoint_bytes",
    "compared_of", "comparison", "describe_net", "describe_rule", "extend_config",
    "final_metrics", "format_layers", "format_table", "gradient_check", "is_study",
    "load_checkpoint", "load_data", "load_run", "make_config", "make_grid",
    "make_net", "make_optimizer", "make_rule", "parse_layers", "prepare_out",
    "read_config", "read_folders", "read_toml", "results_doc", "resumed_study",
    "run_experiment", "save_checkpoint", "start", "study_configs", "study_rules",
    "train_chunks", "write_comparison", "write_gradient_check", "write_results",
    "write_study",
]  # fmt: skip
