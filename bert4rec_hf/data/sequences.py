"""Interaction table -> one time-ordered item sequence per user.

``datasets`` has no group-by, so the grouping is a sort plus list offsets: one
``pc.sort_indices`` over (user, timestamp, original row) and numpy arithmetic on
the sorted codes. Nothing runs per row or per user in Python.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import InMemoryTable

from .readers import ITEM, ROW_NUMBER_TIMES, TIME, USER

logger = logging.getLogger(__name__)

Dedup = Literal["consecutive", "all"]
_INT32_MAX = np.iinfo(np.int32).max


@dataclass
class FilterStep:
    """What one filter of the log removed, and why (the data report lists them)."""

    name: str
    reason: str
    interactions: int
    users: int
    items: int


def list_array(offsets: np.ndarray, values: pa.Array | np.ndarray) -> pa.Array:
    """A list column from offsets; 64-bit offsets only when the values need them."""
    values = values if isinstance(values, pa.Array) else pa.array(values)
    if offsets[-1] > _INT32_MAX:
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def in_memory_dataset(columns: dict[str, pa.Array]) -> datasets.Dataset:
    """An Arrow-backed ``datasets.Dataset`` whose fingerprint is a hash of the
    column buffers. ``datasets`` would otherwise pickle the whole table with
    dill to fingerprint it: slow on large logs, and on Python 3.12 with
    pyarrow 26 it fails (``Can't pickle <class 'MonthDayNano'>``)."""
    table = pa.table(columns)
    digest = hashlib.blake2b(str(table.schema).encode(), digest_size=8)
    for column in table.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(memoryview(buffer))
    return datasets.Dataset(InMemoryTable(table), fingerprint=digest.hexdigest())


def _as_table(table: pa.Table | datasets.Dataset) -> pa.Table:
    if isinstance(table, datasets.Dataset):
        return table.with_format("arrow")[:]
    if not isinstance(table, pa.Table):
        raise TypeError(f"expected a pyarrow Table or a datasets.Dataset, got {type(table).__name__}")
    return table


def _codes(values: pa.Array) -> tuple[np.ndarray, int]:
    encoded = pc.dictionary_encode(values)
    return encoded.indices.to_numpy(zero_copy_only=False), len(encoded.dictionary)


def _check_timestamps(column: pa.ChunkedArray) -> None:
    """Time order needs numbers or dates/times: text would sort ``"10"`` before
    ``"9"``, and a NaN has no place in time."""
    kind = column.type
    if not any(check(kind) for check in (pa.types.is_integer, pa.types.is_floating, pa.types.is_timestamp, pa.types.is_date)):
        raise ValueError(
            f"the {TIME!r} column must hold numbers or dates/times, got {kind}; "
            "convert it first (read_interactions does)"
        )
    if pa.types.is_floating(kind):
        nan = pc.is_nan(column).to_numpy(zero_copy_only=False)
        if nan.any():
            raise ValueError(
                f"the {TIME!r} column has {int(nan.sum())} NaN value(s), the first at row {int(np.flatnonzero(nan)[0])}"
            )


def _k_core(user_codes: np.ndarray, item_codes: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Mask of the interactions that survive iterative k-core filtering: dropping
    rare items can make users rare and the other way round, so repeat until stable."""
    keep = np.ones(len(user_codes), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    num_users, num_items = int(user_codes.max()) + 1, int(item_codes.max()) + 1
    while True:
        users, items = user_codes[keep], item_codes[keep]
        ok_user = np.bincount(users, minlength=num_users) >= min_user
        ok_item = np.bincount(items, minlength=num_items) >= min_item
        survive = ok_user[users] & ok_item[items]
        if survive.all():
            return keep
        keep[np.flatnonzero(keep)[~survive]] = False


def build_sequences(
    table: pa.Table | datasets.Dataset,
    dedup: Dedup | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    keep_timestamps: bool = False,
    return_report: bool = False,
) -> datasets.Dataset | tuple[datasets.Dataset, list[FilterStep]]:
    """Groups an interaction table (``read_interactions``) into one row per user:
    ``user_id``, ``item_ids`` (raw ids in time order) and, with
    ``keep_timestamps``, ``timestamps``.

    Interactions are sorted by (user, timestamp); ties keep file order. Users are
    sorted by id, so the result does not depend on the order of the log.
    ``timestamp`` must be numeric or a date/time type without NaN: text is refused
    rather than sorted as text (``read_interactions`` converts it), as are nulls.

    Args:
        dedup: ``"consecutive"`` drops an item repeated right after itself
            (double clicks), ``"all"`` keeps only a user's first interaction with
            an item, ``None`` keeps every interaction.
        min_user_interactions / min_item_interactions: iterative k-core filter
            (RecBole's ``user_inter_num_interval`` / ``item_inter_num_interval``
            lower bounds), applied after ``dedup`` and repeated until no user or
            item falls below its bound.
        return_report: also return what each filter removed (``FilterStep``
            for dedup and the k-core filter, when they are on).
    """
    if dedup not in (None, "consecutive", "all"):
        raise ValueError(f"dedup must be None, 'consecutive' or 'all', got {dedup!r}")
    for name, value in (("min_user_interactions", min_user_interactions), ("min_item_interactions", min_item_interactions)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    table = _as_table(table)
    missing = [c for c in (USER, ITEM, TIME) if c not in table.column_names]
    if missing:
        raise ValueError(f"the interaction table lacks the column(s) {missing}; it has {table.column_names}")
    if table.num_rows == 0:
        raise ValueError("the interaction table is empty")
    for name in (USER, ITEM, TIME):
        if table[name].null_count:
            raise ValueError(f"the interaction table has {table[name].null_count} null value(s) in {name!r}")
    _check_timestamps(table[TIME])
    if keep_timestamps and (table.schema.metadata or {}).get(b"timestamp") == ROW_NUMBER_TIMES[b"timestamp"]:
        raise ValueError(
            "the log has no timestamps (it was read from a file without a time column, so the row number stands in "
            "for the time): a split along time needs real times; give the log a time column (time_column) or split "
            "it leave-one-out"
        )

    total = table.num_rows
    keys = pa.table(
        {"u": table[USER], "t": table[TIME], "r": pa.array(np.arange(total, dtype=np.int64))}
    )
    order = pc.sort_indices(keys, sort_keys=[("u", "ascending"), ("t", "ascending"), ("r", "ascending")])
    users = table[USER].take(order).combine_chunks()
    items = table[ITEM].take(order).combine_chunks()
    times = table[TIME].take(order).combine_chunks() if keep_timestamps else None

    new_user = np.ones(total, dtype=bool)
    new_user[1:] = pc.not_equal(users.slice(1), users.slice(0, total - 1)).to_numpy(zero_copy_only=False)
    user_codes = np.cumsum(new_user) - 1
    item_codes, num_items = _codes(items)

    keep = np.ones(total, dtype=bool)
    if dedup == "consecutive":
        keep[1:] = new_user[1:] | (item_codes[1:] != item_codes[:-1])
    elif dedup == "all":
        pair = user_codes.astype(np.int64) * num_items + item_codes
        _, first = np.unique(pair, return_index=True)  # stable: the earliest interaction
        keep[:] = False
        keep[first] = True
    after_dedup = int(keep.sum())

    kept = np.flatnonzero(keep)
    core = _k_core(user_codes[kept], item_codes[kept], min_user_interactions, min_item_interactions)
    kept = kept[core]
    if len(kept) == 0:
        raise ValueError(
            f"no interactions left after filtering (dedup={dedup!r}, min_user_interactions={min_user_interactions}, "
            f"min_item_interactions={min_item_interactions}) of {total}"
        )

    codes = user_codes[kept]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    steps = []
    if dedup is not None:  # a user's or an item's first interaction always stays: only interactions go
        why = "an item repeated right after itself" if dedup == "consecutive" else "a user-item pair seen before"
        steps.append(FilterStep("dedup", f"{why} (dedup={dedup})", total - after_dedup, 0, 0))
    if min_user_interactions > 1 or min_item_interactions > 1:
        users_before = int(user_codes[-1]) + 1
        items_before = int(np.count_nonzero(np.bincount(item_codes[keep], minlength=num_items)))
        items_after = int(np.count_nonzero(np.bincount(item_codes[kept], minlength=num_items)))
        steps.append(FilterStep(
            "k-core",
            f"users with fewer than {min_user_interactions} or items with fewer than {min_item_interactions} "
            "interactions, repeated until none is left (min_user_interactions, min_item_interactions)",
            after_dedup - len(kept), users_before - len(starts), items_before - items_after,
        ))  # fmt: skip
    offsets = np.r_[starts, len(kept)].astype(np.int64)
    take = pa.array(kept)
    columns = {USER: users.take(pa.array(kept[starts])), "item_ids": list_array(offsets, items.take(take))}
    if keep_timestamps:
        columns["timestamps"] = list_array(offsets, times.take(take))
    logger.info(
        "built %d user sequences from %d interactions (%d removed as duplicates, %d by the k-core filter)",
        len(starts), len(kept), total - after_dedup, after_dedup - len(kept),
    )
    sequences = in_memory_dataset(columns)
    return (sequences, steps) if return_report else sequences
