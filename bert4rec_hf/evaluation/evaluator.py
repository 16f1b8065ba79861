"""Turns score rows into target ranks, one batch at a time.

Only ranks (one integer per evaluated target) leave a batch: an N x vocabulary
score matrix is never stored (and with ``rank_hidden_states`` not even one
batch's: the catalog is scanned in chunks). ``RankingEvaluator.rank`` defines a
rank and ``rank_hidden_states`` counts the same way from the model's item
scorer; the Trainer hook (``Bert4RecTrainer``) and
``preprocess_logits_for_metrics`` both go through them. Which candidates a row
may not get comes from ``candidates.py``, the rule the recommender and the
export use.

Rank definition: the number of candidate items, other than the target, whose
score is greater than *or equal to* the target's score. Counting ties against
the target keeps a degenerate model from looking good: a model that gives every
item the same score gets the worst rank, not the best (strictly-higher
counting would give it Hit@1 = 1). It only differs from strictly-higher
counting when scores tie exactly, and the item scorer gives an item the same
score in every path, so a tie is a tie everywhere. A NaN score also counts
against the target, and a NaN target score gets the worst rank.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ..candidates import excluded_items
from ..configuration_bert4rec import IGNORE_INDEX, NUM_SPECIAL_TOKENS
from ..scoring_bert4rec import ItemScorer, distinct_items, window_columns
from .metrics import DEFAULT_KS, check_ks, ranking_metrics
from .sampling import sample_negatives

DEFAULT_NUM_NEGATIVES = 100
# the full-ranking scan's block: rows x items of float32 scores that stay in a CPU's cache (2 MiB)
SCAN_ROWS = 256
DEFAULT_SCAN_CHUNK = 2048
_MODE_PATTERN = re.compile(r"(full|uni|pop)(\d*)")


def _to_numpy(value: Any) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


_SIGN_BIT = {torch.float32: (torch.int32, 31), torch.float64: (torch.int64, 63)}


def _below(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """-1 where a score is below its row's threshold, 0 where it is not (ties
    and NaN count against the target, as in :meth:`RankingEvaluator.rank`);
    overwrites ``scores``. The sign bit of ``score - threshold`` (with -0 and
    NaN mapped to +0) in place of a comparison: on CPU, torch's comparisons
    into bool tensors and sums of bools cost about three times as much."""
    if scores.dtype not in _SIGN_BIT:
        return -(scores < threshold).int()
    bits, shift = _SIGN_BIT[scores.dtype]
    difference = scores.sub_(threshold).add_(0.0)  # x + 0.0 turns -0.0 into +0.0
    difference.nan_to_num_(nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    return difference.view(bits).bitwise_right_shift_(shift)


def _window_columns(excluded: torch.Tensor, start: int, width: int) -> torch.Tensor:
    """``excluded`` ids as columns of the id window ``[start, start + width)``,
    ``-1`` for ids outside it."""
    columns, inside = window_columns(excluded, start, width)
    return columns.masked_fill_(~inside, -1)


def _count_at_least(scores: torch.Tensor, threshold: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """Per row, the columns of ``scores`` at least ``threshold`` (ties and NaN
    included), less the ``excluded`` columns (``-1``: none) among them;
    overwrites ``scores``."""
    width = scores.shape[1]
    below = _below(scores, threshold)
    counted = below.gather(1, excluded.clamp(0, width - 1)).eq(0) & excluded.ge(0)
    return width + below.sum(1, dtype=torch.int32) - counted.sum(1)


def _rows_of(history: torch.Tensor | None, rows: slice | torch.Tensor) -> torch.Tensor | None:
    return None if history is None else history[rows]


def _scan_chunk_size(chunk_size: int | None) -> int:
    """Items per block of the full-ranking scan (None or 0: the default); a negative
    size would scan no item at all and silently rank every target first."""
    if chunk_size is None:
        return DEFAULT_SCAN_CHUNK
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 0:
        raise ValueError(f"chunk_size must be a positive integer (None or 0: {DEFAULT_SCAN_CHUNK}), got {chunk_size!r}")
    return int(chunk_size) or DEFAULT_SCAN_CHUNK


class RankingEvaluator:
    """Ranks each target among its candidates and averages ranking metrics.

    Args:
        mode: ``"full"`` ranks the target against every real item. ``"uniN"`` /
            ``"popN"`` (RecBole's names, e.g. ``"uni100"``, ``"pop100"``) rank it
            against N negatives the user has not interacted with (not in the
            history, not the target), drawn without replacement uniformly or
            proportionally to ``item_popularity``. ``"uni"`` / ``"pop"`` take N
            from ``num_negatives``.
        ks: cut-offs of the @K metrics.
        exclude_history: in ``full`` mode, drop the items the user had from
            the candidates (off by default, as in RecBole's sequential
            evaluation): ``True`` the whole history, ``"window"`` only the items
            of the model's input window (``input_ids``). The target always
            stays, even when it is also in the history (repeat consumption).
            Sampled modes always draw negatives outside the whole history.
            "Whole history" is the ``history`` given to the ranking methods
            (the Trainer passes it, see
            ``DataCollatorForNextItemPrediction(whole_history=True)``), else
            the items of ``input_ids``.
        num_negatives: negatives per target in sampled modes (default 100).
        item_popularity: ``(vocab_size,)`` training interaction counts indexed by
            vocabulary id (see ``count_item_popularity``); needed by ``pop``.
        seed: seed of the negative sampler. The negatives of a target are a
            pure function of (seed, the row's history and target), so they do
            not change with batch size, batch order or number of processes.
        truncate_ranks: rank exactly only below ``max(ks)``, the most any @K
            metric needs: larger ranks are reported as ``max(ks)`` and the uncut
            MRR is not reported. A full ranking then scans the catalog only for
            the users whose target is not yet beaten by ``max(ks)`` items among
            a probe of the items scoring highest for their block of users (most
            users of a large catalog; RecBole's evaluation also keeps only the
            top ``max(topk)``).
    """

    def __init__(
        self,
        mode: str = "full",
        ks: Iterable[int] = DEFAULT_KS,
        exclude_history: bool | str = False,
        num_negatives: int | None = None,
        item_popularity: torch.Tensor | np.ndarray | None = None,
        seed: int = 0,
        truncate_ranks: bool = False,
    ):
        match = _MODE_PATTERN.fullmatch(str(mode).lower())
        if match is None or (match.group(1) == "full" and match.group(2)):
            raise ValueError(f"mode must be 'full', 'uniN' or 'popN' (e.g. 'uni100', 'pop100'), got {mode!r}")
        self.sampler = None if match.group(1) == "full" else match.group(1)
        if self.sampler is not None:
            from_mode = int(match.group(2)) if match.group(2) else None
            if from_mode is not None and num_negatives is not None and from_mode != num_negatives:
                raise ValueError(f"mode {mode!r} asks for {from_mode} negatives but num_negatives={num_negatives}")
            if from_mode is not None:
                num_negatives = from_mode
            elif num_negatives is None:
                num_negatives = DEFAULT_NUM_NEGATIVES
            if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives <= 0:
                raise ValueError(f"num_negatives must be a positive integer, got {num_negatives!r}")
        self.num_negatives = num_negatives
        self.mode = "full" if self.sampler is None else f"{self.sampler}{num_negatives}"
        self.ks = check_ks(ks)
        if exclude_history not in (True, False, "window"):
            raise ValueError(f"exclude_history must be True, False or 'window', got {exclude_history!r}")
        self.exclude_history = exclude_history if exclude_history == "window" else bool(exclude_history)
        self.seed = int(seed)
        self.rank_limit = max(self.ks) if truncate_ranks else None
        self.item_popularity = None
        if self.sampler == "pop":
            if item_popularity is None:
                raise ValueError(f"mode {self.mode!r} samples by popularity: pass item_popularity (training counts)")
            popularity = torch.as_tensor(item_popularity, dtype=torch.float64).detach().cpu()
            if popularity.ndim != 1 or not torch.isfinite(popularity).all() or (popularity < 0).any():
                raise ValueError("item_popularity must be a 1-D tensor of finite, non-negative counts")
            if popularity[NUM_SPECIAL_TOKENS:].sum() <= 0:
                raise ValueError("item_popularity gives no weight to any real item")
            self.item_popularity = popularity
        self._pending: list[np.ndarray] = []

    # ------------------------------------------------------------------ description
    @property
    def needs_input_ids(self) -> bool:
        """Whether ranks depend on the history (history exclusion or sampled negatives)."""
        return self.sampler is not None or self.exclude_history

    def describe(self) -> str:
        """One line naming the mode and the history handling, for every report."""
        if self.sampler is None:
            if self.exclude_history == "window":
                candidates = (
                    "all items except those of the model's input window (exclude_history='window'; "
                    "the target always stays)"
                )
            elif self.exclude_history:
                candidates = "all items except the user's whole history (exclude_history=True; the target always stays)"
            else:
                candidates = "all items, history items included (exclude_history=False)"
            line = f"full ranking: each target against {candidates}; ties count against the target"
        else:
            how = "uniformly" if self.sampler == "uni" else "by training popularity"
            line = (
                f"{self.mode}: each target against {self.num_negatives} negatives drawn {how} without replacement "
                f"from items outside the user's history (history excluded; seed={self.seed}); "
                "ties count against the target"
            )
        if self.rank_limit is not None:
            line += f"; ranks counted up to {self.rank_limit} (truncate_ranks: no uncut MRR)"
        return line

    def __repr__(self) -> str:
        return (
            f"RankingEvaluator(mode={self.mode!r}, ks={self.ks}, exclude_history={self.exclude_history}, "
            f"seed={self.seed}, truncate_ranks={self.rank_limit is not None})"
        )

    # ------------------------------------------------------------------ ranking
    def rank(
        self,
        scores: torch.Tensor,
        input_ids: torch.Tensor | None,
        targets: torch.Tensor,
        row_ids: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """0-based rank of each target: the number of candidates other than the
        target scoring greater than or equal to it (ties count against it).

        Args:
            scores: ``(B, vocab_size)`` scores; columns of the special tokens are ignored.
            input_ids: ``(B, L)`` histories (padding and [MASK] are ignored); may
                be ``None`` only in full mode without history exclusion.
            targets: ``(B,)`` target item ids.
            row_ids: optional ``(B,)`` stable row ids for the negative sampler
                (default: a hash of the row's history and target).
            history: ``(B, H)`` each user's whole history (left-padded; any H),
                the items negatives are never drawn from and ``exclude_history``
                removes; default ``input_ids``.

        Returns:
            ``(B,)`` int64 ranks on the device of ``scores``.
        """
        if scores.ndim != 2 or targets.ndim != 1 or targets.shape[0] != scores.shape[0]:
            raise ValueError(
                f"expected scores (B, V) and targets (B,), got {tuple(scores.shape)} and {tuple(targets.shape)}"
            )
        vocab_size = scores.shape[1]
        input_ids, targets = self._check_rows(input_ids, targets, vocab_size, scores.device)
        history = self._history(history, input_ids, targets)
        target_scores = scores.gather(1, targets[:, None])

        if self.sampler is None:
            beats = ~(scores < target_scores)  # >=, and NaN counts against the target
            beats[:, :NUM_SPECIAL_TOKENS] = False
            beats.scatter_(1, targets[:, None], False)
            if self.exclude_history:  # excluded ids are real items or padding (column 0, out of the count)
                beats.scatter_(1, self._excluded(history, input_ids, targets, vocab_size), False)
            return self._truncate(beats.sum(1))

        negatives = self._negatives(history, targets, vocab_size, row_ids)
        return self._truncate(self._count_sampled(scores.gather(1, negatives.clamp(min=0)), target_scores, negatives))

    @torch.no_grad()
    def rank_hidden_states(
        self,
        model: Any,
        hidden_states: torch.Tensor,
        input_ids: torch.Tensor | None,
        targets: torch.Tensor,
        row_ids: torch.Tensor | None = None,
        chunk_size: int | None = None,
        observer: Callable[[slice, int, torch.Tensor], None] | None = None,
        history: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ranks of :meth:`rank` without a ``(B, vocab_size)`` score matrix,
        from ``model.item_scorer(hidden_states, input_ids)`` (the target and
        every candidate scored by the same arithmetic, so a tie is a tie):
        full mode scans the catalog in blocks of ``SCAN_ROWS`` rows x
        ``chunk_size`` items (default ``DEFAULT_SCAN_CHUNK``), small enough to
        stay in the CPU cache, and counts the candidates scoring at least the
        target block by block; sampled modes score only the target and its
        negatives. ``model`` is a ``Bert4RecForMaskedItemPrediction`` (or
        anything with ``item_scorer`` and ``config.vocab_size``);
        ``hidden_states`` are its ``(B, hidden)`` encoder states at the
        predicted positions. The scan overwrites each block it scores. ``observer(rows, start, scores)``, if given, sees every block
        of the full scan (rows ``rows`` of ``hidden_states``, the scores of
        vocabulary ids ``start ..``), e.g. to accumulate the softmax normalizer
        of the cross-entropy from the same pass over the catalog; it makes the
        scan cover the whole catalog even with ``truncate_ranks``.
        """
        if hidden_states.ndim != 2 or targets.ndim != 1 or targets.shape[0] != hidden_states.shape[0]:
            raise ValueError(
                f"expected hidden_states (B, H) and targets (B,), got {tuple(hidden_states.shape)} and "
                f"{tuple(targets.shape)}"
            )
        chunk_size = _scan_chunk_size(chunk_size)
        vocab_size = model.config.vocab_size
        input_ids, targets = self._check_rows(input_ids, targets, vocab_size, hidden_states.device)
        if input_ids is None and getattr(model.config, "seen_item_bias", False):
            raise ValueError("the model scores the items of its input (seen_item_bias): ranking needs input_ids")
        history = self._history(history, input_ids, targets)
        scorer = model.item_scorer(hidden_states, input_ids)
        target_scores = scorer.targets(targets)[:, None]
        if self.sampler is not None:
            negatives = self._negatives(history, targets, vocab_size, row_ids)
            negative_scores = scorer.chosen(negatives.clamp(min=0))
            return self._truncate(self._count_sampled(negative_scores, target_scores, negatives))

        # ids taken out of the count where they score at least the target: the target itself and, with
        # history exclusion, each distinct excluded item (padding where none: never a counted column)
        excluded = targets[:, None]
        if self.exclude_history:
            distinct = distinct_items(self._excluded(history, input_ids, targets, vocab_size))
            excluded = torch.cat([excluded, distinct], dim=1)
        if self.rank_limit is None or observer is not None or vocab_size - NUM_SPECIAL_TOKENS <= chunk_size:
            return self._truncate(self._scan(scorer, target_scores, excluded, chunk_size, observer))
        # users whose probe already counts rank_limit items are settled; only the others scan the catalog
        counts = self._probe(scorer, target_scores, excluded, chunk_size)
        open_rows = counts.lt(self.rank_limit).nonzero()[:, 0]
        if open_rows.numel():
            counts[open_rows] = self._scan_until(
                scorer.rows(open_rows), target_scores[open_rows], excluded[open_rows], chunk_size, self.rank_limit
            )
        return self._truncate(counts)

    def _truncate(self, ranks: torch.Tensor) -> torch.Tensor:
        return ranks if self.rank_limit is None else ranks.clamp_(max=self.rank_limit)

    @staticmethod
    def _scan(
        scorer: ItemScorer,
        target_scores: torch.Tensor,
        excluded: torch.Tensor,
        chunk_size: int,
        observer: Callable[[slice, int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Exact counts over the whole catalog, one cache-sized block at a time."""
        counts = torch.zeros(target_scores.shape[0], dtype=torch.long, device=target_scores.device)
        for first_row in range(0, target_scores.shape[0], SCAN_ROWS):
            rows = slice(first_row, first_row + SCAN_ROWS)
            for start, scores in scorer.rows(rows).chunks(chunk_size):
                if observer is not None:
                    observer(rows, start, scores)
                local = _window_columns(excluded[rows], start, scores.shape[1])
                counts[rows] += _count_at_least(scores, target_scores[rows], local)
        return counts

    @staticmethod
    def _scan_until(
        scorer: ItemScorer, target_scores: torch.Tensor, excluded: torch.Tensor, chunk_size: int, limit: int
    ) -> torch.Tensor:
        """Counts over the catalog in id order, each row only until it reaches
        ``limit`` (its rank is then at least the limit, all that is asked). Blocks
        stay at most ``SCAN_ROWS x chunk_size`` scores and widen as rows drop out."""
        device = target_scores.device
        counts = torch.zeros(target_scores.shape[0], dtype=torch.long, device=device)
        counting = torch.arange(target_scores.shape[0], device=device)
        start, vocab_size = NUM_SPECIAL_TOKENS, scorer.vocab_size
        while start < vocab_size and counting.numel():
            stop = min(vocab_size, start + max(chunk_size, chunk_size * SCAN_ROWS // counting.numel()))
            for rows in counting.split(SCAN_ROWS):
                local = _window_columns(excluded[rows], start, stop - start)
                scores = scorer.rows(rows).range(start, stop)
                counts[rows] += _count_at_least(scores, target_scores[rows], local)
            counting = counting[counts[counting] < limit]
            start = stop
        return counts

    @staticmethod
    def _probe(scorer: ItemScorer, target_scores: torch.Tensor, excluded: torch.Tensor, width: int) -> torch.Tensor:
        """Counts over a probe of ``width`` items per block of ``SCAN_ROWS`` rows:
        the items that score highest for the block's mean state. A lower bound
        of each count, and for most users already past the rank limit."""
        blocks = scorer.states.split(SCAN_ROWS)
        means = ItemScorer(torch.stack([block.mean(0) for block in blocks]), scorer.weight, scorer.bias)
        probes = means.range().topk(min(width, scorer.vocab_size - NUM_SPECIAL_TOKENS), dim=1).indices
        probes += NUM_SPECIAL_TOKENS
        device = target_scores.device
        counts = torch.zeros(target_scores.shape[0], dtype=torch.long, device=device)
        position = torch.full((scorer.vocab_size,), -1, dtype=torch.long, device=device)
        for block, probe in enumerate(probes):
            rows = slice(block * SCAN_ROWS, (block + 1) * SCAN_ROWS)
            position[probe] = torch.arange(probe.shape[0], device=device)
            ids = excluded[rows]
            local = torch.where(ids >= 0, position[ids.clamp(min=0)], -1)
            scores = scorer.rows(rows).chosen(probe)
            counts[rows] = _count_at_least(scores, target_scores[rows], local)
            position[probe] = -1
        return counts

    def _check_rows(
        self, input_ids: torch.Tensor | None, targets: torch.Tensor, vocab_size: int, device: torch.device
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        targets = targets.to(device).long()
        if targets.numel() and (targets.min() < NUM_SPECIAL_TOKENS or targets.max() >= vocab_size):
            raise ValueError(
                f"targets must be real item ids in [{NUM_SPECIAL_TOKENS}, {vocab_size}), got {targets.tolist()[:10]}"
            )
        if input_ids is None:
            if self.needs_input_ids:
                raise ValueError(f"{self.mode} ranking with exclude_history={self.exclude_history} needs input_ids")
        else:
            input_ids = input_ids.to(device).long()
            if input_ids.ndim != 2 or input_ids.shape[0] != targets.shape[0]:
                raise ValueError(f"expected input_ids (B, L) with B={targets.shape[0]}, got {tuple(input_ids.shape)}")
        return input_ids, targets

    def _history(
        self, history: torch.Tensor | None, input_ids: torch.Tensor | None, targets: torch.Tensor
    ) -> torch.Tensor | None:
        """What the user had before the target: ``history`` (the whole one) when
        given, else the model's input window."""
        if history is None:
            return input_ids
        history = history.to(targets.device).long()
        if history.ndim != 2 or history.shape[0] != targets.shape[0]:
            raise ValueError(f"expected history (B, H) with B={targets.shape[0]}, got {tuple(history.shape)}")
        return history

    def _excluded(
        self, history: torch.Tensor, input_ids: torch.Tensor | None, targets: torch.Tensor, vocab_size: int
    ) -> torch.Tensor:
        """The items ``exclude_history`` takes out of a full ranking (the target stays)."""
        source = input_ids if self.exclude_history == "window" else history
        return excluded_items(source, vocab_size, keep=targets)

    def _negatives(
        self, history: torch.Tensor, targets: torch.Tensor, vocab_size: int, row_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """Negatives outside the items the user had (the one exclusion rule), the target excluded."""
        weights = None
        if self.sampler == "pop":
            if self.item_popularity.shape[0] != vocab_size:
                raise ValueError(
                    f"item_popularity has {self.item_popularity.shape[0]} entries but the catalog has {vocab_size} "
                    "vocabulary ids"
                )
            weights = self.item_popularity
        return sample_negatives(
            excluded_items(history, vocab_size), targets, vocab_size, self.num_negatives, weights=weights,
            seed=self.seed, row_ids=row_ids,
        )  # fmt: skip

    @staticmethod
    def _count_sampled(
        negative_scores: torch.Tensor, target_scores: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        beats = ~(negative_scores < target_scores) & (negatives >= 0)
        return beats.sum(1)

    def rank_labelled(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        compact: bool = True,
        history: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ranks the model's ``(M, vocab_size)`` logits, whose rows are the
        positions with ``labels != -100`` in row-major order.

        Targets are located by label value, never by position, so labels padded
        with -100 across processes or batches are handled. Returns ``(ranks,
        targets)`` with one row per batch row, ``-100`` where there is no
        target: ``(B, T)`` with T the most targets in a row (1 for next-item
        evaluation) when ``compact``, else shaped like ``labels``.
        """
        labelled = labels.ne(IGNORE_INDEX)
        if logits.shape[0] != int(labelled.sum()):
            raise ValueError(
                f"got {logits.shape[0]} rows of logits for {int(labelled.sum())} labelled positions; the model must "
                "score exactly the positions where labels != -100, in row-major order"
            )
        rows = labelled.nonzero()[:, 0].to(logits.device)
        window = _rows_of(input_ids.to(logits.device), rows) if input_ids is not None else None
        whole = _rows_of(history.to(logits.device), rows) if history is not None else None
        ranks = self.rank(logits, window, labels[labelled].to(logits.device), history=whole)
        return self._layout(ranks, labels, compact)

    def rank_labelled_hidden_states(
        self,
        model: Any,
        hidden_states: torch.Tensor,
        labels: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        chunk_size: int | None = None,
        compact: bool = True,
        observer: Callable[[slice, int, torch.Tensor], None] | None = None,
        history: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`rank_labelled` from the ``(M, hidden)`` encoder states at the
        labelled positions, through :meth:`rank_hidden_states` (no ``M x
        vocab_size`` scores). ``history``: ``(B, H)`` each batch row's whole history."""
        labelled = labels.ne(IGNORE_INDEX)
        if hidden_states.shape[0] != int(labelled.sum()):
            raise ValueError(
                f"got {hidden_states.shape[0]} hidden states for {int(labelled.sum())} labelled positions"
            )
        device = hidden_states.device
        rows = labelled.nonzero()[:, 0].to(device)
        window = _rows_of(input_ids.to(device), rows) if input_ids is not None else None
        whole = _rows_of(history.to(device), rows) if history is not None else None
        targets = labels[labelled].to(device)
        ranks = self.rank_hidden_states(
            model, hidden_states, window, targets, chunk_size=chunk_size, observer=observer, history=whole
        )
        return self._layout(ranks, labels, compact)

    @staticmethod
    def _layout(ranks: torch.Tensor, labels: torch.Tensor, compact: bool) -> tuple[torch.Tensor, torch.Tensor]:
        device = ranks.device
        labelled = labels.ne(IGNORE_INDEX)
        if not compact:
            out = torch.full(labels.shape, IGNORE_INDEX, dtype=torch.long, device=device)
            out[labelled.to(device)] = ranks
            return out, labels
        rows = labelled.nonzero()[:, 0]
        width = max(int(labelled.sum(1).max()), 1) if labels.shape[0] else 1
        columns = labelled.long().cumsum(1).sub_(1)[labelled]
        out_ranks = torch.full((labels.shape[0], width), IGNORE_INDEX, dtype=torch.long, device=device)
        out_targets = torch.full_like(out_ranks, IGNORE_INDEX)
        index = (rows.to(device), columns.to(device))
        out_ranks[index] = ranks
        out_targets[index] = labels[labelled].to(device).long()
        return out_ranks, out_targets

    # ------------------------------------------------------------------ Trainer hooks
    def preprocess_logits_for_metrics(self, logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
        """For the plain ``transformers.Trainer``: turns each batch's logits into
        ranks placed at the labelled positions (-100 elsewhere) before the
        cross-process gather. Works only in full mode without history
        exclusion, since the Trainer does not pass the inputs here."""
        if self.needs_input_ids:
            raise ValueError(
                f"{self.describe()!r} needs the batch's input_ids, which Trainer does not pass to "
                "preprocess_logits_for_metrics; use Bert4RecTrainer(evaluator=...) instead"
            )
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return self.rank_labelled(logits, labels, compact=False)[0]

    def compute_metrics(self, eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
        """``compute_metrics`` for the Trainer: ``predictions`` are ranks laid out
        like ``label_ids`` (-100 where there is no target). With
        ``batch_eval_metrics=True`` the Trainer passes ``compute_result``; ranks
        are collected until it is ``True``."""
        predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        pairs = (
            zip(predictions, label_ids, strict=True) if isinstance(predictions, list) else [(predictions, label_ids)]
        )
        ranks = []
        for batch_ranks, batch_labels in pairs:
            batch_ranks, batch_labels = _to_numpy(batch_ranks), _to_numpy(batch_labels)
            if batch_ranks.shape != batch_labels.shape:
                raise ValueError(
                    f"predictions {batch_ranks.shape} and label_ids {batch_labels.shape} must share a layout: use "
                    "Bert4RecTrainer(evaluator=...) or Trainer(preprocess_logits_for_metrics=evaluator."
                    "preprocess_logits_for_metrics)"
                )
            ranks.append(batch_ranks[batch_labels != IGNORE_INDEX])
        if compute_result is None:
            return ranking_metrics(np.concatenate(ranks), self.ks, self.rank_limit)
        self._pending.extend(ranks)
        if not compute_result:
            return {}
        ranks, self._pending = np.concatenate(self._pending), []
        return ranking_metrics(ranks, self.ks, self.rank_limit)


__all__ = ["RankingEvaluator"]
