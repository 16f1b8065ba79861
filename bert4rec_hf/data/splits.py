"""Leave-one-out and global temporal splits of user sequences, encoded with an ``ItemTokenizer``.

Leave-one-out (``leave_one_out``), for a user with items ``x1 .. xn`` (time order):

* ``train``: ``x1 .. x(n-2)`` (``.. x(n-1)`` with ``train_on_validation_item``),
  cut into windows of at most ``max_seq_length`` items; the collator masks them
  (Cloze task).
* ``next_item`` (with ``next_item_rows``): the same training items as one window
  ending at every one of them (stride 1, short prefixes too), for a phase of
  training that masks each window's last item alone (``Bert4RecTrainer``'s
  ``next_item_share``).
* ``validation``: history ``x1 .. x(n-2)``, label ``x(n-1)``.
* ``test``: history ``x1 .. x(n-1)``, label ``xn``.

A user's last item can be older than other users' training items, so
leave-one-out lets the model learn from the future of the moment it is tested
at. The global temporal split (``temporal_split``) cuts the whole log at two
times instead, ``validation cut-off <= test cut-off``:

* ``train``: every interaction before the validation cut-off (before the test
  cut-off with ``train_on_validation_item``); no window reaches past it.
* ``validation``: the first interaction of each user in [validation cut-off,
  test cut-off), history everything before it (or every interaction in that
  window, each with the history before it: ``targets="all"``).
* ``test``: the same after the test cut-off, history everything before it.

Both build the splits in one place (``_split``): an evaluation row's history is
every known interaction of its user before its target. Everything is computed
on the flat item column with numpy offset arithmetic: one ``encode_array`` call
encodes all interactions at once, and the windows are index arithmetic, so the
cost does not grow with a Python loop over users or windows.
"""

from __future__ import annotations

import datetime
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
from .readers import USER, epoch_seconds, parse_time
from .sequences import _as_table, in_memory_dataset, list_array

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_KINDS = ("leave_one_out", "temporal")
TEMPORAL_TARGETS = ("next", "all")
REPORT_FILE_NAME = "split_report.json"
MIN_INTERACTIONS = 3  # one to train on, one to validate, one to test


@dataclass
class SplitReport:
    """What a split produced and whom it left out of each split, and why.

    ``too_short``: users with too few interactions for leave-one-out (fewer than
    3 for train and validation, fewer than 2 for test). ``unknown_target``: rows
    whose held-out item is not in the vocabulary (with a vocabulary fitted on the
    training part: an item nobody interacted with before). ``empty_history``:
    rows with no known history item (in a temporal split: users first seen after
    the cut-off). ``untrained_target``: rows kept whose target no training
    window holds (a vocabulary fitted on all items ranks them with embeddings
    no gradient reached). ``unknown_history_items``: interactions dropped from
    histories because their item is not in the vocabulary. ``split``,
    ``cutoffs`` (seconds, the log's time unit) and ``targets`` say which split
    was made.
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
    untrained_target: dict[str, int] = field(default_factory=dict)
    unknown_history_items: int = 0
    tokenizer_fitted: bool = True
    split: str = "leave_one_out"
    cutoffs: dict[str, float] = field(default_factory=dict)
    targets: str = "next"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitReport:
        return cls(**data)

    def left_out(self, split: str) -> int:
        return self.too_short.get(split, 0) + self.unknown_target.get(split, 0) + self.empty_history.get(split, 0)

    def describe(self) -> str:
        """The split in words, for reports and model cards."""
        trained = ", validation items trained on" if self.train_on_validation_item else ""
        if self.split == "leave_one_out":
            return f"leave-one-out (validation: each user's second-to-last item, test: the last{trained})"
        which = "every interaction" if self.targets == "all" else "the first interaction of each user"
        return (
            f"global temporal split (training before {format_time(self.cutoffs['validation'])}; validation: {which} "
            f"from then until {format_time(self.cutoffs['test'])}; test: {which} after it{trained})"
        )


class DataSplits(NamedTuple):
    """A split's result: unpack it as ``splits, tokenizer, report = ...``."""

    splits: datasets.DatasetDict
    tokenizer: ItemTokenizer
    report: SplitReport


LeaveOneOutSplits = DataSplits  # the name before temporal splits existed


def training_histories(processed: DataSplits) -> pa.ChunkedArray:
    """Each user's training interactions, each once. Training windows overlap (with
    stride 1 an interaction is in up to ``max_seq_length`` of them), so statistics
    such as item popularity are counted here, not over the windows. A temporal
    split keeps them as its ``history`` split; leave-one-out's are the validation
    rows' histories (the test rows' when training ran through the validation item)."""
    if "history" in processed.splits:
        return processed.splits["history"].with_format("arrow")["input_ids"]
    split = "test" if processed.report.train_on_validation_item else "validation"
    if processed.report.max_history_length is not None:
        raise ValueError(
            f"the {split} rows keep only the last {processed.report.max_history_length} items "
            "(max_history_length): they do not hold each user's training history"
        )
    return processed.splits[split].with_format("arrow")["input_ids"]


def format_time(seconds: float) -> str:
    """A cut-off for people: an ISO date when it looks like Unix time, the number otherwise."""
    if 1e8 <= seconds <= 1e10:
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{seconds:g}"


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


class _Flat(NamedTuple):
    """The sequences as flat arrays: user ``owner[i]``'s interaction ``i`` at ``position[i]``."""

    users: pa.Array
    values: pa.Array
    lengths: np.ndarray
    starts: np.ndarray
    owner: np.ndarray
    position: np.ndarray


def _flatten(sequences: datasets.Dataset | pa.Table, extra: tuple[str, ...] = ()) -> tuple[_Flat, pa.Table]:
    table = _as_table(sequences)
    missing = [c for c in (USER, "item_ids", *extra) if c not in table.column_names]
    if missing:
        raise ValueError(f"the sequences lack the column(s) {missing}; they have {table.column_names}")
    item_lists = table["item_ids"].combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(item_lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(len(lengths)), lengths)
    flat = _Flat(
        users=table[USER].combine_chunks(), values=pc.list_flatten(item_lists), lengths=lengths, starts=starts,
        owner=owner, position=np.arange(len(owner)) - starts[owner],
    )
    return flat, table


def _split(
    flat: _Flat,
    train_part: np.ndarray,
    targets: dict[str, np.ndarray],
    tokenizer: ItemTokenizer | None,
    fit_on: str,
    report: SplitReport,
    extra_splits: tuple[str, ...] = (),
) -> DataSplits:
    """Encodes the items and builds the splits from where each part lies in the flat arrays.

    ``train_part`` marks the interactions training windows are cut from;
    ``targets[split]`` holds the flat index of each evaluation row's target, whose
    history is every (known) earlier interaction of the same user. ``extra_splits``
    may name ``"history"``: each user's training part once, for statistics, and
    ``"next_item"``: the training part as next-item rows (see the module docstring).
    """
    if fit_on not in ("train", "all"):
        raise ValueError(f"fit_on must be 'train' or 'all', got {fit_on!r}")
    fitted = tokenizer is None
    if fitted:
        tokenizer = ItemTokenizer.fit(flat.values.filter(pa.array(train_part)) if fit_on == "train" else flat.values)
    ids = tokenizer.encode_array(flat.values, unknown="mask")
    known = ids != MASK_TOKEN_ID
    num_users = len(flat.lengths)
    report.num_items, report.vocab_size, report.tokenizer_fitted = tokenizer.num_items, tokenizer.vocab_size, fitted

    # the interactions some training window or evaluation history reads
    history_end = np.bincount(flat.owner[train_part], minlength=num_users)  # the training part is a prefix
    for positions in targets.values():
        np.maximum.at(history_end, flat.owner[positions], flat.position[positions])
    report.unknown_history_items = int((~known & (flat.position < history_end[flat.owner])).sum())

    keep = train_part & known
    train_ids, train_len = ids[keep], np.bincount(flat.owner[keep], minlength=num_users)
    train_users = np.flatnonzero(train_len > 0)
    if len(train_users) == 0:
        raise ValueError("no training rows: none of the training items is in the tokenizer's vocabulary")
    has_train_part = np.bincount(flat.owner[train_part], minlength=num_users) > 0
    report.empty_history = {"train": int((has_train_part & (train_len == 0)).sum())}
    splits = {"train": _windows(flat.users, train_ids, train_len, train_users, report.max_seq_length, report.stride, report.prefixes)}
    if "next_item" in extra_splits:
        splits["next_item"] = _windows(flat.users, train_ids, train_len, train_users, report.max_seq_length, 1, True)

    known_ids = ids[known]
    known_before = np.cumsum(known) - known  # known interactions before each flat index
    trained = np.zeros(tokenizer.vocab_size, dtype=bool)
    trained[train_ids] = True
    report.users = {"train": len(train_users)}
    for split, positions in targets.items():
        row_owner = flat.owner[positions]
        history_start = known_before[flat.starts[row_owner]]
        history_len = known_before[positions] - history_start
        target_known = known[positions]
        report.unknown_target[split] = int((~target_known).sum())
        report.empty_history[split] = int((target_known & (history_len == 0)).sum())
        rows = target_known & (history_len > 0)
        take = history_len[rows]
        if report.max_history_length is not None:
            take = np.minimum(take, report.max_history_length)
        history, offsets = gather_segments(known_ids, history_start[rows] + history_len[rows] - take, take)
        splits[split] = in_memory_dataset(
            {
                USER: flat.users.take(pa.array(row_owner[rows])),
                "input_ids": list_array(offsets, history.astype(np.int32)),
                "labels": pa.array(ids[positions[rows]].astype(np.int64)),
            }
        )
        report.users[split] = len(np.unique(row_owner[rows]))
        report.untrained_target[split] = int((~trained[ids[positions[rows]]]).sum())
    if "history" in extra_splits:
        splits["history"] = in_memory_dataset(
            {USER: flat.users.take(pa.array(train_users)), "input_ids": list_array(
                np.r_[0, np.cumsum(train_len[train_users])], train_ids.astype(np.int32))}
        )
    result = datasets.DatasetDict(splits)
    report.rows = {name: result[name].num_rows for name in (*SPLITS, "next_item") if name in result}
    _log(report)
    return DataSplits(result, tokenizer, report)


def _windows(
    users: pa.Array, train_ids: np.ndarray, train_len: np.ndarray, train_users: np.ndarray,
    max_length: int, stride: int, prefixes: bool,
) -> datasets.Dataset:
    """Training rows: the ``sliding_windows`` of each training user's encoded items."""
    train_start = np.cumsum(train_len) - train_len
    window_owner, window_start, window_len = sliding_windows(train_len[train_users], max_length, stride, prefixes=prefixes)
    window_user = train_users[window_owner]
    windows, offsets = gather_segments(train_ids, train_start[window_user] + window_start, window_len)
    return in_memory_dataset({USER: users.take(pa.array(window_user)), "input_ids": list_array(offsets, windows.astype(np.int32))})


def _window_settings(max_seq_length: int, stride: int | None, max_history_length: int | None) -> tuple[int, int, int | None]:
    max_seq_length = _check_int("max_seq_length", max_seq_length, 2)
    stride = max(1, max_seq_length // 2) if stride is None else _check_int("stride", stride, 1)
    if stride > max_seq_length:
        raise ValueError(f"stride ({stride}) must not exceed max_seq_length ({max_seq_length}): windows would skip items")
    if max_history_length is not None:
        max_history_length = _check_int("max_history_length", max_history_length, 1)
    return max_seq_length, stride, max_history_length


def leave_one_out(
    sequences: datasets.Dataset | pa.Table,
    tokenizer: ItemTokenizer | None = None,
    max_seq_length: int = 50,
    stride: int | None = None,
    max_history_length: int | None = None,
    fit_on: Literal["train", "all"] = "train",
    prefixes: bool = False,
    train_on_validation_item: bool = False,
    next_item_rows: bool = False,
) -> DataSplits:
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
        next_item_rows: also a ``next_item`` split: the training items as one window
            ending at every one of them (stride 1, prefixes), whatever ``stride``
            and ``prefixes`` cut ``train`` into; a phase of training on next-item
            rows reads them (``Bert4RecTrainer(next_item_dataset=...)``).

    Returns:
        ``DataSplits(splits, tokenizer, report)``: ``splits`` is a
        ``DatasetDict``; ``train`` has ``user_id`` and ``input_ids`` (one row per
        window), ``validation``/``test`` have ``user_id``, ``input_ids`` (history)
        and ``labels`` (the encoded target, an int). ``report`` is a ``SplitReport``.
    """
    max_seq_length, stride, max_history_length = _window_settings(max_seq_length, stride, max_history_length)
    flat, _ = _flatten(sequences)
    lengths, num_users = flat.lengths, len(flat.lengths)
    if num_users == 0 or lengths.max() < MIN_INTERACTIONS:
        longest = int(lengths.max()) if num_users else 0
        raise ValueError(
            f"no user has the {MIN_INTERACTIONS} interactions leave-one-out needs (one each to train, validate "
            f"and test); the longest of the {num_users} sequences has {longest}"
        )
    has_val, has_test = lengths >= MIN_INTERACTIONS, lengths >= 2
    train_end = lengths - (1 if train_on_validation_item else 2)
    train_part = has_val[flat.owner] & (flat.position < train_end[flat.owner])
    report = SplitReport(
        num_users=num_users, num_items=0, vocab_size=0, max_seq_length=max_seq_length, stride=stride,
        max_history_length=max_history_length, prefixes=bool(prefixes),
        train_on_validation_item=bool(train_on_validation_item),
        too_short={"train": int((~has_val).sum()), "validation": int((~has_val).sum()), "test": int((~has_test).sum())},
    )
    last = flat.starts + lengths - 1
    targets = {"validation": (last - 1)[has_val], "test": last[has_test]}
    return _split(flat, train_part, targets, tokenizer, fit_on, report, extra_splits=("next_item",) if next_item_rows else ())


def temporal_split(
    sequences: datasets.Dataset | pa.Table,
    tokenizer: ItemTokenizer | None = None,
    max_seq_length: int = 50,
    stride: int | None = None,
    max_history_length: int | None = None,
    fit_on: Literal["train", "all"] = "train",
    prefixes: bool = False,
    train_on_validation_item: bool = False,
    cutoff: float | str | None = None,
    validation_cutoff: float | str | None = None,
    test_share: float = 0.1,
    validation_share: float = 0.1,
    targets: Literal["next", "all"] = "next",
    next_item_rows: bool = False,
) -> DataSplits:
    """A global temporal split of ``build_sequences(..., keep_timestamps=True)`` output.

    The log is cut at two times shared by all users (see the module docstring), so
    no model ever learns from interactions after the moment it is evaluated at.

    Args:
        cutoff: the test cut-off: a time in the log's unit (seconds since the epoch
            for dates) or an ISO 8601 date/time (``"1998-03-01"``, taken as UTC).
            None: the time after which ``test_share`` of all interactions lie.
        validation_cutoff: the validation cut-off, at or before ``cutoff``. None:
            the time after which ``validation_share`` of all interactions lie
            before the test cut-off.
        targets: ``"next"``: one row per user active after a cut-off, its first
            interaction there; ``"all"``: one row per interaction there, each with
            the user's history up to it (later interactions use earlier ones of
            the same window as input, never as training data).
        fit_on: the items a new vocabulary is fitted on. ``"train"`` (default)
            leaves out rows whose target item first appeared after the cut-off
            (``report.unknown_target``); ``"all"`` keeps them, ranked with
            untrained embeddings (``report.untrained_target``).
        Others: as ``leave_one_out`` (``next_item_rows`` too); ``train_on_validation_item`` trains on
            everything before the test cut-off (validation then scores trained items).

    Returns:
        ``DataSplits`` as ``leave_one_out``'s, plus a ``history`` split: each
        user's training interactions once (``training_histories``).
    """
    max_seq_length, stride, max_history_length = _window_settings(max_seq_length, stride, max_history_length)
    if targets not in TEMPORAL_TARGETS:
        raise ValueError(f"targets must be one of {TEMPORAL_TARGETS}, got {targets!r}")
    flat, table = _flatten(sequences, extra=("timestamps",))
    times = epoch_seconds(pc.list_flatten(table["timestamps"].combine_chunks()))
    if len(times) != len(flat.owner):
        raise ValueError("the sequences' timestamps and item_ids differ in length")
    test_at, validation_at = _cutoffs(np.sort(times), cutoff, validation_cutoff, test_share, validation_share)
    train_part = times < (test_at if train_on_validation_item else validation_at)
    in_validation = (times >= validation_at) & (times < test_at)
    in_test = times >= test_at
    if targets == "next":  # each user's first interaction in the window (sequences are in time order)
        in_validation &= flat.position == np.bincount(flat.owner[times < validation_at], minlength=len(flat.lengths))[flat.owner]
        in_test &= flat.position == np.bincount(flat.owner[~in_test], minlength=len(flat.lengths))[flat.owner]
    report = SplitReport(
        num_users=len(flat.lengths), num_items=0, vocab_size=0, max_seq_length=max_seq_length, stride=stride,
        max_history_length=max_history_length, prefixes=bool(prefixes),
        train_on_validation_item=bool(train_on_validation_item), split="temporal",
        cutoffs={"validation": validation_at, "test": test_at}, targets=targets,
    )
    positions = {"validation": np.flatnonzero(in_validation), "test": np.flatnonzero(in_test)}
    extra = ("history", "next_item") if next_item_rows else ("history",)
    return _split(flat, train_part, positions, tokenizer, fit_on, report, extra_splits=extra)


def _share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number between 0 and 1 (a share of the log), got {value!r}")
    return float(value)


def _cutoffs(
    times: np.ndarray, cutoff: float | str | None, validation_cutoff: float | str | None,
    test_share: float, validation_share: float,
) -> tuple[float, float]:
    """(test cut-off, validation cut-off) from explicit times or shares of the sorted ``times``."""
    span = f"the log runs from {format_time(times[0])} to {format_time(times[-1])}"
    if cutoff is None:
        test_at = float(times[int(len(times) * (1 - _share("test_share", test_share)))])
    else:
        test_at = parse_time(cutoff, "cutoff")
    if validation_cutoff is None:
        before_test = int(np.searchsorted(times, test_at))
        step = int(round(len(times) * _share("validation_share", validation_share)))
        validation_at = float(times[max(before_test - max(step, 1), 0)])
    else:
        validation_at = parse_time(validation_cutoff, "validation_cutoff")
    if validation_at > test_at:
        raise ValueError(
            f"the validation cut-off ({format_time(validation_at)}) is after the test cut-off ({format_time(test_at)})"
        )
    for what, count in (
        (f"before the validation cut-off {format_time(validation_at)} (nothing to train on)", (times < validation_at).sum()),
        (f"between the validation cut-off {format_time(validation_at)} and the test cut-off {format_time(test_at)} "
         "(nothing to validate on; many equal timestamps?)", ((times >= validation_at) & (times < test_at)).sum()),
        (f"at or after the test cut-off {format_time(test_at)} (nothing to test on)", (times >= test_at).sum()),
    ):
        if count == 0:
            raise ValueError(f"temporal split: no interaction lies {what}; {span}")
    return test_at, validation_at


def _log(report: SplitReport) -> None:
    logger.info(
        "%s: %d users, %d items; rows: %s (train windows of %d, stride %d%s)",
        report.describe(), report.num_users, report.num_items, report.rows, report.max_seq_length, report.stride,
        ", prefixes" if report.prefixes else "",
    )
    for split in SPLITS:
        if report.left_out(split):
            logger.warning(
                "%s: %d row(s) left out of %s (too few interactions: %d, held-out item not in the vocabulary: %d, "
                "no known history item: %d)",
                report.split, report.left_out(split), split, report.too_short.get(split, 0),
                report.unknown_target.get(split, 0), report.empty_history.get(split, 0),
            )
        if report.untrained_target.get(split):
            logger.warning("%s: %d %s target(s) are items no training window holds", report.split,
                           report.untrained_target[split], split)
    if report.unknown_history_items:
        logger.warning("%s: %d history interaction(s) with items outside the vocabulary were dropped",
                       report.split, report.unknown_history_items)


# ---------------------------------------------------------------------------- persistence
def save_processed(processed: DataSplits, save_directory: str | os.PathLike) -> Path:
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


def load_processed(save_directory: str | os.PathLike) -> DataSplits:
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
    return DataSplits(splits, tokenizer, report)
