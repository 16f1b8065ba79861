"""Top-k recommendations from raw item histories.

``Bert4RecRecommender`` holds a model and its item vocabulary. ``recommend``
turns histories of raw item ids into raw item ids and scores, best first, by
the path evaluation takes: ``DataCollatorForNextItemPrediction`` builds the
batch (the last ``max_seq_length - 1`` items, left-padded, then [MASK]), the
model's forward pass scores the [MASK] position, excluded candidates
(``candidates.py``, the rule the evaluator uses) get ``-inf``, and ``topk``
picks the best. ``RankingEvaluator(exclude_history=...)`` ranks a target
against the same candidates as ``recommend(exclude_history=...)``.

A saved recommender folder (``save_pretrained``) is what a Hub repository
needs: weights and model code (``trust_remote_code``), ``item_vocab.json``
(plain JSON) and a model card.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .candidates import blocked_items, exclude, excluded_items
from .data.collators import DataCollatorForNextItemPrediction, left_pad
from .model_folder import default_model_card, history_excluded_by_default, local_folder, resolve_device
from .tokenization_bert4rec import MASK_TOKEN_ID, NUM_SPECIAL_TOKENS, ItemTokenizer

logger = logging.getLogger(__name__)

MODEL_CARD_NAME = "README.md"
ExcludeHistory = bool | Literal["window"]
UnknownIds = Literal["error", "ignore"]
OnEmpty = Literal["error", "popular"]


@dataclass
class Recommendation:
    """Raw item ids, best first, and their model scores (logits: higher is better,
    comparable within one history, not probabilities)."""

    items: list[Any]
    scores: list[float]

    def to_dict(self) -> dict[str, list]:
        return {"items": self.items, "scores": self.scores}


def _is_scalar_type(kind: type) -> bool:
    """An item id type (int, str, numpy scalar, ...) rather than a history."""
    return issubclass(kind, (str, bytes, np.generic)) or not issubclass(kind, Iterable)


def _is_scalar(value: Any) -> bool:
    return _is_scalar_type(type(value))


def _is_id_type(kind: type) -> bool:
    return issubclass(kind, (int, str, np.integer, np.str_)) and not issubclass(kind, (bool, np.bool_))


def _as_history(value: Any, where: str) -> list[Any]:
    if isinstance(value, (set, frozenset, dict)):
        raise TypeError(f"{where} is a {type(value).__name__}; a history must be an ordered list of item ids")
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(f"{where} is a {value.ndim}-D array; a history must be one-dimensional")
        value = value.tolist()
    elif torch.is_tensor(value):
        raise TypeError(f"{where} is a tensor; pass raw item ids (a list), not vocabulary indices")
    history = list(value)
    if not all(map(_is_id_type, set(map(type, history)))):  # checked per distinct type, not per item
        position, item = next((i, item) for i, item in enumerate(history) if not _is_id_type(type(item)))
        raise TypeError(
            f"{where}, position {position}: item ids must be integers or strings, got {type(item).__name__} {item!r}"
        )
    return history






def normalise_histories(histories: Any) -> tuple[list[list[Any]], bool]:
    """One history (a list of raw ids) or a batch (a list of such lists) as a
    list of histories, and whether a single history was given."""
    if torch.is_tensor(histories):
        raise TypeError("histories is a tensor; pass raw item ids (lists), not vocabulary indices")
    if _is_scalar(histories) or isinstance(histories, (set, frozenset, dict)):
        raise TypeError(
            f"histories must be a list of raw item ids or a list of such lists, got {type(histories).__name__}"
        )
    if isinstance(histories, np.ndarray):
        return (
            ([_as_history(histories, "history")], True)
            if histories.ndim == 1
            else ([_as_history(row, f"history {i}") for i, row in enumerate(histories)], False)
        )
    values = list(histories)
    kinds = set(map(type, values))
    if all(map(_is_scalar_type, kinds)):  # also the empty list: one empty history
        return [_as_history(values, "history")], True
    if any(map(_is_scalar_type, kinds)):
        first = next(i for i, value in enumerate(values) if _is_scalar(value))
        raise TypeError(
            f"mixed input: element {first} is an item id ({values[first]!r}) but others are histories; pass one "
            "history (a list of ids) or a list of histories"
        )
    return [_as_history(value, f"history {i}") for i, value in enumerate(values)], False


class Bert4RecRecommender:
    """A BERT4Rec model and its item vocabulary, answering in raw item ids.

    Args:
        model: a ``Bert4RecForMaskedItemPrediction`` (or the same class loaded
            with ``trust_remote_code``).
        tokenizer: the ``ItemTokenizer`` saved with that model; a vocabulary of
            another size is refused (it belongs to another checkpoint).
        device: where the model runs (default: the model's device).
        model_card: Markdown written as ``README.md`` by ``save_pretrained``
            (default: the loaded folder's card, or a generated one).
        exclude_history: ``recommend``'s default (``True``, ``"window"`` or
            ``False``). ``None`` follows the data the model was trained on
            (``config.repeat_share``, recorded by the training run): the
            history is left out unless at least 1% of the training
            interactions repeated an item the user already had
            (``model_folder.history_excluded_by_default``); a model without
            the record leaves it out.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: ItemTokenizer,
        device: str | torch.device | None = None,
        model_card: str | None = None,
        exclude_history: ExcludeHistory | None = None,
    ):
        config = getattr(model, "config", None)
        if config is None or getattr(config, "model_type", None) != "bert4rec":
            raise TypeError(
                f"model must be a BERT4Rec model (Bert4RecForMaskedItemPrediction), got {type(model).__name__}"
            )
        if not isinstance(tokenizer, ItemTokenizer):
            raise TypeError(f"tokenizer must be an ItemTokenizer, got {type(tokenizer).__name__}")
        if len(tokenizer) != config.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} entries ({tokenizer.num_items} items + {NUM_SPECIAL_TOKENS} "
                f"special tokens) but the model's vocab_size is {config.vocab_size}: the tokenizer belongs to another "
                "checkpoint (after ItemTokenizer.add_items, call extend_vocabulary or model.resize_token_embeddings)"
            )
        if exclude_history is None:
            exclude_history = history_excluded_by_default(getattr(config, "repeat_share", None))
        elif exclude_history not in (True, False, "window"):
            raise ValueError(f"exclude_history must be True, False, 'window' or None, got {exclude_history!r}")
        self.exclude_history = exclude_history
        self.model = model if device is None else model.to(resolve_device(device))
        self.tokenizer = tokenizer
        self.model_card = model_card
        self.collator = DataCollatorForNextItemPrediction(max_seq_length=config.max_seq_length)

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(
        cls,
        pretrained_path: str | os.PathLike,
        device: str | torch.device | None = None,
        tokenizer: ItemTokenizer | None = None,
        exclude_history: ExcludeHistory | None = None,
        **hub_kwargs: Any,
    ) -> Bert4RecRecommender:
        """Loads model, vocabulary and model card from a folder or Hub repository;
        ``exclude_history``: ``recommend``'s default (``None``: the model's, see the class).

        ``device`` defaults to CUDA when available, else CPU; it is checked
        before anything loads (``ValueError``), as is a local folder that does
        not exist (``FileNotFoundError``). ``hub_kwargs`` (``revision``,
        ``token``, ``cache_dir``, ...) go to both loaders.
        """
        from transformers.utils import cached_file

        from .modeling_bert4rec import Bert4RecForMaskedItemPrediction

        device = resolve_device(device)
        pretrained_path = local_folder(pretrained_path)
        model = Bert4RecForMaskedItemPrediction.from_pretrained(pretrained_path, **hub_kwargs)
        if tokenizer is None:
            tokenizer = ItemTokenizer.from_pretrained(pretrained_path, **hub_kwargs)
        card_path = cached_file(
            pretrained_path, MODEL_CARD_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs
        )
        card = Path(card_path).read_text(encoding="utf-8") if card_path else None
        return cls(model.eval(), tokenizer, device=device, model_card=card, exclude_history=exclude_history)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Writes everything a Hub repository needs: ``config.json``,
        ``model.safetensors`` and the model code, ``item_vocab.json`` and
        ``README.md`` (the model card)."""
        save_directory = Path(save_directory)
        self.model.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        card = self.model_card if self.model_card is not None else default_model_card(self.model.config, self.tokenizer)
        (save_directory / MODEL_CARD_NAME).write_text(card, encoding="utf-8")
        return save_directory

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload BERT4Rec recommender",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
    ) -> Any:
        """Uploads the ``save_pretrained`` folder (model, code, vocabulary, card)
        to ``repo_id``, creating the repository if needed (needs a network)."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision
            )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_items(self) -> int:
        return self.tokenizer.num_items

    def __repr__(self) -> str:
        return (
            f"Bert4RecRecommender(num_items={self.num_items}, device={self.device}, "
            f"exclude_history={self.exclude_history!r})"
        )

    # ------------------------------------------------------------------ recommending
    def recommend(
        self,
        histories: Any,
        k: int = 10,
        exclude_history: ExcludeHistory | None = None,
        allow_items: Iterable[Any] | None = None,
        deny_items: Iterable[Any] | None = None,
        unknown: UnknownIds = "error",
        on_empty: OnEmpty = "error",
        return_scores: bool = True,
        batch_size: int = 256,
        exclude_seen: ExcludeHistory | None = None,
    ) -> Recommendation | list[Any] | list[Recommendation] | list[list[Any]]:
        """Top-``k`` next items for one history or a batch of histories.

        Args:
            histories: raw item ids, oldest first (one list), or a list of such
                lists. Any length: the model reads the last ``max_seq_length - 1``
                items (one position holds the [MASK] it predicts).
            k: items per history, ``1 <= k <=`` catalog size. A history gets
                fewer when fewer candidates remain (exclusions, ``allow_items``).
            exclude_history: ``True``: never recommend an item of the given
                history, all of it; ``"window"``: exclude only the items the
                model reads (its last ``max_seq_length - 1``); ``False``: keep
                them (repeat consumption); ``None``: the recommender's default
                (``self.exclude_history``, which follows the training data).
                The evaluator's option of the same name excludes the same items.
            exclude_seen: the former name of ``exclude_history`` (deprecated).
            allow_items / deny_items: raw ids every history's candidates are
                restricted to / never include.
            unknown: raw ids outside the vocabulary (in histories and lists):
                ``"error"`` raises ``KeyError`` naming them, ``"ignore"`` drops
                them with a warning.
            on_empty: a history with no (known) item: ``"error"`` raises
                ``ValueError``; ``"popular"`` answers with the model's
                context-free ranking (a history holding only [MASK]).
            return_scores: return ``Recommendation(items, scores)`` objects;
                ``False`` returns the item lists only.
            batch_size: histories per forward pass.

        Returns:
            For one history a ``Recommendation`` (or a list of item ids), for
            a batch a list of them, in input order.
        """
        exclude_history = self._exclude_history(_renamed_exclude_seen(exclude_history, exclude_seen))
        self._check_options(k, exclude_history, unknown, on_empty, batch_size)
        rows, single = normalise_histories(histories)
        encoded = self.encode_histories(rows, unknown=unknown)
        empty = [i for i, history in enumerate(encoded) if len(history) == 0]
        if empty and on_empty == "error":
            detail = " (after dropping unknown item ids)" if unknown == "ignore" else ""
            where = "the history" if single else f"history {empty[0]}"
            raise ValueError(
                f"{where} is empty{detail}; {len(empty)} empty history(ies) in all. Pass on_empty='popular' to "
                "answer them with the model's context-free ranking"
            )
        blocked = self._blocked_items(allow_items, deny_items, unknown)
        window = self.model.config.max_seq_length - 1 if exclude_history == "window" else None
        results: list[Any] = []
        with self._eval_mode():
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start : start + batch_size]
                batch = self.collator([{"input_ids": history} for history in chunk])
                excluded = None
                if exclude_history:
                    history = left_pad(chunk, max(1, max(map(len, chunk))))
                    excluded = excluded_items(history, len(self.tokenizer), window=window)
                scores = exclude(self._forward(batch), excluded, blocked)
                results.extend(self._top_k(scores, k, return_scores))
        return results[0] if single else results

    def check_options(self, **options: Any) -> None:
        """Raises the error ``recommend`` would raise for these keyword options
        (its names and defaults) whatever the histories, so a batch job can fail
        once, before it reads or writes anything, rather than once per history."""
        bound = inspect.signature(self.recommend).bind([], **options)
        bound.apply_defaults()
        given = bound.arguments
        exclude_history = _renamed_exclude_seen(given["exclude_history"], given["exclude_seen"])
        exclude_history = self._exclude_history(exclude_history)
        self._check_options(given["k"], exclude_history, given["unknown"], given["on_empty"], given["batch_size"])
        self._blocked_items(given["allow_items"], given["deny_items"], given["unknown"])

    def score(self, histories: Any, unknown: UnknownIds = "error") -> torch.Tensor:
        """``(B, vocab_size)`` raw scores of the next item after each history
        (raw ids; nothing excluded, special tokens ``-inf``)."""
        rows, _ = normalise_histories(histories)
        batch = self.collator([{"input_ids": history} for history in self.encode_histories(rows, unknown=unknown)])
        with self._eval_mode():
            return self._forward(batch)

    # ------------------------------------------------------------------ vectors
    def encode(self, histories: Any, unknown: UnknownIds = "error", batch_size: int = 256) -> torch.Tensor:
        """``(B, hidden + 1)`` float32 query vectors, one per history (raw ids,
        oldest first, any length: the model reads the last ``max_seq_length - 1``
        items): the state the item scorer reads for what comes next, with a 1
        appended. ``encode(h) @ item_vectors()[1].T`` is :meth:`score`'s score of
        every item outside the model's input window; items inside it also get
        the learned seen-item offset (with ``recommend``'s default
        ``exclude_history=True`` they are no candidates anyway). An empty history
        gives the context-free vector (only [MASK])."""
        self._check_options(1, True, unknown, "error", batch_size)
        rows, _ = normalise_histories(histories)
        encoded = self.encode_histories(rows, unknown=unknown)
        vectors = []
        with self._eval_mode(), torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                batch = self.collator([{"input_ids": history} for history in encoded[start : start + batch_size]])
                input_ids, attention_mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
                hidden = self.model.base_model(input_ids, attention_mask=attention_mask).last_hidden_state[:, -1]
                vectors.append(self.model.item_scorer(hidden).query_vectors().float().cpu())
        return torch.cat(vectors)

    def item_vectors(self) -> tuple[list[Any], torch.Tensor]:
        """The raw ids of the catalog and their ``(num_items, hidden + 1)``
        float32 vectors (the item embedding scores are computed against, then
        the item's output bias), in vocabulary order: what a maximum inner
        product index over :meth:`encode`'s vectors searches."""
        with torch.no_grad():
            vectors = self.model.item_vectors()[NUM_SPECIAL_TOKENS:].float().cpu()
        return self.tokenizer.decode(np.arange(NUM_SPECIAL_TOKENS, len(self.tokenizer))), vectors

    def similar_items(self, items: Any, k: int = 10) -> Recommendation | list[Recommendation]:
        """The ``k`` items nearest to each given raw id, by cosine similarity of
        the item embeddings the model scores against (the output bias, an item's
        popularity, left out), the item itself excluded. One id gives one
        ``Recommendation`` (scores: cosine similarities), a list of ids a list."""
        self._check_options(k, True, "error", "error", 1)
        single = _is_scalar(items)
        (ids,) = self.encode_histories([_as_history([items] if single else items, "items")])
        if not len(ids):
            return []
        with torch.no_grad():
            # float64 rounded once, as the item scorer does: one item gets one similarity in any batch
            embeddings = torch.nn.functional.normalize(self.model.item_vectors()[:, :-1].double(), dim=1)
            ids = torch.from_numpy(ids).to(embeddings.device)
            similarities = (embeddings[ids] @ embeddings.T).float()
        similarities[:, :NUM_SPECIAL_TOKENS] = float("-inf")
        similarities[torch.arange(len(ids)), ids] = float("-inf")
        results = self._top_k(similarities, k, return_scores=True)
        return results[0] if single else results

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Dropout off while scoring; a model being trained gets its mode back."""
        was_training = self.model.training
        if was_training:  # switching walks every module: skip it when there is nothing to switch
            self.model.eval()
        try:
            yield
        finally:
            if was_training:
                self.model.train()

    @torch.no_grad()
    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The evaluation forward pass: logits at the [MASK] column of each row."""
        device = self.device
        output = self.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        return output.logits.float()

    def encode_histories(self, histories: Sequence[Sequence[Any]], unknown: UnknownIds = "error") -> list[np.ndarray]:
        """Vocabulary indices of each history; one vectorised lookup for the batch."""
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        lengths = np.fromiter(map(len, histories), dtype=np.int64, count=len(histories))
        flat = list(itertools.chain.from_iterable(histories))
        ids = self.tokenizer.encode_array(flat, unknown="mask") if flat else np.zeros(0, dtype=np.int64)
        known = ids != MASK_TOKEN_ID
        if not known.all():
            owner = np.repeat(np.arange(len(histories)), lengths)
            bad = np.flatnonzero(~known)
            examples = list(dict.fromkeys(flat[i] for i in bad[:50]))[:10]
            message = (
                f"{len(bad)} item id(s) in {len(np.unique(owner[bad]))} history(ies) are not in the vocabulary of "
                f"{self.num_items} items (first in history {int(owner[bad[0]])}), e.g. {examples}"
            )
            if unknown == "error":
                raise KeyError(f"{message}; pass unknown='ignore' to drop them")
            logger.warning("%s; dropped", message)
            lengths = np.bincount(owner[known], minlength=len(histories))
            ids = ids[known]
        return np.split(ids, np.cumsum(lengths)[:-1])

    # ------------------------------------------------------------------ helpers
    def _exclude_history(self, exclude_history: ExcludeHistory | None) -> ExcludeHistory:
        return self.exclude_history if exclude_history is None else exclude_history

    def _check_options(self, k: Any, exclude_history: Any, unknown: Any, on_empty: Any, batch_size: Any) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > self.num_items:
            raise ValueError(f"k={k} exceeds the catalog of {self.num_items} items")
        if exclude_history not in (True, False, "window"):
            raise ValueError(f"exclude_history must be True, False or 'window', got {exclude_history!r}")
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        if on_empty not in ("error", "popular"):
            raise ValueError(f"on_empty must be 'error' or 'popular', got {on_empty!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    def _item_list(self, items: Iterable[Any], name: str, unknown: UnknownIds) -> np.ndarray:
        if _is_scalar(items) or isinstance(items, dict):
            raise TypeError(f"{name} must be a list (or set) of raw item ids, got {type(items).__name__}")
        (ids,) = self.encode_histories([_as_history(list(items), name)], unknown=unknown)
        return ids

    def _blocked_items(self, allow_items: Any, deny_items: Any, unknown: UnknownIds) -> torch.Tensor:
        """``(vocab_size,)`` True for candidates no history may get (``candidates.blocked_items``)."""
        allowed = None if allow_items is None else torch.from_numpy(self._item_list(allow_items, "allow_items", unknown))
        denied = None if deny_items is None else torch.from_numpy(self._item_list(deny_items, "deny_items", unknown))
        return blocked_items(len(self.tokenizer), allowed, denied)

    def _top_k(self, scores: torch.Tensor, k: int, return_scores: bool) -> list[Any]:
        values, indices = scores.topk(k, dim=1)
        values, indices = values.cpu().numpy(), indices.cpu().numpy()
        valid = np.isfinite(values)  # fewer than k candidates left in a row
        items = self.tokenizer.decode(indices[valid])
        offsets = np.cumsum(valid.sum(1))[:-1]
        item_rows = [chunk.tolist() for chunk in np.split(np.array(items, dtype=object), offsets)]
        if not return_scores:
            return item_rows
        score_rows = np.split(values[valid].astype(float), offsets)
        return [Recommendation(row, s.tolist()) for row, s in zip(item_rows, score_rows, strict=True)]


def _renamed_exclude_seen(exclude_history: Any, exclude_seen: Any) -> Any:
    """``exclude_seen`` is the former name of ``exclude_history``: it still works, with a warning."""
    if exclude_seen is None:
        return exclude_history
    warnings.warn(
        "recommend(exclude_seen=...) is deprecated; use exclude_history=... (the name the evaluator uses)",
        FutureWarning,
        stacklevel=3,
    )
    return exclude_seen


def recommend(
    model: torch.nn.Module, tokenizer: ItemTokenizer, histories: Any, k: int = 10, **kwargs: Any
) -> Recommendation | list[Any] | list[Recommendation] | list[list[Any]]:
    """``Bert4RecRecommender(model, tokenizer).recommend(histories, k, ...)``."""
    return Bert4RecRecommender(model, tokenizer).recommend(histories, k=k, **kwargs)




__all__ = [
    "Bert4RecRecommender",
    "Recommendation",
    "default_model_card",
    "normalise_histories",
    "local_folder",
    "recommend",
    "resolve_device",
]
