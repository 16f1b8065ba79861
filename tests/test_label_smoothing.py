"""Label smoothing, the softmax temperature and an untied output matrix: the loss/head options of
the full-ranking ablations (issue 24), from the loss formula to a trained and reloaded model folder."""

import pytest
import torch
from torch.nn import functional as F

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, run_bert4rec

from .helpers import masked_batch, tiny_model, write_ml100k_slice

VOCAB = 203  # 201 real items


def _smoothed_reference(model, batch, epsilon, temperature=1.0):
    """Label-smoothed cross-entropy written out: (1 - eps) * CE + eps * mean over the real items
    of -log p(item), p the softmax of the full score matrix (seen-item offset included) divided
    by the temperature."""
    inputs, attention_mask, labels = batch
    hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    predicted = labels.ne(-100)
    rows = inputs[predicted.nonzero()[:, 0]]
    scores = model.item_scorer(hidden[predicted], rows).range()  # real items only
    log_p = (scores.float() / temperature).log_softmax(1)
    targets = labels[predicted] - 2
    nll = -log_p.gather(1, targets[:, None])[:, 0]
    return ((1 - epsilon) * nll + epsilon * -log_p.mean(1)).mean()


def _loss_and_grads(model, batch):
    model.zero_grad()
    inputs, attention_mask, labels = batch
    loss = model(inputs, attention_mask=attention_mask, labels=labels).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_size", [0, 16])
def test_label_smoothing_is_the_smoothed_cross_entropy_chunked_or_not(chunk_size):
    epsilon = 0.2
    model = tiny_model(seed=4, vocab_size=VOCAB, label_smoothing=epsilon, item_chunk_size=chunk_size).train()
    with torch.no_grad():
        model.head.seen_item_bias.fill_(1.5)  # the offset's share of the mean score counts too
    batch = masked_batch(model.config, batch=7, seed=3)
    loss, grads = _loss_and_grads(model, batch)
    torch.testing.assert_close(loss, _smoothed_reference(model, batch, epsilon))

    plain_loss, _ = _loss_and_grads(tiny_model(seed=4, vocab_size=VOCAB, item_chunk_size=chunk_size).train(), batch)
    assert loss > plain_loss  # smoothing charges for the mass kept off the other items

    reference = tiny_model(seed=4, vocab_size=VOCAB, label_smoothing=epsilon).train()  # unchunked
    with torch.no_grad():
        reference.head.seen_item_bias.fill_(1.5)
    _, expected = _loss_and_grads(reference, batch)
    for name, grad in expected.items():
        torch.testing.assert_close(grads[name], grad, msg=name)

    model.eval()  # evaluation losses stay the plain cross-entropy
    inputs, attention_mask, labels = batch
    with torch.no_grad():
        out = model(inputs, attention_mask=attention_mask, labels=labels)
        logits = model(inputs, attention_mask=attention_mask).logits
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, labels[labels.ne(-100)]))


@pytest.mark.parametrize("chunk_size", [0, 16])
@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_softmax_temperature_divides_every_score_of_the_loss(chunk_size, epsilon):
    temperature = 0.25
    overrides = dict(vocab_size=VOCAB, label_smoothing=epsilon, softmax_temperature=temperature)
    model = tiny_model(seed=5, item_chunk_size=chunk_size, **overrides).train()
    with torch.no_grad():
        model.head.seen_item_bias.fill_(0.7)  # the offset is a score too: divided with the rest
    batch = masked_batch(model.config, batch=7, seed=2)
    loss, grads = _loss_and_grads(model, batch)
    torch.testing.assert_close(loss, _smoothed_reference(model, batch, epsilon, temperature))
    plain_loss, _ = _loss_and_grads(tiny_model(seed=5, vocab_size=VOCAB, label_smoothing=epsilon).train(), batch)
    assert not torch.isclose(loss, plain_loss)

    reference = tiny_model(seed=5, **overrides).train()  # unchunked
    with torch.no_grad():
        reference.head.seen_item_bias.fill_(0.7)
    _, expected = _loss_and_grads(reference, batch)
    for name, grad in expected.items():
        torch.testing.assert_close(grads[name], grad, msg=name)

    model.eval()  # the scores the model ranks by stay undivided: the same items come first
    inputs, attention_mask, labels = batch
    with torch.no_grad():
        out = model(inputs, attention_mask=attention_mask, labels=labels)
        hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
        predicted = labels.ne(-100)
        scores = model.item_scorer(hidden[predicted], inputs[predicted.nonzero()[:, 0]]).all()
    torch.testing.assert_close(out.logits, scores)
    torch.testing.assert_close(out.loss, F.cross_entropy(scores / temperature, labels[predicted]))


def test_softmax_temperature_divides_the_pairwise_and_sampled_losses():
    temperature = 2.0
    batch = masked_batch(tiny_model(vocab_size=VOCAB).config, batch=5, seed=6)
    inputs, attention_mask, labels = batch
    negatives = torch.randint(2, VOCAB, (*inputs.shape, 3), generator=torch.Generator().manual_seed(0))
    losses = {}
    for tau in (1.0, temperature):
        model = tiny_model(seed=1, vocab_size=VOCAB, loss_type="BPR", num_negatives=3, softmax_temperature=tau)
        with torch.no_grad():
            model.head.seen_item_bias.fill_(-0.4)
            losses[tau] = model(inputs, attention_mask=attention_mask, labels=labels, negative_ids=negatives).loss
            hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    predicted = labels.ne(-100)
    scorer = model.item_scorer(hidden[predicted], inputs[predicted.nonzero()[:, 0]])
    scores = scorer.chosen(torch.cat([labels[predicted][:, None], negatives[predicted]], dim=1))
    expected = -F.logsigmoid((scores[:, :1] - scores[:, 1:]) / temperature).mean()
    torch.testing.assert_close(losses[temperature], expected)
    assert not torch.isclose(losses[temperature], losses[1.0])


def test_mean_score_is_the_mean_over_the_real_items():
    model = tiny_model(seed=2, vocab_size=VOCAB)
    with torch.no_grad():
        model.head.seen_item_bias.fill_(-2.0)
    inputs, attention_mask, _ = masked_batch(model.config, batch=5, seed=1)
    with torch.no_grad():
        hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state[:, -1]
        scorer = model.item_scorer(hidden, inputs)
        torch.testing.assert_close(scorer.mean(), scorer.range().mean(1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(label_smoothing=1.0), "label_smoothing must be in [0, 1)"),
        (dict(label_smoothing=-0.1), "label_smoothing must be in [0, 1)"),
        (dict(label_smoothing=0.1, loss_type="BPR"), "applies to loss_type 'CE' only"),
        (dict(softmax_temperature=0), "softmax_temperature must be a positive number"),
        (dict(softmax_temperature=-1.0), "softmax_temperature must be a positive number"),
        (dict(softmax_temperature=float("nan")), "softmax_temperature must be a positive number"),
        (dict(softmax_temperature=float("inf")), "softmax_temperature must be a positive number"),
        (dict(softmax_temperature=True), "softmax_temperature must be a positive number"),
    ],
)
def test_invalid_loss_options_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Bert4RecConfig(**overrides)


def test_run_settings_reach_the_trained_model_and_survive_reloading(tmp_path):
    log = write_ml100k_slice(tmp_path / "slice.csv", 30)
    settings = {
        "data_path": str(log), "schedule": "fixed", "max_steps": 6, "hidden_size": 16, "inner_size": 32,
        "n_layers": 1, "max_seq_length": 20, "train_batch_size": 32, "label_smoothing": 0.1,
        "softmax_temperature": 0.5, "tie_word_embeddings": False,
    }  # fmt: skip
    run_bert4rec("slice", config_dict=settings, output_dir=tmp_path / "model")
    model = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "model")
    assert model.config.label_smoothing == 0.1 and model.config.tie_word_embeddings is False
    assert model.config.softmax_temperature == 0.5
    decoder, embeddings = model.head.decoder.weight, model.get_input_embeddings().weight
    assert decoder.data_ptr() != embeddings.data_ptr() and not torch.equal(decoder, embeddings)
