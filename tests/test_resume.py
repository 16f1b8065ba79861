"""A killed training run resumes to the same weights and metrics as one never interrupted.

Each run is a real ``bert4rec train`` subprocess; the killed ones SIGKILL
themselves at a chosen moment (a random step, half-way through writing a
checkpoint, while writing the final model folder) through a small driver that
wraps the command line.
"""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bert4rec_hf import Bert4RecRecommender, DataCollatorForMaskedItemPrediction, run_bert4rec
from bert4rec_hf.training.auto_schedule import AutoSchedule
from bert4rec_hf.training.config import ConfigError, load_config, parse_overrides
from bert4rec_hf.training.pipeline import CHECKPOINTS, RESUME_CONFIG, check_resumable, resume_schedule
from bert4rec_hf.training.time_budget import TimeBudgetCallback
from bert4rec_hf.training.trainer import last_checkpoint

from .helpers import write_ml100k_slice

MAX_STEPS, EVAL_STEPS = 30, 5
DRIVER = """
import os, signal, sys
from transformers import Trainer
from bert4rec_hf.training import pipeline
from bert4rec_hf.cli import main
where, _, step = os.environ["KILL_AT"].partition(":")
step, _, nth = step.partition(":")  # step:N:K: when the K-th Trainer reaches step N (a branch of next_item_branches)
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if where == "step":  # right after an optimizer step, mid-epoch, between checkpoints
    original_step_end = Trainer._maybe_log_save_evaluate
    trainers = set()
    def step_end(self, *args, **kwargs):
        if self.state.global_step == int(step):
            trainers.add(id(self))
            if len(trainers) == int(nth or 1):
                die()
        return original_step_end(self, *args, **kwargs)
    Trainer._maybe_log_save_evaluate = step_end
elif where == "checkpoint":  # weights and optimizer written, RNG and trainer state not yet
    original_rng = Trainer._save_rng_state
    def save_rng(self, output_dir):
        if self.state.global_step == int(step):
            die()
        return original_rng(self, output_dir)
    Trainer._save_rng_state = save_rng
elif where == "model_folder":  # training over, the model folder half written
    pipeline.write_model_card = die
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def run_args(tmp_path_factory):
    log = write_ml100k_slice(tmp_path_factory.mktemp("log") / "slice.csv", 60)
    settings = {
        "data_path": str(log), "max_steps": MAX_STEPS, "eval_steps": EVAL_STEPS, "train_batch_size": 16,
        "hidden_size": 16, "inner_size": 32, "max_seq_length": 20, "train_stride": 5, "stopping_step": 100,
        "torch_threads": 1, "eval_loss": False,
    }  # fmt: skip
    return ["--set", *(f"{key}={value}" for key, value in settings.items())]


def train(args, output_dir, *extra, kill_at=None, driver=None):
    command = [sys.executable, "-m", "bert4rec_hf.cli", "train", *args, "--output-dir", str(output_dir), *extra]
    env = dict(os.environ)
    if kill_at is not None:
        command[1:3] = [str(driver)]
        env["KILL_AT"] = kill_at
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(run_args, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    finished = train(run_args, output_dir)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return output_dir


def ranking_metrics(output_dir: Path) -> dict:
    metrics = json.loads((output_dir / "metrics.json").read_text())
    timing = ("runtime", "per_second", "preparation_time")
    return {
        split: {key: value for key, value in metrics[split].items() if not any(word in key for word in timing)}
        for split in ("valid", "test")
    } | {
        "global_steps": metrics["global_steps"],
        "best": metrics["best_checkpoint_metric"],
        "curve": metrics["validation_curve"],
    }


@pytest.mark.parametrize(
    "kill_at",
    [f"step:{random.Random(7).randint(EVAL_STEPS + 1, MAX_STEPS - 1)}", "checkpoint:15", "model_folder"],
)
def test_a_killed_run_resumes_to_the_uninterrupted_weights_and_metrics(run_args, reference, tmp_path, kill_at):
    assert_resumes_to(reference, run_args, tmp_path, kill_at)


def test_a_killed_run_of_length_grouped_batches_resumes_to_the_uninterrupted_one(run_args, tmp_path):
    """``group_by_length`` draws each epoch's batches from its own seeded order: killed in
    its third epoch (batch 256: 8 steps an epoch), the run resumes on the batches the
    uninterrupted run trained on."""
    grouped = [*run_args, "group_by_length=true", "train_batch_size=256"]
    reference = tmp_path / "uninterrupted"
    finished = train(grouped, reference)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert_resumes_to(reference, grouped, tmp_path, "step:17")


def test_a_run_killed_after_its_switch_to_next_item_rows_resumes_to_the_uninterrupted_one(run_args, tmp_path):
    """``next_item_share``: the last half of the 30 steps on next-item rows. Killed at step
    22, the resumed run goes on with the next-item rows the uninterrupted one drew."""
    phased = [*run_args, "next_item_share=0.5", "group_by_length=true"]
    reference = tmp_path / "uninterrupted"
    finished = train(phased, reference)
    assert finished.returncode == 0, finished.stderr[-2000:]
    data = json.loads((reference / "metrics.json").read_text())["data"]
    assert data["next-item rows"] > data["training windows"]  # one per training item against windows every 5
    assert_resumes_to(reference, phased, tmp_path, "step:22")


@pytest.mark.parametrize("kill_at", ["step:22:2", "step:27:3"])
def test_a_run_of_next_item_branches_killed_in_a_branch_resumes_to_the_uninterrupted_one(run_args, tmp_path, kill_at):
    """``next_item_branches: 3``: killed in branch 2 (or 3), the resumed run restores branch 1's
    end, resumes the branch from its own newest checkpoint and averages the same weights."""
    branched = [*run_args, "next_item_share=0.5", "next_item_branches=3"]
    reference = tmp_path / "uninterrupted"
    finished = train(branched, reference)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert_resumes_to(reference, branched, tmp_path, kill_at)


@pytest.mark.parametrize("kill_at", ["step:12:1", "step:22:2"])
def test_a_distilled_run_killed_in_its_teacher_or_itself_resumes_to_the_uninterrupted_one(run_args, tmp_path, kill_at):
    """``distill_teachers: 1``: killed while its teacher trains (the first Trainer), the resumed
    run resumes the teacher, then trains itself; killed while it trains itself (the second), it
    keeps the finished teacher and resumes its own checkpoint."""
    distilled = [*run_args, "next_item_share=0.5", "distill_teachers=1", "distillation_weight=0.5"]
    reference = tmp_path / "uninterrupted"
    finished = train(distilled, reference)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (reference / "teachers" / "teacher-1" / "model.safetensors").is_file()
    assert_resumes_to(reference, distilled, tmp_path, kill_at)


@pytest.mark.parametrize("kill_at", ["step:22", "model_folder"])
def test_a_run_averaging_its_last_weights_killed_resumes_to_the_uninterrupted_mean(run_args, tmp_path, kill_at):
    """``average_weights_share: 0.5``, every 3 steps (steps 15, 18, ..., 30): killed at step 22, the
    run resumes from checkpoint-20 with the sum of steps 15 and 18 it holds; killed while writing
    its model folder, it restores the finished run's mean without training."""
    averaged = [*run_args, "average_weights_share=0.5", "average_weights_every=3"]
    reference = tmp_path / "uninterrupted"
    finished = train(averaged, reference)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert_resumes_to(reference, averaged, tmp_path, kill_at)


def test_branches_averaging_their_last_weights_killed_in_a_branch_resume_to_the_uninterrupted_soup(run_args, tmp_path):
    """``next_item_branches: 2`` with ``average_weights_share``: each branch sums its own last
    steps (from its own checkpoints); killed in branch 2, the run restores branch 1's mean and
    resumes branch 2's sum. The soup differs from the one of unaveraged branches."""
    branched = [*run_args, "next_item_share=0.5", "next_item_branches=2"]
    averaged = [*branched, "average_weights_share=0.3", "average_weights_every=2"]
    plain, reference = tmp_path / "plain", tmp_path / "uninterrupted"
    assert train(branched, plain).returncode == 0
    finished = train(averaged, reference)
    assert finished.returncode == 0, finished.stderr[-2000:]
    weight = "bert4rec.embeddings.item_embeddings.weight"
    assert not torch.equal(load_file(plain / "model.safetensors")[weight], load_file(reference / "model.safetensors")[weight])
    assert_resumes_to(reference, averaged, tmp_path, "step:27:2")


def test_checkpoints_between_evaluations_resume_a_run_from_the_newest(run_args, tmp_path):
    """``save_steps: 4`` in a run evaluated every 15 steps: killed at step 14, it resumes from
    checkpoint-12, not from the start, to the weights of the run that saved only at its
    evaluations (the extra checkpoints change nothing in the arithmetic)."""
    rare = [*run_args, "eval_steps=15"]
    uninterrupted = tmp_path / "uninterrupted"
    assert train(rare, uninterrupted).returncode == 0
    resumed = assert_resumes_to(uninterrupted, [*rare, "save_steps=4"], tmp_path, "step:14")
    assert "Resuming from" in resumed.stdout and "checkpoint-12" in resumed.stdout
    with pytest.raises(ConfigError, match="'save_steps' must be a positive number of steps"):
        load_config(config_dict={"save_steps": 0})


def assert_resumes_to(reference: Path, run_args: list[str], tmp_path: Path, kill_at: str) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    output_dir = tmp_path / "killed"
    killed = train(run_args, output_dir, kill_at=kill_at, driver=driver)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (output_dir / "metrics.json").exists()

    resumed = train(run_args, output_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from" in resumed.stdout
    expected, got = load_file(reference / "model.safetensors"), load_file(output_dir / "model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert ranking_metrics(output_dir) == ranking_metrics(reference)
    assert not (output_dir / CHECKPOINTS).exists()
    assert not [path.name for path in output_dir.iterdir() if path.name.startswith(".")]
    return resumed


def test_resume_refuses_an_empty_folder_and_another_configuration(run_args, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_bert4rec(config_dict={"max_steps": 2}, output_dir=tmp_path / "empty", resume=True)

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    output_dir = tmp_path / "killed"
    assert train(run_args, output_dir, kill_at="step:12", driver=driver).returncode == -signal.SIGKILL
    refused = train(run_args, output_dir)  # starting again by mistake is refused, naming the way out
    assert refused.returncode == 1 and "--resume" in refused.stderr
    # the killed run's derived schedule (schedule: auto) is adopted first, as `--resume` does: lr 1e-3
    changed = load_config(config_dict={**parse_overrides(run_args[1:]), "learning_rate": 0.01, "max_steps": 99})
    resume_schedule(output_dir, AutoSchedule(changed), changed)
    with pytest.raises(ConfigError, match=r"learning_rate: 0\.001 -> 0\.01.*max_steps: 30 -> 99"):
        check_resumable(output_dir, changed)
    # threads and how many checkpoints are kept may change: only the learning rate is named
    changed_too = train([*run_args, "torch_threads=2", "save_total_limit=5", "learning_rate=0.01"], output_dir, "--resume")
    assert changed_too.returncode == 1 and "(learning_rate: 0.001 -> 0.01)" in changed_too.stderr
    both = train(run_args, output_dir, "--resume", "--overwrite")
    assert both.returncode == 1 and "give one" in both.stderr

    # checkpoints saved before a setting existed (here num_views) resume with it at its package
    # default, which is the behaviour they were trained with; given another value, they are refused
    saved_file = output_dir / CHECKPOINTS / RESUME_CONFIG
    saved_file.write_text("".join(line for line in saved_file.read_text().splitlines(True) if not line.startswith("num_views:")))
    same = load_config(config_dict=parse_overrides(run_args[1:]))
    resume_schedule(output_dir, AutoSchedule(same), same)
    assert check_resumable(output_dir, same).endswith("checkpoint-10")
    spelled_out = load_config(config_dict={**parse_overrides(run_args[1:]), "num_views": 1})  # the default, written
    resume_schedule(output_dir, AutoSchedule(spelled_out), spelled_out)
    assert check_resumable(output_dir, spelled_out).endswith("checkpoint-10")
    views = load_config(config_dict={**parse_overrides(run_args[1:]), "num_views": 2})
    resume_schedule(output_dir, AutoSchedule(views), views)
    with pytest.raises(ConfigError, match=r"num_views: None -> 2"):
        check_resumable(output_dir, views)


def test_a_killed_runs_checkpoint_ranks_and_recommends_on_its_own(run_args, tmp_path):
    # each checkpoint holds the item vocabulary and finds its run's configuration, so the best
    # checkpoint of a run that never finished is a model folder: `bert4rec evaluate` with no data
    # options reproduces the validation figure the run logged at that step
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    output_dir = tmp_path / "killed"
    assert train(run_args, output_dir, kill_at="step:12", driver=driver).returncode == -signal.SIGKILL
    checkpoint = output_dir / CHECKPOINTS / "checkpoint-10"
    assert (checkpoint / "item_vocab.json").is_file() and not (checkpoint / "run_config.yaml").exists()

    logged = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    at_step = next(entry for entry in logged if entry["step"] == 10 and "eval_ndcg@10" in entry)
    output = tmp_path / "checkpoint_metrics.json"
    command = [sys.executable, "-m", "bert4rec_hf.cli", "evaluate", str(checkpoint), "--output", str(output)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    metrics = json.loads(output.read_text())
    assert metrics["valid"]["valid_ndcg@10"] == pytest.approx(at_step["eval_ndcg@10"], abs=1e-6)
    assert 0 <= metrics["test"]["test_ndcg@10"] <= 1

    recommender = Bert4RecRecommender.from_pretrained(checkpoint)
    history = recommender.tokenizer.items[:3]
    recommended = recommender.recommend(history, k=5, exclude_history=True, return_scores=False)
    assert len(recommended) == 5 and not set(recommended) & set(history)


def test_only_complete_checkpoints_are_resumed_from(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / ".partial-checkpoint" / "checkpoint-20").mkdir(parents=True)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert last_checkpoint(tmp_path / "missing") is None


def test_seeded_masking_depends_on_the_batch_number_only():
    rows = [{"input_ids": list(range(2, 40))} for _ in range(8)]
    collator = DataCollatorForMaskedItemPrediction(max_seq_length=30, mask_ratio=0.3, seed=5)
    first = [collator(rows)["labels"] for _ in range(3)]
    torch.manual_seed(123)  # the global RNG plays no part
    collator.batches_made = 1
    assert torch.equal(collator(rows)["labels"], first[1])
    assert not torch.equal(first[0], first[1])
    other_seed = DataCollatorForMaskedItemPrediction(max_seq_length=30, mask_ratio=0.3, seed=6)
    assert not torch.equal(other_seed(rows)["labels"], first[0])
    with pytest.raises(ValueError, match="seed or a generator"):
        DataCollatorForMaskedItemPrediction(seed=1, generator=torch.Generator())


def test_time_budget_state_carries_the_seconds_spent_and_the_schedule_end():
    budget = TimeBudgetCallback(100)
    budget.spent, budget.horizon = 40.0, 321  # as restored from a checkpoint
    state = budget.state()
    restored = TimeBudgetCallback(**state["args"])
    for name, value in state["attributes"].items():
        setattr(restored, name, value)

    class Args:
        pass

    class State:
        max_steps = 1_000

    restored.on_train_begin(Args(), State(), None)
    assert restored.horizon == 321 and 40.0 <= restored.elapsed() < 41.0
