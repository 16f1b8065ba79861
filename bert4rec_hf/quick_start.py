"""One call from an interaction log to a trained, evaluated, saved BERT4Rec.

``run_bert4rec(dataset="ml-100k")`` is the counterpart of RecBole's
``run_recbole(model="BERT4Rec", dataset="ml-100k")``: it resolves the layered
configuration, prepares leave-one-out data, trains with the HF ``Trainer``
(early stopping on a validation metric, best model restored), evaluates
validation and test, and writes a hub-ready model folder.

A facade: the pipeline lives in ``bert4rec_hf.training.pipeline`` and the
configuration in ``bert4rec_hf.training.config``; their names are re-exported here.
"""

from .training.config import ConfigError, RunConfig, load_config
from .training.pipeline import (
    CHECKPOINTS,
    MASKING_KEYS,
    MODEL_KEYS,
    RESUME_CONFIG,
    RESUME_MAY_DIFFER,
    RUN_FILES,
    STAGED_MODEL,
    TRAINING_ARGUMENTS,
    PreparedData,
    build_evaluator,
    build_model,
    build_train_collator,
    build_trainer,
    build_training_arguments,
    check_output_dir,
    check_resumable,
    check_valid_metric,
    evaluate_saved_model,
    evaluate_splits,
    masking_arguments,
    prepare_data,
    read_log,
    remove_checkpoints,
    run_bert4rec,
    save_run,
)

__all__ = [
    "CHECKPOINTS",
    "MASKING_KEYS",
    "MODEL_KEYS",
    "RESUME_CONFIG",
    "RESUME_MAY_DIFFER",
    "RUN_FILES",
    "STAGED_MODEL",
    "TRAINING_ARGUMENTS",
    "ConfigError",
    "PreparedData",
    "RunConfig",
    "build_evaluator",
    "build_model",
    "build_train_collator",
    "build_trainer",
    "build_training_arguments",
    "check_output_dir",
    "check_resumable",
    "check_valid_metric",
    "evaluate_saved_model",
    "evaluate_splits",
    "load_config",
    "masking_arguments",
    "prepare_data",
    "read_log",
    "remove_checkpoints",
    "run_bert4rec",
    "save_run",
]
