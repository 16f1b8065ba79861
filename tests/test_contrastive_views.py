"""Masked copies of each window (the collator's ``num_views``) and the contrastive loss between
them (``contrastive_weight``; CBiT, Du et al., CIKM 2022): from the collator and the loss formula to
a trained and reloaded model folder (issue 24's ablations)."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, run_bert4rec
from bert4rec_hf.data import DataCollatorForMaskedItemPrediction
from bert4rec_hf.losses_bert4rec import view_contrastive_loss
from bert4rec_hf.training.config import ConfigError, load_config

from .helpers import tiny_model, write_ml100k_slice

VOCAB = 203


def _features(batch: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(2, VOCAB, size=int(rng.integers(3, 12))).tolist()} for _ in range(batch)]


def test_collator_stacks_independently_masked_copies_of_the_batch():
    features = _features(16, seed=1)
    batch = DataCollatorForMaskedItemPrediction(max_seq_length=12, mask_ratio=0.4, vocab_size=VOCAB, num_views=3, seed=7)(
        features
    )
    single = DataCollatorForMaskedItemPrediction(max_seq_length=12, mask_ratio=0.4, vocab_size=VOCAB, seed=7)(features)
    assert batch["num_views"] == 3 and "num_views" not in single
    assert batch["input_ids"].shape == (48, single["input_ids"].shape[1])
    items = torch.where(batch["labels"].ne(-100), batch["labels"], batch["input_ids"])  # the windows, unmasked
    views = items.view(3, 16, -1)
    for view in range(3):
        torch.testing.assert_close(views[view], views[0])  # every copy is the same windows, in the same order
        torch.testing.assert_close(batch["attention_mask"].view(3, 16, -1)[view], single["attention_mask"])
    masks = batch["labels"].ne(-100).view(3, 16, -1)
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])  # drawn on their own
    assert bool(masks.any(dim=2).all())  # every row of every copy has a target


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_collator_refuses_a_bad_number_of_views(value):
    with pytest.raises(ValueError, match="num_views must be an integer >= 1"):
        DataCollatorForMaskedItemPrediction(max_seq_length=12, num_views=value)


def _reference_contrastive(states, attention_mask, num_views, temperature):
    """NT-Xent written out pair by pair and window by window."""
    rows = states.shape[0] // num_views
    flat = F.normalize((states * attention_mask[..., None]).flatten(1), dim=1).view(num_views, rows, -1)
    losses = []
    for j in range(num_views):
        for k in range(num_views):
            if j == k:
                continue
            for r in range(rows):
                others = [s for s in range(rows) if s != r]
                logits = torch.cat([flat[k] @ flat[j, r], flat[j, others] @ flat[j, r]]) / temperature
                losses.append(-logits.log_softmax(0)[r])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("num_views", [2, 3])
def test_contrastive_loss_is_nt_xent_over_every_ordered_pair_of_copies(num_views):
    generator = torch.Generator().manual_seed(0)
    rows, length = 5, 6
    states = torch.randn(num_views * rows, length, 4, generator=generator)
    attention_mask = (torch.arange(length)[None] >= torch.tensor([0, 2, 3, 5, 1])[:, None]).long().repeat(num_views, 1)
    loss = view_contrastive_loss(states, attention_mask, num_views, temperature=0.3)
    torch.testing.assert_close(loss, _reference_contrastive(states, attention_mask, num_views, 0.3))

    padded = states.clone()
    padded[attention_mask.eq(0)] = 100.0  # what the encoder leaves at padding does not count
    torch.testing.assert_close(view_contrastive_loss(padded, attention_mask, num_views, 0.3), loss)
    agreeing = states[:rows].repeat(num_views, 1, 1)  # copies that agree exactly: the loss falls
    assert view_contrastive_loss(agreeing, attention_mask, num_views, 0.3) < loss
    with pytest.raises(ValueError, match="num_views >= 2"):
        view_contrastive_loss(states[:7], attention_mask[:7], num_views, 0.3)


def test_model_adds_the_weighted_term_in_training_only():
    collate = DataCollatorForMaskedItemPrediction(max_seq_length=12, mask_ratio=0.3, vocab_size=VOCAB, num_views=2, seed=3)
    batch = collate(_features(6, seed=2))
    weighted = tiny_model(seed=1, vocab_size=VOCAB, contrastive_weight=0.5, contrastive_temperature=0.2).train()
    plain = tiny_model(seed=1, vocab_size=VOCAB).train()  # the same weights (seed), no contrastive loss
    hidden = plain.bert4rec(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    term = view_contrastive_loss(hidden, batch["attention_mask"], 2, 0.2)
    cloze = plain(**batch).loss
    torch.testing.assert_close(weighted(**batch).loss, cloze + 0.5 * term)

    targets = int(batch["labels"].ne(-100).sum())  # one of two accumulated batches: weighted by its targets
    accumulated = weighted(**batch, num_items_in_batch=2 * targets).loss
    torch.testing.assert_close(accumulated, cloze / 2 + 0.5 * term / 2)

    loss = weighted(**batch).loss
    loss.backward()
    assert weighted.bert4rec.embeddings.position_embeddings.weight.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(weighted.eval()(**batch).loss, plain.eval()(**batch).loss)  # evaluation: Cloze only


def test_model_refuses_a_contrastive_weight_without_copies():
    collate = DataCollatorForMaskedItemPrediction(max_seq_length=12, vocab_size=VOCAB, seed=3)
    model = tiny_model(vocab_size=VOCAB, contrastive_weight=0.1).train()
    with pytest.raises(ValueError, match="set the collator's num_views"):
        model(**collate(_features(4)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(contrastive_weight=-0.1), "contrastive_weight must be a non-negative number"),
        (dict(contrastive_weight=float("inf")), "contrastive_weight must be a non-negative number"),
        (dict(contrastive_temperature=0), "contrastive_temperature must be a positive number"),
    ],
)
def test_invalid_contrastive_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        Bert4RecConfig(**overrides)


def test_run_configuration_needs_copies_for_the_contrastive_loss():
    with pytest.raises(ConfigError, match="contrastive_weight 0.3 compares masked copies.*num_views is 1"):
        load_config("ml-100k", config_dict={"contrastive_weight": 0.3})
    with pytest.raises(ConfigError, match="'num_views' must be an integer >= 1"):
        load_config("ml-100k", config_dict={"num_views": 0})


def test_a_run_with_copies_and_the_contrastive_loss_trains_and_reloads(tmp_path):
    log = write_ml100k_slice(tmp_path / "slice.csv", 30)
    settings = {
        "data_path": str(log), "schedule": "fixed", "max_steps": 4, "hidden_size": 16, "inner_size": 32,
        "n_layers": 1, "max_seq_length": 20, "train_batch_size": 16, "num_views": 2, "contrastive_weight": 0.3,
        "contrastive_temperature": 0.5, "eval_steps": 2,
    }  # fmt: skip
    # the model refuses a contrastive weight on a batch without copies: training through proves the
    # Trainer hands the collator's num_views to the model
    result = run_bert4rec("slice", config_dict=settings, output_dir=tmp_path / "model")
    assert 0 <= result["test"]["test_ndcg@10"] <= 1
    model = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "model")
    assert (model.config.contrastive_weight, model.config.contrastive_temperature) == (0.3, 0.5)
