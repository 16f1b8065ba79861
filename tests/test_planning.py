"""The plan's timed training steps look like the run's own batches."""

from __future__ import annotations

import datasets
import pytest
from transformers import TrainingArguments

from bert4rec_hf import Bert4RecTrainer, DataCollatorForMaskedItemPrediction
from bert4rec_hf.training.planning import measure_step_seconds

from .helpers import tiny_model


def short_history_trainer(tmp_path, strategy: str) -> tuple[Bert4RecTrainer, list[int]]:
    """A Trainer on a short-history log (rows of 2-4 items, one in five of 20, as in a shop's
    log); the returned list gets the width each collated batch is padded to."""
    lengths = [20 if i % 5 == 0 else 2 + i % 3 for i in range(400)]
    rows = datasets.Dataset.from_dict({"input_ids": [[2 + (i + k) % 30 for k in range(n)] for i, n in enumerate(lengths)]})
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, report_to=[], use_cpu=True, disable_tqdm=True,
        save_strategy="no", seed=5, train_sampling_strategy=strategy,
    )  # fmt: skip
    collate = DataCollatorForMaskedItemPrediction(max_seq_length=20, vocab_size=40, mask_ratio=0.3, seed=0)
    widths: list[int] = []

    def recording(features):
        widths.append(max(len(feature["input_ids"]) for feature in features))
        return collate(features)

    trainer = Bert4RecTrainer(model=tiny_model(vocab_size=40, max_seq_length=20), args=args, train_dataset=rows, data_collator=recording)
    return trainer, widths


@pytest.mark.parametrize(("strategy", "widths"), [("random", {20}), ("group_by_length", {3, 4})])
def test_the_plan_times_batches_as_wide_as_the_runs_own(tmp_path, strategy, widths):
    """Rows spread over the log each hold a long window, as a random batch does; batches of
    similar length (``group_by_length``, about 7 positions on average here) are timed by those of
    the sampler nearest that mean, not by batches padded to the longest window."""
    trainer, seen = short_history_trainer(tmp_path, strategy)
    assert measure_step_seconds(trainer, steps=2) > 0
    assert len(seen) == 3 and set(seen) <= widths
