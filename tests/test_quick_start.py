"""End to end on a small slice of ml-100k: train, evaluate, save, re-evaluate."""

import json
import shutil

import pytest

from bert4rec_hf import Bert4RecForMaskedItemPrediction, ItemTokenizer, evaluate_saved_model, run_bert4rec
from bert4rec_hf.cli import main

from .helpers import write_ml100k_slice

SMALL = {
    "epochs": 2, "hidden_size": 16, "inner_size": 32, "n_heads": 2, "n_layers": 1,
    "train_batch_size": 64, "eval_batch_size": 128, "max_seq_length": 20, "train_stride": 10,
    "schedule": "fixed",  # these tests read the package defaults as written (auto: test_auto_schedule.py)
}  # fmt: skip


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    return write_ml100k_slice(tmp_path_factory.mktemp("log") / "slice.csv", 60)


@pytest.fixture(scope="module")
def trained(small_log, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run") / "model"
    results = run_bert4rec(
        "ml-100k-slice", config_dict={**SMALL, "data_path": str(small_log)}, output_dir=output_dir
    )
    return output_dir, results


def test_quick_start_writes_every_file(trained):
    output_dir, results = trained
    expected = {
        "config.json", "model.safetensors", "modeling_bert4rec.py", "configuration_bert4rec.py", "item_vocab.json",
        "README.md", "metrics.json", "run_config.yaml", "training_curves.png",
    }  # fmt: skip
    assert expected <= {p.name for p in output_dir.iterdir()}
    assert not list(output_dir.glob("*.bin")) and not (output_dir / "checkpoints").exists()
    assert (output_dir / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert results["test"]["test_num_users"] == 60 and results["valid"]["valid_num_users"] == 60
    for key in ("test_hit@10", "test_ndcg@10", "test_mrr@10", "test_mrr", "test_precision@10", "test_ndcg@20"):
        assert 0.0 <= results["test"][key] <= 1.0
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["test"] == pytest.approx(results["test"])
    assert "history items included" in metrics["evaluation"]
    # one point per validation (each epoch here), the kept checkpoint's at the best of them
    curve = metrics["validation_curve"]
    assert [point["epoch"] for point in curve] == [1.0, 2.0]
    assert [point["step"] for point in curve][-1] == metrics["global_steps"]
    assert max(point["ndcg@10"] for point in curve) == pytest.approx(metrics["best_checkpoint_metric"])
    assert metrics["valid"]["valid_ndcg@10"] == pytest.approx(metrics["best_checkpoint_metric"])
    card = (output_dir / "README.md").read_text()
    assert "| ndcg@10 |" in card and "leave-one-out" in card and "exclude_history=False" in card
    model = Bert4RecForMaskedItemPrediction.from_pretrained(output_dir)
    assert model.config.vocab_size == len(ItemTokenizer.from_pretrained(output_dir))
    assert model.config.hidden_size == 16 and model.config.max_seq_length == 20


def test_evaluate_command_reproduces_the_test_metrics(trained, tmp_path, capsys):
    output_dir, results = trained
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(output_dir), "--output", str(report)]) == 0
    again = json.loads(report.read_text())
    ranking_keys = [k for k in results["test"] if k.startswith("test_") and k.split("_", 1)[1][:3] in ("hit", "ndc", "mrr", "pre", "num")]
    assert len(ranking_keys) == 14
    for key in ranking_keys:
        assert again["test"][key] == results["test"][key], key
    assert "| ndcg@10 |" in capsys.readouterr().out
    # another mode and K list
    assert main(["evaluate", str(output_dir), "--mode", "uni100", "--topk", "1", "50", "--output", str(report)]) == 0
    sampled = json.loads(report.read_text())
    assert "test_hit@50" in sampled["test"] and "test_hit@10" not in sampled["test"]
    assert "100 negatives" in sampled["evaluation"] or "uni100" in sampled["evaluation"]


def test_same_seed_same_metrics(small_log, tmp_path):
    config = {**SMALL, "epochs": 1, "data_path": str(small_log)}
    first = run_bert4rec("slice", config_dict=config, output_dir=tmp_path / "a")
    second = run_bert4rec("slice", config_dict=config, output_dir=tmp_path / "b")
    for split in ("valid", "test"):
        timing = ("runtime", "per_second")
        keys = [k for k in first[split] if not any(t in k for t in timing)]
        assert {k: first[split][k] for k in keys} == {k: second[split][k] for k in keys}


def test_train_command_rejects_bad_config(capsys, tmp_path):
    assert main(["train", "--set", "epochs=abc", "--output-dir", str(tmp_path / "x")]) == 1
    assert "'epochs' must be int" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_optimizer_defaults(small_log, tmp_path):
    from bert4rec_hf.training.config import load_config
    from bert4rec_hf.training.pipeline import build_trainer, prepare_data

    config = load_config("slice", config_dict={**SMALL, "data_path": str(small_log), "weight_decay": 0.01})
    trainer = build_trainer(config, prepare_data(config), tmp_path)
    optimizer = trainer.create_optimizer()
    assert type(optimizer).__name__ == "AdamW"
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed, plain = ([names[id(p)] for p in group["params"]] for group in optimizer.param_groups)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01 and optimizer.param_groups[1]["weight_decay"] == 0.0
    assert all("LayerNorm" not in n and not n.endswith("bias") for n in decayed)
    assert any("LayerNorm" in n for n in plain) and "head.decoder.bias" in plain
    assert trainer.args.max_grad_norm == 5.0 and trainer.args.lr_scheduler_type == "linear"
    assert trainer.args.load_best_model_at_end and trainer.args.metric_for_best_model == "ndcg@10"


def test_time_budget_key_adds_the_callback(small_log, tmp_path):
    from bert4rec_hf.training import ConfigError, TimeBudgetCallback
    from bert4rec_hf.training.config import load_config
    from bert4rec_hf.training.pipeline import build_trainer, prepare_data

    config = load_config("slice", config_dict={**SMALL, "data_path": str(small_log), "time_budget": 30})
    trainer = build_trainer(config, prepare_data(config), tmp_path)
    budgets = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback)]
    assert len(budgets) == 1 and budgets[0].seconds == 30
    with pytest.raises(ConfigError, match="time_budget"):
        load_config("slice", config_dict={"time_budget": "ten minutes"})



def test_train_on_validation_item_key_reaches_the_split(small_log):
    from bert4rec_hf.training.config import load_config
    from bert4rec_hf.training.pipeline import prepare_data

    base = {**SMALL, "data_path": str(small_log), "train_prefixes": True, "train_stride": 1}
    held_out = prepare_data(load_config("slice", config_dict=base)).processed
    trained_on = prepare_data(load_config("slice", config_dict={**base, "train_on_validation_item": True})).processed
    # one more prefix window per user: the one ending at the validation item
    assert trained_on.report.rows["train"] == held_out.report.rows["train"] + held_out.report.users["train"]
    assert trained_on.report.train_on_validation_item and not held_out.report.train_on_validation_item
    assert trained_on.splits["test"].to_dict() == held_out.splits["test"].to_dict()


def test_training_keeps_what_the_output_folder_already_held(small_log, tmp_path, capsys):
    output_dir = tmp_path / "model"
    (output_dir / "checkpoints").mkdir(parents=True)
    (output_dir / "checkpoints" / "notes.txt").write_text("mine")
    config = {**SMALL, "max_steps": 2, "eval_steps": 2, "data_path": str(small_log)}
    run_bert4rec("slice", config_dict=config, output_dir=output_dir)
    assert "Trained 0.12 epochs (2 steps)" in capsys.readouterr().out  # was: "Trained 0 epochs"
    card = (output_dir / "README.md").read_text()
    ran, configured = card.split("## Training run")[1].split("## Hyper-parameters (configured)")
    assert "| epochs trained | 0.12 |" in ran and "| optimizer steps | 2 |" in ran  # was: only "| epochs | 2 |"
    assert "| epochs | 2 |" in configured and "| max_steps | 2 |" in configured
    assert "| mask_ratio | 0.2 |" in configured and "| last_item_mask_ratio | 0.5 |" in configured  # masking too
    assert (output_dir / "checkpoints" / "notes.txt").read_text() == "mine"
    assert not list((output_dir / "checkpoints").glob("checkpoint-*"))
    weights = (output_dir / "model.safetensors").read_bytes()
    argv = ["train", "--dataset", "slice", "--set", f"data_path={small_log}", "--output-dir", str(output_dir)]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "already holds config.json, model.safetensors" in error and "--overwrite" in error
    assert (output_dir / "model.safetensors").read_bytes() == weights
    run_bert4rec("slice", config_dict={**config, "seed": 7}, output_dir=output_dir, overwrite=True)
    assert (output_dir / "model.safetensors").read_bytes() != weights


def test_evaluate_command_names_a_missing_folder_or_missing_data(trained, tmp_path, capsys):
    output_dir, _ = trained
    assert main(["evaluate", str(tmp_path / "absent")]) == 1
    assert f"no such folder: {tmp_path / 'absent'}" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "absent")]) == 1
    assert f"no such folder: {tmp_path / 'absent'}" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(output_dir, bare, ignore=shutil.ignore_patterns("run_config.yaml"))
    assert main(["evaluate", str(bare)]) == 1  # was: silently evaluated on the full ml-100k
    assert "has no run_config.yaml naming its data" in capsys.readouterr().err


def test_evaluate_command_writes_output_in_a_new_folder_and_ignores_the_tracker(trained, tmp_path):
    output_dir, results = trained
    tracked = tmp_path / "tracked"
    shutil.copytree(output_dir, tracked)
    saved = (tracked / "run_config.yaml").read_text()
    (tracked / "run_config.yaml").write_text(saved.replace("report_to: none", "report_to: wandb"))
    report = tmp_path / "new" / "eval.json"
    assert main(["evaluate", str(tracked), "--output", str(report)]) == 0
    assert json.loads(report.read_text())["test"]["test_ndcg@10"] == results["test"]["test_ndcg@10"]


def test_train_command_rejects_an_unreported_valid_metric_before_training(small_log, tmp_path, capsys):
    argv = ["train", "--dataset", "slice", "--set", f"data_path={small_log}", "valid_metric=hit@50", "max_steps=2", "eval_steps=1"]
    assert main([*argv, "--output-dir", str(tmp_path / "x")]) == 1  # was: failed at the first evaluation
    assert "valid_metric 'hit@50' is not reported with topk=[5, 10, 20]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_temporal_split_run_says_which_split_everywhere(small_log, tmp_path, capsys):
    config = {
        **SMALL, "epochs": 1, "data_path": str(small_log), "split": "temporal", "split_test_share": 0.2,
        "split_validation_share": 0.2, "split_targets": "all",
    }  # fmt: skip
    results = run_bert4rec("slice", config_dict=config, output_dir=tmp_path / "temporal")
    out = capsys.readouterr().out
    assert "Early stopping and the best model: validation ndcg@10 of the global temporal split (training before" in out
    metrics = json.loads((tmp_path / "temporal" / "metrics.json").read_text())
    split = metrics["split"]
    assert split["kind"] == "temporal" and split["targets"] == "all"
    assert split["cutoffs"]["validation"] < split["cutoffs"]["test"]
    # every interaction after the test cut-off is a row (targets: all), several per user
    assert metrics["data"]["test rows"] == results["test"]["test_num_users"] > metrics["data"]["test users"]
    assert "global temporal split" in (tmp_path / "temporal" / "README.md").read_text()
    # a re-evaluation prepares the same split from the folder's run_config.yaml
    again = evaluate_saved_model(tmp_path / "temporal")
    assert again["split"] == split
    assert again["test"]["test_ndcg@10"] == results["test"]["test_ndcg@10"]


def test_a_temporal_split_of_a_log_without_timestamps_is_refused(tmp_path):
    log = tmp_path / "clicks.txt"
    log.write_text("".join(f"{user} {item}\n" for user in range(5) for item in range(user, user + 6)))
    with pytest.raises(ValueError, match="no timestamps"):
        run_bert4rec("clicks", config_dict={**SMALL, "data_path": str(log), "split": "temporal"}, output_dir=tmp_path / "m")
    assert not (tmp_path / "m" / "config.json").exists()
