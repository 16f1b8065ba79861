"""A training schedule fitted to the log, for runs whose configuration gives none.

The package defaults (``configuration/overall.yaml``) are RecBole's values:
200 epochs of 256 at lr 1e-3 without warm-up, dropout 0.5, an evaluation
every epoch. On a user's own log they mean hours of training that crawl
towards a model the ml-100k schedule reaches in minutes. With ``schedule:
auto`` (the default) every schedule key still at its package default is
derived instead (``AutoSchedule``), in two steps:

1. before the data is prepared (``before_data``): the windows, batch, dropout
   and masking measured best on ml-100k (``configuration/dataset/ml-100k.yaml``,
   benchmarks/README.md "The ml-100k schedule"): one training window ending at
   every training item (stride 1, short prefixes too, so an epoch is one row per
   interaction whatever the history lengths), batch 64, dropout 0.2, a quarter
   of the rows masking only their last item. The learning rate is measured on
   five logs ("Defaults for your own log"): 1e-3, constant after a warm-up of a
   tenth of the steps. In a CPU budget most logs are far from converged when it
   ends, and a decay to 0 spends its second half at rates too small to learn much: on a log of short
   histories test NDCG@10 0.175 constant against 0.120 decayed (ml-100k's 3e-3
   decayed: 0.086), on ml-100k read from its file 0.116 against 0.099. The loss
   stays the paper's full softmax: in the same 15 minutes the sampled one
   (``loss_type: SSM``) reached less than half its test NDCG@10 on Amazon Beauty
   (54,542 items; a step 10% cheaper) and two thirds of it on a 204,161-item
   synthetic log;
2. once the Trainer exists (``fit_steps``): the steps, as many passes over the
   training rows as fit in ``TIME_BUDGET`` seconds (``time_budget``, which also
   stays on as the run's safety net), from the seconds per step and per
   evaluation measured on this machine, at most ``MAX_EPOCHS`` passes and at
   least ``MIN_STEPS`` steps; an evaluation every twelfth of the run, fewer when
   evaluating would take more than ``EVALUATION_SHARE`` of the budget; patience
   two thirds of the evaluations. The best validation checkpoint is the model.
   So the step count depends on the machine, as in any ``time_budget`` run,
   except on logs so small that ``MAX_EPOCHS`` passes fit: give ``epochs`` or
   ``max_steps`` for runs that equal seeds repeat exactly on any machine.

A key set anywhere else (a data set's YAML, a user file, ``--set``) keeps its
value and the derivation builds on it: a given batch size sets the step count,
given ``epochs`` or ``max_steps`` replace the derived steps and the time budget.
``schedule: fixed`` takes the package defaults as written (RecBole's page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .config import RunConfig

# Step 1: values that do not depend on the log's size.
WINDOWS_AND_RATES: dict[str, Any] = {
    "train_stride": 1,
    "train_prefixes": True,
    "train_batch_size": 64,
    "learning_rate": 0.001,
    "hidden_dropout_prob": 0.2,
    "attn_dropout_prob": 0.2,
    "last_item_mask_ratio": 0.25,
    "warmup_steps": 0.1,
    "lr_scheduler_type": "constant_with_warmup",
}
# Step 2: most passes over the training rows, the floor in steps, the time cap and the evaluations.
MAX_EPOCHS = 20
MIN_STEPS = 3_000
TIME_BUDGET = 900.0
MAX_EVALUATIONS = 12
MIN_EVALUATIONS = 3
EVALUATION_SHARE = 0.15

STEP_KEYS = ("epochs", "max_steps", "time_budget", "eval_steps", "stopping_step")
SCHEDULE_KEYS = (*WINDOWS_AND_RATES, *STEP_KEYS)
SOURCE = "schedule: auto (derived from the log)"


class AutoSchedule:
    """The schedule keys a run derives (none with ``schedule: fixed``), and the values it gave
    them: ``apply`` writes them into the run configuration, naming the source."""

    def __init__(self, config: RunConfig):
        auto = config.get("schedule", "fixed") == "auto"
        self.keys = tuple(key for key in SCHEDULE_KEYS if auto and config.is_package_default(key))
        self.values: dict[str, Any] = {}
        self.warnings: list[str] = []

    def apply(self, config: RunConfig, values: Mapping[str, Any]) -> None:
        config.update(values)
        config.sources.update(dict.fromkeys(values, SOURCE))
        self.values.update(values)

    def adopt(self, config: RunConfig, saved: Mapping[str, Any]) -> None:
        """A resumed run: the values its first part derived (``saved``, its configuration), and
        nothing derived again, so it ends where the interrupted run would have."""
        self.apply(config, {key: saved[key] for key in self.keys if key in saved})
        self.keys = ()

    def before_data(self, config: RunConfig) -> None:
        """Step 1: windows, batch, rates, dropout and masking: nothing the log's size changes."""
        self.apply(config, {key: value for key, value in WINDOWS_AND_RATES.items() if key in self.keys})

    def fit_steps(self, config: RunConfig, train_rows: int, step_seconds: float, evaluation_seconds: float) -> None:
        """Step 2: steps, time budget, evaluation cadence and patience, from the training rows and
        the seconds per step and per evaluation measured on this machine (``planning``)."""
        keys, values = self.keys, {}
        if not keys:
            return
        batch = config["train_batch_size"]
        budget = TIME_BUDGET if "time_budget" in keys else config["time_budget"]
        # the evaluations' cost counted against the budget, never less than TIME_BUDGET: on any
        # log whose evaluations are cheap the count is fixed, so equal seeds give equal runs
        evaluations = _evaluations(max(TIME_BUDGET, budget or 0.0), evaluation_seconds)
        if "epochs" in keys and "max_steps" in keys:
            steps = max(MIN_STEPS, math.ceil(MAX_EPOCHS * train_rows / batch))
            if budget is not None:
                fit = (budget - (evaluations + 2) * evaluation_seconds) / max(step_seconds, 1e-9)
                steps = min(steps, max(1, int(fit)))
            values["max_steps"] = steps
            if "time_budget" in keys:
                values["time_budget"] = TIME_BUDGET
            if steps * batch < train_rows:
                hours = train_rows / batch * step_seconds / 3600
                self.warnings.append(
                    f"the time budget ({budget:.0f} s) covers {steps * batch / train_rows:.2f} of one pass over the "
                    f"{train_rows:,} training rows at {step_seconds * 1000:.0f} ms per step on this machine: expect a "
                    f"model near the most-popular baseline. One pass takes about {hours:.1f} h here: give "
                    "time_budget (seconds) or epochs, or train on a GPU"
                )
        else:
            steps = config["max_steps"] if config["max_steps"] > 0 else math.ceil(config["epochs"] * train_rows / batch)
        evaluations = min(evaluations, steps)
        if "eval_steps" in keys:
            values["eval_steps"] = max(1, math.ceil(steps / evaluations))
        if "stopping_step" in keys:
            values["stopping_step"] = max(2, math.ceil(2 * evaluations / 3))
        self.apply(config, values)


def _evaluations(seconds: float, evaluation_seconds: float) -> int:
    """Evaluations in a run of ``seconds``: ``MAX_EVALUATIONS``, fewer when they would take
    more than ``EVALUATION_SHARE`` of it (never fewer than ``MIN_EVALUATIONS``)."""
    affordable = int(EVALUATION_SHARE * seconds / evaluation_seconds) if evaluation_seconds > 0 else MAX_EVALUATIONS
    return max(MIN_EVALUATIONS, min(MAX_EVALUATIONS, affordable))


__all__ = ["MAX_EPOCHS", "MIN_STEPS", "SCHEDULE_KEYS", "TIME_BUDGET", "AutoSchedule"]
