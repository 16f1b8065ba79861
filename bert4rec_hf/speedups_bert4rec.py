"""Speed paths of BERT4Rec, switched on by name: the paper's model reads the
same without them (``modeling_bert4rec``) and none changes a checkpoint.

* :func:`use_cpu_speedups` (``Bert4RecTrainer`` calls it on its model): every
  dropout of the model draws its mask with :class:`ItemDropout`, attention
  probabilities included (:class:`Bert4RecSelfAttention`). On CPU torch draws
  dropout masks with ``bernoulli_``, which at BERT4Rec's size costs more than
  the layers themselves.
* :func:`use_cpu_speedups` also makes CPU training's CE loss scan the catalog in
  chunks of ``CPU_LOSS_CHUNK`` items (``ChunkedSoftmaxCrossEntropy``: the same loss
  and gradients) once the ``rows x catalog`` logits would pass ``CPU_LOSS_LOGITS_BYTES``,
  unless the config names its own ``item_chunk_size``. Past the CPU's cache the plain
  softmax spends more time copying, filling and normalising that matrix than on its
  matrix products.
* :func:`hidden_states_at` (the Trainer's evaluation step, and distillation's teachers):
  the encoder states at chosen positions, the last layer computed at those positions only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.bert.modeling_bert import BertEncoder, BertLayer, BertSelfAttention


class ItemDropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on CPU.

    On CPU, torch draws the dropout mask with ``bernoulli_``, which costs a large
    share of a BERT4Rec training step (the model is small, its activations are
    not). Comparing 31-bit random integers with ``p * 2**31`` draws the same
    keep mask (to 2**-31) in well under half the time, from the same seeded
    generator. Other devices keep ``nn.Dropout``'s fused kernels.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p in (0.0, 1.0) or hidden_states.device.type != "cpu":
            return super().forward(hidden_states)
        draws = torch.empty(hidden_states.shape, dtype=torch.int32).random_()
        keep = (draws >= round(self.p * 2**31)).to(hidden_states.dtype)
        return hidden_states * keep.mul_(1.0 / (1.0 - self.p))


def use_item_dropout(module: nn.Module) -> None:
    """Replaces every plain ``nn.Dropout`` below ``module`` with ``ItemDropout``."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, ItemDropout(child.p).train(child.training))


class Bert4RecSelfAttention(BertSelfAttention):
    """BERT self-attention whose attention-probability dropout uses ``ItemDropout``
    when training on CPU.

    There torch's ``scaled_dot_product_attention`` draws the dropout mask with
    ``bernoulli_``: at BERT4Rec's size that mask costs more than the attention
    itself (``benchmarks/throughput.py`` measures it). The scores, mask and
    softmax are eager attention's; evaluation, other devices, flex attention's
    block masks and ``output_attentions`` take transformers' own path unchanged.
    """

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cheap_dropout = self.training and 0.0 < self.dropout.p < 1.0 and hidden_states.device.type == "cpu"
        cached = kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None  # name by version
        flex_mask = attention_mask is not None and not isinstance(attention_mask, torch.Tensor)  # a BlockMask
        if not cheap_dropout or cached or flex_mask or kwargs.get("output_attentions"):
            return super().forward(hidden_states, attention_mask, **kwargs)
        heads_shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        query, key, value = (
            projection(hidden_states).view(heads_shape).transpose(1, 2)
            for projection in (self.query, self.key, self.value)
        )
        scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling
        if attention_mask is not None and attention_mask.dtype == torch.bool:  # sdpa masks: True = attend
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        elif attention_mask is not None:  # eager masks: additive
            scores = scores + attention_mask
        probabilities = self.dropout(scores.softmax(dim=-1))
        attended = torch.matmul(probabilities, value).transpose(1, 2)
        return attended.reshape(*hidden_states.shape[:-1], -1), None


def use_cpu_attention_dropout(encoder: BertEncoder) -> None:
    """Makes each layer's ``BertSelfAttention`` a ``Bert4RecSelfAttention``: the
    subclass adds no state, so the module keeps its parameters (checkpoints are
    unchanged) and no new module draws initial weights from the seeded generator."""
    for layer in encoder.layer:
        if isinstance(layer.attention.self, BertSelfAttention):
            layer.attention.self.__class__ = Bert4RecSelfAttention


# float32 logits of a CE loss past which CPU training scans the catalog in chunks, and the chunk:
# measured on Amazon Beauty's 54,544 items, 1,200 masked rows, one thread (benchmarks/README.md,
# "The chunked loss on CPU"), where a chunk of 1,024 items took 1.6-1.9x less time than the plain
# softmax and chunks of 8,192 or more (past the cache) no less; under 32 MB it gains nothing.
CPU_LOSS_LOGITS_BYTES = 32 * 2**20
CPU_LOSS_CHUNK = 1024


def cpu_loss_chunk_size(rows: int, vocab_size: int) -> int:
    """Items per chunk of CPU training's CE loss over ``rows`` masked positions: 0 (the
    plain softmax) while the logits stay under ``CPU_LOSS_LOGITS_BYTES``."""
    return CPU_LOSS_CHUNK if 4 * rows * vocab_size > CPU_LOSS_LOGITS_BYTES else 0


def use_cpu_speedups(model: nn.Module) -> nn.Module:
    """Switches on the CPU dropout paths for every BERT encoder below ``model``
    (a ``Bert4RecForMaskedItemPrediction``, its base model, or the same classes
    loaded with ``trust_remote_code``) and the chunked CE loss of CPU training;
    returns ``model``. Other devices keep torch's fused kernels and the plain
    softmax, so calling it there changes nothing."""
    for module in model.modules():
        if isinstance(module, BertEncoder):
            use_cpu_attention_dropout(module)
        if hasattr(module, "cpu_loss_chunk_size"):
            module.cpu_loss_chunk_size = cpu_loss_chunk_size
    use_item_dropout(model)
    return model


def hidden_states_at(
    base_model: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``base_model(input_ids, attention_mask).last_hidden_state[positions]``
    (``positions``: a ``(batch, length)`` bool mask) for inference: the last
    layer computes its queries, attention output and feed-forward at those
    positions only, since nothing reads its other outputs. With one
    position per row, as in next-item evaluation, that is about 40% of the
    encoder's work saved. Training and non-tensor masks (flex attention)
    take the full forward."""
    embeddings, mask = base_model.embed(input_ids, attention_mask)
    if base_model.training or not (mask is None or torch.is_tensor(mask)):
        return base_model.encoder(embeddings, attention_mask=mask).last_hidden_state[positions]
    hidden = embeddings
    for layer in base_model.encoder.layer[:-1]:
        hidden = layer(hidden, mask)
    rows, columns = positions.nonzero(as_tuple=True)
    return layer_output_at(base_model.encoder.layer[-1], hidden, mask, rows, columns)


def layer_output_at(
    layer: BertLayer,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: torch.Tensor,
    columns: torch.Tensor,
) -> torch.Tensor:
    """``layer(hidden_states, attention_mask)[rows, columns]`` in inference,
    computing queries, attention output and feed-forward at those positions
    only (keys and values still come from every position)."""
    attention = layer.attention.self
    chosen = hidden_states[rows, columns]
    heads = (attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(chosen).view(-1, 1, *heads).transpose(1, 2)
    key, value = (
        projection(hidden_states).view(*hidden_states.shape[:2], *heads).transpose(1, 2)[rows]
        for projection in (attention.key, attention.value)
    )
    if attention_mask is not None:  # (batch, 1, queries or 1, keys): bool (sdpa) or additive (eager)
        attention_mask = attention_mask[rows, :, columns if attention_mask.shape[2] > 1 else 0][:, :, None]
    attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attention.scaling)
    attention_output = layer.attention.output(attended.reshape(chosen.shape), chosen)
    return layer.feed_forward_chunk(attention_output)


__all__ = ["Bert4RecSelfAttention", "ItemDropout", "cpu_loss_chunk_size", "hidden_states_at", "use_cpu_speedups"]
