import gzip
import hashlib
import io
import logging
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import pyarrow.compute as pc
import pytest

from bert4rec_hf.data import (
    DATASETS,
    DatasetSource,
    download_dataset,
    list_datasets,
    load_interactions,
    read_interaction_file,
    read_interactions,
)

RATINGS = "1::10::5::300\n1::11::3::100\n2::10::4::200\n"


def files_under(folder: Path) -> list[Path]:
    """Data files in a cache folder (not the hidden records of their origin)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".source")) if folder.exists() else []


def zip_archive(folder: Path) -> Path:
    archive = folder / "toy.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("toy/ratings.dat", RATINGS)
        bundle.writestr("toy/README", "not data")
    return archive


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_embedded_ml100k_works_offline_and_matches_the_published_file(tmp_path):
    embedded = resources.files("bert4rec_hf.data").joinpath("datasets", "ml-100k.inter.gz")
    assert hashlib.sha256(gzip.decompress(embedded.read_bytes())).hexdigest() == (
        "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
    )
    assert resources.files("bert4rec_hf.data").joinpath("datasets", "MOVIELENS_LICENSE.txt").is_file()
    table = load_interactions("ml-100k", extra_columns=["rating"])
    assert (table.num_rows, len(pc.unique(table["user_id"])), len(pc.unique(table["item_id"]))) == (100_000, 943, 1_682)
    plain = tmp_path / "ml-100k.inter"
    plain.write_bytes(gzip.decompress(embedded.read_bytes()))
    assert table.equals(read_interactions(plain, extra_columns=["rating"]))
    assert read_interactions("ml-100k").num_rows == 100_000  # a registered name works as a path


def test_the_registry_resolves_names_and_the_file_reader_reads_files_only(tmp_path, monkeypatch):
    import bert4rec_hf

    assert bert4rec_hf.read_interactions is read_interactions  # the public name resolves registered names
    monkeypatch.chdir(tmp_path)
    named = read_interactions("ml-100k", extra_columns=["rating"], rating_threshold=4)
    assert named.equals(load_interactions("ml-100k", extra_columns=["rating"], rating_threshold=4))
    with pytest.raises(FileNotFoundError, match=r"ml-100k: no such file \(a registered data set's name is read by"):
        read_interaction_file("ml-100k")
    with pytest.raises(FileNotFoundError, match=r"nope: no such file \(and not a registered data set: \[.*'ml-100k'"):
        read_interactions("nope")
    Path("ml-100k").write_text("user_id,item_id\n1,2\n")  # a file of that name is read as the file
    assert read_interactions("ml-100k", format="csv").to_pylist() == [{"user_id": 1, "item_id": 2, "timestamp": 0}]
    Path("folder").mkdir()
    with pytest.raises(IsADirectoryError, match="folder: is a directory"):
        read_interactions("folder")


def test_registry_entries_are_complete():
    assert {"ml-100k", "ml-1m", "ml-20m", "beauty", "steam"} <= set(list_datasets())
    for source in DATASETS.values():
        assert source.url and source.url.startswith("https://") and source.reader_options.get("format")
        assert source.sha256 is None or len(source.sha256) == 64
        assert source.md5 is None or len(source.md5) == 32
    with pytest.raises(KeyError, match="unknown data set 'nope'"):
        load_interactions("nope")


def test_download_verify_extract_from_file_url(tmp_path):
    archive = zip_archive(tmp_path)
    source = DatasetSource(
        name="toy", url=archive.as_uri(), sha256=sha256(archive), member="toy/ratings.dat",
        reader_options={"format": "dat"},
    )
    cache = tmp_path / "cache"
    table = load_interactions(source, cache_dir=cache, extra_columns=["rating"])
    assert table.to_pylist()[0] == {"user_id": 1, "item_id": 10, "timestamp": 300, "rating": 5.0}
    assert [p.relative_to(cache).as_posix() for p in files_under(cache)] == ["toy/ratings.dat", "toy/toy.zip"]
    archive.unlink()  # the second use needs no download
    assert download_dataset(source, cache_dir=cache) == cache / "toy" / "ratings.dat"
    assert load_interactions(source, cache_dir=cache).num_rows == 3


def test_wrong_checksum_fails_loudly_and_leaves_nothing(tmp_path):
    archive = zip_archive(tmp_path)
    cache = tmp_path / "cache"
    for kind, wrong in (("sha256", "0" * 64), ("md5", "0" * 32)):
        source = DatasetSource(name="toy", url=archive.as_uri(), member="toy/ratings.dat", **{kind: wrong})
        with pytest.raises(ValueError, match=rf"checksum mismatch .* expected {kind} 0+, got [0-9a-f]+"):
            load_interactions(source, cache_dir=cache)
        assert files_under(cache) == []


def test_missing_member_leaves_only_the_verified_archive(tmp_path):
    archive = zip_archive(tmp_path)
    source = DatasetSource(name="toy", url=archive.as_uri(), sha256=sha256(archive), member="toy/nothere.dat")
    with pytest.raises(ValueError, match="no member 'toy/nothere.dat'"):
        download_dataset(source, cache_dir=tmp_path / "cache")
    assert [p.name for p in files_under(tmp_path / "cache")] == ["toy.zip"]


def test_unpinned_checksum_is_logged_and_cache_env_var(tmp_path, monkeypatch, caplog):
    tar_path = tmp_path / "toy.tar.gz"
    with tarfile.open(tar_path, "w:gz") as bundle:
        data = RATINGS.replace("::", "\t").encode()
        info = tarfile.TarInfo("toy/u.data")
        info.size = len(data)
        bundle.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("BERT4REC_CACHE", str(tmp_path / "env-cache"))
    source = DatasetSource(name="toy", url=tar_path.as_uri(), member="toy/u.data", reader_options={"format": "udata"})
    with caplog.at_level(logging.WARNING, logger="bert4rec_hf.data.registry"):
        table = load_interactions(source)
    assert table.num_rows == 3
    assert f"sha256 {sha256(tar_path)}" in caplog.text
    assert (tmp_path / "env-cache" / "toy" / "u.data").is_file()


def test_plain_file_download_without_archive(tmp_path):
    lines = tmp_path / "beauty.txt"
    lines.write_text("1 5\n1 6\n2 5\n")
    source = DatasetSource(name="lines", url=lines.as_uri(), sha256=sha256(lines), reader_options={"format": "lines"})
    assert load_interactions(source, cache_dir=tmp_path / "c")["item_id"].to_pylist() == [5, 6, 5]
    assert (tmp_path / "c" / "lines" / "beauty.txt").read_text() == lines.read_text()


def test_a_data_set_registered_again_with_another_url_is_downloaded_again(tmp_path):
    first, second = tmp_path / "v1.txt", tmp_path / "v2.txt"
    first.write_text("1 5\n1 6\n")
    second.write_text("1 5\n1 6\n2 7\n")
    cache = tmp_path / "cache"
    old = DatasetSource(name="logs", url=first.as_uri(), reader_options={"format": "lines"})
    assert load_interactions(old, cache_dir=cache).num_rows == 2
    new = DatasetSource(name="logs", url=second.as_uri(), reader_options={"format": "lines"})
    assert load_interactions(new, cache_dir=cache).num_rows == 3  # was the old file's 2
    second.unlink()  # cached now: served without a download
    assert load_interactions(new, cache_dir=cache).num_rows == 3
    # an archive of the same name from another URL is not reused either
    for version, rows in (("a", RATINGS), ("b", RATINGS + "3::12::1::400\n")):
        (tmp_path / version).mkdir()
        with zipfile.ZipFile(tmp_path / version / "toy.zip", "w") as bundle:
            bundle.writestr("toy/ratings.dat", rows)
        source = DatasetSource(name="toy", url=(tmp_path / version / "toy.zip").as_uri(), member="toy/ratings.dat",
                               reader_options={"format": "dat"})
        assert load_interactions(source, cache_dir=cache).num_rows == rows.count("\n")


def test_plain_file_from_a_url_that_names_no_file(tmp_path, monkeypatch):
    requested = []

    def urlopen(url, timeout):
        requested.append(url)
        return io.BytesIO(b"1 5\n1 6\n2 5\n")

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    source = DatasetSource(name="company", url="https://logs.example.com/?table=clicks", reader_options={"format": "lines"})
    assert load_interactions(source, cache_dir=tmp_path)["item_id"].to_pylist() == [5, 6, 5]
    assert load_interactions(source, cache_dir=tmp_path).num_rows == 3  # the second call reads the cache
    assert requested == [source.url] and files_under(tmp_path) == [tmp_path / "company" / "company.data"]
