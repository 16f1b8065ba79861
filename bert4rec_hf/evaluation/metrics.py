"""Leave-one-out ranking metrics computed from the rank of each user's target.

A rank is 0-based: 0 means the target is the top candidate. With one relevant
item per user, Hit@K equals Recall@K, Precision@K is Hit@K / K, and the ideal
DCG is 1, so NDCG@K is ``1 / log2(rank + 2)`` when ``rank < K``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def _as_numpy(ranks: Any) -> np.ndarray:
    if torch.is_tensor(ranks):
        ranks = ranks.detach().cpu().numpy()
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if ranks.size and (ranks.min() < 0 or not np.isfinite(ranks).all()):
        raise ValueError("ranks must be finite and non-negative (0 = the target is ranked first)")
    return ranks


def check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    """Validates the cut-offs and returns them as a sorted tuple without duplicates."""
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0 for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def ranking_metrics(
    ranks: Sequence[int] | np.ndarray | torch.Tensor, ks: Iterable[int] = DEFAULT_KS, rank_limit: int | None = None
) -> dict[str, float]:
    """Averages over users of Hit@K, NDCG@K, MRR@K and Precision@K for each K,
    plus the uncut MRR and ``num_users``.

    Keys are ``"hit@K"``, ``"ndcg@K"``, ``"mrr@K"``, ``"precision@K"``,
    ``"mrr"`` and ``"num_users"``; the Trainer reports them as ``eval_ndcg@10``
    and so on. With no users every metric is NaN. ``rank_limit``: the ranks are
    exact only below it (larger ones truncated, see
    ``RankingEvaluator(truncate_ranks=True)``), so the uncut MRR is left out; it
    must be at least the largest K.
    """
    ranks = _as_numpy(ranks)
    ks = check_ks(ks)
    if rank_limit is not None and rank_limit < ks[-1]:
        raise ValueError(f"ranks truncated at {rank_limit} cannot give metrics at K={ks[-1]}")
    uncut = {} if rank_limit is not None else {"mrr": float("nan")}
    metrics: dict[str, float] = {}
    if ranks.size == 0:
        for k in ks:
            metrics.update({f"{name}@{k}": float("nan") for name in ("hit", "ndcg", "mrr", "precision")})
        return {**metrics, **uncut, "num_users": 0}
    reciprocal = 1.0 / (ranks + 1.0)
    gain = 1.0 / np.log2(ranks + 2.0)
    for k in ks:
        hit = ranks < k
        hit_rate = float(hit.mean())
        metrics[f"hit@{k}"] = hit_rate
        metrics[f"ndcg@{k}"] = float(np.where(hit, gain, 0.0).mean())
        metrics[f"mrr@{k}"] = float(np.where(hit, reciprocal, 0.0).mean())
        metrics[f"precision@{k}"] = hit_rate / k
    if uncut:
        metrics["mrr"] = float(reciprocal.mean())
    metrics["num_users"] = int(ranks.size)
    return metrics


__all__ = ["DEFAULT_KS", "check_ks", "ranking_metrics"]
