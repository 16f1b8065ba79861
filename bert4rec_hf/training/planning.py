"""How long a run will take, said before it starts.

The planned number of optimizer steps and evaluations follows from the run's
settings and the training rows; the time is measured, not guessed: a few real
training steps (forward, backward, AdamW step) and one validation batch are
timed on a copy of the model, with the run's collators and batch sizes, on
this machine as loaded now. The copy, a copy of the collator and a forked RNG
keep the run itself exactly as it would be without the estimate.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .trainer import SimilarLengthSampler, cloze_step_count, history_lengths

# Timed training steps, after one untimed warm-up step.
MEASURED_STEPS = 3


def planned_steps(config: Mapping[str, Any], train_rows: int, world_size: int = 1) -> tuple[int, int]:
    """``(optimizer steps, steps per epoch)`` the configuration asks for: ``max_steps``
    when set, else ``epochs`` passes over ``train_rows`` (the Trainer's arithmetic).
    Early stopping and ``time_budget`` can end a run sooner, never later."""
    per_epoch = max(1, math.ceil(train_rows / (config["train_batch_size"] * world_size)))
    if config["max_steps"] > 0:
        return int(config["max_steps"]), per_epoch
    return math.ceil(config["epochs"] * per_epoch), per_epoch


def _rows(dataset: Any, count: int, offset: int = 0) -> list[dict[str, Any]]:
    """``count`` rows spread evenly over ``dataset`` (its first rows are one user's windows)."""
    return _rows_at(dataset, (np.linspace(0, len(dataset) - 1, count).astype(np.int64) + offset) % len(dataset))


def _rows_at(dataset: Any, index: np.ndarray) -> list[dict[str, Any]]:
    """The rows of ``dataset`` at ``index``, as a collator takes them."""
    batch = dataset[index.tolist()]
    return [{key: batch[key][i] for key in batch if key != "user_id"} for i in range(len(index))]


def _timed_batches(trainer: Any, dataset: Any, size: int, count: int) -> list[list[dict[str, Any]]]:
    """``count`` batches of ``size`` rows to time: rows spread evenly over ``dataset``, or, where
    training draws batches of similar length (``group_by_length``), batches of that sampler whose
    padded length is nearest its batches' mean: a spread batch holds one long window and is
    padded to it, which on a short-history log times the encoder several times too wide."""
    lengths = history_lengths(dataset) if trainer.args.train_sampling_strategy == "group_by_length" else None
    if lengths is None or len(lengths) < size * count:
        return [_rows(dataset, size, offset=step) for step in range(count)]
    order = np.fromiter(iter(SimilarLengthSampler(lengths, size, seed=trainer.args.seed)), dtype=np.int64)
    batches = order[: len(order) - len(order) % size].reshape(-1, size)
    padded = lengths[batches].max(axis=1)
    nearest = np.argsort(np.abs(padded - padded.mean()), kind="stable")[:count]
    return [_rows_at(dataset, batches[chosen]) for chosen in nearest]


def _on(device: torch.device, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}


def measure_step_seconds(trainer: Any, steps: int = MEASURED_STEPS) -> float:
    """Seconds per training step of ``trainer``'s model, batch size and collator; with a
    next-item phase (``trainer.next_item_share``), the two phases' steps weighted by their shares.
    Steps that distil (``trainer.teachers``: the next-item phase's, or every step of a run without
    one) are timed with the teachers scoring their targets."""
    share = getattr(trainer, "next_item_share", 0.0)
    distils = getattr(trainer, "teachers", None) is not None
    seconds = _step_seconds(trainer, trainer.train_dataset, steps, distilled=distils and share == 0) if share < 1 else 0.0
    if share > 0:
        next_item = _step_seconds(trainer, trainer.next_item_dataset, steps, last_item_only=True, distilled=distils)
        seconds = (1 - share) * seconds + share * next_item
    return seconds


def _step_seconds(trainer: Any, dataset: Any, steps: int, last_item_only: bool = False, distilled: bool = False) -> float:
    model = copy.deepcopy(trainer.model).train()
    collator = copy.deepcopy(trainer.data_collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=trainer.args.learning_rate)
    size = min(trainer.args.per_device_train_batch_size, len(dataset))
    device = trainer.args.device
    flag = {"last_item_only": True} if last_item_only else {}
    with torch.random.fork_rng(devices=[]):
        for step, rows in enumerate(_timed_batches(trainer, dataset, size, steps + 1)):
            if step == 1:
                start = time.perf_counter()
            batch = _on(device, collator([row | flag for row in rows]))
            if distilled:
                batch = trainer.with_soft_targets(batch)
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def measure_evaluation_seconds(trainer: Any) -> float:
    """Seconds to rank every validation row, from one timed batch of them."""
    dataset = trainer.eval_dataset
    if not len(dataset):
        return 0.0
    size = min(trainer.args.per_device_eval_batch_size, len(dataset))
    model = copy.deepcopy(trainer.model).eval()
    batch = (trainer.eval_data_collator or trainer.data_collator)(_rows(dataset, size))
    start = time.perf_counter()
    trainer.prediction_step(model, batch, prediction_loss_only=False)
    return (time.perf_counter() - start) * math.ceil(len(dataset) / size)


def measure_seconds(trainer: Any) -> tuple[float, float]:
    """``(seconds per training step, seconds per evaluation)``; in a distributed run,
    rank 0's, so that every process plans the same steps."""
    seconds = torch.tensor([measure_step_seconds(trainer), measure_evaluation_seconds(trainer)], dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = trainer.args.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        seconds = seconds.to(device)
        torch.distributed.broadcast(seconds, src=0)
    return float(seconds[0]), float(seconds[1])


def plan_training(
    trainer: Any, config: Mapping[str, Any], seconds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The run's plan: steps, evaluations, measured seconds per step and per
    evaluation (``seconds``, when measured already), and the estimated wall time of
    training (final validation and test evaluations included; data preparation not),
    with a one-line summary."""
    steps, per_epoch = planned_steps(config, len(trainer.train_dataset), trainer.args.world_size)
    evaluations = steps // config["eval_steps"] if config.get("eval_steps") else math.ceil(steps / per_epoch)
    step_seconds, evaluation_seconds = seconds if seconds is not None else measure_seconds(trainer)
    share, branches = config.get("next_item_share", 0.0), config.get("next_item_branches", 1)
    # next_item_branches: the next-item phase's steps (and evaluations) again in each further branch
    repeated = 1 + (branches - 1) * (steps - cloze_step_count(steps, share)) / steps if share > 0 else 1
    estimate = repeated * (steps * step_seconds + evaluations * evaluation_seconds) + 2 * evaluation_seconds
    budget = config.get("time_budget")
    if budget is not None:
        estimate = min(estimate, budget + 2 * evaluation_seconds)
    phase = f", the last {share:.0%} on next-item rows," if share > 0 else ""
    if share > 0 and branches > 1:
        phase = f", the last {share:.0%} on next-item rows in each of {branches} branches, averaged,"
    teachers = config.get("distill_teachers") or len(config.get("distill_from") or ())
    if teachers and config.get("distillation_weight"):
        phase += f" distilled from {teachers} teacher{'s' if teachers > 1 else ''},"
    warning = phase_budget_warning(steps, share, budget, step_seconds, evaluations * evaluation_seconds)
    summary = (
        f"at most {steps:,} steps ({steps / per_epoch:.3g} epochs of {per_epoch:,} steps){phase} and {evaluations:,} "
        f"evaluations; about {_duration(estimate)} on this machine as loaded now ({step_seconds * 1000:.0f} ms "
        f"per step, {_duration(evaluation_seconds)} per evaluation, measured on {MEASURED_STEPS} training steps "
        "and one validation batch"
        + (f"; time_budget stops training after {_duration(budget)}" if budget is not None else "")
        + "; early stopping can end sooner)"
    )
    return {
        "planned_steps": steps,
        "steps_per_epoch": per_epoch,
        "evaluations": evaluations,
        "seconds_per_step": step_seconds,
        "seconds_per_evaluation": evaluation_seconds,
        "estimated_seconds": estimate,
        "summary": summary,
        "warnings": [warning] if warning else [],
    }


def phase_budget_warning(
    steps: int, share: float, budget: float | None, step_seconds: float, evaluating_seconds: float
) -> str | None:
    """Says when ``time_budget`` would end a phased run (``next_item_share``) before its
    planned steps: the switch step is fixed from the steps when training starts, so the
    budget cuts the next-item phase, or skips it, rather than moving the switch."""
    if not 0 < share or budget is None or step_seconds <= 0:
        return None
    fit = int(max(budget - evaluating_seconds, 0.0) / step_seconds)
    cloze_steps = cloze_step_count(steps, share)
    if fit >= steps:
        return None
    reached = (
        f"ends it before the switch to next-item rows at step {cloze_steps:,}: no next-item step runs"
        if fit <= cloze_steps
        else f"leaves the next-item phase about {fit - cloze_steps:,} of its {steps - cloze_steps:,} steps"
    )
    return (
        f"time_budget {budget:.0f} s fits about {fit:,} of the {steps:,} planned steps at the measured speed, "
        f"so it {reached}; give the phased run max_steps that fit the budget (or a larger budget)"
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


__all__ = ["MEASURED_STEPS", "measure_evaluation_seconds", "measure_seconds", "measure_step_seconds", "phase_budget_warning", "plan_training", "planned_steps"]
