"""``transformers.Trainer`` wired for BERT4Rec's ranking evaluation."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput, has_length, rotate_checkpoints
from transformers.utils import logging

from ..configuration_bert4rec import IGNORE_INDEX
from ..evaluation.evaluator import RankingEvaluator
from ..scoring_bert4rec import LogSumExp
from ..speedups_bert4rec import hidden_states_at, use_cpu_speedups
from .weight_averaging import WeightAverage

if TYPE_CHECKING:
    from .distillation import TeacherEnsemble

logger = logging.get_logger(__name__)

STAGING = ".partial-checkpoint"  # a checkpoint being written, beside the complete ones
NEXT_ITEM_SEED_OFFSET = 1 << 20  # the next-item rows' shuffles are seeded apart from the Cloze rows' (seed + epoch each)


def cloze_step_count(steps: int, next_item_share: float) -> int:
    """Steps on the Cloze rows before a phased run (``next_item_share``) switches to next-item rows."""
    return round((1 - next_item_share) * steps)


class Bert4RecTrainer(Trainer):
    """A ``Trainer`` whose evaluation reports ranking metrics (``eval_ndcg@10``, ...).

    Each evaluation batch is reduced to one rank per target inside
    :meth:`prediction_step`, where the batch's ``input_ids`` are still at hand
    (history exclusion and sampled negatives need them), so only ranks are
    gathered across processes: no N x vocabulary score matrix is ever stored,
    not even one batch's: the catalog is scanned in blocks (of
    ``model.config.item_chunk_size`` items when set).
    ``compute_metrics`` defaults to the current ``evaluator``'s, and
    ``metric_for_best_model="ndcg@10"`` works with ``load_best_model_at_end``.
    ``predict()`` returns these ranks as ``predictions``.

    ``TrainingArguments(train_sampling_strategy="group_by_length")`` draws each
    training batch from windows of similar length (:class:`SimilarLengthSampler`,
    vectorised and seeded per epoch, so a resumed run draws the same batches).

    ``next_item_dataset`` and ``next_item_share``: the last ``next_item_share`` of
    the run's steps train on ``next_item_dataset`` (next-item rows: windows ending at
    every training item, ``leave_one_out(next_item_rows=True)``), each masked at its
    last item alone, after the Cloze task on ``train_dataset``: BERT's pre-training
    then fine-tuning, with the model and optimizer carried through
    (:class:`NextItemPhaseSampler`). An epoch stays one pass's worth of steps over
    ``train_dataset``.

    Checkpoints are written to a staging folder and renamed into place, so a
    kill at any moment leaves complete ``checkpoint-<step>`` folders only;
    ``train(resume_from_checkpoint=True)`` continues from the newest complete
    one (see :meth:`train`).

    Args:
        evaluator: how targets are ranked (default ``RankingEvaluator()``: full
            ranking, history items kept as candidates).
        eval_data_collator: collator of evaluation and prediction batches
            (``DataCollatorForNextItemPrediction``); training batches keep
            ``data_collator`` (the Cloze masking). Defaults to ``data_collator``.
        eval_loss: also report ``eval_loss`` (the training loss on the
            evaluated targets; cross-entropy for CE and SSM models). Ranks alone
            are cheaper: in sampled modes the loss is the only full-catalog pass.
        next_item_dataset: the next-item rows of the run's last steps (needed
            when ``next_item_share`` > 0).
        next_item_share: the share of the run's optimizer steps, at its end, that
            train on ``next_item_dataset``; 0 (default): the Cloze task throughout.
        teachers: trained models whose soft targets the training loss mixes into its
            labels with ``model.config.distillation_weight``, from the switch to next-item
            rows on (from the first step without a next-item phase).
        *args, **kwargs: as for ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        evaluator: RankingEvaluator | None = None,
        eval_data_collator: Callable | None = None,
        eval_loss: bool = True,
        next_item_dataset: datasets.Dataset | None = None,
        next_item_share: float = 0.0,
        teachers: TeacherEnsemble | None = None,
        **kwargs: Any,
    ):
        if isinstance(next_item_share, bool) or not isinstance(next_item_share, (int, float)) or not 0 <= next_item_share <= 1:
            raise ValueError(f"next_item_share must be a share of the steps in [0, 1], got {next_item_share!r}")
        if next_item_share > 0 and next_item_dataset is None:
            raise ValueError("next_item_share > 0 trains its last steps on next_item_dataset; give it")
        self.next_item_dataset = next_item_dataset if next_item_share > 0 else None
        self.next_item_share = float(next_item_share)
        self.teachers = teachers
        self.evaluator = evaluator if evaluator is not None else RankingEvaluator()
        self.eval_data_collator = eval_data_collator
        self.eval_loss = eval_loss
        self._staging = False
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = self._evaluator_metrics
        model = kwargs.get("model", args[0] if args else None)
        if model is not None:
            use_cpu_speedups(model)
        super().__init__(*args, **kwargs)
        logger.info(f"Ranking evaluation: {self.evaluator.describe()}")

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any):
        """``Trainer.train``, resumable to the bit on CPU.

        ``resume_from_checkpoint=True`` takes the newest complete checkpoint in
        ``args.output_dir`` (an error names the folder when there is none). The
        Trainer restores weights, optimizer, scheduler, RNG states and the
        callbacks' states; here the masking collator (``batches_made``, see
        ``DataCollatorForMaskedItemPrediction.seed``) continues at the batch the
        checkpoint stopped at, and a :class:`WeightAverage` (``average_weights_share``) continues
        the sum its checkpoint holds. A checkpoint saved when training had ended (its
        last step, early stopping, the time budget) is not trained further: its
        state and best model are restored, ready for evaluation and saving.
        """
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise FileNotFoundError(f"nothing to resume in {self.args.output_dir}: it holds no complete checkpoint")
        state = None
        if resume_from_checkpoint:
            state = TrainerState.load_from_json(os.path.join(resume_from_checkpoint, TRAINER_STATE_NAME))
        if hasattr(self.data_collator, "batches_made"):
            steps = state.global_step if state is not None else 0
            self.data_collator.batches_made = steps * self.args.gradient_accumulation_steps
        average = self.weight_average()
        if average is not None:
            average.reset()
            if resume_from_checkpoint:
                average.load(resume_from_checkpoint, state)
        if state is not None and _training_ended(state):
            return self._restore_ended_training(resume_from_checkpoint, state)
        return super().train(resume_from_checkpoint=resume_from_checkpoint or None, trial=trial, **kwargs)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any):
        """``Trainer.compute_loss``, with the teachers' soft targets of the batch's labelled
        positions once the run distils (``teachers``)."""
        phased = self.next_item_share > 0
        if self.teachers is not None and model.training and (not phased or self.state.global_step >= self.switch_step()):
            inputs = self.with_soft_targets(inputs)
        return super().compute_loss(model, inputs, *args, **kwargs)

    def with_soft_targets(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``inputs`` with the teachers' soft targets of its labelled positions (``teacher_probabilities``)."""
        predicted = inputs["labels"].ne(IGNORE_INDEX)
        teachers = self.teachers.to(inputs["input_ids"].device)
        probabilities = teachers.probabilities(inputs["input_ids"], inputs.get("attention_mask"), predicted)
        return {**inputs, "teacher_probabilities": probabilities}

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """A ``model_init`` model (hyper-parameter search) gets the CPU speed paths too."""
        return use_cpu_speedups(super().call_model_init(trial))

    def _restore_ended_training(self, checkpoint: str, state: TrainerState) -> TrainOutput:
        """The end of a run whose training had finished before it was killed."""
        logger.info(f"{checkpoint}: training had ended at step {state.global_step}; restoring it without training")
        self.state = state
        self._load_from_checkpoint(checkpoint)
        if self.args.load_best_model_at_end and state.best_model_checkpoint and os.path.isdir(state.best_model_checkpoint):
            self._load_best_model()
        average = self.weight_average()
        if average is not None:
            average.apply(self.model, state)
        return TrainOutput(state.global_step, float("nan"), {})

    def _get_output_dir(self, trial: Any) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING) if self._staging else run_dir

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint, written into a staging folder and renamed to
        ``checkpoint-<step>`` once complete: a kill mid-write leaves the earlier
        checkpoints as they were and nothing under a name a resume trusts.
        (Rotation then deletes older checkpoints in place; a half-deleted one is
        never the newest nor the best, the two a resume reads.)"""
        run_dir = self._get_output_dir(trial)
        staging_root = Path(run_dir) / STAGING
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging_root, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        staged, final = staging_root / name, Path(run_dir) / name
        if self.state.best_model_checkpoint == str(staged):
            self.state.best_model_checkpoint = str(final)
        self.accelerator.wait_for_everyone()  # every process has written its RNG state
        if self.args.should_save:
            self.state.save_to_json(str(staged / TRAINER_STATE_NAME))  # with the final best-checkpoint path
            average = self.weight_average()
            if average is not None:
                average.save(staged)
            if final.exists():  # the same step saved again (a time budget's last save)
                discarded = Path(run_dir) / f".discarded-{name}"
                os.replace(final, discarded)
                shutil.rmtree(discarded, ignore_errors=True)
            os.replace(staged, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def weight_average(self) -> WeightAverage | None:
        """The run's :class:`WeightAverage` callback (``average_weights_share``), if it has one:
        its sum travels with every checkpoint, and a resumed run continues it."""
        return next((cb for cb in self.callback_handler.callbacks if isinstance(cb, WeightAverage)), None)

    def _evaluator_metrics(self, eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
        """The metrics of whichever evaluator is set now, so a ``trainer.evaluator``
        swapped after construction also computes the metrics."""
        return self.evaluator.compute_metrics(eval_pred, compute_result)

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """With a next-item phase, one loader over the Cloze rows followed by the
        next-item rows (flagged ``last_item_only`` for the collator), drawn by
        :class:`NextItemPhaseSampler`; otherwise the Trainer's."""
        if self.next_item_dataset is None:
            return super().get_train_dataloader()
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        rows = datasets.concatenate_datasets([
            self._remove_unused_columns(dataset, "Training").add_column("last_item_only", [flag] * len(dataset))
            for dataset, flag in ((self.train_dataset, False), (self.next_item_dataset, True))
        ])  # fmt: skip
        return self._get_dataloader(
            rows, "Training", self._train_batch_size, sampler_fn=lambda _: self._next_item_phase_sampler(), is_training=True
        )

    def _set_signature_columns_if_needed(self) -> None:
        """The model's inputs, and the rows' ``last_item_only`` flag the masking collator reads."""
        super()._set_signature_columns_if_needed()
        if "last_item_only" not in self._signature_columns:
            self._signature_columns.append("last_item_only")

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        """``group_by_length`` reads the windows' lengths off the Arrow column at once
        (transformers' own sampler indexes every row in Python) and keeps a resumed
        run's batches; every other strategy is the Trainer's."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        lengths = history_lengths(dataset) if self.args.train_sampling_strategy == "group_by_length" else None
        if lengths is None or self.args.world_size > 1:
            return super()._get_train_sampler(train_dataset)
        return SimilarLengthSampler(lengths, self._rows_per_step(), self._data_seed())

    def _data_seed(self) -> int:
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def _rows_per_step(self) -> int:
        """Training rows one optimizer step reads on this process."""
        return self.args.train_batch_size * self.args.gradient_accumulation_steps

    def _next_item_phase_sampler(self) -> NextItemPhaseSampler:
        """The two phases' samplers (each ``group_by_length``'s or a seeded shuffle) and the
        row at which the last ``next_item_share`` of the run's steps begins: the steps are
        ``max_steps``, or ``num_train_epochs`` passes' worth over the Cloze rows."""
        rows_per_step = self._rows_per_step() * self.args.world_size
        seed, grouped = self._data_seed(), self.args.train_sampling_strategy == "group_by_length"

        def phase(dataset: datasets.Dataset, seed: int) -> torch.utils.data.Sampler[int]:
            if grouped:
                return SimilarLengthSampler(history_lengths(dataset), rows_per_step, seed)
            return SeededShuffle(len(dataset), seed)

        return NextItemPhaseSampler(
            phase(self.train_dataset, seed), phase(self.next_item_dataset, seed + NEXT_ITEM_SEED_OFFSET),
            switch=self.switch_step() * rows_per_step, epoch_rows=self._steps_per_epoch() * rows_per_step,
        )  # fmt: skip

    def _steps_per_epoch(self) -> int:
        """Optimizer steps in one pass over the Cloze rows (``train_dataset``)."""
        return max(1, math.ceil(len(self.train_dataset) / (self._rows_per_step() * self.args.world_size)))

    def switch_step(self) -> int:
        """The step after which a phased run (``next_item_share``) trains on next-item rows: its
        steps are ``max_steps``, or ``num_train_epochs`` passes' worth over the Cloze rows."""
        steps = self.args.max_steps
        if steps <= 0:
            steps = math.ceil(self.args.num_train_epochs * self._steps_per_epoch())
        return cloze_step_count(steps, self.next_item_share)

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        """Rows in the dataset's order, whatever the training sampler: ``predict()``'s
        ranks line up with its rows (transformers' ``group_by_length`` would reorder
        them). ``evaluate()`` sets its own order (:meth:`_get_dataloader`)."""
        if eval_dataset is None or not has_length(eval_dataset) or self.args.world_size > 1:
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)

    def _get_dataloader(self, dataset: Any, description: str, *args: Any, **kwargs: Any):
        """Evaluation and prediction batches use ``eval_data_collator``: the
        Trainer itself has a single collator for every split. ``evaluate()``
        reads its rows longest history first (``predict()`` keeps the row order
        of its predictions)."""
        lengths = history_lengths(dataset) if description == "Evaluation" else None
        if lengths is not None:
            kwargs["sampler_fn"] = lambda _: _longest_first(lengths)
        if description == "Training" or self.eval_data_collator is None:
            return super()._get_dataloader(dataset, description, *args, **kwargs)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super()._get_dataloader(dataset, description, *args, **kwargs)
        finally:
            self.data_collator = train_collator

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Returns ``(loss, ranks, targets)``, both ``(B, T)`` with -100 where a
        row has no target (T = 1 for next-item evaluation), so the Trainer's
        gather pads, concatenates and drops duplicated tail samples row-wise.

        The ranks come from the encoder states at the labelled positions
        (``speedups_bert4rec.hidden_states_at``: the last layer runs only there;
        ``RankingEvaluator.rank_labelled_hidden_states``): a full ranking scans
        the catalog in cache-sized blocks, and the cross-entropy's normalizer
        is accumulated from the same blocks, so the loss costs no second pass.
        """
        inputs = self._prepare_inputs(inputs)
        whole_history = inputs.pop("history_ids", None)  # the user's whole history: not a model input
        labels = inputs.get("labels")
        if labels is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        unwrapped = self.accelerator.unwrap_model(model)
        with torch.no_grad(), self.accelerator.autocast():
            labelled = labels.ne(IGNORE_INDEX)
            selected = hidden_states_at(
                unwrapped.base_model, inputs["input_ids"], labelled, attention_mask=inputs.get("attention_mask")
            )
            targets = labels[labelled]
            row_inputs = inputs["input_ids"][labelled.nonzero()[:, 0]]  # each target's own model input
            if prediction_loss_only:
                return self._masked_item_loss(unwrapped, selected, targets, inputs, labelled, row_inputs), None, None
            fused = self.eval_loss and self.evaluator.sampler is None and unwrapped.config.loss_type != "BPR"
            normalizer = LogSumExp(selected.shape[0], selected.device) if fused else None
            ranks, rank_targets = self.evaluator.rank_labelled_hidden_states(
                unwrapped,
                selected,
                labels,
                inputs.get("input_ids"),
                chunk_size=getattr(unwrapped.config, "item_chunk_size", 0) or None,
                observer=(lambda rows, start, scores: normalizer.add(scores, rows)) if fused else None,
                history=whole_history,
            )
            loss = None
            if fused:
                target_scores = unwrapped.item_scorer(selected, row_inputs).targets(targets)
                loss = (normalizer.value - target_scores).mean()
            elif self.eval_loss:
                loss = self._masked_item_loss(unwrapped, selected, targets, inputs, labelled, row_inputs)
        return (loss.detach() if loss is not None else None), ranks, rank_targets

    @staticmethod
    def _masked_item_loss(model, selected, targets, inputs, labelled, row_inputs) -> torch.Tensor:
        negatives = inputs.get("negative_ids")
        negatives = negatives[labelled] if negatives is not None else None
        loss, _ = model.masked_item_loss(selected, targets, negatives, return_logits=False, input_ids=row_inputs)
        return loss.detach()


class CheckpointEvery(TrainerCallback):
    """A checkpoint every ``steps`` optimizer steps beside those of the evaluations, without
    evaluating: a killed run then loses at most ``steps`` steps, where evaluations are rare
    (a long run evaluated once at its end) or costly. It is the Trainer's own checkpoint, so
    ``--resume`` continues from it to the weights of the run never interrupted."""

    def __init__(self, steps: int):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"a checkpoint every N steps needs a positive N, got {steps!r}")
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.steps == 0:
            control.should_save = True
        return control


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder in ``folder`` (None when
    there is none): staging folders never carry that name, and a folder without
    its trainer state (left by an older version killed mid-write) is passed over."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = []
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if step.isdigit() and (path / TRAINER_STATE_NAME).is_file():
            steps.append((int(step), path))
    return str(max(steps)[1]) if steps else None


def _training_ended(state: TrainerState) -> bool:
    """Whether a checkpoint was saved as training ended (its last step, or a
    callback had stopped it: early stopping, a time budget)."""
    control = state.stateful_callbacks.get("TrainerControl") or {}
    stopped = (control.get("args") or {}).get("should_training_stop", False)
    return bool(stopped) or (state.max_steps > 0 and state.global_step >= state.max_steps)


def history_lengths(dataset: Any) -> np.ndarray | None:
    """Lengths of the ``input_ids`` lists of a ``datasets.Dataset``; ``None`` for other datasets."""
    if not isinstance(dataset, datasets.Dataset) or "input_ids" not in dataset.column_names:
        return None
    column = dataset.with_format("arrow")["input_ids"]
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        return None
    return pc.list_value_length(column).to_numpy(zero_copy_only=False)


def _longest_first(lengths: np.ndarray) -> list[int]:
    """Rows in decreasing history length: each batch is then only as wide as its
    own longest history (the collators pad to that), which on short-history
    catalogs such as Amazon Beauty (median 4 items) cuts the encoder's work
    several times. Metrics are averages over users and sampled negatives
    depend on each row alone, so the order changes nothing else."""
    return np.argsort(-lengths, kind="stable").tolist()


class EpochSampler(torch.utils.data.Sampler[int]):
    """A sampler told its epoch (``set_epoch``, as the Trainer and accelerate call it),
    so each epoch's draw is a function of the epoch: a resumed run draws it again."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class SeededShuffle(EpochSampler):
    """Every row once per epoch in a permutation seeded by ``seed + epoch``."""

    def __init__(self, rows: int, seed: int):
        self.rows = rows
        self.seed = seed

    def __len__(self) -> int:
        return self.rows

    def __iter__(self):
        return iter(torch.randperm(self.rows, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist())


class NextItemPhaseSampler(EpochSampler):
    """The rows of a run in two phases: the first ``switch`` rows it draws come from
    ``cloze`` (rows ``0 .. len(cloze) - 1`` of the loader's dataset), every later one
    from ``next_item`` (the rows after them). Each phase is a stream of its sampler's
    epochs (``set_epoch(0)``, ``1``, ...), so a phase longer or shorter than a pass
    over its rows still draws each row once per pass. The Trainer's epoch ``e`` is
    rows ``e * epoch_rows`` to ``(e + 1) * epoch_rows`` of the run's draw: a resumed
    run (which skips the batches it trained) draws what the uninterrupted one did."""

    def __init__(self, cloze: torch.utils.data.Sampler[int], next_item: torch.utils.data.Sampler[int], switch: int, epoch_rows: int):
        self.cloze = cloze
        self.next_item = next_item
        self.switch = int(switch)
        self.epoch_rows = int(epoch_rows)

    def __len__(self) -> int:
        return self.epoch_rows

    def __iter__(self):
        start, stop = self.epoch * self.epoch_rows, (self.epoch + 1) * self.epoch_rows
        cloze = _stream(self.cloze, start, max(0, min(stop, self.switch) - start))
        next_item = _stream(self.next_item, max(0, start - self.switch), max(0, stop - max(start, self.switch)))
        return iter(np.concatenate([cloze, next_item + len(self.cloze)]).tolist())


def _stream(sampler: torch.utils.data.Sampler[int], start: int, count: int) -> np.ndarray:
    """Rows ``start .. start + count - 1`` of ``sampler``'s epochs drawn one after the other."""
    rows = len(sampler)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    epoch, parts, needed = start // rows, [], count + start % rows
    while needed > 0:
        sampler.set_epoch(epoch)
        parts.append(np.fromiter(iter(sampler), dtype=np.int64, count=rows))
        needed, epoch = needed - rows, epoch + 1
    return np.concatenate(parts)[start % rows : start % rows + count]


class SimilarLengthSampler(EpochSampler):
    """Training rows in batches of similar length, each batch then padded only to
    its own longest window (the collators pad to that). On short-history logs most
    windows are far shorter than ``max_seq_length`` while nearly every random batch
    holds one full-length window, so this cuts the encoder's work several times.

    Each epoch is a seeded permutation (``seed + epoch``, as accelerate's seedable
    sampler) cut into spans of ``span_batches`` batches; a span is sorted by
    length, cut into batches, and the batches of the whole epoch are shuffled, so
    a batch's rows are still a random draw of its length band and the bands mix
    over the epoch."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, span_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.span_batches = span_batches

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        rows = len(self.lengths)
        order = torch.randperm(rows, generator=generator).numpy()
        span = np.arange(rows) // (self.batch_size * self.span_batches)
        order = order[np.lexsort((-self.lengths[order], span))]  # longest first within each span
        full = rows - rows % self.batch_size
        batches = order[:full].reshape(-1, self.batch_size)
        batches = batches[torch.randperm(len(batches), generator=generator).numpy()]
        return iter(np.concatenate([batches.ravel(), order[full:]]).tolist())


__all__ = ["Bert4RecTrainer", "CheckpointEvery", "EpochSampler", "NextItemPhaseSampler", "SeededShuffle", "SimilarLengthSampler", "last_checkpoint"]
