"""Leave-one-out ranking evaluation: ranks per batch, metrics over the gathered ranks."""

from .evaluator import RankingEvaluator
from .metrics import DEFAULT_KS, ranking_metrics
from .sampling import count_item_popularity, sample_negatives

__all__ = ["DEFAULT_KS", "RankingEvaluator", "count_item_popularity", "ranking_metrics", "sample_negatives"]
