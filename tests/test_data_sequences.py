
import datasets
import numpy as np
import pyarrow as pa
import pytest

from bert4rec_hf.data import build_sequences, read_interactions

from .helpers import ML100K, shared_data


def log(rows):
    users, items, times = zip(*rows, strict=True)
    return pa.table({"user_id": list(users), "item_id": list(items), "timestamp": list(times)})


def as_dict(dataset: datasets.Dataset) -> dict:
    return {row["user_id"]: row["item_ids"] for row in dataset}


def test_time_order_ties_keep_file_order_users_sorted():
    table = log([("b", "x", 5), ("a", "p", 2), ("b", "y", 1), ("b", "z", 5), ("a", "q", 2), ("b", "w", 5), ("a", "r", 1)])
    sequences = build_sequences(table, keep_timestamps=True)
    assert sequences.column_names == ["user_id", "item_ids", "timestamps"]
    assert sequences["user_id"] == ["a", "b"]
    assert sequences["item_ids"] == [["r", "p", "q"], ["y", "x", "z", "w"]]
    assert sequences["timestamps"] == [[1, 2, 2], [1, 5, 5, 5]]


def test_integer_users_sort_numerically():
    sequences = build_sequences(log([(10, 1, 0), (9, 1, 0), (100, 2, 0)]))
    assert sequences["user_id"] == [9, 10, 100]
    assert sequences.features["item_ids"].feature.dtype == "int64"


def test_dedup_consecutive_and_all():
    table = log([(1, "a", 1), (1, "a", 2), (1, "b", 3), (1, "a", 4), (1, "a", 5), (2, "a", 1)])
    assert as_dict(build_sequences(table)) == {1: ["a", "a", "b", "a", "a"], 2: ["a"]}
    assert as_dict(build_sequences(table, dedup="consecutive")) == {1: ["a", "b", "a"], 2: ["a"]}
    assert as_dict(build_sequences(table, dedup="all")) == {1: ["a", "b"], 2: ["a"]}
    # "all" keeps the earliest interaction, not the first line of the file
    late_first = log([(1, "a", 9), (1, "b", 5), (1, "a", 1)])
    assert build_sequences(late_first, dedup="all", keep_timestamps=True)[0]["timestamps"] == [1, 5]


def test_k_core_is_iterated_until_stable():
    # item "rare" has one interaction; dropping it leaves user 3 with one item, which
    # then makes item "c" fall to one interaction: a single pass would keep user 3 and "c".
    rows = [(1, "a", 1), (1, "b", 2), (2, "a", 1), (2, "b", 2), (3, "c", 1), (3, "rare", 2), (4, "c", 1), (4, "a", 2),
            (4, "b", 3)]
    sequences = build_sequences(log(rows), min_user_interactions=2, min_item_interactions=2)
    assert as_dict(sequences) == {1: ["a", "b"], 2: ["a", "b"], 4: ["a", "b"]}
    items = np.concatenate([np.array(s) for s in sequences["item_ids"]])
    assert min(np.unique(items, return_counts=True)[1]) >= 2 and min(map(len, sequences["item_ids"])) >= 2


def test_real_beauty_counts():
    sequences = build_sequences(read_interactions(shared_data("beauty/beauty.txt")))
    items = pa.chunked_array([sequences.data.table["item_ids"].combine_chunks().flatten()])
    assert sequences.num_rows == 40_226 and len(items.unique()) == 54_542 and len(items) == 353_962
    assert sequences[0]["item_ids"][:3] == [1, 2, 3]  # file order kept without timestamps


def test_real_ml100k_k_core_matches_a_reference_loop():
    table = read_interactions(ML100K)
    fast = as_dict(build_sequences(table, min_user_interactions=30, min_item_interactions=30))
    rows = table.to_pylist()
    while True:  # slow reference: recount and filter until nothing changes
        users, items = {}, {}
        for row in rows:
            users[row["user_id"]] = users.get(row["user_id"], 0) + 1
            items[row["item_id"]] = items.get(row["item_id"], 0) + 1
        kept = [r for r in rows if users[r["user_id"]] >= 30 and items[r["item_id"]] >= 30]
        if len(kept) == len(rows):
            break
        rows = kept
    assert sum(map(len, fast.values())) == len(rows) < 100_000
    assert set(fast) == {r["user_id"] for r in rows}


def test_accepts_a_dataset_and_rejects_bad_input():
    table = log([(1, 2, 3)])
    assert build_sequences(datasets.Dataset(table))["item_ids"] == [[2]]
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['timestamp'\]"):
        build_sequences(table.drop_columns(["timestamp"]))
    with pytest.raises(ValueError, match="empty"):
        build_sequences(table.slice(0, 0))
    with pytest.raises(ValueError, match="dedup must be"):
        build_sequences(table, dedup="yes")
    with pytest.raises(ValueError, match="min_user_interactions must be"):
        build_sequences(table, min_user_interactions=-1)
    with pytest.raises(ValueError, match="no interactions left after filtering"):
        build_sequences(table, min_user_interactions=2)
    with pytest.raises(ValueError, match="null value"):
        build_sequences(pa.table({"user_id": [1, None], "item_id": [1, 2], "timestamp": [0, 1]}))


def test_text_timestamps_are_refused_not_sorted_as_text():
    table = pa.table({"user_id": [1, 1, 1], "item_id": [7, 8, 9], "timestamp": ["9", "10", "100"]})
    with pytest.raises(ValueError, match=r"'timestamp' column must hold numbers or dates/times.*got string"):
        build_sequences(table)


def test_nan_timestamps_are_refused():
    table = pa.table({"user_id": [1, 1, 1, 2], "item_id": [7, 8, 9, 7], "timestamp": [3.0, float("nan"), 1.0, np.nan]})
    with pytest.raises(ValueError, match=r"'timestamp' column has 2 NaN value\(s\), the first at row 1"):
        build_sequences(table)


def test_datetime_timestamps_sort_in_time():
    times = pa.array([3, 1, 2], pa.timestamp("s"))
    table = pa.table({"user_id": [1, 1, 1], "item_id": [7, 8, 9], "timestamp": times})
    assert build_sequences(table)["item_ids"] == [[8, 9, 7]]


def test_fingerprint_is_a_content_hash():
    """Built without pickling the table (datasets' default, which fails on
    Python 3.12 with pyarrow 26): equal logs, equal fingerprints."""
    rows = [("a", "p", 1), ("a", "q", 2), ("b", "p", 3)]
    first, again = build_sequences(log(rows)), build_sequences(log(rows))
    other = build_sequences(log([*rows[:2], ("b", "q", 3)]))
    assert first._fingerprint == again._fingerprint != other._fingerprint
    assert first.map(lambda row: row)._fingerprint != first._fingerprint  # transforms still chain fingerprints
