"""Item side features: an item table -> one array per field, aligned to a vocabulary.

Tables: RecBole atomic ``.item`` files (header ``name:type``, types ``token``,
``token_seq``, ``float``, ``float_seq``; sequences are space-separated), CSV /
TSV with a header, and parquet. A field's kind comes from, in this order, a
``name:kind`` in the request (``fields=["class", "release_year:float"]``), the
header (``name:kind``, as in atomic files), the parquet type (a list of numbers is ``float_seq``, a list of
text ``token_seq``), or the values (numbers: ``float``, anything else:
``token``). A ``float_seq`` is a dense vector (precomputed text or image
embeddings): every item that has one has the same length.

Stated defaults: an empty value is "no feature" (no token, or the field's mean,
which standardised is 0), and so is an item of the vocabulary that the table
lacks when ``missing="neutral"`` (``"error"``, the default, names them).
Padding and [MASK] rows are always neutral. Everything else that is wrong (an
item twice, a number that is not one, a vector of another length) is a
``ValueError`` naming the file, line and column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..configuration_bert4rec import ITEM_FEATURE_KINDS, NUM_SPECIAL_TOKENS
from ..tokenization_bert4rec import ItemTokenizer
from .readers import (
    _PARSE_ERRORS,
    ITEM,
    _atomic_layout,
    _check_ids,
    _delimited_layout,
    _first_refused_row,
    _line_of_row,
    _read_delimited,
    _resolve,
    detect_format,
)

CATEGORICAL_KINDS = ("token", "token_seq")
MISSING_POLICIES = ("error", "neutral")


@dataclass
class ItemFeatureField:
    """What a model needs to know about one field (stored in ``Bert4RecConfig.item_features``).

    ``vocabulary``: the tokens of a categorical field (index ``i + 1``; 0 is
    "no token"); ``length``: the most tokens an item holds. ``dim``: the width
    of a numeric field; ``mean`` / ``std``: the standardisation fitted on the
    table, applied again to items added later."""

    name: str
    kind: str
    vocabulary: list[str] = field(default_factory=list)
    length: int = 0
    dim: int = 0
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    @property
    def categorical(self) -> bool:
        return self.kind in CATEGORICAL_KINDS

    def to_dict(self) -> dict[str, Any]:
        keep = ("vocabulary", "length") if self.categorical else ("dim", "mean", "std")
        return {key: value for key, value in asdict(self).items() if key in ("name", "kind", *keep)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemFeatureField:
        return cls(**data)


@dataclass
class _Ragged:
    """A field's values as one flat array and the table row each value belongs to (rows ascending)."""

    values: pa.Array
    rows: np.ndarray


@dataclass
class ItemFeatureTable:
    """An item table read and checked: raw item ids and one ragged column per field."""

    source: str
    item_ids: pa.Array
    kinds: dict[str, str]
    columns: dict[str, _Ragged]
    locate: Callable[[int], str] = field(default=lambda row: f"row {row + 1}", repr=False)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def field_names(self) -> list[str]:
        return list(self.kinds)

    def fit_fields(self) -> list[ItemFeatureField]:
        """The fields' vocabularies (first-seen order), lengths, widths and standardisation."""
        fields = []
        for name, kind in self.kinds.items():
            column = self.columns[name]
            counts = np.bincount(column.rows, minlength=self.num_items)
            if kind in CATEGORICAL_KINDS:
                vocabulary = pc.unique(column.values).to_pylist()
                fields.append(ItemFeatureField(name, kind, vocabulary=vocabulary, length=max(int(counts.max()), 1)))
                continue
            present_counts = counts[counts > 0]
            dim = int(np.bincount(present_counts).argmax()) if len(present_counts) else 1  # the usual length
            self._check_lengths(name, kind, counts, dim)
            values = _numeric_rows(column, counts, dim)
            present = values[counts > 0]
            mean = present.mean(axis=0) if len(present) else np.zeros(dim)
            std = present.std(axis=0) if len(present) else np.ones(dim)
            std = np.where(std > 0, std, 1.0)
            fields.append(ItemFeatureField(name, kind, dim=dim, mean=mean.tolist(), std=std.tolist()))
        return fields

    def encode(
        self,
        fields: Sequence[ItemFeatureField],
        tokenizer: ItemTokenizer,
        start: int = NUM_SPECIAL_TOKENS,
        missing: str = "error",
    ) -> dict[str, np.ndarray]:
        """The feature arrays of vocabulary ids ``[start, len(tokenizer))``, one row per id:
        ``"tokens"``: ``(n, sum of lengths)`` int64 token indices of the categorical fields
        side by side (0: none; a token outside a field's vocabulary is none, extra tokens
        beyond its length are dropped), ``"values"``: ``(n, sum of dims)`` float32
        standardised numbers (0 where missing). Rows of the table whose item is not in
        the vocabulary are ignored; vocabulary items the table lacks raise (``missing="error"``)
        or get neutral rows (``"neutral"``)."""
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
        unknown = [f.name for f in fields if f.name not in self.kinds]
        if unknown:
            raise ValueError(f"{self.source}: no field {unknown} (the table has {self.field_names})")
        count = len(tokenizer) - start
        index = tokenizer.encode_array(self.item_ids, unknown="mask") - start
        known = (index >= 0) & (index < count)  # [MASK] (unknown) and ids before start are not rows here
        covered = np.zeros(count, dtype=bool)
        covered[index[known]] = True
        if missing == "error" and not covered.all():
            lacking = np.flatnonzero(~covered) + start
            examples = tokenizer.decode(lacking[:5].tolist())
            raise ValueError(
                f"{self.source}: {len(lacking)} item(s) of the log have no row in the item table, e.g. {examples}; "
                "add them, or set item_features_missing: neutral (missing='neutral') to give them no features"
            )
        row_of = np.where(known, index, -1)
        tokens = [self._token_matrix(f, row_of, count) for f in fields if f.categorical]
        values = [self._value_matrix(f, row_of, count) for f in fields if not f.categorical]
        return {
            "tokens": np.concatenate(tokens, axis=1) if tokens else np.zeros((count, 0), dtype=np.int64),
            "values": np.concatenate(values, axis=1) if values else np.zeros((count, 0), dtype=np.float32),
        }

    def _check_lengths(self, name: str, kind: str, counts: np.ndarray, dim: int) -> None:
        wrong = np.flatnonzero((counts > 0) & (counts != dim))
        if len(wrong):
            raise ValueError(
                f"{self.source}, {self.locate(int(wrong[0]))}, column {name!r}: {counts[wrong[0]]} value(s), "
                f"expected {dim} (every {kind} of this field has {dim})"
            )

    def _token_matrix(self, spec: ItemFeatureField, row_of: np.ndarray, count: int) -> np.ndarray:
        column = self.columns[spec.name]
        token = pc.index_in(column.values, value_set=pa.array(spec.vocabulary, pa.string()))
        token = pc.fill_null(token, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        position = _positions(column.rows)
        target = row_of[column.rows]
        keep = (target >= 0) & (position < spec.length)
        matrix = np.zeros((count, spec.length), dtype=np.int64)
        matrix[target[keep], position[keep]] = token[keep]
        return matrix

    def _value_matrix(self, spec: ItemFeatureField, row_of: np.ndarray, count: int) -> np.ndarray:
        column = self.columns[spec.name]
        counts = np.bincount(column.rows, minlength=self.num_items)
        self._check_lengths(spec.name, spec.kind, counts, spec.dim)
        values = (_numeric_rows(column, counts, spec.dim) - np.asarray(spec.mean)) / np.asarray(spec.std)
        values[counts == 0] = 0.0
        matrix = np.zeros((count, spec.dim), dtype=np.float32)
        present = row_of >= 0
        matrix[row_of[present]] = values[present]
        return matrix


def _positions(rows: np.ndarray) -> np.ndarray:
    """Each value's position within its row (``rows`` ascending)."""
    if not len(rows):
        return rows
    first = np.r_[True, rows[1:] != rows[:-1]]
    starts = np.flatnonzero(first)
    return np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))


def _numeric_rows(column: _Ragged, counts: np.ndarray, dim: int) -> np.ndarray:
    """``(num_items, dim)`` float64 values of rows holding exactly ``dim`` values, NaN elsewhere."""
    matrix = np.full((len(counts), dim), np.nan)
    full = counts[column.rows] == dim
    values = column.values.to_numpy(zero_copy_only=False)
    matrix[column.rows[full], _positions(column.rows)[full]] = values[full]
    return matrix


def _parse_field_request(request: str) -> tuple[str, str | None]:
    name, _, kind = request.partition(":")
    if kind and kind not in ITEM_FEATURE_KINDS:
        raise ValueError(f"item feature {request!r}: the kind after ':' must be one of {ITEM_FEATURE_KINDS}")
    return name.strip(), kind or None


def _split_text(column: pa.Array, sequence: bool) -> _Ragged:
    """Text cells -> flat non-empty values and their rows (sequences split at whitespace)."""
    if sequence:
        lists = pc.utf8_split_whitespace(column)
        values, rows = pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    else:
        values, rows = column, np.arange(len(column))
    keep = pc.and_kleene(pc.is_valid(values), pc.not_equal(values, "")).fill_null(False)
    keep_mask = keep.to_numpy(zero_copy_only=False)
    return _Ragged(values.filter(keep), rows[keep_mask].astype(np.int64))


def _to_float(ragged: _Ragged, where: Callable[[int], str]) -> _Ragged:
    def parse(values: pa.Array) -> pa.Array:
        return pc.cast(values, pa.float64())

    try:
        values = parse(ragged.values)
    except _PARSE_ERRORS:
        bad = _first_refused_row(ragged.values, parse)
        raise ValueError(f"{where(int(ragged.rows[bad]))}: not a number: {ragged.values[bad].as_py()!r}") from None
    finite = np.isfinite(values.to_numpy(zero_copy_only=False))
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{where(int(ragged.rows[bad]))}: not a finite number: {ragged.values[bad].as_py()!r}")
    return _Ragged(values, ragged.rows)


def _is_numeric_text(column: pa.Array) -> bool:
    present = column.filter(pc.and_kleene(pc.is_valid(column), pc.not_equal(column, "")).fill_null(False))
    if not len(present):
        return False
    try:
        pc.cast(present, pa.float64())
    except _PARSE_ERRORS:
        return False
    return True


def _from_arrow(column: pa.Array, kind: str | None) -> tuple[str, _Ragged]:
    """A parquet column -> its kind and ragged values (text for tokens, float64 for numbers)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    listed = pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
    inner = column.type.value_type if listed else column.type
    numeric = pa.types.is_floating(inner) or pa.types.is_integer(inner)
    if kind is None:
        kind = ("float_seq" if numeric else "token_seq") if listed else ("float" if numeric else "token")
    if kind in CATEGORICAL_KINDS:
        if listed:
            values, rows = pc.list_flatten(column), pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
            return kind, _split_text_rows(values.cast(pa.string()), rows)
        return kind, _split_text(column.cast(pa.string()), sequence=kind == "token_seq")
    if listed:
        values, rows = pc.list_flatten(column), pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
        return kind, _Ragged(values.cast(pa.string()), rows.astype(np.int64))
    return kind, _split_text(column.cast(pa.string()), sequence=kind == "float_seq")


def _split_text_rows(values: pa.Array, rows: np.ndarray) -> _Ragged:
    keep = pc.and_kleene(pc.is_valid(values), pc.not_equal(values, "")).fill_null(False)
    return _Ragged(values.filter(keep), rows[keep.to_numpy(zero_copy_only=False)].astype(np.int64))


def read_item_features(
    path: str | os.PathLike,
    fields: Sequence[str] | None = None,
    format: str | None = None,
    item_column: str | int | None = None,
    delimiter: str | None = None,
) -> ItemFeatureTable:
    """Reads an item table (see the module docstring for formats and kinds).

    Args:
        path: the file (``.item`` is RecBole's atomic format; ``.gz`` is read transparently).
        fields: the columns to use, each ``name`` or ``name:kind``; None: every column but the item id.
        format: ``atomic``, ``csv``, ``tsv`` or ``parquet``; detected from the name when left out.
        item_column: the item id column when its name is not a usual one (``item_id``, ``movie_id``, ...).
        delimiter: the separator of a ``csv`` file (``,`` by default).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such item table")
    name = path.name.lower().removesuffix(".gz")
    format = format or ("atomic" if name.endswith(".item") else detect_format(path)) or "csv"
    if format not in ("atomic", "csv", "tsv", "parquet"):
        raise ValueError(f"{path}: item tables are atomic, csv, tsv or parquet files, got format {format!r}")
    requests = dict(_parse_field_request(f) for f in fields) if fields is not None else None
    columns = {ITEM: item_column} if item_column is not None else {}

    if format == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{path}: not a readable parquet file: {err}") from None
        names, declared = table.column_names, {}

        def locate(row: int) -> str:
            return f"row {row + 1}"
    else:
        if format == "atomic":
            layout = _atomic_layout(path)
        else:
            layout = _delimited_layout(path, delimiter or ("\t" if format == "tsv" else ","), True, None, True, set())
            typed = [_parse_field_request(name) for name in layout.names]  # a header may say name:kind too
            layout.names, layout.types = [name for name, _ in typed], {name: kind for name, kind in typed if kind}
        names, declared = layout.names, dict(layout.types)

        def locate(row: int) -> str:
            return _line_of_row(path, layout, row)

    id_column = _resolve(path, names, ITEM, columns, required=True)
    wanted = [n for n in names if n != id_column] if requests is None else list(requests)
    absent = [n for n in wanted if n not in names]
    if absent:
        raise ValueError(f"{path}: no column {absent} among the columns {names}")
    if format != "parquet":
        table = _read_delimited(path, layout, [id_column, *wanted])
    if table.num_rows == 0:
        raise ValueError(f"{path}: the item table has no rows")
    text_ids = format == "atomic" and declared.get(id_column) == "token"
    raw_ids = table[id_column].combine_chunks()
    if format != "parquet" and not text_ids:
        try:
            raw_ids = pc.cast(raw_ids, pa.int64())
        except _PARSE_ERRORS:
            pass
    item_ids = _check_ids(path, raw_ids, "item id", locate)
    _check_unique(path, item_ids, id_column, locate)

    kinds, ragged = {}, {}
    for column_name in wanted:
        kind = (requests or {}).get(column_name) or declared.get(column_name)

        def where(row: int, column_name: str = column_name) -> str:
            return f"{path}, {locate(row)}, column {column_name!r}"

        column = table[column_name].combine_chunks()
        if format == "parquet":
            kind, values = _from_arrow(column, kind)
        else:
            kind = kind or ("float" if _is_numeric_text(column) else "token")
            values = _split_text(column, sequence=kind.endswith("_seq"))
        if kind not in CATEGORICAL_KINDS:
            values = _to_float(values, where)
        kinds[column_name], ragged[column_name] = kind, values
    return ItemFeatureTable(str(path), item_ids, kinds, ragged, locate)


def _check_unique(path: Path, item_ids: pa.Array, column: str, locate: Callable[[int], str]) -> None:
    codes = pc.dictionary_encode(item_ids).indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    repeat = np.flatnonzero(codes[order][1:] == codes[order][:-1])
    if len(repeat):
        second = min(int(order[r + 1]) for r in repeat)
        first = int(np.flatnonzero(codes == codes[second])[0])
        raise ValueError(
            f"{path}, {locate(second)}, column {column!r}: item {item_ids[second].as_py()!r} appears twice "
            f"(first on {locate(first)}); an item table holds one row per item"
        )


__all__ = [
    "CATEGORICAL_KINDS",
    "MISSING_POLICIES",
    "ItemFeatureField",
    "ItemFeatureTable",
    "read_item_features",
]
