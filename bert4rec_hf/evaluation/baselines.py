"""What a model is worth: baselines ranked exactly as the model is.

A baseline scores every vocabulary id for a batch of histories; its ranks come
from the run's own ``RankingEvaluator`` (same candidates, same exclusion rule,
same sampled negatives, ties against the target) on the same split rows, built
by the evaluation collator, so its metrics sit beside the model's like for like.

* ``MostPopular``: every user gets the items by training popularity.
* ``RecentAgain``: the user's own items first, the most recent first, then the
  others by popularity: the answer to beat on logs where people come back to
  the items they had (repeat consumption).

Scores are popularity ranks (integers, exact in float32), so no two items tie:
items of equal popularity keep vocabulary order.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from ..configuration_bert4rec import NUM_SPECIAL_TOKENS
from ..data.collators import DataCollatorForNextItemPrediction
from ..data.splits import LeaveOneOutSplits, training_histories
from .evaluator import RankingEvaluator
from .metrics import ranking_metrics
from .sampling import count_item_popularity

# Scores per evaluation batch of a baseline (rows x vocabulary), kept small for any catalog.
BATCH_SCORES = 1 << 22


class MostPopular:
    """Training popularity for every user (the model's usual floor)."""

    name = "most popular"

    def __init__(self, popularity: torch.Tensor):
        order = torch.sort(torch.as_tensor(popularity, dtype=torch.float64), descending=True, stable=True).indices
        self.ranking = torch.empty(len(order), dtype=torch.float32)
        self.ranking[order] = torch.arange(len(order), 0, -1, dtype=torch.float32)  # distinct: no ties

    @property
    def vocab_size(self) -> int:
        return len(self.ranking)

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """``(B, vocab_size)`` scores of the next item after each left-padded ``(B, H)`` history."""
        return self.ranking.expand(history.shape[0], -1).clone()


class RecentAgain(MostPopular):
    """The user's history items, most recent first, above every other item, which follow by popularity."""

    name = "most recent items again"

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        scores = super().scores(history)
        recency = torch.arange(1, history.shape[1] + 1, dtype=torch.float32) + self.vocab_size  # newest highest
        scores.scatter_reduce_(1, history.long(), recency.expand_as(history).contiguous(), reduce="amax")
        return scores  # padding lands on column 0, a special token no rank counts


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
    batch_size = max(1, BATCH_SCORES // baseline.vocab_size)
    ranks = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        pairs = zip(chunk["input_ids"], chunk["labels"], strict=True)
        batch = collator([{"input_ids": history, "labels": target} for history, target in pairs])
        scores = baseline.scores(batch["history_ids"])
        ranks.append(evaluator.rank(scores, batch["input_ids"], batch["labels"][:, -1], history=batch["history_ids"]))
    metrics = ranking_metrics(torch.cat(ranks) if ranks else [], evaluator.ks, evaluator.rank_limit)
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def evaluate_baselines(
    processed: LeaveOneOutSplits, evaluator: RankingEvaluator, max_seq_length: int, repeats: bool
) -> dict[str, dict[str, dict[str, float]]]:
    """The baselines' validation and test metrics, ``{name: {"valid": {...}, "test": {...}}}``
    keyed as the model's results (``test_ndcg@10``): the most popular items, and with
    ``repeats`` (a log with repeat consumption) the most recent items again."""
    vocab_size = processed.tokenizer.vocab_size
    popularity = count_item_popularity(training_histories(processed), vocab_size)
    popularity[:NUM_SPECIAL_TOKENS] = -1.0  # below every real item
    baselines: list[Any] = [MostPopular(popularity)] + ([RecentAgain(popularity)] if repeats else [])
    splits = (("valid", "validation"), ("test", "test"))
    return {
        baseline.name: {
            name: evaluate_baseline(baseline, processed.splits[split], evaluator, max_seq_length, f"{name}_")
            for name, split in splits
        }
        for baseline in baselines
    }


__all__ = ["BATCH_SCORES", "MostPopular", "RecentAgain", "evaluate_baseline", "evaluate_baselines"]
