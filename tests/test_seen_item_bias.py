"""The learned seen-item offset (``Bert4RecConfig.seen_item_bias``)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, RankingEvaluator
from bert4rec_hf.scoring_bert4rec import distinct_items

from .helpers import masked_batch, tiny_config, tiny_model

OFFSET = -1.25


def offset_model(**overrides) -> Bert4RecForMaskedItemPrediction:
    model = tiny_model(**overrides)
    with torch.no_grad():
        model.head.seen_item_bias.fill_(OFFSET)
    return model


def states_and_history(model, seed: int = 0):
    inputs, attention_mask, labels = masked_batch(model.config, seed=seed)
    predicted = labels.ne(-100)
    with torch.no_grad():
        hidden = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state[predicted]
    return hidden, inputs[predicted.nonzero()[:, 0]], labels[predicted]


def test_the_offset_is_on_by_default_and_validated():
    assert Bert4RecConfig().seen_item_bias is True
    assert tiny_model().head.seen_item_bias.item() == 0.0
    assert tiny_model(seen_item_bias=False).head.seen_item_bias is None
    with pytest.raises(ValueError, match="seen_item_bias must be True or False, got 'yes'"):
        Bert4RecConfig(seen_item_bias="yes")


def test_distinct_items_drop_specials_repeats_and_negative_ids():
    history = torch.tensor([[0, 0, 5, 3, 5, 1], [7, 7, 7, 2, -100, 1]])
    assert distinct_items(history).tolist() == [[0, 0, 0, 0, 3, 5], [0, 0, 0, 0, 2, 7]]


def test_the_offset_lands_once_on_each_distinct_item_of_the_row():
    model = offset_model()
    hidden = torch.randn(2, model.config.hidden_size)
    history = torch.tensor([[0, 0, 5, 3, 5, 1], [9, 9, 2, 51, 0, 1]])
    with torch.no_grad():
        delta = model.item_scorer(hidden, history).all() - model.item_scorer(hidden).all()
    expected = torch.zeros(2, model.config.vocab_size - 2)
    expected[0, [5 - 2, 3 - 2]] = OFFSET
    expected[1, [9 - 2, 2 - 2, 51 - 2]] = OFFSET
    torch.testing.assert_close(delta[:, 2:], expected)


def test_chosen_items_and_chunks_agree_with_the_full_scores():
    model = offset_model()
    hidden, history, _ = states_and_history(model)
    with torch.no_grad():
        full = model.item_scorer(hidden, history).all()
        ids = torch.cat([history.clamp(min=2)[:, :4], torch.randint(2, model.config.vocab_size, (len(hidden), 4))], 1)
        torch.testing.assert_close(model.item_scorer(hidden, history).chosen(ids), full.gather(1, ids))
        shared = torch.arange(2, model.config.vocab_size)
        torch.testing.assert_close(model.item_scorer(hidden, history).chosen(shared), full[:, 2:])
        for chunk_size in (5, 13, 1000):
            chunks = torch.cat([scores for _, scores in model.item_scorer(hidden, history).chunks(chunk_size)], 1)
            torch.testing.assert_close(chunks, full[:, 2:])


def test_forward_and_next_item_scores_apply_the_offset_to_the_input_items():
    model = offset_model()
    inputs, attention_mask, labels = masked_batch(model.config)
    logits = model(inputs, attention_mask=attention_mask, labels=labels).logits
    hidden, history, _ = states_and_history(model)
    torch.testing.assert_close(logits, model.item_scorer(hidden, history).all())
    histories = torch.randint(2, 52, (3, 20))
    scores = model.next_item_scores(histories)
    read = histories[:, -(model.config.max_seq_length - 1) :]  # the offset reads the window, not older items
    last = torch.cat([read, torch.ones(3, 1, dtype=torch.long)], dim=1)
    with torch.no_grad():
        state = model.base_model(last).last_hidden_state[:, -1]
    torch.testing.assert_close(scores, model.item_scorer(state, last).all())
    assert not torch.allclose(scores[:, 2:], model.item_scorer(state).all()[:, 2:])


@pytest.mark.parametrize("chunk_size", [7, 16])
def test_chunked_cross_entropy_has_the_full_softmax_loss_and_gradients(chunk_size):
    inputs, attention_mask, labels = masked_batch(tiny_config(), seed=3)
    labels[0, -1] = inputs[0, -2]  # a target the row also shows: the offset enters the target's logit
    gradients = []
    for item_chunk_size in (0, chunk_size):
        model = offset_model(item_chunk_size=item_chunk_size).train()
        loss = model(inputs, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        gradients.append((loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
    (full_loss, full_grads), (chunked_loss, chunked_grads) = gradients
    torch.testing.assert_close(chunked_loss, full_loss)
    assert full_grads["head.seen_item_bias"].abs().item() > 1e-4
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, msg=name)


@pytest.mark.parametrize("loss_type", ["BPR", "SSM"])
def test_sampled_losses_read_the_offset(loss_type):
    """A negative the row shows is scored with the offset: lowering the offset
    lowers a BPR loss whose negatives are all visible items."""
    inputs, attention_mask, labels = masked_batch(tiny_config(), seed=1)
    negatives = None
    if loss_type == "BPR":  # each row's first visible item
        visible = inputs >= 2
        first = inputs.gather(1, visible.int().argmax(1, keepdim=True))
        negatives = first.where(visible.any(1, keepdim=True), 2)[:, :, None].expand(*inputs.shape, 1)
    losses = []
    for offset in (0.0, -3.0):
        model = tiny_model(loss_type=loss_type, num_sampled_negatives=2000).train()
        with torch.no_grad():
            model.head.seen_item_bias.fill_(offset)
        torch.manual_seed(0)
        out = model(inputs, attention_mask=attention_mask, labels=labels, negative_ids=negatives)
        out.loss.backward()
        assert model.head.seen_item_bias.grad.abs().item() > 0
        losses.append(out.loss.item())
    assert losses[1] < losses[0]


def test_training_learns_a_negative_offset_without_repeats_and_a_positive_one_with_them():
    """On histories that never repeat an item the hidden targets are never
    among the visible items; on histories that repeat every item they always are."""
    generator = torch.Generator().manual_seed(0)
    learned = {}
    for repeats in (False, True):
        model = tiny_model(seed=0).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(60):
            items = torch.stack([torch.randperm(50, generator=generator)[:10] + 2 for _ in range(16)])
            if repeats:  # the second half of each history replays the first
                items[:, 5:] = items[:, :5]
            masked = torch.zeros_like(items, dtype=torch.bool)
            masked[torch.arange(16), torch.randint(0, 10, (16,), generator=generator)] = True
            labels = torch.where(masked, items, torch.full_like(items, -100))
            loss = model(items.masked_fill(masked, 1), labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        learned[repeats] = model.head.seen_item_bias.item()
    assert learned[False] < -0.5 and learned[True] > 0.5, learned


@pytest.mark.parametrize("mode", ["full", "uni20"])
@pytest.mark.parametrize("truncate_ranks", [False, True])
def test_hidden_state_ranking_counts_the_offset_as_score_ranking_does(mode, truncate_ranks):
    model = offset_model()
    hidden, history, targets = states_and_history(model, seed=2)
    evaluator = RankingEvaluator(mode=mode, ks=[1, 3], truncate_ranks=truncate_ranks)
    with torch.no_grad():
        expected = evaluator.rank(model.item_scorer(hidden, history).all(), history, targets)
        for chunk_size in (4, 2048):
            ranks = evaluator.rank_hidden_states(model, hidden, history, targets, chunk_size=chunk_size)
            assert ranks.tolist() == expected.tolist()
        plain = evaluator.rank(model.item_scorer(hidden).all(), history, targets)
    if mode == "full" and not truncate_ranks:  # the offset moves full-ranking ranks
        assert plain.tolist() != expected.tolist()
    with pytest.raises(ValueError, match="seen_item_bias.*needs input_ids"):
        RankingEvaluator().rank_hidden_states(model, hidden, None, targets)


def test_the_offset_is_saved_and_a_checkpoint_without_it_scores_as_before(tmp_path):
    model = offset_model()
    model.save_pretrained(tmp_path / "new")
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "new")
    assert loaded.head.seen_item_bias.item() == OFFSET

    # a folder written before the field existed: no config key, no weight
    old = tiny_model(seen_item_bias=False)
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["seen_item_bias"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert "head.seen_item_bias" not in load_file(tmp_path / "old" / "model.safetensors")
    reloaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "old")
    assert reloaded.config.seen_item_bias and reloaded.head.seen_item_bias.item() == 0.0
    histories = torch.randint(2, 52, (4, 9))
    torch.testing.assert_close(reloaded.next_item_scores(histories), old.next_item_scores(histories))
