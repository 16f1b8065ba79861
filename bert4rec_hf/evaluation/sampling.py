"""Negative sampling for the sampled ranking modes (``uni100`` / ``pop100``).

Each evaluated row gets ``num_negatives`` distinct items that are neither its
target nor in its history, drawn uniformly or proportionally to training
popularity without replacement, as in the BERT4Rec paper's evaluation code
(draw by probability, reject items already rated or already drawn).

Why a hash instead of a ``torch.Generator``: the random numbers are a pure
function of ``(seed, row identity, item id)`` (a splitmix64 counter-based
generator in int64 torch arithmetic), so the negatives of a row do not depend
on the batch size, on the batch order, on the number of processes or on the
device. The row identity defaults to a hash of the row's content (its real
history items and their positions counted from the most recent, plus the
target), which is stable under any left padding and under the presence of the
trailing [MASK]; callers with a stable row index can pass it instead.

Two exact samplers of the same distribution (sequential draws proportional to
the weights, rejecting forbidden and already drawn items):

- streams (the usual path, cost ~ rows x draws, independent of the vocabulary
  size): each row reads a fixed stream of draws with replacement (inverse CDF
  for popularity) and keeps the first ``k`` distinct allowed items in draw
  order, i.e. the paper's loop, vectorised with sorts instead of a Python loop.
  A row whose prefix is too short retries with a 4x longer prefix of the same
  stream, so the result never depends on which other rows needed more draws.
- dense keys (small vocabularies, and rows still short after a few rounds,
  e.g. a heavy user who consumed most popular items): item ``i`` gets the key
  ``log(u_i) / w_i`` (Efraimidis & Spirakis, 2006) and the ``k`` largest keys
  are taken; forbidden and zero-weight items get ``-inf``, so a row with fewer
  than ``k`` allowed items gets them all and ``-1`` for the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..configuration_bert4rec import NUM_SPECIAL_TOKENS

# splitmix64 constants as signed int64 (torch has no uint64 arithmetic on all devices).
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
_POSITION_SALT = 0x632BE59BD9B4E019
_TARGET_SALT = 0x2545F4914F6CDD1D
_DENSE_SALT = 0x5851F42D4C957F2D
# rows x vocabulary elements handled at once by the dense sampler (8 bytes per element per temporary)
_BLOCK_ELEMENTS = 1 << 22
# below this many items per needed negative the dense sampler is cheaper than drawing streams
_DENSE_FACTOR = 8
# stream prefixes tried (each 4x longer) before a row falls back to the dense sampler
_STREAM_ROUNDS = 3


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (``>>`` on int64 tensors is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser: a bijective avalanche mix of int64 values (wrapping arithmetic)."""
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def row_identity(input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A 64-bit hash of each row's real history items (position counted from the
    most recent item) and its target; independent of padding width and of the
    [MASK] column, so the same user case gets the same id in any batch."""
    input_ids = input_ids.long()
    real = input_ids >= NUM_SPECIAL_TOKENS
    position = real.flip(1).cumsum(1).flip(1)  # 1 for the most recent real item
    token_hash = mix64(input_ids * _GOLDEN + position * _POSITION_SALT)
    history_hash = torch.where(real, token_hash, torch.zeros_like(token_hash)).sum(1)
    return mix64(history_hash ^ mix64(targets.long() * _GOLDEN + _TARGET_SALT))


def _uniform(row_hash: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """float64 uniforms in (0, 1), one per (row, counter): ``(rows, len(counters))``."""
    bits = _shift_right(mix64(row_hash[:, None] + counters[None, :] * _GOLDEN), 11)  # 53 random bits
    return (bits.double() + 0.5) * (2.0**-53)


def _dense_sample(
    row_hash: torch.Tensor,
    input_ids: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    width: int,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """Exact sampling over the whole vocabulary with exponential keys; the
    fallback for rows with few allowed items. Memory is bounded by blocks of rows."""
    items = torch.arange(vocab_size, device=row_hash.device)
    negatives = torch.empty(row_hash.shape[0], width, dtype=torch.long, device=row_hash.device)
    block = max(1, _BLOCK_ELEMENTS // vocab_size)
    for start in range(0, row_hash.shape[0], block):
        rows = slice(start, start + block)
        keys = _uniform(row_hash[rows] ^ _DENSE_SALT, items).log_()
        if weights is not None:
            keys = keys / weights  # log(u) / w: zero weight -> -inf
        forbidden = torch.zeros_like(keys, dtype=torch.bool)
        forbidden[:, :NUM_SPECIAL_TOKENS] = True
        forbidden.scatter_(1, input_ids[rows].clamp(0, vocab_size - 1), True)
        forbidden.scatter_(1, targets[rows, None], True)
        top, index = keys.masked_fill_(forbidden, float("-inf")).topk(width, dim=1)
        negatives[rows] = index.masked_fill_(top == float("-inf"), -1)
    return negatives


def _stream_sample(
    row_hash: torch.Tensor,
    input_ids: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    width: int,
    weights: torch.Tensor | None,
    num_draws: int,
) -> torch.Tensor:
    """The paper's loop, vectorised: the first ``num_draws`` draws (with
    replacement) of each row's random stream, keeping the first ``width``
    distinct items outside the history and the target, in draw order. Rows
    whose prefix is too short get ``-1`` entries (the caller retries them)."""
    counters = torch.arange(num_draws, device=row_hash.device)
    uniforms = _uniform(row_hash, counters)
    num_items = vocab_size - NUM_SPECIAL_TOKENS
    if weights is None:
        index = (uniforms * num_items).long()
    else:
        cumulative = weights[NUM_SPECIAL_TOKENS:].cumsum(0)
        last_positive = int(weights[NUM_SPECIAL_TOKENS:].nonzero().max())
        index = torch.searchsorted(cumulative, uniforms * cumulative[-1], right=True)
        index = index.clamp_(max=last_positive)
    draws = index.clamp_(max=num_items - 1) + NUM_SPECIAL_TOKENS

    history = input_ids.sort(dim=1).values
    position = torch.searchsorted(history, draws).clamp_(max=history.shape[1] - 1)
    rejected = history.gather(1, position).eq(draws) | draws.eq(targets[:, None])
    ordered, order = draws.sort(dim=1, stable=True)  # equal items keep draw order
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    rejected |= torch.zeros_like(repeated).scatter_(1, order, repeated)

    kept = ~rejected
    slot = kept.long().cumsum(1) - 1
    kept &= slot < width
    negatives = torch.full((row_hash.shape[0], width + 1), -1, dtype=torch.long, device=row_hash.device)
    negatives.scatter_(1, torch.where(kept, slot, width), torch.where(kept, draws, -1))
    return negatives[:, :width]


def sample_negatives(
    input_ids: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    num_negatives: int,
    weights: torch.Tensor | None = None,
    seed: int = 0,
    row_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draws negatives for each row: distinct real items outside the history and
    different from the target, uniformly or proportionally to ``weights``,
    without replacement.

    Args:
        input_ids: ``(B, L)`` histories (padding and [MASK] are ignored).
        targets: ``(B,)`` target item ids.
        vocab_size: size of the vocabulary (real items are ``2 .. vocab_size - 1``).
        num_negatives: negatives per row.
        weights: ``(vocab_size,)`` non-negative sampling weights (training
            popularity for ``pop``); ``None`` samples uniformly.
        seed: global seed mixed into every random number.
        row_ids: ``(B,)`` stable integer ids of the rows; defaults to
            :func:`row_identity`.

    Returns:
        ``(B, min(num_negatives, vocab_size))`` item ids, ``-1`` where a row has
        fewer allowed items (of positive weight) than ``num_negatives``.
    """
    device = targets.device
    targets = targets.long()
    input_ids = input_ids.to(device).long()
    if input_ids.shape[1] == 0:
        input_ids = torch.zeros(targets.shape[0], 1, dtype=torch.long, device=device)
    width = min(num_negatives, vocab_size)
    if row_ids is None:
        row_ids = row_identity(input_ids, targets)
    seed_hash = mix64(torch.tensor(seed, dtype=torch.long, device=device))
    row_hash = mix64(mix64(row_ids.to(device=device, dtype=torch.long)) ^ seed_hash)
    if weights is not None:
        weights = weights.to(device=device, dtype=torch.float64)

    # the method and the prefix lengths depend on nothing but the row itself (not on the padding width)
    if vocab_size < _DENSE_FACTOR * width:
        return _dense_sample(row_hash, input_ids, targets, vocab_size, width, weights)
    negatives = torch.full((targets.shape[0], width), -1, dtype=torch.long, device=device)
    short = torch.arange(targets.shape[0], device=device)
    num_draws = 2 * width + 16
    for _ in range(_STREAM_ROUNDS):
        drawn = _stream_sample(row_hash[short], input_ids[short], targets[short], vocab_size, width, weights, num_draws)
        negatives[short] = drawn
        short = short[drawn[:, -1] < 0]
        if short.numel() == 0:
            return negatives
        num_draws *= 4
    negatives[short] = _dense_sample(row_hash[short], input_ids[short], targets[short], vocab_size, width, weights)
    return negatives


def count_item_popularity(histories: Any, vocab_size: int) -> torch.Tensor:
    """Interaction counts per vocabulary index (``(vocab_size,)`` float64), the
    weights of ``pop`` sampling. Pass each training interaction once (the
    users' training histories, not overlapping training windows); padding,
    [MASK] and ``-100`` entries are ignored.

    ``histories``: a pyarrow list column (``dataset.with_format("arrow")["item_ids"]``,
    the fast path), a 2-D tensor/array of ids, or an iterable of id lists.
    """
    if isinstance(histories, (pa.Array, pa.ChunkedArray)):
        flat = torch.from_numpy(pc.list_flatten(histories).to_numpy(zero_copy_only=False).astype(np.int64))
    elif torch.is_tensor(histories) or isinstance(histories, np.ndarray):
        flat = torch.as_tensor(histories).reshape(-1).long().cpu()
    else:
        chunks = [np.asarray(history, dtype=np.int64).reshape(-1) for history in histories]
        flat = torch.from_numpy(np.concatenate(chunks)) if chunks else torch.zeros(0, dtype=torch.long)
    flat = flat[flat >= NUM_SPECIAL_TOKENS]
    if flat.numel() and int(flat.max()) >= vocab_size:
        raise ValueError(f"item id {int(flat.max())} is outside the vocabulary of size {vocab_size}")
    counts = torch.bincount(flat, minlength=vocab_size).double()
    counts[:NUM_SPECIAL_TOKENS] = 0
    return counts


__all__ = ["count_item_popularity", "mix64", "row_identity", "sample_negatives"]
