"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_config(**overrides) -> Bert4RecConfig:
    values = dict(
        vocab_size=52,
        hidden_size=16,
        inner_size=32,
        n_layers=2,
        n_heads=2,
        max_seq_length=12,
        hidden_dropout_prob=0.0,
        attn_dropout_prob=0.0,
    )
    values.update(overrides)
    return Bert4RecConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> Bert4RecForMaskedItemPrediction:
    torch.manual_seed(seed)
    return Bert4RecForMaskedItemPrediction(tiny_config(**overrides)).eval()


def masked_batch(config: Bert4RecConfig, batch: int = 6, length: int = 10, seed: int = 0, pad_rows: bool = True):
    """Random left-padded histories with ~30% of real positions masked."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, config.vocab_size, (batch, length), generator=generator)
    if pad_rows:
        lengths = torch.randint(2, length + 1, (batch,), generator=generator)
        pad = torch.arange(length)[None, :] < (length - lengths)[:, None]
        input_ids = input_ids.masked_fill(pad, 0)
    real = input_ids.ne(0)
    masked = (torch.rand(input_ids.shape, generator=generator) < 0.3) & real
    masked[:, -1] = True  # at least one per row
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.masked_fill(masked, 1)
    return inputs, real.long(), labels
