"""benchmarks/distillation_step.py times the teachers' part of a distilled step, on synthetic
rows or a data set's own; its states at the distilled positions must be the full forward's, or
it would time a different computation."""

import json

import pytest
from pyarrow import csv as pacsv

from .helpers import benchmark_script, write_ml100k_slice


def test_the_teachers_last_layer_at_the_distilled_positions_gives_the_full_forwards_states(tmp_path):
    script = benchmark_script("distillation_step")
    output = tmp_path / "figures.json"
    argv = ["--num-items", "300", "--batch-size", "16", "--seq-length", "12", "--layers", "2", "--hidden", "16"]
    assert script.main([*argv, "--teachers", "2", "--steps", "1", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    assert figures["max_state_difference"] < 1e-5
    timed = ["teacher_full_forward_s", "teacher_hidden_states_at_s", "soft_targets_s", "student_step_s", "distilled_step_s"]
    assert all(figures[name] > 0 for name in timed)
    assert figures["setting"]["teachers"] == 2


def test_it_times_a_data_sets_own_next_item_rows(tmp_path):
    """``--dataset``: batches of the log's next-item rows (its items, its window), each of
    similar length, instead of synthetic rows."""
    log = write_ml100k_slice(tmp_path / "slice.csv", 40)
    script = benchmark_script("distillation_step")
    output = tmp_path / "figures.json"
    argv = ["--dataset", "ml-100k", "--data-path", str(log), "--set", "max_seq_length=30", "--batch-size", "8"]
    assert script.main([*argv, "--layers", "1", "--hidden", "16", "--teachers", "1", "--steps", "2", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    items = len(set(pacsv.read_csv(log).column("item_id").to_pylist()))
    assert (figures["setting"]["seq_length"], figures["setting"]["num_items"]) == (30, items)
    assert 1 <= figures["mean_row_length"] <= 30 and figures["max_state_difference"] < 1e-5
    assert figures["distilled_step_s"] > 0


def test_it_refuses_no_timed_repeats(capsys):
    with pytest.raises(SystemExit):
        benchmark_script("distillation_step").parse_args(["--steps", "0"])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


def test_a_missing_log_is_named(tmp_path):
    script = benchmark_script("distillation_step")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv: no such log file"):
        script.main(["--dataset", "ml-100k", "--data-path", str(tmp_path / "nowhere.csv")])
