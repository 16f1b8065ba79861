"""The data report: counts, repeat consumption, filters, split sizes and each warning, on generated logs."""

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bert4rec_hf import read_interactions
from bert4rec_hf.data import build_sequences, filter_by_rating, leave_one_out
from bert4rec_hf.data.report import describe_log, rating_filter_step, repeat_share

from .helpers import ML100K


def generated_log(users: int = 200, length: int = 8, items: int = 500, seed: int = 0) -> pa.Table:
    """Users of ``length`` random items each, distinct increasing timestamps."""
    rng = np.random.default_rng(seed)
    rows = users * length
    return pa.table({
        "user_id": np.repeat(np.arange(1000, 1000 + users), length),
        "item_id": rng.integers(0, items, rows) * 7 + 3,  # ids that are not row numbers
        "timestamp": np.arange(rows) * 10 + 5,
    })  # fmt: skip


def report_of(table: pa.Table, **filters):
    sequences, steps = build_sequences(table, return_report=True, **filters)
    return describe_log(table, sequences, steps)


def test_repeat_share_counts_items_the_user_had_before():
    lists = pa.array([["a", "b", "a", "a"], ["b", "c"], ["c", "c"]])
    assert repeat_share(lists) == pytest.approx(3 / 8)  # a twice again, c once again
    assert repeat_share(pa.array([[5, 6], [5, 6]])) == 0.0  # another user's item is no repeat


def test_clean_log_has_counts_quantiles_and_no_warning():
    table = generated_log()
    report = report_of(table)
    assert report.warnings == []
    assert (report.interactions, report.users) == (1600, 200)
    assert report.items == len(pc.unique(table["item_id"]))
    assert report.history_length["min"] == report.history_length["p50"] == report.history_length["max"] == 8
    pairs = len(pc.unique(pc.binary_join_element_wise(
        pc.cast(table["user_id"], pa.string()), pc.cast(table["item_id"], pa.string()), "|"
    )))  # fmt: skip
    assert report.repeat_share == pytest.approx(1 - pairs / table.num_rows)


def test_equal_timestamps_warn_and_name_the_time_column():
    table = generated_log().set_column(2, "timestamp", pa.array(np.full(1600, 42)))
    (warning,) = report_of(table).warnings
    assert "timestamps are equal" in warning and "time_column" in warning


def test_one_user_with_half_the_log_warns_and_names_the_user():
    table = generated_log()
    heavy = pa.table({"user_id": np.full(2000, 7), "item_id": np.arange(2000) * 3 + 11, "timestamp": np.arange(2000)})
    (warning,) = report_of(pa.concat_tables([table, heavy])).warnings
    assert "user 7 has 2,000 of the 3,600 interactions" in warning and "remove that user" in warning


def test_most_histories_of_length_one_warn_and_suggest_the_fix():
    table = generated_log(users=300, length=1).set_column(0, "user_id", pa.array(np.arange(300) * 5 + 2))
    warnings = report_of(table).warnings
    assert any("single interaction" in w and "min_user_interactions=3" in w for w in warnings)


def test_ids_that_look_like_row_numbers_warn_for_that_column():
    table = generated_log(users=1, length=300).set_column(1, "item_id", pa.array(np.arange(300) + 1))
    (warning,) = report_of(table).warnings
    assert "item_id column looks like row numbers" in warning and "item_column" in warning


def test_filters_say_what_they_removed_and_why():
    read = read_interactions(ML100K, extra_columns=("rating",))
    rated = filter_by_rating(read, 4)
    sequences, steps = build_sequences(rated, dedup="all", min_user_interactions=5, min_item_interactions=5,
                                       return_report=True)  # fmt: skip
    steps.insert(0, rating_filter_step(read, rated, 4))
    report = describe_log(read, sequences, steps)
    threshold, dedup, core = report.filters
    below = pc.less(read["rating"], 4)
    assert threshold.interactions == pc.sum(below).as_py() == read.num_rows - rated.num_rows
    assert threshold.items == 1682 - len(pc.unique(rated["item_id"]))
    assert (dedup.interactions, dedup.users, dedup.items) == (0, 0, 0)  # no film is rated twice
    assert core.interactions == rated.num_rows - report.interactions
    assert core.users == len(pc.unique(rated["user_id"])) - report.users
    assert report.read == {"interactions": 100_000, "users": 943, "items": 1682}
    assert "rating_threshold" in threshold.reason and "min_user_interactions" in core.reason


def test_split_sizes_are_read_from_any_split_report(tmp_path):
    table = read_interactions(ML100K)
    sequences, steps = build_sequences(table, return_report=True)
    processed = leave_one_out(sequences, max_seq_length=20, fit_on="all")
    report = describe_log(table, sequences, steps, processed.report, source="ml-100k")
    assert report.splits["test"] == {"rows": 943, "users": 943}
    assert report.split.startswith("leave-one-out")
    assert report.splits["train"]["rows"] == processed.splits["train"].num_rows
    other = describe_log(table, sequences, steps, SimpleNamespace(rows={"train": 5, "test": 2}, users={"train": 3}))
    assert other.splits == {"train": {"rows": 5, "users": 3}, "test": {"rows": 2}}
    report.write(tmp_path)
    assert json.loads((tmp_path / "data_report.json").read_text())["splits"]["test"]["users"] == 943
    text = (tmp_path / "data_report.md").read_text()
    assert "100,000 interactions, 943 users, 1,682 items" in text and "split test: 943 rows, 943 users" in text
