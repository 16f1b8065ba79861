"""Batch collators for ``transformers.Trainer`` (``data_collator=``).

Both collators LEFT-pad: a row is right-aligned in a fixed ``(B, max_seq_length)``
tensor, so the last column always holds the most recent item and the learned
position embeddings mean "distance from now" for every history length. Longer
histories keep their most recent items. The masking's randomness comes from
``seed`` (each batch its own stream, seeded by ``seed`` and the batch's number),
else ``generator``, else torch's global RNG, which ``transformers.set_seed`` seeds
(with ``dataloader_num_workers > 0`` use the global RNG: each worker would copy
the same collator state and draw the same masks).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..configuration_bert4rec import IGNORE_INDEX, MASK_TOKEN_ID, NUM_SPECIAL_TOKENS, PAD_TOKEN_ID
from ..modeling_bert4rec import append_mask


def left_pad(histories: Sequence[Any], length: int) -> torch.Tensor:
    """Right-aligns each history (list, array or tensor of ids) in a long tensor
    padded with [PAD], as wide as the longest history but at most ``length``
    (keeping the last ``length`` items of longer ones). Positions are counted
    from the right, so the width changes no output, only the work: a batch of
    short histories is not padded to ``max_seq_length``."""
    rows = [history[len(history) - length:] if len(history) > length else history for history in histories]
    sizes = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    length = max(1, int(sizes.max(initial=0)))
    if all(isinstance(row, (list, tuple)) for row in rows):  # the Trainer's case: one C-level pass
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(sizes.sum()))
    else:
        flat = np.concatenate([np.asarray(row, dtype=np.int64).reshape(-1) for row in rows])
    out = np.full((len(rows), length), PAD_TOKEN_ID, dtype=np.int64)
    out[np.arange(length) >= (length - sizes)[:, None]] = flat  # fills row by row, left to right
    return torch.from_numpy(out)


def _histories(features: Sequence[Mapping[str, Any]]) -> list[Any]:
    if not features:
        raise ValueError("cannot collate an empty batch")
    try:
        return [feature["input_ids"] for feature in features]
    except KeyError:
        raise ValueError("every feature needs an 'input_ids' entry (the encoded item history)") from None


def _last_item_only(features: Sequence[Mapping[str, Any]]) -> torch.Tensor | None:
    """The rows whose feature asks for last-item-only masking (``last_item_only``); None when none says."""
    if "last_item_only" not in features[0]:
        return None
    return torch.tensor([bool(feature.get("last_item_only", False)) for feature in features])


def _check_probability(name: str, value: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0 < value if low_open else 0 <= value) and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _check_length(value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"max_seq_length must be an integer >= {minimum}, got {value!r}")


@dataclass
class MaskingArguments:
    """The Cloze task's settings, one group: how ``DataCollatorForMaskedItemPrediction``
    masks training windows (see there).

    A run configuration sets them as training settings under the same names
    (``configuration/overall.yaml``, "masking"; a data set's YAML, your files or
    ``--set mask_ratio=0.3`` override them), and a Trainer script parses them as flags
    with ``HfArgumentParser(MaskingArguments)``. The defaults are the collator's; a value
    outside its interval is a ``ValueError`` naming the setting.
    """

    mask_ratio: float = field(
        default=0.2, metadata={"help": "share of items masked, in (0, 1) (the paper's mask proportion)"}
    )
    last_item_mask_ratio: float = field(
        default=0.0, metadata={"help": "share of rows that mask only their last item (RecBole's ft_ratio)"}
    )
    mask_replace_prob: float = field(
        default=1.0, metadata={"help": "masked items shown as [MASK] (BERT's 80/10/10 is 0.8)"}
    )
    random_replace_prob: float = field(
        default=0.0, metadata={"help": "masked items shown as a random item (BERT's 80/10/10 is 0.1)"}
    )
    num_views: int = field(
        default=1,
        metadata={"help": "masked copies of each window in a batch, each drawn on its own (CBiT's positive views)"},
    )

    def __post_init__(self) -> None:
        for name in self.keys():
            self.check(name, getattr(self, name))
        if self.mask_replace_prob + self.random_replace_prob > 1 + 1e-9:
            raise ValueError(
                f"mask_replace_prob + random_replace_prob must be <= 1, got "
                f"{self.mask_replace_prob} + {self.random_replace_prob}"
            )

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The settings' names, which are also the run configuration's masking keys."""
        return tuple(item.name for item in fields(cls))

    @staticmethod
    def check(name: str, value: Any) -> None:
        """Raises ``ValueError`` naming ``name`` when ``value`` lies outside its interval:
        ``(0, 1)`` for ``mask_ratio``, an integer >= 1 for ``num_views``, ``[0, 1]`` for the others."""
        if name == "num_views":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"num_views must be an integer >= 1, got {value!r}")
            return
        ratio = name == "mask_ratio"
        _check_probability(name, value, low_open=ratio, high_open=ratio)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> MaskingArguments:
        """The group out of a mapping that holds its keys, e.g. a run configuration."""
        return cls(**{name: settings[name] for name in cls.keys()})


@dataclass
class DataCollatorForMaskedItemPrediction:
    """Cloze masking of training windows (BERT4Rec's training task).

    Each real position is masked with probability ``mask_ratio``; a row that
    drew no mask gets one at a random real position, so every row has a label.
    A share ``last_item_mask_ratio`` of rows instead masks only its most recent
    item, the way the model is queried at inference (RecBole's ``ft_ratio``), and
    so does every row whose feature holds ``last_item_only: True`` (next-item rows,
    ``Bert4RecTrainer``'s ``next_item_share``).
    A masked position becomes [MASK] with probability ``mask_replace_prob``, a
    random item with ``random_replace_prob`` and stays as it is otherwise (BERT's
    80/10/10 is ``0.8, 0.1``). ``num_negatives > 0`` adds ``negative_ids``
    ``(B, L, num_negatives)``: items drawn uniformly among the real items other
    than the label (0 where there is no label), for a BPR / sampled-softmax loss.
    ``num_views > 1`` masks the batch that many times, each copy on its own draws, and
    stacks the copies (rows ``v * B`` to ``(v + 1) * B - 1`` are copy ``v``); the batch
    then also holds ``num_views``, which the model's contrastive loss reads
    (``Bert4RecConfig.contrastive_weight``; CBiT's positive views).

    Returns ``input_ids``, ``attention_mask`` (1 on items and [MASK], 0 on
    padding), ``labels`` (the original item where masked, -100 elsewhere) and
    possibly ``negative_ids``, all ``torch.long`` of width ``max_seq_length``.

    ``seed``: batch ``n`` (counted by ``batches_made``) is masked from a stream of
    its own, seeded with ``(seed, n)``. Masks then depend on the batch's number
    only, not on what else drew random numbers before (dropout, a data loader
    fetching one batch ahead), so a run resumed at batch ``n`` (set
    ``batches_made = n``) masks exactly as the uninterrupted run did.
    """

    max_seq_length: int = 50
    mask_ratio: float = MaskingArguments.mask_ratio
    vocab_size: int | None = None
    last_item_mask_ratio: float = MaskingArguments.last_item_mask_ratio
    mask_replace_prob: float = MaskingArguments.mask_replace_prob
    random_replace_prob: float = MaskingArguments.random_replace_prob
    num_views: int = MaskingArguments.num_views
    num_negatives: int = 0
    generator: torch.Generator | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_length(self.max_seq_length, 1)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if self.seed is not None and self.generator is not None:
            raise ValueError("give the collator a seed or a generator, not both")
        self.batches_made = 0
        MaskingArguments(**{name: getattr(self, name) for name in MaskingArguments.keys()})  # checks the Cloze settings
        if isinstance(self.num_negatives, bool) or not isinstance(self.num_negatives, int) or self.num_negatives < 0:
            raise ValueError(f"num_negatives must be a non-negative integer, got {self.num_negatives!r}")
        if self.vocab_size is not None:
            if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int):
                raise ValueError(f"vocab_size must be an integer, got {self.vocab_size!r}")
            if self.vocab_size <= NUM_SPECIAL_TOKENS:
                raise ValueError(f"vocab_size must exceed the {NUM_SPECIAL_TOKENS} special tokens, got {self.vocab_size}")
        if self.vocab_size is None and (self.random_replace_prob > 0 or self.num_negatives > 0):
            raise ValueError("vocab_size is required when random_replace_prob > 0 or num_negatives > 0")
        if self.num_negatives > 0 and self.vocab_size < NUM_SPECIAL_TOKENS + 2:
            raise ValueError(f"vocab_size must leave at least 2 real items to draw negatives from, got {self.vocab_size}")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(self.generator).__name__}")

    def _batch_generator(self, number: int) -> torch.Generator:
        """The random stream of batch ``number``: ``(seed, number)`` mixed by numpy's SeedSequence."""
        words = np.random.SeedSequence([int(self.seed) & 0xFFFFFFFFFFFFFFFF, number]).generate_state(2)
        return torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self._generator)

    def _randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self._generator)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor | int]:
        self._generator = self.generator if self.seed is None else self._batch_generator(self.batches_made)
        self.batches_made += 1
        items = left_pad(_histories(features), self.max_seq_length)
        real = items.ne(PAD_TOKEN_ID)
        empty_rows = ~real.any(dim=1)
        if empty_rows.any():
            raise ValueError(f"feature {int(empty_rows.nonzero()[0])} has no items to mask")
        if self.vocab_size is not None and int(items.max()) >= self.vocab_size:
            raise ValueError(f"item index {int(items.max())} is outside the vocabulary of size {self.vocab_size}")
        if bool((real & items.lt(NUM_SPECIAL_TOKENS)).any()):
            raise ValueError("input_ids must hold real items (>= 2), not [MASK] or negative indices")
        if self.num_views > 1:
            items = items.repeat(self.num_views, 1)
            real = real.repeat(self.num_views, 1)
        batch, length = items.shape

        masked = real & (self._rand(batch, length) < self.mask_ratio)
        forced = _last_item_only(features)
        if self.last_item_mask_ratio > 0 or forced is not None:
            drawn = self.last_item_mask_ratio > 0  # drawn only then: a run without such rows keeps its random stream
            last_only = self._rand(batch) < self.last_item_mask_ratio if drawn else torch.zeros(batch, dtype=torch.bool)
            if forced is not None:
                last_only |= forced.repeat(self.num_views)
            masked[last_only] = False
            masked[last_only, -1] = True  # left padding: the last column is always a real item
        unmasked = ~masked.any(dim=1)
        if unmasked.any():  # a random real position of each row that drew no mask
            pick = self._rand(batch, length).masked_fill(~real, -1.0).argmax(dim=1)
            masked[unmasked, pick[unmasked]] = True

        labels = items.masked_fill(~masked, IGNORE_INDEX)
        input_ids = items.clone()
        if self.mask_replace_prob >= 1:
            input_ids[masked] = MASK_TOKEN_ID
        else:
            draw = self._rand(batch, length)
            input_ids[masked & (draw < self.mask_replace_prob)] = MASK_TOKEN_ID
            if self.random_replace_prob > 0:
                randomised = masked & (draw >= self.mask_replace_prob) & (draw < self.mask_replace_prob + self.random_replace_prob)
                random_items = self._randint(NUM_SPECIAL_TOKENS, self.vocab_size, (batch, length))
                input_ids = torch.where(randomised, random_items, input_ids)
        batch_out = {"input_ids": input_ids, "attention_mask": real.long(), "labels": labels}
        if self.num_negatives > 0:
            batch_out["negative_ids"] = self._negatives(labels, masked)
        if self.num_views > 1:
            batch_out["num_views"] = self.num_views
        return batch_out

    def _negatives(self, labels: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Uniform over the real items except the label, drawn only where there is
        a label: draw among one item fewer and shift draws at or above the label up."""
        positives = labels[masked].unsqueeze(-1)
        draws = self._randint(NUM_SPECIAL_TOKENS, self.vocab_size - 1, (positives.shape[0], self.num_negatives))
        negatives = torch.zeros((*labels.shape, self.num_negatives), dtype=torch.long)
        negatives[masked] = draws + draws.ge(positives).long()
        return negatives


@dataclass
class DataCollatorForNextItemPrediction:
    """Evaluation / inference batches: the last ``max_seq_length - 1`` history items,
    left-padded, then [MASK] in the last column where the model predicts the next item.

    With ``labels`` in the features (validation/test rows), ``labels`` is
    ``(B, L)``: -100 everywhere but the last column, which holds the target.
    Without them (inference) there is no ``labels`` key.

    ``whole_history=True`` adds ``history_ids``: each row's whole history,
    left-padded to the longest in the batch. The model reads only the last
    ``max_seq_length - 1`` items, but the candidates a user may not get (sampled
    negatives, ``exclude_history``) are everything they interacted with.
    """

    max_seq_length: int = 50
    whole_history: bool = False

    def __post_init__(self) -> None:
        _check_length(self.max_seq_length, 2)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        histories = _histories(features)
        input_ids, attention_mask = append_mask(left_pad(histories, self.max_seq_length - 1), self.max_seq_length)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask.long()}
        if self.whole_history:
            batch["history_ids"] = left_pad(histories, max(map(len, histories), default=1))
        with_labels = [feature.get("labels") is not None for feature in features]
        if any(with_labels):
            if not all(with_labels):
                raise ValueError("some features have 'labels' and some do not; collate them separately")
            targets = torch.as_tensor([int(feature["labels"]) for feature in features], dtype=torch.long)
            if bool(targets.lt(NUM_SPECIAL_TOKENS).any()):
                raise ValueError("labels must be real item indices (>= 2)")
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            labels[:, -1] = targets
            batch["labels"] = labels
        return batch
