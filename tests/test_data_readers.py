import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bert4rec_hf.data import detect_format, read_interactions

from .helpers import ML100K, shared_data


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def distinct(table: pa.Table, column: str) -> int:
    return len(pc.unique(table[column]))


# ---------------------------------------------------------------------------- real files
def test_ml100k_atomic_file_counts_and_types():
    table = read_interactions(ML100K, extra_columns=["rating"])
    assert table.column_names == ["user_id", "item_id", "timestamp", "rating"]
    assert (table.num_rows, distinct(table, "user_id"), distinct(table, "item_id")) == (100_000, 943, 1_682)
    # RecBole "token" columns stay strings; integral timestamps stay int64
    assert table.schema.field("user_id").type == pa.string() and table.schema.field("item_id").type == pa.string()
    assert table.schema.field("timestamp").type == pa.int64() and table.schema.field("rating").type == pa.float64()
    assert table.slice(0, 1).to_pylist() == [
        {"user_id": "196", "item_id": "242", "timestamp": 881250949, "rating": 3.0}
    ]


def test_beauty_lines_file_counts_and_synthetic_timestamps():
    table = read_interactions(shared_data("beauty/beauty.txt"))
    assert table.column_names == ["user_id", "item_id", "timestamp"]
    assert (table.num_rows, distinct(table, "user_id"), distinct(table, "item_id")) == (353_962, 40_226, 54_542)
    assert table.schema.field("user_id").type == pa.int64()
    assert table["timestamp"].to_pylist()[:3] == [0, 1, 2]  # file order is time order


def test_rating_threshold_keeps_ratings_at_or_above():
    full = read_interactions(ML100K, extra_columns=["rating"])
    kept = read_interactions(ML100K, rating_threshold=4)
    assert kept.column_names == ["user_id", "item_id", "timestamp"]  # rating read for the filter, not returned
    assert kept.num_rows == pc.sum(pc.greater_equal(full["rating"], 4)).as_py() == 55_375


def test_gzip_is_read_transparently(tmp_path):
    plain = tmp_path / "ml.inter"
    plain.write_bytes(gzip.decompress(ML100K.read_bytes()))
    assert read_interactions(ML100K).equals(read_interactions(plain))


# ---------------------------------------------------------------------------- formats
@pytest.mark.parametrize(
    ("name", "expected"),
    [("u.data", "udata"), ("ratings.dat", "dat"), ("x.inter.gz", "atomic"), ("a.csv", "csv"), ("a.tsv", "tsv"),
     ("a.parquet", "parquet"), ("beauty.txt", "lines"), ("a.json", None)],
)
def test_detect_format(name, expected):
    assert detect_format(name) == expected


def test_movielens_udata_and_dat(tmp_path):
    rows = [(1, 10, 5, 300), (1, 11, 3, 100), (2, 10, 4, 200)]
    udata = write(tmp_path / "u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    dat = write(tmp_path / "ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows))
    expected = [{"user_id": u, "item_id": i, "timestamp": t, "rating": float(r)} for u, i, r, t in rows]
    assert read_interactions(udata, extra_columns=["rating"]).to_pylist() == expected
    assert read_interactions(dat, extra_columns=["rating"]).to_pylist() == expected


def test_csv_with_header_aliases_and_string_ids(tmp_path):
    path = write(tmp_path / "log.csv", "userId,movieId,rating,timestamp\nu1,m1,3.5,10\nu2,m9,4.0,5\n")
    table = read_interactions(path, extra_columns=["rating"])
    assert table.to_pylist() == [
        {"user_id": "u1", "item_id": "m1", "timestamp": 10, "rating": 3.5},
        {"user_id": "u2", "item_id": "m9", "timestamp": 5, "rating": 4.0},
    ]


def test_csv_column_mapping_by_name_and_position_and_delimiter(tmp_path):
    path = write(tmp_path / "events.txt", "when;who;what;kind\n7;1;100;view\n8;2;200;buy\n")
    table = read_interactions(
        path, format="csv", delimiter=";", columns={"user_id": "who", "item_id": 2, "timestamp": "when", "kind": 3}
    )
    assert table.to_pylist() == [
        {"user_id": 1, "item_id": 100, "timestamp": 7, "kind": "view"},
        {"user_id": 2, "item_id": 200, "timestamp": 8, "kind": "buy"},
    ]


def test_headerless_csv_positional_columns(tmp_path):
    path = write(tmp_path / "log.csv", "1,10,1.5\n2,20,0.5\n")
    assert read_interactions(path).to_pylist() == [
        {"user_id": 1, "item_id": 10, "timestamp": 1.5},
        {"user_id": 2, "item_id": 20, "timestamp": 0.5},
    ]
    named = read_interactions(path, column_names=["item_id", "user_id", "timestamp"], header=False)
    assert named.column_names == ["user_id", "item_id", "timestamp"] and named["user_id"].to_pylist() == [10, 20]


def test_ids_that_are_not_all_integers_become_strings(tmp_path):
    path = write(tmp_path / "log.tsv", "user\titem\n1\t7\n2\tB00X\n")
    table = read_interactions(path)
    assert table.schema.field("user_id").type == pa.int64() and table["item_id"].to_pylist() == ["7", "B00X"]
    assert table["timestamp"].to_pylist() == [0, 1]


def test_iso_datetime_timestamps(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,2,2020-01-01T00:00:10\n1,3,2020-01-01\n")
    assert read_interactions(path)["timestamp"].to_pylist() == [1577836810.0, 1577836800.0]


def test_time_zone_marked_timestamps_are_utc_seconds(tmp_path):
    values = ["2015-01-01T10:00:00Z", "2015-01-01T10:00:00+02:00", "2015-01-01 10:00:00 UTC", "2015-01-01 10:00:00"]
    path = write(tmp_path / "log.csv", "user_id,item_id,event_time\n" + "".join(f"1,{i},{v}\n" for i, v in enumerate(values)))
    assert read_interactions(path)["timestamp"].to_pylist() == [1420106400.0, 1420099200.0, 1420106400.0, 1420106400.0]


def test_spaces_around_fields_are_trimmed(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,10,100\n1, 10,101\n2 ,11 , 102\n")
    table = read_interactions(path)
    assert table.schema.types == [pa.int64(), pa.int64(), pa.int64()]
    assert table.to_pydict() == {"user_id": [1, 1, 2], "item_id": [10, 10, 11], "timestamp": [100, 101, 102]}


def test_space_before_a_late_timestamp_is_not_an_error(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,10,100\n1,11,101\n1,12, 102\n")
    assert read_interactions(path)["timestamp"].to_pylist() == [100, 101, 102]


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz"])
def test_byte_order_mark_before_the_header(tmp_path, name):
    text = "\ufefftimestamp,user_id,item_id\n300,1,10\n100,1,11\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    assert read_interactions(path).to_pydict() == {"user_id": [1, 1], "item_id": [10, 11], "timestamp": [300, 100]}


def test_byte_order_mark_before_an_atomic_header_and_a_headerless_file(tmp_path):
    atomic = write(tmp_path / "log.inter", "\ufeffuser_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    assert read_interactions(atomic).to_pylist() == [{"user_id": "1", "item_id": "2", "timestamp": 3}]
    bare = write(tmp_path / "bare.csv", "\ufeff1,10,100\n2,11,101\n")
    assert read_interactions(bare)["user_id"].to_pylist() == [1, 2]


def test_column_positions_do_not_make_a_numeric_first_line_a_header(tmp_path):
    path = write(tmp_path / "pos.csv", "0,5,100\n0,6,101\n1,5,102\n")
    table = read_interactions(path, columns={"user_id": 0, "item_id": 1, "timestamp": 2})
    assert table.to_pydict() == {"user_id": [0, 0, 1], "item_id": [5, 6, 5], "timestamp": [100, 101, 102]}


def test_unrecognised_names_above_numbers_are_a_header(tmp_path):
    path = write(tmp_path / "log.csv", "buyer,sku\n1,10\n2,11\n")
    with pytest.raises(ValueError, match=r"log.csv: no 'user_id' column among the columns \['buyer', 'sku'\]"):
        read_interactions(path)
    table = read_interactions(path, columns={"user_id": 0, "item_id": 1})
    assert table.to_pydict() == {"user_id": [1, 2], "item_id": [10, 11], "timestamp": [0, 1]}


@pytest.mark.parametrize(
    "text", ["alice,apple\nbob,pear\n", "u1,m1,10\nu2,m2,5\n", "u1,m1,2020-01-01\nu2,m2,2020-01-02\n"]
)
def test_headerless_file_of_string_ids_keeps_every_line(tmp_path, text):
    path = write(tmp_path / "log.csv", text)
    assert read_interactions(path)["user_id"].to_pylist() == [line.split(",")[0] for line in text.splitlines()]


def test_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"UserID": ["a", "b"], "item": [3, 4], "ts": [2.5, 1.0], "rating": [1, 5]}), path)
    table = read_interactions(path, rating_threshold=3)
    assert table.to_pylist() == [{"user_id": "b", "item_id": 4, "timestamp": 1.0}]


def test_uint64_ids_beyond_int64_stay_distinct_as_text(tmp_path):
    path = tmp_path / "log.parquet"
    big = 2**63 + 5  # hashed ids are often unsigned 64-bit
    items = pa.array([big, 7, big + 1], pa.uint64())
    pq.write_table(pa.table({"user_id": pa.array([1, 1, 2], pa.uint64()), "item_id": items, "timestamp": [1, 2, 3]}), path)
    table = read_interactions(path)
    assert table["item_id"].to_pylist() == [str(big), "7", str(big + 1)]
    assert table["user_id"].to_pylist() == [1, 1, 2]  # uint64 ids that fit stay integers


# ---------------------------------------------------------------------------- bad input
def test_null_or_blank_values_in_parquet_name_the_row(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": ["a", None], "item_id": [1, 2], "timestamp": [1, 2]}), path)
    with pytest.raises(ValueError, match=r"log.parquet, row 2: empty user id"):
        read_interactions(path)
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": [1, 2], "timestamp": ["1", " "]}), path)
    with pytest.raises(ValueError, match=r"log.parquet, row 2: empty timestamp"):
        read_interactions(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        read_interactions(tmp_path / "nothere.csv")


@pytest.mark.parametrize("name", ["empty.csv", "empty.inter", "empty.txt"])
def test_empty_file(tmp_path, name):
    path = write(tmp_path / name, "")
    with pytest.raises(ValueError, match=rf"{name}.*empty"):
        read_interactions(path)


def test_empty_gzip_file(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(ValueError, match="empty"):
        read_interactions(path)


def test_header_only_file(tmp_path):
    path = write(tmp_path / "log.inter", "user_id:token\titem_id:token\ttimestamp:float\n")
    with pytest.raises(ValueError, match=r"log.inter: no interactions"):
        read_interactions(path)


def test_header_without_needed_column(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,product_code,timestamp\n1,2,3\n")
    with pytest.raises(ValueError, match=r"log.csv: no 'item_id' column among the columns \['user_id', 'product_code'"):
        read_interactions(path)


def test_atomic_header_without_types(tmp_path):
    path = write(tmp_path / "log.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(ValueError, match=r"log.inter, line 1: .*name:type"):
        read_interactions(path)


def test_missing_rating_column_for_threshold(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(ValueError, match=r"log.csv: no 'rating' column"):
        read_interactions(path, rating_threshold=3)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("u.data", "1\t2\t3\t4\n1\t2\t3\t4\n5\t6\t7\n", 3),
        ("log.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n\n1\t2\n", 4),  # blank line counted
        ("ratings.dat", "1::2::3::4\n1::2::3\n", 2),
        ("beauty.txt", "1 2\n1 3\n1\n", 3),
        ("log.csv", "user_id,item_id,timestamp\n1,2,3\n1,2,3,4\n", 3),
    ],
)
def test_row_with_wrong_number_of_fields_names_the_line(tmp_path, name, text, line):
    path = write(tmp_path / name, text)
    with pytest.raises(ValueError, match=rf"{name}, line {line}: expected \d fields"):
        read_interactions(path)


def test_row_error_in_a_large_file_is_located(tmp_path):
    rows = [f"{i % 97}\t{i % 13}\t3\t{i}" for i in range(50_000)]
    rows[41_234] = "7\t8\t9"
    path = write(tmp_path / "u.data", "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"u.data, line 41235: expected 4 fields separated by '\\t', found 3"):
        read_interactions(path)


def test_non_numeric_timestamp_names_the_line(tmp_path):
    path = write(tmp_path / "log.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t30\n\n1\t3\tsoon\n")
    with pytest.raises(ValueError, match=r"log.inter, line 4: timestamp is neither a number nor a date/time: 'soon'"):
        read_interactions(path)


def test_bad_timestamp_deep_in_a_large_file_is_located(tmp_path):
    rows = [f"{i % 97},{i % 13},{i}" for i in range(50_000)]
    rows[41_234] = "7,8,41234s"
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"log.csv, line 41236: timestamp is neither a number nor a date/time: '41234s'"):
        read_interactions(path)


def test_numbers_and_dates_mixed_in_one_timestamp_column(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,2,5\n1,3,6\n1,4,2020-01-01\n")
    with pytest.raises(ValueError, match=r"log.csv, line 4: timestamp mixes numbers and dates/times: '2020-01-01'.*'5' on line 2"):
        read_interactions(path)


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,item_id,timestamp\n1,tea,100\n1,café,101\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv, line 3: not UTF-8 text .*'1,caf'.*0xe9"):
        read_interactions(path)


def test_non_numeric_rating_names_the_line(tmp_path):
    rows = "".join(f"1\t{i}\t4\t{i}\n" for i in range(5000)) + "1\t9\tgood\t9\n"
    path = write(tmp_path / "u.data", rows)
    with pytest.raises(ValueError, match=r"u.data, line 5001: rating is not a number: 'good'"):
        read_interactions(path, rating_threshold=4)


@pytest.mark.parametrize(("column", "text"), [("user id", "1,2,3\n,4,5\n"), ("item id", "a,b,1\nc, ,2\n")])
def test_empty_user_or_item_id_names_the_line(tmp_path, column, text):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n" + text)
    with pytest.raises(ValueError, match=rf"log.csv, line 3: empty {column}"):
        read_interactions(path)


def test_empty_timestamp_names_the_line(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,2,\n")
    with pytest.raises(ValueError, match=r"log.csv, line 2: empty timestamp"):
        read_interactions(path)


def test_unknown_format_and_bad_delimiter(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(ValueError, match="format must be one of"):
        read_interactions(path, format="xml")
    with pytest.raises(ValueError, match="delimiter must be one character"):
        read_interactions(path, delimiter=",;")
