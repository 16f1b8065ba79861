"""Evaluation knows each user's whole history, not only the model's input window;
training statistics count each training interaction once (issue 20, defects 1 and 2)."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from bert4rec_hf import DataCollatorForNextItemPrediction, RankingEvaluator
from bert4rec_hf.data import build_sequences, leave_one_out, read_interactions, training_histories
from bert4rec_hf.evaluation import count_item_popularity
from bert4rec_hf.evaluation import evaluator as evaluator_module
from bert4rec_hf.training import Bert4RecTrainer

from .helpers import ML100K, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = 302
WINDOW = 6  # max_seq_length: the model reads the last 5 history items


def long_histories(users: int = 12, length: int = 150, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    generator = np.random.default_rng(seed)
    histories = [generator.choice(np.arange(2, VOCAB), size=length + 1, replace=False).tolist() for _ in range(users)]
    return [h[:-1] for h in histories], [h[-1] for h in histories]


@pytest.mark.parametrize("mode", ["uni100", "pop100"])
def test_negatives_are_never_in_the_whole_history(mode):
    histories, targets = long_histories()
    batch = DataCollatorForNextItemPrediction(max_seq_length=WINDOW, whole_history=True)(
        [{"input_ids": h, "labels": t} for h, t in zip(histories, targets, strict=True)]
    )
    assert batch["input_ids"].shape[1] == WINDOW and batch["history_ids"].shape[1] == 150
    # scores: every item of the whole history beats the target, every other item loses to it
    scores = torch.zeros(len(targets), VOCAB)
    scores.scatter_(1, batch["history_ids"], 10.0)
    scores[torch.arange(len(targets)), torch.tensor(targets)] = 5.0
    evaluator = RankingEvaluator(mode=mode, item_popularity=torch.ones(VOCAB), seed=3)
    whole = evaluator.rank(scores, batch["input_ids"], torch.tensor(targets), history=batch["history_ids"])
    window_only = evaluator.rank(scores, batch["input_ids"], torch.tensor(targets))
    assert whole.tolist() == [0] * len(targets)  # no negative was an item the user had
    assert (window_only > 0).all()  # the window alone lets older history items in as negatives


def test_exclude_history_removes_the_whole_history():
    histories, targets = long_histories(users=4)
    batch = DataCollatorForNextItemPrediction(max_seq_length=WINDOW, whole_history=True)(
        [{"input_ids": h, "labels": t} for h, t in zip(histories, targets, strict=True)]
    )
    scores = torch.zeros(4, VOCAB)
    scores.scatter_(1, batch["history_ids"], 10.0)
    evaluator = RankingEvaluator(exclude_history=True)
    ranks = evaluator.rank(scores, batch["input_ids"], torch.tensor(targets), history=batch["history_ids"])
    # only the 302 - 2 - 150 - 1 items outside the history and the target remain, all tied with it at 0
    assert ranks.tolist() == [VOCAB - 2 - 150 - 1] * 4
    model = tiny_model(vocab_size=VOCAB, max_seq_length=WINDOW)
    hidden = torch.randn(4, model.config.hidden_size)
    full = evaluator.rank(
        model.item_scorer(hidden, batch["input_ids"]).all(), batch["input_ids"], torch.tensor(targets),
        history=batch["history_ids"],
    )  # fmt: skip
    scanned = evaluator.rank_hidden_states(
        model, hidden, batch["input_ids"], torch.tensor(targets), history=batch["history_ids"]
    )
    assert (full - scanned).abs().max() <= 1  # the two kernels may differ by one float32 ulp at a tie


def test_trainer_draws_negatives_outside_the_users_whole_history(tmp_path, monkeypatch):
    histories, targets = long_histories(users=9)
    drawn = []
    original = evaluator_module.sample_negatives

    def recording(history, *args, **kwargs):
        negatives = original(history, *args, **kwargs)
        drawn.append((history.clone(), negatives.clone()))
        return negatives

    monkeypatch.setattr(evaluator_module, "sample_negatives", recording)
    trainer = Bert4RecTrainer(
        model=tiny_model(vocab_size=VOCAB, max_seq_length=WINDOW),
        args=TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to="none", use_cpu=True),
        eval_dataset=Dataset.from_dict({"input_ids": histories, "labels": targets}),
        data_collator=DataCollatorForNextItemPrediction(max_seq_length=WINDOW, whole_history=True),
        evaluator=RankingEvaluator(mode="uni100", seed=1),
    )
    metrics = trainer.evaluate()
    assert metrics["eval_num_users"] == 9 and sum(len(h) for h, _ in drawn) == 9
    for history, negatives in drawn:
        assert history.shape[1] == 150  # the whole history, not the model's 5-item window
        assert not (negatives[:, :, None] == history[:, None, :]).any()


def test_popularity_counts_each_training_interaction_once():
    sequences = build_sequences(read_interactions(ML100K))
    processed = leave_one_out(sequences, max_seq_length=50, stride=1, prefixes=True, fit_on="all")
    vocab_size = processed.tokenizer.vocab_size
    counted = count_item_popularity(training_histories(processed), vocab_size)
    expected = torch.zeros(vocab_size, dtype=torch.float64)
    for items in sequences["item_ids"]:  # brute force: every interaction but each user's last two
        for item in processed.tokenizer.encode(items[:-2]):
            expected[item] += 1
    assert torch.equal(counted, expected) and counted.sum() == 100_000 - 2 * 943
    over_windows = count_item_popularity(processed.splits["train"]["input_ids"], vocab_size)
    assert over_windows.sum() > 20 * counted.sum()  # what the windows counted before: up to 50 times each
    through_validation = leave_one_out(sequences, max_seq_length=50, fit_on="all", train_on_validation_item=True)
    assert count_item_popularity(training_histories(through_validation), vocab_size).sum() == 100_000 - 943
    truncated = leave_one_out(sequences, max_seq_length=50, fit_on="all", max_history_length=10)
    with pytest.raises(ValueError, match="max_history_length"):
        training_histories(truncated)


@pytest.mark.parametrize(("mode", "exclude", "whole"), [("full", False, False), ("full", True, True), ("pop100", False, True)])
def test_runs_copy_the_whole_history_only_where_ranks_read_it(tmp_path, mode, exclude, whole):
    from bert4rec_hf.training.config import load_config
    from bert4rec_hf.training.pipeline import build_trainer, prepare_data

    config = load_config("ml-100k", config_dict={"eval_mode": mode, "exclude_history": exclude, "torch_threads": 1})
    trainer = build_trainer(config, prepare_data(config), tmp_path)
    assert trainer.eval_data_collator.whole_history is whole
    assert ("history_ids" in trainer.eval_data_collator([{"input_ids": [2, 3], "labels": 4}])) is whole
