"""Peak memory and speed of the losses on a catalog of a million items.

    python benchmarks/bench_large_catalog.py                      # 1M items, 10M interactions, every case
    python benchmarks/bench_large_catalog.py --cases chunked sampled --steps 3
    python benchmarks/bench_large_catalog.py --items 100000 --interactions 1000000   # a quick look

A synthetic log (``--interactions`` events over ``--items`` items with skewed
popularity, users of random length) is generated as arrays, no file is read.
Each case trains the default model (hidden 64, 2 layers, max_seq_length 50)
for ``--warmup`` + ``--steps`` AdamW steps on Cloze batches of
``--batch-size`` windows, in a fresh subprocess so that its peak RSS
(``ru_maxrss``) belongs to that case alone:

- ``full``: unchunked full softmax, masked positions x catalog logits. When its
  estimated peak exceeds ``--memory-budget-gib`` it is reported as out of budget
  and measured instead at ``--full-batch-size``.
- ``chunked``: the same loss and gradients, ``--chunk-size`` items at a time.
- ``sampled`` / ``sampled-pop``: sampled softmax with ``--num-sampled`` shared
  negatives, uniform / popularity proposal with logQ correction.
- ``eval``: full-ranking evaluation of ``--eval-users`` users through the
  chunked path (``RankingEvaluator.rank_hidden_states``): no users x catalog matrix.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = ("full", "chunked", "sampled", "sampled-pop", "eval")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def synthetic_log(items: int, interactions: int, mean_length: int, seed: int = 0):
    """Item ids in user order (popular items have small ids) and user offsets."""
    import numpy as np

    rng = np.random.default_rng(seed)
    item_ids = (items * rng.random(interactions) ** 3).astype(np.int64) + 2  # vocabulary ids
    lengths = rng.geometric(1 / mean_length, interactions // mean_length * 2)
    ends = np.cumsum(lengths)
    ends = np.append(ends[ends < interactions], interactions)
    return item_ids, ends


def batches(item_ids, ends, batch_size: int, max_seq_length: int, vocab_size: int, seed: int = 0):
    """Cloze batches of the last ``max_seq_length`` items of random users."""
    import numpy as np
    import torch

    from bert4rec_hf import DataCollatorForMaskedItemPrediction

    collator = DataCollatorForMaskedItemPrediction(
        max_seq_length=max_seq_length, vocab_size=vocab_size, generator=torch.Generator().manual_seed(seed)
    )
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], ends[:-1]])
    while True:
        users = rng.integers(0, len(ends), batch_size)
        first = np.maximum(ends[users] - max_seq_length, starts[users])
        yield collator([{"input_ids": item_ids[a:b].tolist()} for a, b in zip(first, ends[users], strict=True)])


def estimate_full_gib(masked: int, vocab_size: int) -> float:
    """Logits, their log-softmax (kept for backward) and their gradient: 3 float32 masked x vocabulary tensors."""
    return 3 * masked * vocab_size * 4 / 2**30


def run_case(args: argparse.Namespace) -> dict:
    """Child process: one case, timed and measured."""
    import numpy as np
    import torch

    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, RankingEvaluator
    from bert4rec_hf.speedups_bert4rec import use_cpu_speedups

    torch.manual_seed(0)
    vocab_size = args.items + 2
    item_ids, ends = synthetic_log(args.items, args.interactions, args.mean_length)
    case, batch_size = args.case, args.batch_size
    config = {"vocab_size": vocab_size, "max_seq_length": args.max_seq_length}
    if case == "chunked":
        config["item_chunk_size"] = args.chunk_size
    if case.startswith("sampled"):
        config.update(loss_type="SSM", num_sampled_negatives=args.num_sampled)
        config["sampling_distribution"] = "popularity" if case == "sampled-pop" else "uniform"
    if case == "full" and args.full_batch_size:
        batch_size = args.full_batch_size
    if case == "eval":
        config["item_chunk_size"] = args.chunk_size
    model = use_cpu_speedups(Bert4RecForMaskedItemPrediction(Bert4RecConfig(**config)))  # as Bert4RecTrainer does
    if case == "sampled-pop":
        model.set_sampling_weights(torch.from_numpy(np.bincount(item_ids, minlength=vocab_size)).float())
    data = batches(item_ids, ends, batch_size, args.max_seq_length, vocab_size)
    baseline = current_rss_gib()
    result = {"case": case, "batch_size": batch_size, "rss_before_gib": round(baseline, 2)}

    if case == "eval":
        model.eval()
        evaluator = RankingEvaluator()
        rows = args.eval_users
        histories = np.stack(
            [item_ids[e - args.max_seq_length + 1 : e] for e in ends[ends >= args.max_seq_length][:rows]]
        )
        input_ids = torch.cat([torch.from_numpy(histories), torch.ones(len(histories), 1, dtype=torch.long)], 1)
        targets = torch.from_numpy(item_ids[ends[ends >= args.max_seq_length][:rows] - 1])
        start = time.perf_counter()
        with torch.no_grad():
            hidden = model.base_model(input_ids).last_hidden_state[:, -1]
            ranks = evaluator.rank_hidden_states(model, hidden, input_ids, targets, chunk_size=args.chunk_size)
        seconds = time.perf_counter() - start
        result.update(batch_size=len(ranks), users_per_second=round(len(ranks) / seconds, 1), seconds=round(seconds, 1))
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        masked, losses, seconds = 0, [], 0.0
        for step in range(args.warmup + args.steps):
            batch = next(data)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            if step >= args.warmup:
                seconds += time.perf_counter() - start
                masked += int(batch["labels"].ne(-100).sum())
                losses.append(round(loss.item(), 3))
        result.update(
            sequences_per_second=round(args.steps * batch_size / seconds, 1),
            seconds_per_step=round(seconds / args.steps, 2),
            masked_per_step=masked // args.steps,
            losses=losses,
        )
    result["peak_rss_gib"] = round(peak_rss_gib(), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--mean-length", type=int, default=100, help="mean user history length")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=50)
    parser.add_argument("--chunk-size", type=int, default=16384)
    parser.add_argument("--num-sampled", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--eval-users", type=int, default=1024)
    parser.add_argument("--memory-budget-gib", type=float, default=20.0)
    parser.add_argument("--full-batch-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return

    masked = round(0.2 * args.max_seq_length * args.batch_size)
    print(
        f"{args.items:,} items, {args.interactions:,} interactions, batch {args.batch_size} x {args.max_seq_length} "
        f"(~{masked} masked positions), {args.steps} timed steps after {args.warmup} warm-up, "
        f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}"
    )
    rows = []
    for case in args.cases:
        extra = []
        if case == "full":
            estimate = estimate_full_gib(masked, args.items + 2)
            if estimate > args.memory_budget_gib:
                rows.append(
                    {"case": "full", "batch_size": args.batch_size, "note": f"out of budget: ~{estimate:.0f} GiB"}
                )
                smaller = max(1, int(args.batch_size * args.memory_budget_gib / estimate / 4))
                extra = ["--full-batch-size", str(smaller)]
        command = [sys.executable, __file__, *sys.argv[1:], "--case", case, *extra]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            rows.append({"case": case, "note": f"failed: {done.stderr.strip().splitlines()[-1:]}"})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)

    print("\n| case | batch | peak RSS (GiB) | sequences/s | s/step | note |\n|---|---:|---:|---:|---:|---|")
    for row in rows:
        speed = row.get("sequences_per_second", row.get("users_per_second", ""))
        if "users_per_second" in row:
            speed = f"{speed} users/s"
        print(
            f"| {row['case']} | {row.get('batch_size', '')} | {row.get('peak_rss_gib', '')} | {speed} | "
            f"{row.get('seconds_per_step', row.get('seconds', ''))} | {row.get('note', '')} |"
        )


if __name__ == "__main__":
    main()
