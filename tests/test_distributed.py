"""Two processes (torchrun, gloo on CPU) against one: same gradients, same metrics.

The test launches this module under ``torchrun --nproc_per_node 2``; the
workers (``__main__`` below) run the package's own training path on a slice of
MovieLens-100K and one exactly reproducible SGD step, and rank 0 writes what
they saw. The single-process references are computed in the test itself.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bert4rec_hf import Bert4RecForMaskedItemPrediction, evaluate_saved_model
from bert4rec_hf.training import load_config

from .helpers import MaskedRows, masked_batch, tiny_model, write_ml100k_slice

REPO = Path(__file__).resolve().parents[1]
NUM_USERS = 61  # odd: the two evaluation shards are uneven and the Trainer pads one of them
SMALL = {
    "max_steps": 4, "eval_steps": 2, "hidden_size": 16, "inner_size": 32, "n_heads": 2, "n_layers": 1,
    "train_batch_size": 32, "eval_batch_size": 16, "max_seq_length": 20, "train_stride": 10,
}  # fmt: skip


def write_slice(path: Path) -> Path:
    return write_ml100k_slice(path, NUM_USERS)


def one_sgd_step(output_dir: Path, batch_size: int) -> dict[str, torch.Tensor]:
    """One SGD step over 8 rows with uneven masked counts: the processes'
    shards hold different numbers of masked items, so a per-process mean
    would weigh items wrongly."""
    from transformers import Trainer, TrainingArguments

    model = tiny_model(seed=5).train()
    data = MaskedRows(masked_batch(model.config, batch=8, seed=4))
    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=batch_size, max_steps=1, learning_rate=0.1,
        optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[], use_cpu=True,
        save_strategy="no", logging_strategy="no", ddp_find_unused_parameters=False, disable_tqdm=True,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=data).train()
    return {name: p.detach().clone().contiguous() for name, p in model.named_parameters()}


def next_item_phase_steps(data_path: Path, output_dir: Path) -> list[bool]:
    """For each of a phased run's 4 steps (``next_item_share`` 0.5), whether every row this
    process reads is masked at its last item alone: the switch is a global step, so each
    process must cross it at step 2 like one process does."""
    from bert4rec_hf.training.pipeline import build_trainer, prepare_data

    config = load_config("ml-100k-slice", config_dict={**SMALL, "data_path": str(data_path), "next_item_share": 0.5})
    trainer = build_trainer(config, prepare_data(config), output_dir)
    steps = []
    for batch in itertools.islice(trainer.get_train_dataloader(), config["max_steps"]):
        targets = batch["labels"] != -100  # rows are left-padded: the last column is the last item
        steps.append(bool((targets.sum(dim=1).eq(1) & targets[:, -1]).all()))
    return steps


def _worker(output_dir: Path, data_path: Path) -> None:
    """One rank of the two-process run."""
    from bert4rec_hf.training.pipeline import build_trainer, evaluate_splits, prepare_data, save_run

    step = one_sgd_step(output_dir / "sgd", batch_size=4)
    config = load_config("ml-100k-slice", config_dict={**SMALL, "data_path": str(data_path)})
    data = prepare_data(config)
    trainer = build_trainer(config, data, output_dir / "model")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    results = evaluate_splits(trainer, data.processed)
    rank = trainer.args.process_index
    save_run(trainer, config, data, results, output_dir / "model", seconds)
    save_run(trainer, config, data, results, output_dir / f"probe-rank{rank}", seconds)  # written by rank 0 only
    trainer.accelerator.wait_for_everyone()
    again = evaluate_saved_model(output_dir / "model")
    phases = next_item_phase_steps(data_path, output_dir / "phased")
    if rank == 0:
        save_file(step, output_dir / "sgd_step.safetensors")
        report = {
            "world_size": trainer.args.world_size,
            "distributed": torch.distributed.is_initialized(),
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "results": results,
            "saved_model_results": again,
            "next_item_phase_steps": phases,
        }
        (output_dir / "report.json").write_text(json.dumps(report, default=str))


def test_two_processes_match_one(tmp_path):
    data_path = write_slice(tmp_path / "slice.csv")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tests.test_distributed", str(tmp_path), str(data_path),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    print(f"two-process run: {time.perf_counter() - start:.1f} s")
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["world_size"] == 2 and report["distributed"] and report["backend"] == "gloo"

    # the loss is scaled right across processes: 2 x 4 rows give the parameters of one 8-row step
    two = load_file(tmp_path / "sgd_step.safetensors")
    one = one_sgd_step(tmp_path / "sgd-single", batch_size=8)
    assert two.keys() == one.keys()
    initial = dict(tiny_model(seed=5).named_parameters())
    assert not torch.equal(one["head.dense.weight"], initial["head.dense.weight"])  # the step moved them
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, msg=name)

    # a phased run switches to next-item rows at the same global step on every process
    assert report["next_item_phase_steps"] == next_item_phase_steps(data_path, tmp_path / "phased-single")
    assert report["next_item_phase_steps"] == [False, False, True, True]

    # every user evaluated once (an uneven tail is padded, then dropped)
    for split, prefix in (("valid", "valid_"), ("test", "test_")):
        assert report["results"][split][prefix + "num_users"] == NUM_USERS

    # only rank 0 writes; the folder is complete and loads
    model_dir = tmp_path / "model"
    assert (tmp_path / "probe-rank0" / "config.json").is_file() and not (tmp_path / "probe-rank1").exists()
    assert {"config.json", "model.safetensors", "item_vocab.json", "metrics.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert not (model_dir / "checkpoints").exists()
    model = Bert4RecForMaskedItemPrediction.from_pretrained(model_dir)
    assert model.config.hidden_size == SMALL["hidden_size"]

    # a fixed checkpoint: metrics with two processes equal those with one, exactly
    single = evaluate_saved_model(model_dir)
    double = report["saved_model_results"]
    for split in ("valid", "test"):
        keys = [k for k in single[split] if not any(word in k for word in ("runtime", "per_second", "time", "loss"))]
        assert any(k.endswith("ndcg@10") for k in keys) and any(k.endswith("num_users") for k in keys)
        assert {k: single[split][k] for k in keys} == {k: double[split][k] for k in keys}
        assert double[split][f"{split}_num_users"] == NUM_USERS
        # the Trainer averages per-batch mean losses, and a padded tail batch shifts that mean slightly
        assert double[split][f"{split}_loss"] == pytest.approx(single[split][f"{split}_loss"], rel=1e-3)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
