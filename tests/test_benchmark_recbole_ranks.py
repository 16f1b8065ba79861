"""The RecBole driver's own ranking (benchmarks/recbole_driver.py): the helpers that
re-rank RecBole's scores with this package's rule, history kept or excluded. They
run in RecBole's venv, so they are checked here against the package's evaluator."""

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import torch

from bert4rec_hf.evaluation import ranking_metrics

DRIVER = Path(__file__).resolve().parents[1] / "benchmarks" / "recbole_driver.py"
spec = importlib.util.spec_from_file_location("recbole_driver", DRIVER)
recbole_driver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recbole_driver)


def test_ranks_count_ties_against_the_target_and_skip_padding():
    scores = torch.tensor(
        [
            [9.0, 1.0, 2.0, 2.0, 3.0],  # target 2: item 3 ties, item 4 beats it; column 0 is padding
            [9.0, 5.0, 5.0, 5.0, 5.0],  # a constant model: the worst rank
        ]
    )
    targets = torch.tensor([2, 1])
    assert recbole_driver.candidate_ranks(scores, targets).tolist() == [2, 3]


def test_excluded_history_leaves_the_candidates_but_the_target_stays():
    scores = torch.tensor([[0.0, 4.0, 1.0, 3.0, 2.0]])
    targets = torch.tensor([4])
    excluded = torch.tensor([[False, True, False, False, True]])  # item 4 is history and target
    assert recbole_driver.candidate_ranks(scores, targets).tolist() == [2]
    assert recbole_driver.candidate_ranks(scores, targets, excluded).tolist() == [1]


def test_history_mask_takes_targets_and_input_lists():
    dataset = SimpleNamespace(
        uid_field="user_id",
        iid_field="item_id",
        item_id_list_field="item_id_list",
        inter_feat={
            "user_id": torch.tensor([1, 1, 2]),
            "item_id": torch.tensor([3, 4, 2]),
            "item_id_list": torch.tensor([[5, 0], [5, 3], [1, 0]]),
        },
    )
    mask = recbole_driver.history_mask(dataset, num_users=3, num_items=6)
    assert mask.nonzero().tolist() == [[1, 3], [1, 4], [1, 5], [2, 1], [2, 2]]


def test_metrics_match_the_package():
    ranks = [0, 3, 9, 10, 57]
    ours = ranking_metrics(ranks, [10])
    theirs = recbole_driver.metrics_from_ranks(torch.tensor(ranks), [10])
    assert math.isclose(theirs["ndcg@10"], ours["ndcg@10"], rel_tol=1e-12)
    assert math.isclose(theirs["hit@10"], ours["hit@10"], rel_tol=1e-12)
    assert math.isclose(theirs["mrr@10"], ours["mrr@10"], rel_tol=1e-12)
