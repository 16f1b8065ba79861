"""bert4rec-hf's side of ``compare_recbole.py``, run in a subprocess of its own
so its peak RSS is its own; prints ``BENCH_JSON`` lines like ``recbole_driver.py``.

Uses ``bert4rec_hf.quick_start`` as a user would (``load_config``,
``prepare_data``, ``build_trainer``, ``trainer.train()``, ``evaluate_splits``);
the only additions are a ``TrainerCallback`` that records wall clock at each
epoch, step and evaluation, a wrapper around the training collator that
counts masked items (labels != -100), and a second evaluation of the best
model with each user's whole history excluded from the candidates
(``RankingEvaluator(exclude_history=True)`` fed by
``DataCollatorForNextItemPrediction(whole_history=True)``), reported beside
the run's own evaluation (``exclude_history`` as configured, false here).

    python ours_driver.py SPEC.json      # spec written by compare_recbole.py
"""

from __future__ import annotations

import json
import math
import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from tempfile import TemporaryDirectory
from typing import Any

PREFIX = "BENCH_JSON "
IGNORE_INDEX = -100


def emit(event: str, **fields: Any) -> None:
    print(PREFIX + json.dumps({"event": event, **fields}), flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class CountingCollator:
    """Wraps the training collator and counts the rows and masked items of every batch."""

    def __init__(self, collator: Callable):
        self.collator = collator
        self.masked: list[int] = []
        self.rows: list[int] = []

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict:
        batch = self.collator(features)
        self.masked.append(int(batch["labels"].ne(IGNORE_INDEX).sum()))
        self.rows.append(int(batch["labels"].shape[0]))
        return batch


def bench_callback(counter: CountingCollator, time_budget: float | None):
    from transformers import TrainerCallback

    class BenchCallback(TrainerCallback):
        """Wall clock of epochs, steps and evaluations; stops training once the budget is spent."""

        def __init__(self):
            self.t0 = time.perf_counter()
            self.active = True
            self.budget_hit = False
            self.step_ends: list[float] = []
            self.eval_seconds: list[float] = []
            self.evaluations: list[tuple[float, dict]] = []
            self._epoch = (0.0, 0)

        def on_epoch_begin(self, args, state, control, **kwargs):
            self._epoch = (time.perf_counter(), len(counter.masked))

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

        def on_epoch_end(self, args, state, control, **kwargs):
            start, first = self._epoch
            now = time.perf_counter()
            emit(
                "epoch",
                epoch=round(state.epoch or 0),
                seconds=now - start,
                batches=len(counter.masked) - first,
                rows=sum(counter.rows[first:]),
                masked_items=sum(counter.masked[first:]),
                wall=now - self.t0,
            )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not self.active:
                return
            now = time.perf_counter()
            metrics = metrics or {}
            self.eval_seconds.append(float(metrics.get("eval_runtime", float("nan"))))
            self.evaluations.append((self.eval_seconds[-1], dict(metrics)))
            emit(
                "valid",
                epoch=len(self.eval_seconds),
                seconds=self.eval_seconds[-1],
                wall=now - self.t0,
                metrics={k.removeprefix("eval_"): float(v) for k, v in metrics.items() if "@" in k or k == "eval_mrr"},
            )
            if time_budget is not None and now - self.t0 > time_budget and not control.should_training_stop:
                control.should_training_stop = True
                self.budget_hit = True

        def steady_state(self) -> dict:
            """Steps 2..N, end to end: each interval is collate + forward + backward + optimizer step."""
            ends = self.step_ends
            if len(ends) < 2:
                return {}
            n = len(ends)
            return {
                "batches": n - 1,
                "seconds": ends[-1] - ends[0],
                "rows": sum(counter.rows[1:n]),
                "masked_items": sum(counter.masked[1:n]),
            }

    return BenchCallback()


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    import torch
    import transformers
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    import bert4rec_hf
    from bert4rec_hf.data import DataCollatorForNextItemPrediction
    from bert4rec_hf.evaluation import RankingEvaluator
    from bert4rec_hf.training.config import load_config
    from bert4rec_hf.training.pipeline import build_trainer, evaluate_splits, prepare_data

    transformers.logging.set_verbosity_error()
    emit(
        "env",
        bert4rec_hf=bert4rec_hf.__version__,
        torch=torch.__version__,
        transformers=transformers.__version__,
        threads=torch.get_num_threads(),
        python=platform.python_version(),
    )
    config = load_config(spec["dataset"], config_dict=spec["config"])
    data = prepare_data(config)
    report = data.processed.report
    emit(
        "data",
        seconds=data.seconds,
        data_path=config.get("data_path"),
        interactions=data.num_interactions,
        users=report.num_users,
        items=data.processed.tokenizer.num_items,
        train_rows=report.rows.get("train"),
        eval_users=report.rows.get("validation"),
    )
    with TemporaryDirectory() as output_dir:
        trainer = build_trainer(config, data, output_dir)
        for callback in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(callback)
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        timer = bench_callback(counter, spec.get("time_budget"))
        trainer.add_callback(timer)
        keys = (
            "hidden_size",
            "n_layers",
            "n_heads",
            "inner_size",
            "hidden_dropout_prob",
            "attn_dropout_prob",
            "mask_ratio",
            "last_item_mask_ratio",
            "learning_rate",
            "weight_decay",
            "train_batch_size",
            "eval_batch_size",
            "max_seq_length",
            "train_stride",
            "train_prefixes",
        )
        emit(
            "model",
            parameters=sum(p.numel() for p in trainer.model.parameters()),
            settings={key: config.get(key) for key in keys},
        )

        timer.t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - timer.t0
        timer.active = False
        batches_per_epoch = math.ceil(len(data.processed.splits["train"]) / config["train_batch_size"])
        if spec["mode"] == "throughput":
            emit("throughput", **timer.steady_state(), batches_per_epoch=batches_per_epoch)
            if timer.evaluations:  # the Trainer evaluates every validation user once max_steps is reached
                seconds, metrics = timer.evaluations[-1]
            else:
                start = time.perf_counter()
                metrics = trainer.evaluate(data.processed.splits["validation"])
                seconds = time.perf_counter() - start
            emit(
                "eval_timing",
                seconds=seconds,
                users=int(metrics.get("eval_num_users", 0)),
                metrics={k.removeprefix("eval_"): float(v) for k, v in metrics.items() if "@" in k},
            )
        else:
            if timer.budget_hit:
                stopped = "time budget"
            elif _ran_out_of_patience(trainer, config["stopping_step"]):
                stopped = "early stopping"
            else:
                stopped = "epochs"
            emit(
                "train_end",
                seconds=train_seconds,
                stopped_by=stopped,
                throughput=timer.steady_state(),
                batches_per_epoch=batches_per_epoch,
            )
            start = time.perf_counter()
            results = evaluate_splits(trainer, data.processed)
            seconds = time.perf_counter() - start
            # the same (best) model again, each user's whole history taken out of the candidates
            trainer.evaluator = RankingEvaluator(
                mode="full", ks=config["topk"], exclude_history=True, truncate_ranks=config["truncate_ranks"]
            )
            trainer.eval_data_collator = DataCollatorForNextItemPrediction(
                max_seq_length=config["max_seq_length"], whole_history=True
            )
            excluded = evaluate_splits(trainer, data.processed)
            emit(
                "test",
                seconds=seconds,
                seen_item_bias=bool(getattr(trainer.model.config, "seen_item_bias", False)),
                exclude_history=config["exclude_history"],
                metrics=_at_k(results["test"], "test_"),
                best_valid=_at_k(results["valid"], "valid_"),
                # history excluded: every item the user had before the target leaves the candidates
                metrics_exclude_history=_at_k(excluded["test"], "test_"),
                best_valid_exclude_history=_at_k(excluded["valid"], "valid_"),
            )
    emit("done", peak_rss_mib=peak_rss_mib())
    return 0


def _at_k(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """The @K metrics of one ``trainer.evaluate`` result, without the split prefix."""
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if "@" in k}


def _ran_out_of_patience(trainer, patience: int) -> bool:
    """Whether the EarlyStoppingCallback ran out of patience (as opposed to the time budget)."""
    from transformers import EarlyStoppingCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EarlyStoppingCallback):
            return callback.early_stopping_patience_counter >= patience
    return False


if __name__ == "__main__":
    sys.exit(main())
