"""Teachers for knowledge distillation: the soft targets a student learns beside its labels.

Independently trained BERT4Rec runs make errors of their own: on Amazon Beauty the mean of
three seeds' scores ranks the test items 16% better (NDCG@10) than each model alone
(benchmarks/README.md, "Seeds disagree"). A :class:`TeacherEnsemble` of such runs gives each
training target the softmax of their mean score, which the student's CE loss mixes into its
one-hot target with ``config.distillation_weight`` (``losses_bert4rec.cloze_loss``): one model
learns what the runs know together (Hinton et al., 2015).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from transformers.utils import logging

from ..configuration_bert4rec import NUM_SPECIAL_TOKENS
from ..modeling_bert4rec import Bert4RecForMaskedItemPrediction
from ..scoring_bert4rec import item_vectors
from ..speedups_bert4rec import hidden_states_at
from ..tokenization_bert4rec import ItemTokenizer
from .config import ConfigError
from .trainer import last_checkpoint

TEACHERS = "teachers"  # <output_dir>/teachers/teacher-<k>: the runs distill_teachers trains first
TEACHER = "teacher-"
FINISHED_RUN = "metrics.json"  # written last by a run that saved its model
# what makes a teacher of the run's configuration, beside its seed: no teachers of its own, and its last
# weights, not their mean (average_weights_share; the teachers' mean score already averages several runs)
TEACHER_SETTINGS = {
    "distill_teachers": 0, "distillation_weight": 0.0, "average_weights_share": 0.0, "average_weights_every": None,
    "teacher_overrides": {},
}  # fmt: skip
# Beside the keys that leave the prepared data alone (NOT_DATA_KEYS), what a teacher's resolved configuration
# may change (teacher_overrides): its training rows, schedule, evaluation and recipe. The data and its item
# vocabulary are the run's, whose ids the student reads the teachers' scores by.
TEACHER_MAY_CHANGE = (
    "max_seq_length", "train_stride", "train_prefixes", "next_item_share", "next_item_branches", "group_by_length",
    "time_budget", "schedule", "valid_metric", "eval_mode", "topk", "exclude_history", "truncate_ranks", "eval_loss",
    "recipe", *TEACHER_SETTINGS,
)  # fmt: skip

logger = logging.get_logger(__name__)


def check_distillation(config: Mapping[str, Any]) -> None:
    """Refuses, before any data is read, teachers without a weight to mix them in, a weight
    without teachers, and both kinds of teacher at once."""
    weight, folders, runs = config["distillation_weight"], config["distill_from"], config["distill_teachers"]
    if folders and runs:
        raise ConfigError(
            f"give teachers one way: distill_from ({len(folders)} folders) or distill_teachers ({runs} runs), not both"
        )
    if weight and not (folders or runs):
        raise ConfigError(
            f"distillation_weight: {weight} mixes teachers' soft targets into the loss; name the teachers "
            "(distill_from: [model folders]) or have the run train them (distill_teachers: N)"
        )
    if (folders or runs) and not weight:
        raise ConfigError(
            "teachers are given (distill_from / distill_teachers) but distillation_weight is 0, so the loss would "
            "never read them; set distillation_weight in (0, 1], e.g. 0.5"
        )
    overrides = config["teacher_overrides"]
    if overrides and not runs:
        raise ConfigError(
            f"teacher_overrides: {overrides} sets how the run trains its own teachers, but it trains none; "
            "give distill_teachers: N (teachers named by distill_from are trained already)"
        )
    check_teacher_overrides(overrides)


def check_teacher_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuses a teacher setting the run decides itself: the teachers' seeds, their own
    distillation and weight averaging."""
    for key in overrides:
        if key == "seed":
            raise ConfigError("teacher_overrides: 'seed' is the run's: its teachers train on seeds seed + 1, seed + 2, ...")
        if key in TEACHER_SETTINGS or key == "distill_from":
            raise ConfigError(
                f"teacher_overrides: '{key}' is set by the run for its teachers (no teachers of their own, their "
                f"last weights): {TEACHER_SETTINGS}"
            )


def check_teacher_data(config: Mapping[str, Any], teacher: Mapping[str, Any]) -> None:
    """Refuses teachers whose configuration (``teacher``: the run's ``config`` with ``teacher_settings``,
    resolved) would learn other data or items than the run: a setting outside the model, the Cloze
    task, the training rows and the schedule that ``teacher_overrides`` (or a recipe it names) changes."""
    from .pipeline import NOT_DATA_KEYS  # the run's module imports this one

    changed = [
        f"{key}: {teacher.get(key)!r} where the run has {config[key]!r}"
        for key in config
        if key not in NOT_DATA_KEYS and key not in TEACHER_MAY_CHANGE and teacher.get(key) != config[key]
    ]
    if changed:
        raise ConfigError(
            f"teacher_overrides: the teachers would train with {'; '.join(changed)}. They must learn the run's data "
            "and items, whose ids the run reads their scores by (they may change model, Cloze, training-row and "
            "schedule settings: max_steps, next_item_share, hidden_size, a recipe, ...)"
        )


def teacher_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What each of the run's teachers trains with in place of the run's own settings, its seed aside:
    ``teacher_overrides``, then what makes a teacher (``TEACHER_SETTINGS``)."""
    return {**config["teacher_overrides"], **TEACHER_SETTINGS}


def check_teachers_folder(output_dir: str | os.PathLike, overwrite: bool, resume: bool) -> None:
    """A new run (neither ``overwrite`` nor ``resume``) refuses a folder holding another run's
    teachers: they are an unfinished run's work, which ``--resume`` continues."""
    folder = Path(output_dir) / TEACHERS
    if folder.is_dir() and not (overwrite or resume):
        raise FileExistsError(
            f"{folder} holds the teachers of an earlier run; pass resume=True (--resume) to continue it, "
            "or overwrite=True (--overwrite) to train them again"
        )


def finished_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run that saved its model and left no checkpoint to resume."""
    from .pipeline import CHECKPOINTS  # the run's module imports this one

    return (Path(folder) / FINISHED_RUN).is_file() and last_checkpoint(Path(folder) / CHECKPOINTS) is None


def train_teachers(
    config: Mapping[str, Any],
    output_dir: str | os.PathLike,
    resume: bool,
    run: Callable[[Mapping[str, Any], Path, bool], Any],
    keep: Callable[[Mapping[str, Any], Path], Any],
) -> list[Path]:
    """Trains the ``distill_teachers`` runs: the run's own configuration (``teacher_settings``) on
    seeds ``seed + 1``, ``seed + 2``, ..., each in ``<output_dir>/teachers/teacher-<k>`` by
    ``run(overrides, folder, resume)``. A resumed run keeps its finished teachers, once
    ``keep(overrides, folder)`` has checked them, and resumes an interrupted one. Returns their
    folders."""
    from .pipeline import CHECKPOINTS  # the run's module imports this one

    folders = []
    count = config["distill_teachers"]
    for k in range(1, count + 1):
        folder = Path(output_dir) / TEACHERS / f"{TEACHER}{k}"
        folders.append(folder)
        overrides = {"seed": config["seed"] + k, **teacher_settings(config)}
        if resume and finished_run(folder):
            keep(overrides, folder)
            logger.info(f"teacher {k} of {count}: trained already ({folder})")
            continue
        own = f", teacher_overrides {config['teacher_overrides']}" if config["teacher_overrides"] else ""
        logger.info(f"teacher {k} of {count}: seed {config['seed'] + k}{own}, {folder}")
        unfinished = last_checkpoint(folder / CHECKPOINTS) is not None
        run(overrides, folder, resume and unfinished)
    return folders


class TeacherEnsemble:
    """Frozen models whose mean score, each read as its own loss reads it (divided by its
    ``softmax_temperature``), gives the soft targets of the positions a student is trained on.

    Args:
        models: trained models over one item vocabulary; put in evaluation mode and frozen.
    """

    def __init__(self, models: Sequence[Bert4RecForMaskedItemPrediction]):
        if not models:
            raise ValueError("a teacher ensemble needs at least one model")
        sizes = {model.config.vocab_size for model in models}
        if len(sizes) > 1:
            raise ValueError(f"teachers must share one item vocabulary, got vocab_size {sorted(sizes)}")
        self.models = [model.eval().requires_grad_(False) for model in models]
        self._items: torch.Tensor | None = None  # every teacher's item vectors side by side (probabilities)

    @classmethod
    def from_folders(cls, folders: Sequence[str | os.PathLike], tokenizer: ItemTokenizer) -> TeacherEnsemble:
        """The models saved in ``folders``, each checked to hold ``tokenizer``'s item vocabulary
        (a teacher of another data set, or of another split's items, would teach wrong ids)."""
        models = []
        for folder in folders:
            if not (Path(folder) / "config.json").is_file():
                raise FileNotFoundError(f"teacher {folder} is not a saved model folder (no config.json)")
            vocabulary = ItemTokenizer.from_pretrained(folder)
            if vocabulary != tokenizer:
                raise ValueError(
                    f"teacher {folder} was trained on another item vocabulary ({vocabulary.num_items} items against "
                    f"the run's {tokenizer.num_items}, or the same items under other ids): train it on the run's data"
                )
            models.append(Bert4RecForMaskedItemPrediction.from_pretrained(folder))
        return cls(models)

    def to(self, device: torch.device | str) -> TeacherEnsemble:
        self.models = [model.to(device) for model in self.models]
        return self

    @torch.no_grad()
    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, predicted: torch.Tensor
    ) -> torch.Tensor:
        """``(M, num_items)``: the softmax over the real items of the teachers' mean score at
        each ``predicted`` position of the batch (row-major, as the model's loss reads them). The
        teachers' last layers run at those positions only (``hidden_states_at``)."""
        rows = input_ids[predicted.nonzero()[:, 0]]
        count = len(self.models)
        scorers = [
            model.item_scorer(
                hidden_states_at(model.bert4rec, input_ids, predicted, attention_mask=attention_mask), rows, exact=False
            ).divided(model.config.softmax_temperature * count)
            for model in self.models
        ]
        # The mean score in one matrix product: each teacher's [state, 1] beside the others', against
        # its [item embedding, bias]. Summing separate score matrices cost three passes over each
        # (the bias's broadcast, the sum, the division) for every teacher.
        queries = torch.cat([scorer.query_vectors().float() for scorer in scorers], dim=1)
        if self._items is None or self._items.device != queries.device:  # the teachers are frozen: made once
            self._items = torch.cat([
                item_vectors(scorer.weight[NUM_SPECIAL_TOKENS:], scorer.bias[NUM_SPECIAL_TOKENS:]).float()
                for scorer in scorers
            ], dim=1)  # fmt: skip
        with torch.autocast(device_type=queries.device.type, enabled=False):  # scores in float32, as ItemScorer's
            mean = queries @ self._items.t()
        for scorer in scorers:
            scorer.add_seen_offset(mean)
        return F.softmax(mean, dim=1)


__all__ = [
    "TEACHERS", "TEACHER_SETTINGS", "TeacherEnsemble", "finished_run", "check_distillation", "check_teacher_data",
    "check_teacher_overrides", "check_teachers_folder", "teacher_settings", "train_teachers",
]  # fmt: skip
