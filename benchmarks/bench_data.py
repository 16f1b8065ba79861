"""Speed and memory of the data pipeline on synthetic interaction logs.

    python benchmarks/bench_data.py                        # 1M and 10M interactions, CSV, plus the collator
    python benchmarks/bench_data.py --sizes 1000000 --format parquet

Each size runs in a fresh subprocess, so its peak RSS (``ru_maxrss``: Arrow
buffers are invisible to tracemalloc) belongs to that case alone; the RSS after
the imports is printed too. The log has ``--users`` users, ``--items`` items with
a skewed popularity and random timestamps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_log(path: Path, rows: int, users: int, items: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "user_id": rng.integers(0, users, rows),
            "item_id": (items * rng.random(rows) ** 2).astype(np.int64),  # popular items have small ids
            "rating": rng.integers(1, 6, rows).astype(np.float32),
            "timestamp": rng.integers(1_000_000_000, 1_700_000_000, rows),
        }
    )
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)


def run_case(path: Path, max_seq_length: int) -> dict:
    """Child process: read -> build_sequences -> leave_one_out, timed per stage."""
    from bert4rec_hf.data import build_sequences, leave_one_out, read_interactions

    baseline = current_rss_mib()
    times = {}
    start = time.perf_counter()
    table = read_interactions(path)
    times["read"] = time.perf_counter() - start
    mark = time.perf_counter()
    sequences = build_sequences(table)
    times["build_sequences"] = time.perf_counter() - mark
    mark = time.perf_counter()
    splits, tokenizer, report = leave_one_out(sequences, max_seq_length=max_seq_length)
    times["leave_one_out"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    return {
        "rows": table.num_rows, "users": sequences.num_rows, "items": tokenizer.num_items, "split_rows": report.rows,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "rss_after_imports_mib": round(baseline), "peak_rss_mib": round(peak_rss_mib()),
    }


def bench_collator(batch_size: int, length: int, vocab: int, seconds: float) -> dict:
    import numpy as np

    from bert4rec_hf.data import DataCollatorForMaskedItemPrediction, DataCollatorForNextItemPrediction

    rng = np.random.default_rng(0)
    rows = rng.integers(2, vocab, size=(batch_size * 8, length))
    rows = [{"input_ids": row.tolist(), "labels": int(row[-1])} for row in rows]  # what the Trainer hands over
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    collators = {
        "masked (mask_ratio=0.2)": DataCollatorForMaskedItemPrediction(length, 0.2, vocab_size=vocab),
        "masked 80/10/10 + 100 BPR negatives": DataCollatorForMaskedItemPrediction(
            length, 0.2, vocab_size=vocab, mask_replace_prob=0.8, random_replace_prob=0.1, num_negatives=100
        ),
        "next item (evaluation)": DataCollatorForNextItemPrediction(length),
    }
    out = {}
    for name, collate in collators.items():
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            collate(batches[done % len(batches)])
            done += 1
        out[name] = round(done * batch_size / (time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--max-seq-length", type=int, default=50)
    parser.add_argument("--collator-seconds", type=float, default=3.0)
    parser.add_argument("--skip-collator", action="store_true")
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._case:  # child process
        print(json.dumps(run_case(Path(args._case), args.max_seq_length)))
        return

    import torch

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bench_data_") as folder:
        for rows in args.sizes:
            path = Path(folder) / f"log_{rows}.{args.format}"
            start = time.perf_counter()
            write_log(path, rows, args.users, args.items)
            size_mib = path.stat().st_size / 2**20
            print(f"\n{rows:,} interactions: wrote a {size_mib:.0f} MiB {args.format} in {time.perf_counter() - start:.1f} s")
            child = subprocess.run(
                [sys.executable, __file__, "--_case", str(path), "--max-seq-length", str(args.max_seq_length)],
                capture_output=True, text=True, check=False,
            )
            if child.returncode:
                print(child.stderr[-3000:])
                raise SystemExit(child.returncode)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            seconds = result["seconds"]
            print(
                f"  read {seconds['read']:.2f} s + build_sequences {seconds['build_sequences']:.2f} s + "
                f"leave_one_out {seconds['leave_one_out']:.2f} s = {seconds['total']:.2f} s"
            )
            print(
                f"  {result['users']:,} users, {result['items']:,} items, rows {result['split_rows']}; "
                f"peak RSS {result['peak_rss_mib']:,} MiB (after imports {result['rss_after_imports_mib']:,} MiB)"
            )
            path.unlink()
    if not args.skip_collator:
        # DataLoader workers run with one torch thread; the main process (num_workers=0) with all of them
        for threads in (1, torch.get_num_threads()):
            torch.set_num_threads(threads)
            print(f"\ncollator throughput, batch 256 x length {args.max_seq_length}, vocab {args.items + 2:,}, "
                  f"{threads} torch thread(s):")
            for name, rate in bench_collator(256, args.max_seq_length, args.items + 2, args.collator_seconds).items():
                print(f"  {name}: {rate:,} sequences/s")


if __name__ == "__main__":
    main()
