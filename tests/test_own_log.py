"""Your own log, end to end: `bert4rec train LOG`, the data report, the baselines beside the
model, and repeat consumption (the recommender's default follows the training data)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from bert4rec_hf import Bert4RecForMaskedItemPrediction, Bert4RecRecommender, ItemTokenizer, run_bert4rec
from bert4rec_hf.cli import main
from bert4rec_hf.model_folder import default_model_card

from .helpers import tiny_model

TINY = [
    "hidden_size=16", "inner_size=32", "n_heads=2", "n_layers=1", "max_seq_length=12", "train_batch_size=64",
    "max_steps=240", "eval_steps=80", "learning_rate=0.01", "hidden_dropout_prob=0.1", "attn_dropout_prob=0.1",
    "torch_threads=1",
]  # fmt: skip


def write_repeat_log(path, users: int = 150, length: int = 16, items: int = 60, seed: int = 0):
    """Users who come back to their own three favourites (90% of the time) in random
    order, with a random other item now and then: the next item is usually in the history."""
    rng = np.random.default_rng(seed)
    favourites = rng.choice(items, size=(users, 3), replace=True)
    picks = favourites[np.arange(users)[:, None], rng.integers(0, 3, (users, length))]
    noise = rng.random((users, length)) < 0.1
    picks = np.where(noise, rng.integers(0, items, (users, length)), picks)
    table = pa.table({
        "visitor": np.repeat(np.arange(users) * 10 + 7, length).astype(str),
        "product": (picks.reshape(-1) + 100).astype(str),
        "ts": np.tile(np.arange(length), users) + np.repeat(np.arange(users), length) * 1000,
    })  # fmt: skip
    pacsv.write_csv(table, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    log = write_repeat_log(folder / "clicks.csv")
    argv = ["train", str(log), "--set", *TINY, "user_column=visitor", "item_column=product", "time_column=ts"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert main(argv) == 0
    return folder / "outputs" / "clicks"


def test_the_log_argument_names_the_output_folder_and_writes_the_data_report(trained):
    report = json.loads((trained / "data_report.json").read_text())
    assert report["source"].endswith("clicks.csv") and report["read"]["users"] == 150
    assert report["repeat_share"] > 0.6 and report["splits"]["test"]["users"] == 150
    assert report["plan"]["planned_steps"] == 240 and report["plan"]["estimated_seconds"] > 0
    assert "repeat an item the user already had" in (trained / "data_report.md").read_text()


def test_a_missing_log_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "nothere.csv"]) == 1
    assert "nothere.csv: no such log file" in capsys.readouterr().err
    assert main(["train", "--set", "max_steps=5", "nothere.csv"]) == 1  # after --set's list too
    assert "nothere.csv: no such log file" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        run_bert4rec(data_path=tmp_path / "nothere.csv")


def test_baselines_sit_beside_the_model(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    baselines = metrics["baselines"]
    assert set(baselines) == {"most popular", "most recent items again"}
    recent = baselines["most recent items again"]["test"]["test_hit@10"]
    assert recent > 0.8 > baselines["most popular"]["test"]["test_hit@10"]  # the answer is in the history
    assert metrics["test"]["test_hit@10"] > baselines["most popular"]["test"]["test_hit@10"]
    card = (trained / "README.md").read_text()
    assert "most recent items again (test)" in card and "keeps each user's history items as candidates" in card


def test_a_re_evaluation_ranks_the_baselines_the_same_way(trained, tmp_path):
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(trained), "--output", str(output)]) == 0
    again = json.loads(output.read_text())
    assert again["baselines"] == json.loads((trained / "metrics.json").read_text())["baselines"]  # same ranks
    assert main(["evaluate", str(trained), "--exclude-history", "--output", str(output)]) == 0
    excluded = json.loads(output.read_text())
    assert set(excluded["baselines"]) == {"most popular"}  # history items out: nothing left to repeat
    popular = [result["baselines"]["most popular"]["test"]["test_hit@10"] for result in (excluded, again)]
    assert popular[0] > popular[1]  # fewer candidates ahead of each target


def test_repeat_consumption_keeps_history_items_and_learns_a_positive_offset(trained):
    model = Bert4RecForMaskedItemPrediction.from_pretrained(trained)
    assert model.config.repeat_share > 0.6
    assert model.head.seen_item_bias.item() > 0
    recommender = Bert4RecRecommender.from_pretrained(trained, device="cpu")
    assert recommender.exclude_history is False
    tokenizer = ItemTokenizer.from_pretrained(trained)
    histories = [[int(100 + i) for i in row] for row in np.random.default_rng(1).choice(60, (40, 3))]
    assert all(item in tokenizer for history in histories for item in history)  # every item of the log is known
    top = recommender.recommend(histories, k=1, return_scores=False)
    assert np.mean([items[0] in history for items, history in zip(top, histories, strict=True)]) > 0.8
    excluded = recommender.recommend(histories, k=1, return_scores=False, exclude_history=True)
    assert not any(items[0] in history for items, history in zip(excluded, histories, strict=True))
    forced = Bert4RecRecommender.from_pretrained(trained, device="cpu", exclude_history=True)
    assert forced.recommend(histories, k=1, return_scores=False) == excluded


def test_the_recommend_command_follows_the_model_unless_told(trained, capsys):
    history = " ".join(map(str, np.random.default_rng(2).choice(60, 3) + 100))
    answers = {}
    command = ["recommend", str(trained), "--history", history, "-k", "3", "--json", "--device", "cpu"]
    for flag in ([], ["--exclude-history", "all"]):
        assert main([*command, *flag]) == 0
        answers[bool(flag)] = json.loads(capsys.readouterr().out)["items"]
    seen = {int(item) for item in history.split()}
    assert seen & set(answers[False]) and not seen & set(answers[True])


def test_the_default_follows_the_recorded_repeat_share():
    tokenizer = ItemTokenizer.fit(range(50))
    for share, expected in ((None, True), (0.0, True), (0.009, True), (0.01, False), (0.4, False)):
        model = tiny_model(repeat_share=share)
        assert Bert4RecRecommender(model, tokenizer).exclude_history is expected
    chosen = Bert4RecRecommender(tiny_model(repeat_share=0.4), tokenizer, exclude_history="window")
    assert chosen.exclude_history == "window"
    for share, kept in ((0.4, True), (None, False)):  # the card of a folder saved without one says the same
        card = default_model_card(tiny_model(repeat_share=share).config, tokenizer)
        assert ("keeps each user's history items as candidates" in card) is kept
        assert ("do not recommend what was seen" in card) is not kept
    with pytest.raises(ValueError, match="repeat_share"):
        tiny_model(repeat_share=1.5)
