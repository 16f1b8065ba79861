"""The data pipeline: interaction logs -> user sequences -> leave-one-out splits -> batches.

    table = read_interactions("ratings.csv")            # or a registered name: read_interactions("ml-100k")
    sequences = build_sequences(table, min_user_interactions=5)
    splits, tokenizer, report = leave_one_out(sequences, max_seq_length=50)
    train_collator = DataCollatorForMaskedItemPrediction(max_seq_length=50, vocab_size=tokenizer.vocab_size)
    eval_collator = DataCollatorForNextItemPrediction(max_seq_length=50)
"""

from .collators import (
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    MaskingArguments,
    left_pad,
)
from .item_features import ItemFeatureField, ItemFeatureTable, read_item_features
from .readers import FORMATS, detect_format, read_interaction_file
from .registry import (
    DATASETS,
    DatasetSource,
    default_cache_dir,
    download_dataset,
    list_datasets,
    load_interactions,
    load_item_features,
    read_interactions,
    register_dataset,
)
from .sequences import build_sequences
from .splits import (
    LeaveOneOutSplits,
    SplitReport,
    leave_one_out,
    load_processed,
    save_processed,
    sliding_windows,
    training_histories,
)

__all__ = [
    "DATASETS",
    "FORMATS",
    "DataCollatorForMaskedItemPrediction",
    "DataCollatorForNextItemPrediction",
    "DatasetSource",
    "ItemFeatureField",
    "ItemFeatureTable",
    "LeaveOneOutSplits",
    "MaskingArguments",
    "SplitReport",
    "build_sequences",
    "default_cache_dir",
    "detect_format",
    "download_dataset",
    "leave_one_out",
    "left_pad",
    "list_datasets",
    "load_interactions",
    "load_item_features",
    "load_processed",
    "read_interaction_file",
    "read_interactions",
    "read_item_features",
    "register_dataset",
    "save_processed",
    "sliding_windows",
    "training_histories",
]
