"""Small builders shared by the tests."""

from __future__ import annotations

import importlib
import os
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, read_interactions

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The MovieLens-100K log the package ships (byte-identical to ../shared/data/ml-100k/ml-100k.inter, gzipped):
# tests that need ml-100k read it, so they run in a user's clone too.
ML100K = Path(str(resources.files("bert4rec_hf.data").joinpath("datasets", "ml-100k.inter.gz")))
# The repository's benchmark scripts: not a package, imported by file name.
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Set by .ci/run: there a missing shared data file fails the test instead of skipping it.
REQUIRE_SHARED_DATA = "BERT4REC_REQUIRE_SHARED_DATA"
# a tiny phased run (the last half of 12 steps on next-item rows) of a 60-user ml-100k slice
PHASED_RUN = {
    "max_steps": 12, "eval_steps": 4, "train_batch_size": 16, "hidden_size": 16, "inner_size": 32,
    "max_seq_length": 20, "train_stride": 5, "stopping_step": 100, "torch_threads": 1, "eval_loss": False,
    "next_item_share": 0.5, "schedule": "fixed", "seed": 3,
}  # fmt: skip


def shared_data(relative: str) -> Path:
    """A file of ``../shared/data`` (data the repository does not ship, such as
    Amazon Beauty). Where it is missing (a user's clone) the test is skipped
    with the reason; where ``$BERT4REC_REQUIRE_SHARED_DATA`` is set (CI) it fails."""
    path = SHARED_DATA / relative
    if not path.is_file():
        reason = f"needs {path}: a data set the repository does not ship (present beside the CI checkout)"
        if os.environ.get(REQUIRE_SHARED_DATA):
            pytest.fail(f"{reason}; {REQUIRE_SHARED_DATA} is set, so it may not be skipped")
        pytest.skip(reason)
    return path


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


def write_ml100k_slice(path: Path, num_users: int) -> Path:
    """The first ``num_users`` users of the real ml-100k log as a small CSV file."""
    table = read_interactions(ML100K)
    users = pc.unique(table["user_id"]).to_pylist()[:num_users]
    small = table.filter(pc.is_in(table["user_id"], value_set=pa.array(users)))
    pacsv.write_csv(small.select(["user_id", "item_id", "timestamp"]), path)
    return path


class MaskedRows(torch.utils.data.Dataset):
    """Pre-masked rows (from ``masked_batch``): a Trainer step's gradient then
    does not depend on who masks what."""

    def __init__(self, tensors):
        self.tensors = tensors

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, index):
        inputs, mask, labels = (t[index] for t in self.tensors)
        return {"input_ids": inputs, "attention_mask": mask, "labels": labels}


def benchmark_script(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module (it may import its siblings by name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
