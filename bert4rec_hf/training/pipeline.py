"""The training pipeline: from a run configuration to a trained, evaluated, saved BERT4Rec.

Reads and splits the data, builds the model, the Cloze collator and the Trainer,
runs training (resuming an unfinished run when asked), evaluates validation and
test and writes a hub-ready model folder. ``bert4rec_hf.quick_start`` is the
facade users call (``run_bert4rec``, ``evaluate_saved_model``); tuning builds
its trials from the same functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..configuration_bert4rec import Bert4RecConfig
from ..data import (
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    DataSplits,
    ItemFeatureTable,
    MaskingArguments,
    build_sequences,
    filter_by_rating,
    leave_one_out,
    load_interactions,
    load_item_features,
    read_interactions,
    temporal_split,
    training_histories,
)
from ..data.report import DataReport, describe_log, rating_filter_step
from ..evaluation import RankingEvaluator, count_item_popularity, ranking_metrics
from ..evaluation.baselines import evaluate_baselines
from ..evaluation.cold_start import hold_out_items, target_groups
from ..finetuning import extend_vocabulary, write_item_features
from ..model_folder import history_excluded_by_default, local_folder, metrics_table, with_baselines, write_model_card
from ..modeling_bert4rec import Bert4RecForMaskedItemPrediction
from ..tokenization_bert4rec import ItemTokenizer
from .auto_schedule import AutoSchedule
from .branches import SwitchCheckpoint, check_branches, remove_branches, train_branches
from .config import ConfigError, RunConfig, load_config, package_defaults, parse_yaml, read_yaml
from .distillation import (
    TEACHERS,
    TeacherEnsemble,
    check_distillation,
    check_teacher_data,
    check_teachers_folder,
    teacher_settings,
    train_teachers,
)
from .planning import measure_seconds, plan_training
from .reporting import plot_training_history, validation_curve, write_atomically, write_json, write_yaml, yaml_text
from .threads import apply_thread_policy
from .time_budget import TimeBudgetCallback
from .trainer import STAGING, Bert4RecTrainer, CheckpointEvery, last_checkpoint
from .weight_averaging import WeightAverage, check_weight_averaging

logger = logging.getLogger(__name__)

MODEL_KEYS = Bert4RecConfig.run_settings()
# The Cloze task's settings: training settings, one group, which the training collator is built from.
MASKING_KEYS = MaskingArguments.keys()
# Run-configuration keys that are TrainingArguments fields, and the field each sets (training and tuning share it).
TRAINING_ARGUMENTS = {
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "warmup_steps": "warmup_steps",
    "lr_scheduler_type": "lr_scheduler_type",
    "max_grad_norm": "max_grad_norm",
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "train_batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "seed": "seed",
    "bf16": "bf16",
    "fp16": "fp16",
    "dataloader_num_workers": "dataloader_num_workers",
    "report_to": "report_to",
}
# Keys known to leave prepare_data() unchanged: a tuned one shares the trials' prepared data, a teacher may differ in one.
NOT_DATA_KEYS = (set(MODEL_KEYS) - {"max_seq_length"}) | set(TRAINING_ARGUMENTS) | set(MASKING_KEYS) | {
    "stopping_step", "eval_steps", "save_steps", "save_total_limit", "torch_threads", "average_weights_share",
    "average_weights_every",
}  # fmt: skip
# Run-configuration keys of the temporal split, and the argument of temporal_split each sets.
TEMPORAL_SPLIT_KEYS = {
    "split_cutoff": "cutoff",
    "split_validation_cutoff": "validation_cutoff",
    "split_test_share": "test_share",
    "split_validation_share": "validation_share",
    "split_targets": "targets",
}
CHECKPOINTS = "checkpoints"
# Beside the checkpoints: the configuration they were trained with, so a resume can refuse another one.
RESUME_CONFIG = "run_config.yaml"
# Keys a resumed run may change: they touch neither the data, the model nor the arithmetic (how often
# and how many checkpoints are kept only decides where a killed run can resume from).
RESUME_MAY_DIFFER = ("output_dir", "report_to", "torch_threads", "save_steps", "save_total_limit")
STAGED_MODEL = ".partial-model"  # the model folder's files while they are written
# What save_run writes that another run's folder also holds: a run refuses to replace them unless told to.
RUN_FILES = (
    "config.json", "model.safetensors", "item_vocab.json", "README.md", "metrics.json", "run_config.yaml",
    "training_curves.png",
)  # fmt: skip


@dataclass
class PreparedData:
    """The splits (leave-one-out or temporal), their vocabulary and what the split left out."""

    processed: DataSplits
    num_interactions: int
    seconds: float
    report: DataReport | None = None
    item_features: ItemFeatureTable | None = None
    cold_items: pa.Array | None = None

    @property
    def split_record(self) -> dict[str, Any]:
        """Which split the metrics are on, for ``metrics.json``: its kind and, for a temporal one, its cut-offs."""
        report = self.processed.report
        record = {"kind": report.split, "description": report.describe()}
        if report.split == "temporal":
            record |= {"cutoffs": report.cutoffs, "targets": report.targets}
        return record

    @property
    def summary(self) -> dict[str, Any]:
        report = self.processed.report
        summary = {}
        if self.item_features is not None:
            kinds = self.item_features.kinds
            summary["item features"] = f"{', '.join(f'{name} ({kind})' for name, kind in kinds.items())} from {self.item_features.source}"
        if self.cold_items is not None:
            summary["cold items (held out of training)"] = len(self.cold_items)
        summary |= {
            "interactions": self.num_interactions,
            "users": report.num_users,
            "items": self.processed.tokenizer.num_items,
            "split": report.describe(),
            "training windows": report.rows.get("train"),
            **({"next-item rows": report.rows["next_item"]} if "next_item" in report.rows else {}),
            "validation users": report.users.get("validation"),
            "test users": report.users.get("test"),
        }
        if report.targets == "all":
            summary |= {"validation rows": report.rows.get("validation"), "test rows": report.rows.get("test")}
        if report.split == "temporal":
            summary["test users first seen after the cut-off"] = report.empty_history.get("test", 0)
        return summary | {
            "test rows left out": report.left_out("test"),
            "test targets no training window holds": report.untrained_target.get("test", 0),
            **({"repeat share": round(self.report.repeat_share, 4)} if self.report is not None else {}),
        }


def read_log(config: Mapping[str, Any]) -> pa.Table:
    """The interaction log a configuration names: ``data_path`` or a registered data set,
    as read: with ``rating_threshold`` set it keeps its ratings, which
    ``filter_by_rating`` then filters (so the data report can say whom that removed)."""
    columns = {
        canonical: config[key]
        for canonical, key in (("user_id", "user_column"), ("item_id", "item_column"), ("timestamp", "time_column"))
        if config.get(key) is not None
    }
    options: dict[str, Any] = {"extra_columns": ("rating",)} if config.get("rating_threshold") is not None else {}
    if config.get("data_path"):
        if columns:
            options["columns"] = columns
        if config.get("field_separator"):
            options["delimiter"] = config["field_separator"]
        return read_interactions(config["data_path"], format=config.get("data_format"), **options)
    return load_interactions(config["dataset"], **options)


def read_item_table(config: Mapping[str, Any]) -> ItemFeatureTable | None:
    """The item table a configuration names (``item_features`` from ``item_features_path``, or
    the registered data set's own table); None when it asks for no features."""
    if not config.get("item_features"):
        if config.get("item_features_path"):
            raise ConfigError("item_features_path is set but item_features names no column; list the columns to use")
        return None
    return load_item_features(config.get("item_features_path") or config["dataset"], config["item_features"])


def prepare_data(config: Mapping[str, Any], tokenizer: ItemTokenizer | None = None) -> PreparedData:
    """Reads, groups, filters and splits the log of a run configuration; with a
    ``tokenizer`` (a saved model's) the data is encoded with its vocabulary. Without
    one and with ``cold_item_share`` > 0, the held-out items (``cold_items``) are left
    out of the vocabulary, so of training (the cold-start protocol, ``evaluation.cold_start``)."""
    start = time.perf_counter()
    read = read_log(config)
    table = filter_by_rating(read, config.get("rating_threshold"), config.get("data_path") or config["dataset"])
    temporal = config["split"] == "temporal"
    sequences, filters = build_sequences(
        table,
        dedup=config.get("dedup"),
        min_user_interactions=config["min_user_interactions"],
        min_item_interactions=config["min_item_interactions"],
        keep_timestamps=temporal,
        return_report=True,
    )
    cold_items = None
    if tokenizer is None and config["cold_item_share"] > 0:
        items = pc.list_flatten(sequences.with_format("arrow")["item_ids"])
        cold_items = hold_out_items(items, config["cold_item_share"], config["seed"])
        tokenizer = ItemTokenizer.fit(items.filter(pc.invert(pc.is_in(items, value_set=cold_items))))
    settings = dict(
        max_seq_length=config["max_seq_length"],
        stride=config.get("train_stride"),
        prefixes=config["train_prefixes"],
        tokenizer=tokenizer,
        fit_on=config["fit_vocabulary_on"],
        train_on_validation_item=config["train_on_validation_item"],
        next_item_rows=config["next_item_share"] > 0,
    )
    if temporal:
        processed = temporal_split(sequences, **settings, **{arg: config[key] for key, arg in TEMPORAL_SPLIT_KEYS.items()})
    else:
        processed = leave_one_out(sequences, **settings)
    if config.get("rating_threshold") is not None:
        filters.insert(0, rating_filter_step(read, table, config["rating_threshold"]))
    source = config.get("data_path") or config["dataset"]
    report = describe_log(read, sequences, filters, processed.report, source=source)
    return PreparedData(
        processed, table.num_rows, time.perf_counter() - start, report,
        item_features=read_item_table(config), cold_items=cold_items,
    )


def build_model(
    config: Mapping[str, Any],
    vocab_size: int,
    item_features: ItemFeatureTable | None = None,
    tokenizer: ItemTokenizer | None = None,
) -> Bert4RecForMaskedItemPrediction:
    """A fresh model of the run's model settings; its config also records the run's ``mask_ratio``.
    With ``item_features`` (and the ``tokenizer`` its rows are aligned to) the model fuses
    them into its item embeddings; their vocabularies and standardisation are fitted on the table."""
    fields = [spec.to_dict() for spec in item_features.fit_fields()] if item_features is not None else None
    model_config = Bert4RecConfig(
        vocab_size=vocab_size, mask_ratio=config["mask_ratio"], item_features=fields,
        **{key: config[key] for key in MODEL_KEYS},
    )  # fmt: skip
    model = Bert4RecForMaskedItemPrediction(model_config)
    if item_features is not None:
        write_item_features(model, tokenizer, item_features, missing=config["item_features_missing"])
    return model


def build_model_for(config: Mapping[str, Any], data: PreparedData) -> Bert4RecForMaskedItemPrediction:
    """A fresh model for prepared data: its vocabulary, and its item features when the run names some."""
    tokenizer = data.processed.tokenizer
    return build_model(config, tokenizer.vocab_size, data.item_features, tokenizer)


def masking_arguments(config: Mapping[str, Any]) -> MaskingArguments:
    """The run's Cloze settings (``MASKING_KEYS``). ``load_config`` checks each value; a
    combination out of range is a ``ConfigError`` naming the keys and where they were set."""
    try:
        return MaskingArguments.from_mapping(config)
    except ValueError as err:
        source_of = getattr(config, "source_of", None)
        where = [f"{key} from {source_of(key)}" for key in MASKING_KEYS if source_of and key in str(err)]
        raise ConfigError(f"{err}" + (f" ({'; '.join(where)})" if where else "")) from None


def build_train_collator(config: Mapping[str, Any], vocab_size: int) -> DataCollatorForMaskedItemPrediction:
    """Cloze masking of the training windows with the run's masking settings, BPR negatives
    for ``loss_type: BPR``."""
    return DataCollatorForMaskedItemPrediction(
        max_seq_length=config["max_seq_length"],
        vocab_size=vocab_size,
        **asdict(masking_arguments(config)),
        num_negatives=config["num_negatives"] if config["loss_type"] == "BPR" else 0,
        # masks drawn per batch number: a resumed run masks as the uninterrupted one (workers use torch's RNG)
        seed=config["seed"] if not config["dataloader_num_workers"] else None,
    )


def build_evaluator(config: Mapping[str, Any], processed: DataSplits) -> RankingEvaluator:
    popularity = None
    if config["eval_mode"].startswith("pop"):
        popularity = count_item_popularity(training_histories(processed), processed.tokenizer.vocab_size)
    return RankingEvaluator(
        mode=config["eval_mode"],
        ks=config["topk"],
        exclude_history=config["exclude_history"],
        item_popularity=popularity,
        seed=config["seed"],
        truncate_ranks=config["truncate_ranks"],
    )


def build_training_arguments(config: Mapping[str, Any], output_dir: str | os.PathLike) -> TrainingArguments:
    """Trainer defaults a user can trust: AdamW, linear decay with warm-up, weight
    decay off LayerNorm and biases (the Trainer's rule), gradient clipping,
    evaluation and checkpoints each epoch (or every ``eval_steps``), best model
    by the validation metric restored at the end. At least two checkpoints are
    kept (the best and the newest), and callbacks' states are restored on a
    resume: a run killed while it evaluates or saves its model resumes at its end."""
    strategy = "steps" if config.get("eval_steps") else "epoch"
    return TrainingArguments(
        output_dir=str(Path(output_dir) / CHECKPOINTS),
        **{field: config[key] for key, field in TRAINING_ARGUMENTS.items()},
        eval_strategy=strategy,
        save_strategy=strategy,
        logging_strategy=strategy,
        eval_steps=config.get("eval_steps"),
        save_steps=config.get("eval_steps"),
        logging_steps=config.get("eval_steps") or 500,
        train_sampling_strategy="group_by_length" if config["group_by_length"] else "random",
        load_best_model_at_end=True,
        metric_for_best_model=config["valid_metric"],
        greater_is_better=True,
        save_total_limit=max(config["save_total_limit"], 2),
        restore_callback_states_from_checkpoint=True,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )


def build_trainer(
    config: Mapping[str, Any],
    data: PreparedData,
    output_dir: str | os.PathLike,
    model=None,
    teachers: TeacherEnsemble | None = None,
) -> Bert4RecTrainer:
    """The Trainer of a run: Cloze masking for training, next-item batches for evaluation;
    ``teachers``: the run's (``distill_from`` / ``distill_teachers``), which only training reads."""
    processed = data.processed
    set_seed(config["seed"])
    if model is None:
        model = build_model_for(config, data)
    if config["loss_type"] == "SSM" and config["sampling_distribution"] == "popularity" and model.sampling_weights is None:
        model.set_sampling_weights(
            count_item_popularity(training_histories(processed), processed.tokenizer.vocab_size)
        )
    train_collator = build_train_collator(config, processed.tokenizer.vocab_size)
    evaluator = build_evaluator(config, processed)
    callbacks = [EarlyStoppingCallback(early_stopping_patience=config["stopping_step"])]
    if config["time_budget"] is not None:
        callbacks.append(TimeBudgetCallback(config["time_budget"]))
    if config["save_steps"] is not None:
        callbacks.append(CheckpointEvery(config["save_steps"]))
    if config["average_weights_share"] > 0:
        callbacks.append(WeightAverage(config["average_weights_share"], config["average_weights_every"]))
    thread_policy = apply_thread_policy(config["torch_threads"])
    if thread_policy is not None:
        callbacks.append(thread_policy)
    return Bert4RecTrainer(
        model=model,
        args=build_training_arguments(config, output_dir),
        train_dataset=processed.splits["train"],
        eval_dataset=processed.splits["validation"],
        data_collator=train_collator,
        # the whole history only where ranks read it (sampled negatives, exclude_history): full ranking skips the copy
        eval_data_collator=DataCollatorForNextItemPrediction(
            max_seq_length=config["max_seq_length"], whole_history=evaluator.needs_input_ids
        ),
        evaluator=evaluator,
        eval_loss=config["eval_loss"],
        next_item_dataset=processed.splits.get("next_item"),
        next_item_share=config["next_item_share"],
        teachers=teachers,
        processing_class=processed.tokenizer,  # every checkpoint holds item_vocab.json: it ranks and recommends
        callbacks=callbacks,
    )


def build_scheduled_trainer(
    config: RunConfig,
    data: PreparedData,
    output_dir: str | os.PathLike,
    schedule: AutoSchedule,
    teachers: TeacherEnsemble | None = None,
) -> tuple[Bert4RecTrainer, tuple[float, float]]:
    """The run's Trainer once ``schedule`` (``schedule: auto``) has fitted the steps to the
    rows and to this machine's measured seconds per step and per evaluation (returned too:
    the plan reuses them)."""
    trainer = build_trainer(config, data, output_dir, teachers=teachers)
    seconds = measure_seconds(trainer)
    if schedule.keys:
        schedule.fit_steps(config, len(trainer.train_dataset), *seconds)
        trainer = build_trainer(config, data, output_dir, teachers=teachers)
    return trainer, seconds


def evaluate_splits(trainer: Bert4RecTrainer, processed: DataSplits) -> dict[str, dict[str, float]]:
    """Validation and test metrics of the trainer's (best) model."""
    trainer.remove_callback(EarlyStoppingCallback)  # it watches eval_* metrics of training only
    return {
        split_name: trainer.evaluate(processed.splits[split], metric_key_prefix=split_name)
        for split_name, split in (("valid", "validation"), ("test", "test"))
    }


def evaluate_cold_start(
    trainer: Bert4RecTrainer, config: Mapping[str, Any], data: PreparedData
) -> tuple[dict[str, dict[str, float]], PreparedData]:
    """The cold-start protocol's test: the held-out items are added to the trained model
    (with their features when it has item features), the log is encoded again with the
    grown vocabulary, and test metrics are computed for every user and for those whose
    target is cold or warm. Returns the results and the grown data (what the model folder saves)."""
    tokenizer = ItemTokenizer(data.processed.tokenizer.items)
    first_cold_id = len(tokenizer)
    model = trainer.model
    features = data.item_features if model.config.item_features is not None else None
    extend_vocabulary(model, tokenizer, data.cold_items.to_pylist(), item_features=features)
    grown = prepare_data(config, tokenizer)
    grown.cold_items, grown.seconds = data.cold_items, data.seconds
    trainer.evaluator = build_evaluator(config, grown.processed)
    test = grown.processed.splits["test"]
    results = {"test": trainer.evaluate(test, metric_key_prefix="test")}
    return {**results, **evaluate_target_groups(trainer, test, first_cold_id)}, grown


def evaluate_target_groups(trainer: Bert4RecTrainer, test: Dataset, first_cold_id: int) -> dict[str, dict[str, float]]:
    """Test metrics of the rows whose target is a cold item (ids from ``first_cold_id``) and of the others."""
    groups = target_groups(test.with_format("numpy")["labels"], first_cold_id)
    return {
        f"test_{group}": trainer.evaluate(test.select(rows), metric_key_prefix=f"test_{group}")
        for group, rows in groups.items()
    }


def save_run(
    trainer: Bert4RecTrainer,
    config: RunConfig,
    data: PreparedData,
    results: Mapping[str, Mapping[str, float]],
    output_dir: str | os.PathLike,
    seconds: float,
    baselines: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> Path:
    """Writes the model folder: weights + code (``config.json`` records the training
    log's repeat share), vocabulary, model card, metrics with the baselines'
    (evaluated here unless given), resolved config and training curves; Trainer
    checkpoints are removed once the best model is saved, so the folder is exactly
    what a hub upload needs."""
    output_dir = Path(output_dir)
    if not trainer.is_world_process_zero():
        return output_dir
    if baselines is None:
        baselines = evaluate_run_baselines(trainer, config, data)
    final_dir, output_dir = output_dir, output_dir / STAGED_MODEL
    shutil.rmtree(output_dir, ignore_errors=True)
    if data.report is not None:
        trainer.model.config.repeat_share = data.report.repeat_share
    trainer.model.save_pretrained(output_dir)  # not trainer.save_model: it adds a pickled training_args.bin
    data.processed.tokenizer.save_pretrained(output_dir)
    evaluation = trainer.evaluator.describe()
    trained = {"epochs trained": round(trainer.state.epoch or 0.0, 2), "optimizer steps": trainer.state.global_step}
    average = trainer.weight_average()
    averaged_steps = average.steps if average is not None and average.applied else None
    if averaged_steps:
        trained["weights: the mean at steps"] = average.describe()
    write_model_card(
        output_dir, config, results, data.summary, evaluation, trained, baselines, trainer.model.config.repeat_share
    )
    write_json(
        output_dir / "metrics.json",
        {
            **results,
            "baselines": baselines,
            "evaluation": evaluation,
            "epochs": trainer.state.epoch,
            "global_steps": trainer.state.global_step,
            "best_checkpoint_metric": trainer.state.best_metric,
            "averaged_steps": averaged_steps,  # average_weights_share: the steps whose weights the model is the mean of
            "validation_curve": validation_curve(trainer.state.log_history, config["valid_metric"]),
            "train_seconds": seconds,
            "data_seconds": data.seconds,
            "data": data.summary,
            "split": data.split_record,
        },
    )
    write_yaml(output_dir / "run_config.yaml", config)
    plot_training_history(trainer.state.log_history, output_dir / "training_curves.png", config["valid_metric"])
    for staged in sorted(output_dir.iterdir()):  # each file is whole, old or new, at any moment
        os.replace(staged, final_dir / staged.name)
    output_dir.rmdir()
    remove_checkpoints(final_dir / CHECKPOINTS)
    return final_dir


def with_data_path(config_dict: Mapping[str, Any] | None, data_path: str | os.PathLike | None) -> dict[str, Any]:
    """The keyword layer with the log given as an argument set as ``data_path``;
    a second, different ``data_path`` among the keyword arguments is refused."""
    layer = dict(config_dict or {})
    if data_path is None:
        return layer
    given = layer.get("data_path")
    if given is not None and str(given) != os.fspath(data_path):
        raise ConfigError(f"two logs given: {os.fspath(data_path)} (the argument) and data_path={given}; give one")
    if not Path(data_path).expanduser().is_file():
        raise FileNotFoundError(
            f"{os.fspath(data_path)}: no such log file (a registered data set is named with --dataset / dataset=)"
        )
    return {**layer, "data_path": os.fspath(data_path)}


def check_data_path(config: RunConfig) -> None:
    """Refuses a ``data_path`` that is not a file, before anything is written or read."""
    path = config.get("data_path")
    if path and not Path(path).expanduser().is_file():
        reason = "is a folder, not a log file" if Path(path).expanduser().is_dir() else "no such file"
        raise FileNotFoundError(
            f"{path}: {reason} (data_path from {config.source_of('data_path')}; "
            "a registered data set is named with --dataset / dataset=)"
        )


def evaluate_run_baselines(
    trainer: Bert4RecTrainer, config: Mapping[str, Any], data: PreparedData, popularity: torch.Tensor | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """The baselines of a run, ranked by its evaluator on its test rows: the most
    popular items, and on a log with repeat consumption (the rule of the
    recommender's default) where history items stay candidates, the most recent
    items again."""
    repeats = data.report is not None and not history_excluded_by_default(data.report.repeat_share)
    repeats = repeats and trainer.evaluator.exclude_history is not True
    return evaluate_baselines(data.processed, trainer.evaluator, config["max_seq_length"], repeats, popularity)


def check_valid_metric(config: Mapping[str, Any]) -> None:
    """Refuses a ``valid_metric`` the evaluation does not report, before training:
    the Trainer would only fail at its first evaluation."""
    known = sorted(set(ranking_metrics([0], config["topk"])) - {"num_users"})
    if config["valid_metric"] not in known:
        raise ConfigError(
            f"valid_metric '{config['valid_metric']}' is not reported with topk={config['topk']}; choose one of {known}"
        )


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, names: Sequence[str] = RUN_FILES) -> None:
    """Refuses, before any training, a folder that already holds another run's
    files (``names``; they would be replaced only at the end, past saving) or
    an unfinished run's checkpoints (a resume would continue it)."""
    if overwrite:
        return
    taken = [name for name in names if (Path(output_dir) / name).exists()]
    if taken:
        raise FileExistsError(
            f"{output_dir} already holds {', '.join(taken)}; choose another output folder "
            "or pass overwrite=True (--overwrite) to replace them"
        )
    unfinished = last_checkpoint(Path(output_dir) / CHECKPOINTS)
    if unfinished:
        raise FileExistsError(
            f"{output_dir} holds an unfinished run ({unfinished}); pass resume=True (--resume) to continue it, "
            "or overwrite=True (--overwrite) to start again"
        )


def check_resumable(output_dir: str | os.PathLike, config: Mapping[str, Any]) -> str:
    """The checkpoint a resumed run continues from; refuses a folder with nothing
    to resume, and a configuration that differs from the one the checkpoints
    were trained with (naming the keys). A setting newer than the checkpoints (absent
    from their saved configuration) left at its package default is no difference: a new
    setting's default is the behaviour from before it existed."""
    folder = Path(output_dir) / CHECKPOINTS
    checkpoint = last_checkpoint(folder)
    if checkpoint is None:
        raise FileNotFoundError(
            f"nothing to resume in {output_dir}: {folder} holds no complete checkpoint; train without --resume"
        )
    saved_file = folder / RESUME_CONFIG
    if not saved_file.is_file():
        raise FileNotFoundError(f"cannot resume {checkpoint}: {saved_file}, the configuration it was trained with, is missing")
    changes = configuration_changes(read_yaml(saved_file), config)
    if changes:
        raise ConfigError(
            f"cannot resume {checkpoint} with another configuration ({changes}); "
            "give the run's own settings, or start again with --overwrite"
        )
    return checkpoint


def configuration_changes(saved: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """``"key: saved -> given, ..."`` for each setting of ``config`` that differs from the
    ``saved`` configuration a run was trained with ("" if none), beside those a resumed run
    may change. A setting newer than the saved configuration (absent from it) left at its
    package default is no difference: a new setting's default is the behaviour from before it
    existed."""
    given = parse_yaml(yaml_text(config))
    defaults = package_defaults()
    newer = {key for key in set(given) - set(saved) if key in defaults and given[key] == defaults[key]}
    differing = sorted(
        key
        for key in set(saved) | set(given)
        if key not in RESUME_MAY_DIFFER and key not in newer and saved.get(key) != given.get(key)
    )
    return ", ".join(f"{key}: {saved.get(key)!r} -> {given.get(key)!r}" for key in differing)


def finished_run_changes(folder: str | os.PathLike, config: RunConfig) -> str:
    """The settings (``configuration_changes``) in which the finished run saved in ``folder``
    differs from the run ``config`` would train, whose derived schedule (``schedule: auto``) is
    taken from the saved run's: what keeping that run in place of training this one would hide."""
    saved = read_yaml(Path(folder) / RESUME_CONFIG)
    AutoSchedule(config).adopt(config, saved)
    return configuration_changes(saved, config)


def check_kept_teacher(folder: str | os.PathLike, config: RunConfig) -> None:
    """Refuses a finished teacher that a resumed run would keep (``distill_teachers``) when it
    was trained with other settings than the teacher the run trains now (``config``): a setting
    changed between the first call and ``--resume`` would otherwise reach the student only
    through stale teachers."""
    changes = finished_run_changes(folder, config)
    if changes:
        raise ConfigError(
            f"cannot resume with the finished teacher {folder}: it was trained with another configuration "
            f"({changes}); give the run's own settings, or train the run and its teachers again with --overwrite"
        )


def resume_schedule(output_dir: str | os.PathLike, schedule: AutoSchedule, config: RunConfig) -> None:
    """A resumed run keeps the schedule its first part derived (from the configuration
    saved with its checkpoints), so it ends where the interrupted run would have."""
    saved_file = Path(output_dir) / CHECKPOINTS / RESUME_CONFIG
    schedule.adopt(config, read_yaml(saved_file) if saved_file.is_file() else {})


def remove_checkpoints(folder: str | os.PathLike) -> None:
    """Deletes the Trainer's ``checkpoint-<step>`` folders in ``folder``, then
    ``folder`` if that emptied it: anything else there (files a user had put
    there, TensorBoard logs) is kept."""
    folder = Path(folder)
    for checkpoint in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if checkpoint.is_dir():
            discarded = folder / f".discarded-{checkpoint.name}"  # renamed first: never half-deleted under its name
            os.replace(checkpoint, discarded)
            shutil.rmtree(discarded, ignore_errors=True)
    remove_branches(folder)
    for leftover in (folder / RESUME_CONFIG, folder / STAGING):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def run_bert4rec(
    dataset: str | None = None,
    config_file_list: Sequence[str | os.PathLike] | None = None,
    config_dict: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    data_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Trains and evaluates BERT4Rec; returns ``{"valid": {...}, "test": {...},
    "output_dir": ...}`` and prints the metrics as a table. ``data_path``: your
    interaction log (the ``data_path`` key; format and columns detected), which
    also names the run and its output folder (``outputs/<file name>``) unless
    ``dataset`` or ``output_dir`` do. A folder holding
    another run's model, or an unfinished run, is refused unless ``overwrite``.
    ``resume``: continue the unfinished run in ``output_dir`` from its newest
    checkpoint, with the same configuration (with a fixed ``torch_threads``,
    to the same final weights as a run never interrupted)."""
    config = load_config(dataset, config_file_list, with_data_path(config_dict, data_path))
    output_dir = Path(output_dir or config.get("output_dir") or Path("outputs") / config["dataset"])
    schedule = AutoSchedule(config)
    schedule.before_data(config)
    check_valid_metric(config)
    masking_arguments(config)  # refused before the data is read, not when the Trainer is built
    check_data_path(config)
    check_branches(config)
    check_weight_averaging(config)
    check_distillation(config)
    check_teachers_folder(output_dir, overwrite, resume)
    if not resume:
        check_output_dir(output_dir, overwrite)
    teacher_folders = config["distill_from"]
    if config["distill_teachers"]:
        if resume and not (output_dir / TEACHERS).is_dir():
            check_resumable(output_dir, config)  # nothing begun: refused as any resume of nothing

        def run_teacher(overrides: Mapping[str, Any], folder: Path, resume_teacher: bool) -> None:
            run_bert4rec(
                dataset, config_file_list, {**(config_dict or {}), **overrides}, folder,
                overwrite=not resume_teacher, resume=resume_teacher, data_path=data_path,
            )  # fmt: skip

        def teacher_config(overrides: Mapping[str, Any]) -> RunConfig:
            return load_config(dataset, config_file_list, with_data_path({**(config_dict or {}), **overrides}, data_path))

        def keep_teacher(overrides: Mapping[str, Any], folder: Path) -> None:
            check_kept_teacher(folder, teacher_config(overrides))

        check_teacher_data(config, teacher_config(teacher_settings(config)))

        teacher_folders = train_teachers(config, output_dir, resume, run_teacher, keep_teacher)
        if resume and last_checkpoint(output_dir / CHECKPOINTS) is None:
            # killed while the teachers trained: the run itself has no checkpoint yet, so it starts,
            # unless its folder holds its finished model, which --resume does not train again
            check_output_dir(output_dir)
            resume = False
    if resume:
        resume_schedule(output_dir, schedule, config)
    checkpoint = check_resumable(output_dir, config) if resume else None
    data = prepare_data(config)
    teachers = TeacherEnsemble.from_folders(teacher_folders, data.processed.tokenizer) if teacher_folders else None
    trainer, seconds = build_scheduled_trainer(config, data, output_dir, schedule, teachers)
    if config["next_item_branches"] > 1:
        trainer.add_callback(SwitchCheckpoint(trainer.switch_step()))
    main_process = trainer.is_world_process_zero()
    if main_process:
        data.report.plan = plan_training(trainer, config, seconds)
        data.report.plan["schedule"] = dict(schedule.values)
        data.report.warnings.extend([*schedule.warnings, *data.report.plan.pop("warnings")])
        data.report.write(output_dir)
        print(data.report.to_text())
        for warning in data.report.warnings:
            logger.warning("data report: %s", warning)
        print(f"Early stopping and the best model: validation {config['valid_metric']} of the {data.processed.report.describe()}")
        if checkpoint:
            print(f"Resuming from {checkpoint}")
        else:
            remove_checkpoints(output_dir / CHECKPOINTS)  # an overwritten run's
            write_atomically(output_dir / CHECKPOINTS / RESUME_CONFIG, yaml_text(config))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    if config["next_item_branches"] > 1:
        train_branches(
            trainer, config, lambda branch_config, folder: build_trainer(branch_config, data, folder, teachers=teachers)
        )
    seconds = time.perf_counter() - start
    results = evaluate_splits(trainer, data.processed)
    popularity = None
    if data.cold_items is not None:
        # counted before the held-out items join the vocabulary: the grown data would count their training-period interactions
        popularity = count_item_popularity(training_histories(data.processed), data.processed.tokenizer.vocab_size)
        cold_results, data = evaluate_cold_start(trainer, config, data)
        results = {"valid": results["valid"], **cold_results}
    baselines = evaluate_run_baselines(trainer, config, data, popularity) if main_process else {}
    save_run(trainer, config, data, results, output_dir, seconds, baselines)
    if main_process:
        table = metrics_table(with_baselines(results, baselines))
        print(f"\nEvaluation: {trainer.evaluator.describe()}; {data.processed.report.describe()}\n{table}")
        state = trainer.state
        print(f"Trained {state.epoch:.2f} epochs ({state.global_step} steps) in {seconds:.0f} s; model saved to {output_dir}")
    return {**results, "baselines": baselines, "output_dir": str(output_dir)}


def cold_start_reference(
    config: Mapping[str, Any], tokenizer: ItemTokenizer, model_dir: str | os.PathLike
) -> tuple[int, torch.Tensor]:
    """What a cold-start run's re-evaluation needs of its training data, prepared again as
    it trained (the same log and seed hold out the same items): the id of the first held-out
    item in the folder's grown vocabulary, and the training popularity the run's
    most-popular baseline counted (0 for the held-out items)."""
    trained = prepare_data(config).processed
    first_cold_id = len(trained.tokenizer)
    if tokenizer.items[: trained.tokenizer.num_items] != trained.tokenizer.items:
        raise ValueError(
            f"{model_dir}: its vocabulary does not begin with the items its run trained on (cold_item_share="
            f"{config['cold_item_share']}, seed={config['seed']}); cold and warm targets cannot be told apart"
        )
    return first_cold_id, count_item_popularity(training_histories(trained), trained.tokenizer.vocab_size)


def saved_run_config(model_dir: Path) -> Path | None:
    """The configuration a model folder was trained with: its own ``run_config.yaml``, or, for a
    checkpoint of an unfinished run (``<output_dir>/checkpoints/checkpoint-N``), the one its
    checkpoints folder keeps for ``--resume``."""
    own, run = model_dir / "run_config.yaml", model_dir.parent / RESUME_CONFIG
    if own.is_file():
        return own
    return run if model_dir.parent.name == CHECKPOINTS and run.is_file() else None


def evaluate_saved_model(
    model_dir: str | os.PathLike,
    dataset: str | None = None,
    config_file_list: Sequence[str | os.PathLike] | None = None,
    config_dict: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Re-evaluates a saved model folder on the validation and test users of its
    data set, with any ``eval_mode``, ``topk`` or ``exclude_history`` given in
    ``config_dict``, the baselines ranked the same way beside it. The folder's
    ``run_config.yaml`` (a checkpoint's: its run's, ``saved_run_config``) is the lowest user
    layer, so the data is prepared exactly as for training. A cold-start run's folder
    (``cold_item_share``) reports its cold and warm test targets apart, with the baselines
    counted as the run counted them."""
    model_dir = Path(local_folder(model_dir))
    saved_file = saved_run_config(model_dir)
    saved = [saved_file] if saved_file is not None else []
    if not (saved or dataset or config_file_list or (config_dict or {}).get("data_path")):
        raise ConfigError(
            f"{model_dir} has no run_config.yaml naming its data; give the data set (--dataset, --set data_path=...)"
        )
    config = load_config(dataset, [*saved, *(config_file_list or [])], config_dict)
    model = Bert4RecForMaskedItemPrediction.from_pretrained(model_dir)
    config["max_seq_length"] = model.config.max_seq_length
    config["report_to"] = "none"  # a re-evaluation is no training run to track (nor needs the tracker installed)
    data = prepare_data(config, tokenizer=ItemTokenizer.from_pretrained(model_dir))
    first_cold_id, popularity = None, None
    if config["cold_item_share"] > 0:
        first_cold_id, popularity = cold_start_reference(config, data.processed.tokenizer, model_dir)
    with TemporaryDirectory() as scratch:
        trainer = build_trainer(config, data, scratch, model=model)
        results = evaluate_splits(trainer, data.processed)
        if first_cold_id is not None:
            results.update(evaluate_target_groups(trainer, data.processed.splits["test"], first_cold_id))
        baselines = evaluate_run_baselines(trainer, config, data, popularity)
    split = data.processed.report.describe()
    table = metrics_table(with_baselines(results, baselines))
    print(f"Evaluation of {model_dir}: {trainer.evaluator.describe()}; {split}\n{table}")
    return {
        **results, "baselines": baselines, "evaluation": trainer.evaluator.describe(), "split": data.split_record,
    }  # fmt: skip


__all__ = [
    "CHECKPOINTS",
    "MASKING_KEYS",
    "MODEL_KEYS",
    "RESUME_CONFIG",
    "RESUME_MAY_DIFFER",
    "RUN_FILES",
    "STAGED_MODEL",
    "TEMPORAL_SPLIT_KEYS",
    "TRAINING_ARGUMENTS",
    "PreparedData",
    "build_evaluator",
    "build_model",
    "build_model_for",
    "build_train_collator",
    "build_trainer",
    "build_training_arguments",
    "check_data_path",
    "check_output_dir",
    "check_resumable",
    "check_valid_metric",
    "evaluate_cold_start",
    "evaluate_run_baselines",
    "evaluate_saved_model",
    "evaluate_splits",
    "masking_arguments",
    "prepare_data",
    "read_item_table",
    "read_log",
    "remove_checkpoints",
    "run_bert4rec",
    "save_run",
    "with_data_path",
]
