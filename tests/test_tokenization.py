import json

import numpy as np
import pytest

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, ItemTokenizer


def test_fit_sorts_distinct_ids_after_special_tokens():
    tokenizer = ItemTokenizer.fit([30, 10, 20, 10])
    assert tokenizer.items == [10, 20, 30] and tokenizer.vocab_size == 5 == len(tokenizer)
    assert tokenizer.encode([10, 30]) == [2, 4]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (0, 1)


def test_encode_decode_single_and_batch():
    tokenizer = ItemTokenizer.fit(["b", "a", "c"])
    assert tokenizer.encode(["c", "a"]) == [4, 2]
    assert tokenizer.encode([["a"], [], ["b", "c"]]) == [[2], [], [3, 4]]
    assert tokenizer.decode([4, 2]) == ["c", "a"]
    assert tokenizer.decode([[0, 1, 2], [3]]) == [["a"], ["b"]]
    assert tokenizer.decode([0, 1, 3], skip_special_tokens=False) == ["[PAD]", "[MASK]", "b"]
    assert tokenizer.encode_array(np.array(["a", "c", "a"])).tolist() == [2, 4, 2]


def test_integer_vocabulary_accepts_ids_typed_as_strings():
    tokenizer = ItemTokenizer.fit([50, 172, 133])
    assert tokenizer.encode(["50", 172, " 133"]) == tokenizer.encode([50, 172, 133])
    assert "172" in tokenizer and 999 not in tokenizer and "abc" not in tokenizer


def test_unknown_ids():
    tokenizer = ItemTokenizer.fit([1, 2, 3])
    with pytest.raises(KeyError, match=r"not in the vocabulary.*\[9\]"):
        tokenizer.encode([1, 9])
    assert tokenizer.encode([1, 9, 3], unknown="skip") == [2, 4]
    assert tokenizer.encode([[9], [1, 9, 3]], unknown="skip") == [[], [2, 4]]
    assert tokenizer.encode([1, 9], unknown="mask") == [2, 1]
    with pytest.raises(ValueError, match="unknown must be one of"):
        tokenizer.encode([1], unknown="ignore")


def test_bad_input_types():
    tokenizer = ItemTokenizer.fit([1, 2])
    with pytest.raises(TypeError, match="expected a list"):
        tokenizer.encode(1)
    with pytest.raises(TypeError, match="mixed input"):
        tokenizer.encode([1, [2]])
    with pytest.raises(IndexError, match="outside the vocabulary"):
        tokenizer.decode([7])
    with pytest.raises(ValueError, match="duplicate"):
        ItemTokenizer([1, 1])
    with pytest.raises(ValueError, match="empty item id"):
        ItemTokenizer(["a", " "])


def test_add_items_appends_without_moving_old_ids():
    tokenizer = ItemTokenizer.fit([5, 3])
    before = tokenizer.encode([3, 5])
    assert tokenizer.add_items([7, 3, 6, 7]) == 2
    assert tokenizer.encode([3, 5]) == before and tokenizer.items == [3, 5, 7, 6]


def test_save_and_load_with_the_model(tmp_path):
    tokenizer = ItemTokenizer.fit(["x1", "x2", "x3"])
    model = Bert4RecForMaskedItemPrediction(Bert4RecConfig(vocab_size=tokenizer.vocab_size, hidden_size=8, n_heads=2))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "item_vocab.json").read_text())
    assert data["items"] == ["x1", "x2", "x3"] and data["special_tokens"] == {"[PAD]": 0, "[MASK]": 1}
    assert ItemTokenizer.from_pretrained(tmp_path) == tokenizer
    assert Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path).config.vocab_size == len(tokenizer)
    assert ItemTokenizer.from_pretrained(tmp_path).item_type is str


def test_integer_ids_survive_the_round_trip(tmp_path):
    tokenizer = ItemTokenizer.fit([3, 1, 2])
    tokenizer.save_pretrained(tmp_path)
    assert ItemTokenizer.from_pretrained(tmp_path).items == [1, 2, 3]


def test_size_mismatch_with_config_fails_loudly(tmp_path):
    Bert4RecConfig(vocab_size=10).save_pretrained(tmp_path)
    ItemTokenizer.fit([1, 2, 3]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vocab_size=10.*another checkpoint"):
        ItemTokenizer.from_pretrained(tmp_path)


def test_corrupt_vocabulary_file_names_the_file(tmp_path):
    (tmp_path / "item_vocab.json").write_text('{"items": [1, 2,')
    with pytest.raises(ValueError, match=r"item_vocab.json: not a valid item vocabulary JSON file \(line 1"):
        ItemTokenizer.from_pretrained(tmp_path)
    (tmp_path / "item_vocab.json").write_text('{"items": [1, 1]}')
    with pytest.raises(ValueError, match="duplicate"):
        ItemTokenizer.from_pretrained(tmp_path)


def test_decode_accepts_tensors():
    import torch

    tokenizer = ItemTokenizer.fit([7, 8, 9])
    assert tokenizer.decode(torch.tensor([[4, 2], [3, 0]])) == [[9, 7], [8]]
    assert tokenizer.decode(torch.tensor([2, 3])) == [7, 8]


def test_a_batch_mixing_integer_and_string_ids_is_converted_like_one_history():
    tokenizer = ItemTokenizer.fit([10, 20, 30])
    assert tokenizer.encode([[10, "20"], [30]]) == [[2, 3], [4]] == [tokenizer.encode([10, "20"]), [4]]
    assert tokenizer.encode([[10, " 30 "], [], ["20", 99]], unknown="skip") == [[2, 4], [], [3]]
    words = ItemTokenizer.fit(["10", "a"])
    assert words.encode([[10], ["a", 10]]) == [[2], [3, 2]]


def test_ids_an_integer_vocabulary_cannot_hold_are_unknown_not_a_conversion_error():
    tokenizer = ItemTokenizer.fit([10, 20, 9223372036854775807])
    strange = ["abc", "", "1e3", "+10", "10.0", "99999999999999999999", "9223372036854775808"]
    with pytest.raises(KeyError, match=r"7 item id\(s\).*'abc'"):  # named as given, not as the null they convert to
        tokenizer.encode([10, *strange])
    assert tokenizer.encode([10, *strange, "-0010", "0020"], unknown="skip") == [2, 3]  # -10 is no item; 0020 is 20
    assert tokenizer.encode([["abc", 20], ["9223372036854775807"]], unknown="mask") == [[1, 3], [4]]
    assert "abc" not in tokenizer and "020" in tokenizer


@pytest.mark.parametrize(
    "vocabulary, bad, match",
    [
        ([5, 3], [7, None], "null/empty item id"),
        ([5, 3], [7, ""], "empty item id"),
        (["a", "b"], ["c", None], "null/empty item id"),
        (["a", "b"], ["c", "  "], "empty item id"),
        ([5, 3], [7, "abc"], r"are integers; cannot convert \['abc'\]"),
    ],
)
def test_add_items_refuses_ids_the_saved_vocabulary_could_not_hold(tmp_path, vocabulary, bad, match):
    tokenizer = ItemTokenizer.fit(vocabulary)
    with pytest.raises(ValueError, match=match):
        tokenizer.add_items(bad)
    assert tokenizer == ItemTokenizer.fit(vocabulary)  # nothing added, not even the good id
    assert tokenizer.add_items(bad[:1]) == 1
    tokenizer.save_pretrained(tmp_path)
    assert ItemTokenizer.from_pretrained(tmp_path) == tokenizer


def test_a_folder_without_the_vocabulary_names_it_and_the_fix(tmp_path):
    Bert4RecConfig(vocab_size=5).save_pretrained(tmp_path)  # weights' config only, as an old checkpoint
    with pytest.raises(FileNotFoundError, match=r"has no item_vocab.json.*tokenizer.save_pretrained"):
        ItemTokenizer.from_pretrained(tmp_path)
