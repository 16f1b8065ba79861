"""The mean of a run's weights over its last steps (``average_weights_share``).

Stochastic weight averaging (Izmailov et al., UAI 2018) keeps the mean of the weights a run
passes through near its end instead of its last ones: the mean sits nearer the middle of the
region the optimizer wanders in, and ranks held-out items better than any single point of it.
On Beauty a run of recipe ``clozefirst`` averaged over its last 3,000 of 8,000 steps ranked
the test items 1.6% (NDCG@10) and 2.8% (HR@10) better than its last step (benchmarks/README.md,
"Seeds disagree").

With ``average_weights_share: s`` and ``average_weights_every: k``, the weights after every
k-th step counted back from the run's last one are summed, from the step where the last ``s``
of the run begins (``k`` null: that stretch split into about six intervals); at the end of
training the model takes their mean in place of the best checkpoint. The sum is written into
every checkpoint, so a killed run resumes to the same mean.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback, TrainerState
from transformers.utils import logging

from .config import ConfigError

AVERAGE_FILE = "weight_average.safetensors"  # in a checkpoint folder: the sum of the snapshots up to its step
INTERVALS = 6  # where no step count between snapshots is given: the averaged stretch / 6, rounded

logger = logging.get_logger(__name__)


def check_weight_averaging(config: Mapping[str, Any]) -> None:
    """Refuses, before any data is read, averaging over the end of a run whose end is a time
    budget: where the last steps begin is not known in advance."""
    if config["average_weights_share"] > 0 and config["time_budget"] is not None:
        raise ConfigError(
            f"average_weights_share: {config['average_weights_share']} averages the weights of a run's last steps; "
            f"give the steps (max_steps), not time_budget ({config['time_budget']})"
        )


class WeightAverage(TrainerCallback):
    """Sums the model's floating-point weights after each chosen step (``snapshot_steps``) and
    gives the run's model their mean when training ends at its last step; a run stopped
    before (early stopping) keeps its best checkpoint, with a warning.

    Args:
        share: the last share of the run's steps whose weights are averaged, in (0, 1].
        every: steps between two snapshots, counted back from the last step; None: the
            averaged stretch split into ``INTERVALS``.
    """

    def __init__(self, share: float, every: int | None = None):
        if not 0 < share <= 1:
            raise ValueError(f"the averaged share of the steps must be in (0, 1], got {share!r}")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"a snapshot every N steps needs a positive N, got {every!r}")
        self.share, self.every = share, every
        self.reset()

    def reset(self) -> None:
        """No snapshot yet: a new training, before a resumed one loads its checkpoint's."""
        self.total: dict[str, torch.Tensor] | None = None
        self.steps: list[int] = []  # the steps summed so far
        self.applied = False  # the model holds their mean (what the model folder then says)

    def snapshot_steps(self, max_steps: int) -> range:
        """The steps whose weights are averaged: every ``every``-th back from ``max_steps``, from
        the first step of the run's last ``share`` on."""
        first = max(max_steps - round(self.share * max_steps), 1)
        last = max_steps
        every = self.every or max(round((last - first) / INTERVALS), 1)
        return range(last - (last - first) // every * every, last + 1, every)

    def on_step_end(self, args, state: TrainerState, control, model=None, **kwargs):
        if state.global_step in self.snapshot_steps(state.max_steps):
            self.add(model, state.global_step)

    def add(self, model: torch.nn.Module, step: int) -> None:
        """Adds the model's present weights (after ``step``) to the sum."""
        weights = averaged_tensors(model)
        if self.total is None:
            self.total = {name: tensor.detach().float().clone() for name, tensor in weights.items()}
        else:
            for name, tensor in weights.items():
                self.total[name] += tensor.detach().float()
        self.steps.append(step)

    def on_train_end(self, args, state: TrainerState, control, model=None, **kwargs):
        self.apply(model, state)

    def apply(self, model: torch.nn.Module, state: TrainerState) -> None:
        """Loads the mean of the snapshots into ``model`` when the run reached its last step."""
        if state.global_step < state.max_steps or not self.steps:
            logger.warning(
                f"training ended at step {state.global_step} of {state.max_steps} (early stopping), before its last "
                f"steps were averaged: the model is the run's best checkpoint, not the mean of {len(self.steps)} snapshots"
            )
            return
        weights = averaged_tensors(model)
        with torch.no_grad():
            for name, total in self.total.items():
                weights[name].copy_(total / len(self.steps))
        self.applied = True
        logger.info(f"the model is the mean of the weights at steps {self.describe()}")

    def describe(self) -> str:
        """The averaged steps in words: ``"5000, 5500, ..., 8000 (7)"``."""
        shown = ", ".join(map(str, self.steps)) if len(self.steps) <= 3 else f"{self.steps[0]}, {self.steps[1]}, ..., {self.steps[-1]}"
        return f"{shown} ({len(self.steps)})"

    def save(self, folder: str | os.PathLike) -> None:
        """Writes the sum into a checkpoint ``folder`` (nothing before the first snapshot)."""
        if self.total is not None:
            save_file(self.total, str(Path(folder) / AVERAGE_FILE))

    def load(self, folder: str | os.PathLike, state: TrainerState) -> None:
        """The sum a checkpoint ``folder`` saved at ``state`` holds (none before the first
        snapshot), which a run resumed from it adds to: the snapshot steps up to its step."""
        self.reset()
        path = Path(folder) / AVERAGE_FILE
        if path.is_file():
            self.total = load_file(str(path))
            self.steps = [step for step in self.snapshot_steps(state.max_steps) if step <= state.global_step]


def averaged_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point parameters and buffers by name (one entry per tensor: tied
    weights once)."""
    seen, tensors = set(), {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.is_floating_point() and id(tensor) not in seen:
            seen.add(id(tensor))
            tensors[name] = tensor.data if isinstance(tensor, torch.nn.Parameter) else tensor
    return tensors
