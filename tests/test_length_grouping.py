"""Training batches of similar length (``group_by_length``): the same rows each epoch, in
batches each padded only to its own longest window, seeded per epoch so a resumed run
draws the same batches; prediction keeps the dataset's row order."""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from transformers import TrainingArguments

from bert4rec_hf import DataCollatorForMaskedItemPrediction, DataCollatorForNextItemPrediction
from bert4rec_hf.training import Bert4RecTrainer
from bert4rec_hf.training.config import load_config
from bert4rec_hf.training.pipeline import build_training_arguments
from bert4rec_hf.training.trainer import SimilarLengthSampler

from .helpers import tiny_model


def short_history_lengths(rows: int = 3000, seed: int = 0) -> np.ndarray:
    """Window lengths as on Amazon Beauty: most histories a few items, a long tail cut at 50."""
    return np.minimum(np.random.default_rng(seed).geometric(0.12, rows), 50)


def batch_widths(order: list[int], lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """The width each batch is padded to: its longest window."""
    return np.array([lengths[order[start : start + batch_size]].max() for start in range(0, len(order), batch_size)])


def test_each_epoch_is_a_seeded_permutation_of_narrow_shuffled_batches():
    lengths, batch_size = short_history_lengths(), 64
    sampler = SimilarLengthSampler(lengths, batch_size, seed=3, span_batches=10)
    first = list(sampler)
    assert sorted(first) == list(range(len(lengths))) and len(sampler) == len(lengths)
    assert list(SimilarLengthSampler(lengths, batch_size, seed=3, span_batches=10)) == first  # seeded
    sampler.set_epoch(1)
    assert list(sampler) != first  # another draw each epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch draws it again

    grouped = batch_widths(first, lengths, batch_size)
    shuffled = batch_widths(np.random.default_rng(0).permutation(len(lengths)).tolist(), lengths, batch_size)
    assert grouped.sum() < shuffled.sum() / 2  # at least half the padded positions saved
    assert not np.all(np.diff(grouped[:-1]) <= 0)  # batches mixed over the epoch, not longest first
    # a batch is one length band: within it, windows differ by far less than across the data
    spread = [np.ptp(lengths[first[start : start + batch_size]]) for start in range(0, len(first), batch_size)]
    assert np.median(spread) < np.ptp(lengths) / 4


def histories_dataset(rows: int = 600, vocab_size: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.15, rows) + 1, 20)
    histories = [rng.integers(2, vocab_size, n).tolist() for n in lengths]
    return Dataset.from_dict({"input_ids": histories, "labels": rng.integers(2, vocab_size, rows).tolist()})


def trainer_for(tmp_path, dataset: Dataset, strategy: str) -> Bert4RecTrainer:
    args = TrainingArguments(
        output_dir=str(tmp_path / strategy), per_device_train_batch_size=32, per_device_eval_batch_size=7,
        train_sampling_strategy=strategy, report_to=[], use_cpu=True, disable_tqdm=True, seed=5,
    )  # fmt: skip
    collator = DataCollatorForMaskedItemPrediction(max_seq_length=20, vocab_size=40, mask_ratio=0.2, seed=0)
    return Bert4RecTrainer(model=tiny_model(vocab_size=40, max_seq_length=20), args=args, train_dataset=dataset, data_collator=collator)


def test_the_trainer_pads_grouped_training_batches_narrower_and_reads_every_row(tmp_path):
    dataset = histories_dataset()
    widths = {}
    for strategy in ("random", "group_by_length"):
        loader = trainer_for(tmp_path, dataset, strategy).get_train_dataloader()
        batches = list(loader)
        assert sum(len(batch["input_ids"]) for batch in batches) == len(dataset)
        widths[strategy] = sum(batch["input_ids"].shape[1] for batch in batches)
    assert widths["group_by_length"] < 0.7 * widths["random"]


def test_predict_keeps_the_row_order_whatever_the_training_sampler(tmp_path):
    """transformers' own ``group_by_length`` reorders evaluation rows too; ranks must
    line up with the rows they belong to."""
    dataset = histories_dataset(rows=50)
    ranks = {}
    for strategy in ("random", "group_by_length"):
        trainer = trainer_for(tmp_path, dataset, strategy)
        trainer.eval_data_collator = DataCollatorForNextItemPrediction(max_seq_length=20)
        ranks[strategy] = trainer.predict(dataset).predictions
    assert np.array_equal(ranks["group_by_length"], ranks["random"])


def test_the_setting_reaches_the_trainer_and_is_off_by_default(tmp_path):
    assert build_training_arguments(load_config(), tmp_path).train_sampling_strategy == "random"
    grouped = load_config(config_dict={"group_by_length": True})
    assert build_training_arguments(grouped, tmp_path).train_sampling_strategy == "group_by_length"
