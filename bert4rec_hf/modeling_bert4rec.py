"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer over item
histories, trained to recover the items hidden behind [MASK] (the Cloze task).

Read top to bottom: item + right-aligned position embeddings, transformers' own
``BertEncoder``, the prediction head (dense, activation, LayerNorm), and the
scores of every item against the tied item embeddings plus a per-item bias
(``scoring_bert4rec.ItemScorer``, the one place a score is computed; the
losses are in ``losses_bert4rec``). Speed paths that leave the model's maths
unchanged live in ``speedups_bert4rec`` and are switched on by the trainer.
The sibling modules are imported relatively, so a saved folder carries them
and loads with ``trust_remote_code=True`` where this package is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import ModelOutput
from transformers.models.bert.modeling_bert import BertEncoder, BertLayer, BertSelfAttention
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_bert4rec import IGNORE_INDEX, MASK_TOKEN_ID, PAD_TOKEN_ID, Bert4RecConfig
from .features_bert4rec import ItemFeatureEmbeddings
from .losses_bert4rec import cloze_loss, view_contrastive_loss
from .scoring_bert4rec import ItemScorer, distinct_items, item_vectors


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


class Bert4RecEmbeddings(nn.Module):
    """Item + learned position embeddings, then LayerNorm and dropout. With
    ``config.item_features`` an item's embedding is its id embedding fused with
    its feature vector (``features_bert4rec``: summed, or concatenated and projected).

    Positions are right-aligned: the most recent item always sits at position
    ``max_seq_length - 1``, so left padding of any width leaves the outputs of
    real positions unchanged.
    """

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.max_seq_length = config.max_seq_length
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.item_features = ItemFeatureEmbeddings(config) if config.item_features else None
        self.position_embeddings = nn.Embedding(config.max_seq_length, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.max_seq_length:
            raise ValueError(
                f"input_ids has {length} positions but the model reads at most max_seq_length={self.max_seq_length}"
            )
        positions = torch.arange(self.max_seq_length - length, self.max_seq_length, device=input_ids.device)
        items = self.item_embeddings(input_ids)
        if self.item_features is not None:
            items = self.item_features.fuse(items, input_ids)
        embeddings = items + self.position_embeddings(positions)
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
        if isinstance(module, ItemFeatureEmbeddings):
            module.reset_fusion()

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
        embeddings, mask = self.embed(input_ids, attention_mask)
        encoded = self.encoder(embeddings, attention_mask=mask, **kwargs)
        return Bert4RecModelOutput(last_hidden_state=encoded.last_hidden_state)

    def embed(
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

    # set by speedups_bert4rec.use_cpu_speedups: (rows, vocab_size) -> the catalog chunk of
    # CPU training's CE loss (0: the plain softmax) when the config names none
    cpu_loss_chunk_size = None
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

    def item_scorer(
        self, hidden_states: torch.Tensor, input_ids: torch.Tensor | None = None, exact: bool | None = None
    ) -> ItemScorer:
        """The scores of every item for ``(n, hidden)`` encoder states: the one
        place an item's score is computed (see :class:`ItemScorer`).

        ``input_ids``: the ``(n, length)`` model input each state was computed
        from. A model with ``config.seen_item_bias`` adds its learned offset to
        the items found there (padding and [MASK] ignored); without
        ``input_ids`` the scores leave it out. ``exact``: see :class:`ItemScorer`."""
        offset = self.head.seen_item_bias
        seen = distinct_items(input_ids) if input_ids is not None and offset is not None else None
        return ItemScorer(self.head.transform(hidden_states), self.output_item_matrix(), self.head.decoder.bias, seen, offset, exact)

    def output_item_matrix(self) -> torch.Tensor:
        """``(vocab_size, hidden)``: the item embeddings every score is computed against, the
        one place they are made: the output matrix (tied to the input embeddings), plus each
        item's feature vector when the model has item features (so a cold item scores by them)."""
        weight = self.head.decoder.weight
        features = self.bert4rec.embeddings.item_features
        return weight if features is None else features.fuse(weight)

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
        """transformers' resize; the item feature table grows with it (new rows: no
        features; ``finetuning.extend_vocabulary`` writes them). Popularity weights set for the old catalog are
        dropped, as they would never propose a new item as a negative: count them
        again on the new training data (``build_trainer`` does when they are unset)."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        features = self.bert4rec.embeddings.item_features
        if features is not None:
            features.resize(self.config.vocab_size)
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
        num_views: int = 1,
        teacher_probabilities: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedItemPredictionOutput:
        """``teacher_probabilities``: ``(M, num_items)`` soft targets of the ``M`` labelled
        positions in row-major order (``training.distillation.TeacherEnsemble``), read by the
        training loss with ``config.distillation_weight``."""
        outputs = self.bert4rec(input_ids, attention_mask=attention_mask, **kwargs)
        hidden = outputs.last_hidden_state
        predicted = labels.ne(IGNORE_INDEX) if labels is not None else input_ids.eq(self.config.mask_token_id)
        selected = hidden[predicted]
        row_inputs = input_ids[predicted.nonzero()[:, 0]] if self.head.seen_item_bias is not None else None

        loss = None
        if labels is None:
            logits = self.item_scorer(selected, row_inputs).all()
        else:
            negatives = negative_ids[predicted] if negative_ids is not None else None
            loss, logits = self.masked_item_loss(
                selected, labels[predicted], negatives, num_items_in_batch, input_ids=row_inputs,
                teacher_probabilities=teacher_probabilities,
            )
            if self.training and self.config.contrastive_weight:
                loss = loss + self.view_contrastive_term(hidden, input_ids, attention_mask, num_views, predicted, num_items_in_batch)
        return MaskedItemPredictionOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def view_contrastive_term(
        self,
        hidden_states: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        num_views: int,
        predicted: torch.Tensor,
        num_items_in_batch: torch.Tensor | int | None,
    ) -> torch.Tensor:
        """``config.contrastive_weight`` times the contrastive loss between the batch's masked
        copies of each window (``view_contrastive_loss``). Beside a Cloze loss divided by the
        whole batch's ``num_items_in_batch`` it is weighted by this batch's share of those
        targets, so accumulated batches add up to the same mean."""
        if num_views < 2:
            raise ValueError(
                f"contrastive_weight is {self.config.contrastive_weight} but the batch holds one masked copy of each "
                "window: set the collator's num_views (a run's num_views setting) to 2 or more, or contrastive_weight to 0"
            )
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        loss = view_contrastive_loss(hidden_states, attention_mask, num_views, self.config.contrastive_temperature)
        if num_items_in_batch is not None:
            loss = loss * predicted.sum() / num_items_in_batch
        return self.config.contrastive_weight * loss

    def masked_item_loss(
        self,
        hidden_states: torch.Tensor,
        targets: torch.Tensor,
        negative_ids: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        return_logits: bool | None = None,
        input_ids: torch.Tensor | None = None,
        teacher_probabilities: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss of the ``(M, hidden)`` encoder states at the predicted positions
        against their ``(M,)`` target items; returns ``(loss, logits)``.
        ``input_ids``: the ``(M, length)`` model input of each position's row
        (see :meth:`item_scorer`). ``teacher_probabilities``: see :meth:`forward`.

        ``logits`` (``(M, vocab_size)``) are returned in evaluation mode, and in
        training only when the loss builds them anyway (unchunked CE, full BPR);
        ``return_logits=False`` never builds them.
        """
        scorer = self.item_scorer(hidden_states, input_ids)
        chunk_size = self.config.item_chunk_size
        if not chunk_size and self.training and self.cpu_loss_chunk_size and hidden_states.device.type == "cpu":
            chunk_size = self.cpu_loss_chunk_size(hidden_states.shape[0], self.config.vocab_size)
        per_item, logits = cloze_loss(
            scorer, targets, self.config, self.training, negative_ids, self.sampling_weights, chunk_size,
            teacher_probabilities,
        )
        if return_logits is None:
            return_logits = logits is not None or not self.training
        if return_logits and logits is None:
            logits = scorer.all()
        if num_items_in_batch is None:
            loss = per_item.mean() if per_item.numel() else per_item.sum()
        else:  # a sum over the whole (accumulated, multi-process) batch, divided once
            if torch.is_tensor(num_items_in_batch):
                num_items_in_batch = num_items_in_batch.to(per_item.device)
            loss = per_item.sum() / num_items_in_batch
        return loss, (logits if return_logits else None)

    @torch.no_grad()
    def next_item_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the item that follows each history.

        ``input_ids`` are left-padded histories without [MASK]; [MASK] is appended
        (dropping the oldest column when the history already fills
        ``max_seq_length``) and scored. Returns ``(batch, vocab_size)`` with
        ``-inf`` for special tokens.
        """
        return self.next_item_scorer(input_ids, attention_mask).all()

    @torch.no_grad()
    def next_item_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, hidden + 1)`` query vectors of the same histories:
        ``next_item_vectors(h) @ item_vectors().T`` equals ``next_item_scores(h)``
        at every real item outside the history's input window (those also get
        the seen-item offset)."""
        return self.next_item_scorer(input_ids, attention_mask).query_vectors()

    def item_vectors(self) -> torch.Tensor:
        """``(vocab_size, hidden + 1)``: the item embeddings scores are computed
        against, each with its output bias appended."""
        return item_vectors(self.output_item_matrix(), self.head.decoder.bias)

    def next_item_scorer(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ItemScorer:
        """The item scorer of the [MASK] appended to each left-padded history."""
        input_ids, attention_mask = append_mask(input_ids, self.config.max_seq_length, attention_mask)
        hidden = self.bert4rec(input_ids, attention_mask=attention_mask).last_hidden_state
        return self.item_scorer(hidden[:, -1], input_ids)


__all__ = [
    "Bert4RecModel",
    "Bert4RecForMaskedItemPrediction",
    "Bert4RecPreTrainedModel",
    "MaskedItemPredictionOutput",
    "Bert4RecModelOutput",
]
