"""Item side features: item tables in, features fused into the item embeddings on both sides,
new items scored by their features alone."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open

from bert4rec_hf import Bert4RecForMaskedItemPrediction, ItemTokenizer, load_interactions
from bert4rec_hf.data import load_item_features, read_item_features
from bert4rec_hf.finetuning import extend_vocabulary, write_item_features
from bert4rec_hf.recommendation import Bert4RecRecommender

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

ITEMS = [10, 11, 12, 13]
ATOMIC = (
    "item_id:token\tgenre:token_seq\tyear:float\temb:float_seq\n"
    "10\tAction Comedy\t1990\t0.5 1.0\n"
    "11\tDrama\t2000\t-0.5 0.0\n"
    "12\t\t1995\t0.0 2.0\n"
    "13\tComedy Drama Action\t\t1.0 1.0\n"
)


def _atomic(tmp_path, text=ATOMIC, name="items.item"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _featured_model(table, tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    fields = [spec.to_dict() for spec in table.fit_fields()]
    model = Bert4RecForMaskedItemPrediction(
        tiny_config(vocab_size=len(tokenizer), item_features=fields, **overrides)
    ).eval()
    write_item_features(model, tokenizer, table)
    return model


def test_ml100k_item_table_is_shipped_and_aligned_to_the_vocabulary():
    table = load_item_features("ml-100k", ["class", "release_year"])
    assert table.kinds == {"class": "token_seq", "release_year": "token"}
    genres, years = table.fit_fields()
    assert len(genres.vocabulary) == 19 and genres.length == 6 and len(years.vocabulary) == 73
    tokenizer = ItemTokenizer.fit(load_interactions("ml-100k")["item_id"])
    arrays = table.encode([genres, years], tokenizer)
    assert arrays["tokens"].shape == (tokenizer.num_items, 7) and arrays["values"].shape == (tokenizer.num_items, 0)
    with gzip.open(table.source, "rt") as handle:  # the file's own line for item "1" (Toy Story)
        row = next(line.rstrip("\n").split("\t") for line in handle if line.startswith("1\t"))
    tokens = arrays["tokens"][tokenizer.encode(["1"])[0] - 2]
    assert [genres.vocabulary[t - 1] for t in tokens[:6] if t] == row[3].split()
    assert years.vocabulary[tokens[6] - 1] == row[2]


def test_atomic_csv_and_parquet_tables_encode_alike(tmp_path):
    atomic = read_item_features(_atomic(tmp_path))
    assert atomic.kinds == {"genre": "token_seq", "year": "float", "emb": "float_seq"}
    csv = tmp_path / "items.csv"
    csv.write_text(
        "item_id,genre,year,emb:float_seq\n10,Action Comedy,1990,0.5 1.0\n11,Drama,2000,-0.5 0.0\n12,,1995,0.0 2.0\n"
        "13,Comedy Drama Action,,1.0 1.0\n"
    )
    from_csv = read_item_features(csv, ["genre:token_seq", "year", "emb"])  # emb's kind from the header
    parquet = tmp_path / "items.parquet"
    pq.write_table(
        pa.table({
            "item_id": ITEMS, "genre": [["Action", "Comedy"], ["Drama"], [], ["Comedy", "Drama", "Action"]],
            "year": [1990.0, 2000.0, 1995.0, None], "emb": [[0.5, 1.0], [-0.5, 0.0], [0.0, 2.0], [1.0, 1.0]],
        }),
        parquet,
    )
    from_parquet = read_item_features(parquet)
    assert from_parquet.kinds == atomic.kinds
    tokenizer = ItemTokenizer.fit(ITEMS)
    fields = atomic.fit_fields()
    expected = atomic.encode(fields, tokenizer)
    for table in (from_csv, from_parquet):
        assert [f.to_dict() for f in table.fit_fields()] == [f.to_dict() for f in fields]
        arrays = table.encode(fields, tokenizer)
        np.testing.assert_array_equal(arrays["tokens"], expected["tokens"])
        np.testing.assert_allclose(arrays["values"], expected["values"])
    genre, year, emb = fields
    assert genre.vocabulary == ["Action", "Comedy", "Drama"] and genre.length == 3
    np.testing.assert_array_equal(expected["tokens"], [[1, 2, 0], [3, 0, 0], [0, 0, 0], [2, 3, 1]])
    np.testing.assert_allclose(year.mean, [1995.0]) and np.testing.assert_allclose(emb.mean, [0.25, 1.0])
    # standardised; the missing year is the mean, 0
    np.testing.assert_allclose(expected["values"][:, 0], [-5 / year.std[0], 5 / year.std[0], 0.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize(
    "text, fields, message",
    [
        (ATOMIC + "11\tDrama\t2001\t0.0 0.0\n", None, "line 6, column 'item_id': item '11' appears twice (first on line 3)"),
        (ATOMIC.replace("-0.5 0.0", "-0.5 0.0 1.0"), None, "line 3, column 'emb': 3 value(s), expected 2"),
        (ATOMIC.replace("1995", "about 1995"), None, "line 4, column 'year': not a number: 'about 1995'"),
        (ATOMIC, ["genre", "rating"], "no column ['rating']"),
    ],
)
def test_bad_tables_name_file_line_and_column(tmp_path, text, fields, message):
    path = _atomic(tmp_path, text)
    with pytest.raises(ValueError) as err:
        table = read_item_features(path, fields)
        table.encode(table.fit_fields(), ItemTokenizer.fit(ITEMS))
    assert str(path) in str(err.value) and message in str(err.value)


def test_items_missing_from_the_table_are_an_error_or_neutral(tmp_path):
    table = read_item_features(_atomic(tmp_path))
    tokenizer = ItemTokenizer.fit([*ITEMS, 77, 78])
    with pytest.raises(ValueError, match=r"2 item\(s\) of the log have no row in the item table, e.g. \[77, 78\]"):
        table.encode(table.fit_fields(), tokenizer)
    arrays = table.encode(table.fit_fields(), tokenizer, missing="neutral")
    assert not arrays["tokens"][-2:].any() and not arrays["values"][-2:].any()
    assert arrays["tokens"][:4].any(axis=1).sum() == 3  # item 12 has no genre, the others have


def test_model_without_features_is_todays_model():
    plain = Bert4RecForMaskedItemPrediction(tiny_config())
    assert plain.bert4rec.embeddings.item_features is None
    assert not any("feature" in key for key in plain.state_dict())
    assert "item_features" not in Bert4RecForMaskedItemPrediction.config_class.run_settings()


def test_features_are_used_on_both_sides_and_saved_without_pickle(tmp_path):
    table = read_item_features(_atomic(tmp_path))
    tokenizer = ItemTokenizer.fit(ITEMS)
    model = _featured_model(table, tokenizer)
    features = model.bert4rec.embeddings.item_features
    # the output item matrix is id embedding + feature vector; padding and [MASK] rows have no features
    matrix = model.output_item_matrix()
    torch.testing.assert_close(matrix, model.get_input_embeddings().weight + features())
    assert not features()[:2].any()
    history = torch.tensor([tokenizer.encode([10, 11])])
    scores = model.next_item_scores(history)
    with torch.no_grad():  # changing one item's features changes its score and the encoder's input
        features.item_values[tokenizer.encode([13])[0]] += 3.0
    changed = model.next_item_scores(history)
    assert changed[0, tokenizer.encode([13])[0]] != scores[0, tokenizer.encode([13])[0]]
    history13 = torch.tensor([tokenizer.encode([13, 10])])
    assert not torch.equal(model.bert4rec(history13).last_hidden_state, _featured_model(table, tokenizer).bert4rec(history13).last_hidden_state)

    model.save_pretrained(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("*.bin")) and not list((tmp_path / "saved").glob("*.pt"))
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as handle:
        stored = handle.get_tensor("bert4rec.embeddings.item_features.item_tokens")
    assert torch.equal(stored, features.item_tokens)
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert [spec["name"] for spec in saved["item_features"]] == ["genre", "year", "emb"]
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "saved").eval()
    torch.testing.assert_close(loaded.next_item_scores(history), changed)


def test_concat_fusion_starts_as_the_sum_learns_its_own_projection_and_round_trips(tmp_path):
    table = read_item_features(_atomic(tmp_path))
    tokenizer = ItemTokenizer.fit(ITEMS)
    summed = _featured_model(table, tokenizer)
    concat = _featured_model(table, tokenizer, item_feature_fusion="concat")
    features = concat.bert4rec.embeddings.item_features
    width = concat.config.hidden_size
    assert features.fusion.weight.shape == (width, 2 * width)
    assert summed.bert4rec.embeddings.item_features.fusion is None
    # initialised to [I I], the projection is the sum: same scores as a "sum" model with the same weights
    ids = concat.get_input_embeddings().weight
    torch.testing.assert_close(concat.output_item_matrix(), ids + features())
    summed.load_state_dict({k: v for k, v in concat.state_dict().items() if "fusion" not in k})
    history = torch.tensor([tokenizer.encode([10, 11])])
    torch.testing.assert_close(concat.next_item_scores(history), summed.next_item_scores(history))
    with torch.no_grad():  # a trained projection: the id part counts double, the features half
        features.fusion.weight[:, :width] *= 2
        features.fusion.weight[:, width:] *= 0.5
    torch.testing.assert_close(concat.output_item_matrix(), 2 * ids + 0.5 * features())
    assert not torch.allclose(concat.next_item_scores(history), summed.next_item_scores(history))
    concat.save_pretrained(tmp_path / "concat")
    assert json.loads((tmp_path / "concat" / "config.json").read_text())["item_feature_fusion"] == "concat"
    loaded = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "concat").eval()
    torch.testing.assert_close(loaded.bert4rec.embeddings.item_features.fusion.weight, features.fusion.weight)
    torch.testing.assert_close(loaded.next_item_scores(history), concat.next_item_scores(history))
    with pytest.raises(ValueError, match="item_feature_fusion must be one of"):
        tiny_config(item_feature_fusion="product")


def test_a_new_item_is_recommended_from_its_features_alone(tmp_path):
    """An item added after training, with the features of a trained item, scores as that item does
    once their id parts agree: its score comes from its features."""
    table = read_item_features(_atomic(tmp_path))
    tokenizer = ItemTokenizer.fit(ITEMS)
    model = _featured_model(table, tokenizer)
    with torch.no_grad():  # make item 13's features decide: a strong genre embedding, id part 0
        model.bert4rec.embeddings.item_features.token_embeddings[0].weight.mul_(50)
        model.get_input_embeddings().weight[tokenizer.encode([13])[0]] = 0
    history = [10, 11]
    before = Bert4RecRecommender(model, tokenizer).recommend(history, k=1)
    new = tmp_path / "new.item"
    new.write_text(ATOMIC.splitlines()[0] + "\n99\tComedy Drama Action\t\t1.0 1.0\n")  # item 13's features
    with pytest.raises(ValueError, match="pass the new items' item_features"):
        extend_vocabulary(model, tokenizer, [99])
    with pytest.raises(ValueError, match="no row in the item table"):  # checked before anything changes
        extend_vocabulary(model, tokenizer, [99, 98], item_features=read_item_features(new))
    assert len(tokenizer) == model.config.vocab_size == 6
    assert extend_vocabulary(model, tokenizer, [99], item_features=read_item_features(new)) == 1
    new_id = tokenizer.encode([99])[0]
    features = model.bert4rec.embeddings.item_features
    assert torch.equal(features.item_tokens[new_id], features.item_tokens[tokenizer.encode([13])[0]])
    with torch.no_grad():
        model.get_input_embeddings().weight[new_id] = 0
        model.head.decoder.bias[new_id] = model.head.decoder.bias[tokenizer.encode([13])[0]]
    scores = model.next_item_scores(torch.tensor([tokenizer.encode(history)]))[0]
    assert scores[new_id] == scores[tokenizer.encode([13])[0]]
    recommended = Bert4RecRecommender(model, tokenizer).recommend(history, k=2)
    assert before.items == [13] and set(recommended.items) == {13, 99}


def test_onnx_export_scores_with_the_features(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from bert4rec_hf.export import export_onnx

    table = read_item_features(_atomic(tmp_path))
    tokenizer = ItemTokenizer.fit(ITEMS)
    model = _featured_model(table, tokenizer)
    with torch.no_grad():  # features that matter: the export must carry the table, not only the id embeddings
        model.bert4rec.embeddings.item_features.value_projection.weight.mul_(100)
    histories = torch.tensor([tokenizer.encode([10, 11, 12]), [0, *tokenizer.encode([13, 10])]])
    path = export_onnx(model, tmp_path / "model.onnx", k=2, exclude_history=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    item_ids, scores = session.run(["item_ids", "scores"], {"input_ids": histories.numpy()})
    expected = model.next_item_scores(histories).topk(2)
    np.testing.assert_array_equal(item_ids, expected.indices.numpy())
    np.testing.assert_allclose(scores, expected.values.numpy(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the features decide: without them the scores are others
        model.bert4rec.embeddings.item_features.item_values.zero_()
    assert not torch.allclose(model.next_item_scores(histories).topk(2).values, expected.values, rtol=1e-3)
