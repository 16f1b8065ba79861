"""Growing the vocabulary of a trained model and fine-tuning on logs with new items."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainingArguments

from bert4rec_hf import (
    Bert4RecForMaskedItemPrediction,
    Bert4RecTrainer,
    DataCollatorForMaskedItemPrediction,
    ItemTokenizer,
)
from bert4rec_hf.finetuning import extend_vocabulary
from bert4rec_hf.recommendation import Bert4RecRecommender

from .helpers import tiny_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune.py"
OLD_ITEMS = list(range(100, 150))
NEW_ITEMS = [900, 901, 902, 903, 904]


pytestmark = pytest.mark.usefixtures("one_thread")


def _old_model():
    model = tiny_model(seed=1, vocab_size=len(OLD_ITEMS) + 2)
    with torch.no_grad():  # a trained model's bias is not zero; the old part must survive resizing
        model.head.decoder.bias.normal_(0, 1, generator=torch.Generator().manual_seed(3))
    return model, ItemTokenizer.fit(OLD_ITEMS)


def test_extension_of_an_untied_model_grows_both_item_matrices():
    model = tiny_model(seed=1, vocab_size=len(OLD_ITEMS) + 2, tie_word_embeddings=False)
    tokenizer = ItemTokenizer.fit(OLD_ITEMS)
    history = torch.tensor([tokenizer.encode([100, 107, 123, 140])])
    old_scores = model.next_item_scores(history)
    old_output = model.head.decoder.weight.detach().clone()
    assert extend_vocabulary(model, tokenizer, NEW_ITEMS) == len(NEW_ITEMS)
    vocab_size = len(OLD_ITEMS) + 2 + len(NEW_ITEMS)
    output, embeddings = model.head.decoder, model.get_input_embeddings()
    assert output.weight is not embeddings.weight
    assert output.weight.shape == embeddings.weight.shape == (vocab_size, 16) and output.bias.shape == (vocab_size,)
    assert torch.equal(output.weight[: len(old_output)], old_output)
    torch.testing.assert_close(model.next_item_scores(history)[:, : len(old_output)], old_scores)


def test_extension_keeps_old_scores_and_initialises_new_rows_like_the_originals(tmp_path):
    model, tokenizer = _old_model()
    history = torch.tensor([tokenizer.encode([100, 107, 123, 140])])
    old_scores = model.next_item_scores(history)
    old_weight = model.get_input_embeddings().weight.detach().clone()
    old_bias = model.head.decoder.bias.detach().clone()
    new_ids = np.random.default_rng(0).integers(1000, 1_000_000, 3000)
    added = extend_vocabulary(model, tokenizer, [*new_ids.tolist(), 100, 101])  # 100, 101 are known
    assert added == len(np.unique(new_ids))
    vocab_size = len(OLD_ITEMS) + 2 + added
    assert len(tokenizer) == model.config.vocab_size == vocab_size
    assert tokenizer.encode([100, 149]) == [2, 51]  # old indices do not move
    embeddings = model.get_input_embeddings()
    assert embeddings.weight.shape == (vocab_size, 16) and embeddings.padding_idx == 0
    assert model.head.decoder.weight is embeddings.weight  # still tied
    assert model.head.decoder.bias.shape == (vocab_size,)
    # old rows unchanged; new rows ~ normal(0, initializer_range) like a fresh model's, new bias 0
    assert torch.equal(embeddings.weight[: len(old_bias)], old_weight)
    assert torch.equal(model.head.decoder.bias[: len(old_bias)], old_bias)
    new_rows = embeddings.weight[len(old_bias) :].detach()
    assert new_rows.std().item() == pytest.approx(model.config.initializer_range, rel=0.05)
    assert abs(new_rows.mean().item()) < 0.002
    assert torch.count_nonzero(model.head.decoder.bias[len(old_bias) :]) == 0
    # before any training step an old history scores the old items exactly as before
    new_scores = model.next_item_scores(history)
    torch.testing.assert_close(new_scores[:, : len(old_bias)], old_scores)
    assert torch.isfinite(new_scores[:, len(old_bias) :]).all()
    # nothing new: nothing changes
    assert extend_vocabulary(model, tokenizer, [100, "149"]) == 0 and model.config.vocab_size == vocab_size
    # the grown model saves and reloads with its vocabulary
    Bert4RecRecommender(model, tokenizer).save_pretrained(tmp_path)
    reloaded = Bert4RecRecommender.from_pretrained(tmp_path, device="cpu")
    assert reloaded.model.config.vocab_size == vocab_size and reloaded.tokenizer == tokenizer
    torch.testing.assert_close(reloaded.model.next_item_scores(history), new_scores)


def test_extension_drops_the_old_catalogs_sampling_weights_so_new_items_can_be_negatives(monkeypatch):
    model = tiny_model(seed=1, vocab_size=len(OLD_ITEMS) + 2, loss_type="SSM", sampling_distribution="popularity").train()
    tokenizer = ItemTokenizer.fit(OLD_ITEMS)
    model.set_sampling_weights(torch.ones(len(OLD_ITEMS) + 2))
    extend_vocabulary(model, tokenizer, NEW_ITEMS)
    assert model.sampling_weights is None  # stale counts of the old catalog would never draw a new item
    hidden = torch.randn(4, 16)
    targets = torch.tensor(tokenizer.encode(NEW_ITEMS[:4]))
    with pytest.raises(ValueError, match="needs item weights"):
        model.masked_item_loss(hidden, targets)
    # counts of the new training data propose the new items too
    counts = torch.zeros(model.config.vocab_size)
    counts[tokenizer.encode(NEW_ITEMS)] = 1.0
    model.set_sampling_weights(counts)
    drawn = []
    multinomial = torch.multinomial

    def recording_multinomial(*args, **kwargs):
        drawn.append(multinomial(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(torch, "multinomial", recording_multinomial)
    loss, _ = model.masked_item_loss(hidden, targets)
    assert torch.isfinite(loss)
    proposed = set((drawn[0] + model.first_item_id).tolist())
    assert proposed <= set(tokenizer.encode(NEW_ITEMS)) and len(proposed) == len(NEW_ITEMS)


def test_any_resize_drops_sampling_weights_of_another_size_and_keeps_matching_ones():
    model = tiny_model(seed=1, vocab_size=len(OLD_ITEMS) + 2, loss_type="SSM", sampling_distribution="popularity").train()
    weights = torch.arange(1.0, len(OLD_ITEMS) + 3)
    model.set_sampling_weights(weights)
    model.resize_token_embeddings(len(OLD_ITEMS) + 2)  # same size: the counts still describe the catalog
    assert torch.equal(model.sampling_weights, weights)
    model.resize_token_embeddings(len(OLD_ITEMS) + 7, mean_resizing=False)  # without extend_vocabulary
    assert model.sampling_weights is None
    with pytest.raises(ValueError, match="needs item weights"):
        model.masked_item_loss(torch.randn(2, 16), torch.tensor([2, 3]))


def test_extension_refuses_a_tokenizer_of_another_checkpoint():
    model, _ = _old_model()
    other = ItemTokenizer.fit(range(10))
    with pytest.raises(ValueError, match="do not belong to the same checkpoint"):
        extend_vocabulary(model, other, [5000])
    assert other.num_items == 10 and model.config.vocab_size == len(OLD_ITEMS) + 2


@pytest.mark.parametrize("bad", [[950, None], [950, ""], [950, " "]])
def test_extension_refuses_null_or_empty_ids_and_changes_nothing(tmp_path, bad):
    """A null or empty id would be saved into item_vocab.json, which then never loads again."""
    model, tokenizer = _old_model()
    weight = model.get_input_embeddings().weight.detach().clone()
    with pytest.raises(ValueError, match="empty item id"):
        extend_vocabulary(model, tokenizer, bad)
    assert tokenizer == ItemTokenizer.fit(OLD_ITEMS) and model.config.vocab_size == len(OLD_ITEMS) + 2
    assert torch.equal(model.get_input_embeddings().weight, weight)
    Bert4RecRecommender(model, tokenizer).save_pretrained(tmp_path)  # still a loadable checkpoint
    assert Bert4RecRecommender.from_pretrained(tmp_path, device="cpu").tokenizer == tokenizer


def _new_log(seed: int = 0, users: int = 160, length: int = 10) -> list[dict]:
    """Histories that alternate old items and the (popular) new ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(users):
        sequence = np.empty(length, dtype=np.int64)
        sequence[0::2] = rng.choice(OLD_ITEMS, length // 2)
        sequence[1::2] = rng.choice(NEW_ITEMS, length // 2)
        rows.append(sequence)
    return rows


def test_new_items_are_recommended_after_fine_tuning_on_a_log_where_they_are_popular(tmp_path):
    model, tokenizer = _old_model()
    log = _new_log()
    assert extend_vocabulary(model, tokenizer, np.concatenate(log)) == len(NEW_ITEMS)
    recommender = Bert4RecRecommender(model, tokenizer)
    old_history = [101, 120, 133]
    before = recommender.recommend(old_history, k=5).items
    assert len(set(before) & set(NEW_ITEMS)) <= 1

    train = [{"input_ids": tokenizer.encode(sequence.tolist())} for sequence in log]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=40, per_device_train_batch_size=32, learning_rate=1e-2,
        report_to="none", use_cpu=True, save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = Bert4RecTrainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorForMaskedItemPrediction(max_seq_length=model.config.max_seq_length, mask_ratio=0.3),
    )
    trainer.train()
    after = recommender.recommend(old_history, k=5)
    assert set(after.items) == set(NEW_ITEMS), after
    # and for a batch of histories never seen in training, with the history excluded
    histories = [[int(item) for item in np.random.default_rng(i).choice(OLD_ITEMS, 4)] for i in range(20)]
    lists = recommender.recommend(histories, k=3, return_scores=False)
    assert all(set(items) <= set(NEW_ITEMS) for items in lists)


def test_finetune_example_runs(tmp_path):
    """examples/finetune.py end to end on a slice of ml-100k split by time."""
    output = tmp_path / "finetuned"
    command = [
        sys.executable, str(EXAMPLE), "--demo-ml-100k", "--output-dir", str(output), "--max-users", "60",
        "--old-epochs", "1", "--epochs", "1", "--hidden-size", "16", "--max-seq-length", "20", "--batch-size", "128",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| hit@10 |" in result.stdout and "saved to" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["added_items"] > 0 and metrics["after"]["after_num_users"] == 60
    names = {path.name for path in output.iterdir()}
    assert {"config.json", "model.safetensors", "item_vocab.json", "README.md", "modeling_bert4rec.py"} <= names
    assert "checkpoints" not in names and "## Fine-tuning" in (output / "README.md").read_text()
    old = ItemTokenizer.from_pretrained(tmp_path / "finetuned-demo" / "old-model")
    recommender = Bert4RecRecommender.from_pretrained(output, device="cpu")
    assert recommender.num_items == old.num_items + metrics["added_items"]
    assert recommender.tokenizer.items[: old.num_items] == old.items
    model = Bert4RecForMaskedItemPrediction.from_pretrained(output)
    assert model.config.vocab_size == len(recommender.tokenizer)
