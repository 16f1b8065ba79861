"""The global temporal split: one cut-off time for every user, no window past it."""

import datasets
import numpy as np
import pyarrow as pa
import pytest

from bert4rec_hf.data import (
    build_sequences,
    leave_one_out,
    load_processed,
    read_interactions,
    save_processed,
    temporal_split,
    training_histories,
)
from bert4rec_hf.data.splits import format_time

from .helpers import ML100K


def timed(**users) -> datasets.Dataset:
    """Sequences from ``user=[(item, time), ...]`` (time order)."""
    return datasets.Dataset(
        pa.table(
            {
                "user_id": list(users),
                "item_ids": [[item for item, _ in events] for events in users.values()],
                "timestamps": [[float(t) for _, t in events] for events in users.values()],
            }
        )
    )


SMALL = dict(
    # times 1..9; validation cut-off 6, test cut-off 8
    a=[(10, 1), (11, 2), (12, 3), (13, 6), (14, 7), (15, 8), (16, 9)],
    b=[(11, 4), (12, 5), (10, 8)],  # nothing in the validation window
    c=[(10, 2), (17, 6)],  # 17 first appears after the validation cut-off
    d=[(12, 9)],  # a new user: first seen after the test cut-off
)


def test_small_example_exact_rows():
    splits, tokenizer, report = temporal_split(timed(**SMALL), max_seq_length=3, stride=2, cutoff=8, validation_cutoff=6)
    enc = dict(zip(tokenizer.items, range(2, 2 + len(tokenizer.items)), strict=True))
    assert tokenizer.items == [10, 11, 12]  # fitted on the interactions before the validation cut-off
    # training: everything before the validation cut-off (time 6), windows of 3 stepping back by 2
    assert splits["train"]["user_id"] == ["a", "b", "c"]
    assert splits["train"]["input_ids"] == [[enc[10], enc[11], enc[12]], [enc[11], enc[12]], [enc[10]]]
    # validation: the first interaction in [6, 8): a's 13 and c's 17 are unknown items, so no row survives
    assert splits["validation"].num_rows == 0
    assert report.unknown_target["validation"] == 2
    # test: the first interaction at or after 8, history everything before it (known items only)
    assert splits["test"].to_dict() == {
        "user_id": ["b"],
        "input_ids": [[enc[11], enc[12]]],
        "labels": [enc[10]],
    }
    assert report.unknown_target["test"] == 1  # a's 15
    assert report.empty_history["test"] == 1  # d: no interaction before the cut-off
    assert report.unknown_history_items == 2  # a's 13 and 14 (in a's test history) are dropped
    assert report.split == "temporal" and report.cutoffs == {"validation": 6.0, "test": 8.0}
    assert splits["history"].to_dict() == {
        "user_id": ["a", "b", "c"],
        "input_ids": [[enc[10], enc[11], enc[12]], [enc[11], enc[12]], [enc[10]]],
    }


def test_vocabulary_on_all_items_keeps_rows_with_untrained_targets():
    splits, tokenizer, report = temporal_split(
        timed(**SMALL), max_seq_length=3, cutoff=8, validation_cutoff=6, fit_on="all"
    )
    enc = dict(zip(tokenizer.items, range(2, 2 + len(tokenizer.items)), strict=True))
    assert splits["validation"].to_dict() == {
        "user_id": ["a", "c"],
        "input_ids": [[enc[10], enc[11], enc[12]], [enc[10]]],
        "labels": [enc[13], enc[17]],
    }
    # a's test history runs through its validation-window items 13 and 14: input, never training data
    assert splits["test"]["input_ids"][0] == [enc[i] for i in (10, 11, 12, 13, 14)]
    assert report.untrained_target == {"validation": 2, "test": 1}  # 13, 17; a's 15
    assert report.unknown_target == {"validation": 0, "test": 0}


def test_all_targets_give_one_row_per_interaction_after_the_cut_off():
    splits, tokenizer, report = temporal_split(
        timed(**SMALL), max_seq_length=3, cutoff=8, validation_cutoff=6, fit_on="all", targets="all"
    )
    enc = dict(zip(tokenizer.items, range(2, 2 + len(tokenizer.items)), strict=True))
    test = splits["test"].to_dict()
    # a's 15 and 16, b's 10; d's 12 has no history
    assert test["user_id"] == ["a", "a", "b"]
    assert test["labels"] == [enc[15], enc[16], enc[10]]
    assert test["input_ids"][1] == [enc[i] for i in (10, 11, 12, 13, 14, 15)]
    assert report.rows["test"] == 3 and report.users["test"] == 2
    assert report.targets == "all"


def test_train_on_validation_item_trains_up_to_the_test_cut_off():
    splits, tokenizer, report = temporal_split(
        timed(**SMALL), max_seq_length=10, cutoff=8, validation_cutoff=6, fit_on="all", train_on_validation_item=True
    )
    enc = dict(zip(tokenizer.items, range(2, 2 + len(tokenizer.items)), strict=True))
    assert splits["train"]["input_ids"][0] == [enc[i] for i in (10, 11, 12, 13, 14)]
    assert training_histories(DataSplitsOf(splits, tokenizer, report))[2].as_py() == [enc[10], enc[17]]
    assert "validation items trained on" in report.describe()


def DataSplitsOf(splits, tokenizer, report):  # noqa: N802 - reads as the tuple it builds
    from bert4rec_hf.data import DataSplits

    return DataSplits(splits, tokenizer, report)


@pytest.fixture(scope="module")
def ml100k_timed():
    table = read_interactions(ML100K)
    return table, build_sequences(table, keep_timestamps=True)


def test_ml100k_no_training_window_reaches_past_the_cut_off(ml100k_timed):
    table, sequences = ml100k_timed
    processed = temporal_split(sequences, max_seq_length=50, stride=1, fit_on="all")
    report = processed.report
    times = np.asarray(table["timestamp"], dtype=np.float64)
    # the shares: 10% of the interactions at or after the test cut-off, 10% in the validation window
    assert abs((times >= report.cutoffs["test"]).mean() - 0.1) < 0.01
    assert abs(((times >= report.cutoffs["validation"]) & (times < report.cutoffs["test"])).mean() - 0.1) < 0.01
    # the training histories are exactly each user's interactions before the validation cut-off
    history = processed.splits["history"]
    decoded = dict(zip(history["user_id"], processed.tokenizer.decode(history["input_ids"]), strict=True))
    user_times = dict(zip(sequences["user_id"], zip(sequences["item_ids"], sequences["timestamps"], strict=True), strict=True))
    for user, items in decoded.items():
        raw, stamps = user_times[user]
        assert items == [item for item, t in zip(raw, stamps, strict=True) if t < report.cutoffs["validation"]]
    # so the training windows hold no item of any interaction at or after the validation cut-off
    assert sum(len(ids) for ids in history["input_ids"]) == int((times < report.cutoffs["validation"]).sum())
    # each test row: a user's first interaction at or after the cut-off, history everything before it
    test = processed.splits["test"]
    for user, ids, label in zip(test["user_id"], test["input_ids"], test["labels"], strict=True):
        raw, stamps = user_times[user]
        first = next(i for i, t in enumerate(stamps) if t >= report.cutoffs["test"])
        assert processed.tokenizer.decode([label])[0] == raw[first]
        assert processed.tokenizer.decode(ids) == raw[:first]
    # users first seen after the cut-off are reported, not evaluated
    active_after = {u for u, (_, s) in user_times.items() if s[-1] >= report.cutoffs["test"]}
    new_after = {u for u, (_, s) in user_times.items() if s[0] >= report.cutoffs["test"]}
    assert report.users["test"] == len(active_after - new_after) == test.num_rows
    assert report.empty_history["test"] == len(new_after)


def test_leave_one_out_and_temporal_differ_on_ml100k(ml100k_timed):
    _, sequences = ml100k_timed
    loo = leave_one_out(sequences, max_seq_length=50, fit_on="all")
    temporal = temporal_split(sequences, max_seq_length=50, fit_on="all")
    # leave-one-out tests every user; the temporal split only those active after the cut-off
    assert loo.report.rows["test"] == 943
    assert 0 < temporal.report.rows["test"] < 943
    assert loo.report.describe().startswith("leave-one-out")
    assert temporal.report.describe().startswith("global temporal split (training before 1998-")


def test_cut_off_as_a_date_and_save_round_trip(tmp_path, ml100k_timed):
    _, sequences = ml100k_timed
    processed = temporal_split(sequences, max_seq_length=20, cutoff="1998-03-01", validation_cutoff="1998-02-01")
    assert processed.report.cutoffs == {"validation": 886291200.0, "test": 888710400.0}
    assert format_time(processed.report.cutoffs["test"]) == "1998-03-01T00:00:00Z"
    loaded = load_processed(save_processed(processed, tmp_path / "splits"))
    assert loaded.report == processed.report
    assert list(loaded.splits) == ["train", "validation", "test", "history"]
    assert training_histories(loaded).to_pylist() == training_histories(processed).to_pylist()


def test_a_log_without_timestamps_is_refused(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("1 10\n1 11\n2 10\n2 12\n")
    with pytest.raises(ValueError, match="no timestamps .* row number stands in"):
        build_sequences(read_interactions(log), keep_timestamps=True)
    # without keep_timestamps (leave-one-out) the row order is the time order, as before
    assert build_sequences(read_interactions(log))["item_ids"] == [[10, 11], [10, 12]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(test_share=0), "test_share must be a number between 0 and 1"),
        (dict(validation_share=1.5), "validation_share must be a number between 0 and 1"),
        (dict(cutoff="yesterday"), "cutoff must be a time: .*'yesterday'"),
        (dict(cutoff=5, validation_cutoff=7), r"validation cut-off \(7\) is after the test cut-off \(5\)"),
        (dict(cutoff=100), "no interaction lies at or after the test cut-off 100 .*the log runs from 1 to 9"),
        (dict(cutoff=8, validation_cutoff=1), "no interaction lies before the validation cut-off 1"),
        (dict(cutoff=6, validation_cutoff=6), "no interaction lies between the validation cut-off 6"),
        (dict(targets="last"), "targets must be one of"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        temporal_split(timed(**SMALL), **kwargs)


def test_sequences_without_timestamps_name_the_column():
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['timestamps'\]"):
        temporal_split(datasets.Dataset(pa.table({"user_id": ["a"], "item_ids": [[1, 2, 3]]})))
