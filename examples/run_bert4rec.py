#!/usr/bin/env python
"""Train and evaluate BERT4Rec with the HF Trainer, in the style of transformers' run_mlm.py.

Copy this file and edit it. Every option is a dataclass field, so it is also a
command-line flag (``--hidden_size 64``) or a key of a JSON file passed as the
only argument. Example:

    python examples/run_bert4rec.py --dataset ml-100k --output_dir runs/ml-100k \
        --per_device_train_batch_size 64 --learning_rate 1e-3 --num_train_epochs 20 \
        --eval_strategy epoch --save_strategy epoch --load_best_model_at_end \
        --metric_for_best_model ndcg@10 --use_cpu
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from pathlib import Path

from transformers import EarlyStoppingCallback, HfArgumentParser, TrainingArguments, set_seed

from bert4rec_hf import (
    Bert4RecConfig,
    Bert4RecForMaskedItemPrediction,
    Bert4RecTrainer,
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    RankingEvaluator,
    data,
    load_interactions,
    read_interactions,
)
from bert4rec_hf.data import FORMATS, build_sequences, leave_one_out, temporal_split, training_histories
from bert4rec_hf.evaluation import count_item_popularity

logger = logging.getLogger(__name__)


def config_field(name: str) -> tuple:
    """A flag for one Bert4RecConfig setting, with the config's type and default."""
    default = getattr(Bert4RecConfig(), name)
    return name, type(default), field(default=default, metadata={"help": f"Bert4RecConfig.{name}"})


# The model to train: a checkpoint to continue from, or a fresh BERT4Rec with every model setting of
# Bert4RecConfig as a flag (--hidden_size 64, --loss_type BPR, ...). max_seq_length is a data argument.
ModelArguments = make_dataclass(
    "ModelArguments",
    [
        ("model_name_or_path", str | None, field(default=None, metadata={"help": "checkpoint folder or hub id"})),
        *(config_field(name) for name in Bert4RecConfig.run_settings() if name != "max_seq_length"),
    ],
)


@dataclass
class DataArguments:
    """Where the interactions come from and how they become training windows."""

    dataset: str = field(default="ml-100k", metadata={"help": "a registered data set (ml-100k is bundled)"})
    data_path: str | None = field(default=None, metadata={"help": "an interaction log file instead of --dataset"})
    data_format: str | None = field(default=None, metadata={"help": f"one of {', '.join(FORMATS)} (default: from the name)"})
    min_user_interactions: int = 0
    max_seq_length: int | None = field(default=None, metadata={"help": "default: the checkpoint's, or 50"})
    train_stride: int | None = field(default=None, metadata={"help": "window step (default max_seq_length // 2)"})
    train_prefixes: bool = field(default=False, metadata={"help": "windows end at every stride-th item, short ones too"})
    split: str = field(
        default="leave_one_out",
        metadata={"help": "leave_one_out, or temporal: one cut-off time for every user (the log needs timestamps)"},
    )
    split_cutoff: str | None = field(
        default=None, metadata={"help": "temporal: the test cut-off, a time in the log's unit or an ISO date"}
    )
    split_test_share: float = field(default=0.1, metadata={"help": "temporal, no cut-off: share of the log tested"})
    split_validation_share: float = field(default=0.1, metadata={"help": "temporal: share between the cut-offs"})
    split_targets: str = field(default="next", metadata={"help": "temporal: next (one per user) or all"})
    eval_mode: str = field(default="full", metadata={"help": "full, uni100 or pop100"})
    exclude_history: bool = False
    early_stopping_patience: int = field(default=10, metadata={"help": "evaluations without improvement"})


@dataclass
class MaskingArguments(data.MaskingArguments):
    """The Cloze task's settings (bert4rec_hf.data.MaskingArguments, the run configuration's masking
    keys). Here a checkpoint continues with the mask ratio it was trained with unless one is given,
    and last-item rows default to the run configuration's share."""

    mask_ratio: float | None = field(default=None, metadata={"help": "default: the checkpoint's, or 0.2"})
    last_item_mask_ratio: float = field(
        default=0.5, metadata={"help": "share of rows that mask only their last item (RecBole's ft_ratio)"}
    )

    def __post_init__(self) -> None:
        if self.mask_ratio is not None:  # else checked once the checkpoint's ratio is known
            super().__post_init__()


def sequence_length(requested: int | None, checkpoint: Bert4RecForMaskedItemPrediction | None) -> int:
    """The window length: a checkpoint reads at most its own ``max_seq_length``
    (its position table), so that is the default and the ceiling when continuing."""
    if checkpoint is None:
        return requested or 50
    limit = checkpoint.config.max_seq_length
    if requested is not None and requested > limit:
        raise ValueError(f"--max_seq_length {requested} exceeds the checkpoint's max_seq_length={limit}")
    return requested or limit


def masking_ratio(requested: float | None, checkpoint: Bert4RecForMaskedItemPrediction | None) -> float:
    """The Cloze mask ratio: a checkpoint continues with the ratio it was trained with
    (its config records it) unless one is asked for."""
    if requested is not None:
        return requested
    return checkpoint.config.mask_ratio if checkpoint is not None else data.MaskingArguments.mask_ratio


def build_evaluator(data_args: DataArguments, processed, vocab_size: int, seed: int) -> RankingEvaluator:
    """The ranking protocol; ``pop100`` draws its negatives by training popularity, counted here
    once per training interaction (not over the overlapping training windows)."""
    popularity = None
    if data_args.eval_mode.startswith("pop"):
        popularity = count_item_popularity(training_histories(processed), vocab_size)
    return RankingEvaluator(
        mode=data_args.eval_mode, exclude_history=data_args.exclude_history, item_popularity=popularity, seed=seed
    )


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, MaskingArguments, TrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, masking_args, training_args = parser.parse_json_file(json_file=Path(argv[0]).resolve())
    else:
        model_args, data_args, masking_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Data: log -> one time-ordered row per user -> leave-one-out or temporal splits
    if data_args.data_path:
        table = read_interactions(data_args.data_path, format=data_args.data_format)
    else:
        table = load_interactions(data_args.dataset)
    temporal = data_args.split == "temporal"
    if not temporal and data_args.split != "leave_one_out":
        raise ValueError(f"--split must be leave_one_out or temporal, got {data_args.split!r}")
    sequences = build_sequences(
        table, min_user_interactions=data_args.min_user_interactions, keep_timestamps=temporal
    )
    tokenizer, model = None, None
    if model_args.model_name_or_path:
        from bert4rec_hf import ItemTokenizer

        tokenizer = ItemTokenizer.from_pretrained(model_args.model_name_or_path)
        model = Bert4RecForMaskedItemPrediction.from_pretrained(model_args.model_name_or_path)
    data_args.max_seq_length = sequence_length(data_args.max_seq_length, model)
    masking_args = replace(masking_args, mask_ratio=masking_ratio(masking_args.mask_ratio, model))
    windows = dict(
        tokenizer=tokenizer,
        max_seq_length=data_args.max_seq_length,
        stride=data_args.train_stride,
        prefixes=data_args.train_prefixes,
        fit_on="all",
    )
    if temporal:
        processed = temporal_split(
            sequences, **windows, cutoff=data_args.split_cutoff, test_share=data_args.split_test_share,
            validation_share=data_args.split_validation_share, targets=data_args.split_targets,
        )  # fmt: skip
    else:
        processed = leave_one_out(sequences, **windows)
    splits, tokenizer, report = processed
    logger.info("splits: %s", {name: len(split) for name, split in splits.items()})

    # Model: set the seed first so that two runs with the same seed agree
    set_seed(training_args.seed)
    if model is None:
        config = Bert4RecConfig(
            vocab_size=len(tokenizer),
            max_seq_length=data_args.max_seq_length,
            mask_ratio=masking_args.mask_ratio,  # recorded with the model
            **{name: value for name, value in asdict(model_args).items() if name != "model_name_or_path"},
        )
        model = Bert4RecForMaskedItemPrediction(config)
    if model.config.loss_type == "SSM" and model.config.sampling_distribution == "popularity":
        # the sampled softmax's proposal: training popularity, counted once per training interaction
        model.set_sampling_weights(count_item_popularity(training_histories(processed), len(tokenizer)))

    callbacks = []
    if training_args.load_best_model_at_end and training_args.metric_for_best_model:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    evaluator = build_evaluator(data_args, processed, len(tokenizer), training_args.seed)
    trainer = Bert4RecTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=DataCollatorForMaskedItemPrediction(
            max_seq_length=data_args.max_seq_length,
            vocab_size=len(tokenizer),
            **asdict(masking_args),
            num_negatives=model_args.num_negatives if model_args.loss_type == "BPR" else 0,
        ),
        eval_data_collator=DataCollatorForNextItemPrediction(
            max_seq_length=data_args.max_seq_length, whole_history=evaluator.needs_input_ids
        ),
        evaluator=evaluator,
        processing_class=tokenizer,  # every save writes item_vocab.json beside the weights
        callbacks=callbacks,
    )

    results = {}
    if training_args.do_train or not training_args.do_eval:
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
    results["valid"] = trainer.evaluate(splits["validation"], metric_key_prefix="valid")
    results["test"] = trainer.evaluate(splits["test"], metric_key_prefix="test")
    if trainer.is_world_process_zero():
        logger.info("evaluation: %s", trainer.evaluator.describe())
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(training_args.output_dir) / "all_results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps({split: {k: v for k, v in m.items() if "@10" in k} for split, m in results.items()}))
    return results


if __name__ == "__main__":
    main()
