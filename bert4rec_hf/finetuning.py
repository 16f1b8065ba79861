"""Continuing training on new logs whose items the checkpoint has never seen.

``extend_vocabulary`` appends the new raw ids to the tokenizer and grows the
model with transformers' ``resize_token_embeddings``: the input item
embeddings, the output matrix (tied to them unless ``tie_word_embeddings`` is
off) and the per-item output bias grow together. Existing rows keep their
values (so an old history's scores over old items are unchanged) and new rows
are initialised like a fresh model's:
embeddings ~ normal(0, ``initializer_range``), bias 0 (``mean_resizing=False``;
transformers' default samples around the mean of the trained embeddings, which
here would give every new item the same average-item score). The resize
drops popularity weights of the sampled softmax (``set_sampling_weights``),
which describe the old catalog: count them again on the new training data (the
quick start's ``build_trainer`` does).

A model with item features takes the new items' features too
(``item_features=``, an item table): a served model then scores a brand-new
item by its features alone (its id embedding is fresh noise, its bias 0), and
fine-tuning continues from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .configuration_bert4rec import NUM_SPECIAL_TOKENS
from .data.item_features import ItemFeatureField, ItemFeatureTable
from .tokenization_bert4rec import ItemTokenizer


def write_item_features(
    model: torch.nn.Module,
    tokenizer: ItemTokenizer,
    table: ItemFeatureTable,
    start: int = NUM_SPECIAL_TOKENS,
    missing: str = "error",
) -> None:
    """Writes the feature rows of vocabulary ids ``[start, len(tokenizer))`` from ``table``,
    encoded with the model's own fields (``config.item_features``: vocabularies and
    standardisation fitted at training time)."""
    features = model.bert4rec.embeddings.item_features
    if features is None:
        raise ValueError("the model has no item features (config.item_features is None): train one with item_features")
    fields = [ItemFeatureField.from_dict(spec) for spec in model.config.item_features]
    arrays = table.encode(fields, tokenizer, start=start, missing=missing)
    features.set_items(start, torch.from_numpy(arrays["tokens"]), torch.from_numpy(arrays["values"]))


def extend_vocabulary(
    model: torch.nn.Module,
    tokenizer: ItemTokenizer,
    new_items: Iterable[Any],
    item_features: ItemFeatureTable | None = None,
) -> int:
    """Adds the ids of ``new_items`` not yet in ``tokenizer`` (first-seen order,
    appended after the existing ones) and resizes ``model`` to match.

    ``config.vocab_size`` follows; tied weights stay tied; sampling weights are
    cleared. Returns the number
    of items added (0 leaves model and tokenizer as they were). Raises
    ``ValueError``, leaving both unchanged, when the tokenizer and the model
    disagree in size before the call (the tokenizer then belongs to another
    checkpoint) or when ``new_items`` holds a null or empty id (the saved
    vocabulary would not load again).

    ``item_features``: the new items' rows (a model with item features needs
    them, and every added item must have one; tokens its fields never saw count
    as none). Checked before anything changes.
    """
    vocab_size = model.config.vocab_size
    if len(tokenizer) != vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} entries but the model's vocab_size is {vocab_size}: they do not "
            "belong to the same checkpoint"
        )
    has_features = model.config.item_features is not None
    if has_features != (item_features is not None):
        raise ValueError(
            "the model has item features: pass the new items' item_features" if has_features
            else "item_features given, but the model has none (config.item_features is None)"
        )
    new_items = list(new_items)
    if item_features is not None:  # every new item needs a row: checked on a copy, before anything changes
        trial = ItemTokenizer(tokenizer.items)
        trial.add_items(new_items)
        fields = [ItemFeatureField.from_dict(spec) for spec in model.config.item_features]
        item_features.encode(fields, trial, start=vocab_size)
    added = tokenizer.add_items(new_items)
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        embeddings = model.get_input_embeddings()
        embeddings.padding_idx = model.config.pad_token_id
        output = model.get_output_embeddings()
        if model.config.tie_word_embeddings and output.weight is not embeddings.weight:  # never expected: resize re-ties
            raise RuntimeError("the output item matrix is no longer tied to the input embeddings after resizing")
        if item_features is not None:
            write_item_features(model, tokenizer, item_features, start=vocab_size)
    return added


__all__ = ["extend_vocabulary", "write_item_features"]
