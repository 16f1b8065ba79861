"""What the data report and the baselines cost, and what the baselines score, per log.

    python benchmarks/bench_data_report.py                       # ml-100k, Amazon Beauty (if present), 5M synthetic
    python benchmarks/bench_data_report.py --synthetic 0 --logs ml-100k

For each log: the report's seconds (``describe_log`` on the grouped sequences), the
baselines' seconds (most popular and most recent items again, both splits, full
ranking with history items kept as candidates, as a run's default evaluation) and
their test NDCG@10 / Hit@10, one JSON line each. The synthetic log has heavy
repeat consumption (users cycling over a few favourites) over a long-tailed catalog.
Run it alone with OMP_NUM_THREADS=1 for figures; say what else was running.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bert4rec_hf import RankingEvaluator, read_interactions
from bert4rec_hf.data import build_sequences, leave_one_out
from bert4rec_hf.data.report import describe_log
from bert4rec_hf.evaluation.baselines import evaluate_baselines

BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "beauty" / "beauty.txt"


def synthetic_repeat_log(rows: int, users: int, items: int, seed: int = 0) -> pa.Table:
    """Each user returns to 5 favourites (drawn by a long-tailed popularity) 70% of the time."""
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(0, users, rows))
    favourites = (items * rng.random((users, 5)) ** 3).astype(np.int64)
    item = np.where(
        rng.random(rows) < 0.7,
        favourites[user, rng.integers(0, 5, rows)],
        (items * rng.random(rows) ** 3).astype(np.int64),
    )
    return pa.table({"user_id": user, "item_id": item, "timestamp": np.arange(rows)})


def measure(name: str, table: pa.Table, max_seq_length: int) -> dict:
    sequences, filters = build_sequences(table, return_report=True)
    processed = leave_one_out(sequences, max_seq_length=max_seq_length, fit_on="all")
    start = time.perf_counter()
    report = describe_log(table, sequences, filters, processed.report, source=name)
    report_seconds = time.perf_counter() - start
    start = time.perf_counter()
    baselines = evaluate_baselines(processed, RankingEvaluator(ks=(10,)), max_seq_length, repeats=True)
    baseline_seconds = time.perf_counter() - start
    return {
        "log": name, "interactions": report.interactions, "users": report.users, "items": report.items,
        "repeat_share": round(report.repeat_share, 4), "history_p50": report.history_length["p50"],
        "warnings": len(report.warnings), "report_seconds": round(report_seconds, 2),
        "baselines_seconds": round(baseline_seconds, 2),
        **{
            f"{baseline} test {metric}": round(splits["test"][f"test_{metric}"], 4)
            for baseline, splits in baselines.items() for metric in ("ndcg@10", "hit@10")
        },
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", nargs="*", default=["ml-100k", "beauty"], help="ml-100k and/or beauty")
    parser.add_argument("--synthetic", type=int, default=5_000_000, help="rows of the synthetic log (0: none)")
    parser.add_argument("--max-seq-length", type=int, default=50)
    args = parser.parse_args()
    for name in args.logs:
        if name == "beauty" and not BEAUTY.is_file():
            print(json.dumps({"log": name, "skipped": f"{BEAUTY} not found"}))
            continue
        table = read_interactions(BEAUTY if name == "beauty" else name)
        print(json.dumps(measure(name, table, args.max_seq_length)), flush=True)
    if args.synthetic:
        table = synthetic_repeat_log(args.synthetic, users=args.synthetic // 25, items=200_000)
        print(json.dumps(measure(f"synthetic-{args.synthetic}", table, args.max_seq_length)), flush=True)


if __name__ == "__main__":
    main()
