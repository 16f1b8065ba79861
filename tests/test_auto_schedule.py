"""schedule: auto: a log without a schedule of its own gets one derived from its size and the
measured cost of a step; whatever a data set file, a user file or --set gives stays."""

import json

import pytest
import yaml

from bert4rec_hf import run_bert4rec
from bert4rec_hf.training.auto_schedule import (
    MAX_EPOCHS,
    MIN_STEPS,
    TIME_BUDGET,
    WINDOWS_AND_RATES,
    AutoSchedule,
)
from bert4rec_hf.training.config import load_config

from .test_own_log import write_repeat_log

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path, **overrides):
    log = tmp_path / "clicks.csv"
    if not log.exists():
        write_repeat_log(log)
    return load_config(config_dict={"data_path": str(log), **overrides})


def test_only_keys_left_at_the_package_defaults_are_derived(tmp_path):
    config = _config(tmp_path, learning_rate=0.01, epochs=2)
    schedule = AutoSchedule(config)
    assert "learning_rate" not in schedule.keys and "epochs" not in schedule.keys
    schedule.before_data(config)
    assert config["learning_rate"] == 0.01 and config["train_batch_size"] == 64
    assert config["train_stride"] == 1 and config["train_prefixes"] is True
    assert config["hidden_dropout_prob"] == config["attn_dropout_prob"] == 0.2
    assert config.source_of("train_batch_size").startswith("schedule: auto")
    assert AutoSchedule(_config(tmp_path, schedule="fixed")).keys == ()
    # a user file is a layer of its own, whatever its name (even the package's model file's)
    user_file = tmp_path / "mine" / "bert4rec.yaml"
    user_file.parent.mkdir()
    user_file.write_text("learning_rate: 0.02\n")
    from_file = load_config(config_file_list=[user_file], config_dict={"data_path": str(tmp_path / "clicks.csv")})
    mine = AutoSchedule(from_file)
    mine.before_data(from_file)
    assert "learning_rate" not in mine.keys and from_file["learning_rate"] == 0.02
    # a data set's YAML is a schedule of its own: ml-100k keeps every value it sets
    ml100k = load_config("ml-100k")
    kept = AutoSchedule(ml100k)
    assert not {"epochs", "learning_rate", "warmup_steps", "eval_steps", "stopping_step"} & set(kept.keys)
    before = dict(ml100k)
    kept.before_data(ml100k)
    kept.fit_steps(ml100k, train_rows=98_114, step_seconds=0.07, evaluation_seconds=0.3)
    assert dict(ml100k) == before


def test_steps_follow_the_rows_and_fit_the_time_budget(tmp_path):
    config = _config(tmp_path)
    schedule = AutoSchedule(config)
    schedule.before_data(config)
    # a tiny log: MAX_EPOCHS passes, but at least MIN_STEPS
    schedule.fit_steps(config, train_rows=5_000, step_seconds=0.01, evaluation_seconds=0.1)
    assert config["max_steps"] == MIN_STEPS and config["time_budget"] == TIME_BUDGET
    assert config["eval_steps"] == 250 and config["stopping_step"] == 8  # 12 evaluations, patience 2/3
    # a small log on a fast machine: all MAX_EPOCHS passes fit, a tenth of them warm-up
    config = _config(tmp_path)
    schedule = AutoSchedule(config)
    schedule.before_data(config)
    schedule.fit_steps(config, train_rows=20_000, step_seconds=0.02, evaluation_seconds=0.5)
    assert config["max_steps"] == MAX_EPOCHS * 20_000 // 64 == 6_250 and config["warmup_steps"] == 0.1
    # a log whose passes do not all fit: as many steps as the budget holds once the
    # evaluations (12, and the final validation and test) are paid
    config = _config(tmp_path)
    schedule = AutoSchedule(config)
    schedule.before_data(config)
    schedule.fit_steps(config, train_rows=100_000, step_seconds=0.05, evaluation_seconds=0.5)
    assert config["max_steps"] == int((TIME_BUDGET - 14 * 0.5) / 0.05) == 17_860
    assert schedule.warnings == []
    # a large log on a slow machine: evaluations kept under 15% of the budget (4 of 30 s), the
    # steps that fit once they and the final validation and test are paid; patience 3 of them
    config = _config(tmp_path)
    schedule = AutoSchedule(config)
    schedule.before_data(config)
    schedule.fit_steps(config, train_rows=1_000_000, step_seconds=0.3, evaluation_seconds=30.0)
    assert config["max_steps"] == int((TIME_BUDGET - 6 * 30.0) / 0.3) == 2_400
    assert config["eval_steps"] == 600 and config["stopping_step"] == 3
    assert schedule.values["max_steps"] == 2_400 and config["loss_type"] == "CE"  # the paper's loss stays
    # 2,400 steps of 64 are 0.15 of the 1,000,000 rows: the run says so before it starts
    assert len(schedule.warnings) == 1 and "covers 0.15 of one pass" in schedule.warnings[0]
    assert "about 1.3 h here" in schedule.warnings[0]
    # given epochs or max_steps replace the derived steps and the time budget
    config = _config(tmp_path, max_steps=500)
    schedule = AutoSchedule(config)
    schedule.fit_steps(config, train_rows=1_000_000, step_seconds=0.3, evaluation_seconds=0.1)
    assert config["max_steps"] == 500 and config["time_budget"] is None and config["eval_steps"] == 42


def test_a_run_on_an_own_log_records_and_reports_the_derived_schedule(tmp_path):
    log = write_repeat_log(tmp_path / "clicks.csv")
    small = {
        "hidden_size": 16, "inner_size": 32, "max_seq_length": 12, "torch_threads": 1, "time_budget": 6,
        "user_column": "visitor", "item_column": "product", "time_column": "ts",
    }  # fmt: skip
    result = run_bert4rec(data_path=log, config_dict=small, output_dir=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "run_config.yaml").read_text())
    for key, value in WINDOWS_AND_RATES.items():
        assert saved[key] == value, key
    assert saved["time_budget"] == 6 and 0 < saved["max_steps"] < MIN_STEPS  # the steps that fit in 6 s
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["plan"]["schedule"]["max_steps"] == saved["max_steps"]
    assert report["plan"]["planned_steps"] == saved["max_steps"]
    assert "schedule: auto, derived from this log" in (tmp_path / "run" / "data_report.md").read_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["global_steps"] <= saved["max_steps"]
    assert result["test"]["test_ndcg@10"] > result["baselines"]["most popular"]["test"]["test_ndcg@10"]


def test_a_resumed_run_keeps_the_schedule_its_first_part_derived(tmp_path):
    from bert4rec_hf.training.pipeline import CHECKPOINTS, RESUME_CONFIG, resume_schedule

    first = _config(tmp_path)
    schedule = AutoSchedule(first)
    schedule.before_data(first)
    schedule.fit_steps(first, train_rows=1_000_000, step_seconds=0.3, evaluation_seconds=30.0)
    (tmp_path / "run" / CHECKPOINTS).mkdir(parents=True)
    (tmp_path / "run" / CHECKPOINTS / RESUME_CONFIG).write_text(yaml.safe_dump(dict(first)))
    again = _config(tmp_path)  # the same command, on a machine now twice as fast: the steps stay
    schedule = AutoSchedule(again)
    resume_schedule(tmp_path / "run", schedule, again)
    schedule.fit_steps(again, train_rows=1_000_000, step_seconds=0.15, evaluation_seconds=15.0)
    assert schedule.keys == () and dict(again) == dict(first)
