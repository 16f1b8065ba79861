"""What a log holds, before any training: the data report.

Counts, history lengths, how often people come back to an item they already
had, what the filters removed and why, the split sizes, and warnings about data
that looks wrong, each naming the fix. Everything is computed on whole columns
(pyarrow / numpy); a training run adds its plan (steps, estimated time) and
writes the report beside the model (``data_report.json``, ``data_report.md``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .readers import ITEM, TIME, USER
from .sequences import FilterStep, _as_table

REPORT_JSON = "data_report.json"
REPORT_TEXT = "data_report.md"
HISTORY_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
# One user holding this share of the log (or more) is a warning.
DOMINANT_USER_SHARE = 0.5
# This share of users (or more) with a single interaction is a warning.
SINGLE_INTERACTION_SHARE = 0.5
# Id columns shorter than this are not suspected of being row numbers.
MIN_ROWS_FOR_ID_CHECK = 100


def repeat_share(item_lists: pa.Array | pa.ChunkedArray) -> float:
    """The share of interactions whose item the same user had before: one list
    of item ids (any id type) per user, each interaction once. 0 where nobody
    consumes an item twice (ratings), high where people return to the same items."""
    if isinstance(item_lists, pa.ChunkedArray):
        item_lists = item_lists.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(item_lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return 0.0
    codes = pc.dictionary_encode(pc.list_flatten(item_lists)).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    pairs = np.sort(owner * (int(codes.max()) + 1) + codes)  # a sort: numpy's hashed unique is ~6x slower here
    return int(np.count_nonzero(pairs[1:] == pairs[:-1])) / total


def count_log(table: pa.Table) -> dict[str, int]:
    """Interactions, distinct users and distinct items of an interaction table."""
    return {
        "interactions": table.num_rows,
        "users": int(pc.count_distinct(table[USER]).as_py()),
        "items": int(pc.count_distinct(table[ITEM]).as_py()),
    }


def rating_filter_step(before: pa.Table, after: pa.Table, rating_threshold: float) -> FilterStep:
    """What ``filter_by_rating`` removed from ``before``, as a filter step of the report."""
    was, kept = count_log(before), count_log(after)
    return FilterStep(
        "rating threshold", f"rated below {rating_threshold:g} (rating_threshold)",
        *(was[key] - kept[key] for key in ("interactions", "users", "items")),
    )  # fmt: skip


@dataclass
class DataReport:
    """A log described for the person about to train on it.

    ``interactions`` / ``users`` / ``items`` / ``history_length`` /
    ``repeat_share`` describe the log after the filters (what the model learns
    from); ``read`` counts it as read; ``filters`` says what each filter
    removed and why; ``split`` names the split (its report's ``describe()``),
    ``splits`` holds each part's ``rows`` and ``users``; ``plan`` is filled by a
    training run (steps, estimated seconds)."""

    source: str
    read: dict[str, int]
    interactions: int
    users: int
    items: int
    history_length: dict[str, float]
    repeat_share: float
    filters: list[FilterStep] = field(default_factory=list)
    split: str = ""
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        """The report as Markdown: what ``bert4rec train`` prints before training."""
        lengths = ", ".join(f"{name} {value:g}" for name, value in self.history_length.items())
        lines = [
            f"# Data report: {self.source}",
            "",
            f"- as read: {self.read['interactions']:,} interactions, {self.read['users']:,} users, "
            f"{self.read['items']:,} items",
            f"- after the filters: {self.interactions:,} interactions, {self.users:,} users, {self.items:,} items",
            f"- history length per user: {lengths}",
            f"- repeat consumption: {self.repeat_share:.1%} of the interactions repeat an item the user already had",
        ]
        for step in self.filters:
            lines.append(
                f"- filter {step.name}: removed {step.interactions:,} interactions, {step.users:,} users, "
                f"{step.items:,} items ({step.reason})"
            )
        if not self.filters:
            lines.append("- filters: none (rating_threshold, dedup, min_user_interactions, min_item_interactions off)")
        if self.split:
            lines.append(f"- split: {self.split}")
        for name, sizes in self.splits.items():
            lines.append(f"- split {name}: " + ", ".join(f"{value:,} {key}" for key, value in sizes.items()))
        if self.plan:
            lines.append(f"- plan: {self.plan['summary']}")
        if self.plan.get("schedule"):
            derived = ", ".join(f"{key} {value}" for key, value in self.plan["schedule"].items())
            lines.append(f"- schedule: auto, derived from this log (set a key, or schedule: fixed, to choose): {derived}")
        lines += [f"- WARNING: {warning}" for warning in self.warnings]
        return "\n".join(lines) + "\n"

    def write(self, folder: str | os.PathLike) -> Path:
        """Writes ``data_report.json`` and ``data_report.md`` into ``folder`` (created if missing)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT_JSON).write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        (folder / REPORT_TEXT).write_text(self.to_text(), encoding="utf-8")
        return folder / REPORT_JSON


def describe_log(
    read: pa.Table,
    sequences: datasets.Dataset | pa.Table,
    filters: list[FilterStep] = (),
    split_report: Any = None,
    source: str = "the log",
) -> DataReport:
    """The data report of a log: ``read`` is the table as read (before any
    filter), ``sequences`` the ``build_sequences`` output the model learns
    from, ``filters`` what each filter removed (``build_sequences(...,
    return_report=True)`` and the rating threshold), ``split_report`` any
    split's report with ``rows`` and ``users`` per part (and ``describe()``)."""
    table = _as_table(sequences)
    lengths = pc.list_value_length(table["item_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)
    if not len(lengths):
        raise ValueError("the sequences hold no user: nothing to describe")
    quantiles = np.quantile(lengths, HISTORY_QUANTILES)
    history_length = {
        "min": float(lengths.min()),
        **{f"p{round(q * 100)}": round(float(value), 1) for q, value in zip(HISTORY_QUANTILES, quantiles, strict=True)},
        "max": float(lengths.max()),
        "mean": round(float(lengths.mean()), 2),
    }
    splits = {}
    if split_report is not None:
        rows, users = getattr(split_report, "rows", {}) or {}, getattr(split_report, "users", {}) or {}
        splits = {name: {"rows": rows[name], **({"users": users[name]} if name in users else {})} for name in rows}
    report = DataReport(
        source=source,
        read=count_log(read),
        interactions=int(lengths.sum()),
        users=len(lengths),
        items=int(pc.count_distinct(pc.list_flatten(table["item_ids"])).as_py()),
        history_length=history_length,
        repeat_share=repeat_share(table["item_ids"]),
        filters=list(filters),
        split=split_report.describe() if hasattr(split_report, "describe") else "",
        splits=splits,
    )
    report.warnings = suspicious(read, lengths)
    return report


def suspicious(read: pa.Table, lengths: np.ndarray) -> list[str]:
    """Warnings about a log that looks wrong, each naming the fix: ``read`` is
    the table as read, ``lengths`` the users' history lengths after the filters."""
    warnings = []
    rows = read.num_rows
    times = read[TIME]
    if rows > 1 and pc.min_max(times)["min"].as_py() == pc.min_max(times)["max"].as_py():
        warnings.append(
            f"all {rows:,} timestamps are equal ({pc.min_max(times)['min'].as_py()!r}): each history keeps the "
            "file's order, which is time order only if the file is sorted by time; name the time column "
            "(--set time_column=NAME) or sort the file by time"
        )
    counts = pc.value_counts(read[USER])
    largest = int(np.argmax(counts.field("counts").to_numpy())) if rows else 0
    top = int(counts.field("counts")[largest].as_py()) if rows else 0
    if rows and top >= DOMINANT_USER_SHARE * rows and len(counts) > 1:
        user = counts.field("values")[largest].as_py()
        warnings.append(
            f"user {user!r} has {top:,} of the {rows:,} interactions ({top / rows:.0%}): a bot, a test account or "
            "a shared id would dominate training; remove that user from the log (or check that user_column "
            "names the user)"
        )
    if np.mean(lengths == 1) >= SINGLE_INTERACTION_SHARE:
        warnings.append(
            f"{np.mean(lengths == 1):.0%} of the users have a single interaction: leave-one-out needs 3 (one each "
            "to train, validate and test), so they teach the model nothing; check that user_column names a "
            "person rather than a session or an event, or drop them with --set min_user_interactions=3"
        )
    for column, key in ((USER, "user_column"), (ITEM, "item_column")):
        if looks_like_row_numbers(read[column]):
            warnings.append(
                f"the {column} column looks like row numbers (every one of the {rows:,} rows has its own id, "
                f"consecutive integers): it is probably an index column; name the real column with --set {key}=NAME"
            )
    return warnings


def looks_like_row_numbers(column: pa.ChunkedArray) -> bool:
    """Integer ids, one per row, consecutive: what an index column holds."""
    rows = len(column)
    if rows < MIN_ROWS_FOR_ID_CHECK or not pa.types.is_integer(column.type):
        return False
    extremes = pc.min_max(column)
    span = extremes["max"].as_py() - extremes["min"].as_py() + 1
    return span == rows and pc.count_distinct(column).as_py() == rows


__all__ = [
    "REPORT_JSON",
    "REPORT_TEXT",
    "DataReport",
    "count_log",
    "describe_log",
    "looks_like_row_numbers",
    "rating_filter_step",
    "repeat_share",
    "suspicious",
]
