"""``next_item_branches``: the next-item phase trained several times from the Cloze phase's
end, each branch on its own seed, and the mean of their weights saved as the run's model
(a model soup). A killed run resumes inside its branch: ``tests/test_resume.py``."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from bert4rec_hf import run_bert4rec, tune_bert4rec
from bert4rec_hf.training import branches
from bert4rec_hf.training.config import ConfigError, load_config
from bert4rec_hf.training.pipeline import CHECKPOINTS, build_trainer, prepare_data
from bert4rec_hf.training.planning import plan_training

from .helpers import PHASED_RUN, write_ml100k_slice

SETTINGS = PHASED_RUN


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return write_ml100k_slice(tmp_path_factory.mktemp("log") / "slice.csv", 60)


def test_branches_need_a_next_item_phase_and_steps_not_a_time_budget_nor_a_search(log, tmp_path):
    assert load_config()["next_item_branches"] == 1
    with pytest.raises(ConfigError, match="'next_item_branches' must be a positive number of branches, got 0"):
        load_config(config_dict={"next_item_branches": 0})
    with pytest.raises(ConfigError, match="'next_item_branches' must be int"):
        load_config(config_dict={"next_item_branches": 2.5})
    without_phase = {**SETTINGS, "next_item_share": 0.0, "next_item_branches": 3, "data_path": str(log)}
    with pytest.raises(ConfigError, match="next_item_branches: 3 .* needs next_item_share between 0 and 1"):
        run_bert4rec(config_dict=without_phase)
    hyper = tmp_path / "hyper.test"
    hyper.write_text("learning_rate choice [0.01,0.001]\n")
    with pytest.raises(ConfigError, match="tuning trains each trial once, without next_item_branches"):
        tune_bert4rec(hyper, config_dict={**SETTINGS, "next_item_branches": 2, "data_path": str(log)}, output_dir=tmp_path)
    budgeted = {**SETTINGS, "next_item_branches": 2, "time_budget": 60, "data_path": str(log)}
    with pytest.raises(ConfigError, match=r"give the steps \(max_steps\), not time_budget \(60\)"):
        run_bert4rec(config_dict=budgeted)


def test_the_saved_model_is_the_mean_of_branches_that_share_the_cloze_phase(log, tmp_path, monkeypatch):
    """Branch 1 is the run without branches; the others start from its checkpoint at the
    switch (step 6) on other seeds, so they differ from it and from each other; the model
    saved, evaluated and reported is their mean, and no checkpoint is left behind."""
    plain = run_bert4rec(config_dict={**SETTINGS, "data_path": str(log)}, output_dir=tmp_path / "plain")
    seen = {}
    mean_weights = branches.mean_weights

    def recording_mean(states):
        seen["branches"] = [{name: tensor.clone() for name, tensor in state.items()} for state in states]
        seen["mean"] = mean_weights(states)
        return seen["mean"]

    start_branch = branches.start_branch
    starts = []
    monkeypatch.setattr(branches, "mean_weights", recording_mean)
    monkeypatch.setattr(branches, "start_branch", lambda *args: starts.append(start_branch(*args)) or starts[-1])
    soup_dir = tmp_path / "soup"
    soup = run_bert4rec(config_dict={**SETTINGS, "data_path": str(log), "next_item_branches": 3}, output_dir=soup_dir)

    assert [path.split("/")[-3:] for path in starts] == [[f"branch-{k}", CHECKPOINTS, "checkpoint-6"] for k in (2, 3)]
    first, second, third = seen["branches"]
    plain_weights = load_file(tmp_path / "plain" / "model.safetensors")
    assert all(torch.equal(first[name], plain_weights[name]) for name in plain_weights)
    weight = "bert4rec.embeddings.item_embeddings.weight"
    assert not torch.equal(first[weight], second[weight]) and not torch.equal(second[weight], third[weight])
    saved = load_file(soup_dir / "model.safetensors")
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, (first[name] + second[name] + third[name]) / 3)
    assert soup["test"] != plain["test"]  # evaluated with the mean, not branch 1
    assert not (soup_dir / CHECKPOINTS).exists()
    assert not [path.name for path in soup_dir.iterdir() if path.name.startswith(".")]


def test_the_plan_counts_every_branch_next_item_steps(log):
    config = load_config(config_dict={**SETTINGS, "data_path": str(log), "next_item_branches": 3})
    data = prepare_data(config)
    trainer = build_trainer(config, data, "unused")
    single = plan_training(trainer, {**config, "next_item_branches": 1}, seconds=(1.0, 10.0))
    soup = plan_training(trainer, config, seconds=(1.0, 10.0))
    # 12 steps (6 Cloze + 6 next-item) and 3 evaluations, then 2 more branches of 6 steps and 1.5 evaluations each
    assert single["estimated_seconds"] == 12 * 1.0 + 3 * 10.0 + 2 * 10.0
    assert soup["estimated_seconds"] == 2 * (12 * 1.0 + 3 * 10.0) + 2 * 10.0
    assert "the last 50% on next-item rows in each of 3 branches, averaged" in soup["summary"]


def test_a_run_that_stopped_before_its_switch_keeps_its_own_model(log, tmp_path, caplog):
    """Early stopping can end branch 1 in its Cloze phase: there is no switch checkpoint to
    branch from, so the run says so and keeps its model rather than failing after training."""
    config = load_config(config_dict={**SETTINGS, "data_path": str(log), "next_item_branches": 3})
    trainer = build_trainer(config, prepare_data(config), tmp_path)
    trainer.state.global_step = 4  # stopped before the switch at step 6
    before = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    built = []
    with caplog.at_level("WARNING"):
        branches.train_branches(trainer, config, lambda *args: built.append(args))
    assert not built and "before the switch to next-item rows at step 6" in caplog.text
    assert all(torch.equal(before[name], tensor) for name, tensor in trainer.model.state_dict().items())
