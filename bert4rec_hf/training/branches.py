"""Next-item branches averaged into one model (``next_item_branches``).

A phased run (``next_item_share``) pre-trains on the Cloze task, then fine-tunes on
next-item rows. Runs of one recipe disagree: on Beauty the mean of three seeds' scores
ranks the test item far better than any one of them. With ``next_item_branches: N`` the
fine-tuning runs N times from the Cloze phase's last checkpoint, each branch on its own
data order and dropout draws (seeds ``seed``, ``seed + 1``, ...), and the model kept is
the mean of the N branches' weights: a model soup (Wortsman et al., ICML 2022). Branches
that start from one pre-trained point stay in one basin, so their mean is one BERT4Rec,
scored as fast as one; it keeps most of what their scores' mean gains, which is less
than independent seeds' (their disagreement is mostly made in the Cloze phase).

Branch 1 is the run itself. At its switch to next-item rows a copy of that checkpoint is
kept apart from rotation (``checkpoints/switch``); branches 2..N each resume a copy of it
in ``checkpoints/branch-<k>``, so a killed run resumes inside whichever branch it was in.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from .config import ConfigError
from .trainer import Bert4RecTrainer, last_checkpoint

SWITCH = "switch"  # the copy of the checkpoint at the switch, beside the run's checkpoints
BRANCH = "branch-"  # branch k's folder: ``branch-<k>``, its checkpoints inside
RNG_STATES = "rng_state*.pth"  # left out of a branch's copy: its dropout draws follow its own seed

logger = logging.get_logger(__name__)


def check_branches(config: Mapping[str, Any]) -> None:
    """Refuses, before any data is read, branches without a next-item phase to branch, and
    a time budget (it would end branch 1 and leave the others none)."""
    branches = config["next_item_branches"]
    if branches == 1:
        return
    if not 0 < config["next_item_share"] < 1:
        raise ConfigError(
            f"next_item_branches: {branches} repeats a run's next-item phase from its Cloze phase's end; "
            f"it needs next_item_share between 0 and 1 (exclusive), got {config['next_item_share']}"
        )
    if config["time_budget"] is not None:
        raise ConfigError(
            f"next_item_branches: {branches} trains the next-item phase {branches} times; give the steps "
            f"(max_steps), not time_budget ({config['time_budget']})"
        )


class SwitchCheckpoint(TrainerCallback):
    """Saves a checkpoint at the step a phased run switches to next-item rows and copies it
    to ``<checkpoints>/switch``, where rotation leaves it: the branches start from it. A run
    killed between the save and the copy makes the copy when it resumes."""

    def __init__(self, switch_step: int):
        self.switch_step = switch_step

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step >= self.switch_step:
            self._copy(args, state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.switch_step:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.switch_step:
            self._copy(args, state)

    def _copy(self, args, state: TrainerState) -> None:
        switch = Path(args.output_dir) / SWITCH
        source = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.switch_step}"
        if state.is_world_process_zero and not switch.is_dir() and source.is_dir():
            copy_atomically(source, switch)


def copy_atomically(source: Path, target: Path, ignore: Sequence[str] = ()) -> None:
    """``source`` copied to ``target``, which appears whole or not at all."""
    partial = target.with_name(f".partial-{target.name}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns(*ignore))
    os.replace(partial, target)


def start_branch(switch: Path, checkpoints: Path) -> str:
    """The checkpoint a branch trains from: its own newest, or else the switch checkpoint
    copied in without the RNG states, its best model forgotten (a branch keeps the best of
    its own evaluations)."""
    resumed = last_checkpoint(checkpoints)
    if resumed is not None:
        return resumed
    if not switch.is_dir():
        raise FileNotFoundError(f"{switch}: the checkpoint at the switch to next-item rows, where branches start, is missing")
    checkpoints.mkdir(parents=True, exist_ok=True)
    state = TrainerState.load_from_json(str(switch / TRAINER_STATE_NAME))
    start = checkpoints / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
    copy_atomically(switch, start, ignore=[RNG_STATES])
    state.best_metric, state.best_model_checkpoint, state.best_global_step = None, None, None
    state.save_to_json(str(start / TRAINER_STATE_NAME))
    return str(start)


def mean_weights(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts (in float32, returned in each tensor's dtype)."""
    return {
        name: torch.stack([state[name].float() for state in states]).mean(0).to(tensor.dtype)
        for name, tensor in states[0].items()
    }


def train_branches(
    trainer: Bert4RecTrainer,
    config: Mapping[str, Any],
    build_trainer: Callable[[Mapping[str, Any], Path], Bert4RecTrainer],
) -> None:
    """Trains branches 2..``next_item_branches`` of the run whose branch 1 ``trainer`` has
    trained, then loads the mean of every branch's (best) weights into ``trainer.model``.
    ``build_trainer(config, folder)``: a Trainer for ``config`` whose checkpoints go to
    ``folder/checkpoints``."""
    checkpoints = Path(trainer.args.output_dir)
    switch = checkpoints / SWITCH
    if not switch.is_dir() and trainer.state.global_step < trainer.switch_step():
        logger.warning(
            f"training ended at step {trainer.state.global_step}, before the switch to next-item rows at step "
            f"{trainer.switch_step()} (early stopping): no next-item phase to branch; the model is the run's own"
        )
        return
    models = [trainer.model]
    for branch in range(2, config["next_item_branches"] + 1):
        folder = checkpoints / f"{BRANCH}{branch}"
        branch_trainer = build_trainer({**config, "seed": config["seed"] + branch - 1}, folder)
        branch_checkpoints = Path(branch_trainer.args.output_dir)
        if branch_trainer.is_world_process_zero():
            start_branch(switch, branch_checkpoints)
        branch_trainer.accelerator.wait_for_everyone()
        branch_trainer.train(resume_from_checkpoint=last_checkpoint(branch_checkpoints))
        models.append(branch_trainer.model)
    trainer.model.load_state_dict(mean_weights([model.state_dict() for model in models]))


def remove_branches(checkpoints: Path) -> None:
    """Deletes the switch copy and the branches' folders, once the run's model is saved."""
    for folder in (*checkpoints.glob(SWITCH), *checkpoints.glob(f".partial-{SWITCH}"), *checkpoints.glob(f"{BRANCH}*")):
        discarded = folder.with_name(f".discarded-{folder.name}")
        os.replace(folder, discarded)
        shutil.rmtree(discarded, ignore_errors=True)
