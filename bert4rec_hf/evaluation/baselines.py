"""What a model is worth: baselines ranked exactly as the model is.

A baseline is an item scorer, as a model is: the run's own ``RankingEvaluator``
ranks it on the same split rows, built by the evaluation collator, with the
same candidates, exclusion rule, sampled negatives and ties against the target,
through the catalog scan a model is ranked with (no users x catalog matrix), so
its metrics sit beside the model's like for like.

* ``MostPopular``: every user gets the items by training popularity.
* ``RecentAgain``: the user's own items first, the most recent first, then the
  others by popularity: the answer to beat on logs where people come back to
  the items they had (repeat consumption).

Scores are popularity ranks (integers, exact in float32), so no two items tie:
items of equal popularity keep vocabulary order.
"""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import torch

from ..configuration_bert4rec import NUM_SPECIAL_TOKENS
from ..data.collators import DataCollatorForNextItemPrediction
from ..data.splits import LeaveOneOutSplits, training_histories
from ..scoring_bert4rec import ItemScorer, window_columns
from .evaluator import RankingEvaluator
from .metrics import ranking_metrics
from .sampling import count_item_popularity

# Evaluation rows per baseline batch.
BATCH_ROWS = 1024


class HistoryFirstScorer(ItemScorer):
    """An item scorer of popularity ranks in which each row's own items score
    above every other item, the most recent highest. ``items``: ``(n, H)`` the
    rows' left-padded histories, oldest first."""

    def __init__(self, states: torch.Tensor, ranking: torch.Tensor, items: torch.Tensor):
        super().__init__(states, ranking[:, None], torch.zeros_like(ranking), exact=False)  # integers: exact
        self.ranking, self.items = ranking, items.long()
        # a repeated item keeps its last position: sorted by id (stable), the last of equal ids is the newest
        recency = torch.arange(1, items.shape[1] + 1, dtype=ranking.dtype) + len(ranking)
        self.sorted_items, order = self.items.sort(dim=1, stable=True)
        self.sorted_recency = recency.expand_as(order).gather(1, order)

    def rows(self, index: slice | torch.Tensor) -> HistoryFirstScorer:
        return HistoryFirstScorer(self.states[index], self.ranking, self.items[index])

    def range(self, start: int = NUM_SPECIAL_TOKENS, stop: int | None = None) -> torch.Tensor:
        scores = super().range(start, stop)
        columns, inside = window_columns(self.items, start, scores.shape[1])
        recency = torch.arange(1, self.items.shape[1] + 1, dtype=scores.dtype) + len(self.ranking)
        lifted = torch.where(inside, recency.expand_as(columns), scores.gather(1, columns))
        return scores.scatter_reduce_(1, columns, lifted, reduce="amax")

    def chosen(self, item_ids: torch.Tensor) -> torch.Tensor:
        scores = super().chosen(item_ids)
        item_ids = item_ids.long().expand(scores.shape[0], -1).contiguous()
        last = (torch.searchsorted(self.sorted_items, item_ids, right=True) - 1).clamp_(min=0)
        found = self.sorted_items.gather(1, last).eq(item_ids) & item_ids.ge(NUM_SPECIAL_TOKENS)
        return torch.where(found, self.sorted_recency.gather(1, last), scores)


class MostPopular:
    """Training popularity for every user (the model's usual floor)."""

    name = "most popular"

    def __init__(self, popularity: torch.Tensor):
        order = torch.sort(torch.as_tensor(popularity, dtype=torch.float64), descending=True, stable=True).indices
        self.ranking = torch.empty(len(order), dtype=torch.float32)
        self.ranking[order] = torch.arange(len(order), 0, -1, dtype=torch.float32)  # distinct: no ties
        self.config = SimpleNamespace(vocab_size=len(order))  # what the evaluator reads of a model

    def bind(self, history: torch.Tensor) -> MostPopular:
        """The scorer of a batch of left-padded ``(B, H)`` whole histories (this one ignores them)."""
        return self

    def item_scorer(self, states: torch.Tensor, input_ids: torch.Tensor | None = None) -> ItemScorer:
        """For ``(n, 1)`` states of ones: each item's popularity rank."""
        return ItemScorer(states, self.ranking[:, None], torch.zeros_like(self.ranking), exact=False)


class RecentAgain(MostPopular):
    """The user's history items, most recent first, above every other item, which follow by popularity."""

    name = "most recent items again"

    def bind(self, history: torch.Tensor) -> SimpleNamespace:
        def item_scorer(states: torch.Tensor, input_ids: torch.Tensor | None = None) -> HistoryFirstScorer:
            return HistoryFirstScorer(states, self.ranking, history)

        return SimpleNamespace(config=self.config, item_scorer=item_scorer)


def evaluate_baseline(
    baseline: MostPopular,
    rows: datasets.Dataset,
    evaluator: RankingEvaluator,
    max_seq_length: int,
    prefix: str = "",
) -> dict[str, float]:
    """``baseline``'s metrics on evaluation ``rows`` (``input_ids`` history, ``labels``
    target), ranked by ``evaluator`` as the model's are (the model's window is the
    last ``max_seq_length - 1`` items, for ``exclude_history="window"``)."""
    collator = DataCollatorForNextItemPrediction(max_seq_length=max_seq_length, whole_history=True)
    ranks = []
    for start in range(0, len(rows), BATCH_ROWS):
        chunk = rows[start : start + BATCH_ROWS]
        pairs = zip(chunk["input_ids"], chunk["labels"], strict=True)
        batch = collator([{"input_ids": history, "labels": target} for history, target in pairs])
        history, targets = batch["history_ids"], batch["labels"][:, -1]
        ranks.append(
            evaluator.rank_hidden_states(
                baseline.bind(history), torch.ones(len(targets), 1), batch["input_ids"], targets, history=history
            )
        )
    metrics = ranking_metrics(torch.cat(ranks) if ranks else [], evaluator.ks, evaluator.rank_limit)
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def evaluate_baselines(
    processed: LeaveOneOutSplits,
    evaluator: RankingEvaluator,
    max_seq_length: int,
    repeats: bool,
    popularity: torch.Tensor | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """The baselines' test metrics, ``{name: {"test": {...}}}``, keyed as the model's
    results (``test_ndcg@10``): the most popular items, and with ``repeats`` (a log
    with repeat consumption) the most recent items again. Test only: it is what the
    model is compared on, and each split costs a scan of the catalog per user.
    ``popularity``: training counts of a vocabulary the test split's extends (the
    cold-start protocol's, counted before the held-out items were added: they count 0);
    None counts ``processed``'s own training histories."""
    vocab_size = processed.tokenizer.vocab_size
    counted = count_item_popularity(training_histories(processed), vocab_size) if popularity is None else popularity
    popularity = torch.zeros(vocab_size)
    popularity[: len(counted)] = torch.as_tensor(counted, dtype=popularity.dtype)
    popularity[:NUM_SPECIAL_TOKENS] = -1.0  # below every real item
    baselines = [MostPopular(popularity)] + ([RecentAgain(popularity)] if repeats else [])
    test = processed.splits["test"]
    return {b.name: {"test": evaluate_baseline(b, test, evaluator, max_seq_length, "test_")} for b in baselines}


__all__ = ["BATCH_ROWS", "HistoryFirstScorer", "MostPopular", "RecentAgain", "evaluate_baseline", "evaluate_baselines"]
