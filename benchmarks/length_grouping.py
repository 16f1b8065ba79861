"""Training steps on real windows with random batches and with batches of similar length.

    python benchmarks/length_grouping.py --dataset beauty --data-path ../shared/data/beauty/beauty.txt \\
        --set recipe=nextitem
    python benchmarks/length_grouping.py            # the bundled ml-100k, its own settings

The data set is prepared as ``bert4rec train`` prepares it (the same configuration
layers and ``--set`` overrides), then the Trainer's own training dataloader is read
twice: with ``train_sampling_strategy`` "random" (the default) and "group_by_length"
(``group_by_length: true``). For each it prints the mean width a batch is padded to
and the milliseconds of a full training step (forward, masked loss, backward,
clipping, AdamW, as the Trainer runs it with the package's CPU speed paths), timed in
alternating blocks of ``--block`` steps so that load from elsewhere falls on both
alike. Quality is not measured here: that takes a trained run
(``benchmarks/README.md``, "Batches of similar length").
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import numpy as np
import torch

from bert4rec_hf.training.config import load_config, parse_overrides
from bert4rec_hf.training.pipeline import build_trainer, prepare_data

STRATEGIES = ("random", "group_by_length")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="configuration overrides")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per strategy")
    parser.add_argument("--block", type=int, default=10, help="steps timed at a time before switching")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    overrides = parse_overrides([*args.set, f"torch_threads={args.threads}", "report_to=none"])
    if args.data_path:
        overrides["data_path"] = args.data_path
    config = load_config(args.dataset, None, overrides)
    torch.set_num_threads(args.threads)
    data = prepare_data(config)
    train_rows = data.processed.splits["train"]
    print(f"{args.dataset}: {len(train_rows):,} training windows, batch {config['train_batch_size']}, "
          f"max length {config['max_seq_length']}, {args.threads} thread(s)")  # fmt: skip

    runs = {}
    with tempfile.TemporaryDirectory() as output_dir:
        for strategy in STRATEGIES:
            trainer = build_trainer(config | {"group_by_length": strategy == "group_by_length"}, data, output_dir)
            trainer.create_optimizer_and_scheduler(num_training_steps=args.steps)
            runs[strategy] = {"trainer": trainer, "batches": endless(trainer), "ms": [], "widths": []}
        for _ in range(0, args.steps, args.block):
            for run in runs.values():
                time_block(run, args.block)

    print(f"{'batches':<16} {'padded width':>12} {'ms/step':>9} {'speed-up':>9}")
    base = np.median(runs["random"]["ms"])
    for strategy, run in runs.items():
        ms = np.median(run["ms"])
        print(f"{strategy:<16} {np.mean(run['widths']):>12.1f} {ms:>9.1f} {base / ms:>8.2f}x")


def endless(trainer):
    """The Trainer's training batches, epoch after epoch."""
    loader = trainer.get_train_dataloader()
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def time_block(run: dict, steps: int) -> None:
    """``steps`` training steps of one strategy, each timed alone (the collator's time left out)."""
    trainer = run["trainer"]
    model = trainer.model.train()
    for _ in range(steps):
        batch = next(run["batches"])
        run["widths"].append(batch["input_ids"].shape[1])
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        run["ms"].append(1000 * (time.perf_counter() - start))


if __name__ == "__main__":
    main()
