import json

import datasets
import numpy as np
import pyarrow as pa
import pytest

from bert4rec_hf import ItemTokenizer
from bert4rec_hf.data import (
    SplitReport,
    build_sequences,
    leave_one_out,
    load_processed,
    read_interactions,
    save_processed,
    sliding_windows,
)

from .helpers import ML100K


def sequences(**users) -> datasets.Dataset:
    return datasets.Dataset(pa.table({"user_id": list(users), "item_ids": list(users.values())}))


@pytest.fixture(scope="module")
def ml100k():
    seqs = build_sequences(read_interactions(ML100K))
    return seqs, leave_one_out(seqs, max_seq_length=20, stride=7)


def test_small_example_exact_rows():
    seqs = sequences(u1=[10, 11, 12, 13, 14, 15, 16], u2=[11, 12, 13])
    splits, tokenizer, report = leave_one_out(seqs, max_seq_length=3, stride=2)
    assert tokenizer.items == [10, 11, 12, 13, 14]  # fitted on the training parts only
    enc = {item: index for index, item in enumerate(tokenizer.items, start=2)}
    assert splits["train"]["user_id"] == ["u1", "u1", "u2"]
    # u1's training part 10..14 (5 items) in windows of 3 ending at the last item, stepping back by 2
    assert splits["train"]["input_ids"] == [[enc[10], enc[11], enc[12]], [enc[12], enc[13], enc[14]], [enc[11]]]
    # u1's held-out items 15 and 16 were never trained on: u1 is left out of validation and test
    assert splits["validation"].to_dict() == {"user_id": ["u2"], "input_ids": [[enc[11]]], "labels": [enc[12]]}
    assert splits["test"].to_dict() == {"user_id": ["u2"], "input_ids": [[enc[11], enc[12]]], "labels": [enc[13]]}
    assert report.unknown_target == {"validation": 1, "test": 1}
    assert report.rows == {"train": 3, "validation": 1, "test": 1}


def test_train_on_validation_item_trains_through_n_minus_1_and_keeps_the_evaluation_rows():
    seqs = sequences(u1=[10, 11, 12, 13, 14, 15, 16], u2=[11, 12, 13])
    held_out, _, _ = leave_one_out(seqs, max_seq_length=3, stride=2, fit_on="all")
    splits, tokenizer, report = leave_one_out(
        seqs, max_seq_length=3, stride=2, fit_on="all", train_on_validation_item=True
    )
    enc = dict(zip([10, 11, 12, 13, 14, 15, 16], tokenizer.encode([10, 11, 12, 13, 14, 15, 16]), strict=True))
    # u1 trains on 10..15 (its validation item 15 included), u2 on 11, 12
    assert splits["train"]["user_id"] == ["u1", "u1", "u1", "u2"]
    assert splits["train"]["input_ids"] == [
        [enc[10], enc[11], enc[12]], [enc[11], enc[12], enc[13]], [enc[13], enc[14], enc[15]], [enc[11], enc[12]],
    ]
    # validation and test rows are those of the held-out protocol
    for split in ("validation", "test"):
        assert splits[split].to_dict() == held_out[split].to_dict()
    assert report.train_on_validation_item and SplitReport.from_dict(report.to_dict()) == report
    # the test item is never trained on
    assert splits["test"]["labels"] == [enc[16], enc[13]]
    assert all(enc[16] not in ids for ids in splits["train"]["input_ids"][:3])


def test_user_left_out_when_target_unknown_and_counted():
    seqs = sequences(u1=[10, 11, 12, 13, 14, 15, 16], u2=[11, 12, 13])
    splits, tokenizer, report = leave_one_out(seqs, max_seq_length=3, stride=2)
    assert splits["validation"]["user_id"] == ["u2"] and splits["test"]["user_id"] == ["u2"]
    assert report.left_out("validation") == 1 and report.left_out("test") == 1
    # fitting on all items keeps everyone
    splits, tokenizer, report = leave_one_out(seqs, max_seq_length=3, stride=2, fit_on="all")
    assert tokenizer.num_items == 7 and splits["test"]["user_id"] == ["u1", "u2"]
    assert splits["test"]["labels"] == tokenizer.encode([16, 13]) and report.left_out("test") == 0


def test_short_users_are_left_out_and_counted():
    seqs = sequences(a=[1], b=[1, 2], c=[1, 2, 3], d=[2, 3, 1, 2])
    splits, tokenizer, report = leave_one_out(seqs, max_seq_length=5, fit_on="all")
    assert splits["train"]["user_id"] == ["c", "d"]
    assert splits["validation"]["user_id"] == ["c", "d"]
    assert splits["test"]["user_id"] == ["b", "c", "d"]  # b: predict 2 from [1]
    assert report.too_short == {"train": 2, "validation": 2, "test": 1}
    assert splits["test"]["input_ids"][0] == tokenizer.encode([1]) and splits["test"]["labels"][0] == tokenizer.encode([2])[0]


def test_labels_are_scalar_ints_and_ids_are_int_lists(ml100k):
    _, (splits, tokenizer, _) = ml100k
    row = splits["validation"][0]
    assert isinstance(row["labels"], int) and isinstance(row["input_ids"], list) and isinstance(row["input_ids"][0], int)
    assert splits["validation"].features["labels"].dtype == "int64"


def test_no_leak_of_held_out_items_into_training_rows_ml100k(ml100k):
    seqs, (splits, tokenizer, report) = ml100k
    histories = dict(zip(seqs["user_id"], seqs["item_ids"], strict=True))
    train_items: dict[str, set] = {}
    for user, ids in zip(splits["train"]["user_id"], splits["train"]["input_ids"], strict=True):
        train_items.setdefault(user, set()).update(ids)
    assert len(train_items) == 943
    for split, offset in (("validation", 2), ("test", 1)):
        for user, label in zip(splits[split]["user_id"], splits[split]["labels"], strict=True):
            assert label not in train_items[user], (split, user)
            assert tokenizer.decode([label]) == [histories[user][-offset]]
    for user, items in train_items.items():  # exactly the first n-2 items, nothing else
        assert items == set(tokenizer.encode(histories[user][:-2], unknown="skip"))
    assert report.rows["validation"] + report.left_out("validation") == 943


def test_training_windows_cover_every_training_interaction_ml100k(ml100k):
    seqs, (splits, tokenizer, report) = ml100k
    windows: dict[str, list] = {}
    for user, ids in zip(splits["train"]["user_id"], splits["train"]["input_ids"], strict=True):
        windows.setdefault(user, []).append(ids)
    for user, items in zip(seqs["user_id"], seqs["item_ids"], strict=True):
        train = tokenizer.encode(items[:-2])  # ml-100k has no repeated (user, item): positions are unique
        where = {item: position for position, item in enumerate(train)}
        covered = np.zeros(len(train), dtype=bool)
        starts = []
        for window in windows[user]:
            start = where[window[0]]
            assert window == train[start:start + len(window)] and len(window) <= report.max_seq_length
            covered[start:start + len(window)] = True
            starts.append(start)
        assert covered.all() and starts == sorted(starts)
        assert windows[user][-1] == train[-report.max_seq_length:]  # the last window ends at the last item


def random_window_case(seed: int) -> tuple[np.ndarray, int, int]:
    """200 sequence lengths, a max_length and a stride <= max_length."""
    rng = np.random.default_rng(seed)
    max_length = int(rng.integers(2, 60))
    return rng.integers(1, 300, size=200), max_length, int(rng.integers(1, max_length + 1))


@pytest.mark.parametrize("seed", range(5))
def test_sliding_windows_cover_everything(seed):
    lengths, max_length, stride = random_window_case(seed)
    owner, start, size = sliding_windows(lengths, max_length, stride)
    assert (size <= max_length).all() and (start >= 0).all() and (start + size <= lengths[owner]).all()
    for sequence, length in enumerate(lengths):
        mine = owner == sequence
        covered = np.zeros(length, dtype=bool)
        for s, n in zip(start[mine], size[mine], strict=True):
            covered[s:s + n] = True
        assert covered.all() and start[mine][-1] + size[mine][-1] == length
        assert (np.diff(start[mine]) > 0).all() and (np.diff(start[mine]) <= stride).all()


def test_max_history_length_keeps_the_most_recent():
    seqs = sequences(u=list(range(10, 20)))
    splits, tokenizer, _ = leave_one_out(seqs, max_seq_length=4, max_history_length=3, fit_on="all")
    assert tokenizer.decode(splits["validation"][0]["input_ids"]) == [15, 16, 17]
    assert tokenizer.decode(splits["test"][0]["input_ids"]) == [16, 17, 18]


def test_given_tokenizer_unknown_history_items_are_dropped_and_counted():
    seqs = sequences(u=[1, 2, 99, 3, 4, 5], v=[98, 97, 1, 2])
    tokenizer = ItemTokenizer.fit([1, 2, 3, 4, 5])
    splits, same, report = leave_one_out(seqs, tokenizer=tokenizer, max_seq_length=10)
    assert same is tokenizer and not report.tokenizer_fitted
    assert tokenizer.decode(splits["train"]["input_ids"][0]) == [1, 2, 3]
    # v's training part (98, 97) is unknown: no training row and no validation history
    assert report.empty_history == {"train": 1, "validation": 1, "test": 0}
    assert report.unknown_target == {"validation": 0, "test": 0} and splits["validation"]["user_id"] == ["u"]
    assert splits["test"]["user_id"] == ["u", "v"] and tokenizer.decode(splits["test"]["input_ids"][1]) == [1]
    assert report.unknown_history_items == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_seq_length": 0}, "max_seq_length must be an integer >= 2"),
        ({"max_seq_length": -3}, "max_seq_length must be an integer >= 2"),
        ({"stride": 0}, "stride must be an integer >= 1"),
        ({"stride": -1}, "stride must be an integer >= 1"),
        ({"max_seq_length": 5, "stride": 6}, r"stride \(6\) must not exceed max_seq_length \(5\)"),
        ({"fit_on": "test"}, "fit_on must be"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        leave_one_out(sequences(u=[1, 2, 3, 4]), **kwargs)


def test_no_user_long_enough_to_split():
    with pytest.raises(ValueError, match=r"no user has the 3 interactions .* the longest of the 2 sequences has 2"):
        leave_one_out(sequences(a=[1, 2], b=[3]))


def test_missing_columns():
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['item_ids'\]"):
        leave_one_out(datasets.Dataset(pa.table({"user_id": [1]})))


def test_save_and_reload(tmp_path, ml100k):
    _, processed = ml100k
    target = save_processed(processed, tmp_path / "processed")
    assert sorted(p.name for p in target.iterdir()) == [
        "dataset_dict.json", "item_vocab.json", "split_report.json", "test", "train", "validation"
    ]
    splits, tokenizer, report = load_processed(target)
    assert tokenizer == processed.tokenizer and report == processed.report and isinstance(report, SplitReport)
    for name in ("train", "validation", "test"):
        assert splits[name].data.table.equals(processed.splits[name].data.table)
    # saving again replaces the earlier version and leaves no staging folders
    save_processed(processed, target)
    assert [p.name for p in tmp_path.iterdir()] == ["processed"]


def test_save_and_reload_an_empty_split(tmp_path):
    # every test target (13, 14) is unseen in training: the test split is empty
    processed = leave_one_out(sequences(u1=[10, 11, 12, 13], u2=[11, 12, 11, 14]), max_seq_length=3)
    assert processed.splits["test"].num_rows == 0 and processed.splits["validation"].num_rows == 2
    splits, _, report = load_processed(save_processed(processed, tmp_path / "p"))
    assert report == processed.report and splits["test"].num_rows == 0
    assert splits["test"].features == processed.splits["test"].features
    assert splits["validation"]["labels"] == processed.splits["validation"]["labels"]


def test_save_refuses_a_tokenizer_grown_after_the_split_and_keeps_the_old_folder(tmp_path):
    processed = leave_one_out(sequences(u1=[10, 11, 12, 13], u2=[11, 12, 13, 14]), max_seq_length=3)
    target = save_processed(processed, tmp_path / "p")
    processed.tokenizer.add_items([99])
    with pytest.raises(ValueError, match="vocabulary of 5 entries but the tokenizer now has 6"):
        save_processed(processed, target)
    assert [p.name for p in tmp_path.iterdir()] == ["p"]
    assert load_processed(target).tokenizer.vocab_size == 5


def test_save_refuses_foreign_folder_and_load_checks(tmp_path, ml100k):
    _, processed = ml100k
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a folder written by save_processed"):
        save_processed(processed, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(FileNotFoundError, match="no dataset_dict.json"):
        load_processed(foreign)
    target = save_processed(processed, tmp_path / "p")
    report = json.loads((target / "split_report.json").read_text())
    report["vocab_size"] += 1
    (target / "split_report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="vocabulary of"):
        load_processed(target)


@pytest.mark.parametrize("seed", range(5))
def test_prefix_windows_end_at_every_stride_th_item(seed):
    lengths, max_length, stride = random_window_case(seed)
    owner, start, size = sliding_windows(lengths, max_length, stride, prefixes=True)
    end = start + size
    assert (start >= 0).all() and (size >= 1).all()
    assert np.array_equal(size, np.minimum(end, max_length))  # as long as the history before that end allows
    for sequence, length in enumerate(lengths):
        assert end[owner == sequence].tolist() == list(range(length, 0, -stride))[::-1]


def test_prefix_windows_give_one_training_row_per_training_item_ml100k(ml100k):
    splits, _, report = leave_one_out(ml100k[0], max_seq_length=50, stride=1, prefixes=True, fit_on="all")
    train, validation = splits["train"], splits["validation"]
    assert report.prefixes and train.num_rows == sum(len(h) for h in validation["input_ids"])
    by_user = {user: history for user, history in zip(validation["user_id"], validation["input_ids"], strict=True)}
    seen: dict[str, int] = {}
    for user, window in zip(train["user_id"], train["input_ids"], strict=True):
        seen[user] = seen.get(user, 0) + 1
        assert window == by_user[user][max(0, seen[user] - 50):seen[user]]  # the prefix ending at item seen[user]
    assert seen == {user: len(history) for user, history in by_user.items()}
