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
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .tokenization_bert4rec import ItemTokenizer


def extend_vocabulary(model: torch.nn.Module, tokenizer: ItemTokenizer, new_items: Iterable[Any]) -> int:
    """Adds the ids of ``new_items`` not yet in ``tokenizer`` (first-seen order,
    appended after the existing ones) and resizes ``model`` to match.

    ``config.vocab_size`` follows; tied weights stay tied; sampling weights are
    cleared. Returns the number
    of items added (0 leaves model and tokenizer as they were). Raises
    ``ValueError``, leaving both unchanged, when the tokenizer and the model
    disagree in size before the call (the tokenizer then belongs to another
    checkpoint) or when ``new_items`` holds a null or empty id (the saved
    vocabulary would not load again).
    """
    vocab_size = model.config.vocab_size
    if len(tokenizer) != vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} entries but the model's vocab_size is {vocab_size}: they do not "
            "belong to the same checkpoint"
        )
    added = tokenizer.add_items(new_items)
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        embeddings = model.get_input_embeddings()
        embeddings.padding_idx = model.config.pad_token_id
        output = model.get_output_embeddings()
        if model.config.tie_word_embeddings and output.weight is not embeddings.weight:  # never expected: resize re-ties
            raise RuntimeError("the output item matrix is no longer tied to the input embeddings after resizing")
    return added


__all__ = ["extend_vocabulary"]
