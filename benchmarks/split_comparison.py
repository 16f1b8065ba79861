"""Leave-one-out against a global temporal split: the same model, the same schedule, two tests.

    # ml-100k's default schedule under both splits, three seeds each, one run at a time
    python benchmarks/split_comparison.py --seeds 2020 2021 2022
    # reuse finished runs (their model folders' metrics.json) and only add the baselines
    python benchmarks/split_comparison.py --seeds 2020 2021 2022 --reuse

Each run is the real ``bert4rec train --dataset D --set seed=S split=...`` (through
``seed_sweep.train_once``, one CPU thread unless ``--threads``), so its model folder
is what a user gets. The most-popular baseline is ranked under each split by the
run's own evaluator (``evaluation.baselines``), on the same rows. The table gives
per split the number of test rows, the model's mean test NDCG@10 / Hit@10 over
seeds with the spread, and the baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from seed_sweep import train_once

from bert4rec_hf.evaluation.baselines import evaluate_baselines
from bert4rec_hf.training.config import load_config, parse_overrides
from bert4rec_hf.training.pipeline import build_evaluator, prepare_data

SPLITS = {
    "leave-one-out": ["split=leave_one_out"],
    "temporal": ["split=temporal"],
    "temporal-all": ["split=temporal", "split_targets=all"],  # every interaction after the cut-off a test row
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--work-dir", default="bench_out/split_comparison")
    parser.add_argument("--reuse", action="store_true", help="read finished runs instead of training again")
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.metric = "ndcg@10"  # what train_once reads
    return args


def model_runs(args: argparse.Namespace, name: str, overrides: list[str]) -> list[dict]:
    runs = []
    for seed in args.seeds:
        metrics_file = Path(args.work_dir) / f"{name}_seed{seed}" / "model" / "metrics.json"
        if not (args.reuse and metrics_file.is_file()):
            run = train_once(args, name, overrides, seed)
            if "error" in run:
                print(f"{name} seed {seed} failed: {run['error']}", file=sys.stderr)
                continue
        metrics = json.loads(metrics_file.read_text())
        runs.append({"seed": seed, **metrics["test"], "train_seconds": metrics["train_seconds"]})
    return runs


def baseline(args: argparse.Namespace, overrides: list[str]) -> dict[str, float]:
    """The most-popular items' test metrics under the split ``overrides`` name, as a run ranks them."""
    config = load_config(args.dataset, config_dict=parse_overrides([*args.set, *overrides]))
    data = prepare_data(config)
    evaluator = build_evaluator(config, data.processed)
    results = evaluate_baselines(data.processed, evaluator, config["max_seq_length"], repeats=False)
    return {**results["most popular"]["test"], "description": data.processed.report.describe()}


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{spread}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = {}
    print(f"| split ({args.dataset}) | test rows | model runs | model test NDCG@10 | model test Hit@10 | "
          "most popular NDCG@10 | most popular Hit@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.splits:
        overrides = SPLITS[name]
        runs = model_runs(args, name, overrides)
        popular = baseline(args, overrides)  # one per split: training popularity does not depend on the seed
        figures[name] = {"runs": runs, "most popular": popular}
        print(
            f"| {name} | {popular['test_num_users']:.0f} | {len(runs)} | "
            f"{mean_sd([run['test_ndcg@10'] for run in runs])} | {mean_sd([run['test_hit@10'] for run in runs])} | "
            f"{popular['test_ndcg@10']:.4f} | {popular['test_hit@10']:.4f} |",
            flush=True,
        )
    for name, figure in figures.items():
        print(f"{name}: {figure['most popular']['description']}")
        for run in figure["runs"]:
            print(f"  seed {run['seed']}: test NDCG@10 {run['test_ndcg@10']:.4f}, Hit@10 {run['test_hit@10']:.4f}, "
                  f"{run['train_seconds']:.0f} s of training")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
