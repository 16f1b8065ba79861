"""The two averaging benchmarks of issue 24 rank as ``bert4rec evaluate`` does:
``checkpoint_averaging.py`` (the mean of kept checkpoints' weights) and
``score_ensemble.py`` (the mean of several models' scores)."""

import json
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from bert4rec_hf import run_bert4rec

from .helpers import benchmark_script, write_ml100k_slice


@pytest.fixture(scope="module")
def scripts():
    return benchmark_script("checkpoint_averaging"), benchmark_script("score_ensemble")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("averaging")
    settings = {
        "data_path": str(write_ml100k_slice(root / "slice.csv", 60)), "max_steps": 8, "eval_steps": 8,
        "train_batch_size": 16, "hidden_size": 16, "inner_size": 32, "max_seq_length": 20, "torch_threads": 1,
        "schedule": "fixed", "eval_loss": False,
    }  # fmt: skip
    run = run_bert4rec(config_dict=settings, output_dir=root / "model")
    return root / "model", run["test"]


def test_a_window_averages_the_weights_of_the_checkpoints_it_spans(scripts, trained, tmp_path, monkeypatch):
    averaging, _ = scripts
    model, test = trained
    weights = load_file(model / "model.safetensors")
    run = tmp_path / "run"
    for scale in (1, 2, 3):  # checkpoint-4k holds the model's weights times k
        folder = run / "checkpoints" / f"checkpoint-{4 * scale}"
        shutil.copytree(model, folder)
        save_file({name: tensor * scale for name, tensor in weights.items()}, folder / "model.safetensors")
    shutil.copy(model / "run_config.yaml", run / "checkpoints" / "run_config.yaml")

    assert [folder.name for folder in averaging.window_folders("4-8", [run])] == ["checkpoint-4", "checkpoint-8"]
    with pytest.raises(SystemExit, match="kept no checkpoint between steps 13 and 20"):
        averaging.window_folders("13-20", [run])
    mean = averaging.averaged_model_folder(run, averaging.window_folders("4-12", [run]), tmp_path / "mean")
    averaged = load_file(mean / "model.safetensors")
    assert all(torch.allclose(averaged[name], 2 * weights[name]) for name in weights)

    output = tmp_path / "windows.json"
    monkeypatch.setattr(sys, "argv", ["checkpoint_averaging.py", str(run), "--windows", "4", "--output", str(output)])
    averaging.main()
    alone = json.loads(output.read_text())["4 full"]["test"]
    assert alone["test_ndcg@10"] == pytest.approx(test["test_ndcg@10"])
    assert alone["test_hit@10"] == pytest.approx(test["test_hit@10"])


def test_the_mean_of_one_model_scores_twice_ranks_as_the_model(scripts, trained, tmp_path, monkeypatch):
    _, ensemble = scripts
    model, test = trained
    output = tmp_path / "ensemble.json"
    monkeypatch.setattr(sys, "argv", ["score_ensemble.py", str(model), str(model), "--output", str(output)])
    ensemble.main()
    results = json.loads(output.read_text())
    alone = results[f"model 1: {model}"]
    assert alone == results[f"model 2: {model}"] and alone["num_users"] == 60
    assert results["mean of the scores"] == pytest.approx(alone)
    assert alone["ndcg@10"] == pytest.approx(test["test_ndcg@10"])
    assert alone["hit@10"] == pytest.approx(test["test_hit@10"])
