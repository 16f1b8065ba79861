"""Weight averaging after the fact (issue 24): the mean of a run's saved checkpoints, evaluated.

Stochastic weight averaging (Izmailov et al., 2018) scores with the mean of the weights a run
passed through late in training instead of its last ones. Before the package grows a setting
for it, this measures it on a finished run: train with ``eval_steps=500 save_total_limit=100``
so that every 500th step is kept, then average the checkpoints of each window and rank the
test items with the averaged model exactly as ``bert4rec evaluate`` does. Given several runs
that branched from one checkpoint (a model soup, Wortsman et al., 2022: the same Cloze phase,
next-item phases on other data orders), a window averages the checkpoints of every run.

    python benchmarks/checkpoint_averaging.py RUN_DIR [RUN_DIR ...] --windows 8000 7500-8000 2500-8000 \
        --modes full pop100 --output averaging.json

A window ``A-B`` averages every kept checkpoint from step A to step B (both included) of every
run; a window ``B`` alone is checkpoint B itself (of one run: the run without averaging).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from bert4rec_hf.quick_start import evaluate_saved_model
from bert4rec_hf.training.branches import mean_weights

WEIGHTS = "model.safetensors"
# what a checkpoint folder holds for resuming only: not copied into the averaged model folder
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json", "training_args.bin")


def kept_checkpoints(run_dir: Path) -> dict[int, Path]:
    """Step -> folder of every checkpoint the run kept."""
    folders = (run_dir / "checkpoints").glob("checkpoint-*")
    return {int(re.fullmatch(r"checkpoint-(\d+)", folder.name).group(1)): folder for folder in folders}


def window_folders(window: str, runs: list[Path]) -> list[Path]:
    """The checkpoint folders of every run from the window's first step to its last."""
    first, _, last = window.partition("-")
    first, last = int(first), int(last or first)
    folders = []
    for run in runs:
        kept = kept_checkpoints(run)
        steps = sorted(step for step in kept if first <= step <= last)
        if not steps:
            raise SystemExit(
                f"window {window}: {run} kept no checkpoint between steps {first} and {last} (kept: {sorted(kept)})"
            )
        folders += [kept[step] for step in steps]
    return folders


def averaged_model_folder(run_dir: Path, folders: list[Path], into: Path) -> Path:
    """A model folder like the last checkpoint's, its weights the mean of ``folders``'; the
    data and settings those of ``run_dir``."""
    shutil.copytree(folders[-1], into, ignore=shutil.ignore_patterns(*RESUME_ONLY))
    shutil.copy(run_dir / "checkpoints" / "run_config.yaml", into / "run_config.yaml")
    mean = mean_weights([load_file(folder / WEIGHTS) for folder in folders])
    save_file(mean, into / WEIGHTS, metadata={"format": "pt"})
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run output folders, trained with checkpoints kept")
    parser.add_argument("--windows", nargs="+", required=True, metavar="A-B", help="steps to average (A-B, or B alone)")
    parser.add_argument("--modes", nargs="+", default=["full"], choices=["full", "pop100", "uni100"])
    parser.add_argument("--output", type=Path, help="also write every window's metrics to this JSON file")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for window in args.windows:
            folders = window_folders(window, args.runs)
            folder = averaged_model_folder(args.runs[0], folders, Path(scratch) / window)
            for mode in args.modes:
                metrics = evaluate_saved_model(folder, config_dict={"eval_mode": mode, "exclude_history": False})
                test = metrics["test"]
                results[f"{window} {mode}"] = {"checkpoints": [str(path) for path in folders], **metrics}
                print(f"| {window} ({len(folders)} checkpoints) | {mode} | "
                      f"{test['test_ndcg@10']:.4f} / {test['test_hit@10']:.4f} |", flush=True)  # fmt: skip
            shutil.rmtree(folder)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
