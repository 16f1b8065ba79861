"""Bert4RecTrainer.evaluate() against a brute-force loop over users."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction
from bert4rec_hf.evaluation import RankingEvaluator, count_item_popularity, ranking_metrics, sample_negatives
from bert4rec_hf.training import Bert4RecTrainer

SPECIAL = 2
KS = (1, 5, 10)


def collate(features):
    """Next-item evaluation batch: left-padded history + [MASK], the target as the last label."""
    histories = [list(f["input_ids"]) for f in features]
    width = max(len(h) for h in histories) + 1
    input_ids = torch.zeros(len(features), width, dtype=torch.long)
    for row, history in enumerate(histories):
        input_ids[row, width - 1 - len(history) : width - 1] = torch.tensor(history, dtype=torch.long)
    input_ids[:, -1] = 1
    labels = torch.full_like(input_ids, -100)
    labels[:, -1] = torch.tensor([f["labels"] for f in features])
    return {"input_ids": input_ids, "attention_mask": input_ids.ne(0).long(), "labels": labels}


def make_data(vocab_size, users=23, seed=0):
    gen = torch.Generator().manual_seed(seed)
    histories, targets = [], []
    for _ in range(users):
        length = int(torch.randint(1, 11, (1,), generator=gen))
        histories.append(torch.randint(SPECIAL, vocab_size, (length,), generator=gen).tolist())
        targets.append(int(torch.randint(SPECIAL, vocab_size, (1,), generator=gen)))
    targets[0] = histories[0][-1]  # a repeat consumption
    return Dataset.from_dict({"input_ids": histories, "labels": targets})


def make_model(vocab_size=52, seed=0):
    torch.manual_seed(seed)
    config = Bert4RecConfig(vocab_size=vocab_size, hidden_size=16, n_layers=1, n_heads=2, inner_size=32)
    return Bert4RecForMaskedItemPrediction(config).eval()


def training_args(tmp_path, batch_size=4, **kwargs):
    return TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=batch_size,
        per_device_train_batch_size=8,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        **kwargs,
    )


def brute_ranks(model, dataset, exclude_history=False, negatives=None):
    """One forward per user; ranks counted item by item in Python."""
    ranks = []
    for row, (history, target) in enumerate(zip(dataset["input_ids"], dataset["labels"], strict=True)):
        scores = model.next_item_scores(torch.tensor([history]))[0].tolist()
        if negatives is None:
            candidates = [i for i in range(SPECIAL, len(scores)) if not (exclude_history and i in history)]
        else:
            candidates = [int(i) for i in negatives[row] if i >= 0]
        ranks.append(sum(1 for i in candidates if i != target and scores[i] >= scores[target]))
    return ranks


def brute_loss(model, dataset):
    """Mean cross-entropy of each target under the full softmax over real items."""
    losses = [
        torch.nn.functional.cross_entropy(model.next_item_scores(torch.tensor([history])), torch.tensor([target]))
        for history, target in zip(dataset["input_ids"], dataset["labels"], strict=True)
    ]
    return float(torch.stack(losses).mean())


def brute_metrics(ranks, ks=KS):
    n = len(ranks)
    out = {"mrr": sum(1 / (r + 1) for r in ranks) / n, "num_users": n}
    for k in ks:
        out[f"hit@{k}"] = sum(r < k for r in ranks) / n
        out[f"ndcg@{k}"] = sum(1 / math.log2(r + 2) for r in ranks if r < k) / n
        out[f"mrr@{k}"] = sum(1 / (r + 1) for r in ranks if r < k) / n
        out[f"precision@{k}"] = out[f"hit@{k}"] / k
    return out


def assert_metrics_equal(reported, expected, prefix="eval_"):
    for key, value in expected.items():
        assert reported[prefix + key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("exclude_history", [False, True])
def test_evaluate_matches_brute_force(tmp_path, exclude_history):
    model, dataset = make_model(), make_data(52)
    evaluator = RankingEvaluator(ks=KS, exclude_history=exclude_history)
    trainer = Bert4RecTrainer(
        model=model, args=training_args(tmp_path), data_collator=collate, eval_dataset=dataset, evaluator=evaluator
    )
    expected = brute_ranks(model, dataset, exclude_history=exclude_history)
    metrics = trainer.evaluate()
    assert_metrics_equal(metrics, brute_metrics(expected))
    assert metrics["eval_loss"] == pytest.approx(brute_loss(model, dataset), rel=1e-5)
    predicted = trainer.predict(dataset)
    assert predicted.predictions.shape == (len(dataset), 1)
    assert predicted.predictions[:, 0].tolist() == expected


@pytest.mark.parametrize("mode", ["uni20", "pop20"])
def test_sampled_evaluation_is_independent_of_batch_size(tmp_path, mode):
    vocab_size = 302
    model, dataset = make_model(vocab_size), make_data(vocab_size, users=30)
    popularity = count_item_popularity(dataset["input_ids"], vocab_size)
    evaluator = RankingEvaluator(mode, ks=KS, item_popularity=popularity, seed=5)
    results = []
    for batch_size in (3, 8):
        trainer = Bert4RecTrainer(
            model=model,
            args=training_args(tmp_path, batch_size),
            data_collator=collate,
            eval_dataset=dataset,
            evaluator=evaluator,
        )
        results.append(trainer.evaluate())
    for key in brute_metrics([0]):
        assert results[0]["eval_" + key] == results[1]["eval_" + key]
    # brute force with the same negatives (drawn one user at a time)
    negatives = [
        sample_negatives(
            torch.tensor([history + [1]]),
            torch.tensor([target]),
            vocab_size,
            20,
            weights=popularity if mode.startswith("pop") else None,
            seed=5,
        )[0]
        for history, target in zip(dataset["input_ids"], dataset["labels"], strict=True)
    ]
    assert_metrics_equal(results[0], brute_metrics(brute_ranks(model, dataset, negatives=negatives)))


def test_plain_trainer_with_preprocess_logits_matches(tmp_path):
    model, dataset = make_model(), make_data(52)
    evaluator = RankingEvaluator(ks=KS)
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path, 5),
        data_collator=collate,
        eval_dataset=dataset,
        compute_metrics=evaluator.compute_metrics,
        preprocess_logits_for_metrics=evaluator.preprocess_logits_for_metrics,
    )
    assert_metrics_equal(trainer.evaluate(), brute_metrics(brute_ranks(model, dataset)))


def test_batch_eval_metrics(tmp_path):
    model, dataset = make_model(), make_data(52)
    trainer = Bert4RecTrainer(
        model=model,
        args=training_args(tmp_path, 4, batch_eval_metrics=True),
        data_collator=collate,
        eval_dataset=dataset,
        evaluator=RankingEvaluator(ks=KS, exclude_history=True),
    )
    assert_metrics_equal(trainer.evaluate(), brute_metrics(brute_ranks(model, dataset, exclude_history=True)))


def test_metric_for_best_model_with_load_best_model_at_end(tmp_path):
    model, dataset = make_model(), make_data(52, users=16)
    args = training_args(
        tmp_path,
        8,
        num_train_epochs=3,
        eval_strategy="epoch",
        save_strategy="epoch",
        learning_rate=1e-2,
        load_best_model_at_end=True,
        metric_for_best_model="ndcg@10",
        save_total_limit=1,
        logging_strategy="no",
    )
    trainer = Bert4RecTrainer(
        model=model,
        args=args,
        data_collator=collate,
        train_dataset=dataset,
        eval_dataset=dataset,
        evaluator=RankingEvaluator(),
    )
    trainer.train()
    evaluations = [log["eval_ndcg@10"] for log in trainer.state.log_history if "eval_ndcg@10" in log]
    assert len(evaluations) == 3
    assert trainer.state.best_metric == max(evaluations)
    assert trainer.evaluate()["eval_ndcg@10"] == pytest.approx(max(evaluations))


def test_ranking_metrics_names_match_trainer_keys(tmp_path):
    dataset = make_data(52, users=5)
    trainer = Bert4RecTrainer(model=make_model(), args=training_args(tmp_path), data_collator=collate)
    metrics = trainer.evaluate(dataset)
    assert {f"eval_{key}" for key in ranking_metrics([0])} <= metrics.keys()


@pytest.mark.parametrize("mode", ["full", "pop20"])
def test_eval_loss_is_optional_and_changes_no_rank(tmp_path, mode):
    vocab_size = 302
    model, dataset = make_model(vocab_size), make_data(vocab_size, users=30)
    popularity = count_item_popularity(dataset["input_ids"], vocab_size)
    results = {}
    for eval_loss in (True, False):
        trainer = Bert4RecTrainer(
            model=model, args=training_args(tmp_path, batch_size=7), data_collator=collate, eval_dataset=dataset,
            evaluator=RankingEvaluator(mode, ks=KS, item_popularity=popularity), eval_loss=eval_loss,
        )  # fmt: skip
        results[eval_loss] = trainer.evaluate()
    assert results[True]["eval_loss"] == pytest.approx(brute_loss(model, dataset), rel=1e-5)
    assert "eval_loss" not in results[False]
    for key in brute_metrics([0]):
        assert results[False]["eval_" + key] == results[True]["eval_" + key]


def test_prediction_loss_only_reports_the_loss_alone(tmp_path):
    model, dataset = make_model(), make_data(52)
    trainer = Bert4RecTrainer(
        model=model, args=training_args(tmp_path, prediction_loss_only=True), data_collator=collate,
        eval_dataset=dataset,
    )  # fmt: skip
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(brute_loss(model, dataset), rel=1e-5)
    assert not any("@" in key for key in metrics)
