"""benchmarks/distilled_seeds.py measures a distilled configuration at several seeds by
training the seeds' shared teachers once: its students must be exactly what the run's own
command trains, or its figures would be of another model."""

import json

import pytest
from safetensors.torch import load_file

from bert4rec_hf import run_bert4rec
from bert4rec_hf.training.config import ConfigError, load_config, parse_overrides

from .helpers import PHASED_RUN, benchmark_script, write_ml100k_slice

SETTINGS = {**PHASED_RUN, "eval_steps": 12, "distill_teachers": 1, "distillation_weight": 0.5}


def test_each_teacher_seed_trains_once_and_each_student_gets_the_next_seeds(tmp_path):
    script = benchmark_script("distilled_seeds")
    teachers, students = script.plan([0, 1, 2], load_config("beauty", config_dict={"recipe": "distilled"}), tmp_path)
    assert [(job[0], job[1], job[2].name) for job in teachers] == [("teacher", s, f"teacher_seed{s}") for s in range(1, 6)]
    assert [(job[1], job[2].name, [folder.name for folder in job[4]]) for job in students] == [
        (0, "student_seed0", ["teacher_seed1", "teacher_seed2", "teacher_seed3"]),
        (1, "student_seed1", ["teacher_seed2", "teacher_seed3", "teacher_seed4"]),
        (2, "student_seed2", ["teacher_seed3", "teacher_seed4", "teacher_seed5"]),
    ]


def test_a_teacher_of_recipe_distilled_is_a_run_of_recipe_clozefirst():
    script = benchmark_script("distilled_seeds")
    clozefirst = load_config("beauty", config_dict={"recipe": "clozefirst"})
    for student in (["recipe=distilled"], ["recipe=distilled", "average_weights_share=0.375", "average_weights_every=500"]):
        config = load_config("beauty", None, parse_overrides(student))
        teacher = load_config("beauty", None, parse_overrides([*student, *script.teacher_overrides(config)]))
        assert {key: value for key, value in teacher.items() if clozefirst[key] != value} == {}
        assert (config["max_steps"], teacher["max_steps"]) == (12000, 8000)  # the student trains longer


def test_the_student_is_the_model_its_own_command_trains_and_a_second_call_reuses_both(tmp_path):
    script = benchmark_script("distilled_seeds")
    log = write_ml100k_slice(tmp_path / "slice.csv", 60)
    overrides = [f"{key}={json.dumps(value)}" for key, value in SETTINGS.items() if key != "seed"]
    head = ["--log", str(log), "--seeds", str(SETTINGS["seed"]), "--set", *overrides]
    tail = ["--rankings", "full", "--name", "alpha0.5", "--work-dir", str(tmp_path / "w")]
    argv = [*head, *tail]
    assert script.main([*argv, "--output", str(tmp_path / "first.json")]) == 0
    run = run_bert4rec(config_dict={**SETTINGS, "data_path": str(log)}, output_dir=tmp_path / "own")  # trains its teacher
    assert (tmp_path / "w" / "alpha0.5_seed3.log").is_file()  # the student's log: a dot in --name is kept
    for mine, own in (("alpha0.5_seed3", "own"), ("teacher_seed4", "own/teachers/teacher-1")):
        weights, expected = (load_file(tmp_path / path / "model.safetensors") for path in (f"w/{mine}", own))
        assert weights.keys() == expected.keys() and all(weights[k].equal(expected[k]) for k in weights), mine
    first = json.loads((tmp_path / "first.json").read_text())["runs"]
    assert [(r["variant"], r["seed"], r["steps"], "reused" in r) for r in first] == [("teacher", 4, 12, False), ("student", 3, 12, False)]
    assert first[1]["rankings"]["full"]["ndcg@10"] == run["test"]["test_ndcg@10"]  # ranked as the run ranks itself

    # the students' stage of a second call (a device call's): both finished runs and their rankings read, none redone
    assert script.main([*argv, "--stage", "students", "--output", str(tmp_path / "second.json")]) == 0
    second = json.loads((tmp_path / "second.json").read_text())["runs"]
    assert [("reused" in r, r["rankings"]) for r in second] == [(True, r["rankings"]) for r in first]

    # another setting on the same work dir: the finished teacher is not reused as if it had it
    changed = [*head, "learning_rate=0.002", *tail, "--stage", "students", "--output", str(tmp_path / "third.json")]
    assert script.main(changed) == 1
    third = json.loads((tmp_path / "third.json").read_text())["runs"]
    assert [r["variant"] for r in third] == ["teacher"]  # the student is not run on it
    assert "holds a run trained with other settings (learning_rate: 0.001 -> 0.002)" in third[0]["error"]


def test_teacher_overrides_that_change_the_data_are_refused_before_any_teacher_trains(tmp_path):
    script = benchmark_script("distilled_seeds")
    log = write_ml100k_slice(tmp_path / "slice.csv", 60)
    argv = ["--log", str(log), "--seeds", "0", "--work-dir", str(tmp_path / "w"), "--output", str(tmp_path / "out.json"), "--set"]
    teachers = [f"{key}={json.dumps(value)}" for key, value in SETTINGS.items() if key != "seed"]
    with pytest.raises(ConfigError, match="teachers would train with min_item_interactions: 1 where the run has"):
        script.main([*argv, *teachers, "teacher_overrides={min_item_interactions: 1}"])
    with pytest.raises(ConfigError, match="'distillation_weight' is set by the run for its teachers"):
        script.main([*argv, *teachers, "teacher_overrides={distillation_weight: 0.5}"])
    assert not (tmp_path / "w").exists()


def test_the_seeds_come_from_seeds_not_from_set():
    script = benchmark_script("distilled_seeds")
    with pytest.raises(SystemExit, match="--set seed=7: give the students' seeds with --seeds"):
        script.main(["--set", "recipe=distilled", "seed=7"])


def test_the_students_stage_refuses_teachers_not_yet_trained(tmp_path):
    script = benchmark_script("distilled_seeds")
    argv = ["--seeds", "0", "--set", "recipe=distilled", "--stage", "students", "--work-dir", str(tmp_path / "w")]
    assert script.main([*argv, "--output", str(tmp_path / "out.json")]) == 1
    runs = json.loads((tmp_path / "out.json").read_text())["runs"]
    assert [(run["variant"], run["seed"]) for run in runs] == [("teacher", 1), ("teacher", 2), ("teacher", 3)]
    assert all("holds no finished run: train the teachers first (--stage teachers)" in run["error"] for run in runs)
    assert not (tmp_path / "w" / "student_seed0").exists()


def test_teachers_still_to_train_go_before_finished_ones_are_ranked(tmp_path):
    script = benchmark_script("distilled_seeds")
    teachers, _ = script.plan([0, 1], load_config("beauty", config_dict={"recipe": "distilled"}), tmp_path)  # seeds 1-4
    for seed in (1, 3):  # finished: a saved run's metrics.json and no checkpoint left
        (tmp_path / f"teacher_seed{seed}").mkdir()
        (tmp_path / f"teacher_seed{seed}" / "metrics.json").write_text("{}")
    (tmp_path / "teacher_seed2" / "checkpoints" / "checkpoint-500").mkdir(parents=True)  # killed mid-run
    assert [job[1] for job in script.untrained_first(teachers)] == [2, 4, 1, 3]
