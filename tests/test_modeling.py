import pytest
import torch
from transformers import Trainer, TrainingArguments, set_seed

from bert4rec_hf import Bert4RecForMaskedItemPrediction, Bert4RecModel

from .helpers import MaskedRows, masked_batch, tiny_config, tiny_model


def brute_force_logits(model, inputs, attention_mask):
    """Scores of every position against every vocabulary entry (B x L x V)."""
    hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    head = model.head
    transformed = head.LayerNorm(head.transform_act_fn(head.dense(hidden)))
    return transformed @ model.bert4rec.embeddings.item_embeddings.weight.T + head.decoder.bias


def test_shapes_and_dtypes():
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config)
    out = model(inputs, attention_mask=attention_mask, labels=labels)
    num_masked = int(labels.ne(-100).sum())
    assert out.logits.shape == (num_masked, model.config.vocab_size)
    assert out.logits.dtype == torch.float32 and out.loss.dim() == 0
    assert torch.isneginf(out.logits[:, :2]).all() and torch.isfinite(out.logits[:, 2:]).all()
    base = Bert4RecModel(model.config)(inputs, attention_mask=attention_mask)
    assert base.last_hidden_state.shape == (*inputs.shape, model.config.hidden_size)
    no_labels = model(inputs, attention_mask=attention_mask)
    assert no_labels.loss is None and no_labels.logits.shape == (int(inputs.eq(1).sum()), model.config.vocab_size)
    assert model.next_item_scores(inputs.clamp(min=0)).shape == (inputs.shape[0], model.config.vocab_size)


def test_hidden_states_and_attentions_are_returned():
    model = tiny_model(attn_implementation="eager")
    inputs, attention_mask, _ = masked_batch(model.config)
    out = model(inputs, attention_mask=attention_mask, output_hidden_states=True, output_attentions=True)
    assert len(out.attentions) == model.config.n_layers
    assert out.attentions[0].shape == (inputs.shape[0], model.config.n_heads, inputs.shape[1], inputs.shape[1])
    assert len(out.hidden_states) == model.config.n_layers + 1


def test_weights_are_tied_and_stay_tied(tmp_path):
    model = tiny_model()
    assert model.head.decoder.weight is model.bert4rec.embeddings.item_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path)
    assert loaded.head.decoder.weight is loaded.bert4rec.embeddings.item_embeddings.weight
    old = loaded.bert4rec.embeddings.item_embeddings.weight.detach().clone()
    loaded.resize_token_embeddings(60)
    assert loaded.config.vocab_size == 60
    assert loaded.head.decoder.weight is loaded.bert4rec.embeddings.item_embeddings.weight
    assert loaded.head.decoder.bias.shape == (60,)
    assert torch.equal(loaded.bert4rec.embeddings.item_embeddings.weight[:52], old)


def test_save_load_gives_identical_outputs(tmp_path):
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config)
    expected = model(inputs, attention_mask=attention_mask, labels=labels)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path).eval()
    got = loaded(inputs, attention_mask=attention_mask, labels=labels)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.loss, expected.loss)


def test_sdpa_and_eager_agree_on_padded_batches():
    sdpa = tiny_model(attn_implementation="sdpa")
    eager = tiny_model(attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    inputs, attention_mask, labels = masked_batch(sdpa.config, batch=8)
    assert attention_mask.eq(0).any()
    a = sdpa(inputs, attention_mask=attention_mask, labels=labels)
    b = eager(inputs, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(a.logits[:, 2:], b.logits[:, 2:], atol=1e-5, rtol=1e-5)


def test_flex_attention_evaluates_like_sdpa_and_training_reaches_its_own_checks():
    flex = tiny_model(attn_implementation="flex_attention", attn_dropout_prob=0.2)
    sdpa = tiny_model(attn_implementation="sdpa", attn_dropout_prob=0.2)
    inputs, attention_mask, labels = masked_batch(sdpa.config, batch=8)
    with torch.no_grad():  # flex attention has no CPU backward
        a = flex(inputs, attention_mask=attention_mask, labels=labels)
        b = sdpa(inputs, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(a.logits[:, 2:], b.logits[:, 2:], atol=1e-5, rtol=1e-5)
    # training with attention dropout on CPU: transformers' own refusal (dropout), not an
    # AttributeError from the CPU dropout path reading a BlockMask as a tensor
    with pytest.raises(ValueError, match="does not support `dropout`"):
        with torch.no_grad():
            flex.train()(inputs, attention_mask=attention_mask, labels=labels)


def test_padding_never_changes_real_positions():
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config, length=8)
    reference = model(inputs, attention_mask=attention_mask, labels=labels).logits
    # more padding on the left: right-aligned positions keep every real position's output
    wider = torch.nn.functional.pad(inputs, (4, 0), value=0)
    wider_mask = torch.nn.functional.pad(attention_mask, (4, 0), value=0)
    wider_labels = torch.nn.functional.pad(labels, (4, 0), value=-100)
    torch.testing.assert_close(model(wider, attention_mask=wider_mask, labels=wider_labels).logits, reference)
    # garbage in padded slots is ignored when the attention mask says padding
    garbage = torch.where(attention_mask.bool(), inputs, torch.full_like(inputs, 7))
    torch.testing.assert_close(model(garbage, attention_mask=attention_mask, labels=labels).logits, reference)


def test_ce_loss_equals_brute_force_full_softmax():
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config)
    loss = model(inputs, attention_mask=attention_mask, labels=labels).loss
    logits = brute_force_logits(model, inputs, attention_mask)
    terms = []
    for b, position in labels.ne(-100).nonzero().tolist():
        row = logits[b, position, 2:]  # softmax over real items only
        terms.append(-(row[labels[b, position] - 2] - torch.logsumexp(row, 0)))
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_bpr_loss_equals_its_formula_with_negatives():
    model = tiny_model(loss_type="BPR", num_negatives=3)
    model.train()  # BPR with negatives skips the full score matrix while training
    inputs, attention_mask, labels = masked_batch(model.config)
    negatives = torch.randint(
        2, model.config.vocab_size, (*inputs.shape, 3), generator=torch.Generator().manual_seed(1)
    )
    out = model(inputs, attention_mask=attention_mask, labels=labels, negative_ids=negatives)
    assert out.logits is None
    logits = brute_force_logits(model, inputs, attention_mask)
    terms = []
    for b, position in labels.ne(-100).nonzero().tolist():
        pos = logits[b, position, labels[b, position]]
        negs = logits[b, position, negatives[b, position]]
        terms.append(-torch.log(torch.sigmoid(pos - negs)).mean())
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())


def test_bpr_without_negatives_ranks_against_every_other_item():
    model = tiny_model(loss_type="BPR")
    inputs, attention_mask, labels = masked_batch(model.config)
    loss = model(inputs, attention_mask=attention_mask, labels=labels).loss
    logits = brute_force_logits(model, inputs, attention_mask)
    terms = []
    for b, position in labels.ne(-100).nonzero().tolist():
        target = labels[b, position]
        others = torch.cat([logits[b, position, 2:target], logits[b, position, target + 1 :]])
        terms.append(-torch.log(torch.sigmoid(logits[b, position, target] - others)).mean())
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_labels_on_special_tokens_are_rejected():
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config)
    labels[0, -1] = 1
    with pytest.raises(ValueError, match="real item ids"):
        model(inputs, attention_mask=attention_mask, labels=labels)


def test_num_items_in_batch_makes_accumulated_loss_and_gradients_exact():
    """Two half batches scaled by the total count sum to the full-batch loss, as
    under gradient accumulation or with one shard per process."""
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config, batch=8, seed=3)
    total = labels.ne(-100).sum()
    full = model(inputs, attention_mask=attention_mask, labels=labels).loss
    full.backward()
    full_grad = model.head.dense.weight.grad.clone()
    model.zero_grad()
    # halves with unequal masked counts: a mean per half would weigh items wrongly
    halves = [slice(0, 3), slice(3, 8)]
    assert labels[halves[0]].ne(-100).sum() != labels[halves[1]].ne(-100).sum()
    accumulated = 0
    for part in halves:
        loss = model(
            inputs[part], attention_mask=attention_mask[part], labels=labels[part], num_items_in_batch=total
        ).loss
        loss.backward()
        accumulated = accumulated + loss.detach()
    torch.testing.assert_close(accumulated, full.detach())
    torch.testing.assert_close(model.head.dense.weight.grad, full_grad)


def _one_trainer_step(tmp_path, batch_size, accumulation):
    model = tiny_model(seed=5)
    data = MaskedRows(masked_batch(model.config, batch=8, seed=4))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.1,
        optim="sgd",
        lr_scheduler_type="constant",
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        max_grad_norm=0.0,
        dataloader_drop_last=False,
    )
    Trainer(model=model, args=args, train_dataset=data).train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_trainer_gradient_accumulation_matches_full_batch(tmp_path):
    full = _one_trainer_step(tmp_path / "full", batch_size=8, accumulation=1)
    accumulated = _one_trainer_step(tmp_path / "acc", batch_size=3, accumulation=3)
    for name, value in full.items():
        torch.testing.assert_close(accumulated[name], value, msg=name)


def test_fixed_seed_is_deterministic():
    config = tiny_config(hidden_dropout_prob=0.3, attn_dropout_prob=0.3)
    outputs = []
    for _ in range(2):
        set_seed(11)
        model = Bert4RecForMaskedItemPrediction(config).train()
        inputs, attention_mask, labels = masked_batch(config)
        outputs.append(model(inputs, attention_mask=attention_mask, labels=labels).loss)
    assert torch.equal(outputs[0], outputs[1])


def test_next_item_scores_append_mask_and_keep_recent_items():
    model = tiny_model()
    histories = torch.randint(2, 52, (3, 20))
    scores = model.next_item_scores(histories)
    last = torch.cat([histories[:, -11:], torch.ones(3, 1, dtype=torch.long)], dim=1)
    expected = model(last, labels=torch.cat([torch.full((3, 11), -100), histories[:, :1]], dim=1)).logits
    torch.testing.assert_close(scores, expected)


def test_score_items_and_chunks_agree_with_full_score_rows():
    model = tiny_model()
    inputs, attention_mask, labels = masked_batch(model.config)
    with torch.no_grad():
        hidden = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state[labels.ne(-100)]
        full = model.item_scorer(hidden).all()
        ids = torch.randint(2, model.config.vocab_size, (hidden.shape[0], 5))
        torch.testing.assert_close(model.item_scorer(hidden).chosen(ids), full.gather(1, ids))
        for chunk_size in (7, 50, 1000):
            chunks = list(model.item_scorer(hidden).chunks(chunk_size))
            assert [start for start, _ in chunks] == list(range(2, model.config.vocab_size, chunk_size))
            torch.testing.assert_close(torch.cat([scores for _, scores in chunks], dim=1), full[:, 2:])




def test_scores_stay_float32_under_bf16_autocast():
    """bf16 scores of a 5,000-item catalog tie by the hundreds (ties count
    against the target), so ranking scores are computed in float32."""
    model = tiny_model(vocab_size=5002).eval()
    hidden = torch.randn(8, model.config.hidden_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        transformed = model.head.transform(hidden)
        scores = model.item_scorer(hidden).all()
        chosen = model.item_scorer(hidden).chosen(torch.arange(2, 5002).expand(8, -1))
        chunks = torch.cat([scores for _, scores in model.item_scorer(hidden).chunks(999)], dim=1)
        low_precision = transformed.bfloat16() @ model.head.decoder.weight.bfloat16().t()
    assert scores.dtype == chosen.dtype == chunks.dtype == torch.float32
    torch.testing.assert_close(chosen, scores[:, 2:])
    torch.testing.assert_close(chunks, scores[:, 2:])
    distinct = min(len(row.unique()) for row in scores[:, 2:])
    assert distinct > 4990 and max(len(row.unique()) for row in low_precision[:, 2:]) < 4000
def test_training_with_item_chunks_returns_no_logits_and_the_same_loss():
    inputs, attention_mask, labels = masked_batch(tiny_config())
    chunked = tiny_model(item_chunk_size=8).train()
    full = tiny_model().train()
    out = chunked(inputs, attention_mask=attention_mask, labels=labels)
    assert out.logits is None
    torch.testing.assert_close(out.loss, full(inputs, attention_mask=attention_mask, labels=labels).loss)
    loss, logits = full.masked_item_loss(
        full.base_model(inputs, attention_mask=attention_mask).last_hidden_state[labels.ne(-100)],
        labels[labels.ne(-100)],
        return_logits=False,
    )
    assert logits is None and torch.isfinite(loss)


def test_sampling_weights_are_not_saved(tmp_path):
    model = tiny_model(loss_type="SSM", sampling_distribution="popularity")
    model.set_sampling_weights(torch.arange(52.0))
    assert "sampling_weights" not in model.state_dict()
    model.save_pretrained(tmp_path)
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path)
    assert loaded.sampling_weights is None and loaded.config.sampling_distribution == "popularity"
    with pytest.raises(ValueError, match="not all zero"):
        model.set_sampling_weights(torch.zeros(52))


def test_checkpoint_reload_misses_only_the_tied_decoder_which_the_trainer_reties(tmp_path):
    """load_best_model_at_end loads a checkpoint's state dict non-strictly: the only
    missing key must be the tied decoder weight the model declares, so the Trainer
    re-ties it instead of warning about missing keys."""
    from safetensors.torch import load_file

    model = tiny_model()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    assert "head.decoder.weight" not in state
    fresh = tiny_model(seed=1)
    result = fresh.load_state_dict(state, strict=False)
    assert set(result.missing_keys) == set(fresh._keys_to_ignore_on_save) and not result.unexpected_keys
    fresh.tie_weights()
    assert fresh.head.decoder.weight.data_ptr() == fresh.bert4rec.embeddings.item_embeddings.weight.data_ptr()
    assert torch.equal(fresh.head.decoder.weight, model.head.decoder.weight)


def test_untied_output_matrix_is_saved_and_restored(tmp_path):
    """With tie_word_embeddings=False the output matrix is a weight of its own: it must
    reach the file, come back from it, and leave a checkpoint reload nothing missing."""
    from safetensors.torch import load_file

    model = tiny_model(tie_word_embeddings=False)
    assert model.head.decoder.weight is not model.bert4rec.embeddings.item_embeddings.weight
    with torch.no_grad():
        model.head.decoder.weight.mul_(-3.0)  # unlike the input embeddings and a fresh init
    inputs, attention_mask, labels = masked_batch(model.config)
    expected = model(inputs, attention_mask=attention_mask, labels=labels)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    assert torch.equal(state["head.decoder.weight"], model.head.decoder.weight)
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path).eval()
    assert loaded.head.decoder.weight is not loaded.bert4rec.embeddings.item_embeddings.weight
    assert torch.equal(loaded.head.decoder.weight, model.head.decoder.weight)
    reloaded = loaded(inputs, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(reloaded.logits, expected.logits)
    result = tiny_model(seed=1, tie_word_embeddings=False).load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize(
    "override, field",
    [
        (dict(loss_type="bpr"), "loss_type"),
        (dict(hidden_act="foo"), "hidden_act"),
        (dict(n_heads=3), "n_heads"),
        (dict(mask_ratio=1.5), "mask_ratio"),
        (dict(sampling_distribution="pop"), "sampling_distribution"),
    ],
)
def test_from_pretrained_overrides_are_validated(tmp_path, override, field):
    """transformers sets ``from_pretrained(path, **overrides)`` after ``__init__``: a bad
    override (e.g. ``loss_type="bpr"``, which would train with CE) must still be refused."""
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=field):
        Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path, **override)
    good = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path, loss_type="BPR", num_negatives=3)
    assert (good.config.loss_type, good.config.num_negatives) == ("BPR", 3)


@pytest.mark.parametrize("field", ["layer_norm_eps", "initializer_range"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_epsilon_and_initializer_range_are_refused(field, value):
    """A NaN ``initializer_range`` or ``layer_norm_eps`` would give NaN weights or outputs."""
    with pytest.raises(ValueError, match=f"{field} must be a positive number"):
        tiny_config(**{field: value})
