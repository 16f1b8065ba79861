"""A run's last steps on next-item rows (``next_item_share``): BERT's pre-training on the
Cloze task, then fine-tuning on the task the model is queried with, in one run.

The split builds the next-item rows, the collator masks a flagged row at its last item
alone, the sampler switches from the Cloze rows to them at the right step (and draws
each phase as passes over its rows), and the Trainer and the pipeline wire them up.
A killed run resumes across the switch: ``tests/test_resume.py``."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import TrainingArguments

from bert4rec_hf import DataCollatorForMaskedItemPrediction
from bert4rec_hf.configuration_bert4rec import IGNORE_INDEX
from bert4rec_hf.data import build_sequences, leave_one_out, read_interactions, temporal_split
from bert4rec_hf.training import Bert4RecTrainer
from bert4rec_hf.training.config import ConfigError, load_config
from bert4rec_hf.training.planning import measure_step_seconds, phase_budget_warning
from bert4rec_hf.training.trainer import NextItemPhaseSampler, SeededShuffle, SimilarLengthSampler

from .helpers import ML100K, tiny_model


@pytest.fixture(scope="module")
def ml100k_sequences():
    return build_sequences(read_interactions(ML100K), keep_timestamps=True)


def rows(dataset: datasets.Dataset) -> list[tuple[str, list[int]]]:
    return list(zip(dataset["user_id"], dataset["input_ids"], strict=True))


def test_the_next_item_split_is_a_window_ending_at_every_training_item(ml100k_sequences):
    plain = leave_one_out(ml100k_sequences, max_seq_length=20, stride=7, fit_on="all")
    both = leave_one_out(ml100k_sequences, max_seq_length=20, stride=7, fit_on="all", next_item_rows=True)
    every_item = leave_one_out(ml100k_sequences, max_seq_length=20, stride=1, fit_on="all", prefixes=True)
    assert "next_item" not in plain.splits and "next_item" not in plain.report.rows
    assert rows(both.splits["train"]) == rows(plain.splits["train"])  # the Cloze windows as before
    assert rows(both.splits["next_item"]) == rows(every_item.splits["train"])
    training_items = sum(len(history) for history in plain.splits["validation"]["input_ids"])
    assert both.report.rows["next_item"] == training_items == both.splits["next_item"].num_rows

    temporal = temporal_split(ml100k_sequences, max_seq_length=20, stride=7, next_item_rows=True)
    history = temporal.splits["history"]["input_ids"]
    assert temporal.splits["next_item"].num_rows == sum(len(items) for items in history)
    assert [items[-1] for items in temporal.splits["next_item"]["input_ids"]] == [item for items in history for item in items]


def test_flagged_rows_are_masked_at_their_last_item_alone_and_the_others_as_before():
    histories = [[2, 3, 4, 5, 6, 7], [8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18], [19, 20, 21, 22]]
    flags = [True, False, True, False]
    for ratio in (0.0, 0.3):
        collate = DataCollatorForMaskedItemPrediction(max_seq_length=8, mask_ratio=0.6, last_item_mask_ratio=ratio, seed=4)
        unflagged = collate([{"input_ids": items} for items in histories])
        collate.batches_made = 0
        flagged = collate([{"input_ids": items, "last_item_only": flag} for items, flag in zip(histories, flags, strict=True)])
        for row, flag in enumerate(flags):
            if flag:
                assert flagged["labels"][row, :-1].eq(IGNORE_INDEX).all()
                assert flagged["labels"][row, -1] == histories[row][-1] and flagged["input_ids"][row, -1] == 1
            else:  # the same draws as a batch without the flag
                assert torch.equal(flagged["labels"][row], unflagged["labels"][row])
                assert torch.equal(flagged["input_ids"][row], unflagged["input_ids"][row])
    views = DataCollatorForMaskedItemPrediction(max_seq_length=8, mask_ratio=0.6, num_views=2, seed=1)
    stacked = views([{"input_ids": items, "last_item_only": flag} for items, flag in zip(histories, flags, strict=True)])
    assert [bool(stacked["labels"][row, :-1].eq(IGNORE_INDEX).all()) for row in range(8)] == [True, False, True, False] * 2


def draw(sampler: NextItemPhaseSampler, epochs: int) -> np.ndarray:
    drawn = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn.extend(sampler)
        assert len(drawn) == (epoch + 1) * len(sampler)
    return np.array(drawn)


@pytest.mark.parametrize("grouped", [False, True])
def test_the_sampler_draws_cloze_rows_up_to_the_switch_then_next_item_rows_pass_after_pass(grouped):
    cloze_rows, next_rows = 10, 7
    lengths = np.random.default_rng(0).integers(1, 9, next_rows)
    next_item = SimilarLengthSampler(lengths, 2, seed=9, span_batches=2) if grouped else SeededShuffle(next_rows, 9)
    sampler = NextItemPhaseSampler(SeededShuffle(cloze_rows, 3), next_item, switch=25, epoch_rows=12)
    drawn = draw(sampler, 5)
    cloze, later = drawn[:25], drawn[25:] - cloze_rows
    assert (cloze < cloze_rows).all() and (later >= 0).all() and (later < next_rows).all()
    for start in (0, 10):  # each pass over the Cloze rows holds every row once, in a new order
        assert sorted(cloze[start : start + 10]) == list(range(cloze_rows))
    assert list(cloze[:10]) != list(cloze[10:20])
    for start in (0, 7, 14, 21):
        assert sorted(later[start : start + 7]) == list(range(next_rows))
    assert np.array_equal(draw(NextItemPhaseSampler(SeededShuffle(cloze_rows, 3), next_item, 25, 12), 5), drawn)  # seeded
    sampler.set_epoch(3)  # an epoch drawn again (a resume) is the same rows
    assert list(sampler) == list(drawn[36:48])


def phase_trainer(tmp_path, share: float, **arguments) -> tuple[Bert4RecTrainer, list[torch.Tensor]]:
    """A Trainer on 40 Cloze rows and 30 next-item rows; the returned list gets each
    training batch's ``last_item_only`` flags (as which rows of the two sets it read)."""
    cloze = datasets.Dataset.from_dict({"input_ids": [[2 + i % 30, 3 + i % 29, 4] for i in range(40)]})
    next_item = datasets.Dataset.from_dict({"input_ids": [[5, 2 + i % 30] for i in range(30)]})
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, report_to=[], use_cpu=True, disable_tqdm=True,
        save_strategy="no", seed=5, **arguments,
    )  # fmt: skip
    collate = DataCollatorForMaskedItemPrediction(max_seq_length=6, vocab_size=40, mask_ratio=0.3, seed=0)
    seen: list[torch.Tensor] = []

    def recording(features):
        seen.append(torch.tensor([feature.get("last_item_only", False) for feature in features]))
        batch = collate(features)
        widths = {len(feature["input_ids"]) for feature in features}
        assert widths == ({2} if seen[-1].all() else {3})  # the flag travels with its own rows
        return batch

    trainer = Bert4RecTrainer(
        model=tiny_model(vocab_size=40, max_seq_length=6), args=args, train_dataset=cloze, data_collator=recording,
        next_item_dataset=next_item, next_item_share=share,
    )  # fmt: skip
    return trainer, seen


def test_the_trainer_trains_the_last_share_of_its_steps_on_next_item_rows(tmp_path):
    trainer, seen = phase_trainer(tmp_path / "steps", 0.25, max_steps=12)
    trainer.train()
    assert trainer.state.global_step == 12
    trained = seen[:12]  # the loader collates one batch ahead
    assert [bool(flags.all()) for flags in trained] == [False] * 9 + [True] * 3
    assert not any(bool(flags.any()) for flags in trained[:9])
    assert trainer.state.epoch == pytest.approx(12 / 5)  # an epoch: a pass's worth of steps over the 40 Cloze rows

    trainer, seen = phase_trainer(tmp_path / "epochs", 0.5, num_train_epochs=2)  # 2 x 5 steps, the last 5 next-item
    trainer.train()
    assert [bool(flags.all()) for flags in seen[:10]] == [False] * 5 + [True] * 5


def test_bad_phase_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="next_item_share must be a share"):
        phase_trainer(tmp_path, 1.5, max_steps=4)
    with pytest.raises(ValueError, match="give it"):
        Bert4RecTrainer(
            model=tiny_model(vocab_size=40, max_seq_length=6), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True),
            train_dataset=datasets.Dataset(pa.table({"input_ids": [[2, 3]]})), next_item_share=0.5,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="next_item_share.*-0.1"):
        load_config(config_dict={"next_item_share": -0.1})
    assert load_config()["next_item_share"] == 0.0


def test_the_plan_times_the_steps_of_both_phases(tmp_path):
    """The planned time weighs a Cloze step and a next-item step by their shares of the run,
    so it times a batch of each kind (a next-item step can cost a fraction of a Cloze one)."""
    trainer, seen = phase_trainer(tmp_path, 0.5, max_steps=4)
    assert measure_step_seconds(trainer, steps=2) > 0
    kinds = [bool(flags.all()) for flags in seen]
    assert kinds == [False] * 3 + [True] * 3  # a warm-up step and two timed ones of each


def test_the_plan_warns_when_the_time_budget_cuts_the_next_item_phase():
    """The switch step is fixed from the planned steps, so a binding budget shortens the
    next-item phase or skips it: the plan says which, with the steps that fit."""
    # 8,000 steps switching at 2,000, 0.5 s a step, 100 s of evaluations
    assert phase_budget_warning(8000, 0.75, None, 0.5, 100.0) is None
    assert phase_budget_warning(8000, 0.75, 5000.0, 0.5, 100.0) is None  # 9,800 steps fit
    assert phase_budget_warning(8000, 0.0, 100.0, 0.5, 0.0) is None  # no phases
    cut = phase_budget_warning(8000, 0.75, 3100.0, 0.5, 100.0)
    assert "fits about 6,000 of the 8,000 planned steps" in cut and "about 4,000 of its 6,000 steps" in cut
    skipped = phase_budget_warning(8000, 0.75, 900.0, 0.5, 100.0)
    assert "fits about 1,600" in skipped and "before the switch to next-item rows at step 2,000" in skipped
