"""The derived schedule (``schedule: auto``) against hand-picked variants, per log.

    # the logs: synthetic ones written, ml-100k and Beauty linked under neutral names
    # (a file called ml-100k.inter or beauty.txt would pick up its data set's YAML)
    python benchmarks/default_schedule.py logs --out bench_out/logs

    # one log: the derived schedule ("default") against variants, via seed_sweep.py
    python benchmarks/seed_sweep.py --log bench_out/logs/repeat.csv --seeds 2020 --parallel 1 \
        --variant lr1e-2 learning_rate=0.01 --output bench_out/schedule/repeat.json

    # the table: per log, size, the default's time and test NDCG@10 / Hit@10, the best variant, baselines
    python benchmarks/default_schedule.py table bench_out/schedule/*.json

The synthetic logs have the shapes the real ones lack, each with something to learn:

- ``repeat``: heavy repeat consumption, users returning to five favourites 70% of the
  time (``bench_data_report.synthetic_repeat_log``);
- ``short``: very short histories (3 to 6 items), next items from the same taste
  cluster, often the successor of the previous one (a series);
- ``longtail``: 500,000 interactions over a catalog of 200,000+ items, long-tailed
  within each of 2,000 clusters, histories of 5 to 60 items.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data_report import synthetic_repeat_log  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_LOGS = {"movielens.inter": SHARED / "ml-100k" / "ml-100k.inter", "amazon.txt": SHARED / "beauty" / "beauty.txt"}


def clustered_log(
    lengths: np.ndarray, clusters: int, items_per_cluster: int, stay: float, series: float, tail: float, seed: int
) -> pa.Table:
    """Sessions over taste clusters: each next item stays in the user's cluster with
    probability ``stay`` (else a cluster drawn by a 1/rank popularity), and is then the
    successor of the previous item with probability ``series`` (else an item of the cluster
    drawn with popularity ``u ** tail``, a long tail for ``tail`` > 1). Cluster ``c`` owns
    items ``c, c + clusters, ...``; time is the row order."""
    rng = np.random.default_rng(seed)
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(total)
    first = position == starts
    weights = 1.0 / np.arange(1, clusters + 1)
    drawn_cluster = rng.choice(clusters, size=total, p=weights / weights.sum())
    switch = first | (rng.random(total) >= stay)
    cluster = drawn_cluster[np.maximum.accumulate(np.where(switch, position, 0))]
    jump = switch | (rng.random(total) >= series)
    last_jump = np.maximum.accumulate(np.where(jump, position, 0))
    drawn_rank = (items_per_cluster * rng.random(total) ** tail).astype(np.int64)
    rank = (drawn_rank[last_jump] + position - last_jump) % items_per_cluster
    user = np.repeat(np.arange(len(lengths)), lengths)
    return pa.table({"user_id": user, "item_id": cluster + clusters * rank, "timestamp": position})


def synthetic_logs(seed: int = 0) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    return {
        "repeat.csv": synthetic_repeat_log(rows=200_000, users=8_000, items=30_000, seed=seed),
        "short.csv": clustered_log(
            rng.integers(3, 7, 50_000), clusters=400, items_per_cluster=50, stay=0.8, series=0.5, tail=2.0, seed=seed
        ),
        "longtail.csv": clustered_log(
            rng.integers(5, 36, 25_000), clusters=2_000, items_per_cluster=600, stay=0.8, series=0.5, tail=1.5,
            seed=seed,
        ),
    }


def write_logs(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, table in synthetic_logs().items():
        pcsv.write_csv(table, out / name)
        items = len(np.unique(table.column("item_id").to_numpy()))
        users = len(np.unique(table.column("user_id").to_numpy()))
        print(f"{out / name}: {table.num_rows:,} interactions, {users:,} users, {items:,} items")
    for name, source in REAL_LOGS.items():
        if source.is_file():
            link = out / name
            link.unlink(missing_ok=True)
            link.symlink_to(source)
            print(f"{link} -> {source}")
        else:
            print(f"{source}: not here, {name} left out")


def table(paths: list[Path]) -> None:
    """One row per log: the derived schedule's run ("default") and the best variant."""
    print("| log | interactions / users / items | default: wall time, steps | default test NDCG@10 / Hit@10 | "
          "best variant (of n) | its test NDCG@10 | default / best | most popular | most recent again |")
    print("|---|---|---|---|---|---|---:|---|---|")
    sweeps: dict[str, list[dict]] = {}  # one log's variants may come from several seed_sweep runs
    for path in paths:
        sweep = json.loads(path.read_text())
        sweeps.setdefault(Path(sweep["log"]).name, []).extend(run for run in sweep["runs"] if "test" in run)
    for log, runs in sweeps.items():
        by_variant: dict[str, list[dict]] = {}
        for run in runs:
            by_variant.setdefault(run["variant"], []).append(run)
        mean = {name: statistics.mean(run["test"] for run in group) for name, group in by_variant.items()}
        best = max(mean, key=mean.get)
        default = by_variant["default"][0]
        metrics = json.loads((Path(default["model_dir"]) / "metrics.json").read_text())
        data, test = metrics["data"], metrics["test"]
        baselines = {
            name: f"{values['test']['test_ndcg@10']:.4f} / {values['test']['test_hit@10']:.4f}"
            for name, values in metrics.get("baselines", {}).items()
        }
        print(
            f"| {log} | {data['interactions']:,} / {data['users']:,} / {data['items']:,} | "
            f"{default['train_seconds']:.0f} s, {default['steps']:,} | {mean['default']:.4f} / "
            f"{test['test_hit@10']:.4f} | {best} (of {len(mean)}) | {mean[best]:.4f} | "
            f"{mean['default'] / mean[best]:.2f} | {baselines.get('most popular', '')} | "
            f"{baselines.get('most recent items again', '')} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    logs = commands.add_parser("logs", help="write the synthetic logs and link the real ones")
    logs.add_argument("--out", type=Path, default=Path("bench_out/logs"))
    summary = commands.add_parser("table", help="the table of seed_sweep.py --log outputs")
    summary.add_argument("sweeps", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "logs":
        write_logs(args.out)
    else:
        table(args.sweeps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
