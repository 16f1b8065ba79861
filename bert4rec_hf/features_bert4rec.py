"""Item side features in the model: each item's feature vector, added to its id embedding.

Each categorical field has its own embedding table (a ``token_seq`` item gets
the mean of its tokens' embeddings, an item without tokens zero); the numeric
fields and dense vectors, standardised, go through one linear projection. The
sum of the parts is the item's feature vector. ``fuse`` joins it to the id
embedding (``config.item_feature_fusion``: added, or concatenated and
projected) on both sides, the input and the output item matrix, so an item
nobody interacted with is scored from its features.

The feature table is two buffers saved in ``model.safetensors`` (no pickle):
``item_tokens`` (vocab_size x sum of field lengths, token index per field, 0 =
none) and ``item_values`` (vocab_size x sum of dims). Padding and [MASK] rows
stay zero. Imported relatively by ``modeling_bert4rec`` (remote code carries
it); depends on torch and the configuration module only.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_bert4rec import Bert4RecConfig


class ItemFeatureEmbeddings(nn.Module):
    """The feature part of every item's embedding (``config.item_features``)."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        fields = config.item_features
        categorical = [f for f in fields if f["kind"].startswith("token")]
        width = sum(f["dim"] for f in fields if f["kind"].startswith("float"))
        self.lengths = [f["length"] for f in categorical]
        self.token_embeddings = nn.ModuleList(
            nn.Embedding(len(f["vocabulary"]) + 1, config.hidden_size, padding_idx=0) for f in categorical
        )
        self.value_projection = nn.Linear(width, config.hidden_size, bias=False) if width else None
        # concat: [id ; features] -> hidden, initialised to [I I] (the sum) by ``reset_fusion``
        self.fusion = (
            nn.Linear(2 * config.hidden_size, config.hidden_size, bias=False)
            if config.item_feature_fusion == "concat"
            else None
        )
        self.register_buffer("item_tokens", torch.zeros(config.vocab_size, sum(self.lengths), dtype=torch.long))
        self.register_buffer("item_values", torch.zeros(config.vocab_size, width))

    def forward(self, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(*item_ids.shape, hidden)`` feature vectors; every vocabulary id's when ``item_ids`` is None."""
        tokens = self.item_tokens if item_ids is None else self.item_tokens[item_ids]
        values = self.item_values if item_ids is None else self.item_values[item_ids]
        vectors = None
        fields = tokens.split(self.lengths, dim=-1) if self.lengths else ()
        for embedding, field_tokens in zip(self.token_embeddings, fields, strict=True):
            count = field_tokens.ne(0).sum(-1, keepdim=True).clamp(min=1)
            part = embedding(field_tokens).sum(-2) / count
            vectors = part if vectors is None else vectors + part
        if self.value_projection is not None:
            part = self.value_projection(values.to(self.value_projection.weight.dtype))
            vectors = part if vectors is None else vectors + part
        return vectors

    def fuse(self, id_vectors: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The items' embeddings: their id vectors joined with their feature vectors (every
        vocabulary id's, in order, when ``item_ids`` is None), the one place the two meet."""
        features = self(item_ids)
        if self.fusion is None:
            return id_vectors + features
        return self.fusion(torch.cat([id_vectors, features.to(id_vectors.dtype)], dim=-1))

    @torch.no_grad()
    def reset_fusion(self) -> None:
        """The concat projection as the sum, ``[I I]``: training starts where ``"sum"`` does."""
        if self.fusion is not None:
            width = self.fusion.weight.shape[0]
            identity = torch.eye(width, dtype=self.fusion.weight.dtype, device=self.fusion.weight.device)
            self.fusion.weight.copy_(torch.cat([identity, identity], dim=1))

    @torch.no_grad()
    def set_items(self, start: int, tokens: torch.Tensor, values: torch.Tensor) -> None:
        """Writes the feature rows of vocabulary ids ``start, start + 1, ...`` (the arrays of
        ``ItemFeatureTable.encode``)."""
        tokens, values = torch.as_tensor(tokens), torch.as_tensor(values)
        stop = start + tokens.shape[0]
        if tokens.shape != (stop - start, self.item_tokens.shape[1]) or values.shape != (
            stop - start, self.item_values.shape[1]
        ) or stop > self.item_tokens.shape[0]:
            raise ValueError(
                f"feature rows of ids [{start}, {stop}) must be tokens {(stop - start, self.item_tokens.shape[1])} "
                f"and values {(stop - start, self.item_values.shape[1])} within vocab_size {self.item_tokens.shape[0]}; "
                f"got {tuple(tokens.shape)} and {tuple(values.shape)}"
            )
        self.item_tokens[start:stop] = tokens.to(self.item_tokens.device)
        self.item_values[start:stop] = values.to(self.item_values)

    def resize(self, vocab_size: int) -> None:
        """Grows (or cuts) the table to ``vocab_size`` rows; new rows have no features."""
        for name in ("item_tokens", "item_values"):
            old = getattr(self, name)
            new = old.new_zeros(vocab_size, old.shape[1])
            keep = min(vocab_size, old.shape[0])
            new[:keep] = old[:keep]
            setattr(self, name, new)


__all__ = ["ItemFeatureEmbeddings"]
