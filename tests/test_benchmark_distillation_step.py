"""benchmarks/distillation_step.py times the teachers' part of a distilled step; its states at
the distilled positions must be the full forward's, or it would time a different computation."""

import json

from .helpers import benchmark_script


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
