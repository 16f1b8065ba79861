"""benchmarks/distillation_step.py times the teachers' part of a distilled step; its states at
the distilled positions, and its soft targets from remembered states, must be what the full
forward gives, or it would time a different computation."""

import json

from .helpers import benchmark_script


def test_the_teachers_last_layer_at_the_distilled_positions_gives_the_full_forwards_states(tmp_path):
    script = benchmark_script("distillation_step")
    output = tmp_path / "figures.json"
    argv = ["--num-items", "300", "--batch-size", "16", "--seq-length", "12", "--layers", "2", "--hidden", "16"]
    assert script.main([*argv, "--teachers", "2", "--steps", "1", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    assert figures["max_state_difference"] < 1e-5
    assert figures["max_probability_difference"] < 1e-6  # the remembered states give the encoders' soft targets
    timed = [
        "teacher_full_forward_s", "teacher_hidden_states_at_s", "soft_targets_s", "remember_per_row_s",
        "soft_targets_remembered_s", "student_step_s", "distilled_step_s", "distilled_step_remembered_s",
    ]  # fmt: skip
    assert all(figures[name] > 0 for name in timed)
    assert figures["setting"]["teachers"] == 2
