"""The speed paths (speedups_bert4rec): off in the paper's model, switched on by
the trainer, and the same maths as transformers' own layers."""

import pytest
import torch
from transformers import TrainingArguments

from bert4rec_hf import Bert4RecTrainer
from bert4rec_hf.speedups_bert4rec import (
    CPU_LOSS_CHUNK,
    Bert4RecSelfAttention,
    ItemDropout,
    cpu_loss_chunk_size,
    hidden_states_at,
    use_cpu_speedups,
)

from .helpers import masked_batch, tiny_model


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_item_dropout_keeps_one_minus_p_and_preserves_the_mean(p):
    dropout = ItemDropout(p).train()
    torch.manual_seed(0)
    out = dropout(torch.ones(400_000))
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    assert abs(out.mean().item() - 1.0) < 0.01
    # gradients flow through kept entries only, scaled like nn.Dropout's
    x = torch.randn(1000, requires_grad=True)
    y = dropout(x)
    y.sum().backward()
    assert torch.equal(x.grad != 0, y != 0)


def test_item_dropout_is_the_identity_in_eval_mode_and_seeded_in_training():
    dropout = ItemDropout(0.5)
    x = torch.randn(64, 50, 8)
    assert torch.equal(dropout.eval()(x), x)
    dropout.train()
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x))
    assert not torch.equal(first, dropout(x))


def test_the_paper_model_has_plain_dropout_and_use_cpu_speedups_swaps_every_one():
    model = tiny_model(hidden_dropout_prob=0.3, attn_dropout_prob=0.2)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is torch.nn.Dropout for m in dropouts)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    inputs, attention_mask, _ = masked_batch(model.config)
    model.eval()
    with torch.no_grad():
        before = model(inputs, attention_mask=attention_mask).logits
    assert use_cpu_speedups(model) is model
    with torch.no_grad():  # a model in evaluation mode stays there: no dropout switched back on
        torch.testing.assert_close(model(inputs, attention_mask=attention_mask).logits, before, rtol=0, atol=0)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(isinstance(m, ItemDropout) for m in dropouts)
    assert sorted({m.p for m in dropouts}) == [0.2, 0.3]
    attention = [layer.attention.self for layer in model.bert4rec.encoder.layer]
    assert all(isinstance(module, Bert4RecSelfAttention) for module in attention)
    # no parameter added or changed: checkpoints are the same with or without the speed paths
    assert {name: tensor for name, tensor in model.state_dict().items()}.keys() == state.keys()
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in state.items())


def test_the_trainer_switches_the_speed_paths_on(tmp_path):
    model = tiny_model(hidden_dropout_prob=0.3)
    Bert4RecTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    assert any(isinstance(m, ItemDropout) for m in model.modules())
    assert isinstance(model.bert4rec.encoder.layer[0].attention.self, Bert4RecSelfAttention)


def _loss_and_grads(model, batch):
    model.zero_grad()
    inputs, attention_mask, labels = batch
    out = model(inputs, attention_mask=attention_mask, labels=labels)
    out.loss.backward()
    return out, {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def test_cpu_training_scans_a_large_catalog_in_chunks_with_the_plain_softmax_loss_and_gradients():
    large = 60_002  # ~200 masked rows x 60,000 items: 48 MB of float32 logits
    assert cpu_loss_chunk_size(200, large) == CPU_LOSS_CHUNK and cpu_loss_chunk_size(200, 1_684) == 0
    plain = tiny_model(seed=3, vocab_size=large).train()
    fast = use_cpu_speedups(tiny_model(seed=3, vocab_size=large)).train()
    batch = masked_batch(plain.config, batch=64, length=12, seed=2)
    assert 4 * int(batch[2].ne(-100).sum()) * large > 32 * 2**20
    expected, expected_grads = _loss_and_grads(plain, batch)
    got, grads = _loss_and_grads(fast, batch)
    assert expected.logits is not None and got.logits is None  # the chunked loss: no rows x catalog logits
    torch.testing.assert_close(got.loss, expected.loss)
    assert grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, msg=name)
    assert fast.config.item_chunk_size == 0  # nothing a checkpoint records
    # a small catalog keeps the plain softmax; a config's own chunk is never overridden
    small = use_cpu_speedups(tiny_model(seed=3, vocab_size=203)).train()
    assert _loss_and_grads(small, masked_batch(small.config, batch=64, length=12))[0].logits is not None
    own = use_cpu_speedups(tiny_model(seed=3, vocab_size=large, item_chunk_size=4096)).train()
    own.cpu_loss_chunk_size = lambda rows, vocab_size: pytest.fail("the config names its chunk")
    assert _loss_and_grads(own, batch)[0].logits is None


class _KeepAll(ItemDropout):
    """A dropout that keeps every entry while ``p > 0`` still selects the training path."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_cpu_training_attention_equals_transformers_attention_without_dropout(attn_implementation):
    """With every dropout keeping all entries, the CPU training path (own scores, mask
    and softmax) gives transformers' evaluation outputs, for boolean (sdpa) and
    additive (eager) masks, padded rows included."""
    model = use_cpu_speedups(
        tiny_model(hidden_dropout_prob=0.3, attn_dropout_prob=0.2, attn_implementation=attn_implementation)
    )
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ItemDropout):
                setattr(parent, name, _KeepAll(child.p))
    inputs, attention_mask, _ = masked_batch(model.config)
    reference = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    model.train()
    trained_path = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    assert torch.allclose(trained_path[real], reference[real], atol=1e-5)


def test_cpu_training_attention_dropout_is_unbiased_and_ignores_padding():
    model = use_cpu_speedups(tiny_model(attn_dropout_prob=0.5))
    attention = model.bert4rec.encoder.layer[0].attention.self
    assert isinstance(attention, Bert4RecSelfAttention) and isinstance(attention.dropout, ItemDropout)
    hidden = torch.randn(4, 10, model.config.hidden_size)
    mask = torch.ones(4, 1, 10, 10, dtype=torch.bool)
    mask[:2, ..., :3] = False  # three padded keys in the first two rows
    expected = attention(hidden, mask)[0]
    attention.train()
    torch.manual_seed(0)
    mean = torch.stack([attention(hidden, mask)[0] for _ in range(3000)]).mean(0)
    assert torch.allclose(mean, expected, atol=0.03)
    # padded keys get no attention: changing them leaves every output unchanged
    changed = hidden.clone()
    changed[:2, :3] = torch.randn(2, 3, model.config.hidden_size)
    torch.manual_seed(1)
    first = attention(hidden, mask)[0]
    torch.manual_seed(1)
    assert torch.allclose(attention(changed, mask)[0][:2, 3:], first[:2, 3:], atol=1e-6)
    first.sum().backward()
    assert attention.query.weight.grad is not None and attention.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_hidden_states_at_positions_equal_the_full_encoder(attn_implementation):
    model = tiny_model(attn_implementation=attn_implementation, vocab_size=80)
    inputs, attention_mask, labels = masked_batch(model.config, batch=9, seed=3)
    positions = labels.ne(-100)
    positions[0] = False  # a row with nothing to score
    positions[1, -1] = positions[1, -2] = True  # and one with several positions
    computed_rows = []
    last_layer = model.base_model.encoder.layer[-1]
    handle = last_layer.intermediate.register_forward_hook(lambda _, args, out: computed_rows.append(tuple(args[0].shape)))
    with torch.no_grad():
        expected = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state[positions]
        computed_rows.clear()
        got = hidden_states_at(model.base_model, inputs, positions, attention_mask=attention_mask)
    handle.remove()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the last feed-forward ran on the chosen positions only
    assert computed_rows == [(int(positions.sum()), model.config.hidden_size)]


def test_hidden_states_at_takes_the_full_forward_when_training():
    model = tiny_model(hidden_dropout_prob=0.3, attn_dropout_prob=0.3).train()
    inputs, attention_mask, labels = masked_batch(model.config, seed=4)
    positions = labels.ne(-100)
    torch.manual_seed(5)
    expected = model.base_model(inputs, attention_mask=attention_mask).last_hidden_state[positions]
    torch.manual_seed(5)
    got = hidden_states_at(model.base_model, inputs, positions, attention_mask=attention_mask)
    torch.testing.assert_close(got, expected)
