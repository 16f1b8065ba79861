"""Item vocabulary: raw item ids (strings or integers) <-> vocabulary indices.

Index 0 is padding, index 1 is [MASK], real items follow from index 2. The
vocabulary is a plain JSON file (``item_vocab.json``) saved next to the model
weights, so a checkpoint folder is readable without this package.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .configuration_bert4rec import MASK_TOKEN_ID, NUM_SPECIAL_TOKENS, PAD_TOKEN_ID

VOCAB_FILE_NAME = "item_vocab.json"
PAD_TOKEN, MASK_TOKEN = "[PAD]", "[MASK]"
VOCAB_FORMAT_VERSION = 1

UnknownPolicy = Literal["error", "skip", "mask"]
_UNKNOWN_POLICIES = ("error", "skip", "mask")
_INTEGER_TEXT = r"^-?[0-9]+$"  # what Arrow's string -> int64 cast parses (after trimming whitespace)
_INT64_MAX_TEXT = str(np.iinfo(np.int64).max)


def _is_history(value: Any) -> bool:
    """A history is a flat sequence of raw ids; a batch is a sequence of histories."""
    return isinstance(value, (str, bytes)) or not isinstance(value, Iterable)


def _as_arrow(items: Any) -> pa.Array:
    """Raw ids as one Arrow array; a Python list mixing ints and strings becomes strings."""
    if isinstance(items, pa.ChunkedArray):
        return items.combine_chunks()
    if isinstance(items, (pa.Array, np.ndarray)):
        return pa.array(items)
    items = list(items)
    try:
        return pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if item is None else str(item) for item in items])


def _int64_text(text: pa.Array) -> pa.Array:
    """Which trimmed strings are int64 numbers: the others (``"abc"``, 25 digits)
    are ids no integer vocabulary holds, not a reason to fail the whole input."""
    magnitude = pc.utf8_ltrim(text, "-0")  # sign and leading zeros do not count
    length = pc.utf8_length(magnitude)
    fits = pc.or_(
        pc.less(length, len(_INT64_MAX_TEXT)),
        pc.and_(pc.equal(length, len(_INT64_MAX_TEXT)), pc.less_equal(magnitude, _INT64_MAX_TEXT)),
    )
    return pc.and_(pc.match_substring_regex(text, _INTEGER_TEXT), fits)


class ItemTokenizer:
    """Maps raw item ids to the indices of the model's item embedding table.

    All raw ids of one vocabulary share one type (``int`` or ``str``); inputs are
    converted to it, so ``"50"`` and ``50`` address the same item of an integer
    vocabulary (ids typed on a command line arrive as strings).
    """

    pad_token, mask_token = PAD_TOKEN, MASK_TOKEN
    pad_token_id, mask_token_id = PAD_TOKEN_ID, MASK_TOKEN_ID
    num_special_tokens = NUM_SPECIAL_TOKENS

    def __init__(self, items: Sequence[Any] | pa.Array = ()):
        values = items if isinstance(items, (pa.Array, pa.ChunkedArray)) else pa.array(list(items))
        values = self._validated(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
        if len(pc.unique(values)) != len(values):
            counts = pc.value_counts(values)
            dupes = [c["values"] for c in counts.to_pylist() if c["counts"] > 1][:5]
            raise ValueError(f"item vocabulary contains duplicate item ids, e.g. {dupes}")
        self._items = values

    # ------------------------------------------------------------------ building
    @classmethod
    def _validated(cls, values: pa.Array) -> pa.Array:
        """Ids fit to enter a vocabulary (int64 or string, none null or empty):
        one check for the constructor and ``add_items``, so a saved vocabulary
        always loads again."""
        values = cls._normalise_type(values)
        if values.null_count:
            raise ValueError("item vocabulary contains a null/empty item id")
        return values

    @staticmethod
    def _normalise_type(values: pa.Array) -> pa.Array:
        if pa.types.is_null(values.type):
            return values.cast(pa.string())
        if pa.types.is_integer(values.type):
            return values.cast(pa.int64())
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = values.cast(pa.string())
            empty = pc.equal(pc.utf8_trim_whitespace(values), "")
            if pc.any(empty).as_py():
                raise ValueError("item vocabulary contains an empty item id")
            return values
        raise TypeError(f"item ids must be integers or strings, got {values.type}")

    @classmethod
    def fit(cls, items: Iterable[Any] | pa.Array | pa.ChunkedArray | np.ndarray) -> ItemTokenizer:
        """Builds a vocabulary of the distinct ids in ``items``, sorted, so the
        result does not depend on the order of the log."""
        unique = pc.unique(_as_arrow(items))
        return cls(unique.take(pc.array_sort_indices(unique)))

    def add_items(self, items: Iterable[Any]) -> int:
        """Appends the ids not yet in the vocabulary (in first-seen order) and
        returns how many were added; existing indices never move.

        Raises ``ValueError`` (before changing anything) for a null or empty id,
        or one an integer vocabulary cannot hold.
        """
        raw = self._validated(_as_arrow(items))
        values = self._to_vocab_type(raw)
        if values.null_count:
            examples = pc.unique(raw.filter(values.is_null())).to_pylist()[:10]
            raise ValueError(f"item ids of this vocabulary are integers; cannot convert {examples}")
        new = pc.unique(values)
        unseen = new.filter(pc.invert(pc.is_in(new, value_set=self._items)))
        if len(unseen):
            self._items = pa.concat_arrays([self._items, unseen])
        return len(unseen)

    # ------------------------------------------------------------------ sizes
    @property
    def vocab_size(self) -> int:
        return len(self._items) + NUM_SPECIAL_TOKENS

    @property
    def num_items(self) -> int:
        return len(self._items)

    @property
    def item_type(self) -> type:
        return int if pa.types.is_integer(self._items.type) else str

    @property
    def items(self) -> list[Any]:
        """Raw ids in vocabulary order (index ``i + num_special_tokens``)."""
        return self._items.to_pylist()

    def __len__(self) -> int:
        return self.vocab_size

    def __contains__(self, item: Any) -> bool:
        try:
            value = self._to_vocab_type(_as_arrow([item]))
        except (ValueError, TypeError):
            return False
        return bool(pc.is_in(value, value_set=self._items)[0].as_py())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemTokenizer) and self._items.equals(other._items)

    def __repr__(self) -> str:
        return f"ItemTokenizer(num_items={self.num_items}, item_type={self.item_type.__name__})"

    # ------------------------------------------------------------------ encoding
    def _to_vocab_type(self, values: pa.Array) -> pa.Array:
        """``values`` as the vocabulary's id type; for an integer vocabulary a
        string that is no int64 number becomes null (an id it cannot hold)."""
        if pa.types.is_null(values.type):
            return values.cast(self._items.type)
        if self.item_type is str:
            return values.cast(pa.string())
        if pa.types.is_integer(values.type):
            return values.cast(pa.int64())
        try:
            text = pc.utf8_trim_whitespace(values.cast(pa.string()))
        except pa.ArrowNotImplementedError as err:
            raise ValueError(f"item ids must be integers or strings, got {values.type}: {err}") from None
        return pc.if_else(_int64_text(text), text, None).cast(pa.int64())

    def _lookup(self, items: Any, unknown: UnknownPolicy) -> tuple[np.ndarray, np.ndarray]:
        """Indices of a flat array of raw ids (unknown ones -> [MASK]) and the
        mask of known ids; raises on unknown ids when ``unknown="error"``."""
        if unknown not in _UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {_UNKNOWN_POLICIES}, got {unknown!r}")
        raw = _as_arrow(items)
        positions = pc.index_in(self._to_vocab_type(raw), value_set=self._items)
        known = positions.is_valid().to_numpy(zero_copy_only=False)
        if unknown == "error" and not known.all():
            bad = raw.filter(pa.array(~known))  # as given: "abc" rather than the null it converts to
            examples = pc.unique(bad).to_pylist()[:10]
            raise KeyError(
                f"{len(bad)} item id(s) are not in the vocabulary of {self.num_items} items, e.g. {examples}; "
                "pass unknown='skip' or unknown='mask' to ignore them"
            )
        ids = pc.fill_null(positions, MASK_TOKEN_ID - NUM_SPECIAL_TOKENS).to_numpy(zero_copy_only=False)
        return ids.astype(np.int64) + NUM_SPECIAL_TOKENS, known

    def encode_array(self, items: Any, unknown: UnknownPolicy = "error") -> np.ndarray:
        """Vectorised lookup of a flat array of raw ids; returns int64 indices.

        ``unknown``: ``"error"`` raises ``KeyError`` naming the unknown ids,
        ``"mask"`` maps them to [MASK], ``"skip"`` drops them.
        """
        ids, known = self._lookup(items, unknown)
        return ids[known] if unknown == "skip" else ids

    def encode(self, histories: Sequence[Any] | Sequence[Sequence[Any]], unknown: UnknownPolicy = "error") -> list:
        """Encodes one history (a list of raw ids) or a batch of histories."""
        if _is_history(histories):
            raise TypeError(f"expected a list of item ids or a list of histories, got {type(histories).__name__}")
        histories = list(histories)
        if all(_is_history(h) for h in histories):
            return self.encode_array(histories, unknown=unknown).tolist()
        if any(_is_history(h) for h in histories):
            raise TypeError("mixed input: expected either one history of item ids or a list of histories")
        lengths = np.fromiter(map(len, histories), dtype=np.int64, count=len(histories))
        ids, known = self._lookup(list(itertools.chain.from_iterable(histories)), unknown)  # converted as one history
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        if unknown == "skip":
            ids = ids[known]
            offsets = np.concatenate([[0], np.cumsum(known)])[offsets]
        return [chunk.tolist() for chunk in np.split(ids, offsets[1:-1])]

    def decode(
        self, ids: Sequence[int] | Sequence[Sequence[int]] | np.ndarray, skip_special_tokens: bool = True
    ) -> list:
        """Maps indices back to raw ids (one sequence or a batch; lists, numpy arrays or tensors)."""
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        if isinstance(ids, np.ndarray):
            if ids.ndim == 2:
                return [self.decode(row, skip_special_tokens) for row in ids]
        elif any(not _is_history(row) for row in ids):
            return [self.decode(row, skip_special_tokens) for row in ids]
        array = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ((array < 0) | (array >= self.vocab_size)).any():
            bad = array[(array < 0) | (array >= self.vocab_size)][:10].tolist()
            raise IndexError(f"indices {bad} are outside the vocabulary (size {self.vocab_size})")
        special = array < NUM_SPECIAL_TOKENS
        if special.any() and not skip_special_tokens:
            names = np.array([PAD_TOKEN, MASK_TOKEN], dtype=object)
            out = np.empty(len(array), dtype=object)
            out[special] = names[array[special]]
            out[~special] = np.array(self._items.take(array[~special] - NUM_SPECIAL_TOKENS).to_pylist(), dtype=object)
            return out.tolist()
        return self._items.take(array[~special] - NUM_SPECIAL_TOKENS).to_pylist()

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": VOCAB_FORMAT_VERSION,
            "special_tokens": {PAD_TOKEN: PAD_TOKEN_ID, MASK_TOKEN: MASK_TOKEN_ID},
            "item_type": self.item_type.__name__,
            "items": self.items,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Writes ``item_vocab.json`` atomically (a crash never leaves half a file)."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, VOCAB_FILE_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, ensure_ascii=False)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_pretrained(
        cls, pretrained_path: str | os.PathLike, check_config: bool = True, **hub_kwargs: Any
    ) -> ItemTokenizer:
        """Loads the vocabulary from a checkpoint folder or hub repository and,
        when a ``config.json`` sits beside it, checks that the sizes agree."""
        from transformers.utils import cached_file

        if os.path.isdir(pretrained_path) and not os.path.isfile(os.path.join(pretrained_path, VOCAB_FILE_NAME)):
            raise FileNotFoundError(
                f"{pretrained_path} has no {VOCAB_FILE_NAME}, the item vocabulary its model ranks with; a checkpoint "
                f"of a Trainer without processing_class=tokenizer (or of bert4rec train before 665274d) lacks it: "
                f"save the run's ItemTokenizer there (tokenizer.save_pretrained(folder))"
            )
        vocab_path = cached_file(pretrained_path, VOCAB_FILE_NAME, **hub_kwargs)
        tokenizer = cls.from_file(vocab_path)
        if check_config:
            config_path = cached_file(
                pretrained_path, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs
            )
            if config_path is not None:
                with open(config_path, encoding="utf-8") as handle:
                    vocab_size = json.load(handle).get("vocab_size")
                if vocab_size is not None and vocab_size != tokenizer.vocab_size:
                    raise ValueError(
                        f"{vocab_path}: the item vocabulary has {tokenizer.vocab_size} entries "
                        f"({tokenizer.num_items} items + {NUM_SPECIAL_TOKENS} special tokens) but the model "
                        f"config beside it says vocab_size={vocab_size}; the tokenizer belongs to another checkpoint"
                    )
        return tokenizer

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ItemTokenizer:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a valid item vocabulary JSON file (line {err.lineno}: {err.msg})") from None
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise ValueError(f"{path}: an item vocabulary needs a JSON object with an 'items' list")
        specials = data.get("special_tokens", {PAD_TOKEN: PAD_TOKEN_ID, MASK_TOKEN: MASK_TOKEN_ID})
        if specials != {PAD_TOKEN: PAD_TOKEN_ID, MASK_TOKEN: MASK_TOKEN_ID}:
            raise ValueError(f"{path}: unsupported special tokens {specials}")
        item_type = {"int": pa.int64(), "str": pa.string()}.get(data.get("item_type"))
        try:
            return cls(pa.array(data["items"], type=item_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as err:
            raise ValueError(f"{path}: invalid item list: {err}") from None
