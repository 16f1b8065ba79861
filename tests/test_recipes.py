"""Recipes: named settings measured for one data set (``--recipe paper``: the BERT4Rec
authors' own; ``--recipe fullrank``: the paper's with the changes measured best under full
ranking; ``--recipe nextitem``: fullrank on next-item rows), a layer above the data set's
file and below the user's files."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from bert4rec_hf.cli import main
from bert4rec_hf.training import config as config_module
from bert4rec_hf.training.auto_schedule import AutoSchedule
from bert4rec_hf.training.config import ConfigError, _recipe_layer, config_dir, load_config, recipe_layers, recipes
from bert4rec_hf.training.trainer import cloze_step_count

PAPER = config_dir() / "recipe" / "paper" / "beauty.yaml"
FULLRANK = config_dir() / "recipe" / "fullrank" / "beauty.yaml"
NEXTITEM = config_dir() / "recipe" / "nextitem" / "beauty.yaml"
CLOZEFIRST = config_dir() / "recipe" / "clozefirst" / "beauty.yaml"


def test_the_paper_recipe_ships_for_beauty_with_the_authors_settings():
    assert recipes() == {
        "clozefirst": ["beauty"], "distilled": ["beauty"], "fullrank": ["beauty"], "nextitem": ["beauty"], "paper": ["beauty"]
    }  # fmt: skip
    settings = yaml.safe_load(PAPER.read_text())
    assert settings["mask_ratio"] == 0.6 and settings["hidden_dropout_prob"] == 0.5
    assert settings["learning_rate"] == 1e-4 and settings["max_steps"] == 400_000
    assert settings["last_item_mask_ratio"] == pytest.approx(1 / 11)


def test_a_recipe_sits_above_the_data_set_file_and_below_user_files_and_keywords(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("hidden_size: 128\n")
    config = load_config("beauty", [user], {"recipe": "paper", "learning_rate": 1e-3})
    # beauty.yaml says 0.1; the recipe's 1/11 wins over it
    assert config["last_item_mask_ratio"] == pytest.approx(1 / 11)
    assert config.source_of("last_item_mask_ratio") == str(PAPER)
    assert config["hidden_size"] == 128 and config.source_of("hidden_size") == str(user)
    assert config["learning_rate"] == 1e-3 and config["n_layers"] == 2 and config["eval_mode"] == "pop100"
    # a key the recipe sets is the user's choice, not a package default: schedule: auto derives nothing
    assert config["schedule"] == "fixed" and AutoSchedule(config).keys == ()
    assert not config.is_package_default("train_batch_size")


def test_without_a_recipe_the_data_set_file_rules_and_null_cancels_one_set_below():
    plain = load_config("beauty")
    assert plain["recipe"] is None and plain["last_item_mask_ratio"] == 0.1 and plain["hidden_size"] == 64
    assert plain["schedule"] == "auto"
    user = load_config("beauty", config_dict={"recipe": None})
    assert user["learning_rate"] == plain["learning_rate"]


def test_an_unknown_recipe_or_data_set_is_an_error_naming_what_ships():
    with pytest.raises(ConfigError, match=r"recipe 'fast' is not shipped \(recipes: clozefirst, distilled, fullrank, nextitem, paper\)"):
        load_config("beauty", config_dict={"recipe": "fast"})
    with pytest.raises(ConfigError, match=r"no settings for data set 'ml-100k' \(it has them for: beauty\)"):
        load_config("ml-100k", config_dict={"recipe": "paper"})
    with pytest.raises(ConfigError, match=r"recipe 3 is not shipped \(recipes: clozefirst, distilled, fullrank, nextitem, paper\)"):
        load_config("beauty", config_dict={"recipe": 3})


@pytest.mark.parametrize("key", ["dataset", "data_path", "recipe"])
def test_a_recipe_cannot_choose_the_data_or_another_recipe(tmp_path, key):
    path = tmp_path / "beauty.yaml"
    path.write_text(f"mask_ratio: 0.4\n{key}: x\n")
    with pytest.raises(ConfigError, match=f"{path}: a recipe cannot set '{key}'"):
        _recipe_layer(path)


def test_fullrank_is_the_paper_recipe_with_its_measured_changes_each_value_from_its_own_file():
    config = load_config("beauty", config_dict={"recipe": "fullrank"})
    paper = load_config("beauty", config_dict={"recipe": "paper"})
    changed = {"learning_rate": 1e-3, "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2,
               "softmax_temperature": 0.2, "max_steps": 7200, "eval_mode": "full", "topk": [5, 10, 20]}  # fmt: skip
    assert {key: config[key] for key in changed} == changed
    assert all(config.source_of(key) == str(FULLRANK) for key in changed)
    # everything else is the paper's, read from the paper's file (no second copy)
    for key in ("mask_ratio", "train_stride", "train_on_validation_item", "warmup_steps", "max_seq_length"):
        assert config[key] == paper[key] and config.source_of(key) == str(PAPER)
    assert config["recipe"] == "fullrank" and "based_on" not in config
    assert [path for path, _ in recipe_layers("fullrank", "beauty")] == [PAPER, FULLRANK]


def test_nextitem_is_fullrank_on_next_item_rows_each_value_from_its_own_file():
    config = load_config("beauty", config_dict={"recipe": "nextitem"})
    fullrank = load_config("beauty", config_dict={"recipe": "fullrank"})
    changed = {"hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1, "train_stride": 1, "train_prefixes": True,
               "last_item_mask_ratio": 1.0, "max_steps": 8000, "n_layers": 4, "group_by_length": True}  # fmt: skip
    assert {key: config[key] for key in changed} == changed
    assert all(config.source_of(key) == str(NEXTITEM) for key in changed)
    for key in ("learning_rate", "softmax_temperature", "eval_mode", "train_on_validation_item", "mask_ratio"):
        assert config[key] == fullrank[key] and config.source_of(key) == fullrank.source_of(key)
    assert [path for path, _ in recipe_layers("nextitem", "beauty")] == [PAPER, FULLRANK, NEXTITEM]


def test_clozefirst_is_nextitem_on_the_papers_cloze_windows_for_its_first_quarter():
    config = load_config("beauty", config_dict={"recipe": "clozefirst"})
    paper = load_config("beauty", config_dict={"recipe": "paper"})
    nextitem = load_config("beauty", config_dict={"recipe": "nextitem"})
    for key in ("train_stride", "train_prefixes", "last_item_mask_ratio", "mask_ratio"):  # the Cloze windows: the paper's
        assert config[key] == paper[key]
    assert config["next_item_share"] == 0.75 and config.source_of("next_item_share") == str(CLOZEFIRST)
    for key in ("n_layers", "hidden_dropout_prob", "group_by_length", "max_steps", "softmax_temperature", "learning_rate"):
        assert config[key] == nextitem[key] and config.source_of(key) == nextitem.source_of(key)
    assert [path for path, _ in recipe_layers("clozefirst", "beauty")] == [PAPER, FULLRANK, NEXTITEM, CLOZEFIRST]


def test_distilled_is_clozefirst_taught_by_three_runs_of_clozefirst_and_trained_longer():
    config = load_config("beauty", config_dict={"recipe": "distilled"})
    clozefirst = load_config("beauty", config_dict={"recipe": "clozefirst"})
    distilled = config_dir() / "recipe" / "distilled" / "beauty.yaml"
    assert (config["distill_teachers"], config["distillation_weight"]) == (3, 0.9)
    assert config.source_of("distill_teachers") == str(distilled)
    assert {key: value for key, value in config.items() if clozefirst[key] != value} == {
        "recipe": "distilled", "distill_teachers": 3, "distillation_weight": 0.9, "teacher_overrides": {"recipe": "clozefirst"},
        "max_steps": 12000, "next_item_share": 0.8333333333333334,
    }  # fmt: skip
    # the student's Cloze phase is clozefirst's (2,000 steps); its next-item phase is 10,000 steps against 6,000
    assert cloze_step_count(config["max_steps"], config["next_item_share"]) == 2000
    assert cloze_step_count(clozefirst["max_steps"], clozefirst["next_item_share"]) == 2000
    assert [path for path, _ in recipe_layers("distilled", "beauty")] == [PAPER, FULLRANK, NEXTITEM, CLOZEFIRST, distilled]


def test_bert4rec_train_recipe_distilled_trains_its_teachers_then_itself(tmp_path, monkeypatch):
    folder, run, report = train_recipe(tmp_path, monkeypatch, "distilled")
    assert run["recipe"] == "distilled" and run["distill_teachers"] == 3 and run["seed"] == 2020
    teachers = [yaml.safe_load((folder / "teachers" / f"teacher-{k}" / "run_config.yaml").read_text()) for k in (1, 2, 3)]
    assert [(teacher["seed"], teacher["distillation_weight"], teacher["recipe"]) for teacher in teachers] == [
        (2021, 0.0, "clozefirst"), (2022, 0.0, "clozefirst"), (2023, 0.0, "clozefirst")
    ]  # fmt: skip
    assert "distilled from 3 teachers" in report["plan"]["summary"]
    assert yaml.safe_load((folder / "config.json").read_text())["distillation_weight"] == 0.9


def ship_recipes(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """A configuration folder holding the shipped files plus ``files`` (recipe/<name>/beauty.yaml)."""
    root = tmp_path / "configuration"
    shutil.copytree(config_dir(), root)
    for name, text in files.items():
        (root / "recipe" / name).mkdir(parents=True, exist_ok=True)
        (root / "recipe" / name / "beauty.yaml").write_text(text)
    monkeypatch.setattr(config_module, "config_dir", lambda: root)


def test_a_recipe_based_on_an_unknown_or_circular_recipe_is_an_error_naming_its_file(tmp_path, monkeypatch):
    ship_recipes(tmp_path, monkeypatch, {
        "typo": "based_on: papr\nmask_ratio: 0.4\n", "a": "based_on: b\n", "b": "based_on: a\n",
    })  # fmt: skip
    typo = tmp_path / "configuration" / "recipe" / "typo" / "beauty.yaml"
    with pytest.raises(ConfigError, match=rf"{re.escape(str(typo))}: based_on: recipe 'papr' is not shipped \(recipes: a, b, "):
        load_config("beauty", config_dict={"recipe": "typo"})
    with pytest.raises(ConfigError, match=r"recipe/b/beauty.yaml: based_on 'a' leads back to itself"):
        load_config("beauty", config_dict={"recipe": "a"})


def test_a_chain_of_recipes_layers_lowest_first_and_the_user_still_wins(tmp_path, monkeypatch):
    ship_recipes(tmp_path, monkeypatch, {
        "fast": "based_on: fullrank\nmax_steps: 100\nmask_ratio: 0.4\n",
    })  # fmt: skip
    config = load_config("beauty", config_dict={"recipe": "fast", "mask_ratio": 0.3})
    assert config["max_steps"] == 100 and config["softmax_temperature"] == 0.2 and config["warmup_steps"] == 100
    assert config["mask_ratio"] == 0.3 and config.source_of("learning_rate").endswith("recipe/fullrank/beauty.yaml")


def write_lines_log(path, users: int = 120, length: int = 12, items: int = 300, seed: int = 0):
    """A "user item" lines log in time order, the format of the authors' beauty.txt."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(1, items + 1, size=(users, length))
    rows = [f"{user + 1} {item}" for user in range(users) for item in picks[user]]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_bert4rec_train_recipe_paper_trains_and_records_the_authors_settings(tmp_path, monkeypatch, capsys):
    log = write_lines_log(tmp_path / "beauty.txt")
    monkeypatch.chdir(tmp_path)
    argv = ["train", str(log), "--dataset", "beauty", "--recipe", "paper", "--set", "max_steps=4", "eval_steps=2"]
    assert main([*argv, "torch_threads=1"]) == 0
    run = yaml.safe_load((tmp_path / "outputs" / "beauty" / "run_config.yaml").read_text())
    assert run["recipe"] == "paper" and run["schedule"] == "fixed" and not run["train_prefixes"]
    assert (run["mask_ratio"], run["train_stride"], run["train_batch_size"]) == (0.6, 5, 256)
    assert run["train_on_validation_item"] and run["max_steps"] == 4
    assert "pop100: each target against 100 negatives drawn by training popularity" in capsys.readouterr().out


def test_recipe_flag_and_set_must_agree(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "beauty", "--recipe", "paper", "--set", "recipe=other"]) == 1
    assert "--recipe paper and --set recipe=other disagree: give one" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_bert4rec_train_recipe_fullrank_trains_and_ranks_the_whole_catalog(tmp_path, monkeypatch):
    log = write_lines_log(tmp_path / "beauty.txt")
    monkeypatch.chdir(tmp_path)
    argv = ["train", str(log), "--dataset", "beauty", "--recipe", "fullrank", "--set", "max_steps=4", "eval_steps=2"]
    assert main([*argv, "torch_threads=1"]) == 0
    run = yaml.safe_load((tmp_path / "outputs" / "beauty" / "run_config.yaml").read_text())
    assert run["recipe"] == "fullrank" and run["softmax_temperature"] == 0.2 and run["hidden_dropout_prob"] == 0.2
    assert run["mask_ratio"] == 0.6 and run["train_on_validation_item"] and run["eval_mode"] == "full"
    model_config = yaml.safe_load((tmp_path / "outputs" / "beauty" / "config.json").read_text())
    assert model_config["softmax_temperature"] == 0.2 and model_config["attn_dropout_prob"] == 0.2
    metrics = yaml.safe_load((tmp_path / "outputs" / "beauty" / "metrics.json").read_text())
    assert {"test_ndcg@10", "test_hit@20"} <= set(metrics["test"])


def train_recipe(tmp_path, monkeypatch, recipe: str) -> tuple[Path, dict, dict]:
    """``bert4rec train`` of ``recipe`` for 4 steps on a small Beauty-format log of 120 users of
    12 items: the output folder, its run configuration and its data report."""
    log = write_lines_log(tmp_path / "beauty.txt", users=120, length=12)
    monkeypatch.chdir(tmp_path)
    argv = ["train", str(log), "--dataset", "beauty", "--recipe", recipe, "--set", "max_steps=4", "eval_steps=2"]
    assert main([*argv, "torch_threads=1"]) == 0
    folder = tmp_path / "outputs" / "beauty"
    assert {"test_ndcg@10", "test_hit@20"} <= set(yaml.safe_load((folder / "metrics.json").read_text())["test"])
    return folder, yaml.safe_load((folder / "run_config.yaml").read_text()), yaml.safe_load((folder / "data_report.json").read_text())


def test_bert4rec_train_recipe_nextitem_trains_one_row_per_training_item(tmp_path, monkeypatch):
    folder, run, report = train_recipe(tmp_path, monkeypatch, "nextitem")
    assert run["recipe"] == "nextitem" and run["last_item_mask_ratio"] == 1.0 and run["softmax_temperature"] == 0.2
    assert run["group_by_length"] and yaml.safe_load((folder / "config.json").read_text())["n_layers"] == 4
    # trained through item n-1: a window ends at each of a user's first 11 items, each masked at its end
    assert report["splits"]["train"] == {"rows": 120 * 11, "users": 120}


def test_bert4rec_train_recipe_clozefirst_trains_cloze_windows_then_one_row_per_training_item(tmp_path, monkeypatch):
    _, run, report = train_recipe(tmp_path, monkeypatch, "clozefirst")
    assert run["recipe"] == "clozefirst" and run["next_item_share"] == 0.75 and run["train_stride"] == 5
    # trained through item n-1: one Cloze window of 11 items a user, and a next-item row ending at each of them
    assert report["splits"]["train"] == {"rows": 120, "users": 120}
    assert report["splits"]["next_item"]["rows"] == 120 * 11
    assert "the last 75% on next-item rows" in report["plan"]["summary"]
    assert not any("time_budget" in warning for warning in report["warnings"])


def test_a_time_budget_that_cuts_a_phased_run_is_reported_before_training(tmp_path, monkeypatch):
    log = write_lines_log(tmp_path / "beauty.txt", users=120, length=12)
    monkeypatch.chdir(tmp_path)
    argv = ["train", str(log), "--dataset", "beauty", "--recipe", "clozefirst", "--set", "max_steps=400", "eval_steps=400"]
    assert main([*argv, "time_budget=0.001", "torch_threads=1"]) == 0
    report = yaml.safe_load((tmp_path / "outputs" / "beauty" / "data_report.json").read_text())
    assert any("before the switch to next-item rows at step 100" in warning for warning in report["warnings"])


def test_train_help_lists_the_shipped_recipes_from_the_configuration_folder(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(shipped: clozefirst for beauty; distilled for beauty; fullrank for beauty; nextitem for beauty; paper for beauty)" in help_text
