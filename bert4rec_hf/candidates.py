"""The candidates a user may get: the one exclusion rule.

A row never gets a special token (padding, [MASK]); with history exclusion it
does not get the items of its history either: the whole history, or the
model's window of it (its last ``max_seq_length - 1`` items); a catalog-wide
allow list and deny list restrict every row. The evaluator
(``exclude_history``, and the items sampled negatives avoid), the recommender
and the ONNX export all take their exclusions from here.
"""

from __future__ import annotations

import torch

from .configuration_bert4rec import NUM_SPECIAL_TOKENS, PAD_TOKEN_ID


def excluded_items(
    history: torch.Tensor, vocab_size: int, window: int | None = None, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B, H)`` the real items each row may not get because it had them:
    the items of its left-padded ``history`` (only the last ``window`` columns
    when given), less each row's ``keep`` id (``(B,)``: an evaluated target
    stays a candidate even when it was consumed before). ``PAD_TOKEN_ID``
    fills the rest (padding, [MASK], ids outside the vocabulary, ``keep``);
    repeats are not removed."""
    if window is not None:
        history = history[:, history.shape[1] - min(window, history.shape[1]) :]
    ids = history.long()
    drop = (ids < NUM_SPECIAL_TOKENS) | (ids >= vocab_size)
    if keep is not None:
        drop = drop | (ids == keep.long()[:, None])  # not |=: the ONNX export traces this
    return ids.masked_fill(drop, PAD_TOKEN_ID)


def blocked_items(
    vocab_size: int, allowed: torch.Tensor | None = None, denied: torch.Tensor | None = None
) -> torch.Tensor:
    """``(vocab_size,)`` True for the ids no row may get: the special tokens,
    ids outside ``allowed`` (when given) and ids in ``denied``."""
    blocked = torch.zeros(vocab_size, dtype=torch.bool)
    if allowed is not None:
        blocked[:] = True
        blocked[allowed.long()] = False
    if denied is not None:
        blocked[denied.long()] = True
    blocked[:NUM_SPECIAL_TOKENS] = True
    return blocked


def exclude(
    scores: torch.Tensor, excluded: torch.Tensor | None = None, blocked: torch.Tensor | None = None
) -> torch.Tensor:
    """``scores`` (``(B, vocab_size)``) with ``-inf`` at each row's ``excluded``
    items and at the ``blocked`` ids: they can never be recommended. Out of
    place, so it traces into an exported graph."""
    if excluded is not None:
        scores = scores.scatter(1, excluded.to(scores.device), float("-inf"))
    if blocked is not None:
        scores = scores.masked_fill(blocked.to(scores.device), float("-inf"))
    return scores


__all__ = ["blocked_items", "exclude", "excluded_items"]
