"""``average_weights_share``: the model kept is the mean of the weights over the run's last
steps (stochastic weight averaging). A killed run resumes to the same mean: ``tests/test_resume.py``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainerState

from bert4rec_hf import run_bert4rec
from bert4rec_hf.training.config import ConfigError, load_config, read_yaml
from bert4rec_hf.training.pipeline import CHECKPOINTS, build_trainer, prepare_data
from bert4rec_hf.training.weight_averaging import WeightAverage

from .helpers import PHASED_RUN, write_ml100k_slice

AVERAGED = {**PHASED_RUN, "average_weights_share": 0.5, "average_weights_every": 2}  # steps 6, 8, 10 and 12 of 12


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return write_ml100k_slice(tmp_path_factory.mktemp("log") / "slice.csv", 60)


class RecordWeights(TrainerCallback):
    """A copy of the model's weights after every step."""

    def __init__(self):
        self.weights = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_averaging_is_off_by_default_and_refuses_bad_values_and_a_time_budget(log):
    assert load_config()["average_weights_share"] == 0.0
    with pytest.raises(ConfigError, match=r"'average_weights_share' must be a share of the steps in \[0, 1\].*got 1.5"):
        load_config(config_dict={"average_weights_share": 1.5})
    assert load_config()["average_weights_every"] is None
    with pytest.raises(ConfigError, match=r"'average_weights_every' must be a positive number of steps or null \(about six intervals\), got 0"):
        load_config(config_dict={"average_weights_every": 0})
    with pytest.raises(ConfigError, match="'average_weights_every' must be int"):
        load_config(config_dict={"average_weights_every": 2.5})
    budgeted = {**AVERAGED, "time_budget": 60, "data_path": str(log)}
    with pytest.raises(ConfigError, match=r"average_weights_share: 0.5 .* give the steps \(max_steps\), not time_budget \(60\)"):
        run_bert4rec(config_dict=budgeted)
    with pytest.raises(ValueError, match="positive N"):
        WeightAverage(0.5, 0)


def test_snapshots_are_counted_back_from_the_last_step():
    assert list(WeightAverage(0.375, 500).snapshot_steps(8000)) == [5000, 5500, 6000, 6500, 7000, 7500, 8000]
    assert list(WeightAverage(0.5, 4).snapshot_steps(30)) == [18, 22, 26, 30]
    assert list(WeightAverage(1.0, 7).snapshot_steps(30)) == [2, 9, 16, 23, 30]
    assert list(WeightAverage(0.01, 7).snapshot_steps(30)) == [30]  # under one step's share: the last step alone
    # no step count given: the averaged stretch in six intervals, rounded (ml-100k's default run: 2,301 steps, every 384)
    assert list(WeightAverage(0.375).snapshot_steps(6136)) == [4216, 4600, 4984, 5368, 5752, 6136]
    assert list(WeightAverage(0.375).snapshot_steps(8000)) == [5000, 5500, 6000, 6500, 7000, 7500, 8000]
    assert list(WeightAverage(0.5).snapshot_steps(12)) == [6, 7, 8, 9, 10, 11, 12]
    assert list(WeightAverage(0.1).snapshot_steps(20)) == [18, 19, 20]  # fewer steps than intervals: every step


def test_the_trained_model_is_the_mean_of_the_weights_at_the_snapshot_steps(log, tmp_path):
    config = load_config(config_dict={**AVERAGED, "data_path": str(log)})
    trainer = build_trainer(config, prepare_data(config), tmp_path)
    recorded = RecordWeights()
    trainer.add_callback(recorded)
    trainer.train()

    assert trainer.weight_average().steps == [6, 8, 10, 12] and trainer.weight_average().applied
    final = trainer.model.state_dict()
    for name, tensor in final.items():
        if tensor.is_floating_point():
            expected = torch.stack([recorded.weights[step][name] for step in (6, 8, 10, 12)]).mean(0)
            torch.testing.assert_close(tensor, expected)
    weight = "bert4rec.embeddings.item_embeddings.weight"
    assert not torch.equal(final[weight], recorded.weights[12][weight])


def test_a_run_saves_evaluates_and_reports_the_averaged_model(log, tmp_path):
    """The same training as the run without averaging (the sum changes nothing in the
    arithmetic), but the model saved and evaluated is the mean, and no checkpoint is left."""
    plain = run_bert4rec(config_dict={**PHASED_RUN, "data_path": str(log)}, output_dir=tmp_path / "plain")
    averaged_dir = tmp_path / "averaged"
    averaged = run_bert4rec(config_dict={**AVERAGED, "data_path": str(log)}, output_dir=averaged_dir)
    plain_weights, averaged_weights = load_file(tmp_path / "plain" / "model.safetensors"), load_file(averaged_dir / "model.safetensors")
    assert plain_weights.keys() == averaged_weights.keys()
    assert not torch.equal(plain_weights["bert4rec.embeddings.item_embeddings.weight"], averaged_weights["bert4rec.embeddings.item_embeddings.weight"])
    assert averaged["test"] != plain["test"]
    metrics = json.loads((averaged_dir / "metrics.json").read_text())
    assert metrics["averaged_steps"] == [6, 8, 10, 12]
    assert json.loads((tmp_path / "plain" / "metrics.json").read_text())["averaged_steps"] is None
    assert "| weights: the mean at steps | 6, 8, ..., 12 (4) |" in (averaged_dir / "README.md").read_text()
    assert not (averaged_dir / CHECKPOINTS).exists()
    assert not [path.name for path in averaged_dir.iterdir() if path.name.startswith(".")]


def test_a_run_stopped_before_its_last_step_keeps_its_own_weights():
    """Early stopping ends a run before the steps whose weights are averaged: the model is not
    replaced by the mean of the few snapshots there were."""
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(0.5, 1)
    average.add(model, 5)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    stopped = TrainerState(global_step=8, max_steps=10)
    average.apply(model, stopped)
    assert torch.equal(model.weight, before["weight"] + 1.0)
    average.apply(model, TrainerState(global_step=10, max_steps=10))
    assert torch.equal(model.weight, before["weight"])


def test_a_distilled_run_averages_itself_not_its_teachers(log, tmp_path):
    """``distill_teachers``: the teachers are the run's configuration without teachers and with
    their last weights (their mean score already averages several runs); the run averages."""
    distilled = {**AVERAGED, "distill_teachers": 1, "distillation_weight": 0.5, "data_path": str(log)}
    run_bert4rec(config_dict=distilled, output_dir=tmp_path / "run")
    teacher = read_yaml(tmp_path / "run" / "teachers" / "teacher-1" / "run_config.yaml")
    student = read_yaml(tmp_path / "run" / "run_config.yaml")
    assert (teacher["average_weights_share"], teacher["average_weights_every"]) == (0.0, None)
    assert (student["average_weights_share"], student["average_weights_every"]) == (0.5, 2)
