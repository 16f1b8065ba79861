"""Baselines ranked by the run's evaluator: most popular and most recent items again."""

import numpy as np
import pytest
import torch

from bert4rec_hf import DataCollatorForNextItemPrediction, RankingEvaluator, read_interactions
from bert4rec_hf.data import build_sequences, leave_one_out, training_histories
from bert4rec_hf.evaluation import baselines as baselines_module
from bert4rec_hf.evaluation import count_item_popularity
from bert4rec_hf.evaluation.baselines import MostPopular, RecentAgain, evaluate_baseline, evaluate_baselines

from .helpers import ML100K

pytestmark = pytest.mark.usefixtures("one_thread")
MAX_LEN = 20


@pytest.fixture(scope="module")
def processed():
    return leave_one_out(build_sequences(read_interactions(ML100K)), max_seq_length=MAX_LEN, fit_on="all")


def test_most_popular_ranks_by_training_counts_ties_in_vocabulary_order(processed):
    """Each test user's rank, counted by hand: items more popular than the target, or as
    popular with a smaller vocabulary id (history items stay candidates)."""
    vocab_size = processed.tokenizer.vocab_size
    counts = count_item_popularity(training_histories(processed), vocab_size).numpy()
    targets = np.asarray(processed.splits["test"]["labels"])
    real = np.arange(2, vocab_size)
    ahead = (counts[real][None, :] > counts[targets][:, None]) | (
        (counts[real][None, :] == counts[targets][:, None]) & (real[None, :] < targets[:, None])
    )
    ranks = ahead.sum(1)
    evaluator = RankingEvaluator(ks=(10,))
    metrics = evaluate_baselines(processed, evaluator, MAX_LEN, repeats=False)["most popular"]["test"]
    assert metrics["test_hit@10"] == pytest.approx(np.mean(ranks < 10))
    assert metrics["test_ndcg@10"] == pytest.approx(np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2), 0)))
    assert metrics["test_num_users"] == 943


def test_recent_again_puts_history_first_newest_first_then_popularity():
    popularity = torch.tensor([0, 0, 5, 1, 9, 7, 3], dtype=torch.float64)  # ids 0, 1: special
    history = torch.tensor([[0, 2, 3, 6, 3], [0, 0, 0, 0, 5]])  # left-padded
    ones = torch.ones(2, 1)
    scorer = RecentAgain(popularity).bind(history).item_scorer(ones)
    scores = scorer.all()
    assert scores[0, 2:].argsort(descending=True).add(2).tolist() == [3, 6, 2, 4, 5]
    assert scores[1, 2:].argsort(descending=True).add(2).tolist() == [5, 4, 2, 6, 3]
    popular = MostPopular(popularity).bind(history).item_scorer(ones).all()
    assert popular[0, 2:].argsort(descending=True).add(2).tolist() == [4, 5, 2, 6, 3]
    # one score per item whichever path asks: a range, chunks, chosen ids (shared or per row)
    ids = torch.tensor([[3, 2, 6, 4], [5, 3, 2, 6]])
    assert torch.equal(scorer.chosen(ids), scores.gather(1, ids))
    assert torch.equal(scorer.chosen(torch.tensor([6, 3])), scores[:, [6, 3]])
    assert torch.equal(torch.cat([block for _, block in scorer.chunks(2)], dim=1), scores[:, 2:])


@pytest.mark.parametrize(("mode", "exclude"), [("full", False), ("full", "window"), ("uni100", False)])
def test_the_scan_ranks_as_the_definition_on_the_whole_scores(processed, mode, exclude):
    """RankingEvaluator.rank on the baseline's whole score rows (the definition) gives
    the ranks the catalog scan gives."""
    evaluator = RankingEvaluator(mode=mode, ks=(10,), exclude_history=exclude, seed=1)
    popularity = count_item_popularity(training_histories(processed), processed.tokenizer.vocab_size)
    collator = DataCollatorForNextItemPrediction(max_seq_length=MAX_LEN, whole_history=True)
    rows = processed.splits["test"].select(range(0, 943, 9))
    batch = collator([{"input_ids": row["input_ids"], "labels": row["labels"]} for row in rows])
    history, targets, ones = batch["history_ids"], batch["labels"][:, -1], torch.ones(len(rows), 1)
    for baseline in (MostPopular(popularity), RecentAgain(popularity)):
        model = baseline.bind(history)
        scanned = evaluator.rank_hidden_states(model, ones, batch["input_ids"], targets, history=history)
        whole = evaluator.rank(model.item_scorer(ones).all(), batch["input_ids"], targets, history=history)
        assert torch.equal(scanned, whole)


def test_with_the_history_excluded_recent_again_is_most_popular(processed):
    """The exclusion rule is the evaluator's: with every history item excluded, what is
    left of the recency baseline is the popularity ranking."""
    evaluator = RankingEvaluator(ks=(10,), exclude_history=True)
    popularity = count_item_popularity(training_histories(processed), processed.tokenizer.vocab_size)
    rows = processed.splits["test"]
    recent = evaluate_baseline(RecentAgain(popularity), rows, evaluator, MAX_LEN)
    popular = evaluate_baseline(MostPopular(popularity), rows, evaluator, MAX_LEN)
    assert recent == popular
    kept = evaluate_baseline(RecentAgain(popularity), rows, RankingEvaluator(ks=(10,)), MAX_LEN)
    assert kept["ndcg@10"] < popular["ndcg@10"]  # nobody rates a film twice: the history is never the answer


def test_metrics_do_not_depend_on_the_baseline_batch(processed, monkeypatch):
    evaluator = RankingEvaluator(mode="uni100", ks=(5, 10), seed=3)
    popularity = count_item_popularity(training_histories(processed), processed.tokenizer.vocab_size)
    rows = processed.splits["validation"]
    whole = evaluate_baseline(MostPopular(popularity), rows, evaluator, MAX_LEN)
    monkeypatch.setattr(baselines_module, "BATCH_ROWS", 7)
    assert evaluate_baseline(MostPopular(popularity), rows, evaluator, MAX_LEN) == whole
