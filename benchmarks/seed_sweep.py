"""Config variants of `bert4rec train` over several seeds, run side by side.

    # the ml-100k default against two variants, five seeds each, two runs at a time
    python benchmarks/seed_sweep.py --seeds 1 7 14 42 2020 --parallel 2 \
        --variant mask0.3 mask_ratio=0.3 --variant lr2e-3 learning_rate=0.002

    # 16 runs at a time on one GPU: start CUDA MPS first so their kernels overlap
    nvidia-cuda-mps-control -d
    python benchmarks/seed_sweep.py --parallel 16 --seeds 1 7 14 42 2020 --variant ...

On ml-100k one run's test NDCG@10 moves by ~0.005 from seed to seed (943 test
users), the size of most schedule effects, so a change is judged on the mean
over seeds and on its difference to the default at the same seed. The first
variant, ``default`` (no overrides), is the reference. Each run is the real
``bert4rec train --dataset D --set seed=S ...`` in its own process (one CPU
thread each unless ``--threads``), writing its model folder under
``--work-dir``; the table reads their ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

CLI = "import sys; from bert4rec_hf.cli import main; sys.exit(main(sys.argv[1:]))"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--log", help="an interaction log file to train on instead of --dataset (`bert4rec train LOG`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 7, 14, 42, 2020])
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
        help="a name and the config overrides of one variant (repeatable); 'default' runs first",
    )
    parser.add_argument(
        "--skip-default", action="store_true", help="run the variants only (the default ran in another sweep)"
    )
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--work-dir", default="bench_out/seed_sweep", help="model folders and logs of the runs")
    parser.add_argument("--output", help="also write every run's figures to this JSON file")
    return parser.parse_args(argv)


def variants_of(args: argparse.Namespace) -> dict[str, list[str]]:
    variants = {} if args.skip_default else {"default": []}
    for name, *overrides in args.variant:
        if name in variants:
            raise SystemExit(f"seed_sweep: variant name {name!r} given twice")
        bad = [item for item in overrides if "=" not in item]
        if bad:
            raise SystemExit(f"seed_sweep: variant {name!r}: overrides must be KEY=VALUE, got {bad}")
        variants[name] = overrides
    return variants


def train_once(args: argparse.Namespace, name: str, overrides: list[str], seed: int) -> dict:
    """One ``bert4rec train`` process; its metrics, or the tail of its log on failure."""
    run_dir = Path(args.work_dir) / f"{name}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    data = [args.log] if args.log else ["--dataset", args.dataset]
    command = [
        sys.executable, "-c", CLI, "train", *data, "--output-dir", str(run_dir / "model"),
        "--overwrite", "--set", f"seed={seed}", *args.set, *overrides,
    ]
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    record = {
        "variant": name, "seed": seed, "overrides": overrides, "wall_seconds": time.perf_counter() - start,
        "model_dir": str(run_dir / "model"),
    }
    metrics_file = run_dir / "model" / "metrics.json"
    if returncode != 0 or not metrics_file.is_file():
        tail = (run_dir / "train.log").read_text(errors="replace")[-600:]
        return {**record, "error": f"exit status {returncode}; log {run_dir / 'train.log'} ends: {tail}"}
    metrics = json.loads(metrics_file.read_text())
    keys = (f"valid_{args.metric}", f"test_{args.metric}")
    if not all(key in metrics[split] for key, split in zip(keys, ("valid", "test"), strict=True)):
        known = sorted(key.removeprefix("test_") for key in metrics["test"])
        return {**record, "error": f"{metrics_file} has no {args.metric!r}; it has {known}"}
    return {
        **record,
        "valid": metrics["valid"][f"valid_{args.metric}"],
        "test": metrics["test"][f"test_{args.metric}"],
        "steps": metrics["global_steps"],
        "train_seconds": metrics["train_seconds"],
    }


def run_jobs(
    run_one: Callable[[tuple], dict],
    jobs: list[tuple],
    parallel: int,
    on_done: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Every job's record, ``parallel`` at a time, in the jobs' order; failures also on stderr.
    ``on_done`` gets the records finished so far each time one finishes, so a sweep cut short
    (a device call's time limit) still leaves what it measured."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(run_one, job): index for index, job in enumerate(jobs)}
        done: dict[int, dict] = {}
        for future in as_completed(futures):
            run = done[futures[future]] = future.result()
            if "error" in run:
                print(f"{run['variant']} seed {run['seed']} failed: {run['error']}", file=sys.stderr)
            if on_done is not None:
                on_done([done[index] for index in sorted(done)])
    return [done[index] for index in range(len(jobs))]


def summary_rows(runs: list[dict]) -> list[str]:
    """One line per variant: mean valid/test, spread, and the paired difference to ``default``."""
    reference = {run["seed"]: run["test"] for run in runs if run["variant"] == "default" and "test" in run}
    lines = []
    for name in dict.fromkeys(run["variant"] for run in runs):
        done = [run for run in runs if run["variant"] == name and "test" in run]
        if not done:
            lines.append(f"| {name} | 0 | | | | | |")
            continue
        tests = [run["test"] for run in done]
        spread = statistics.stdev(tests) if len(tests) > 1 else float("nan")
        paired = [run["test"] - reference[run["seed"]] for run in done if run["seed"] in reference]
        difference = f"{statistics.mean(paired):+.4f}" if paired and name != "default" else ""
        per_seed = ", ".join(f"{run['seed']}: {run['test']:.4f}" for run in done)
        lines.append(
            f"| {name} | {len(done)} | {statistics.mean(run['valid'] for run in done):.4f} | "
            f"{statistics.mean(tests):.4f} | {spread:.4f} | {difference} | {per_seed} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.parallel < 1 or args.threads < 1:
        raise SystemExit(f"seed_sweep: --parallel and --threads must be >= 1, got {args.parallel} and {args.threads}")
    variants = variants_of(args)
    jobs = [(name, overrides, seed) for name, overrides in variants.items() for seed in args.seeds]
    data = args.log or f"--dataset {args.dataset}"
    print(f"{len(jobs)} runs of `bert4rec train {data}`, {args.parallel} at a time", flush=True)
    started = time.perf_counter()
    runs = run_jobs(lambda job: train_once(args, *job), jobs, args.parallel)
    metric = args.metric
    print(f"\n{len(runs)} runs in {time.perf_counter() - started:.0f} s; best-validation checkpoint of each, {metric}")
    print(f"| variant | runs | valid {metric} | test {metric} | test sd | test - default (same seed) | test per seed |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(summary_rows(runs)))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"dataset": args.dataset, "log": args.log, "metric": metric, "runs": runs}, indent=1))
    return 1 if any("error" in run for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
