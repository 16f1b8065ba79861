"""``transformers.Trainer`` wired for BERT4Rec's ranking evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import Trainer
from transformers.utils import logging

from ..evaluation.evaluator import RankingEvaluator

logger = logging.get_logger(__name__)


class Bert4RecTrainer(Trainer):
    """A ``Trainer`` whose evaluation reports ranking metrics (``eval_ndcg@10``, ...).

    Each evaluation batch is reduced to one rank per target inside
    :meth:`prediction_step`, where the batch's ``input_ids`` are still at hand
    (history exclusion and sampled negatives need them), so only ranks are
    gathered across processes: no N x vocabulary score matrix is ever stored.
    With ``model.config.item_chunk_size`` set, not even one batch's score
    matrix is built: the catalog is scanned in chunks of that many items.
    ``compute_metrics`` defaults to the evaluator's, and
    ``metric_for_best_model="ndcg@10"`` works with ``load_best_model_at_end``.
    ``predict()`` returns these ranks as ``predictions``.

    Args:
        evaluator: how targets are ranked (default ``RankingEvaluator()``: full
            ranking, history items kept as candidates).
        eval_data_collator: collator of evaluation and prediction batches
            (``DataCollatorForNextItemPrediction``); training batches keep
            ``data_collator`` (the Cloze masking). Defaults to ``data_collator``.
        *args, **kwargs: as for ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        evaluator: RankingEvaluator | None = None,
        eval_data_collator: Callable | None = None,
        **kwargs: Any,
    ):
        self.evaluator = evaluator if evaluator is not None else RankingEvaluator()
        self.eval_data_collator = eval_data_collator
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = self.evaluator.compute_metrics
        super().__init__(*args, **kwargs)
        logger.info(f"Ranking evaluation: {self.evaluator.describe()}")

    def _get_dataloader(self, dataset: Any, description: str, *args: Any, **kwargs: Any):
        """Evaluation and prediction batches use ``eval_data_collator``: the
        Trainer itself has a single collator for every split."""
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
        gather pads, concatenates and drops duplicated tail samples row-wise."""
        inputs = self._prepare_inputs(inputs)
        unwrapped = self.accelerator.unwrap_model(model)
        chunk_size = getattr(unwrapped.config, "item_chunk_size", 0)
        if chunk_size and inputs.get("labels") is not None:
            return self._chunked_prediction_step(unwrapped, inputs, chunk_size, prediction_loss_only)
        loss, logits, _ = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        labels = inputs.get("labels")
        if prediction_loss_only or logits is None or labels is None:
            return loss, logits, labels
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        ranks, targets = self.evaluator.rank_labelled(logits, labels, inputs.get("input_ids"))
        return loss, ranks, targets

    def _chunked_prediction_step(
        self, model: nn.Module, inputs: dict[str, torch.Tensor | Any], chunk_size: int, loss_only: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``prediction_step`` for models with ``config.item_chunk_size``: the loss
        and the ranks come from the encoder states at the labelled positions,
        scanning the catalog in chunks, so no batch x catalog score matrix is
        built even for a catalog of millions of items."""
        labels = inputs["labels"]
        with torch.no_grad(), self.compute_loss_context_manager():
            hidden = model.base_model(inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
            labelled = labels.ne(-100)
            selected = hidden.last_hidden_state[labelled]
            negatives = inputs.get("negative_ids")
            negatives = negatives[labelled] if negatives is not None else None
            loss, _ = model.masked_item_loss(selected, labels[labelled], negatives, return_logits=False)
            if loss_only:
                return loss.detach(), None, None
            ranks, targets = self.evaluator.rank_labelled_hidden_states(
                model, selected, labels, inputs.get("input_ids"), chunk_size=chunk_size
            )
        return loss.detach(), ranks, targets


__all__ = ["Bert4RecTrainer"]
