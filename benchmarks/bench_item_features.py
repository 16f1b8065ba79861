"""Item side features: ranking quality (warm and cold items) and the cost of a training step.

    # quality: the run folders of `bert4rec train` runs, id-only and with features (any seeds),
    # e.g. trained with benchmarks/seed_sweep.py --variant features 'item_features=[class,release_year]'
    python benchmarks/bench_item_features.py quality RUN_DIR [RUN_DIR ...]

    # cold start: runs trained with --set cold_item_share=0.1 (and item_features=... or not);
    # the table adds the most-popular baseline on the same split
    python benchmarks/bench_item_features.py quality COLD_RUN_DIR [...]

    # step time and peak memory, Beauty-sized catalog (54,542 items), synthetic features
    python benchmarks/bench_item_features.py speed --steps 20

``quality`` reads each folder's ``metrics.json`` and ``run_config.yaml``. For a
cold-start run it also ranks the test targets by training popularity (the
most-popular baseline, ``evaluation.baselines.MostPopular``, ranked by the
evaluator as a run ranks: a cold item was never trained on, so it ranks below
every trained item and never reaches the top 10), over the same test users, cold and warm.

``speed`` trains the default model (hidden 64, 2 layers, max_seq_length 50,
full-softmax CE) on Cloze batches of a synthetic log, without and with
features (a ``token`` field of 1,000 values, a ``token_seq`` field of up to 4
of 200 tags, a ``float`` and a 64-wide ``float_seq`` vector), each case in a
fresh subprocess so that its peak RSS (``ru_maxrss``) is its own; the RSS just
before the first step (model, data and, with features, the item table built
from Python lists) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("ndcg@10", "hit@10")
BEAUTY_ITEMS = 54_542


def quality_row(run_dir: Path) -> dict:
    """One run's test figures, and the most-popular baseline's on the same users."""
    import numpy as np
    import torch

    from bert4rec_hf import ItemTokenizer
    from bert4rec_hf.configuration_bert4rec import NUM_SPECIAL_TOKENS
    from bert4rec_hf.data import training_histories
    from bert4rec_hf.evaluation import RankingEvaluator, count_item_popularity
    from bert4rec_hf.evaluation.baselines import MostPopular, evaluate_baseline
    from bert4rec_hf.evaluation.cold_start import target_groups
    from bert4rec_hf.training import load_config
    from bert4rec_hf.training.pipeline import prepare_data

    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = load_config(None, [run_dir / "run_config.yaml"])
    row = {
        "run": str(run_dir), "seed": config["seed"], "features": config["item_features"],
        "cold_item_share": config["cold_item_share"], "train_seconds": round(metrics["train_seconds"]),
    }  # fmt: skip
    groups = [g for g in ("test", "test_cold", "test_warm") if g in metrics]
    for group in groups:
        row[group] = {m: metrics[group][f"{group}_{m}"] for m in (*METRICS, "num_users")}
    training = prepare_data(config)  # the split the model trained on (cold items held out)
    popularity = count_item_popularity(training_histories(training.processed), training.processed.tokenizer.vocab_size)
    grown = prepare_data(config, ItemTokenizer.from_pretrained(run_dir))  # the test split it was evaluated on
    split = grown.processed.splits["test"]
    test = split.with_format("numpy")["labels"]
    counts = torch.zeros(grown.processed.tokenizer.vocab_size)  # cold items: never trained on, count 0
    counts[: len(popularity)] = popularity
    counts[:NUM_SPECIAL_TOKENS] = -1.0  # below every real item
    parts = {"test": np.arange(len(test))}
    if "test_cold" in metrics:
        parts.update({f"test_{k}": v for k, v in target_groups(test, len(popularity)).items()})
        row["cold_targets"] = cold_target_ranks(run_dir, split, parts["test_cold"], len(popularity))
    evaluator = RankingEvaluator(mode="full", ks=[10])  # the runs' protocol: full ranking, history kept
    row["most_popular"] = {
        group: {
            m: v for m, v in evaluate_baseline(MostPopular(counts), split.select(rows), evaluator, config["max_seq_length"]).items()
            if m in (*METRICS, "num_users")
        }
        for group, rows in parts.items()
    }
    return row


def cold_target_ranks(run_dir: Path, test, rows, first_cold_id: int) -> dict:
    """Where the model ranks the cold targets (full ranking, history kept) and how many cold
    items its top 100 holds: what the top-10 metrics hide when no cold target reaches them."""
    import torch

    from bert4rec_hf import Bert4RecForMaskedItemPrediction
    from bert4rec_hf.data import left_pad

    model = Bert4RecForMaskedItemPrediction.from_pretrained(run_dir).eval()
    cold = test.select(rows)
    histories = left_pad(cold["input_ids"], model.config.max_seq_length - 1)
    scores = model.next_item_scores(histories)
    targets = torch.as_tensor(cold["labels"])[:, None]
    ranks = (scores >= scores.gather(1, targets)).sum(1) - 1
    in_top = (scores.topk(100).indices >= first_cold_id).sum(1).float()
    return {"median_rank": int(ranks.median()), "items": model.config.num_items, "cold_in_top100": round(float(in_top.mean()), 2)}


def print_quality(rows: list[dict]) -> None:
    groups = ["test", "test_cold", "test_warm"] if any("test_cold" in r for r in rows) else ["test"]
    header = " | ".join(f"{g} {m}" for g in groups for m in METRICS)
    print(f"| model | seed | runs | {header} | users ({', '.join(groups)}) |")
    print("|---|---|---:|" + "---:|" * (len(groups) * len(METRICS) + 1))

    def line(name: str, seed: str, runs: list[dict], key=lambda r: r) -> str:
        cells = []
        for group in groups:
            for metric in METRICS:
                values = [key(r)[group][metric] for r in runs]
                spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.4f}{spread}")
        users = ", ".join(str(key(runs[0])[g]["num_users"]) for g in groups)
        return f"| {name} | {seed} | {len(runs)} | " + " | ".join(cells) + f" | {users} |"

    by_variant: dict[str, list[dict]] = {}
    for row in rows:
        by_variant.setdefault("with features " + str(row["features"]) if row["features"] else "id-only", []).append(row)
    for name, runs in by_variant.items():
        print(line(name, ", ".join(str(r["seed"]) for r in runs), runs))
    print(line("most popular", ", ".join(str(r["seed"]) for r in rows[:1]), rows[:1], key=lambda r: r["most_popular"]))
    for row in rows:
        if "cold_targets" in row:
            print(f"{row['run']}: cold targets' median rank {row['cold_targets']['median_rank']} of "
                  f"{row['cold_targets']['items']} items; cold items per top 100: {row['cold_targets']['cold_in_top100']}")  # fmt: skip


def synthetic_features(items: int, seed: int = 0):
    """An item table of ``items`` items (ids 0..items-1) with four kinds of fields, as a parquet file."""
    import tempfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    tags = rng.integers(0, 200, size=(items, 4))
    lengths = rng.integers(0, 5, size=items)
    table = pa.table({
        "item_id": np.arange(items),
        "brand": pa.array([f"b{v}" for v in rng.integers(0, 1000, size=items)]),
        "tags": pa.array([[f"t{t}" for t in row[:n]] for row, n in zip(tags, lengths, strict=True)]),
        "price": rng.lognormal(3, 1, size=items),
        "vector": pa.array(list(rng.normal(size=(items, 64)).astype(np.float32))),
    })
    path = Path(tempfile.mkdtemp()) / "items.parquet"
    pq.write_table(table, path)
    return path


def speed_case(args: argparse.Namespace) -> dict:
    """Child process: one case, timed and measured."""
    import torch

    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, ItemTokenizer
    from bert4rec_hf.data import read_item_features
    from bert4rec_hf.finetuning import write_item_features
    from bert4rec_hf.speedups_bert4rec import use_cpu_speedups

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_large_catalog import batches, current_rss_gib, synthetic_log

    torch.manual_seed(0)
    vocab_size = args.items + 2
    tokenizer = ItemTokenizer.fit(range(args.items))  # vocabulary id i + 2 is item i, as synthetic_log numbers them
    fields = None
    if args.case == "features":
        table = read_item_features(synthetic_features(args.items), ["brand", "tags:token_seq", "price", "vector"])
        fields = [spec.to_dict() for spec in table.fit_fields()]
    config = Bert4RecConfig(vocab_size=vocab_size, max_seq_length=args.max_seq_length, item_features=fields)
    model = use_cpu_speedups(Bert4RecForMaskedItemPrediction(config))  # as Bert4RecTrainer does
    if fields:
        write_item_features(model, tokenizer, table)
    item_ids, ends = synthetic_log(args.items, args.interactions, args.mean_length)
    data = batches(item_ids, ends, args.batch_size, args.max_seq_length, vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = current_rss_gib()  # model, data and (with features) the item table built
    model.train()
    times = []
    for step in range(args.warmup + args.steps):
        batch = next(data)
        start = time.perf_counter()
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {
        "case": args.case, "parameters": sum(p.numel() for p in model.parameters()),
        "median_step_seconds": round(statistics.median(times), 4),
        "rss_before_gib": round(before, 3),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    quality = commands.add_parser("quality", help="test figures of run folders, with the most-popular baseline")
    quality.add_argument("runs", nargs="+", type=Path)
    quality.add_argument("--output", type=Path, help="also write the figures to this JSON file")
    speed = commands.add_parser("speed", help="training step time and peak memory, without and with features")
    speed.add_argument("--items", type=int, default=BEAUTY_ITEMS)
    speed.add_argument("--interactions", type=int, default=353_962)
    speed.add_argument("--mean-length", type=int, default=9)
    speed.add_argument("--batch-size", type=int, default=256)
    speed.add_argument("--max-seq-length", type=int, default=50)
    speed.add_argument("--warmup", type=int, default=3)
    speed.add_argument("--steps", type=int, default=20)
    speed.add_argument("--case", choices=("id-only", "features"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.command == "quality":
        rows = [quality_row(run) for run in args.runs]
        print_quality(rows)
        if args.output:
            args.output.write_text(json.dumps(rows, indent=1))
        return 0
    if args.case:
        print(json.dumps(speed_case(args)))
        return 0
    print(f"{args.items} items, batch {args.batch_size}, max_seq_length {args.max_seq_length}, median of {args.steps} steps")
    print("| model | parameters | median step (s) | RSS before training (GiB) | peak RSS (GiB) | torch threads |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in ("id-only", "features"):
        command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--case", case]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        result = json.loads(output)
        print(f"| {case} | {result['parameters']:,} | {result['median_step_seconds']} | {result['rss_before_gib']} | "
              f"{result['peak_rss_gib']} | "
              f"{result['threads']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
