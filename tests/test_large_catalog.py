"""Large catalogs: chunked full softmax, sampled softmax, chunked ranking."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from bert4rec_hf import Bert4RecForMaskedItemPrediction, RankingEvaluator
from bert4rec_hf.evaluation import count_item_popularity
from bert4rec_hf.evaluation import evaluator as evaluator_module
from bert4rec_hf.losses_bert4rec import ChunkedSoftmaxCrossEntropy
from bert4rec_hf.scoring_bert4rec import ItemScorer
from bert4rec_hf.training import Bert4RecTrainer

from .helpers import masked_batch, tiny_config, tiny_model

VOCAB = 203  # 201 real items: no chunk size below divides it


def _loss_and_grads(model, batch, **loss_kwargs):
    model.zero_grad()
    inputs, attention_mask, labels = batch
    out = model(inputs, attention_mask=attention_mask, labels=labels, **loss_kwargs)
    out.loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("chunk_size", [1, 16, 64, 500])
def test_chunked_ce_has_the_loss_and_gradients_of_the_full_softmax(chunk_size):
    full = tiny_model(seed=3, vocab_size=VOCAB).train()
    chunked = tiny_model(seed=3, vocab_size=VOCAB, item_chunk_size=chunk_size).train()
    batch = masked_batch(full.config, batch=7, seed=2)
    total = batch[2].ne(-100).sum() + 5  # as the Trainer passes it: a count over the whole (accumulated) batch
    expected, expected_grads = _loss_and_grads(full, batch, num_items_in_batch=total)
    got, grads = _loss_and_grads(chunked, batch, num_items_in_batch=total)
    assert got.logits is None  # no masked x catalog tensor while training
    torch.testing.assert_close(got.loss, expected.loss)
    assert grads.keys() == expected_grads.keys()
    assert "bert4rec.embeddings.item_embeddings.weight" in grads and "head.decoder.bias" in grads
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, msg=name)
    # specials take no part in the softmax: their output bias gets no gradient
    assert torch.equal(grads["head.decoder.bias"][:2], torch.zeros(2))


def test_chunked_ce_function_gradcheck_in_double():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(13, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(13, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.tensor([2, 12, 5, 5, 7])
    loss = ChunkedSoftmaxCrossEntropy.apply(hidden, weight, bias, targets, 4)
    reference = torch.nn.functional.cross_entropy(hidden @ weight[2:].T + bias[2:], targets - 2, reduction="none")
    torch.testing.assert_close(loss, reference)
    assert torch.autograd.gradcheck(
        lambda h, w, b: ChunkedSoftmaxCrossEntropy.apply(h, w, b, targets, 4), (hidden, weight, bias)
    )


def test_chunked_ce_saves_nothing_of_catalog_size():
    """Autograd keeps no masked x catalog tensor for backward (the unchunked loss does)."""
    vocab_size = 4002
    batch = masked_batch(tiny_config(vocab_size=vocab_size), batch=8, seed=1)
    num_masked = int(batch[2].ne(-100).sum())

    def largest_saved(model):
        """The largest tensor autograd saves that is not a parameter (parameters cost no memory)."""
        parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        sizes = [0]

        def pack(tensor):
            if tensor.untyped_storage().data_ptr() not in parameters:
                sizes.append(tensor.numel())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(batch[0], attention_mask=batch[1], labels=batch[2]).loss.backward()
        return max(sizes)

    full = largest_saved(tiny_model(vocab_size=vocab_size).train())
    chunked = largest_saved(tiny_model(vocab_size=vocab_size, item_chunk_size=256).train())
    assert full >= num_masked * (vocab_size - 2)
    assert chunked < num_masked * 256


def test_eval_mode_chunked_model_still_returns_logits():
    model = tiny_model(vocab_size=VOCAB, item_chunk_size=32)
    reference = tiny_model(vocab_size=VOCAB)
    inputs, attention_mask, labels = masked_batch(model.config)
    got = model(inputs, attention_mask=attention_mask, labels=labels)
    expected = reference(inputs, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got.loss, expected.loss)


def _hidden_and_targets(model, seed=0):
    inputs, attention_mask, labels = masked_batch(model.config, seed=seed)
    hidden = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state
    predicted = labels.ne(-100)
    return hidden[predicted].detach(), labels[predicted]


def test_sampled_softmax_follows_its_formula():
    """Shared negatives, logQ correction log(K q), accidental hits masked, checked term by term."""
    model = tiny_model(vocab_size=12, loss_type="SSM", num_sampled_negatives=6).train()
    hidden, targets = _hidden_and_targets(model)
    weights = torch.tensor([0.0, 0.0, 5, 1, 1, 2, 8, 1, 3, 1, 1, 4])
    for distribution in ("uniform", "popularity"):
        model.config.sampling_distribution = distribution
        model.set_sampling_weights(weights if distribution == "popularity" else None)
        torch.manual_seed(7)
        loss, logits = model.masked_item_loss(hidden, targets)
        assert logits is None
        torch.manual_seed(7)
        if distribution == "uniform":
            negatives = torch.randint(2, 12, (6,))
            q = torch.full((12,), 1 / 10)
        else:
            q = torch.cat([torch.zeros(2), weights[2:] / weights[2:].sum()])
            negatives = torch.multinomial(q[2:], 6, replacement=True) + 2
        scores = model.item_scorer(hidden).all().detach()
        terms = []
        for row, target in enumerate(targets.tolist()):
            pairs = zip(negatives.tolist(), scores[row, negatives].tolist(), strict=True)
            kept = [s - math.log(6 * q[n]) for n, s in pairs if n != target]
            terms.append(-scores[row, target] + torch.logsumexp(torch.tensor([float(scores[row, target]), *kept]), 0))
        assert any(n in targets.tolist() for n in negatives.tolist())  # an accidental hit is exercised
        torch.testing.assert_close(loss, torch.stack(terms).mean().float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_sampled_softmax_approaches_the_full_softmax_with_many_samples(distribution):
    model = tiny_model(vocab_size=VOCAB, loss_type="SSM", num_sampled_negatives=400_000).train()
    model.config.sampling_distribution = distribution
    model.set_sampling_weights(torch.linspace(0.5, 3, VOCAB) ** 2)
    hidden, targets = _hidden_and_targets(model, seed=4)
    torch.manual_seed(0)
    sampled, _ = model.masked_item_loss(hidden, targets)
    model.eval()  # SSM evaluates the exact cross-entropy it estimates
    exact, logits = model.masked_item_loss(hidden, targets)
    reference = torch.nn.functional.cross_entropy(model.item_scorer(hidden).all(), targets)
    torch.testing.assert_close(exact, reference)
    assert logits is not None
    assert abs(sampled.item() - exact.item()) < 5e-3 * exact.item()


def test_popularity_sampling_needs_weights():
    model = tiny_model(loss_type="SSM", sampling_distribution="popularity").train()
    hidden, targets = _hidden_and_targets(model)
    with pytest.raises(ValueError, match="set_sampling_weights"):
        model.masked_item_loss(hidden, targets)
    with pytest.raises(ValueError, match=r"shape \(52,\)"):
        model.set_sampling_weights(torch.ones(10))


def test_sampled_softmax_trains_through_forward():
    model = tiny_model(vocab_size=VOCAB, loss_type="SSM", num_sampled_negatives=64).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, attention_mask, labels = masked_batch(model.config, batch=16, seed=9)
    model.eval()
    before = model(inputs, attention_mask=attention_mask, labels=labels).loss.item()
    model.train()
    for _ in range(12):
        optimizer.zero_grad()
        out = model(inputs, attention_mask=attention_mask, labels=labels)
        assert out.logits is None
        out.loss.backward()
        optimizer.step()
    model.eval()
    assert model(inputs, attention_mask=attention_mask, labels=labels).loss.item() < 0.7 * before


@pytest.mark.parametrize("mode, exclude_history", [("full", False), ("full", True), ("uni20", False), ("pop20", False)])
def test_chunked_ranking_equals_ranking_full_score_rows(mode, exclude_history, monkeypatch):
    monkeypatch.setattr(evaluator_module, "SCAN_ROWS", 5)  # several row blocks too
    model = tiny_model(vocab_size=VOCAB)
    inputs, attention_mask, labels = masked_batch(model.config, batch=12, seed=5)
    inputs[0, -2] = labels[0, -1]  # a repeat consumption: the target is also in the history
    inputs[1, -3] = inputs[1, -4] = inputs[1, -5].clamp(min=2)  # an item seen several times
    evaluator = RankingEvaluator(
        mode, exclude_history=exclude_history, item_popularity=count_item_popularity(inputs.tolist(), VOCAB)
    )
    with torch.no_grad():
        hidden = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state[labels.ne(-100)]
        expected = evaluator.rank_labelled(model.item_scorer(hidden).all(), labels, inputs)
        for chunk_size in (7, 64, 1000):
            got = evaluator.rank_labelled_hidden_states(model, hidden, labels, inputs, chunk_size=chunk_size)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_chunked_ranking_counts_ties_against_the_target():
    model = tiny_model(vocab_size=VOCAB, seen_item_bias=False)  # ranks states without their input
    with torch.no_grad():
        model.head.decoder.bias.zero_()
        model.head.decoder.weight.zero_()  # every item scores 0: the target ranks last
    hidden, targets = _hidden_and_targets(model)
    ranks = RankingEvaluator().rank_hidden_states(model, hidden, None, targets, chunk_size=10)
    assert torch.equal(ranks, torch.full_like(targets, VOCAB - 3))


@pytest.mark.parametrize("chunk_size", [-4, 2.5, True])
def test_chunked_ranking_refuses_a_bad_chunk_size(chunk_size):
    """A negative chunk scanned no item at all: every target ranked first (Hit@1 = 1)."""
    model = tiny_model(vocab_size=VOCAB, seen_item_bias=False)  # ranks states without their input
    hidden, targets = _hidden_and_targets(model)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        RankingEvaluator().rank_hidden_states(model, hidden, None, targets, chunk_size=chunk_size)
    default = RankingEvaluator().rank_hidden_states(model, hidden, None, targets, chunk_size=0)
    assert torch.equal(default, RankingEvaluator().rank_hidden_states(model, hidden, None, targets))


def _collate(features):
    width = max(len(f["input_ids"]) for f in features) + 1
    input_ids = torch.zeros(len(features), width, dtype=torch.long)
    for row, feature in enumerate(features):
        history = torch.tensor(feature["input_ids"])
        input_ids[row, width - 1 - len(history) : width - 1] = history
    input_ids[:, -1] = 1
    labels = torch.full_like(input_ids, -100)
    labels[:, -1] = torch.tensor([f["labels"] for f in features])
    return {"input_ids": input_ids, "attention_mask": input_ids.ne(0).long(), "labels": labels}


def test_trainer_evaluates_a_chunked_model_like_an_unchunked_one(tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    histories = [torch.randint(2, VOCAB, (int(n),), generator=generator).tolist() for n in torch.randint(1, 10, (21,))]
    targets = torch.randint(2, VOCAB, (21,), generator=generator).tolist()
    dataset = Dataset.from_dict({"input_ids": histories, "labels": targets})
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True
    )
    results = []
    for chunk_size in (0, 17):
        torch.manual_seed(0)
        model = Bert4RecForMaskedItemPrediction(tiny_config(vocab_size=VOCAB, item_chunk_size=chunk_size))
        trainer = Bert4RecTrainer(
            model=model,
            args=args,
            data_collator=_collate,
            eval_dataset=dataset,
            evaluator=RankingEvaluator(ks=(1, 5, 10), exclude_history=True),
        )
        if chunk_size:  # the chunked path never asks for whole score rows
            monkeypatch.setattr(ItemScorer, "all", None)
        results.append(trainer.evaluate())
    assert results[1]["eval_num_users"] == 21
    for key, value in results[0].items():
        if not any(word in key for word in ("time", "per_second")):
            assert results[1][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_below_target_by_sign_bit_matches_a_comparison(dtype):
    """The scan's sign-bit count agrees with ``score < target`` on every special
    value: ties (also -0 against +0) and NaN scores or targets count against the target."""
    special = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-30, -1e-30, 3.0e38]
    values = torch.tensor(special, dtype=dtype)
    scores = torch.cat([values, torch.randn(40, dtype=dtype)]).expand(len(special), -1).contiguous()
    thresholds = values[:, None]
    expected = -(scores < thresholds).int()
    got = evaluator_module._below(scores.clone(), thresholds)
    assert torch.equal(got.long(), expected.long())


def _targets_at_ranks(model, hidden, ranks):
    """For each row, the item whose score is at the given 0-based position of the
    row's descending order (so the truncated scan meets low, borderline and
    high ranks)."""
    with torch.no_grad():
        order = model.item_scorer(hidden).all()[:, 2:].argsort(dim=1, descending=True) + 2
    return order.gather(1, torch.as_tensor(ranks)[:, None])[:, 0]


@pytest.mark.parametrize("exclude_history", [False, True])
def test_truncated_ranking_is_exact_below_the_limit(exclude_history, monkeypatch):
    monkeypatch.setattr(evaluator_module, "SCAN_ROWS", 8)  # several row blocks, each with its own probe
    model = tiny_model(vocab_size=VOCAB)
    inputs, attention_mask, labels = masked_batch(model.config, batch=40, seed=4)
    with torch.no_grad():
        hidden = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state[:, -1]
    wanted = [0, 1, 4, 9, 10, 11, 30, 150] * 5
    targets = _targets_at_ranks(model, hidden, wanted)
    inputs[:3, -2] = targets[:3]  # repeat consumption: the target is also in the history
    exact = RankingEvaluator(ks=(5, 10), exclude_history=exclude_history)
    truncated = RankingEvaluator(ks=(5, 10), exclude_history=exclude_history, truncate_ranks=True)
    expected = exact.rank_hidden_states(model, hidden, inputs, targets, chunk_size=16)
    assert (expected < 10).sum() >= 15 and (expected > 10).sum() >= 10
    scanned = []
    scan = evaluator_module.RankingEvaluator._scan_until
    monkeypatch.setattr(
        evaluator_module.RankingEvaluator,
        "_scan_until",
        staticmethod(lambda model, hidden, *rest: scanned.append(hidden.shape[0]) or scan(model, hidden, *rest)),
    )
    got = truncated.rank_hidden_states(model, hidden, inputs, targets, chunk_size=16)
    assert torch.equal(got, expected.clamp(max=10))
    assert scanned and scanned[0] < 40  # users settled by the probe skip the catalog scan
    with torch.no_grad():  # the score-row path truncates the same way
        assert torch.equal(truncated.rank(model.item_scorer(hidden).all(), inputs, targets), got)


def test_truncated_ranks_leave_every_at_k_metric_unchanged(tmp_path):
    generator = torch.Generator().manual_seed(1)
    histories = [torch.randint(2, VOCAB, (int(n),), generator=generator).tolist() for n in torch.randint(1, 10, (30,))]
    model = tiny_model(vocab_size=VOCAB)
    batch = _collate([{"input_ids": h, "labels": 2} for h in histories])
    with torch.no_grad():
        hidden = model.base_model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, -1]
    targets = _targets_at_ranks(model, hidden, [0, 2, 5, 19, 20, 80] * 5).tolist()
    dataset = Dataset.from_dict({"input_ids": histories, "labels": targets})
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=8, report_to=[], use_cpu=True, disable_tqdm=True
    )
    trainer = Bert4RecTrainer(model=model, args=args, data_collator=_collate, eval_dataset=dataset, eval_loss=False)
    results = {}
    for truncate in (False, True):  # the evaluator is swapped after construction: its metrics follow
        trainer.evaluator = RankingEvaluator(ks=(5, 20), truncate_ranks=truncate)
        results[truncate] = trainer.evaluate()
    assert "eval_mrr" in results[False] and "eval_mrr" not in results[True]
    assert results[False]["eval_hit@20"] == pytest.approx(20 / 30)
    for key, value in results[True].items():
        if "@" in key or key == "eval_num_users":
            assert value == results[False][key], key
    assert "ranks counted up to 20" in trainer.evaluator.describe()


def test_shared_item_ids_score_like_per_row_ids():
    model = tiny_model(vocab_size=VOCAB)
    hidden, _ = _hidden_and_targets(model)
    ids = torch.tensor([5, 2, 202, 17, 5])
    with torch.no_grad():
        shared = model.item_scorer(hidden).chosen(ids)
        per_row = model.item_scorer(hidden).chosen(ids.expand(hidden.shape[0], -1))
    torch.testing.assert_close(shared, per_row)


def test_scan_until_stops_counting_a_row_at_the_limit(monkeypatch):
    monkeypatch.setattr(evaluator_module, "SCAN_ROWS", 2)  # blocks of 2 rows x 16 items
    model = tiny_model(vocab_size=VOCAB)
    hidden, _ = _hidden_and_targets(model)
    targets = _targets_at_ranks(model, hidden, [VOCAB - 3] * hidden.shape[0])  # every target scores last
    scored = []
    score_range = ItemScorer.range
    monkeypatch.setattr(
        ItemScorer, "range", lambda self, *ids: scored.append(self.num_rows * (ids[1] - ids[0])) or score_range(self, *ids)
    )
    with torch.no_grad():
        scorer = model.item_scorer(hidden)
        target_scores = scorer.targets(targets)[:, None]
        counts = RankingEvaluator._scan_until(scorer, target_scores, targets[:, None], 16, limit=10)
    assert torch.equal(counts, torch.full_like(counts, 16))  # one block of 16 items settles every row
    assert sum(scored) == hidden.shape[0] * 16
