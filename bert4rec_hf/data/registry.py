"""Named data sets: one embedded (ml-100k, works offline), the others downloaded
on first use into a cache folder, verified by checksum and extracted. The registry
resolves names; the readers (``readers.py``) read files and never import it.

A download goes to a temporary file in the cache folder and is renamed to its
final name only after its checksum matches; extraction works the same way. A
file under its final name is therefore always complete and verified, and a
failed or interrupted download leaves nothing behind. Beside it a small
``.<file>.source`` record names the URL, member and checksums it came from, so
that a data set registered again with another URL is downloaded again instead
of being served from the old cache.

Cache folder: ``cache_dir`` argument, else ``$BERT4REC_CACHE``, else
``~/.cache/bert4rec_hf``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from .item_features import ItemFeatureTable, read_item_features
from .readers import read_interaction_file

logger = logging.getLogger(__name__)

CACHE_ENV = "BERT4REC_CACHE"
_CHUNK = 1 << 20
_MOVIELENS_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
    "ACM Transactions on Interactive Intelligent Systems (TiiS) 5, 4, Article 19. https://doi.org/10.1145/2827872"
)
_MOVIELENS_TERMS = "GroupLens MovieLens usage licence (research use, cite Harper & Konstan 2015, no endorsement)"
_BERT4REC_CITATION = (
    "Fei Sun et al. 2019. BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from "
    "Transformer. CIKM 2019. https://doi.org/10.1145/3357384.3357895"
)


@dataclass(frozen=True)
class DatasetSource:
    """Where a named data set comes from and how to read it.

    ``sha256``/``md5``: published or pinned digests of the downloaded file; every
    one given must match. With neither, the download is accepted and its sha256
    logged so it can be pinned. ``member``: the file to extract from a zip/tar
    archive; None when the download is the data file itself. ``embedded``: a
    file shipped in ``bert4rec_hf/data/datasets``, used instead of the download.
    ``item_table``: a shipped item table (RecBole ``.item``) of the same items,
    read by ``load_item_features``.
    """

    name: str
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    member: str | None = None
    embedded: str | None = None
    item_table: str | None = None
    reader_options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    license: str = ""
    citation: str = ""

    @property
    def file_name(self) -> str:
        """The data file's name in the cache folder."""
        if self.member:
            return Path(self.member).name
        return Path(urlparse(self.url or "").path).name or f"{self.name}.data"


_SOURCES = [
    DatasetSource(
        name="ml-100k",
        embedded="ml-100k.inter.gz",
        item_table="ml-100k.item.gz",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",  # GroupLens' published ml-100k.zip.md5
        member="ml-100k/u.data",
        reader_options={"format": "atomic"},
        description="MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users. The embedded copy is "
        "RecBole's ml-100k.inter (string ids); without it, u.data is downloaded (integer ids).",
        license=_MOVIELENS_TERMS + "; see MOVIELENS_LICENSE.txt",
        citation=_MOVIELENS_CITATION,
    ),
    DatasetSource(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",  # GroupLens' published ml-1m.zip.md5; sha256 not pinned
        member="ml-1m/ratings.dat",
        reader_options={"format": "dat"},
        description="MovieLens 1M: 1,000,209 ratings of 3,706 movies by 6,040 users.",
        license=_MOVIELENS_TERMS,
        citation=_MOVIELENS_CITATION,
    ),
    DatasetSource(
        name="ml-20m",
        url="https://files.grouplens.org/datasets/movielens/ml-20m.zip",
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        md5="cd245b17a1ae2cc31bb14903e1204af3",  # GroupLens' published ml-20m.zip.md5
        member="ml-20m/ratings.csv",
        reader_options={"format": "csv"},
        description="MovieLens 20M: 20,000,263 ratings of 26,744 movies by 138,493 users.",
        license=_MOVIELENS_TERMS,
        citation=_MOVIELENS_CITATION,
    ),
    DatasetSource(
        name="beauty",
        url="https://raw.githubusercontent.com/FeiSun/BERT4Rec/master/data/beauty.txt",
        sha256="f480b7a7403852342ffd8f9809bb30697dd669be31813d0e204b698fec86ef49",
        reader_options={"format": "lines"},
        description="Amazon Beauty as preprocessed for the BERT4Rec paper: 353,962 interactions, 40,226 users, "
        "54,542 items, 'user item' lines in time order.",
        license="Derived from the Amazon review data (McAuley et al.), research use",
        citation=_BERT4REC_CITATION,
    ),
    DatasetSource(
        name="steam",
        url="https://raw.githubusercontent.com/FeiSun/BERT4Rec/master/data/steam.txt",
        reader_options={"format": "lines"},
        description="Steam as preprocessed for the BERT4Rec paper: 'user item' lines in time order.",
        license="Derived from the Steam data of Kang & McAuley (2018), research use",
        citation=_BERT4REC_CITATION,
    ),
]
_REGISTRY: dict[str, DatasetSource] = {source.name: source for source in _SOURCES}
DATASETS: Mapping[str, DatasetSource] = MappingProxyType(_REGISTRY)


def register_dataset(source: DatasetSource, overwrite: bool = False) -> None:
    """Adds a named data set (e.g. a company log on an internal server)."""
    if source.name in _REGISTRY and not overwrite:
        raise ValueError(f"a data set named {source.name!r} is already registered; pass overwrite=True")
    _REGISTRY[source.name] = source


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bert4rec_hf").expanduser()


def _source(name_or_source: str | DatasetSource) -> DatasetSource:
    if isinstance(name_or_source, DatasetSource):
        return name_or_source
    if name_or_source not in _REGISTRY:
        raise KeyError(f"unknown data set {name_or_source!r}; registered: {list_datasets()}")
    return _REGISTRY[name_or_source]


def _write_atomically(destination: Path, write) -> None:
    """Calls ``write(file)`` on a temporary file beside ``destination`` and renames
    it into place only when ``write`` returns; on any error the file is removed."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _download(source: DatasetSource, destination: Path) -> None:
    def fetch(out) -> None:
        digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
        with urllib.request.urlopen(source.url, timeout=60) as response:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
        for kind in ("sha256", "md5"):
            expected, actual = getattr(source, kind), digests[kind].hexdigest()
            if expected is not None and actual != expected.lower():
                raise ValueError(
                    f"{source.name}: checksum mismatch for {source.url}: expected {kind} {expected}, got {actual}; "
                    "the download was discarded"
                )
        if source.sha256 is None:
            logger.warning("%s: sha256 not pinned; the downloaded file has sha256 %s", source.name,
                           digests["sha256"].hexdigest())

    logger.info("%s: downloading %s", source.name, source.url)
    _write_atomically(destination, fetch)


def _extract(archive: Path, member: str, destination: Path) -> None:
    def copy(out) -> None:
        with ExitStack() as stack:
            if zipfile.is_zipfile(archive):
                bundle = stack.enter_context(zipfile.ZipFile(archive))
                names = bundle.namelist()
                if member not in names:
                    raise ValueError(f"{archive}: the archive has no member {member!r} (it has {names[:10]})")
                stream = stack.enter_context(bundle.open(member))
            elif tarfile.is_tarfile(archive):
                bundle = stack.enter_context(tarfile.open(archive))
                try:
                    stream = bundle.extractfile(member)
                except KeyError:
                    stream = None
                if stream is None:
                    raise ValueError(f"{archive}: the archive has no file {member!r} (it has {bundle.getnames()[:10]})")
                stack.enter_context(stream)
            else:
                raise ValueError(f"{archive}: not a zip or tar archive, cannot extract {member!r}")
            shutil.copyfileobj(stream, out, _CHUNK)

    _write_atomically(destination, copy)


def _origin(source: DatasetSource) -> dict[str, str | None]:
    return {"url": source.url, "member": source.member, "sha256": source.sha256, "md5": source.md5}


def _origin_record(data_file: Path) -> Path:
    return data_file.with_name(f".{data_file.name}.source")


def _cached_elsewhere(source: DatasetSource, data_file: Path) -> bool:
    """True when the cached file was fetched for another URL, member or checksum.
    A file without a record (an older cache, or one put there by hand) is kept."""
    record = _origin_record(data_file)
    if not record.is_file():
        return False
    try:
        origin = json.loads(record.read_text(encoding="utf-8"))
    except ValueError:  # unreadable record (UnicodeDecodeError is one too): fetch again
        return True
    if origin == _origin(source):
        return False
    logger.info("%s: the cached %s came from %s; downloading %s", source.name, data_file, origin.get("url"), source.url)
    return True


def download_dataset(
    name_or_source: str | DatasetSource, cache_dir: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Path of the data file of a named data set, downloading (and verifying and
    extracting) it the first time. ``force`` downloads again."""
    source = _source(name_or_source)
    if not source.url:
        raise ValueError(f"{source.name}: no download URL")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / source.name
    data_file = folder / source.file_name
    force = force or _cached_elsewhere(source, data_file)
    if data_file.is_file() and not force:
        return data_file
    downloaded = data_file  # without an archive the download is the data file, even if the URL names no file
    if source.member:
        downloaded = folder / (Path(urlparse(source.url).path).name or f"{source.name}.download")
    if force or not downloaded.is_file():
        _download(source, downloaded)
    if source.member:
        _extract(downloaded, source.member, data_file)
    _origin_record(data_file).write_text(json.dumps(_origin(source)), encoding="utf-8")
    return data_file


def load_interactions(
    name_or_source: str | DatasetSource, cache_dir: str | os.PathLike | None = None, **read_options: Any
) -> pa.Table:
    """``read_interactions`` of a named data set (``list_datasets()``); keyword
    arguments override the data set's reader options, e.g. ``extra_columns``."""
    source = _source(name_or_source)
    options = {**source.reader_options, **{k: v for k, v in read_options.items() if v is not None}}
    if source.embedded:
        resource = resources.files(__package__).joinpath("datasets", source.embedded)
        if resource.is_file():
            with resources.as_file(resource) as path:
                return read_interaction_file(path, **options)
        logger.info("%s: no embedded copy in this installation; downloading it", source.name)
        options = {**options, "format": None}  # the download has its own layout
    path = download_dataset(source, cache_dir)
    return read_interaction_file(path, **{k: v for k, v in options.items() if v is not None})


def load_item_features(
    name_or_path: str | os.PathLike, fields: Sequence[str] | None = None, **options: Any
) -> ItemFeatureTable:
    """``read_item_features`` of a file, or of the item table a registered data set ships
    (``ml-100k``: genres ``class``, ``release_year``, ``movie_title``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file() or not isinstance(name_or_path, str) or name_or_path not in _REGISTRY:
        return read_item_features(path, fields, **options)
    source = _REGISTRY[name_or_path]
    resource = resources.files(__package__).joinpath("datasets", source.item_table or "")
    if not source.item_table or not resource.is_file():
        raise FileNotFoundError(f"{name_or_path}: the data set ships no item table; set item_features_path")
    with resources.as_file(resource) as shipped:
        return read_item_features(shipped, fields, **options)


def read_interactions(
    path_or_name: str | os.PathLike,
    format: str | None = None,
    *,
    columns: Mapping[str, str | int] | None = None,
    extra_columns: Sequence[str] = (),
    delimiter: str | None = None,
    header: bool | None = None,
    column_names: Sequence[str] | None = None,
    rating_threshold: float | None = None,
) -> pa.Table:
    """Reads an interaction log: a file (``read_interaction_file``, whose docstring lists the
    formats and every argument), or, where no such file exists, the name of a registered
    data set (``list_datasets()``), e.g. ``"ml-100k"``, read by ``load_interactions`` with
    ``columns``, ``extra_columns`` and ``rating_threshold``."""
    path = Path(path_or_name).expanduser()
    if not path.is_file() and isinstance(path_or_name, str) and path_or_name in _REGISTRY:
        return load_interactions(
            path_or_name, columns=columns, extra_columns=extra_columns, rating_threshold=rating_threshold
        )
    if not path.exists():
        raise FileNotFoundError(f"{path_or_name}: no such file (and not a registered data set: {list_datasets()})")
    return read_interaction_file(
        path, format, columns=columns, extra_columns=extra_columns, delimiter=delimiter, header=header,
        column_names=column_names, rating_threshold=rating_threshold,
    )  # fmt: skip
