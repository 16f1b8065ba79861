"""Ranking metrics, ranks and negative sampling against brute-force Python."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch

from bert4rec_hf.evaluation import RankingEvaluator, count_item_popularity, ranking_metrics, sample_negatives, sampling
from bert4rec_hf.evaluation.sampling import mix64, row_identity
from bert4rec_hf.scoring_bert4rec import ItemScorer

SPECIAL = 2


# ---------------------------------------------------------------------------- brute force
def brute_metrics(ranks, ks):
    out = {}
    n = len(ranks)
    for k in ks:
        out[f"hit@{k}"] = sum(1.0 for r in ranks if r < k) / n
        out[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / n
        out[f"mrr@{k}"] = sum(1.0 / (r + 1) for r in ranks if r < k) / n
        out[f"precision@{k}"] = out[f"hit@{k}"] / k
    out["mrr"] = sum(1.0 / (r + 1) for r in ranks) / n
    out["num_users"] = n
    return out


def brute_rank(scores, history, target, candidates):
    """Candidates other than the target scoring >= the target (ties count against it)."""
    mine = scores[target]
    return sum(1 for item in candidates if item != target and scores[item] >= mine)


def random_case(batch=40, vocab=30, length=8, seed=0, ties=True):
    gen = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many ties
        scores = torch.randint(0, 4, (batch, vocab), generator=gen).float()
    else:
        scores = torch.randn(batch, vocab, generator=gen)
    scores[:, :SPECIAL] = float("-inf")
    input_ids = torch.randint(SPECIAL, vocab, (batch, length), generator=gen)
    lengths = torch.randint(0, length, (batch,), generator=gen)
    input_ids[torch.arange(length)[None, :] < (length - lengths)[:, None]] = 0  # left padding
    input_ids[:, -1] = 1  # [MASK]
    targets = torch.randint(SPECIAL, vocab, (batch,), generator=gen)
    targets[::5] = input_ids[::5, -2].clamp(min=SPECIAL)  # some targets repeat a history item
    return scores, input_ids, targets


# ---------------------------------------------------------------------------- metrics
def test_metrics_hand_made():
    metrics = ranking_metrics([0, 1, 4, 9, 30], ks=(1, 5))
    assert metrics["num_users"] == 5
    assert metrics["hit@1"] == pytest.approx(0.2)
    assert metrics["hit@5"] == pytest.approx(0.6)
    assert metrics["precision@5"] == pytest.approx(0.12)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert metrics["mrr@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 5)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 31) / 5)


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_random_against_brute_force(seed):
    ranks = np.random.default_rng(seed).integers(0, 40, size=300)
    expected = brute_metrics(ranks.tolist(), (5, 10, 20))
    got = ranking_metrics(torch.as_tensor(ranks))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_metrics_edge_cases():
    empty = ranking_metrics([], ks=(10,))
    assert empty["num_users"] == 0 and math.isnan(empty["ndcg@10"])
    with pytest.raises(ValueError):
        ranking_metrics([-1, 2])
    with pytest.raises(ValueError):
        ranking_metrics([1], ks=(0,))


# ---------------------------------------------------------------------------- full ranking
def test_ties_count_against_the_target():
    scores = torch.tensor([[float("-inf"), float("-inf"), 1.0, 1.0, 1.0, 0.0, 2.0]])
    input_ids = torch.tensor([[0, 3, 1]])
    evaluator = RankingEvaluator()
    # target 2 ties with 3 and 4 and loses to 6: rank 3 (strictly-higher counting would say 1)
    assert evaluator.rank(scores, input_ids, torch.tensor([2])).tolist() == [3]
    # a constant model gets the worst rank, not the best
    constant = torch.zeros(1, 7)
    assert evaluator.rank(constant, input_ids, torch.tensor([5])).tolist() == [4]
    # history exclusion removes item 3 from the count; the target in the history stays itself
    excluding = RankingEvaluator(exclude_history=True)
    assert excluding.rank(scores, input_ids, torch.tensor([2])).tolist() == [2]
    assert excluding.rank(scores, input_ids, torch.tensor([3])).tolist() == [3]


def test_nan_scores_never_help():
    scores = torch.tensor([[0.0, 0.0, float("nan"), 1.0, 0.5, 0.2]])
    evaluator = RankingEvaluator()
    assert evaluator.rank(scores, None, torch.tensor([2])).tolist() == [3]  # NaN target: worst
    assert evaluator.rank(scores, None, torch.tensor([4])).tolist() == [2]  # NaN candidate counts against


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("exclude_history", [False, True])
def test_full_ranks_against_brute_force(ties, exclude_history):
    scores, input_ids, targets = random_case(ties=ties, seed=int(ties) + 2 * int(exclude_history))
    ranks = RankingEvaluator(exclude_history=exclude_history).rank(scores, input_ids, targets)
    vocab = scores.shape[1]
    for row in range(scores.shape[0]):
        history = {int(i) for i in input_ids[row] if i >= SPECIAL}
        candidates = [i for i in range(SPECIAL, vocab) if not (exclude_history and i in history)]
        expected = brute_rank(scores[row].tolist(), history, int(targets[row]), candidates)
        assert int(ranks[row]) == expected, row


def test_exclude_history_ignores_ids_outside_the_real_items():
    scores, input_ids, targets = random_case(ties=True, seed=9)
    input_ids[::3, 0] = -100  # was: scatter index error in rank
    input_ids[1::3, 0] = scores.shape[1] + 4
    evaluator = RankingEvaluator(exclude_history=True)
    ranks = evaluator.rank(scores, input_ids, targets)
    # one-hot states against the score matrix as item embeddings: each scorer score is exactly scores[row, item]
    model = SimpleNamespace(
        config=SimpleNamespace(vocab_size=scores.shape[1]),
        item_scorer=lambda hidden, history: ItemScorer(hidden, scores.t().nan_to_num(neginf=0.0), torch.zeros(scores.shape[1])),
    )
    hidden = torch.eye(scores.shape[0])
    assert torch.equal(ranks, evaluator.rank_hidden_states(model, hidden, input_ids, targets, chunk_size=7))
    for row in range(scores.shape[0]):
        history = {int(i) for i in input_ids[row] if SPECIAL <= i < scores.shape[1]}
        candidates = [i for i in range(SPECIAL, scores.shape[1]) if i not in history]
        assert int(ranks[row]) == brute_rank(scores[row].tolist(), history, int(targets[row]), candidates), row


def test_exclude_history_changes_ranks_by_the_history_items_above_target():
    scores, input_ids, targets = random_case(ties=False, seed=5)
    kept = RankingEvaluator().rank(scores, input_ids, targets)
    excluded = RankingEvaluator(exclude_history=True).rank(scores, input_ids, targets)
    for row in range(scores.shape[0]):
        target = int(targets[row])
        above = {
            int(i) for i in input_ids[row] if i >= SPECIAL and i != target and scores[row, i] >= scores[row, target]
        }
        assert int(kept[row]) - int(excluded[row]) == len(above)
    assert (kept > excluded).any()


# ---------------------------------------------------------------------------- sampling
def test_mix64_matches_splitmix64():
    mask = (1 << 64) - 1

    def reference(x):
        x &= mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
        return x - (1 << 64) if x >= 1 << 63 else x

    values = torch.randint(-(2**63), 2**63 - 1, (500,), generator=torch.Generator().manual_seed(0))
    assert mix64(values).tolist() == [reference(int(v)) for v in values]


def test_row_identity_ignores_padding_and_mask():
    a = torch.tensor([[0, 0, 5, 6, 1]])
    b = torch.tensor([[5, 6]])
    c = torch.tensor([[0, 6, 5, 1]])
    t = torch.tensor([7])
    assert row_identity(a, t) == row_identity(b, t)
    assert row_identity(a, t) != row_identity(c, t)  # order matters
    assert row_identity(a, t) != row_identity(a, torch.tensor([8]))


def sampling_case(batch=64, vocab=5000, length=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(SPECIAL, vocab, (batch, length), generator=gen)
    input_ids[: batch // 2, : length // 2] = 0
    input_ids[:, -1] = 1
    targets = torch.randint(SPECIAL, vocab, (batch,), generator=gen)
    return input_ids, targets


def check_negatives(negatives, input_ids, targets, vocab, count):
    assert negatives.shape == (len(targets), count)
    for row in range(len(targets)):
        drawn = [int(i) for i in negatives[row] if i >= 0]
        assert len(set(drawn)) == len(drawn), "duplicates"
        assert all(SPECIAL <= i < vocab for i in drawn)
        assert int(targets[row]) not in drawn
        assert not set(drawn) & {int(i) for i in input_ids[row]}


@pytest.mark.parametrize("vocab", [5000, 300])  # stream sampler / dense sampler
@pytest.mark.parametrize("popularity", [False, True])
def test_negatives_are_valid_and_reproducible(vocab, popularity):
    input_ids, targets = sampling_case(vocab=vocab)
    weights = torch.rand(vocab, generator=torch.Generator().manual_seed(1)) if popularity else None
    negatives = sample_negatives(input_ids, targets, vocab, 100, weights=weights, seed=3)
    assert (negatives >= 0).all()
    check_negatives(negatives, input_ids, targets, vocab, 100)
    assert torch.equal(negatives, sample_negatives(input_ids, targets, vocab, 100, weights=weights, seed=3))
    other = sample_negatives(input_ids, targets, vocab, 100, weights=weights, seed=4)
    assert not torch.equal(negatives, other)
    # independent of batch composition, order and padding width
    perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))
    wider = torch.nn.functional.pad(input_ids[perm[:7]], (25, 0))
    half = sample_negatives(wider, targets[perm[:7]], vocab, 100, weights=weights, seed=3)
    assert torch.equal(half, negatives[perm[:7]])


def test_stream_rows_that_run_short_fall_back_exactly(monkeypatch):
    monkeypatch.setattr(sampling, "_STREAM_ROUNDS", 1)
    fallback_rows = []
    dense = sampling._dense_sample

    def spy(row_hash, *args):
        fallback_rows.append(row_hash.shape[0])
        return dense(row_hash, *args)

    monkeypatch.setattr(sampling, "_dense_sample", spy)
    vocab = 3000
    weights = torch.zeros(vocab)
    weights[SPECIAL : SPECIAL + 150] = 1.0  # 150 items of positive weight
    input_ids, targets = sampling_case(vocab=vocab, length=40)
    input_ids[0, :40] = torch.arange(SPECIAL, SPECIAL + 40)  # this user consumed 40 of them
    negatives = sample_negatives(input_ids, targets, vocab, 100, weights=weights)
    check_negatives(negatives, input_ids, targets, vocab, 100)
    assert (negatives[0] >= 0).sum() == 100 and (negatives[negatives >= 0] < SPECIAL + 150).all()
    assert fallback_rows == [1]  # only the heavy user needed the dense sampler


def test_rows_with_too_few_allowed_items_get_them_all():
    vocab = 12
    input_ids = torch.tensor([[2, 3, 4, 5, 1], [0, 0, 0, 0, 1]])
    targets = torch.tensor([6, 6])
    negatives = sample_negatives(input_ids, targets, vocab, 8)
    assert sorted(int(i) for i in negatives[0] if i >= 0) == [7, 8, 9, 10, 11]
    assert (negatives[0] < 0).sum() == 3
    assert (negatives[1] >= 0).all()
    check_negatives(negatives, input_ids, targets, vocab, 8)


@pytest.mark.parametrize("vocab", [2000, 40])
def test_popularity_sampling_follows_weights(vocab):
    rows = 20000
    weights = torch.zeros(vocab, dtype=torch.float64)
    weights[SPECIAL:] = torch.linspace(1, 10, vocab - SPECIAL, dtype=torch.float64) ** 2
    weights[SPECIAL + 3] = 0  # never drawn
    input_ids = torch.zeros(rows, 1, dtype=torch.long)
    targets = torch.full((rows,), SPECIAL)
    negatives = sample_negatives(input_ids, targets, vocab, 1, weights=weights, row_ids=torch.arange(rows))
    counts = torch.bincount(negatives[:, 0], minlength=vocab).double()
    assert counts[: SPECIAL + 1].sum() == 0 and counts[SPECIAL + 3] == 0
    expected = weights.clone()
    expected[SPECIAL] = 0  # the target is never a negative
    expected = expected / expected.sum() * rows
    if vocab > 100:  # pool items into 20 bins for the chi-square check
        counts, expected = counts.reshape(20, -1).sum(1), expected.reshape(20, -1).sum(1)
    used = expected > 0
    chi2 = float(((counts[used] - expected[used]) ** 2 / expected[used]).sum())
    dof = int(used.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), chi2


@pytest.mark.parametrize("vocab", [14, 40])  # dense sampler / stream sampler
def test_weighted_sampling_without_replacement_matches_sequential_draws(vocab):
    """Inclusion frequencies of 3 draws without replacement match torch.multinomial's."""
    rows = 20000
    weights = torch.zeros(vocab, dtype=torch.float64)
    weights[SPECIAL:] = torch.arange(1, vocab - 1, dtype=torch.float64) ** 1.5
    targets = torch.full((rows,), SPECIAL)
    ours = sample_negatives(
        torch.zeros(rows, 1, dtype=torch.long), targets, vocab, 3, weights, row_ids=torch.arange(rows)
    )
    allowed = weights.clone()
    allowed[SPECIAL] = 0
    reference = torch.multinomial(
        allowed.expand(rows, -1), 3, replacement=False, generator=torch.Generator().manual_seed(0)
    )
    freq_ours = torch.bincount(ours.reshape(-1), minlength=vocab).double() / rows
    freq_ref = torch.bincount(reference.reshape(-1), minlength=vocab).double() / rows
    assert torch.allclose(freq_ours, freq_ref, atol=0.02)


def test_uniform_sampling_is_uniform():
    vocab, rows = 202, 20000
    input_ids = torch.zeros(rows, 1, dtype=torch.long)
    targets = torch.full((rows,), SPECIAL)
    negatives = sample_negatives(input_ids, targets, vocab, 5, row_ids=torch.arange(rows))
    counts = torch.bincount(negatives.reshape(-1), minlength=vocab)[SPECIAL + 1 :].double()
    expected = rows * 5 / (vocab - SPECIAL - 1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = len(counts) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), chi2


@pytest.mark.parametrize("mode", ["uni100", "pop100"])
def test_sampled_ranks_against_brute_force(mode):
    vocab = 3000
    scores, input_ids, targets = random_case(batch=30, vocab=vocab, length=20, ties=True, seed=7)
    popularity = torch.arange(vocab).double()
    evaluator = RankingEvaluator(mode, item_popularity=popularity, seed=11)
    ranks = evaluator.rank(scores, input_ids, targets)
    weights = popularity if mode == "pop100" else None
    negatives = sample_negatives(input_ids, targets, vocab, 100, weights=weights, seed=11)
    check_negatives(negatives, input_ids, targets, vocab, 100)
    for row in range(len(targets)):
        candidates = [int(targets[row])] + negatives[row].tolist()
        assert int(ranks[row]) == brute_rank(scores[row].tolist(), None, int(targets[row]), candidates)
    assert int(ranks.max()) <= 100
    truncated = RankingEvaluator(mode, ks=(5, 50), item_popularity=popularity, seed=11, truncate_ranks=True)
    assert torch.equal(truncated.rank(scores, input_ids, targets), ranks.clamp(max=50))
    assert (ranks < 50).any() and (ranks > 50).any()


def test_count_item_popularity():
    histories = [[2, 3, 3], [4], [], [3, 0, 1]]
    expected = torch.tensor([0, 0, 1, 3, 1, 0], dtype=torch.float64)
    assert torch.equal(count_item_popularity(histories, 6), expected)
    assert torch.equal(count_item_popularity(pa.array(histories), 6), expected)
    assert torch.equal(count_item_popularity(torch.tensor([[2, 3, 3], [0, 4, 3]]), 6), expected)
    with pytest.raises(ValueError):
        count_item_popularity([[9]], 6)


# ---------------------------------------------------------------------------- evaluator API
def test_modes_and_descriptions():
    assert RankingEvaluator("uni").mode == "uni100"
    assert RankingEvaluator("uni", num_negatives=50).num_negatives == 50
    assert RankingEvaluator("POP20", item_popularity=torch.ones(10)).mode == "pop20"
    for bad in ["full100", "random", "uni0"]:
        with pytest.raises(ValueError):
            RankingEvaluator(bad)
    with pytest.raises(ValueError):
        RankingEvaluator("uni100", num_negatives=50)
    with pytest.raises(ValueError, match="item_popularity"):
        RankingEvaluator("pop100")
    assert "exclude_history=False" in RankingEvaluator().describe()
    assert "exclude_history=True" in RankingEvaluator(exclude_history=True).describe()
    assert "history excluded" in RankingEvaluator("uni100").describe()


def test_rank_labelled_locates_targets_by_label_value():
    scores, input_ids, targets = random_case(batch=6, ties=False, seed=3)
    evaluator = RankingEvaluator(exclude_history=True)
    expected = evaluator.rank(scores, input_ids, targets)
    # labels with -100 padding on the right (as across processes) and one row without a target
    labels = torch.full((6, input_ids.shape[1] + 3), -100)
    labels[:, input_ids.shape[1] - 1] = targets
    labels[2] = -100
    keep = torch.tensor([0, 1, 3, 4, 5])
    padded_inputs = torch.nn.functional.pad(input_ids, (0, 3))
    ranks, out_targets = evaluator.rank_labelled(scores[keep], labels, padded_inputs)
    assert ranks.shape == (6, 1)
    assert ranks[keep, 0].tolist() == expected[keep].tolist() and ranks[2, 0] == -100
    assert out_targets[keep, 0].tolist() == targets[keep].tolist()
    metrics = evaluator.compute_metrics(SimpleNamespace(predictions=ranks.numpy(), label_ids=out_targets.numpy()))
    assert metrics == ranking_metrics(expected[keep], evaluator.ks)


def test_rank_labelled_with_several_targets_per_row():
    scores, input_ids, targets = random_case(batch=4, ties=False, seed=4)
    labels = torch.full(input_ids.shape, -100)
    labels[:, -1] = targets
    labels[1, 3] = targets[0]  # row 1 has two targets
    logits = torch.cat([scores[:1], scores[1:2], scores[1:2], scores[2:]])  # row-major order of labelled positions
    evaluator = RankingEvaluator()
    ranks, out_targets = evaluator.rank_labelled(logits, labels, input_ids)
    assert ranks.shape == (4, 2)
    assert out_targets[1].tolist() == [int(targets[0]), int(targets[1])]
    assert (ranks[[0, 2, 3], 1] == -100).all()
    flat = evaluator.preprocess_logits_for_metrics(logits, labels)
    assert flat.shape == labels.shape and torch.equal(flat[labels != -100], ranks[out_targets != -100])


def test_preprocess_logits_refuses_modes_that_need_inputs():
    for evaluator in [RankingEvaluator(exclude_history=True), RankingEvaluator("uni100")]:
        with pytest.raises(ValueError, match="Bert4RecTrainer"):
            evaluator.preprocess_logits_for_metrics(torch.zeros(1, 5), torch.tensor([[-100, 3]]))


def test_batched_compute_metrics_accumulates():
    evaluator = RankingEvaluator(ks=(2,))
    first = SimpleNamespace(predictions=torch.tensor([[0], [5]]), label_ids=torch.tensor([[3], [4]]))
    second = SimpleNamespace(predictions=torch.tensor([[1], [-100]]), label_ids=torch.tensor([[3], [-100]]))
    assert evaluator.compute_metrics(first, compute_result=False) == {}
    assert evaluator.compute_metrics(second, compute_result=True) == ranking_metrics([0, 5, 1], ks=(2,))
    assert evaluator._pending == []


def test_truncated_ranks_give_the_same_at_k_metrics_without_the_uncut_mrr():
    ranks = np.array([0, 1, 4, 9, 30, 7, 2])
    exact = ranking_metrics(ranks, ks=(1, 5, 10))
    truncated = ranking_metrics(np.minimum(ranks, 10), ks=(1, 5, 10), rank_limit=10)
    assert truncated == {key: value for key, value in exact.items() if key != "mrr"}
    assert "mrr" not in ranking_metrics([], ks=(5,), rank_limit=5)
    with pytest.raises(ValueError, match="truncated at 5 cannot give metrics at K=10"):
        ranking_metrics([1], ks=(5, 10), rank_limit=5)


def test_exclude_history_window_excludes_only_the_input_window_and_says_so():
    scores, input_ids, targets = random_case(ties=False, seed=11)
    whole = torch.cat([torch.randint(SPECIAL, scores.shape[1], (scores.shape[0], 5)), input_ids], dim=1)
    window = RankingEvaluator(exclude_history="window")
    assert "model's input window" in window.describe() and "exclude_history='window'" in window.describe()
    assert "whole history" in RankingEvaluator(exclude_history=True).describe()
    # "window" ignores the whole history it is given; True excludes it
    assert torch.equal(window.rank(scores, input_ids, targets, history=whole), window.rank(scores, input_ids, targets))
    assert torch.equal(
        RankingEvaluator(exclude_history=True).rank(scores, input_ids, targets, history=input_ids),
        window.rank(scores, input_ids, targets, history=whole),
    )
    with pytest.raises(ValueError, match="exclude_history must be True, False or 'window', got 'all'"):
        RankingEvaluator(exclude_history="all")
