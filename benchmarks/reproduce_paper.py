"""BERT4Rec's paper protocol on Amazon Beauty, our numbers beside the paper's.

    python benchmarks/reproduce_paper.py                                   # the paper's budget (400k steps; GPU)
    python benchmarks/reproduce_paper.py --max-steps 50 --eval-steps 25    # a smoke run
    python benchmarks/reproduce_paper.py --time-budget 3600                # an hour of training, the
                                                                           # lr decay fitted to the steps that fit

Sun et al., "BERT4Rec", CIKM 2019, Table 2 (Beauty, BERT4Rec row): leave-one-out,
the test item ranked against 100 negatives sampled by popularity among the items
the user never interacted with (our ``eval_mode: pop100``), HR@1/5/10, NDCG@5/10
and MRR. Settings (paper section 4 and the authors' ``run_beauty.sh`` and
``bert_config_beauty_64.json``): max length 50, mask proportion 0.6, hidden 64,
2 layers, 2 heads, inner 256, dropout 0.5 (attention 0.2), batch 256, Adam with
decoupled weight decay 0.01, lr 1e-4 decayed linearly to 0 over the step budget
after 100 warm-up steps, gradient clipping 5, sliding windows with step
0.1 * 50 = 5.

The authors' data generator writes each window 10 times with fresh Cloze masks
(``dupe_factor=10``) plus once with only its last item masked (``mask_last``),
so 1 row in 11 is a last-item row; we mask afresh every epoch and draw a
last-item-only row with probability ``--last-item-mask-ratio`` (default 1/11).
As in their code ("put validate into train"), the training windows run through
each user's item n-1 (``train_on_validation_item``), so the validation metrics
printed while training score items the model has seen: a progress signal, not an
estimate of the test (``--hold-out-validation`` trains through n-2 only and makes
them one). Differences that remain: they mask exactly round(0.6 * length) items
per row (we mask each item with probability 0.6) and draw popularity negatives
from counts over the whole log (we count the training split). Full-ranking test
metrics (all items, history kept as candidates) are reported too.

Device: CUDA when available (bf16 where supported), else CPU. The settings are
the shipped recipe ``paper`` (``configuration/recipe/paper/beauty.yaml``, what
``bert4rec train --dataset beauty --recipe paper`` trains) over
``configuration/dataset/beauty.yaml``; this script adds its options, the
full-ranking test beside the sampled one and the paper's table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from bert4rec_hf.training import TimeBudgetCallback
from bert4rec_hf.training.config import load_config, parse_overrides
from bert4rec_hf.training.pipeline import build_evaluator, build_trainer, evaluate_splits, prepare_data, save_run

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beauty" / "beauty.txt"

PAPER_BEAUTY = {  # Table 2, BERT4Rec on Beauty
    "hit@1": 0.0953, "hit@5": 0.2207, "hit@10": 0.3025, "ndcg@5": 0.1599, "ndcg@10": 0.1862, "mrr": 0.1701,
}  # fmt: skip
LABELS = {"hit@1": "HR@1", "hit@5": "HR@5", "hit@10": "HR@10", "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10", "mrr": "MRR"}


def paper_config(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword layer over ``--recipe paper`` (configuration/recipe/paper/beauty.yaml, the one
    place the paper's settings live): this script's options where given, and its evaluation."""
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not args.no_bf16
    given = {
        "last_item_mask_ratio": args.last_item_mask_ratio,
        "max_steps": args.max_steps,
        "eval_steps": args.eval_steps,
        "stopping_step": args.patience,
    }
    config = {
        "data_path": str(args.data_path),
        "recipe": "paper",
        **{key: value for key, value in given.items() if value is not None},
        "train_on_validation_item": not args.hold_out_validation,
        "time_budget": args.time_budget,
        "eval_batch_size": args.eval_batch_size,
        "eval_loss": False,  # the only full-catalog pass of a sampled evaluation
        "valid_metric": "ndcg@10",
        "seed": args.seed,
        "bf16": bf16,
        "report_to": "none",
    }
    return {**config, **args.overrides}


class EvaluationLog(TrainerCallback):
    """One line per evaluation: step, wall clock, validation metrics, learning rate."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.active = True
        self.history: list[dict[str, float]] = []
        self.last_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.active or not metrics:
            return
        row = {"step": state.global_step, "wall": time.perf_counter() - self.t0, "loss": self.last_loss}
        row.update({k.removeprefix("eval_"): v for k, v in metrics.items() if "@" in k or k == "eval_mrr"})
        self.history.append(row)
        loss = f"{self.last_loss:.3f}" if self.last_loss is not None else "—"
        print(
            f"step {state.global_step:>7}  {row['wall']:>8.0f} s  loss {loss}  valid pop100 "
            f"HR@10 {row.get('hit@10', float('nan')):.4f}  NDCG@10 {row.get('ndcg@10', float('nan')):.4f}",
            flush=True,
        )


def comparison_table(test: dict[str, float]) -> str:
    lines = ["| metric | paper (BERT4Rec, Beauty) | bert4rec-hf | ours / paper |", "| --- | ---: | ---: | ---: |"]
    for key, label in LABELS.items():
        ours = test.get(f"test_{key}")
        paper = PAPER_BEAUTY[key]
        share = f"{ours / paper:.2f}" if ours is not None else "—"
        lines.append(f"| {label} | {paper:.4f} | {'—' if ours is None else f'{ours:.4f}'} | {share} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, default=DEFAULT_DATA, help="beauty.txt (default: %(default)s)")
    parser.add_argument(
        "--max-steps", type=int, help="step budget, also the lr decay horizon (default: the recipe's 400,000)"
    )
    parser.add_argument(
        "--time-budget", type=float, default=None, metavar="SECONDS",
        help="stop training after this many seconds, the lr decay fitted to the steps that fit (TimeBudgetCallback)",
    )  # fmt: skip
    parser.add_argument("--eval-steps", type=int, help="validate every N steps (default: the recipe's 2,000)")
    parser.add_argument(
        "--patience", type=int, help="evaluations without improvement before stopping (default: the recipe's 20)"
    )
    parser.add_argument(
        "--hold-out-validation", action="store_true",
        help="train only through each user's item n-2 (default: through n-1, the validation item, as the authors' code "
        "does; validation metrics then score trained items)",
    )  # fmt: skip
    parser.add_argument(
        "--last-item-mask-ratio", type=float, help="share of last-item-only rows (default: the recipe's 1/11)"
    )
    parser.add_argument("--eval-batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 even where bf16 is supported")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config key")
    parser.add_argument("--output-dir", type=Path, default=REPO / "outputs" / "reproduce_paper_beauty")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.data_path.is_file():
        print(f"error: {args.data_path} not found (pass --data-path to beauty.txt)", file=sys.stderr)
        return 1
    args.overrides = parse_overrides(args.set)
    config = load_config("beauty", config_dict=paper_config(args))
    config["eval_steps"] = min(config["eval_steps"], config["max_steps"])
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device}; bf16: {config['bf16']}; started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")

    data = prepare_data(config)
    print(f"data: {data.summary} ({data.seconds:.1f} s)")
    trainer = build_trainer(config, data, args.output_dir)
    for callback in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    log = EvaluationLog()
    trainer.add_callback(log)

    log.t0 = start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    log.active = False
    results = evaluate_splits(trainer, data.processed)

    sampled_evaluator = trainer.evaluator
    trainer.evaluator = build_evaluator({**config, "eval_mode": "full", "exclude_history": False}, data.processed)
    trainer.compute_metrics = trainer.evaluator.compute_metrics
    results["test_full"] = trainer.evaluate(data.processed.splits["test"], metric_key_prefix="test_full")
    trainer.evaluator, trainer.compute_metrics = sampled_evaluator, sampled_evaluator.compute_metrics
    save_run(trainer, config, data, results, args.output_dir, train_seconds)

    steps = trainer.state.global_step
    summary = {
        "device": device,
        "bf16": config["bf16"],
        "train_seconds": train_seconds,
        "steps": steps,
        "epochs": trainer.state.epoch,
        "steps_per_second": steps / train_seconds if train_seconds else None,
        "best_step": _best_step(trainer),
        "stopped_by": _stop_reason(trainer, config),
        "paper": PAPER_BEAUTY,
        "test_pop100": {key: results["test"].get(f"test_{key}") for key in LABELS},
        "test_full": {key: results["test_full"].get(f"test_full_{key}") for key in LABELS},
        "valid_pop100": {key: results["valid"].get(f"valid_{key}") for key in LABELS},
        "history": log.history,
        "config": dict(config),
    }
    (args.output_dir / "paper_comparison.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")

    print(f"\n## BERT4Rec on Amazon Beauty: the paper's protocol (pop100 test) — {device}")
    print(comparison_table(results["test"]))
    full = results["test_full"]
    print(
        "\nFull ranking (test item against all items, history kept): "
        + ", ".join(f"{LABELS[k]} {full.get(f'test_full_{k}', float('nan')):.4f}" for k in LABELS)
    )
    print(
        f"Training: {steps} steps ({trainer.state.epoch:.1f} epochs) in {train_seconds:.0f} s "
        f"({summary['steps_per_second']:.2f} steps/s), best validation at step {summary['best_step']}, "
        f"stopped by {summary['stopped_by']}; "
        f"data preparation {data.seconds:.1f} s. Saved to {args.output_dir}"
    )
    return 0


def _stop_reason(trainer, config) -> str:
    steps = trainer.state.global_step
    if steps >= config["max_steps"]:
        return "the step budget"
    if config["time_budget"] is not None:
        budget = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback))
        if budget.stopped_at is not None:
            return f"the time budget ({config['time_budget']:.0f} s)"
    return "early stopping"


def _best_step(trainer) -> int | None:
    checkpoint = trainer.state.best_model_checkpoint
    if not checkpoint:
        return None
    try:
        return int(str(checkpoint).rstrip("/").rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
