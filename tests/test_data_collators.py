import numpy as np
import pytest
import torch

from bert4rec_hf.data import DataCollatorForMaskedItemPrediction, DataCollatorForNextItemPrediction, left_pad

VOCAB = 1000


def features(batch: int, length: int | tuple[int, int], seed: int = 0, vocab: int = VOCAB) -> list[dict]:
    rng = np.random.default_rng(seed)
    low, high = (length, length) if isinstance(length, int) else length
    return [{"input_ids": rng.integers(2, vocab, size=int(rng.integers(low, high + 1))).tolist()} for _ in range(batch)]


def collator(seed: int = 0, **kwargs) -> DataCollatorForMaskedItemPrediction:
    kwargs.setdefault("vocab_size", VOCAB)
    return DataCollatorForMaskedItemPrediction(generator=torch.Generator().manual_seed(seed), **kwargs)


def test_left_pad_truncates_keeping_the_most_recent():
    out = left_pad([[5, 6, 7], [], np.arange(2, 12), torch.tensor([9, 8])], 5)
    assert out.dtype == torch.long
    assert out.tolist() == [[0, 0, 5, 6, 7], [0, 0, 0, 0, 0], [7, 8, 9, 10, 11], [0, 0, 0, 9, 8]]
    short = left_pad([[5, 6, 7], [9]], 5)  # as wide as the longest row
    assert short.tolist() == [[5, 6, 7], [0, 0, 9]] and left_pad([[], []], 5).tolist() == [[0], [0]]


def test_masked_output_shapes_padding_and_labels():
    feats = [{"input_ids": [5, 6, 7]}, {"input_ids": list(range(2, 14))}]
    batch = collator(max_seq_length=8, mask_ratio=0.5)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(v.dtype == torch.long and v.shape == (2, 8) for v in batch.values())
    assert batch["attention_mask"].tolist() == [[0] * 5 + [1] * 3, [1] * 8]
    original = left_pad([f["input_ids"] for f in feats], 8)
    masked = batch["labels"] != -100
    assert torch.equal(batch["labels"][masked], original[masked])  # labels are the original items
    assert torch.equal(batch["input_ids"][~masked], original[~masked])  # everything else untouched
    assert (batch["input_ids"][masked] == 1).all()  # mask_replace_prob=1: all [MASK]


def test_mask_rate_within_one_percent_over_many_batches():
    make = collator(max_seq_length=50, mask_ratio=0.2)
    masked = real = 0
    for step in range(40):
        batch = make(features(256, (30, 60), seed=step))
        masked += int((batch["labels"] != -100).sum())
        real += int(batch["attention_mask"].sum())
    assert abs(masked / real - 0.2) < 0.2 * 0.01


def test_never_a_mask_or_padding_label_and_every_row_has_one():
    make = collator(max_seq_length=20, mask_ratio=0.05)
    for step in range(20):
        batch = make(features(64, (1, 30), seed=step))
        labelled = batch["labels"] != -100
        assert labelled.any(dim=1).all()  # >= 1 label per row, even for one-item rows
        assert (batch["labels"][labelled] >= 2).all()  # never [PAD]=0 or [MASK]=1
        assert (batch["attention_mask"][labelled] == 1).all()  # never on padding


def test_last_item_rows_mask_only_the_last_column():
    batch = collator(max_seq_length=10, mask_ratio=0.5, last_item_mask_ratio=1.0)(features(50, (2, 15)))
    labelled = batch["labels"] != -100
    assert labelled[:, -1].all() and not labelled[:, :-1].any()
    make = collator(max_seq_length=30, mask_ratio=0.5, last_item_mask_ratio=0.3)
    last_only = rows = 0
    for step in range(20):
        labelled = make(features(256, 30, seed=step))["labels"] != -100
        last_only += int(((labelled.sum(dim=1) == 1) & labelled[:, -1]).sum())
        rows += 256
    assert abs(last_only / rows - 0.3) < 0.02  # 0.5**30 chance that a random-masked row looks like one


def test_bpr_negatives_are_real_items_other_than_the_positive():
    vocab = 6  # 4 real items: collisions with the positive would be frequent if not excluded
    make = collator(max_seq_length=12, mask_ratio=0.4, vocab_size=vocab, num_negatives=7)
    seen = set()
    for step in range(10):
        batch = make(features(64, (1, 12), seed=step, vocab=vocab))
        negatives, labels = batch["negative_ids"], batch["labels"]
        assert negatives.shape == (64, 12, 7) and negatives.dtype == torch.long
        labelled = labels != -100
        assert (negatives[~labelled] == 0).all()
        chosen = negatives[labelled]
        assert ((chosen >= 2) & (chosen < vocab)).all()
        assert (chosen != labels[labelled].unsqueeze(-1)).all()
        seen.update(chosen.unique().tolist())
    assert seen == {2, 3, 4, 5}


def test_bert_80_10_10_replacement():
    make = collator(max_seq_length=50, mask_ratio=0.3, mask_replace_prob=0.8, random_replace_prob=0.1)
    counts = np.zeros(3)
    for step in range(20):
        batch = make(features(256, 50, seed=step))
        labelled = batch["labels"] != -100
        inputs, labels = batch["input_ids"][labelled], batch["labels"][labelled]
        assert (inputs >= 1).all() and (inputs < VOCAB).all()
        counts += [int((inputs == 1).sum()), int((inputs == labels).sum()), int(((inputs != 1) & (inputs != labels)).sum())]
    share = counts / counts.sum()
    # kept: 10% plus the 1/998 chance that a random item equals the original
    assert np.allclose(share, [0.8, 0.1, 0.1], atol=0.005), share


def test_seeded_generator_is_reproducible_and_global_rng_works():
    feats = features(32, (5, 40))
    kwargs = dict(max_seq_length=40, mask_ratio=0.3, mask_replace_prob=0.8, random_replace_prob=0.1, num_negatives=3)
    first, again, other = collator(1, **kwargs)(feats), collator(1, **kwargs)(feats), collator(2, **kwargs)(feats)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["labels"], other["labels"])
    unseeded = DataCollatorForMaskedItemPrediction(**kwargs, vocab_size=VOCAB)
    torch.manual_seed(7)
    a = unseeded(feats)
    torch.manual_seed(7)
    b = unseeded(feats)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_seq_length": 0}, "max_seq_length"),
        ({"mask_ratio": 0.0}, "mask_ratio"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"last_item_mask_ratio": 1.5}, "last_item_mask_ratio"),
        ({"mask_replace_prob": -0.1}, "mask_replace_prob"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.3}, "mask_replace_prob \\+ random_replace_prob"),
        ({"num_negatives": -1}, "num_negatives"),
        ({"num_negatives": 2, "vocab_size": None}, "vocab_size is required"),
        ({"random_replace_prob": 0.1, "mask_replace_prob": 0.8, "vocab_size": None}, "vocab_size is required"),
        ({"vocab_size": 2}, "vocab_size"),
        ({"num_negatives": 1, "vocab_size": 3}, "vocab_size"),
        ({"generator": 3}, "generator"),
    ],
)
def test_masked_collator_validates_arguments(kwargs, field):
    kwargs = {"vocab_size": VOCAB, **kwargs}
    with pytest.raises(ValueError, match=field):
        DataCollatorForMaskedItemPrediction(**kwargs)


def test_masked_collator_rejects_bad_rows():
    make = collator(max_seq_length=5)
    with pytest.raises(ValueError, match="feature 1 has no items"):
        make([{"input_ids": [3]}, {"input_ids": []}])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        make([{"input_ids": [3, VOCAB]}])
    with pytest.raises(ValueError, match="not \\[MASK\\]"):
        make([{"input_ids": [3, 1]}])
    with pytest.raises(ValueError, match="empty batch"):
        make([])


def test_next_item_collator_with_and_without_labels():
    make = DataCollatorForNextItemPrediction(max_seq_length=4)
    batch = make([{"input_ids": [5, 6, 7, 8, 9], "labels": 10}, {"input_ids": [5], "labels": 11}])
    assert batch["input_ids"].tolist() == [[7, 8, 9, 1], [0, 0, 5, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 10], [-100, -100, -100, 11]]
    assert all(v.dtype == torch.long for v in batch.values())
    inference = make([{"input_ids": [5, 6]}, {"input_ids": []}])
    # as wide as the longest history (+ [MASK]), not max_seq_length: positions are counted from the right
    assert set(inference) == {"input_ids", "attention_mask"} and inference["input_ids"].tolist() == [[5, 6, 1], [0, 0, 1]]
    assert make([{"input_ids": []}])["input_ids"].tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="some features have 'labels'"):
        make([{"input_ids": [5], "labels": 3}, {"input_ids": [6]}])
    with pytest.raises(ValueError, match="max_seq_length"):
        DataCollatorForNextItemPrediction(max_seq_length=1)
