"""Interaction logs -> one pyarrow Table with ``user_id``, ``item_id``, ``timestamp``.

Every supported layout goes through pyarrow's multi-threaded CSV reader (or
parquet), so no Python code runs per row. Values are read as strings and cast
once per column: the type is decided on the whole column, not on pyarrow's first
block, and a bad value can be traced to its line. The slow line scans happen only
on the error path.

Formats (``format=``, detected from the file name when left out; ``.gz`` is read
transparently):

=============  ============================================================  =======================
format         layout                                                        detected from
=============  ============================================================  =======================
``atomic``     RecBole atomic file: tab-separated, header ``name:type``      ``*.inter``
``csv``        any delimiter, with or without a header                       ``*.csv``
``tsv``        ``csv`` with a tab delimiter                                  ``*.tsv``
``parquet``    parquet file                                                  ``*.parquet``, ``*.pq``
``udata``      MovieLens 100K ``u.data``: ``user item rating timestamp``     ``u.data``, ``*.data``
``dat``        MovieLens 1M/10M ``ratings.dat``: ``user::item::rating::ts``  ``*.dat``
``lines``      ``user item`` per line (BERT4Rec/SASRec files), no time       ``*.txt``
=============  ============================================================  =======================

Files without a timestamp (``lines``, or a CSV without one) are taken to be in
time order: the timestamp becomes the row number, so a stable sort keeps it.
Text is UTF-8 (a leading byte-order mark is ignored) and spaces around a field are
not part of its value.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

logger = logging.getLogger(__name__)

USER, ITEM, TIME, RATING = "user_id", "item_id", "timestamp", "rating"
# schema metadata of a table whose timestamps are row numbers (a log without times): nothing to split along time
ROW_NUMBER_TIMES = {b"timestamp": b"row number"}
FORMATS = ("atomic", "csv", "tsv", "parquet", "udata", "dat", "lines")

# Names a header may use for each canonical column (compared case-insensitively,
# without the RecBole ":type" suffix). The first match in header order wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    USER: ("user_id", "userid", "user", "uid", "user_id_token", "reviewerid", "visitorid", "customer_id", "session_id"),
    ITEM: ("item_id", "itemid", "item", "iid", "movie_id", "movieid", "product_id", "productid", "asin", "track_id"),
    TIME: ("timestamp", "time", "ts", "datetime", "date", "unixreviewtime", "event_time"),
    RATING: ("rating", "ratings", "score", "overall", "stars"),
}
# Column names of header-less files, by the number of fields on a line.
POSITIONAL_NAMES = {2: (USER, ITEM), 3: (USER, ITEM, TIME), 4: (USER, ITEM, RATING, TIME)}
_RECBOLE_TYPES = ("token", "float", "token_seq", "float_seq")
_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_SNIFFED_LINES = 20  # lines below line 1 that header detection looks at
_UTC_NAME = r"\s*(UTC|GMT)$"  # "2015-01-01 10:00:00 UTC" (e-commerce event_time)
_ZONED = r":\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)$"  # a time followed by Z or an offset
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as surrogateescape keeps them
_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError)
Parser = Callable[[pa.Array], pa.Array]  # text column -> numbers; raises one of _PARSE_ERRORS


@dataclass
class _Layout:
    """How to hand a delimited file to pyarrow, and how to describe its lines."""

    delimiter: str = ","
    header: bool = True
    names: list[str] = field(default_factory=list)
    quoted: bool = True
    types: dict[str, str] = field(default_factory=dict)  # RecBole field types

    @property
    def data_start_line(self) -> int:
        return 2 if self.header else 1


# ---------------------------------------------------------------------------- helpers
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _open_text(path: Path, errors: str = "replace") -> io.TextIOBase:
    """UTF-8 text, gzip or not; ``utf-8-sig`` drops the byte-order mark Excel writes."""
    raw = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors=errors, newline="")


def _head_lines(path: Path, count: int) -> list[str]:
    """The first ``count`` lines (fewer in a short file), without line ends; the
    layout is read from them, so a blank line 1 means an empty file."""
    try:
        with _open_text(path) as handle:
            lines = [line.rstrip("\r\n") for line in islice(handle, count)]
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read the file: {err}") from None
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}: the file is empty")
    return lines


def _base_name(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def detect_format(path: str | os.PathLike) -> str | None:
    """The format a file name implies, or None when it says nothing."""
    name = _base_name(Path(path))
    if name == "u.data" or name.endswith(".data"):
        return "udata"
    for suffixes, fmt in (
        ((".inter",), "atomic"),
        ((".parquet", ".pq"), "parquet"),
        ((".dat",), "dat"),
        ((".tsv", ".tab"), "tsv"),
        ((".csv",), "csv"),
        ((".txt",), "lines"),
    ):
        if name.endswith(suffixes):
            return fmt
    return None


def _split(line: str, delimiter: str, quoted: bool) -> list[str]:
    if quoted and len(delimiter) == 1:
        return next(csv.reader([line], delimiter=delimiter), [])
    return line.split(delimiter)


def _clean_name(name: str) -> str:
    return name.strip().strip('"').split(":")[0].strip().lower()


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def _is_header(fields: list[str], below: list[list[str]], known: set[str]) -> bool:
    """Whether line 1 is a header: it names a known column, or (the guess of
    ``csv.Sniffer.has_header``) none of its fields is a number while some column
    holds a number on every line below it. A header-less file of text ids stays data."""
    if any(_clean_name(f) in known for f in fields):
        return True
    if not below or any(_is_number(f) for f in fields):
        return False
    return any(all(i < len(row) and _is_number(row[i]) for row in below) for i in range(len(fields)))


# ---------------------------------------------------------------------------- layouts
def _atomic_layout(path: Path) -> _Layout:
    header = _head_lines(path, 1)[0]
    names, types = [], {}
    for raw in header.split("\t"):
        name, _, kind = raw.strip().partition(":")
        if kind not in _RECBOLE_TYPES:
            raise ValueError(
                f"{path}, line 1: RecBole atomic files need a header of 'name:type' fields "
                f"(type one of {_RECBOLE_TYPES}); got {raw!r}"
            )
        names.append(name)
        types[name] = kind
    return _Layout(delimiter="\t", header=True, names=names, quoted=False, types=types)


def _delimited_layout(
    path: Path, delimiter: str, header: bool | None, column_names: Sequence[str] | None, quoted: bool, known: set[str]
) -> _Layout:
    if not delimiter or delimiter != delimiter[0] * len(delimiter) or delimiter in "\r\n":
        raise ValueError(f"delimiter must be one character or one repeated character (like '::'), got {delimiter!r}")
    first, *rest = _head_lines(path, 1 + _SNIFFED_LINES)
    fields = _split(first, delimiter, quoted)
    if header is None:
        header = _is_header(fields, [_split(line, delimiter, quoted) for line in rest if line.strip()], known)
    if header:
        names = [f.strip().strip('"') for f in fields]
    elif column_names is not None:
        names = list(column_names)
    elif len(fields) in POSITIONAL_NAMES:
        names = list(POSITIONAL_NAMES[len(fields)])
    else:
        raise ValueError(
            f"{path}: line 1 has {len(fields)} fields and no header; pass column_names=[...] "
            f"(files of 2, 3 or 4 fields are read as {list(POSITIONAL_NAMES.values())})"
        )
    if header and column_names is not None:
        names = list(column_names)
    return _Layout(delimiter=delimiter, header=header, names=names, quoted=quoted)


# ---------------------------------------------------------------------------- line numbers (error path only)
def _iter_data_lines(path: Path, layout: _Layout):
    """(line number, text) of the data lines pyarrow reads (blank lines are skipped)."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number < layout.data_start_line:
                continue
            text = line.rstrip("\r\n")
            if text:
                yield number, text


def _line_of_row(path: Path, layout: _Layout, row: int) -> str:
    for index, (number, _) in enumerate(_iter_data_lines(path, layout)):
        if index == row:
            return f"line {number}"
    return f"data row {row + 1}"


def _locate_parse_error(path: Path, layout: _Layout, message: str) -> str:
    expected = len(layout.names)
    for number, text in _iter_data_lines(path, layout):
        found = len(_split(text, layout.delimiter, layout.quoted))
        if found != expected:
            return f"{path}, line {number}: expected {expected} fields separated by {layout.delimiter!r}, found {found}: {text[:200]!r}"
    return f"{path}: {message}"


def _locate_bad_utf8(path: Path) -> str | None:
    """The first line holding bytes that are not UTF-8 (pyarrow names only the column)."""
    with _open_text(path, errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            bad = _UNDECODABLE.search(line)
            if bad:
                byte = ord(bad.group()) - 0xDC00
                return (
                    f"{path}, line {number}: not UTF-8 text ({line[:bad.start()]!r} is followed by the byte "
                    f"0x{byte:02x}); save the file as UTF-8"
                )
    return None


# ---------------------------------------------------------------------------- reading
def _read_delimited(path: Path, layout: _Layout, wanted: list[str]) -> pa.Table:
    """Reads ``wanted`` columns as strings; a multi-character delimiter made of one
    repeated character (MovieLens ``::``) is read as that character with the empty
    fields between the repeats skipped."""
    width = len(layout.delimiter)
    physical = []
    for index, name in enumerate(layout.names):
        physical.append(name)
        if index < len(layout.names) - 1:
            physical.extend(f"__gap{index}_{k}" for k in range(width - 1))
    read_options = pcsv.ReadOptions(column_names=physical, skip_rows=1 if layout.header else 0, block_size=1 << 24)
    parse_options = pcsv.ParseOptions(
        delimiter=layout.delimiter[0], quote_char='"' if layout.quoted else False, ignore_empty_lines=True
    )
    convert_options = pcsv.ConvertOptions(
        include_columns=wanted, column_types={name: pa.string() for name in wanted}, strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    try:
        source = pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)
        with source:
            table = pcsv.read_csv(
                source, read_options=read_options, parse_options=parse_options, convert_options=convert_options
            )
    except pa.ArrowInvalid as err:
        message = str(err)
        if "Empty CSV file" in message:
            raise ValueError(f"{path}: the file is empty") from None
        if "CSV parse error" in message:
            raise ValueError(_locate_parse_error(path, layout, message)) from None
        if "invalid UTF8" in message:
            raise ValueError(_locate_bad_utf8(path) or f"{path}: {message}") from None
        raise ValueError(f"{path}: {message}") from None
    return _trimmed(table)


def _trimmed(table: pa.Table) -> pa.Table:
    """Spaces around a field (``1, 10``) are not part of the value: without this
    ``' 10'`` would be an item apart from ``'10'`` and turn the column into text."""
    return pa.table({name: pc.utf8_trim_whitespace(table[name]) for name in table.column_names})


def _resolve(
    path: Path, names: list[str], wanted: str, columns: Mapping[str, str | int], required: bool
) -> str | None:
    """The source column holding canonical column ``wanted``."""
    if wanted in columns:
        source = columns[wanted]
        if isinstance(source, int):
            if not 0 <= source < len(names):
                raise ValueError(f"{path}: column position {source} for {wanted!r} is outside the {len(names)} columns")
            return names[source]
        if source not in names:
            raise ValueError(f"{path}: column {source!r} (for {wanted!r}) is not among the columns {names}")
        return source
    lowered = {_clean_name(n): n for n in reversed(names)}
    for alias in COLUMN_ALIASES.get(wanted, (wanted,)):
        if alias in lowered:
            return lowered[alias]
    if required:
        aliases = COLUMN_ALIASES.get(wanted, (wanted,))
        raise ValueError(
            f"{path}: no {wanted!r} column among the columns {names} (looked for {list(aliases)}); "
            f"name it with columns={{{wanted!r}: <name or position>}}"
        )
    return None


def _first_empty_row(column: pa.Array) -> int | None:
    """Row of the first missing or blank value, if any."""
    empty = column.is_null()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(column), ""))
    rows = np.flatnonzero(empty.to_numpy(zero_copy_only=False))
    return int(rows[0]) if len(rows) else None


def _check_ids(path: Path, column: pa.ChunkedArray, what: str, locate: Callable[[int], str]) -> pa.Array:
    """User/item ids: integers stay int64 (unsigned ones beyond int64 become their
    decimal text), anything else is a non-empty string."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_floating(column.type):
        whole = pc.equal(pc.floor(column), column)
        if pc.all(whole).as_py() is not False and not column.null_count:
            column = column.cast(pa.int64())
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    row = _first_empty_row(column)
    if row is not None:
        raise ValueError(f"{path}, {locate(row)}: empty {what}")
    if pa.types.is_integer(column.type):
        try:
            return column.cast(pa.int64())
        except pa.ArrowInvalid:  # uint64 ids above 2**63 - 1: kept exactly, as text ids
            return column.cast(pa.string())
    if pa.types.is_string(column.type):
        return column
    raise ValueError(f"{path}: {what}s must be integers or strings, got {column.type}")


def _ids_from_strings(column: pa.Array) -> pa.Array:
    """Integer-looking id columns become int64 (decided on the whole column)."""
    try:
        return pc.cast(column, pa.int64())
    except _PARSE_ERRORS:
        return column


def _numbers(column: pa.Array) -> pa.Array:
    """Text -> int64 when every value is a whole number, float64 otherwise. A value
    is accepted when it reads as a float on its own, whatever the other values are,
    so that ``_first_refused_row`` can find the bad one."""
    try:
        return pc.cast(column, pa.int64())
    except _PARSE_ERRORS:
        return pc.cast(column, pa.float64())


def _epoch_seconds(times: pa.Array) -> pa.Array:
    """Timestamps or dates -> float64 seconds since the epoch (a zone-less value is taken as UTC)."""
    micros = times.cast(pa.timestamp("us")).cast(pa.int64())
    return pc.divide(micros.cast(pa.float64()), 1e6)


def epoch_seconds(times: pa.Array) -> np.ndarray:
    """A timestamp column as ``build_sequences`` keeps it (numbers, dates or times) -> float64 numpy."""
    if pa.types.is_timestamp(times.type) or pa.types.is_date(times.type):
        times = _epoch_seconds(times)
    return times.to_numpy(zero_copy_only=False).astype(np.float64)


def parse_time(value: float | str, name: str) -> float:
    """A time a person wrote (a number in the log's unit, or ISO 8601 text such as
    ``"1998-03-01"``, UTC unless it names a zone) -> seconds; the error names the setting."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        value = value.isoformat()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return float(_datetime_seconds(pa.array([value.strip()]))[0].as_py())
        except _PARSE_ERRORS:
            pass
    raise ValueError(f"{name} must be a time: a number or an ISO 8601 date/time such as '1998-03-01', got {value!r}")


def _datetime_seconds(column: pa.Array) -> pa.Array:
    """ISO 8601 text -> float64 seconds since the epoch. A value may end in a zone
    (``Z``, ``+02:00``, `` UTC``), honoured; one without a zone is taken as UTC, so
    both kinds can share a column. Each value is parsed on its own (see ``_numbers``)."""
    text = pc.replace_substring_regex(column, _UTC_NAME, "Z")
    zoned = pc.match_substring_regex(text, _ZONED).to_numpy(zero_copy_only=False)
    micros = np.empty(len(text), dtype=np.int64)
    for rows, kind in ((zoned, pa.timestamp("us", tz="UTC")), (~zoned, pa.timestamp("us"))):
        parsed = pc.cast(text.filter(pa.array(rows)), kind)
        micros[rows] = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return _epoch_seconds(pa.array(micros, pa.timestamp("us")))


def _refuses(parse: Parser, column: pa.Array) -> bool:
    try:
        parse(column)
    except _PARSE_ERRORS:
        return True
    return False


def _first_refused_row(column: pa.Array, parse: Parser) -> int:
    """Row of the first value ``parse`` refuses in a column it refuses, found by
    halving: whole-column parses only, about twice the work of one (error path)."""
    low, high = 0, len(column)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _refuses(parse, column.slice(low, middle - low)) else (middle, high)
    return low


def _unparsable(path: Path, column: pa.Array, what: str, locate: Callable[[int], str], parsers: list[Parser]) -> str:
    """The error for a text column that no parser takes whole: the first value
    refused by the parser that takes the first value (so a date among numbers is
    named as a mix, not as garbage)."""
    parse = next((p for p in parsers if not _refuses(p, column.slice(0, 1))), parsers[0])
    row = _first_refused_row(column, parse)
    value = column[row].as_py()
    if any(not _refuses(p, column.slice(row, 1)) for p in parsers):
        return (
            f"{path}, {locate(row)}: {what} mixes numbers and dates/times: {value!r} here, "
            f"{column[0].as_py()!r} on {locate(0)}"
        )
    kind = "neither a number nor a date/time" if len(parsers) > 1 else "not a number"
    return f"{path}, {locate(row)}: {what} is {kind}: {value!r}"


def _to_number(path: Path, column: pa.Array, what: str, locate: Callable[[int], str], allow_datetime: bool) -> pa.Array:
    """int64 when every value is a whole number, float64 otherwise; dates/times
    (only for timestamps) become float64 seconds since the epoch."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    row = _first_empty_row(column)
    if row is not None:
        raise ValueError(f"{path}, {locate(row)}: empty {what}")
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64())
    if pa.types.is_floating(column.type):
        return column.cast(pa.float64())
    if allow_datetime and (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
        return _epoch_seconds(column)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise ValueError(f"{path}: {what} must be numeric, got {column.type}")
    parsers = [_numbers, _datetime_seconds] if allow_datetime else [_numbers]
    for parse in parsers:
        try:
            return parse(column)
        except _PARSE_ERRORS:
            pass
    raise ValueError(_unparsable(path, column, what, locate, parsers))


def read_interaction_file(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    columns: Mapping[str, str | int] | None = None,
    extra_columns: Sequence[str] = (),
    delimiter: str | None = None,
    header: bool | None = None,
    column_names: Sequence[str] | None = None,
    rating_threshold: float | None = None,
) -> pa.Table:
    """Reads an interaction file into a Table of ``user_id``, ``item_id``, ``timestamp``
    (then ``extra_columns`` in the order asked). ``bert4rec_hf.data.read_interactions``
    takes the same arguments and also the name of a registered data set.

    Args:
        path: the file.
        format: one of ``FORMATS``; detected from the file name when left out.
        columns: canonical name -> source column name or 0-based position, for
            columns whose names the reader does not recognise (``COLUMN_ALIASES``),
            e.g. ``{"user_id": "visitorid", "timestamp": 0}``. Keys other than the
            three canonical ones are kept as extra columns.
        extra_columns: further canonical columns to keep, e.g. ``("rating",)``.
        delimiter: field separator of ``csv`` files (``,`` by default); may be a
            repeated character such as ``::``.
        header: whether a ``csv`` file has a header line; detected when left out:
            line 1 is a header when it names a known column (``COLUMN_ALIASES`` or a
            name in ``columns``), or when none of its fields is a number while a
            column of the next lines holds only numbers. Pass it for a header of
            unknown names above text ids.
        column_names: names of the columns of a header-less file.
        rating_threshold: keep interactions with ``rating >= rating_threshold``
            (implicit feedback from explicit ratings).

    User and item ids are ``int64`` when every value is an integer, strings
    otherwise; RecBole ``token`` columns are always strings. Timestamps are
    ``int64`` (whole numbers) or ``float64``, ratings ``float64``; ISO 8601
    dates/times become ``float64`` seconds since the epoch, in UTC when the value
    names a zone (``Z``, ``+02:00``, `` UTC``) and taken as UTC when not. Errors name the
    file, the line and the problem; nothing is written anywhere.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file (a registered data set's name is read by load_interactions or read_interactions)"
        )
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected an interaction file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    format = format or detect_format(path) or "csv"
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    columns = dict(columns or {})
    extras = list(dict.fromkeys([*extra_columns, *(k for k in columns if k not in (USER, ITEM, TIME))]))
    canonical = [USER, ITEM, TIME, *extras]
    if rating_threshold is not None and RATING not in canonical:
        canonical.append(RATING)

    if format == "parquet":
        return _read_parquet(path, columns, canonical, extras, rating_threshold)

    known = {alias for aliases in COLUMN_ALIASES.values() for alias in aliases} | {
        _clean_name(v) for v in columns.values() if isinstance(v, str)  # positions are not names
    }
    if format == "atomic":
        layout = _atomic_layout(path)
    elif format == "udata":
        layout = _delimited_layout(path, "\t", False, column_names or POSITIONAL_NAMES[4], False, known)
    elif format == "dat":
        layout = _delimited_layout(path, "::", False, column_names or POSITIONAL_NAMES[4], False, known)
    elif format == "lines":
        layout = _delimited_layout(path, delimiter or " ", False, column_names or POSITIONAL_NAMES[2], False, known)
    else:
        default = "\t" if format == "tsv" else ","
        layout = _delimited_layout(path, delimiter or default, header, column_names, True, known)

    sources = {name: _resolve(path, layout.names, name, columns, required=name != TIME) for name in canonical}
    wanted = list(dict.fromkeys(s for s in sources.values() if s is not None))
    table = _read_delimited(path, layout, wanted)
    if table.num_rows == 0:
        raise ValueError(f"{path}: no interactions (the file has no data lines)")

    def locate(row: int) -> str:
        return _line_of_row(path, layout, row)

    out = _convert_columns(
        path,
        table,
        sources,
        locate,
        float_sources={source for source, kind in layout.types.items() if kind == "float"},
        parse_ids=lambda source: layout.types.get(source) != "token",  # RecBole tokens stay strings
    )
    return _finish(path, out, extras, rating_threshold, table.num_rows)


def _convert_columns(
    path: Path,
    table: pa.Table,
    sources: dict[str, str | None],
    locate: Callable[[int], str],
    float_sources: set[str] = frozenset(),
    parse_ids: Callable[[str], bool] = lambda source: False,
) -> dict[str, pa.Array]:
    """Checks and converts the canonical columns read from ``sources``: ids
    checked (and parsed from text where ``parse_ids`` says so), timestamps,
    ratings and float-typed columns made numeric; errors name ``locate(row)``."""
    out: dict[str, pa.Array] = {}
    for name, source in sources.items():
        if source is None:
            continue
        column = table[source].combine_chunks()
        if name in (USER, ITEM):
            if parse_ids(source):
                column = _ids_from_strings(column)
            out[name] = _check_ids(path, column, name.replace("_id", " id"), locate)
        elif name in (TIME, RATING) or source in float_sources:
            out[name] = _to_number(path, column, name, locate, allow_datetime=name == TIME)
            if name == RATING:
                out[name] = out[name].cast(pa.float64())
        else:
            out[name] = column
    return out


def _read_parquet(
    path: Path, columns: dict, canonical: list[str], extras: list[str], rating_threshold: float | None
) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: not a readable parquet file: {err}") from None
    names = list(schema.names)
    sources = {name: _resolve(path, names, name, columns, required=name != TIME) for name in canonical}
    table = pq.read_table(path, columns=list(dict.fromkeys(s for s in sources.values() if s is not None)))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no interactions (the file has no rows)")

    def locate(row: int) -> str:
        return f"row {row + 1}"

    out = _convert_columns(path, table, sources, locate)
    return _finish(path, out, extras, rating_threshold, table.num_rows)


def _finish(
    path: Path, out: dict[str, pa.Array], extras: list[str], rating_threshold: float | None, num_rows: int
) -> pa.Table:
    metadata = None
    if TIME not in out:
        logger.info("%s: no timestamp column; using the row number (file order is time order)", path)
        out[TIME] = pa.array(np.arange(num_rows, dtype=np.int64))
        metadata = ROW_NUMBER_TIMES
    table = pa.table(
        {name: out[name] for name in [USER, ITEM, TIME, *extras, *([RATING] if RATING in out else [])]}, metadata=metadata
    )
    return filter_by_rating(table, rating_threshold, path).select([USER, ITEM, TIME, *extras])


def filter_by_rating(table: pa.Table, rating_threshold: float | None, source: str | os.PathLike = "the log") -> pa.Table:
    """The interactions rated at least ``rating_threshold`` (implicit feedback
    from explicit ratings); ``None`` keeps all. The readers' ``rating_threshold``
    is this filter; a run applies it after reading, so its data report can say
    whom it removed."""
    if rating_threshold is None:
        return table
    if RATING not in table.column_names:
        raise ValueError(f"{source}: rating_threshold needs a rating column; the log has {table.column_names}")
    if not pa.types.is_integer(table[RATING].type) and not pa.types.is_floating(table[RATING].type):
        raise ValueError(f"{source}: rating_threshold needs a numeric rating column")
    kept = table.filter(pc.greater_equal(table[RATING], rating_threshold))
    logger.info("%s: kept %d of %d interactions with rating >= %s", source, kept.num_rows, table.num_rows, rating_threshold)
    return kept
