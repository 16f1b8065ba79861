"""examples/run_bert4rec.py (the run_mlm-style Trainer script) runs end to end."""

import json
import subprocess
import sys
from pathlib import Path

from bert4rec_hf import Bert4RecForMaskedItemPrediction, ItemTokenizer

from .helpers import write_ml100k_slice

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_bert4rec.py"


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
