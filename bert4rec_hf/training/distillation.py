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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from transformers.utils import logging

from ..configuration_bert4rec import MASK_TOKEN_ID, PAD_TOKEN_ID
from ..data.collators import left_pad
from ..modeling_bert4rec import Bert4RecForMaskedItemPrediction
from ..speedups_bert4rec import hidden_states_at
from ..tokenization_bert4rec import ItemTokenizer
from .config import ConfigError
from .trainer import last_checkpoint

TEACHERS = "teachers"  # <output_dir>/teachers/teacher-<k>: the runs distill_teachers trains first
TEACHER = "teacher-"
FINISHED_RUN = "metrics.json"  # written last by a run that saved its model
# what makes a teacher of the run's configuration, beside its seed: no teachers of its own
TEACHER_SETTINGS = {"distill_teachers": 0, "distillation_weight": 0.0}
# a remembered row's key: its ids weighted by these multipliers, drawn once from this seed, each below
# 2**24 so that no sum overflows (ids below 2**31 over up to 256 positions)
ROW_KEY_SEED, ROW_KEY_BOUND = 24, 2**24

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
    """Trains the ``distill_teachers`` runs: the run's own configuration on seeds ``seed + 1``,
    ``seed + 2``, ..., without teachers, each in ``<output_dir>/teachers/teacher-<k>`` by
    ``run(overrides, folder, resume)``. A resumed run keeps its finished teachers, once
    ``keep(overrides, folder)`` has checked them, and resumes an interrupted one. Returns their
    folders."""
    from .pipeline import CHECKPOINTS  # the run's module imports this one

    folders = []
    count = config["distill_teachers"]
    for k in range(1, count + 1):
        folder = Path(output_dir) / TEACHERS / f"{TEACHER}{k}"
        folders.append(folder)
        overrides = {"seed": config["seed"] + k, **TEACHER_SETTINGS}
        if resume and finished_run(folder):
            keep(overrides, folder)
            logger.info(f"teacher {k} of {count}: trained already ({folder})")
            continue
        logger.info(f"teacher {k} of {count}: seed {config['seed'] + k}, {folder}")
        unfinished = last_checkpoint(folder / CHECKPOINTS) is not None
        run(overrides, folder, resume and unfinished)
    return folders


def row_keys(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(n,)`` keys of left-padded ``rows``, the same at any padded width: the ids weighted by
    ``weights`` counted from the right ([PAD] is 0, so padding adds nothing)."""
    return (rows * weights[weights.shape[0] - rows.shape[1]:]).sum(dim=1)


@dataclass
class RememberedRows:
    """Teachers' encoder states at the last position of rows masked there alone, computed once.

    Next-item rows (a window ending at each training item, masked at its last item) are the
    same in every epoch, and the teachers are frozen and run without dropout, so their states
    at those rows are too: the encoders need to run once per row, not once per row and epoch.
    ``keys`` (sorted, distinct) find a batch's rows, ``rows`` (left-padded to the full width)
    confirm each match, and ``states[k]`` holds teacher ``k``'s state of each row."""

    weights: torch.Tensor
    keys: torch.Tensor
    rows: torch.Tensor
    states: list[torch.Tensor]

    def to(self, device: torch.device | str) -> RememberedRows:
        return RememberedRows(*(tensor.to(device) for tensor in (self.weights, self.keys, self.rows)), [
            states.to(device) for states in self.states
        ])  # fmt: skip

    def find(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, predicted: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(found, index)``: which rows of the batch are remembered (the same ids, padding and
        attention, predicted at their last position alone) and where (``index``, valid where found)."""
        width, stored_width = input_ids.shape[1], self.rows.shape[1]
        if width > stored_width:
            nowhere = torch.zeros(len(input_ids), dtype=torch.long, device=input_ids.device)
            return nowhere.bool(), nowhere
        keys = row_keys(input_ids, self.weights)
        index = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        stored = self.rows[index]
        found = self.keys[index].eq(keys) & stored[:, stored_width - width:].eq(input_ids).all(dim=1)
        found &= stored[:, : stored_width - width].eq(PAD_TOKEN_ID).all(dim=1)
        found &= predicted[:, -1] & predicted.sum(dim=1).eq(1)
        if attention_mask is not None:
            found &= attention_mask.bool().eq(input_ids.ne(PAD_TOKEN_ID)).all(dim=1)
        return found, index


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
        self.remembered: RememberedRows | None = None

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
        if self.remembered is not None:
            self.remembered = self.remembered.to(device)
        return self

    @torch.no_grad()
    def remember_next_item_rows(self, histories: Sequence[Any], max_seq_length: int, batch_size: int = 256) -> None:
        """Computes, once, each teacher's state at the last position of every next-item row of
        ``histories`` (as ``DataCollatorForMaskedItemPrediction`` masks a ``last_item_only`` row of
        ``max_seq_length``); :meth:`probabilities` then reads a remembered row's states instead of
        running the encoders. The states are computed in a fixed order (distinct rows by length, in
        batches of ``batch_size``), so a resumed run remembers the same values to the bit."""
        self.remembered = None
        if not len(histories):
            return
        device = self.models[0].device
        items = left_pad(histories, max_seq_length)
        items[:, -1] = MASK_TOKEN_ID
        items = F.pad(items, (max_seq_length - items.shape[1], 0), value=PAD_TOKEN_ID).to(device)
        generator = torch.Generator().manual_seed(ROW_KEY_SEED)
        weights = torch.randint(1, ROW_KEY_BOUND, (max_seq_length,), generator=generator).to(device)
        keys, inverse = torch.unique(row_keys(items, weights), return_inverse=True)
        count = len(items)
        first = torch.full((len(keys),), count, device=device).scatter_reduce_(
            0, inverse, torch.arange(count, device=device), "amin"
        )  # one row per key; a colliding other row is not found (its ids differ) and is computed as it comes
        rows = items[first]
        lengths = rows.ne(PAD_TOKEN_ID).sum(dim=1)
        states = [torch.empty(len(rows), model.config.hidden_size, dtype=model.dtype, device=device) for model in self.models]
        for chunk in lengths.argsort(stable=True).split(batch_size):
            window = rows[chunk, max_seq_length - int(lengths[chunk].max()):]
            last = torch.zeros_like(window, dtype=torch.bool)
            last[:, -1] = True
            for model, remembered in zip(self.models, states, strict=True):
                remembered[chunk] = hidden_states_at(model.bert4rec, window, last, attention_mask=window.ne(PAD_TOKEN_ID))
        self.remembered = RememberedRows(weights, keys, rows, states)

    def _states(
        self,
        k: int,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        predicted: torch.Tensor,
        found: torch.Tensor | None,
        index: torch.Tensor | None,
    ) -> torch.Tensor:
        """Teacher ``k``'s encoder states at the ``predicted`` positions (row-major): remembered
        ones where ``found``, the others computed with the last layer at those positions only
        (``hidden_states_at``)."""
        base_model = self.models[k].bert4rec
        if found is None or not found.any():
            return hidden_states_at(base_model, input_ids, predicted, attention_mask=attention_mask)
        owners = predicted.nonzero()[:, 0]
        states = self.remembered.states[k][index[owners]]
        missing = ~found
        if missing.any():
            mask = None if attention_mask is None else attention_mask[missing]
            states[~found[owners]] = hidden_states_at(base_model, input_ids[missing], predicted[missing], attention_mask=mask)
        return states

    @torch.no_grad()
    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, predicted: torch.Tensor
    ) -> torch.Tensor:
        """``(M, num_items)``: the softmax over the real items of the teachers' mean score at
        each ``predicted`` position of the batch (row-major, as the model's loss reads them). The
        teachers' states come from :meth:`remember_next_item_rows` where it holds the row, else
        from their encoders, whose last layers run at those positions only."""
        rows = input_ids[predicted.nonzero()[:, 0]]
        found, index = (None, None) if self.remembered is None else self.remembered.find(input_ids, attention_mask, predicted)
        total = None
        for k, model in enumerate(self.models):
            hidden = self._states(k, input_ids, attention_mask, predicted, found, index)
            scorer = model.item_scorer(hidden, rows, exact=False).divided(model.config.softmax_temperature)
            scores = scorer.range().float()
            total = scores if total is None else total.add_(scores)
        return F.softmax(total / len(self.models), dim=1)


__all__ = ["TEACHERS", "TEACHER_SETTINGS", "RememberedRows", "TeacherEnsemble", "finished_run", "check_distillation", "check_teachers_folder", "train_teachers"]
