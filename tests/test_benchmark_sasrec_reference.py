"""benchmarks/sasrec_reference.py: the SASRec+ figure BERT4Rec is measured against on Beauty
must come from a model that is causal, reads the items the split gives it, and ranks the test
item the package's way."""

from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import benchmark_script


@pytest.fixture(scope="module")
def sasrec():
    return benchmark_script("sasrec_reference")


def write_log(path: Path, users: int, length: int, items: int, seed: int = 0) -> Path:
    """Users whose next item is always the current one plus 1 (cyclic), from a random start;
    lines of two users interleaved, as a log in time order would be."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, items, users)
    lines = [(u, 100 + (starts[u] + t) % items) for t in range(length) for u in range(users)]
    path.write_text("".join(f"{u} {i}\n" for u, i in lines))
    return path


def test_sequences_keep_file_order_within_a_user(sasrec, tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("2 30\n1 10\n2 10\n1 20\n2 20\n")
    sequences, num_items = sasrec.read_sequences(path)
    assert num_items == 3
    # ids by item order from the package's first item id (2): 10 -> 2, 20 -> 3, 30 -> 4
    assert [s.tolist() for s in sequences] == [[2, 3], [4, 2, 3]]


def test_padded_keeps_the_last_items_left_aligned(sasrec):
    rows = sasrec.padded([np.array([1, 2, 3, 4]), np.array([5])], 3)
    assert rows.tolist() == [[2, 3, 4], [5, 0, 0]]


def test_a_position_reads_only_the_items_up_to_it(sasrec):
    torch.manual_seed(0)
    model = sasrec.SASRec(num_items=20, hidden=16, blocks=2, heads=1, dropout=0.1, max_length=6).eval()
    rows = torch.tensor([[3, 4, 5, 6, 0, 0]])
    changed = torch.tensor([[3, 4, 9, 11, 12, 0]])
    with torch.no_grad():
        before, after = model(rows), model(changed)
    torch.testing.assert_close(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2], after[:, 2])


def test_ranks_match_a_direct_count(sasrec):
    torch.manual_seed(1)
    model = sasrec.SASRec(num_items=12, hidden=8, blocks=1, heads=1, dropout=0.0, max_length=4).eval()
    histories = [np.array([2, 3, 4]), np.array([5, 6, 7, 8, 9]), np.array([10, 4])]
    targets = np.array([4, 11, 13])  # the first user's target is also in their history
    metrics = sasrec.rank_targets(model, histories, targets, max_length=4)
    with torch.no_grad():
        expected_full, expected_excluded = [], []
        for history, target in zip(histories, targets, strict=True):
            window = torch.tensor(history[-4:])[None]
            scores = model.item_embeddings.weight @ model(window)[0, -1]  # indexed by vocabulary id
            candidates = torch.arange(2, 14)  # the 12 items; a tie with the target counts against it
            better = (scores[candidates] >= scores[target]) & candidates.ne(target)
            expected_full.append(int(better.sum()))
            unseen = ~torch.isin(candidates, torch.tensor(history))
            expected_excluded.append(int((better & unseen).sum()))
    for name, ranks in (("full", expected_full), ("full_excluded", expected_excluded)):
        gains = [1 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks]
        assert metrics[name]["ndcg@10"] == pytest.approx(np.mean(gains))
        assert metrics[name]["num_users"] == 3


def test_it_learns_a_next_item_rule(sasrec, tmp_path):
    log = write_log(tmp_path / "cyclic.txt", users=300, length=8, items=40)
    out = tmp_path / "result.json"
    result = sasrec.main(
        ["--data-path", str(log), "--epochs", "12", "--batch-size", "32", "--hidden-size", "16",
         "--learning-rate", "0.01", "--valid-users", "100", "--output", str(out)]
    )  # fmt: skip
    assert [point["epoch"] for point in result["curve"]] == list(range(1, 13))
    assert result["curve"][-1]["loss"] < result["curve"][0]["loss"]
    assert result["test"]["full"]["hit@10"] > 0.9  # chance: 10 of 40
    assert out.exists() and result["users"] == 300 and result["items"] == 40


def test_trained_through_runs_without_validation(sasrec, tmp_path):
    log = write_log(tmp_path / "cyclic.txt", users=50, length=6, items=20)
    result = sasrec.main(["--data-path", str(log), "--epochs", "2", "--trained-through", "--hidden-size", "8"])
    assert all("valid_ndcg@10" not in point for point in result["curve"])
    assert set(result["test"]) == {"full", "full_excluded"}


def test_the_time_budget_ends_training_after_the_epoch_that_would_overrun(sasrec, tmp_path):
    log = write_log(tmp_path / "cyclic.txt", users=40, length=6, items=20)
    result = sasrec.main(["--data-path", str(log), "--epochs", "50", "--time-budget", "1e-6", "--hidden-size", "8"])
    assert len(result["curve"]) == 1 and "full" in result["test"]
