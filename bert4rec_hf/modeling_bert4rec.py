"""BERT4Rec: a bidirectional Transformer over item sequences trained with the Cloze task.

The encoder blocks are transformers' own ``BertEncoder``; only the embeddings
(items instead of words, right-aligned learned positions) and the prediction
head (scores against the tied item embeddings plus a per-item bias) are new.
This module imports only torch, transformers and its sibling configuration
module, so a saved checkpoint folder carries everything it needs to load with
``trust_remote_code=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import ModelOutput
from transformers.models.bert.modeling_bert import BertEncoder, BertLayer, BertSelfAttention
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_bert4rec import IGNORE_INDEX, MASK_TOKEN_ID, PAD_TOKEN_ID, Bert4RecConfig


def append_mask(
    input_ids: torch.Tensor, max_seq_length: int, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-item query, the one place it is built (``next_item_scores`` and
    the evaluation collator, which the recommender uses, call it): each left-padded history's
    last ``max_seq_length - 1`` columns, then a [MASK] column, and the attention
    mask (derived from padding when not given; 1 at [MASK])."""
    if attention_mask is None:
        attention_mask = input_ids.ne(PAD_TOKEN_ID)
    keep = max_seq_length - 1
    masks = torch.full_like(input_ids[:, :1], MASK_TOKEN_ID)
    input_ids = torch.cat([input_ids[:, -keep:] if keep else input_ids[:, :0], masks], dim=1)
    attention_mask = torch.cat(
        [attention_mask[:, -keep:] if keep else attention_mask[:, :0], torch.ones_like(masks, dtype=attention_mask.dtype)],
        dim=1,
    )
    return input_ids, attention_mask


def distinct_seen_items(history: torch.Tensor, first_item_id: int) -> torch.Tensor:
    """Each row's distinct real items, sorted, with ``-1`` in place of padding,
    [MASK], out-of-range ids and repeats: the form the seen-item offset reads
    (a repeated item gets the offset once)."""
    ids = history.long().sort(dim=1).values
    repeat = torch.zeros_like(ids, dtype=torch.bool)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    return ids.masked_fill(repeat | (ids < first_item_id), -1).sort(dim=1).values


def seen_columns(seen: torch.Tensor, start: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seen items (from :func:`distinct_seen_items`) as columns of the id
    window ``[start, start + width)``: ``(columns, inside)``, column 0 where
    ``inside`` is False."""
    columns = seen - start
    inside = (seen >= 0) & (columns >= 0) & (columns < width)
    return columns.where(inside, 0), inside


def add_seen_offset(scores: torch.Tensor, seen: torch.Tensor, offset: torch.Tensor, start: int) -> torch.Tensor:
    """Adds ``offset`` in place to the columns of ``scores`` (vocabulary ids
    ``start ..``) that hold a seen item of their row."""
    columns, inside = seen_columns(seen, start, scores.shape[1])
    return scores.scatter_add_(1, columns, inside.to(scores.dtype) * offset.to(scores.dtype))


def is_seen(seen: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
    """``(n, k)`` bool: whether each of the ``(n, k)`` (or shared ``(k,)``) ids is
    a seen item of its row (``seen`` from :func:`distinct_seen_items`)."""
    item_ids = item_ids.long().expand(seen.shape[0], -1).contiguous()
    if not seen.shape[1]:
        return torch.zeros_like(item_ids, dtype=torch.bool)
    found = torch.searchsorted(seen, item_ids).clamp_(max=seen.shape[1] - 1)
    return seen.gather(1, found).eq(item_ids)


class ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy of ``hidden @ weight[first:].T + bias[first:]`` (plus
    ``offset`` at each row's ``seen`` items, when given) without the ``rows x
    catalog`` logits.

    Forward keeps a running log-sum-exp over item chunks; backward recomputes
    each chunk's logits and accumulates the gradients of ``hidden``, ``weight``,
    ``bias`` and ``offset``, so peak memory is ``rows x chunk_size`` (plus the
    dense weight gradient) while the loss and gradients are those of the full
    softmax. Columns before ``first`` (special tokens) are left out of the
    softmax. Arithmetic is float32 (float64 for float64 inputs) whatever the
    autocast state.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, first: int, chunk_size: int, seen=None, offset=None):
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            h = hidden.to(dtype)
            lse = torch.full((h.shape[0],), float("-inf"), dtype=dtype, device=h.device)
            for start in range(first, weight.shape[0], chunk_size):
                logits = _chunk_logits(h, weight, bias, start, chunk_size, seen, offset)
                lse = torch.logaddexp(lse, torch.logsumexp(logits, 1))
            target_logits = (h * weight[targets].to(dtype)).sum(1) + bias[targets].to(dtype)
            if seen is not None:
                target_logits = target_logits + is_seen(seen, targets[:, None])[:, 0] * offset.to(dtype)
        ctx.save_for_backward(hidden, weight, bias, targets, lse, seen, offset)
        ctx.first, ctx.chunk_size = first, chunk_size
        return lse - target_logits

    @staticmethod
    def backward(ctx, grad_output):
        hidden, weight, bias, targets, lse, seen, offset = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_offset = offset is not None and ctx.needs_input_grad[7]
        dtype = lse.dtype
        h, g = hidden.to(dtype), grad_output.to(dtype)
        grad_hidden = torch.zeros_like(h) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=h.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=dtype, device=h.device) if need_bias else None
        grad_offset = torch.zeros((), dtype=dtype, device=h.device) if need_offset else None
        for start in range(ctx.first, weight.shape[0], ctx.chunk_size):
            stop = min(start + ctx.chunk_size, weight.shape[0])
            chunk = weight[start:stop].to(dtype)
            # d loss / d logits = g * softmax, computed in place on the recomputed logits
            probs = _chunk_logits(h, weight, bias, start, ctx.chunk_size, seen, offset)
            probs.sub_(lse[:, None]).exp_().mul_(g[:, None])
            if need_hidden:
                grad_hidden.addmm_(probs, chunk)
            if need_weight:
                grad_weight[start:stop] = probs.t() @ h
            if need_bias:
                grad_bias[start:stop] = probs.sum(0)
            if need_offset:
                columns, inside = seen_columns(seen, start, probs.shape[1])
                grad_offset += probs.gather(1, columns).mul_(inside).sum()
        # minus g at each target column
        if need_hidden:
            grad_hidden.sub_(g[:, None] * weight[targets].to(dtype))
        if need_weight:
            grad_weight.index_add_(0, targets, -g[:, None] * h)
        if need_bias:
            grad_bias.index_add_(0, targets, -g)
        if need_offset:
            grad_offset -= (g * is_seen(seen, targets[:, None])[:, 0]).sum()
        return (
            grad_hidden.to(hidden.dtype) if need_hidden else None,
            grad_weight.to(weight.dtype) if need_weight else None,
            grad_bias.to(bias.dtype) if need_bias else None,
            None,
            None,
            None,
            None,
            grad_offset.reshape(offset.shape).to(offset.dtype) if need_offset else None,
        )


def _chunk_logits(h, weight, bias, start, chunk_size, seen, offset) -> torch.Tensor:
    """Logits of vocabulary ids ``[start, start + chunk_size)`` in ``h``'s dtype."""
    stop = min(start + chunk_size, weight.shape[0])
    logits = torch.addmm(bias[start:stop].to(h.dtype), h, weight[start:stop].to(h.dtype).t())
    return logits if seen is None else add_seen_offset(logits, seen, offset, start)


@dataclass
class Bert4RecModelOutput(ModelOutput):
    """Encoder output: one hidden state per input position."""

    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MaskedItemPredictionOutput(ModelOutput):
    """Output of :class:`Bert4RecForMaskedItemPrediction`.

    ``logits`` holds scores only for the predicted positions (those with a label,
    or the [MASK] positions when no labels are given), flattened in row-major
    order to shape ``(num_predicted, vocab_size)``: a batch x length x vocabulary
    tensor is never built. Special-token columns are ``-inf``.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


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
                setattr(parent, name, ItemDropout(child.p))


class Bert4RecSelfAttention(BertSelfAttention):
    """BERT self-attention whose attention-probability dropout uses ``ItemDropout``
    when training on CPU.

    There torch's ``scaled_dot_product_attention`` draws the dropout mask with
    ``bernoulli_``: at BERT4Rec's size that mask costs more than the attention
    itself (6.6 ms against 1.4 ms for 64 x 50 items). The scores, mask and
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
        layer.attention.self.__class__ = Bert4RecSelfAttention


class Bert4RecEmbeddings(nn.Module):
    """Item + learned position embeddings, then LayerNorm and dropout.

    Positions are right-aligned: the most recent item always sits at position
    ``max_seq_length - 1``, so left padding of any width leaves the outputs of
    real positions unchanged.
    """

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.max_seq_length = config.max_seq_length
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_seq_length, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = ItemDropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.max_seq_length:
            raise ValueError(
                f"input_ids has {length} positions but the model reads at most max_seq_length={self.max_seq_length}"
            )
        positions = torch.arange(self.max_seq_length - length, self.max_seq_length, device=input_ids.device)
        embeddings = self.item_embeddings(input_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(embeddings))


class Bert4RecPredictionHead(nn.Module):
    """dense -> activation -> LayerNorm, then scores against the item embeddings.

    ``decoder`` is a Linear whose weight is tied to the input item embeddings and
    whose bias is the per-item output bias of the paper's code. With
    ``config.seen_item_bias``, ``seen_item_bias`` is one learned score offset
    for the items the model reads in the row's own input: the Cloze targets are
    hidden, so it learns how often a visible item comes back (on logs where
    nobody consumes an item twice, it turns strongly negative).
    """

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.seen_item_bias = nn.Parameter(torch.zeros(1)) if config.seen_item_bias else None

    def transform(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))

    def scores(
        self, transformed: torch.Tensor, start: int = 0, stop: int | None = None, seen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of vocabulary ids ``[start, stop)`` in at least float32, also
        under bf16/fp16 autocast: with 8 bits of mantissa, hundreds of items of a
        large catalog tie with the target, and ties count against it. ``seen``
        (:func:`distinct_seen_items` of each row's input) adds the seen-item offset."""
        dtype = torch.promote_types(transformed.dtype, torch.float32)
        with torch.autocast(device_type=transformed.device.type, enabled=False):
            weight = self.decoder.weight[start:stop].to(dtype)
            scores = torch.addmm(self.decoder.bias[start:stop].to(dtype), transformed.to(dtype), weight.t())
            return scores if seen is None else add_seen_offset(scores, seen, self.seen_item_bias, start)

    def chosen_scores(
        self, transformed: torch.Tensor, item_ids: torch.Tensor, seen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, k)`` scores of chosen ids, in the precision of :meth:`scores`:
        ``(n, k)`` ids chosen per row, or ``(k,)`` ids shared by every row (one
        matrix product instead of a gathered ``(n, k, hidden)`` weight)."""
        dtype = torch.promote_types(transformed.dtype, torch.float32)
        with torch.autocast(device_type=transformed.device.type, enabled=False):
            weight, bias = self.decoder.weight[item_ids].to(dtype), self.decoder.bias[item_ids].to(dtype)
            if item_ids.ndim == 1:
                scores = torch.addmm(bias, transformed.to(dtype), weight.t())
            else:
                scores = torch.einsum("nh,nkh->nk", transformed.to(dtype), weight) + bias
            if seen is None:
                return scores
            return scores + is_seen(seen, item_ids) * self.seen_item_bias.to(dtype)


class Bert4RecPreTrainedModel(PreTrainedModel):
    config_class = Bert4RecConfig
    config: Bert4RecConfig
    base_model_prefix = "bert4rec"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["Bert4RecEmbeddings", "BertLayer"]
    _can_record_outputs = {"hidden_states": BertLayer, "attentions": BertSelfAttention}
    # checkpoints from before the seen-item offset load with it at 0, which scores exactly as they did
    _keys_to_ignore_on_load_missing = [r"head\.seen_item_bias"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Bert4RecPredictionHead) and module.seen_item_bias is not None:
            init.zeros_(module.seen_item_bias)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also maps ``AutoModel`` in ``auto_map``: transformers writes only the
        saved class's own auto class, and a user of a remote-code folder may
        reach for either."""
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", "modeling_bert4rec.Bert4RecModel")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


class Bert4RecModel(Bert4RecPreTrainedModel):
    """The bidirectional encoder: embeddings + transformers' ``BertEncoder``."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__(config)
        self.embeddings = Bert4RecEmbeddings(config)
        self.encoder = BertEncoder(config)
        use_cpu_attention_dropout(self.encoder)
        use_item_dropout(self.encoder)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.item_embeddings = value

    @capture_outputs
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> Bert4RecModelOutput:
        """``attention_mask``: 1 for items and [MASK], 0 for padding (derived from
        ``input_ids`` when omitted). ``output_hidden_states`` / ``output_attentions``
        work as in transformers' BERT."""
        embeddings, mask = self._embed(input_ids, attention_mask)
        encoded = self.encoder(embeddings, attention_mask=mask, **kwargs)
        return Bert4RecModelOutput(last_hidden_state=encoded.last_hidden_state)

    def hidden_states_at(
        self, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``forward(input_ids, attention_mask).last_hidden_state[positions]``
        (``positions``: a ``(batch, length)`` bool mask) for inference: the last
        layer computes its queries, attention output and feed-forward at those
        positions only, since nothing reads its other outputs. With one
        position per row, as in next-item evaluation, that is about 40% of the
        encoder's work saved. Training and non-tensor masks (flex attention)
        take the full forward."""
        embeddings, mask = self._embed(input_ids, attention_mask)
        if self.training or not (mask is None or torch.is_tensor(mask)):
            return self.encoder(embeddings, attention_mask=mask).last_hidden_state[positions]
        hidden = embeddings
        for layer in self.encoder.layer[:-1]:
            hidden = layer(hidden, mask)
        rows, columns = positions.nonzero(as_tuple=True)
        return _layer_output_at(self.encoder.layer[-1], hidden, mask, rows, columns)

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's input and its attention mask (in the attention implementation's format)."""
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        embeddings = self.embeddings(input_ids)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embeddings, attention_mask=attention_mask.bool()
        )
        return embeddings, mask


def _layer_output_at(
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


class Bert4RecForMaskedItemPrediction(Bert4RecPreTrainedModel):
    """BERT4Rec with its Cloze head: predicts the items hidden behind [MASK].

    Training: ``labels`` holds the original item at masked positions and -100
    elsewhere; the loss covers masked positions only (gathered before scoring).
    ``loss_type="CE"`` is a full softmax over the real items; ``"BPR"`` scores
    the positive against ``negative_ids`` (shape ``batch x length x
    num_negatives``) or, when none are given, against every other real item;
    ``"SSM"`` is a sampled softmax over negatives shared by the batch (see
    ``set_sampling_weights``). With ``config.item_chunk_size`` the CE loss scans
    the catalog in chunks (same loss and gradients, no ``M x catalog`` logits)
    and training returns ``logits=None``. When the Trainer passes
    ``num_items_in_batch`` the summed loss is divided by it, which keeps
    gradient accumulation and multi-process training exact.
    """

    _tied_weights_keys = {"head.decoder.weight": "bert4rec.embeddings.item_embeddings.weight"}

    def __init__(self, config: Bert4RecConfig):
        super().__init__(config)
        # saved files hold a tied weight once; the Trainer re-ties it (instead of warning
        # about a missing key) when load_best_model_at_end reads a checkpoint. An untied
        # output matrix (tie_word_embeddings=False) is a weight of its own and is saved.
        self._keys_to_ignore_on_save = ["head.decoder.weight"] if config.tie_word_embeddings else None
        self.bert4rec = Bert4RecModel(config)
        self.head = Bert4RecPredictionHead(config)
        self.register_buffer("sampling_weights", None, persistent=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert4rec.embeddings.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert4rec.embeddings.item_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.head.decoder = new_embeddings

    @property
    def first_item_id(self) -> int:
        return self.config.num_special_tokens

    def seen_items(self, history: torch.Tensor | None) -> torch.Tensor | None:
        """What the seen-item offset reads from ``(n, length)`` input ids (one row
        per scored state; padding and [MASK] ignored); ``None`` when the model
        has no offset or no history is given."""
        if history is None or self.head.seen_item_bias is None:
            return None
        return distinct_seen_items(history, self.first_item_id)

    def score_hidden_states(self, hidden_states: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """Scores over the whole vocabulary for a ``(n, hidden)`` block of encoder
        states; special-token columns are ``-inf`` so they are never predicted.

        ``history``: the ``(n, length)`` input ids each state was computed from.
        A model with ``config.seen_item_bias`` adds its learned offset to the
        items found there; without ``history`` the scores leave it out.
        The same holds for :meth:`score_items` and :meth:`item_score_chunks`."""
        scores = self.head.scores(self.head.transform(hidden_states), seen=self.seen_items(history))
        scores[:, : self.first_item_id] = float("-inf")
        return scores

    def score_items(
        self, hidden_states: torch.Tensor, item_ids: torch.Tensor, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of chosen items only: ``(n, hidden)`` states and ``(n, k)`` item
        ids (or ``(k,)`` ids shared by every row) give ``(n, k)`` scores, without
        scoring the rest of the catalog."""
        return self.head.chosen_scores(self.head.transform(hidden_states), item_ids, self.seen_items(history))

    def item_score_chunks(
        self, hidden_states: torch.Tensor, chunk_size: int | None = None, history: torch.Tensor | None = None
    ):
        """Yields ``(start, scores)`` over the real items, ``chunk_size`` columns at a
        time: ``scores[:, j]`` is the score of vocabulary id ``start + j``. Lets a
        caller rank or take a top-k over a large catalog without a ``n x catalog``
        tensor (default chunk: ``config.item_chunk_size``, or the whole catalog)."""
        chunk_size = chunk_size or self.config.item_chunk_size or self.config.num_items
        transformed, seen = self.head.transform(hidden_states), self.seen_items(history)
        for start in range(self.first_item_id, self.config.vocab_size, chunk_size):
            yield start, self.head.scores(transformed, start, min(start + chunk_size, self.config.vocab_size), seen)

    def set_sampling_weights(self, weights: torch.Tensor | None) -> None:
        """Proposal weights of the sampled-softmax negatives (``loss_type="SSM"``
        with ``sampling_distribution="popularity"``), one non-negative value per
        vocabulary id, e.g. training counts from ``count_item_popularity`` (or
        their 0.75 power). Not saved with the model: it is a training statistic."""
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32, device=self.head.decoder.bias.device)
            if weights.shape != (self.config.vocab_size,):
                raise ValueError(
                    f"sampling weights must have shape ({self.config.vocab_size},) (one per vocabulary id), "
                    f"got {tuple(weights.shape)}"
                )
            real = weights[self.first_item_id :]
            if not torch.isfinite(real).all() or (real < 0).any() or real.sum() <= 0:
                raise ValueError("sampling weights of real items must be finite, non-negative and not all zero")
        self.sampling_weights = weights

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        """transformers' resize; popularity weights set for the old catalog are
        dropped, as they would never propose a new item as a negative: count them
        again on the new training data (``build_trainer`` does when they are unset)."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        if self.sampling_weights is not None and self.sampling_weights.shape[0] != self.config.vocab_size:
            self.set_sampling_weights(None)
        return embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        negative_ids: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs,
    ) -> MaskedItemPredictionOutput:
        outputs = self.bert4rec(input_ids, attention_mask=attention_mask, **kwargs)
        hidden = outputs.last_hidden_state
        predicted = labels.ne(IGNORE_INDEX) if labels is not None else input_ids.eq(self.config.mask_token_id)
        selected = hidden[predicted]
        history = input_ids[predicted.nonzero()[:, 0]] if self.head.seen_item_bias is not None else None

        loss = None
        if labels is None:
            logits = self.score_hidden_states(selected, history)
        else:
            negatives = negative_ids[predicted] if negative_ids is not None else None
            loss, logits = self.masked_item_loss(
                selected, labels[predicted], negatives, num_items_in_batch, history=history
            )
        return MaskedItemPredictionOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def masked_item_loss(
        self,
        hidden_states: torch.Tensor,
        targets: torch.Tensor,
        negative_ids: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        return_logits: bool | None = None,
        history: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss of the ``(M, hidden)`` encoder states at the predicted positions
        against their ``(M,)`` target items; returns ``(loss, logits)``.
        ``history``: the ``(M, length)`` input ids of each position's row, read
        by the seen-item offset (see :meth:`score_hidden_states`).

        ``logits`` (``(M, vocab_size)``) are returned in evaluation mode, and in
        training only when the loss builds them anyway (unchunked CE, full BPR);
        ``return_logits=False`` never builds them. ``"SSM"`` trains on sampled
        negatives and reports the exact CE (the quantity it estimates) in
        evaluation mode. ``config.item_chunk_size`` chunks the CE.
        """
        self._check_targets(targets)
        loss_type = self.config.loss_type
        if loss_type == "SSM" and not self.training:
            loss_type = "CE"
        chunked = loss_type == "CE" and self.config.item_chunk_size > 0
        seen = self.seen_items(history)
        if loss_type == "SSM":
            per_item = self._sampled_softmax_loss(hidden_states, targets, seen)
        elif loss_type == "BPR" and negative_ids is not None:
            per_item = self._sampled_bpr_loss(hidden_states, targets, negative_ids, seen)
        elif chunked:
            transformed = self.head.transform(hidden_states)
            per_item = ChunkedSoftmaxCrossEntropy.apply(
                transformed,
                self.head.decoder.weight,
                self.head.decoder.bias,
                targets,
                self.first_item_id,
                self.config.item_chunk_size,
                seen,
                self.head.seen_item_bias if seen is not None else None,
            )
        else:
            logits = self.score_hidden_states(hidden_states, history)
            per_item = self._full_loss(logits, targets)
            return self._reduce(per_item, num_items_in_batch), (None if return_logits is False else logits)
        if return_logits is None:
            return_logits = not self.training
        logits = self.score_hidden_states(hidden_states, history) if return_logits else None
        return self._reduce(per_item, num_items_in_batch), logits

    def _reduce(self, per_item: torch.Tensor, num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
        if num_items_in_batch is None:
            return per_item.mean() if per_item.numel() else per_item.sum()
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(per_item.device)
        return per_item.sum() / num_items_in_batch

    def _full_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.config.loss_type == "BPR":
            real = logits[:, self.first_item_id :].float()
            positive = logits.gather(1, targets[:, None]).float()
            pairwise = -nn.functional.logsigmoid(positive - real)
            pairwise = pairwise.scatter(1, targets[:, None] - self.first_item_id, 0.0)
            return pairwise.sum(1) / max(self.config.num_items - 1, 1)
        return nn.functional.cross_entropy(logits.float(), targets, reduction="none")

    def _sampled_bpr_loss(
        self, selected: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        self._check_targets(negatives.reshape(-1))
        candidates = torch.cat([targets[:, None], negatives], dim=1)
        scores = self.head.chosen_scores(self.head.transform(selected), candidates, seen)
        return -nn.functional.logsigmoid(scores[:, :1] - scores[:, 1:]).mean(1)

    def _sampled_softmax_loss(
        self, selected: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        """Sampled softmax with logQ correction: the positive against
        ``num_sampled_negatives`` items drawn with replacement from the proposal
        q and shared by every row; each negative's logit is lowered by
        ``log(num_sampled * q(item))`` and negatives equal to the row's target
        (accidental hits) are masked, so as the sample grows the loss tends to
        the full-softmax cross-entropy."""
        first, num_sampled = self.first_item_id, self.config.num_sampled_negatives
        device = selected.device
        if self.config.sampling_distribution == "popularity":
            if self.sampling_weights is None:
                raise ValueError(
                    'sampling_distribution="popularity" needs item weights: call '
                    "model.set_sampling_weights(count_item_popularity(train_input_ids, vocab_size))"
                )
            proposal = self.sampling_weights[first:].to(device, torch.float32)
            proposal = proposal / proposal.sum()
            negatives = torch.multinomial(proposal, num_sampled, replacement=True)
            log_expected = torch.log(proposal[negatives] * num_sampled)
            negatives = negatives + first
        else:
            negatives = torch.randint(first, self.config.vocab_size, (num_sampled,), device=device)
            log_expected = torch.full((num_sampled,), num_sampled / self.config.num_items, device=device).log()
        transformed = self.head.transform(selected)
        weight, bias = self.head.decoder.weight, self.head.decoder.bias
        positive = (transformed * weight[targets]).sum(-1) + bias[targets]
        # the logQ correction folds into the negatives' bias: one (num_sampled,) vector, not a (M, num_sampled) op
        negative = torch.addmm(bias[negatives] - log_expected.to(bias.dtype), transformed, weight[negatives].t())
        if seen is not None:
            offset = self.head.seen_item_bias.to(negative.dtype)
            positive = positive + is_seen(seen, targets[:, None])[:, 0] * offset
            negative = negative + is_seen(seen, negatives) * offset
        negative = negative.masked_fill_(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive[:, None], negative], dim=1).float()
        return torch.logsumexp(logits, 1) - logits[:, 0]

    def _check_targets(self, ids: torch.Tensor) -> None:
        if ids.numel() and (ids.min() < self.first_item_id or ids.max() >= self.config.vocab_size):
            bad = ids[(ids < self.first_item_id) | (ids >= self.config.vocab_size)][:5].tolist()
            raise ValueError(
                f"labels/negatives must be real item ids in [{self.first_item_id}, {self.config.vocab_size}); "
                f"got {bad} (padding, [MASK] or out of vocabulary)"
            )

    @torch.no_grad()
    def next_item_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the item that follows each history.

        ``input_ids`` are left-padded histories without [MASK]; [MASK] is appended
        (dropping the oldest column when the history already fills
        ``max_seq_length``) and scored. Returns ``(batch, vocab_size)`` with
        ``-inf`` for special tokens.
        """
        input_ids, attention_mask = append_mask(input_ids, self.config.max_seq_length, attention_mask)
        hidden = self.bert4rec(input_ids, attention_mask=attention_mask).last_hidden_state
        return self.score_hidden_states(hidden[:, -1], input_ids)


__all__ = [
    "Bert4RecModel",
    "Bert4RecForMaskedItemPrediction",
    "Bert4RecPreTrainedModel",
    "MaskedItemPredictionOutput",
    "Bert4RecModelOutput",
]
