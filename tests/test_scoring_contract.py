"""The scoring contract: every path that scores or ranks items gives what the
definition computed by hand gives.

score(row, item) = transform(state) · E[item] + b[item] (+ the seen-item offset
when the item is in the row's input); rank = the candidates other than the
target scoring at least the target's score. Checked for models with and
without the offset, with an exact tie (an item given the target's embedding
and bias) that must count against the target in every path.
"""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from bert4rec_hf import (
    Bert4RecRecommender,
    Bert4RecTrainer,
    DataCollatorForNextItemPrediction,
    ItemTokenizer,
    RankingEvaluator,
    scoring_bert4rec,
)
from bert4rec_hf.candidates import excluded_items
from bert4rec_hf.data.collators import left_pad
from bert4rec_hf.evaluation import sample_negatives
from bert4rec_hf.export import Bert4RecTopK

from .helpers import tiny_model

VOCAB, MAX_LEN, USERS = 40, 8, 14
TIED_ROWS = range(6)  # each of their targets has a copy: an item with the same embedding and bias
COPIES = range(VOCAB - 6, VOCAB)  # never in a history, never a target


def _case(seen_item_bias: bool, seed: int):
    """A model, whole histories (some longer than the window), targets, and for
    the first rows an exact tie: another item with the target's embedding and bias."""
    model = tiny_model(seed=seed, vocab_size=VOCAB, max_seq_length=MAX_LEN, seen_item_bias=seen_item_bias)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.decoder.bias.normal_(generator=generator)
        if seen_item_bias:
            model.head.seen_item_bias.fill_(-0.7)
    lengths = torch.randint(1, 3 * MAX_LEN, (USERS,), generator=generator).tolist()
    tied_targets = torch.arange(2, 2 + 3 * len(TIED_ROWS), 3)  # distinct, and never in their rows' histories
    lowest = [int(tied_targets[-1]) + 1 if row in TIED_ROWS else 2 for row in range(USERS)]
    histories = [torch.randint(low, COPIES[0], (n,), generator=generator).tolist() for low, n in zip(lowest, lengths, strict=True)]
    targets = torch.randint(2, COPIES[0], (USERS,), generator=generator)
    targets[list(TIED_ROWS)] = tied_targets
    targets[TIED_ROWS.stop] = histories[TIED_ROWS.stop][-1]  # a repeat: stays a candidate under history exclusion
    with torch.no_grad():
        weight, bias = model.head.decoder.weight, model.head.decoder.bias
        for row, copy in zip(TIED_ROWS, COPIES, strict=True):
            weight[copy] = weight[targets[row]]
            bias[copy] = bias[targets[row]]
    return model, histories, targets


def _by_hand(model, histories):
    """States at [MASK], and every score computed from the definition in float64, rounded once."""
    batch = DataCollatorForNextItemPrediction(max_seq_length=MAX_LEN)([{"input_ids": h} for h in histories])
    with torch.no_grad():
        hidden = model.bert4rec(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, -1]
        transformed = model.head.transform(hidden).double()
        scores = transformed @ model.head.decoder.weight.double().T + model.head.decoder.bias.double()
        if model.head.seen_item_bias is not None:
            for row, window in enumerate(batch["input_ids"].tolist()):
                for item in {i for i in window if i >= 2}:
                    scores[row, item] += model.head.seen_item_bias.double().item()
    scores = scores.float()
    scores[:, :2] = float("-inf")
    return batch, hidden, scores


def _rank_by_hand(scores, target, candidates):
    return sum(1 for item in candidates if item != target and scores[item] >= scores[target])


def _hand_ranks(scores, histories, targets, exclude=False, without=()):
    ranks = []
    for row, history in enumerate(histories):
        excluded = {"window": set(history[-(MAX_LEN - 1) :]), True: set(history), False: set()}[exclude]
        excluded |= set(without)
        candidates = [i for i in range(2, VOCAB) if i not in excluded or i == int(targets[row])]
        ranks.append(_rank_by_hand(scores[row].tolist(), int(targets[row]), candidates))
    return torch.tensor(ranks)


CASES = [(False, 0), (True, 1), (True, 2)]


@pytest.mark.parametrize("seen_item_bias, seed", CASES)
def test_every_scoring_path_gives_the_scores_of_the_definition(seen_item_bias, seed):
    model, histories, targets = _case(seen_item_bias, seed)
    batch, hidden, expected = _by_hand(model, histories)
    tied = targets[list(TIED_ROWS)]
    assert torch.equal(expected[list(TIED_ROWS), list(COPIES)], expected[list(TIED_ROWS), tied])
    window = batch["input_ids"]
    with torch.no_grad():
        scorer = model.item_scorer(hidden, window)
        assert torch.equal(scorer.all(), expected)
        assert torch.equal(torch.cat([s for _, s in scorer.chunks(7)], dim=1), expected[:, 2:])
        ids = torch.randint(2, VOCAB, (USERS, 9), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(scorer.chosen(ids), expected.gather(1, ids))
        assert torch.equal(scorer.chosen(ids[0]), expected[:, ids[0]])
        assert torch.equal(scorer.targets(targets), expected.gather(1, targets[:, None])[:, 0])
        # the model's own outputs: logits at [MASK], next-item scores of the bare histories
        assert torch.equal(model(window, attention_mask=batch["attention_mask"]).logits, expected)
        assert torch.equal(model.next_item_scores(left_pad(histories, MAX_LEN - 1)), expected)
    # the recommender (raw ids) and the exported top-k graph
    tokenizer = ItemTokenizer([f"item{i}" for i in range(VOCAB - 2)])
    recommender = Bert4RecRecommender(model, tokenizer)
    raw = [tokenizer.decode(history) for history in histories]
    assert torch.equal(recommender.score(raw), expected)
    top = Bert4RecTopK(model, k=VOCAB - 2, exclude_history=False)(left_pad(histories, MAX_LEN - 1))
    assert torch.equal(top[1], expected.gather(1, top[0]))
    assert torch.equal(top[1], expected[:, 2:].sort(dim=1, descending=True).values)


@pytest.mark.parametrize("seen_item_bias, seed", CASES)
@pytest.mark.parametrize("exclude", [False, "window", True])
def test_every_full_ranking_path_counts_as_the_definition(seen_item_bias, seed, exclude, tmp_path):
    model, histories, targets = _case(seen_item_bias, seed)
    batch, hidden, expected = _by_hand(model, histories)
    hand = _hand_ranks(expected, histories, targets, exclude)
    whole = left_pad(histories, max(map(len, histories)))
    evaluator = RankingEvaluator(exclude_history=exclude)
    window = batch["input_ids"]
    assert torch.equal(evaluator.rank(expected, window, targets, history=whole), hand)
    for chunk_size in (7, None):
        ranks = evaluator.rank_hidden_states(model, hidden, window, targets, chunk_size=chunk_size, history=whole)
        assert torch.equal(ranks, hand), chunk_size
    truncated = RankingEvaluator(exclude_history=exclude, ks=(1, 5), truncate_ranks=True)
    ranks = truncated.rank_hidden_states(model, hidden, window, targets, chunk_size=8, history=whole)
    assert torch.equal(ranks, hand.clamp(max=5))
    # the Trainer's evaluation step (encoder states from the partial last layer, the whole history from the collator)
    dataset = Dataset.from_dict({"input_ids": histories, "labels": targets.tolist()})
    trainer = Bert4RecTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=5, report_to=[], use_cpu=True),
        eval_data_collator=DataCollatorForNextItemPrediction(max_seq_length=MAX_LEN, whole_history=True),
        evaluator=evaluator,
    )
    predicted = trainer.predict(dataset).predictions
    assert np.array_equal(predicted[:, 0], hand.numpy())
    # each tie counts against its target: without its copy the target would rank one better
    for row, copy in zip(TIED_ROWS, COPIES, strict=True):
        rows = slice(row, row + 1)
        untied = _hand_ranks(expected[rows], histories[rows], targets[rows], exclude, without=[copy])
        assert untied[0] + 1 == hand[row], row


@pytest.mark.parametrize("seen_item_bias, seed", CASES)
def test_sampled_ranking_paths_count_as_the_definition(seen_item_bias, seed):
    model, histories, targets = _case(seen_item_bias, seed)
    batch, hidden, expected = _by_hand(model, histories)
    whole = left_pad(histories, max(map(len, histories)))
    negatives = sample_negatives(excluded_items(whole, VOCAB), targets, VOCAB, 10, seed=3)
    hand = []
    for row, history in enumerate(histories):
        drawn = [int(i) for i in negatives[row] if i >= 0]
        assert not set(drawn) & set(history), row  # never an item of the whole history
        hand.append(_rank_by_hand(expected[row].tolist(), int(targets[row]), drawn))
    evaluator = RankingEvaluator(mode="uni10", seed=3)
    window = batch["input_ids"]
    assert evaluator.rank(expected, window, targets, history=whole).tolist() == hand
    assert evaluator.rank_hidden_states(model, hidden, window, targets, history=whole).tolist() == hand


@pytest.mark.parametrize("seen_item_bias, seed", CASES)
@pytest.mark.parametrize("chunk_size", [0, 7])
def test_losses_are_those_of_the_definitions_scores(seen_item_bias, seed, chunk_size):
    model, histories, targets = _case(seen_item_bias, seed)
    model.config.item_chunk_size = chunk_size
    batch, hidden, expected = _by_hand(model, histories)
    window = batch["input_ids"]
    with torch.no_grad():
        loss, _ = model.masked_item_loss(hidden, targets, input_ids=window)
    reference = torch.nn.functional.cross_entropy(expected.double(), targets).float()
    torch.testing.assert_close(loss, reference)
    # training arithmetic (float32 products, with gradients) agrees to rounding
    loss, _ = model.masked_item_loss(hidden, targets, input_ids=window)
    torch.testing.assert_close(loss.detach(), reference)
    model.config.loss_type = "BPR"
    negatives = torch.randint(2, VOCAB, (USERS, 3), generator=torch.Generator().manual_seed(seed))
    loss, _ = model.masked_item_loss(hidden, targets, negatives, input_ids=window)
    positive = expected.gather(1, targets[:, None]).double()
    bpr = -torch.nn.functional.logsigmoid(positive - expected.gather(1, negatives).double()).mean()
    torch.testing.assert_close(loss.detach(), bpr.float())


@pytest.mark.parametrize("seen_item_bias, seed", CASES[:2])
def test_exact_scores_in_blocks_equal_the_definition(seen_item_bias, seed, monkeypatch):
    """Large exact ranges are computed in float64 blocks; block edges change no score."""
    monkeypatch.setattr(scoring_bert4rec, "EXACT_BLOCK", 7)
    model, histories, _ = _case(seen_item_bias, seed)
    batch, hidden, expected = _by_hand(model, histories)
    with torch.no_grad():
        scorer = model.item_scorer(hidden, batch["input_ids"])
        assert torch.equal(scorer.all(), expected)
        assert torch.equal(scorer.range(5, 33), expected[:, 5:33])
