"""examples/run_bert4rec.py (the run_mlm-style Trainer script) runs end to end."""

import importlib.util
import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from bert4rec_hf import Bert4RecForMaskedItemPrediction, ItemTokenizer
from bert4rec_hf.data import MaskingArguments

from .helpers import write_ml100k_slice

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_bert4rec.py"


@pytest.fixture
def example(monkeypatch):
    """examples/run_bert4rec.py imported as the module ``run_bert4rec``."""
    spec = importlib.util.spec_from_file_location("run_bert4rec", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_bert4rec", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_run_bert4rec_example_trains_evaluates_and_saves(tmp_path):
    log = write_ml100k_slice(tmp_path / "slice.csv", 40)
    out = tmp_path / "run"
    args = [
        "--data_path", str(log), "--output_dir", str(out), "--hidden_size", "16", "--inner_size", "32",
        "--n_layers", "1", "--max_seq_length", "20", "--train_stride", "10", "--max_steps", "3",
        "--per_device_train_batch_size", "32", "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none", "--use_cpu",
    ]  # fmt: skip
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    assert results["test"]["test_num_users"] == 40 and 0.0 <= results["test"]["test_ndcg@10"] <= 1.0
    model = Bert4RecForMaskedItemPrediction.from_pretrained(out)
    assert model.config.hidden_size == 16 and model.config.vocab_size == len(ItemTokenizer.from_pretrained(out))



def test_run_bert4rec_example_splits_along_time(tmp_path, example):
    log = write_ml100k_slice(tmp_path / "slice.csv", 40)
    common = [
        "--data_path", str(log), "--hidden_size", "16", "--inner_size", "32", "--n_layers", "1",
        "--max_seq_length", "20", "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none", "--use_cpu", "--split", "temporal",
    ]  # fmt: skip
    results = example.main([*common, "--output_dir", str(tmp_path / "share")])
    # one row per user active in the last 10% of the log: fewer than the 40 of leave-one-out
    assert 0 < results["test"]["test_num_users"] < 40
    times = sorted(int(line.split(",")[2]) for line in log.read_text().splitlines()[1:])
    cutoff = times[len(times) // 2]
    late = example.main([*common, "--output_dir", str(tmp_path / "cut"), "--split_cutoff", str(cutoff)])
    assert late["test"]["test_num_users"] > results["test"]["test_num_users"]  # half the log lies after it
    with pytest.raises(ValueError, match="--split must be leave_one_out or temporal, got 'random'"):
        example.main([*common[:-1], "random", "--output_dir", str(tmp_path / "bad")])


def test_run_bert4rec_example_pop100_and_continuing_from_a_shorter_checkpoint(tmp_path, monkeypatch, example):
    log = write_ml100k_slice(tmp_path / "slice.csv", 40)
    out = tmp_path / "run"
    common = ["--data_path", str(log), "--eval_mode", "pop100", "--report_to", "none", "--use_cpu"]
    example.main([
        *common, "--output_dir", str(out), "--hidden_size", "16", "--inner_size", "32", "--n_layers", "1",
        "--max_seq_length", "20", "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
        "--mask_ratio", "0.4",
    ])  # fmt: skip  # was: pop100 needs item_popularity
    assert Bert4RecForMaskedItemPrediction.from_pretrained(out).config.mask_ratio == 0.4  # recorded with the model
    masking = []

    class RecordingCollator(example.DataCollatorForMaskedItemPrediction):
        def __init__(self, **kwargs):
            masking.append({key: kwargs[key] for key in MaskingArguments.keys()})
            super().__init__(**kwargs)

    monkeypatch.setattr(example, "DataCollatorForMaskedItemPrediction", RecordingCollator)
    # the checkpoint reads 20 positions; windows used to be cut at the default 50
    results = example.main([
        *common, "--output_dir", str(tmp_path / "again"), "--model_name_or_path", str(out), "--do_eval",
        "--mask_replace_prob", "0.8", "--random_replace_prob", "0.1",
    ])  # fmt: skip
    assert results["test"]["test_num_users"] == 40
    # the checkpoint's mask ratio, not the default 0.2; every masking flag reaches the collator
    assert masking == [
        {"mask_ratio": 0.4, "last_item_mask_ratio": 0.5, "mask_replace_prob": 0.8, "random_replace_prob": 0.1, "num_views": 1}
    ]
    # the example's masking flags are the library's group (its own defaults aside)
    assert [f.name for f in fields(example.MaskingArguments)] == list(MaskingArguments.keys())
    with pytest.raises(ValueError, match=r"mask_replace_prob \+ random_replace_prob must be <= 1"):
        example.main([*common, "--output_dir", str(tmp_path / "y"), "--random_replace_prob", "0.5"])
    with pytest.raises(ValueError, match="exceeds the checkpoint's max_seq_length=20"):
        example.main([*common, "--output_dir", str(tmp_path / "x"), "--model_name_or_path", str(out), "--max_seq_length", "30"])


def test_finetune_example_refuses_to_write_over_its_checkpoint(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("finetune", SCRIPT.with_name("finetune.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    argv = ["finetune.py", "--checkpoint", str(checkpoint), "--log", "new.csv", "--output-dir", str(checkpoint)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(FileExistsError, match="already holds config.json"):  # was: fine-tuned over the checkpoint
        example.main()
    assert (checkpoint / "config.json").read_text() == "{}"
