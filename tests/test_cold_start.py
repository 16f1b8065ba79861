"""The cold-start protocol: items held out of training, added with their features, evaluated apart."""

from importlib import resources

import numpy as np
import pyarrow as pa
import pytest
import torch

from bert4rec_hf import Bert4RecForMaskedItemPrediction, ItemTokenizer, evaluate_saved_model, run_bert4rec
from bert4rec_hf.data import read_item_features, training_histories
from bert4rec_hf.evaluation import count_item_popularity
from bert4rec_hf.evaluation.baselines import evaluate_baselines
from bert4rec_hf.evaluation.cold_start import hold_out_items, target_groups
from bert4rec_hf.training import load_config
from bert4rec_hf.training.pipeline import build_evaluator, prepare_data

from .helpers import write_ml100k_slice

pytestmark = pytest.mark.usefixtures("one_thread")
ITEM_TABLE = str(resources.files("bert4rec_hf.data").joinpath("datasets", "ml-100k.item.gz"))
SMALL = {
    "epochs": 1, "max_steps": 4, "eval_steps": 4, "hidden_size": 16, "inner_size": 32, "n_heads": 2, "n_layers": 1,
    "train_batch_size": 64, "eval_batch_size": 128, "max_seq_length": 20, "train_stride": 10, "eval_loss": False,
}  # fmt: skip


def test_held_out_items_are_a_seeded_share_of_the_distinct_items():
    items = pa.array([5, 3, 5, 9, 1, 3, 7, 8, 2, 4, 6, 0])
    first, again = hold_out_items(items, 0.3, seed=1), hold_out_items(items, 0.3, seed=1)
    assert first.equals(again) and len(first) == 3 and len(set(first.to_pylist())) == 3
    assert set(first.to_pylist()) <= set(items.to_pylist())
    others = [hold_out_items(items, 0.3, seed=s).to_pylist() for s in range(2, 8)]
    assert any(o != first.to_pylist() for o in others)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        hold_out_items(items, 1.0, seed=1)


def test_target_groups_split_by_the_first_cold_id():
    groups = target_groups([2, 9, 5, 10, 12], first_cold_id=10)
    np.testing.assert_array_equal(groups["cold"], [3, 4])
    np.testing.assert_array_equal(groups["warm"], [0, 1, 2])


def test_cold_start_run_trains_without_the_cold_items_and_reports_them_apart(tmp_path):
    log = write_ml100k_slice(tmp_path / "slice.csv", 120)
    config = {
        **SMALL, "data_path": str(log), "cold_item_share": 0.2, "item_features": ["class", "release_year"],
        "item_features_path": ITEM_TABLE,
    }  # fmt: skip
    training = prepare_data(load_config("slice", config_dict=config))
    cold = set(training.cold_items.to_pylist())
    assert cold and not any(item in training.processed.tokenizer for item in cold)
    windows = np.concatenate(training.processed.splits["train"].with_format("numpy")["input_ids"])
    assert windows.max() < len(training.processed.tokenizer)  # no training row holds a cold item

    results = run_bert4rec("slice", config_dict=config, output_dir=tmp_path / "run")
    cold_users, warm_users = results["test_cold"]["test_cold_num_users"], results["test_warm"]["test_warm_num_users"]
    assert cold_users > 0 and cold_users + warm_users == results["test"]["test_num_users"]
    assert results["test"]["test_num_users"] > training.processed.splits["test"].num_rows  # cold targets now count

    model = Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path / "run")
    tokenizer = ItemTokenizer.from_pretrained(tmp_path / "run")
    assert model.config.vocab_size == len(tokenizer) and all(item in tokenizer for item in cold)
    table = read_item_features(ITEM_TABLE, ["class", "release_year"])
    new_ids = tokenizer.encode(sorted(cold))
    expected = table.encode(table.fit_fields(), tokenizer)["tokens"][np.asarray(new_ids) - 2]
    saved = model.bert4rec.embeddings.item_features.item_tokens[new_ids]
    assert saved.any(dim=1).all()  # every cold item has its features: its score comes from them
    # the saved fields are those fitted on the whole table, so the cold rows encode as the table says
    np.testing.assert_array_equal(saved.numpy(), expected)

    # the run's most-popular baseline counts training interactions only: the held-out items count 0
    # (the grown data's own training histories would count their interactions)
    run_config = load_config("slice", config_dict=config)
    grown = prepare_data(run_config, tokenizer)
    counted = count_item_popularity(training_histories(training.processed), len(training.processed.tokenizer))
    expected = evaluate_baselines(
        grown.processed, build_evaluator(run_config, grown.processed), run_config["max_seq_length"], False, counted
    )
    assert results["baselines"]["most popular"] == expected["most popular"]
    leaky = evaluate_baselines(grown.processed, build_evaluator(run_config, grown.processed), run_config["max_seq_length"], False)
    cold_ids = torch.as_tensor(tokenizer.encode(sorted(cold)))
    grown_counts = count_item_popularity(training_histories(grown.processed), len(tokenizer))
    assert grown_counts[cold_ids].sum() > 0  # what the run must not count
    assert leaky["most popular"] != expected["most popular"]


    # `bert4rec evaluate` of the folder reports the same cold and warm targets and the same baselines
    again = evaluate_saved_model(tmp_path / "run")
    for group in ("test", "test_cold", "test_warm"):
        for metric in ("num_users", "ndcg@10", "hit@10", "mrr"):
            assert again[group][f"{group}_{metric}"] == pytest.approx(results[group][f"{group}_{metric}"]), (group, metric)
    assert again["baselines"] == results["baselines"]
    # another seed holds out other items: the folder's vocabulary no longer tells cold from warm
    with pytest.raises(ValueError, match="its vocabulary does not begin with the items its run trained on"):
        evaluate_saved_model(tmp_path / "run", config_dict={"seed": 7})
