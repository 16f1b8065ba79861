import re

import pytest

from bert4rec_hf import load_config
from bert4rec_hf.training import ConfigError
from bert4rec_hf.training.config import config_dir, parse_overrides


def test_package_and_model_defaults():
    config = load_config()
    assert config["dataset"] == "ml-100k"
    assert (config["hidden_size"], config["n_layers"], config["n_heads"], config["mask_ratio"]) == (64, 2, 2, 0.2)
    assert config["valid_metric"] == "ndcg@10" and config["topk"] == [5, 10, 20]
    assert config.source_of("hidden_size").endswith("model/bert4rec.yaml")


def test_precedence_defaults_model_dataset_files_keywords(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text("learning_rate: 0.01\nmask_ratio: 0.3\nepochs: 7\n")
    second = tmp_path / "second.yaml"
    second.write_text("learning_rate: 0.02\n")
    config = load_config("beauty", [first, second], {"epochs": 3})
    assert config["max_seq_length"] == 50 and config.source_of("max_seq_length").endswith("dataset/beauty.yaml")
    assert config["mask_ratio"] == 0.3 and config.source_of("mask_ratio") == str(first)  # user file beats data set
    assert config["learning_rate"] == 0.02  # later file beats earlier
    assert config["epochs"] == 3 and config.source_of("epochs") == "keyword arguments"
    assert load_config("beauty")["mask_ratio"] == 0.6  # data set beats package default
    assert load_config("ml-1m")["max_seq_length"] == 200


def test_dataset_named_in_a_user_file_selects_its_yaml(tmp_path):
    user = tmp_path / "u.yaml"
    user.write_text("dataset: steam\n")
    config = load_config(config_file_list=[user])
    assert config["dataset"] == "steam" and config["mask_ratio"] == 0.4


def test_unknown_key_names_key_and_file(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text("learing_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown configuration key 'learing_rate' \(did you mean 'learning_rate'"):
        load_config(config_file_list=[user])


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": "ten"}, "'epochs' must be int, got 'ten'"),
        ({"epochs": 2.5}, "'epochs' must be int"),
        ({"exclude_history": "yes"}, "'exclude_history' must be one of [True, False, 'window'], got 'yes'"),
        ({"exclude_history": 1.0}, "'exclude_history' must be bool or str"),
        ({"learning_rate": True}, "'learning_rate' must be float or int"),
        ({"eval_mode": "uni50"}, "'eval_mode' must be one of"),
        ({"topk": [10, -1]}, "'topk' must be a non-empty list of positive integers"),
        ({"data_path": 3}, "'data_path' must be str or null"),
        ({"dataset": None}, "'dataset' must be str, got None"),
        ({"data_format": "inter"}, "'data_format' must be one of [None, 'atomic', 'csv'"),
        ({"split": "random"}, "'split' must be one of ['leave_one_out', 'temporal'], got 'random'"),
        ({"split_targets": "last"}, "'split_targets' must be one of ['next', 'all']"),
        ({"split_cutoff": "yesterday"}, "split_cutoff must be a time: a number or an ISO 8601 date/time"),
        ({"split_test_share": 1.5}, "'split_test_share' must be a share of the log between 0 and 1 (exclusive), got 1.5"),
        ({"split_validation_share": 0}, "'split_validation_share' must be a share of the log between 0 and 1"),
    ],
)
def test_wrong_types_name_the_key_and_source(values, message):
    with pytest.raises(ConfigError, match="keyword arguments: " + re.escape(message)):
        load_config(config_dict=values)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    user = tmp_path / "broken.yaml"
    user.write_text("epochs: 3\nlearning_rate: [0.1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+ invalid YAML"):
        load_config(config_file_list=[user])
    with pytest.raises(ConfigError, match="missing.yaml: configuration file not found"):
        load_config(config_file_list=[tmp_path / "missing.yaml"])


def test_command_line_overrides_parse_as_yaml():
    assert load_config(config_dict={"exclude_history": "window"})["exclude_history"] == "window"
    assert parse_overrides(["epochs=3", "topk=[1,5]", "exclude_history=true", "dataset=beauty"]) == {
        "epochs": 3, "topk": [1, 5], "exclude_history": True, "dataset": "beauty",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="expects key=value"):
        parse_overrides(["epochs"])


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    user = tmp_path / "lr.yaml"
    user.write_text("learning_rate: 1e-3\nweight_decay: 5E-2\n")
    config = load_config(config_file_list=[user])
    assert (config["learning_rate"], config["weight_decay"]) == (0.001, 0.05)
    assert parse_overrides(["learning_rate=1e-3", "time_budget=1.5e2", "dataset=1e"]) == {
        "learning_rate": 0.001, "time_budget": 150.0, "dataset": "1e",
    }  # fmt: skip


def test_separator_characters_yaml_would_swallow_stay_text():
    # '|' and '>' start YAML block scalars, '#' a comment; a tab is blank: all would have become '' or null
    overrides = parse_overrides(["field_separator=|", "data_path=#run.csv", "user_column=\t", "output_dir=", "dedup=null"])
    assert overrides == {"field_separator": "|", "data_path": "#run.csv", "user_column": "\t", "output_dir": None, "dedup": None}
    assert load_config(config_dict=parse_overrides(["field_separator=|"]))["field_separator"] == "|"


def test_a_run_given_only_a_data_path_is_named_after_the_file(tmp_path):
    config = load_config(config_dict={"data_path": str(tmp_path / "clicks.csv.gz")})
    assert config["dataset"] == "clicks"
    assert config.source_of("dataset") == "the file name of data_path (keyword arguments)"
    # ml-100k's schedule (the package's default data set) does not leak into someone else's log
    assert config["epochs"] == load_config("no-such-yaml")["epochs"] != load_config("ml-100k")["epochs"]
    assert config.source_of("learning_rate").endswith("overall.yaml")
    user = tmp_path / "u.yaml"
    user.write_text("data_path: logs/ml-1m.inter\n")
    assert load_config(config_file_list=[user])["max_seq_length"] == 200  # a file named like a shipped data set
    assert load_config("steam", config_dict={"data_path": "clicks.csv"})["dataset"] == "steam"  # a named one wins


def test_config_files_that_are_not_utf8_name_file_and_line(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("epochs: 3\noutput_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: line 2: not UTF-8 text \(byte 0xe9\)"):
        load_config(config_file_list=[latin])
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffepochs: 3\n".encode())
    assert load_config(config_file_list=[bom])["epochs"] == 3


def test_every_shipped_dataset_config_is_valid():
    names = [path.stem for path in (config_dir() / "dataset").glob("*.yaml")]
    assert {"ml-100k", "beauty", "ml-1m", "ml-20m", "steam"} <= set(names)
    for name in names:
        assert load_config(name)["dataset"] == name


def test_truncated_ranks_refuse_the_uncut_mrr_as_validation_metric(tmp_path):
    path = tmp_path / "fast_eval.yaml"
    path.write_text("truncate_ranks: true\n")
    assert load_config("ml-100k", [path])["truncate_ranks"] is True
    with pytest.raises(ConfigError, match=r"keyword arguments: valid_metric 'mrr' .*truncate_ranks is true \(.*fast_eval.yaml\)"):
        load_config("ml-100k", [path], {"valid_metric": "mrr"})
    assert load_config("ml-100k", [path], {"valid_metric": "mrr@10"})["valid_metric"] == "mrr@10"


def test_model_settings_are_the_config_class_fields_and_the_model_yaml_keys():
    from bert4rec_hf import Bert4RecConfig
    from bert4rec_hf.training.config import config_dir, read_yaml
    from bert4rec_hf.training.pipeline import MODEL_KEYS, build_training_arguments

    assert set(MODEL_KEYS) == set(read_yaml(config_dir() / "model" / "bert4rec.yaml"))
    assert "vocab_size" not in MODEL_KEYS and "attribute_map" not in MODEL_KEYS
    assert set(MODEL_KEYS) <= set(Bert4RecConfig().to_dict())
    config = load_config("ml-100k", config_dict={"train_batch_size": 7, "epochs": 3, "report_to": "none"})
    arguments = build_training_arguments(config, "unused")
    assert (arguments.per_device_train_batch_size, arguments.num_train_epochs, arguments.seed) == (7, 3, 2020)


def test_masking_settings_are_one_group_of_training_settings_that_builds_the_collator(tmp_path):
    from bert4rec_hf.data import MaskingArguments
    from bert4rec_hf.training.config import read_yaml
    from bert4rec_hf.training.pipeline import MASKING_KEYS, MODEL_KEYS, build_model, build_train_collator

    assert MASKING_KEYS == MaskingArguments.keys()
    assert MASKING_KEYS == ("mask_ratio", "last_item_mask_ratio", "mask_replace_prob", "random_replace_prob", "num_views")
    model_yaml = read_yaml(config_dir() / "model" / "bert4rec.yaml")
    assert set(MASKING_KEYS) <= set(read_yaml(config_dir() / "overall.yaml"))  # package defaults, one section
    assert not set(MASKING_KEYS) & (set(model_yaml) | set(MODEL_KEYS))
    user = tmp_path / "masking.yaml"
    user.write_text("mask_ratio: 0.35\nmask_replace_prob: 0.8\nrandom_replace_prob: 0.1\n")
    config = load_config("beauty", [user], {"last_item_mask_ratio": 0.3, "num_views": 2})
    collator = build_train_collator(config, vocab_size=50)
    masking = tuple(getattr(collator, key) for key in MASKING_KEYS)
    assert masking == (0.35, 0.3, 0.8, 0.1, 2)
    assert build_model(config, 50).config.mask_ratio == 0.35  # recorded with the model, which never reads it
    assert build_train_collator(load_config("beauty"), 50).mask_ratio == 0.6  # the data set's YAML
    overridden = load_config("beauty", config_dict=parse_overrides(["mask_ratio=0.3"]))
    assert build_train_collator(overridden, 50).mask_ratio == 0.3  # --set


def test_masking_values_are_refused_naming_key_and_source(tmp_path):
    from bert4rec_hf import run_bert4rec
    from bert4rec_hf.training.pipeline import masking_arguments

    bad = tmp_path / "bad.yaml"
    bad.write_text("last_item_mask_ratio: 1.5\n")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: 'last_item_mask_ratio' must be a number in [0, 1], got 1.5")):
        load_config(config_file_list=[bad])
    with pytest.raises(ConfigError, match=re.escape("keyword arguments: 'mask_ratio' must be a number in (0, 1), got 0")):
        load_config(config_dict=parse_overrides(["mask_ratio=0"]))
    pair = tmp_path / "pair.yaml"
    pair.write_text("random_replace_prob: 0.3\n")
    config = load_config(config_file_list=[pair], config_dict={"mask_replace_prob": 0.8})  # each value is in range
    expected = (
        f"mask_replace_prob + random_replace_prob must be <= 1, got 0.8 + 0.3 "
        f"(mask_replace_prob from keyword arguments; random_replace_prob from {pair})"
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        masking_arguments(config)
    with pytest.raises(ConfigError, match="mask_replace_prob \\+ random_replace_prob"):  # before reading any data
        run_bert4rec(config_file_list=[pair], config_dict={"mask_replace_prob": 0.8, "data_path": "missing.csv"},
                     output_dir=tmp_path / "out")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_cut_off_date_reads_from_yaml_unquoted(tmp_path):
    (tmp_path / "temporal.yaml").write_text("split: temporal\nsplit_cutoff: 1998-03-01\nsplit_validation_cutoff: '1998-02-01T12:00:00Z'\n")
    config = load_config(config_file_list=[tmp_path / "temporal.yaml"])
    assert config["split"] == "temporal"
    assert str(config["split_cutoff"]) == "1998-03-01"  # a date: YAML's reading, accepted as a time
