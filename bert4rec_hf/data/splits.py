"""Leave-one-out splits of user sequences, encoded with an ``ItemTokenizer``.

For a user with items ``x1 .. xn`` (time order):

* ``train``: ``x1 .. x(n-2)`` (``.. x(n-1)`` with ``train_on_validation_item``),
  cut into windows of at most ``max_seq_length`` items; the collator masks them
  (Cloze task).
* ``validation``: history ``x1 .. x(n-2)``, label ``x(n-1)``.
* ``test``: history ``x1 .. x(n-1)``, label ``xn``.

Everything is computed on the flat item column with numpy offset arithmetic:
one ``encode_array`` call encodes all interactions at once, and the windows are
index arithmetic, so the cost does not grow with a Python loop over users or
windows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..tokenization_bert4rec import MASK_TOKEN_ID, VOCAB_FILE_NAME, ItemTokenizer
from .readers import USER
from .sequences import _as_table, in_memory_dataset, list_array

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
REPORT_FILE_NAME = "split_report.json"
MIN_INTERACTIONS = 3  # one to train on, one to validate, one to test


@dataclass
class SplitReport:
    """What ``leave_one_out`` produced and whom it left out of each split, and why.

    ``too_short``: users with too few interactions for the split (fewer than 3
    for train and validation, fewer than 2 for test). ``unknown_target``: users
    whose held-out item is not in the vocabulary (with a vocabulary fitted on the
    training part: an item nobody interacted with before). ``empty_history``:
    users none of whose history items are in the vocabulary (only with a
    tokenizer passed in). ``unknown_history_items``: interactions dropped from
    histories for the same reason.
    """

    num_users: int
    num_items: int
    vocab_size: int
    max_seq_length: int
    stride: int
    max_history_length: int | None = None
    prefixes: bool = False
    train_on_validation_item: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    too_short: dict[str, int] = field(default_factory=dict)
    unknown_target: dict[str, int] = field(default_factory=dict)
    empty_history: dict[str, int] = field(default_factory=dict)
    unknown_history_items: int = 0
    tokenizer_fitted: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitReport:
        return cls(**data)

    def left_out(self, split: str) -> int:
        return self.too_short.get(split, 0) + self.unknown_target.get(split, 0) + self.empty_history.get(split, 0)


class LeaveOneOutSplits(NamedTuple):
    """``leave_one_out``'s result: unpack it as ``splits, tokenizer, report = ...``."""

    splits: datasets.DatasetDict
    tokenizer: ItemTokenizer
    report: SplitReport


def training_histories(processed: LeaveOneOutSplits) -> pa.ChunkedArray:
    """Each user's training interactions, each once: the history before the first
    held-out item (the validation rows' histories; the test rows' when training
    ran through the validation item). Training windows overlap (with stride 1 an
    interaction is in up to ``max_seq_length`` of them), so statistics such as
    item popularity are counted here, not over the windows."""
    split = "test" if processed.report.train_on_validation_item else "validation"
    if processed.report.max_history_length is not None:
        raise ValueError(
            f"the {split} rows keep only the last {processed.report.max_history_length} items "
            "(max_history_length): they do not hold each user's training history"
        )
    return processed.splits[split].with_format("arrow")["input_ids"]


# ---------------------------------------------------------------------------- ragged-array helpers
def sliding_windows(
    lengths: np.ndarray, max_length: int, stride: int, prefixes: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over sequences of ``lengths``: (owner sequence, start, length) per window.

    As in the BERT4Rec code, the last window ends at the last item and the others
    step back by ``stride`` until one starts at 0, so every item is covered
    (``stride <= max_length``) and the most recent items always form a full
    window. With ``prefixes``, the window *ends* step back by ``stride`` down to
    the first items instead, each window holding the (up to) ``max_length``
    items that end there: with stride 1 one window per item, RecBole's prefix
    samples, so short histories count as often as long ones. Windows of one
    sequence come out in time order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if prefixes:
        count = -(-lengths // stride)
    else:
        count = np.where(lengths > max_length, -(-(lengths - max_length) // stride) + 1, 1)
    owner = np.repeat(np.arange(len(lengths)), count)
    first = np.cumsum(count) - count
    steps_back = (count - 1)[owner] - (np.arange(len(owner)) - first[owner])
    if prefixes:
        end = lengths[owner] - steps_back * stride
        start = np.maximum(end - max_length, 0)
        return owner, start, end - start
    start = np.maximum(lengths[owner] - max_length - steps_back * stride, 0)
    return owner, start, np.minimum(lengths[owner], max_length)


def gather_segments(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates ``values[s:s+n]`` for each (start, length): flat values and offsets."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(np.asarray(starts, dtype=np.int64) - offsets[:-1], lengths) + np.arange(offsets[-1])
    return values[index], offsets


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _eval_split(
    users: pa.Array, history: np.ndarray, history_len: np.ndarray, targets: np.ndarray, rows: np.ndarray,
    max_history_length: int | None,
) -> datasets.Dataset:
    """validation/test rows: the (tail of the) history and a scalar label."""
    history_start = np.cumsum(history_len) - history_len
    take = history_len[rows] if max_history_length is None else np.minimum(history_len[rows], max_history_length)
    flat, offsets = gather_segments(history, history_start[rows] + history_len[rows] - take, take)
    return in_memory_dataset(
        {
            USER: users.take(pa.array(rows)),
            "input_ids": list_array(offsets, flat.astype(np.int32)),
            "labels": pa.array(targets[rows].astype(np.int64)),
        }
    )


def leave_one_out(
    sequences: datasets.Dataset | pa.Table,
    tokenizer: ItemTokenizer | None = None,
    max_seq_length: int = 50,
    stride: int | None = None,
    max_history_length: int | None = None,
    fit_on: Literal["train", "all"] = "train",
    prefixes: bool = False,
    train_on_validation_item: bool = False,
) -> LeaveOneOutSplits:
    """Splits ``build_sequences`` output into encoded train/validation/test sets.

    Args:
        sequences: rows of ``user_id`` and ``item_ids`` (raw ids, time order).
        tokenizer: the vocabulary to encode with. When None, one is fitted on the
            items of the training part (all but each user's last two items), so
            the model never gets an embedding that only a held-out item trains.
            A held-out item nobody met in training therefore has no index: that
            user is left out of the split and counted in ``report.unknown_target``
            (RecBole fits on all items instead; its model then ranks an item whose
            embedding never received a gradient). ``fit_on="all"`` (or a tokenizer
            fitted on all items) keeps every user, as the published Beauty/ML
            figures do.
        max_seq_length: length of the training windows (the model's input length).
        stride: step between training windows; default ``max_seq_length // 2``
            (the BERT4Rec code uses 0.1-0.5 x ``max_seq_length``). Must not exceed
            ``max_seq_length``, so the windows cover every training interaction.
        max_history_length: keep only this many most recent history items in
            validation/test rows; None keeps the whole history (the collator
            truncates, and a ranking that excludes seen items needs all of them).
        fit_on: ``"train"`` or ``"all"``: the items a new vocabulary is fitted on.
        prefixes: windows end at every ``stride``-th training item down to the
            first ones (short prefixes included; RecBole's samples with stride 1)
            instead of full windows only (see ``sliding_windows``).
        train_on_validation_item: the training windows run through ``x(n-1)``,
            the validation target, as in the BERT4Rec authors' code ("put validate
            into train"): the protocol of the paper's table, which trains for a
            fixed step budget. Validation metrics then score items the model was
            trained on, so they track training progress, not generalisation.

    Returns:
        ``LeaveOneOutSplits(splits, tokenizer, report)``: ``splits`` is a
        ``DatasetDict``; ``train`` has ``user_id`` and ``input_ids`` (one row per
        window), ``validation``/``test`` have ``user_id``, ``input_ids`` (history)
        and ``labels`` (the encoded target, an int). ``report`` is a ``SplitReport``.
    """
    max_seq_length = _check_int("max_seq_length", max_seq_length, 2)
    stride = max(1, max_seq_length // 2) if stride is None else _check_int("stride", stride, 1)
    if stride > max_seq_length:
        raise ValueError(f"stride ({stride}) must not exceed max_seq_length ({max_seq_length}): windows would skip items")
    if max_history_length is not None:
        max_history_length = _check_int("max_history_length", max_history_length, 1)

    table = _as_table(sequences)
    missing = [c for c in (USER, "item_ids") if c not in table.column_names]
    if missing:
        raise ValueError(f"the sequences lack the column(s) {missing}; they have {table.column_names}")
    item_lists = table["item_ids"].combine_chunks()
    users = table[USER].combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(item_lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    num_users = len(lengths)
    if num_users == 0 or lengths.max() < MIN_INTERACTIONS:
        longest = int(lengths.max()) if num_users else 0
        raise ValueError(
            f"no user has the {MIN_INTERACTIONS} interactions leave-one-out needs (one each to train, validate "
            f"and test); the longest of the {num_users} sequences has {longest}"
        )
    values = pc.list_flatten(item_lists)
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(num_users), lengths)
    position = np.arange(len(owner)) - starts[owner]
    length_of = lengths[owner]
    history_part = position < length_of - 2
    train_part = (position < length_of - 1) if train_on_validation_item else history_part

    if fit_on not in ("train", "all"):
        raise ValueError(f"fit_on must be 'train' or 'all', got {fit_on!r}")
    fitted = tokenizer is None
    if fitted:
        tokenizer = ItemTokenizer.fit(values.filter(pa.array(train_part)) if fit_on == "train" else values)
    ids = tokenizer.encode_array(values, unknown="mask")
    known = ids != MASK_TOKEN_ID

    # training part: known items of x1 .. x(n-2) (.. x(n-1) with train_on_validation_item)
    keep = train_part & known
    train_ids, train_len = ids[keep], np.bincount(owner[keep], minlength=num_users)
    # validation history: known items of x1 .. x(n-2), the training part unless it runs through x(n-1)
    val_ids, val_len = train_ids, train_len
    if train_on_validation_item:
        val_keep = history_part & known
        val_ids, val_len = ids[val_keep], np.bincount(owner[val_keep], minlength=num_users)
    # test history: known items of x1 .. x(n-1)
    test_keep = (position < length_of - 1) & known
    test_ids, test_len = ids[test_keep], np.bincount(owner[test_keep], minlength=num_users)

    has_val, has_test = lengths >= MIN_INTERACTIONS, lengths >= 2
    val_target = np.full(num_users, MASK_TOKEN_ID, dtype=np.int64)
    test_target = np.full(num_users, MASK_TOKEN_ID, dtype=np.int64)
    val_target[has_val] = ids[(starts + lengths - 2)[has_val]]
    test_target[has_test] = ids[(starts + lengths - 1)[has_test]]

    report = SplitReport(
        num_users=num_users, num_items=tokenizer.num_items, vocab_size=tokenizer.vocab_size,
        max_seq_length=max_seq_length, stride=stride, max_history_length=max_history_length,
        prefixes=bool(prefixes), train_on_validation_item=bool(train_on_validation_item), tokenizer_fitted=fitted,
        unknown_history_items=int(((position < length_of - 1) & ~known).sum()),
    )
    report.too_short = {"train": int((~has_val).sum()), "validation": int((~has_val).sum()), "test": int((~has_test).sum())}
    val_known, test_known = val_target != MASK_TOKEN_ID, test_target != MASK_TOKEN_ID
    report.unknown_target = {"validation": int((has_val & ~val_known).sum()), "test": int((has_test & ~test_known).sum())}
    report.empty_history = {
        "train": int((has_val & (train_len == 0)).sum()),
        "validation": int((has_val & val_known & (val_len == 0)).sum()),
        "test": int((has_test & test_known & (test_len == 0)).sum()),
    }

    train_users = np.flatnonzero(has_val & (train_len > 0))
    if len(train_users) == 0:
        raise ValueError("no training rows: none of the training items is in the tokenizer's vocabulary")
    train_start = np.cumsum(train_len) - train_len
    window_owner, window_start, window_len = sliding_windows(
        train_len[train_users], max_seq_length, stride, prefixes=prefixes
    )
    window_user = train_users[window_owner]
    flat, offsets = gather_segments(train_ids, train_start[window_user] + window_start, window_len)
    train = in_memory_dataset(
        {USER: users.take(pa.array(window_user)), "input_ids": list_array(offsets, flat.astype(np.int32))}
    )

    val_rows = np.flatnonzero(has_val & val_known & (val_len > 0))
    test_rows = np.flatnonzero(has_test & test_known & (test_len > 0))
    splits = datasets.DatasetDict(
        train=train,
        validation=_eval_split(users, val_ids, val_len, val_target, val_rows, max_history_length),
        test=_eval_split(users, test_ids, test_len, test_target, test_rows, max_history_length),
    )
    report.rows = {name: splits[name].num_rows for name in SPLITS}
    report.users = {"train": len(train_users), "validation": len(val_rows), "test": len(test_rows)}
    _log(report)
    return LeaveOneOutSplits(splits, tokenizer, report)


def _log(report: SplitReport) -> None:
    logger.info(
        "leave-one-out: %d users, %d items; rows: %s (train windows of %d, stride %d%s%s)",
        report.num_users, report.num_items, report.rows, report.max_seq_length, report.stride,
        ", prefixes" if report.prefixes else "",
        ", validation items trained on" if report.train_on_validation_item else "",
    )
    for split in SPLITS:
        if report.left_out(split):
            logger.warning(
                "leave-one-out: %d user(s) left out of %s (too few interactions: %d, held-out item not in the "
                "vocabulary: %d, no known history item: %d)",
                report.left_out(split), split, report.too_short.get(split, 0), report.unknown_target.get(split, 0),
                report.empty_history.get(split, 0),
            )
    if report.unknown_history_items:
        logger.warning("leave-one-out: %d history interaction(s) with items outside the vocabulary were dropped",
                       report.unknown_history_items)


# ---------------------------------------------------------------------------- persistence
def save_processed(processed: LeaveOneOutSplits, save_directory: str | os.PathLike) -> Path:
    """Writes the splits (``save_to_disk``), ``item_vocab.json`` and the report.

    The folder is assembled beside the target and renamed into place, so an
    interrupted save leaves the previous version (or nothing), never half a folder.
    Only an empty folder or an earlier ``save_processed`` folder is replaced, and
    only by splits whose report matches the tokenizer (``load_processed`` would
    refuse them: a tokenizer grown by ``extend_vocabulary`` after the split).
    """
    splits, tokenizer, report = processed
    if report.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"the splits were encoded with a vocabulary of {report.vocab_size} entries but the tokenizer now has "
            f"{tokenizer.vocab_size} (grown after the split?); save the tokenizer on its own or split again"
        )
    target = Path(save_directory)
    if target.exists():
        if not target.is_dir() or (any(target.iterdir()) and not (target / REPORT_FILE_NAME).exists()):
            raise FileExistsError(f"{target}: exists and is not a folder written by save_processed; not replacing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        # an empty split saved with datasets' default of 0 shards does not load again
        splits.save_to_disk(str(staging), num_shards={name: 1 for name in splits if splits[name].num_rows == 0})
        tokenizer.save_pretrained(staging)
        (staging / REPORT_FILE_NAME).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_processed(save_directory: str | os.PathLike) -> LeaveOneOutSplits:
    """Reads a folder written by ``save_processed`` (the splits are memory-mapped)."""
    path = Path(save_directory)
    for name in ("dataset_dict.json", VOCAB_FILE_NAME, REPORT_FILE_NAME):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: not a folder written by save_processed (no {name})")
    splits = datasets.DatasetDict.load_from_disk(str(path))
    tokenizer = ItemTokenizer.from_file(path / VOCAB_FILE_NAME)
    try:
        report = SplitReport.from_dict(json.loads((path / REPORT_FILE_NAME).read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{path / REPORT_FILE_NAME}: not a valid split report: {err}") from None
    if report.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"{path}: the splits were encoded with a vocabulary of {report.vocab_size} entries but "
            f"{VOCAB_FILE_NAME} has {tokenizer.vocab_size}"
        )
    return LeaveOneOutSplits(splits, tokenizer, report)
