"""Recommending from raw histories: same answers as the evaluator, bad input, hub-ready folders, CLI."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bert4rec_hf import (
    Bert4RecForMaskedItemPrediction,
    Bert4RecTrainer,
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    ItemTokenizer,
    RankingEvaluator,
    read_interactions,
)
from bert4rec_hf.cli import main
from bert4rec_hf.data import build_sequences, leave_one_out, left_pad
from bert4rec_hf.evaluation import count_item_popularity
from bert4rec_hf.recommendation import Bert4RecRecommender, Recommendation, recommend

from .helpers import ML100K, tiny_config, tiny_model

MAX_LEN = 20


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ml100k():
    """A tiny BERT4Rec trained for 60 steps on ml-100k (enough for history-dependent,
    tie-free scores: seed 2 leaves every user's top 12 at least 3e-6 apart, where
    seed 0 ties two items to the last bit), its leave-one-out splits and a recommender."""
    table = read_interactions(ML100K)
    processed = leave_one_out(build_sequences(table), max_seq_length=MAX_LEN, fit_on="all")
    torch.manual_seed(2)
    model = Bert4RecForMaskedItemPrediction(tiny_config(vocab_size=len(processed.tokenizer), max_seq_length=MAX_LEN))
    collator = DataCollatorForMaskedItemPrediction(max_seq_length=MAX_LEN, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    windows = processed.splits["train"]["input_ids"]
    order = np.random.default_rng(0).permutation(len(windows))
    for step in range(60):
        batch = collator([{"input_ids": windows[i]} for i in order[step * 64 : (step + 1) * 64]])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, processed, Bert4RecRecommender(model, processed.tokenizer)


@pytest.fixture(scope="module")
def saved_folder(ml100k, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recommender")
    ml100k[2].save_pretrained(folder)
    return folder


def _test_users(processed):
    test = processed.splits["test"]
    histories = test["input_ids"]
    return test, histories, processed.tokenizer.decode(histories)


# ---------------------------------------------------------------------------- the evaluator's ranking
@pytest.mark.parametrize("exclude_history", [False, "window", True])
def test_top10_equals_the_evaluators_top10_for_every_test_user(ml100k, exclude_history):
    model, processed, recommender = ml100k
    test, histories, raw_histories = _test_users(processed)
    assert len(raw_histories) == 943
    recs = recommender.recommend(raw_histories, k=10, exclude_history=exclude_history, return_scores=False)
    rec_ids = torch.tensor(processed.tokenizer.encode(recs))
    assert rec_ids.shape == (943, 10)

    # the evaluation path: next-item batches, the model's logits at [MASK], RankingEvaluator.rank
    batch = DataCollatorForNextItemPrediction(max_seq_length=MAX_LEN)([{"input_ids": h} for h in histories])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    top = logits.topk(11).values
    assert (top[:, :-1] - top[:, 1:]).min() > 1e-6, "near-tied scores: batch rounding could reorder them"
    # the same option of the evaluator excludes the same items: "window" what the model reads, True all
    evaluator = RankingEvaluator(exclude_history=exclude_history)
    whole = left_pad(histories, max(map(len, histories)))
    assert whole.shape[1] > batch["input_ids"].shape[1]  # some users have more than the window
    for position in range(10):
        # item j of the list has exactly j candidates scoring >= it: the lists agree item by item
        ranks = evaluator.rank(logits, batch["input_ids"], rec_ids[:, position], history=whole)
        assert ranks.tolist() == [position] * 943, position
    # the users' histories differ, so their top-10 lists do too
    assert len({tuple(row) for row in rec_ids.tolist()}) > 5


@pytest.mark.parametrize("exclude_history", [False, "window"])
def test_hit_rate_of_recommend_equals_the_trainers_hit_at_10(ml100k, tmp_path, exclude_history):
    model, processed, recommender = ml100k
    test, _, raw_histories = _test_users(processed)
    trainer = Bert4RecTrainer(
        model=model,
        args=__import__("transformers").TrainingArguments(
            output_dir=str(tmp_path), per_device_eval_batch_size=512, report_to="none", use_cpu=True
        ),
        eval_data_collator=DataCollatorForNextItemPrediction(max_seq_length=MAX_LEN),
        evaluator=RankingEvaluator(ks=[10], exclude_history=exclude_history),
    )
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    recs = recommender.recommend(
        raw_histories, k=10, exclude_history=exclude_history, return_scores=False
    )
    targets = processed.tokenizer.decode(test["labels"])
    # ml-100k has no repeated user-item pairs, so a target is never among the excluded history items
    hits = np.mean([target in items for target, items in zip(targets, recs, strict=True)])
    assert metrics["test_hit@10"] == pytest.approx(hits, abs=1e-9)
    assert hits > 0


# ---------------------------------------------------------------------------- behaviour
def test_one_history_and_batches_give_the_same_answer(ml100k):
    _, processed, recommender = ml100k
    _, _, raw = _test_users(processed)
    single = recommender.recommend(raw[5], k=7)
    assert isinstance(single, Recommendation) and len(single.items) == 7
    assert single.scores == sorted(single.scores, reverse=True)
    batch = recommender.recommend(raw[:12], k=7, batch_size=4)
    assert batch[5].items == single.items
    np.testing.assert_allclose(batch[5].scores, single.scores, rtol=1e-5, atol=1e-5)
    assert recommender.recommend(raw[:12], k=7, batch_size=256, return_scores=False)[5] == single.items
    assert recommend(recommender.model, processed.tokenizer, raw[5], k=7).items == single.items
    # raw scores: the same ranking before exclusion
    kept = recommender.recommend(raw[5], k=7, exclude_history=False)
    scores = recommender.score(raw[5])
    assert scores.shape == (1, len(processed.tokenizer)) and torch.isinf(scores[0, :2]).all()
    assert processed.tokenizer.decode(scores.topk(7).indices[0]) == kept.items
    # a numpy array is a history too
    assert recommender.recommend(np.array(raw[5]), k=7).items == single.items


def test_exclusion_covers_the_whole_history_and_never_specials(ml100k):
    _, processed, recommender = ml100k
    _, _, raw = _test_users(processed)
    long_user = max(range(len(raw)), key=lambda i: len(raw[i]))
    history = raw[long_user]
    assert len(history) > 3 * MAX_LEN
    k = recommender.num_items - len(set(history))
    everything = recommender.recommend(history, k=k)
    assert len(everything.items) == k and not set(everything.items) & set(history)
    assert set(everything.items) <= set(processed.tokenizer.items)  # no [PAD] / [MASK]
    assert np.isfinite(everything.scores).all()
    # window exclusion drops only the items the model reads; old items may come back
    window = recommender.recommend(history, k=k, exclude_history="window")
    assert not set(window.items) & set(history[-(MAX_LEN - 1) :])
    assert set(window.items) & set(history[: -(MAX_LEN - 1)])
    # more than the candidates left: fewer items, never a seen one or a special token
    capped = recommender.recommend(history, k=recommender.num_items)
    assert len(capped.items) == k


def test_allow_and_deny_lists(ml100k):
    _, processed, recommender = ml100k
    history = ["50", "172", "133"]
    top = recommender.recommend(history, k=5).items
    denied = recommender.recommend(history, k=5, deny_items=top[:2]).items
    assert denied[:3] == top[2:5] and not set(denied) & set(top[:2])
    allowed = recommender.recommend(history, k=5, allow_items=["1", "2", "3", "50"]).items
    assert set(allowed) == {"1", "2", "3"}  # "50" is in the history; only 3 candidates left
    with pytest.raises(KeyError, match="nope"):
        recommender.recommend(history, allow_items=["1", "nope"])
    assert recommender.recommend(history, k=2, allow_items=["1", "2", "nope"], unknown="ignore").items


def test_unknown_ids_error_or_ignored_with_a_warning(ml100k, caplog):
    _, _, recommender = ml100k
    with pytest.raises(KeyError, match=r"history 1\).*'no-such-item'"):
        recommender.recommend([["50"], ["172", "no-such-item"]])
    with caplog.at_level(logging.WARNING, logger="bert4rec_hf.recommendation"):
        result = recommender.recommend([["50"], ["172", "no-such-item"]], k=3, unknown="ignore")
    assert "no-such-item" in caplog.text and "dropped" in caplog.text
    assert result[1].items == recommender.recommend(["172"], k=3).items


def test_empty_history_is_an_error_or_the_context_free_ranking(ml100k):
    _, processed, recommender = ml100k
    with pytest.raises(ValueError, match="history 1 is empty"):
        recommender.recommend([["50"], []])
    with pytest.raises(ValueError, match="empty .after dropping unknown"):
        recommender.recommend(["unknown-1"], unknown="ignore")
    popular = recommender.recommend([["50"], []], k=20, on_empty="popular")
    assert len(popular[1].items) == 20 and popular[1].items != popular[0].items
    # after a little training the context-free ranking favours popular items
    counts = count_item_popularity(processed.splits["train"]["input_ids"], len(processed.tokenizer)).numpy()
    median = np.median(counts[2:])
    popular_ids = processed.tokenizer.encode(popular[1].items)
    assert np.mean(counts[popular_ids] > median) > 0.8


@pytest.mark.parametrize(
    "histories, error, match",
    [
        ("50 172 133", TypeError, "got str"),
        (50, TypeError, "got int"),
        ({"a": [1]}, TypeError, "got dict"),
        ({"50", "172"}, TypeError, "got set"),
        ([["50"], "172"], TypeError, "mixed input"),
        ([["50"], {"172"}], TypeError, "history 1 is a set"),
        ([["50", None]], TypeError, "history 0, position 1"),
        (["50", 1.5], TypeError, "position 1: .* float"),
        (torch.tensor([2, 3]), TypeError, "tensor"),
    ],
)
def test_histories_of_the_wrong_type(ml100k, histories, error, match):
    with pytest.raises(error, match=match):
        ml100k[2].recommend(histories)


def test_bad_k_and_options(ml100k):
    recommender = ml100k[2]
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            recommender.recommend(["50"], k=k)
    with pytest.raises(ValueError, match=f"k=5000 exceeds the catalog of {recommender.num_items} items"):
        recommender.recommend(["50"], k=5000)
    with pytest.raises(ValueError, match="exclude_history must be True, False or 'window', got 'all'"):
        recommender.recommend(["50"], exclude_history="all")
    with pytest.warns(FutureWarning, match="exclude_seen"), pytest.raises(ValueError, match="exclude_history"):
        recommender.check_options(exclude_seen="all")


def test_the_former_exclude_seen_name_still_works_with_a_warning(ml100k):
    _, _, recommender = ml100k
    expected = recommender.recommend(["50", "172"], k=5, exclude_history=False)
    with pytest.warns(FutureWarning, match="exclude_seen.*deprecated.*exclude_history"):
        assert recommender.recommend(["50", "172"], k=5, exclude_seen=False) == expected
    with pytest.raises(ValueError, match="unknown must be"):
        recommender.recommend(["50"], unknown="skip")
    with pytest.raises(ValueError, match="batch_size"):
        recommender.recommend(["50"], batch_size=0)


def test_a_tokenizer_of_another_checkpoint_is_refused(ml100k, saved_folder):
    other = ItemTokenizer.fit(range(10))
    with pytest.raises(ValueError, match="belongs to another checkpoint"):
        Bert4RecRecommender(ml100k[0], other)
    with pytest.raises(ValueError, match="belongs to another checkpoint"):
        Bert4RecRecommender.from_pretrained(saved_folder, tokenizer=other)
    with pytest.raises(TypeError, match="ItemTokenizer"):
        Bert4RecRecommender(ml100k[0], {"50": 2})


def test_training_mode_is_restored(ml100k):
    model, _, recommender = ml100k
    model.train()
    try:
        first = recommender.recommend(["50", "172"], k=5)
        assert model.training  # dropout was off while scoring, and the mode is given back
        assert recommender.recommend(["50", "172"], k=5) == first
    finally:
        model.eval()


# ---------------------------------------------------------------------------- hub-ready folders
def test_saved_folder_holds_everything_and_reloads(ml100k, saved_folder):
    names = {path.name for path in saved_folder.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_bert4rec.py", "configuration_bert4rec.py"} <= names
    assert {"item_vocab.json", "README.md"} <= names
    card = (saved_folder / "README.md").read_text()
    assert "library_name: transformers" in card and "trust_remote_code=True" in card and "1682 items" in card
    vocab = json.loads((saved_folder / "item_vocab.json").read_text())  # plain JSON
    assert vocab["items"] == ml100k[1].tokenizer.items
    loaded = Bert4RecRecommender.from_pretrained(saved_folder, device="cpu")
    assert loaded.model_card == card
    again, before = loaded.recommend(["50", "172", "133"], k=10), ml100k[2].recommend(["50", "172", "133"], k=10)
    assert again.items == before.items
    np.testing.assert_allclose(again.scores, before.scores, rtol=1e-5)


def test_push_to_hub_uploads_the_saved_folder(ml100k, monkeypatch):
    import huggingface_hub

    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            uploaded["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            uploaded["created"] = (repo_id, private, exist_ok)
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            from pathlib import Path

            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["repo_id"] = repo_id
            return "commit"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert ml100k[2].push_to_hub("user/bert4rec-ml100k", private=True, token="t") == "commit"
    assert uploaded["created"] == ("user/bert4rec-ml100k", True, True) and uploaded["token"] == "t"
    assert {"config.json", "model.safetensors", "item_vocab.json", "README.md", "modeling_bert4rec.py"} <= set(
        uploaded["files"]
    )


def test_trainer_saves_the_vocabulary_as_its_processing_class(tmp_path):
    """Trainer(push_to_hub=True) uploads what save_model writes; with the tokenizer as
    processing_class that includes item_vocab.json."""
    model = tiny_model()
    tokenizer = ItemTokenizer.fit(range(100, 150))
    trainer = Bert4RecTrainer(
        model=model,
        args=__import__("transformers").TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True),
        processing_class=tokenizer,
    )
    trainer.save_model(tmp_path / "out")
    assert ItemTokenizer.from_pretrained(tmp_path / "out") == tokenizer
    assert Bert4RecRecommender.from_pretrained(tmp_path / "out").recommend([100, 101], k=3).items


def test_folder_recommends_without_the_package(ml100k, saved_folder, tmp_path):
    """trust_remote_code + plain JSON give the recommender's top-10 where bert4rec_hf is absent."""
    history = ["50", "172", "133", "1", "7"]
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["bert4rec_hf"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModelForMaskedLM

        folder = {str(saved_folder)!r}
        model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        assert not type(model).__module__.startswith("bert4rec_hf")
        items = json.load(open(folder + "/item_vocab.json"))["items"]
        index = {{item: i + 2 for i, item in enumerate(items)}}
        history = torch.tensor([[index[item] for item in {history!r}]])
        scores = model.next_item_scores(history)
        scores[0, history[0]] = float("-inf")
        print(json.dumps([items[i - 2] for i in scores.topk(10).indices[0].tolist()]))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ml100k[2].recommend(history, k=10).items


# ---------------------------------------------------------------------------- command line
def test_cli_recommends_for_one_history(saved_folder, ml100k, capsys):
    assert main(["recommend", str(saved_folder), "--history", "50 172 133", "-k", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == ml100k[2].recommend(["50", "172", "133"], k=4).to_dict() | {"scores": printed["scores"]}
    assert main(["recommend", str(saved_folder), "--history", "50,172", "-k", "3", "--deny", "1 2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "item", "score"] and len(table) == 4
    assert main(["recommend", str(saved_folder), "--history", "50", "-k", "0"]) == 1
    assert "k must be a positive integer" in capsys.readouterr().err


def test_cli_exclude_history_and_its_former_name(saved_folder, ml100k, capsys):
    argv = ["recommend", str(saved_folder), "--history", "50 172 133", "-k", "4", "--json"]
    assert main([*argv, "--exclude-history", "none"]) == 0
    kept = json.loads(capsys.readouterr().out)["items"]
    assert kept == ml100k[2].recommend(["50", "172", "133"], k=4, exclude_history=False).items
    assert main([*argv, "--exclude-seen", "none"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["items"] == kept and "--exclude-seen is deprecated" in captured.err


def test_cli_jsonl_keeps_good_lines_and_names_bad_ones(saved_folder, ml100k, tmp_path, capsys):
    lines = [
        json.dumps({"user_id": "u1", "history": ["50", "172", "133"]}),
        "{not json",
        json.dumps({"user_id": "u3", "history": ["50", "no-such-item"]}),
        "",
        json.dumps({"user_id": "u5", "history": []}),
        json.dumps({"user_id": "u6", "history": "50 172"}),
        json.dumps({"user_id": 7, "history": [1, 2]}),
    ]
    source = tmp_path / "histories.jsonl"
    source.write_text("\n".join(lines) + "\n")
    target = tmp_path / "recs.jsonl"
    code = main(["recommend", str(saved_folder), "--input", str(source), "--output", str(target), "-k", "5"])
    assert code == 1
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err
    assert "line 3:" in err and "no-such-item" in err
    assert "line 5:" in err and "empty" in err
    assert "line 6: 'history' must be a list" in err
    assert "4 of 6 line(s) failed" in err
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["user_id"] for row in out] == ["u1", 7]
    assert out[0]["items"] == ml100k[2].recommend(["50", "172", "133"], k=5).items
    assert len(out[1]["scores"]) == 5 and not {"1", "2"} & set(out[1]["items"])
    # with every line good: exit code 0 and the ignored/fallback options reach the recommender
    assert main(
        ["recommend", str(saved_folder), "--input", str(source), "--output", str(target), "--unknown", "ignore",
         "--on-empty", "popular", "--batch-size", "2", "--no-progress"]
    ) == 1  # fmt: skip
    assert [json.loads(line)["user_id"] for line in target.read_text().splitlines()] == ["u1", "u3", "u5", 7]


# ---------------------------------------------------------------------------- small folders: ids as people type them
TITLES = ["Toy Story (1995)", "Heat (1995)", "Casino", "Babe", "Se7en"]


def _small_folder(folder, items):
    tokenizer = ItemTokenizer.fit(items)
    model = tiny_model(vocab_size=len(tokenizer), max_seq_length=5)
    Bert4RecRecommender(model, tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def int_folder(tmp_path_factory):
    """Eight integer ids, 10 .. 80."""
    return _small_folder(tmp_path_factory.mktemp("int-ids"), range(10, 90, 10))


@pytest.fixture(scope="module")
def title_folder(tmp_path_factory):
    """Ids with spaces and brackets, as in a catalog of titles."""
    return _small_folder(tmp_path_factory.mktemp("titles"), TITLES)


def _run_jsonl(folder, tmp_path, lines, *options):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    target = tmp_path / "out.jsonl"
    argv = ["recommend", str(folder), "--input", str(source), "--output", str(target), "--no-progress", *options]
    return main(argv), target


def test_ids_an_integer_vocabulary_cannot_hold_are_unknown_ids(int_folder, caplog):
    recommender = Bert4RecRecommender.from_pretrained(int_folder, device="cpu")
    with caplog.at_level(logging.WARNING, logger="bert4rec_hf.recommendation"):
        assert recommender.recommend(["abc", 10], k=2, unknown="ignore") == recommender.recommend([10], k=2)
    assert "'abc'" in caplog.text and "dropped" in caplog.text
    with pytest.raises(KeyError, match=r"not in the vocabulary.*'abc'.*unknown='ignore'"):
        recommender.recommend(["abc", 10], k=2)
    assert recommender.recommend([10], k=2, deny_items=["B0001"], unknown="ignore").items


def test_cli_drops_non_numeric_ids_of_an_integer_vocabulary_with_unknown_ignore(int_folder, tmp_path, capsys):
    argv = ["recommend", str(int_folder), "-k", "2", "--json"]
    assert main([*argv, "--history", "10"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main([*argv, "--history", "10 abc", "--unknown", "ignore"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    lines = [{"user_id": 1, "history": [10, "B0001"]}]
    code, target = _run_jsonl(int_folder, tmp_path, lines, "-k", "2", "--unknown", "ignore")
    assert code == 0, capsys.readouterr().err
    assert json.loads(target.read_text())["items"] == expected["items"]


def test_cli_allow_and_deny_files_hold_one_id_per_line(title_folder, tmp_path, capsys):
    deny = tmp_path / "deny.txt"
    deny.write_text("\ufeffToy Story (1995)\n\n   Heat (1995)  \n")  # a BOM, a blank line, surrounding spaces
    argv = ["recommend", str(title_folder), "--history", "Babe", "-k", "3", "--json"]
    assert main([*argv, "--deny", f"@{deny}"]) == 0, capsys.readouterr().err
    assert set(json.loads(capsys.readouterr().out)["items"]) == {"Casino", "Se7en"}
    assert main([*argv, "--allow", f"@{deny}"]) == 0, capsys.readouterr().err
    assert set(json.loads(capsys.readouterr().out)["items"]) == {"Toy Story (1995)", "Heat (1995)"}
    assert main([*argv, "--deny", "Casino,Se7en"]) == 0  # inline ids still split on commas and spaces
    assert set(json.loads(capsys.readouterr().out)["items"]) == {"Toy Story (1995)", "Heat (1995)"}
    with pytest.raises(SystemExit):
        main([*argv, "--deny", f"@{tmp_path / 'missing.txt'}"])
    assert "missing.txt: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    assert "one id per line" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "options, error",
    [(["-k", "20"], "k=20 exceeds the catalog of 5 items"), (["-k", "2", "--deny", "Heat"], "not in the vocabulary")],
)
def test_cli_bad_options_fail_once_and_leave_the_output_alone(title_folder, tmp_path, capsys, options, error):
    (tmp_path / "out.jsonl").write_text("earlier answers\n")
    lines = [{"user_id": user, "history": ["Babe"]} for user in range(5)]
    code, target = _run_jsonl(title_folder, tmp_path, lines, *options)
    err = capsys.readouterr().err
    assert code == 1 and err.count(error) == 1 and "line" not in err
    assert target.read_text() == "earlier answers\n" and not (tmp_path / "out.jsonl.partial").exists()


def test_cli_keeps_the_existing_output_when_no_line_is_answered(title_folder, tmp_path, capsys):
    (tmp_path / "out.jsonl").write_text("earlier answers\n")
    code, target = _run_jsonl(title_folder, tmp_path, [{"history": ["Heat"]}, {"history": []}], "-k", "2")
    err = capsys.readouterr().err
    assert code == 1 and "2 of 2 line(s) failed" in err and "left as it was" in err
    assert target.read_text() == "earlier answers\n" and not (tmp_path / "out.jsonl.partial").exists()
    code, target = _run_jsonl(title_folder, tmp_path, [{"history": ["Heat"]}, {"history": ["Babe"]}], "-k", "2")
    assert code == 1 and len(target.read_text().splitlines()) == 1  # one answer: the file is replaced


def test_cli_error_hints_name_the_flags_not_keyword_arguments(title_folder, tmp_path, capsys):
    assert main(["recommend", str(title_folder), "--history", "Heat", "-k", "2"]) == 1
    err = capsys.readouterr().err
    assert "--unknown ignore" in err and "unknown='ignore'" not in err
    assert main(["recommend", str(title_folder), "--history", "", "-k", "2"]) == 1
    err = capsys.readouterr().err
    assert "--on-empty popular" in err and "on_empty=" not in err
    _run_jsonl(title_folder, tmp_path, [{"history": ["Heat"]}, {"history": []}, {"history": ["Babe"]}], "-k", "2")
    err = capsys.readouterr().err
    assert "line 1:" in err and "--unknown ignore" in err and "line 2:" in err and "--on-empty popular" in err
    assert "unknown='ignore'" not in err and "on_empty=" not in err


def test_a_bad_device_is_a_one_line_error_before_the_model_loads(title_folder, tmp_path, capsys):
    # a folder that does not exist: the device is checked first
    assert main(["recommend", str(tmp_path / "nothing"), "--history", "Babe", "--device", "gpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bert4rec recommend: error: device 'gpu' cannot be used") and err.count("\n") == 1
    with pytest.raises(ValueError, match="device 'gpu'"):
        Bert4RecRecommender.from_pretrained(title_folder, device="gpu")
    if not torch.cuda.is_available():
        assert main(["recommend", str(title_folder), "--history", "Babe", "--device", "cuda"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("bert4rec recommend: error: device 'cuda' cannot be used") and err.count("\n") == 1
    assert main(["recommend", str(title_folder), "--history", "Babe", "--device", "cpu", "-k", "1"]) == 0


@pytest.mark.parametrize("name", ["/{tmp}/nothing", "./nothing", "~/no-such-bert4rec-folder", "a/b/c"])
def test_a_mistyped_local_folder_is_named(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    name = name.format(tmp=tmp_path)
    assert main(["recommend", name, "--history", "Babe"]) == 1
    assert f"bert4rec recommend: error: no such folder: {name}\n" in capsys.readouterr().err


# ---------------------------------------------------------------------------- vectors out
def test_a_brute_force_inner_product_search_over_the_vectors_gives_recommends_top10(ml100k):
    _, processed, recommender = ml100k
    _, histories, raw_histories = _test_users(processed)
    queries = recommender.encode(raw_histories, batch_size=200)
    raw_ids, vectors = recommender.item_vectors()
    assert queries.shape == (943, 17) and vectors.shape == (recommender.num_items, 17)
    assert raw_ids == processed.tokenizer.decode(list(range(2, len(processed.tokenizer))))
    # what a vector index does: inner products, the user's history left out, the 10 largest
    scores = (queries.double() @ vectors.double().T).float()
    for row, history in enumerate(histories):
        scores[row, [item - 2 for item in history]] = float("-inf")
    top = scores.topk(10, dim=1)
    expected = recommender.recommend(raw_histories, k=10)
    assert [[raw_ids[i] for i in row] for row in top.indices.tolist()] == [r.items for r in expected]
    torch.testing.assert_close(top.values, torch.tensor([r.scores for r in expected]), rtol=0, atol=1e-6)


def test_encoded_vectors_reproduce_the_scores_outside_the_input_window(ml100k):
    model, processed, recommender = ml100k
    _, histories, raw_histories = _test_users(processed)
    raw, window = raw_histories[:50], [history[-(MAX_LEN - 1) :] for history in histories[:50]]
    queries = recommender.encode(raw)
    assert torch.equal(queries, model.next_item_vectors(left_pad(histories[:50], MAX_LEN - 1)))
    # one history: one row (the encoder's float32 rounding depends on the batch's padding, not its maths)
    torch.testing.assert_close(recommender.encode(raw[7]), queries[7:8], rtol=0, atol=1e-5)
    products = queries.double() @ model.item_vectors().double().T
    scores = recommender.score(raw).double()
    inside = torch.zeros_like(scores, dtype=torch.bool)
    for row, items in enumerate(window):
        inside[row, items] = True
    inside[:, :2] = True  # special tokens: -inf in the scores
    torch.testing.assert_close(products[~inside], scores[~inside], rtol=0, atol=1e-5)
    # inside the window the learned seen-item offset is added
    offset = model.head.seen_item_bias.double()
    real = inside.clone()
    real[:, :2] = False
    torch.testing.assert_close(scores[real], products[real] + offset, rtol=0, atol=1e-5)


def test_similar_items_are_the_nearest_item_embeddings_without_the_query(ml100k):
    model, processed, recommender = ml100k
    tokenizer = processed.tokenizer
    raw = tokenizer.decode([2, 50, 300])
    found = recommender.similar_items(raw, k=5)
    assert len(found) == 3 and recommender.similar_items(raw[1], k=5) == found[1]
    with torch.no_grad():
        embeddings = torch.nn.functional.normalize(model.head.decoder.weight[2:], dim=1)
    for query, result in zip([2, 50, 300], found, strict=True):
        cosine = embeddings @ embeddings[query - 2]
        cosine[query - 2] = float("-inf")
        best = cosine.topk(5)
        assert result.items == tokenizer.decode((best.indices + 2).tolist())
        assert query not in tokenizer.encode(result.items)
        torch.testing.assert_close(torch.tensor(result.scores), best.values, rtol=0, atol=1e-6)
    assert recommender.similar_items([], k=3) == []
    with pytest.raises(KeyError, match="not in the vocabulary"):
        recommender.similar_items("no-such-item", k=3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recommender.similar_items(raw[0], k=0)
