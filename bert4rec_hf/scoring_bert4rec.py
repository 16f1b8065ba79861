"""The item scorer: the one place an item's score is computed.

``score(state, item) = transform(state) · E[item] + b[item]`` (+ the learned
seen-item offset when the item is in the row's own input). The losses, the
evaluator, the Trainer's evaluation step, the recommender and the ONNX export
all score through :class:`ItemScorer`, for a range of ids, for chosen ids or
chunk by chunk, so an item gets one score whichever path asks for it.

Imported by ``modeling_bert4rec`` (relatively, so a saved folder's remote code
carries it); depends on torch and the configuration module only.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .configuration_bert4rec import NUM_SPECIAL_TOKENS, PAD_TOKEN_ID

# items per float64 block of an exact range: the block's float64 scores stay in cache
EXACT_BLOCK = 2048


def distinct_items(history: torch.Tensor) -> torch.Tensor:
    """Each row's distinct real item ids, sorted, with ``PAD_TOKEN_ID`` in place
    of padding, [MASK] and repeats: a repeated item appears once, so counting
    or offsetting over the result touches each item once. The filler sorts
    first and is never a real item."""
    ids = history.long().sort(dim=1).values
    repeat = torch.cat([torch.zeros_like(ids[:, :1], dtype=torch.bool), ids[:, 1:] == ids[:, :-1]], dim=1)
    drop = (ids < NUM_SPECIAL_TOKENS) | repeat  # no in-place ops: the ONNX export traces this
    return ids.masked_fill(drop, PAD_TOKEN_ID).sort(dim=1).values


def contains(items: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
    """``(n, k)`` bool: whether each of the ``(n, k)`` (or shared ``(k,)``) ids is
    in its row of ``items`` (from :func:`distinct_items`: sorted)."""
    item_ids = item_ids.long().expand(items.shape[0], -1).contiguous()
    if not items.shape[1]:
        return torch.zeros_like(item_ids, dtype=torch.bool)
    found = torch.searchsorted(items, item_ids).clamp_(max=items.shape[1] - 1)
    return items.gather(1, found).eq(item_ids) & item_ids.ge(NUM_SPECIAL_TOKENS)


def window_columns(items: torch.Tensor, start: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real ids of ``items`` as columns of the id window ``[start, start + width)``:
    ``(columns, inside)``, column 0 where ``inside`` is False."""
    columns = items - start
    inside = (items >= NUM_SPECIAL_TOKENS) & (columns >= 0) & (columns < width)
    return columns.where(inside, 0), inside


class ItemScorer:
    """Scores of items for a block of ``(n, hidden)`` transformed states.

    Args:
        states: the prediction head's transformed states (``head.transform``).
        weight / bias: the output item embeddings ``(vocab_size, hidden)`` and
            per-item bias ``(vocab_size,)``.
        seen: ``distinct_items`` of each row's input, read by the seen-item
            offset; ``None`` leaves the offset out.
        offset: the learned seen-item offset (a one-element parameter).
        exact: compute each score as a float64 sum rounded once to float32
            (float64 inputs stay float64). A float32 matrix product's rounding
            depends on the product's shape (a 5-column product and a
            2048-column one can differ in the last bit for the same item), so
            an item tied with the target could count in one path and not in
            another; rounded float64 sums give an item the same score in a
            range, among chosen ids or in any chunk. Twice the arithmetic of a
            float32 product, so it defaults to on only without gradients
            (evaluation, inference); losses train on float32 products.

    Scores are at least float32 also under bf16/fp16 autocast: with 8 bits of
    mantissa hundreds of items of a large catalog would tie with the target.
    """

    def __init__(
        self,
        states: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        seen: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
        exact: bool | None = None,
    ):
        if seen is not None and offset is None:
            raise ValueError("seen items need the seen-item offset")
        self.states, self.weight, self.bias = states, weight, bias
        self.seen, self.offset = seen, offset
        self.exact = (not torch.is_grad_enabled()) if exact is None else bool(exact)
        self.dtype = torch.promote_types(states.dtype, torch.float32)
        self.compute_dtype = torch.float64 if self.exact else self.dtype

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    @property
    def num_rows(self) -> int:
        return self.states.shape[0]

    def rows(self, index: slice | torch.Tensor) -> ItemScorer:
        """The scorer of a subset of the rows."""
        seen = self.seen[index] if self.seen is not None else None
        return ItemScorer(self.states[index], self.weight, self.bias, seen, self.offset, self.exact)

    def divided(self, temperature: float) -> ItemScorer:
        """The scorer whose every score is this one's divided by ``temperature``: states,
        biases and the seen-item offset scaled, so each path (range, chosen, chunks, mean)
        scales alike and gradients flow through the division."""
        if temperature == 1:
            return self
        offset = self.offset / temperature if self.offset is not None else None
        return ItemScorer(
            self.states / temperature, self.weight, self.bias / temperature, self.seen, offset, self.exact
        )

    def range(self, start: int = NUM_SPECIAL_TOKENS, stop: int | None = None) -> torch.Tensor:
        """``(n, stop - start)`` scores of vocabulary ids ``[start, stop)``."""
        stop = self.vocab_size if stop is None else min(stop, self.vocab_size)
        if self.exact and stop - start > EXACT_BLOCK:  # float64 blocks that stay in cache, written as float32
            scores = torch.empty(self.num_rows, stop - start, dtype=self.dtype, device=self.states.device)
            for first in range(start, stop, EXACT_BLOCK):
                last = min(first + EXACT_BLOCK, stop)
                scores[:, first - start : last - start] = self.range(first, last)
            return scores
        with torch.autocast(device_type=self.states.device.type, enabled=False):
            dtype = self.compute_dtype
            weight, bias = self.weight[start:stop].to(dtype), self.bias[start:stop].to(dtype)
            scores = torch.addmm(bias, self.states.to(dtype), weight.t())
            return self.add_seen_offset(scores, start).to(self.dtype)

    def add_seen_offset(self, scores: torch.Tensor, start: int = NUM_SPECIAL_TOKENS) -> torch.Tensor:
        """``scores`` of ids ``[start, start + width)``, each row's seen items' raised by the
        seen-item offset in place (unchanged without it): what a score computed without the
        offset (``query_vectors() @ item_vectors(...).T``) still lacks."""
        if self.seen is not None:
            columns, inside = window_columns(self.seen, start, scores.shape[1])
            scores.scatter_add_(1, columns, inside.to(scores.dtype) * self.offset.to(scores.dtype))
        return scores

    def chosen(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``(n, k)`` scores of chosen ids: ``(n, k)`` ids per row, or ``(k,)`` ids
        shared by every row (one matrix product instead of a gathered
        ``(n, k, hidden)`` weight)."""
        item_ids = item_ids.long()
        with torch.autocast(device_type=self.states.device.type, enabled=False):
            dtype = self.compute_dtype
            weight, bias = self.weight[item_ids].to(dtype), self.bias[item_ids].to(dtype)
            if item_ids.ndim == 1:
                scores = torch.addmm(bias, self.states.to(dtype), weight.t())
            else:
                scores = torch.einsum("nh,nkh->nk", self.states.to(dtype), weight) + bias
            if self.seen is not None:
                scores = scores + contains(self.seen, item_ids) * self.offset.to(dtype)
            return scores.to(self.dtype)

    def targets(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``(n,)`` scores of one id per row."""
        return self.chosen(item_ids[:, None])[:, 0]

    def mean(self) -> torch.Tensor:
        """``(n,)`` each row's mean score over the real items, without scoring them one by
        one: a score is linear in the item's embedding, bias and seen-item offset, so the
        mean is the score of the mean item plus the offset times the row's share of seen items."""
        with torch.autocast(device_type=self.states.device.type, enabled=False):
            dtype = self.compute_dtype
            weight, bias = self.weight[NUM_SPECIAL_TOKENS:].to(dtype), self.bias[NUM_SPECIAL_TOKENS:].to(dtype)
            means = self.states.to(dtype) @ weight.mean(0) + bias.mean()
            if self.seen is not None:
                seen = self.seen.ge(NUM_SPECIAL_TOKENS).sum(1).to(dtype)
                means = means + seen / weight.shape[0] * self.offset.to(dtype)
            return means.to(self.dtype)

    def expected(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``(n,)`` each row's expected score under ``(n, vocab_size - NUM_SPECIAL_TOKENS)``
        probabilities of the real items (a teacher's soft targets), without scoring them one
        by one: a score is linear in the item, so it is the score of the row's expected item
        plus the offset times the probability the row puts on its own seen items."""
        with torch.autocast(device_type=self.states.device.type, enabled=False):
            dtype = self.compute_dtype
            weight, bias = self.weight[NUM_SPECIAL_TOKENS:].to(dtype), self.bias[NUM_SPECIAL_TOKENS:].to(dtype)
            probabilities = probabilities.to(dtype)
            expected = (self.states.to(dtype) * (probabilities @ weight)).sum(1) + probabilities @ bias
            if self.seen is not None:
                columns, inside = window_columns(self.seen, NUM_SPECIAL_TOKENS, probabilities.shape[1])
                on_seen = (probabilities.gather(1, columns) * inside).sum(1)
                expected = expected + on_seen * self.offset.to(dtype)
            return expected.to(self.dtype)

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, scores)`` over the real items, ``chunk_size`` ids at a time:
        ``scores[:, j]`` is the score of id ``start + j``."""
        for start in range(NUM_SPECIAL_TOKENS, self.vocab_size, chunk_size):
            yield start, self.range(start, start + chunk_size)

    def query_vectors(self) -> torch.Tensor:
        """``(n, hidden + 1)``: the states with a 1 appended. ``query_vectors() @
        item_vectors(weight, bias).T`` is every item's score but the seen-item
        offset, which only the items of a row's own input get: the vectors a
        maximum-inner-product index searches."""
        ones = torch.ones_like(self.states[:, :1], dtype=self.dtype)
        return torch.cat([self.states.to(self.dtype), ones], dim=1)

    def all(self) -> torch.Tensor:
        """``(n, vocab_size)`` scores; the special tokens' columns are ``-inf``,
        so they are never predicted."""
        scores = self.range(0)
        scores[:, :NUM_SPECIAL_TOKENS] = float("-inf")
        return scores


def item_vectors(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``(vocab_size, hidden + 1)``: each item's output embedding with its bias
    appended, the other side of :meth:`ItemScorer.query_vectors`."""
    return torch.cat([weight, bias[:, None]], dim=1)


class LogSumExp:
    """Each row's log-sum-exp over score blocks that arrive one at a time: the
    softmax normalizer of a catalog scanned in chunks (the chunked loss and
    the evaluation loss read it)."""

    def __init__(self, rows: int, device: torch.device, dtype: torch.dtype = torch.float32):
        self.value = torch.full((rows,), float("-inf"), dtype=dtype, device=device)

    def add(self, scores: torch.Tensor, rows: slice | torch.Tensor = slice(None)) -> None:
        self.value[rows] = torch.logaddexp(self.value[rows], torch.logsumexp(scores.to(self.value.dtype), 1))


__all__ = ["ItemScorer", "LogSumExp", "contains", "distinct_items", "item_vectors", "window_columns"]
