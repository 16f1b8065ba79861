"""The data pipeline: interaction logs -> user sequences -> leave-one-out or temporal splits -> batches.

    table = read_interactions("ratings.csv")            # or a registered name: read_interactions("ml-100k")
    sequences = build_sequences(table, min_user_interactions=5)
    splits, tokenizer, report = leave_one_out(sequences, max_seq_length=50)
    # or along time: build_sequences(table, keep_timestamps=True), then temporal_split(sequences, test_share=0.1)
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
from .readers import FORMATS, detect_format, filter_by_rating, read_interaction_file
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
from .sequences import FilterStep, build_sequences
from .splits import (
    DataSplits,
    LeaveOneOutSplits,
    SplitReport,
    leave_one_out,
    load_processed,
    save_processed,
    sliding_windows,
    temporal_split,
    training_histories,
)

__all__ = [
    "DATASETS",
    "FORMATS",
    "DataCollatorForMaskedItemPrediction",
    "DataCollatorForNextItemPrediction",
    "DataSplits",
    "DatasetSource",
    "FilterStep",
    "ItemFeatureField",
    "ItemFeatureTable",
    "LeaveOneOutSplits",
    "MaskingArguments",
    "SplitReport",
    "build_sequences",
    "default_cache_dir",
    "detect_format",
    "download_dataset",
    "filter_by_rating",
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
    "temporal_split",
    "training_histories",
]
