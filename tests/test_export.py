"""ONNX export: onnxruntime gives PyTorch's top-k on MovieLens-100K histories.

onnx and onnxruntime are in the ``dev`` extra, so CI runs this test for real.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, ItemTokenizer, read_interactions
from bert4rec_hf.cli import main
from bert4rec_hf.data import build_sequences
from bert4rec_hf.export import EMPTY_SLOT_ID, Bert4RecTopK, random_histories

from .helpers import ML100K, tiny_model

K = 10
MAX_SEQ_LENGTH = 30


@pytest.fixture(scope="module")
def ml100k():
    """A model over the ml-100k catalog (briefly trained, so scores are not near-ties)
    and left-padded histories of 120 real users."""
    sequences = build_sequences(read_interactions(ML100K))
    tokenizer = ItemTokenizer.fit(np.concatenate([np.asarray(s) for s in sequences["item_ids"]]))
    rows = [tokenizer.encode(items[-(MAX_SEQ_LENGTH - 1) :]) for items in sequences["item_ids"][::8][:120]]
    histories = torch.zeros(len(rows), MAX_SEQ_LENGTH - 1, dtype=torch.long)
    for row, items in enumerate(rows):
        histories[row, histories.shape[1] - len(items) :] = torch.tensor(items)
    histories[::3, :20] = 0  # shorter histories: more padding
    torch.manual_seed(0)
    config = Bert4RecConfig(vocab_size=len(tokenizer), max_seq_length=MAX_SEQ_LENGTH, hidden_dropout_prob=0.1)
    model = Bert4RecForMaskedItemPrediction(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):  # next-item steps on the histories themselves
        labels = torch.full_like(histories, -100)
        labels[:, -1] = histories[:, -1]
        optimizer.zero_grad()
        model(histories.masked_fill(labels.ne(-100), 1), labels=labels).loss.backward()
        optimizer.step()
    return model.eval(), tokenizer, histories


def pytorch_top_k(model, histories, exclude_history):
    scores = model.next_item_scores(histories)
    if exclude_history:
        scores = scores.scatter(1, histories, float("-inf"))
    return scores.topk(K)


@pytest.mark.parametrize("exclude_history", [True, False])
def test_exported_onnx_gives_the_pytorch_top_k(ml100k, tmp_path, capsys, exclude_history):
    model, tokenizer, histories = ml100k
    assert model.head.seen_item_bias.item() != 0  # the exported graph carries the learned seen-item offset
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    flag = "--exclude-history" if exclude_history else "--no-exclude-history"
    argv = ["export", str(tmp_path / "model"), "--format", "onnx", "--output", str(tmp_path / "onnx"), flag, "--verify"]
    assert main(argv) == 0
    assert '"same_top_k_rows": 1.0' in capsys.readouterr().out
    assert {"model.onnx", "item_vocab.json", "export_config.json"} <= {p.name for p in (tmp_path / "onnx").iterdir()}
    description = json.loads((tmp_path / "onnx" / "export_config.json").read_text())
    assert description["k"] == K and description["exclude_history"] is exclude_history

    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = pytorch_top_k(model, histories, exclude_history)
    item_ids, scores = session.run(["item_ids", "scores"], {"input_ids": histories.numpy()})
    assert item_ids.dtype == np.int64 and item_ids.shape == (len(histories), K)
    np.testing.assert_array_equal(item_ids, expected.indices.numpy())
    np.testing.assert_allclose(scores, expected.values.numpy(), rtol=1e-4, atol=1e-5)
    assert (item_ids >= 2).all()  # never padding or [MASK]
    in_history = (item_ids[:, :, None] == histories.numpy()[:, None, :]).any(-1)
    assert not in_history.any() if exclude_history else in_history.any()

    # dynamic axes: another batch size and a history longer than the model reads (the oldest items are dropped)
    longer = torch.cat([torch.randint(2, len(tokenizer), (3, 15)), histories[:3]], dim=1)
    item_ids, _ = session.run(["item_ids", "scores"], {"input_ids": longer.numpy()})
    np.testing.assert_array_equal(item_ids, pytorch_top_k(model, longer, exclude_history).indices.numpy())
    assert tokenizer.decode(item_ids[0])  # ids map back to raw MovieLens ids with the copied vocabulary


def test_top_k_wrapper_rejects_bad_k(ml100k):
    model = ml100k[0]
    with pytest.raises(ValueError, match="k must be an integer"):
        Bert4RecTopK(model, k=0)
    with pytest.raises(ValueError, match="catalog size"):
        Bert4RecTopK(model, k=model.config.num_items + 1)


def test_export_command_rejects_a_missing_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing-here")]) == 1
    assert "bert4rec export: error" in capsys.readouterr().err


@pytest.fixture
def small_folder(tmp_path):
    """8 items and histories of up to 4 (max_seq_length 5): with k=6, most
    histories leave fewer than k candidates."""
    folder = tmp_path / "small"
    tiny_model(vocab_size=10, max_seq_length=5).save_pretrained(folder)
    ItemTokenizer.fit(range(10, 90, 10)).save_pretrained(folder)
    return folder


def test_slots_without_a_candidate_hold_minus_one_never_a_vocabulary_id(small_folder):
    model = Bert4RecForMaskedItemPrediction.from_pretrained(small_folder).eval()
    item_ids, scores = Bert4RecTopK(model, k=6)(torch.tensor([[0, 2, 3, 4, 5], [0, 0, 0, 0, 9]]))
    assert EMPTY_SLOT_ID == -1
    assert item_ids[0, 4:].tolist() == [-1, -1] and torch.isneginf(scores[0, 4:]).all()  # 8 items - 4 seen
    assert set(item_ids[0, :4].tolist()) == {6, 7, 8, 9} and torch.isfinite(scores[0, :4]).all()
    assert torch.isfinite(scores[1]).all() and (item_ids[1] >= 2).all()
    assert (Bert4RecTopK(model, k=8, exclude_history=False)(torch.tensor([[2, 3]]))[0] >= 2).all()


def test_verify_passes_when_histories_leave_fewer_than_k_items(small_folder, tmp_path, capsys):
    argv = ["export", str(small_folder), "--top-k", "6", "--output", str(tmp_path / "onnx"), "--verify"]
    assert main(argv) == 0, capsys.readouterr().err
    assert '"same_top_k_rows": 1.0' in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    item_ids, scores = session.run(["item_ids", "scores"], {"input_ids": random_histories(10, 4, rows=64).numpy()})
    empty = np.isneginf(scores)
    assert empty.any() and (item_ids[empty] == -1).all() and (item_ids[~empty] >= 2).all()
    description = json.loads((tmp_path / "onnx" / "export_config.json").read_text())
    assert description["empty_slot_id"] == -1 and "-1" in description["outputs"]["item_ids"]


@pytest.mark.parametrize(("repeat_share", "excluded"), [(None, True), (0.0, True), (0.3, False)])
def test_the_history_default_follows_the_model(tmp_path, capsys, repeat_share, excluded):
    """As the recommender's: kept as candidates for a model trained on a log with repeats."""
    folder = tmp_path / "model"
    tiny_model(vocab_size=10, max_seq_length=5, repeat_share=repeat_share).save_pretrained(folder)
    ItemTokenizer.fit(range(10, 90, 10)).save_pretrained(folder)
    assert main(["export", str(folder), "--top-k", "8", "--output", str(tmp_path / "onnx"), "--verify"]) == 0
    assert '"same_top_k_rows": 1.0' in capsys.readouterr().out
    assert json.loads((tmp_path / "onnx" / "export_config.json").read_text())["exclude_history"] is excluded
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    item_ids, _ = session.run(["item_ids", "scores"], {"input_ids": np.array([[0, 2, 3, 4, 5]])})
    assert bool((item_ids[0] == -1).any()) is excluded  # 8 items, 4 in the history: only 4 candidates when excluded


def test_export_into_the_model_folder_itself(small_folder, capsys):
    vocabulary = (small_folder / "item_vocab.json").read_text()
    argv = ["export", str(small_folder), "--top-k", "3", "--output", str(small_folder)]
    assert main(argv) == 0, capsys.readouterr().err
    assert {"model.onnx", "export_config.json", "config.json"} <= {p.name for p in small_folder.iterdir()}
    assert (small_folder / "item_vocab.json").read_text() == vocabulary


def test_export_names_a_mistyped_local_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing-here")]) == 1
    assert f"no such folder: {tmp_path / 'nothing-here'}" in capsys.readouterr().err


def test_exported_encoder_and_item_vectors_give_the_top_k_graphs_items(ml100k, tmp_path):
    """What a vector index does with the export: query vectors from encoder.onnx, item
    vectors from item_vectors.safetensors, inner products with the history left out."""
    from safetensors.numpy import load_file

    from bert4rec_hf.export import export_model

    model, tokenizer, histories = ml100k
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    description = export_model(tmp_path / "model", tmp_path / "out", k=K)
    assert description["encoder"]["file"] == "encoder.onnx"
    assert json.loads((tmp_path / "out" / "export_config.json").read_text())["item_vectors"]["file"] == (
        "item_vectors.safetensors"
    )
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    (queries,) = session.run(["query_vectors"], {"input_ids": histories.numpy()})
    assert queries.shape == (len(histories), model.config.hidden_size + 1)
    with torch.no_grad():
        np.testing.assert_allclose(queries, model.next_item_vectors(histories).numpy(), rtol=0, atol=1e-4)
    vectors = load_file(str(tmp_path / "out" / "item_vectors.safetensors"))["item_vectors"]
    assert vectors.shape == (model.config.num_items, model.config.hidden_size + 1)
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    for row, history in enumerate(histories.numpy()):
        scores[row, history[history >= 2] - 2] = -np.inf
    searched = np.argsort(-scores, axis=1, kind="stable")[:, :K] + 2
    top_k = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    (item_ids,) = top_k.run(["item_ids"], {"input_ids": histories.numpy()})
    assert np.array_equal(searched, item_ids)
