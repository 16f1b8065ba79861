import json

import pytest

from bert4rec_hf import Bert4RecConfig


def test_defaults_follow_recbole():
    config = Bert4RecConfig(vocab_size=1684)
    assert (config.hidden_size, config.inner_size, config.n_layers, config.n_heads) == (64, 256, 2, 2)
    assert (config.hidden_dropout_prob, config.attn_dropout_prob) == (0.5, 0.5)
    assert config.hidden_act == "gelu" and config.layer_norm_eps == 1e-12 and config.initializer_range == 0.02
    assert config.mask_ratio == 0.2 and config.loss_type == "CE" and config.max_seq_length == 50
    assert (config.pad_token_id, config.mask_token_id, config.num_items) == (0, 1, 1682)


def test_bert_blocks_read_recbole_names():
    config = Bert4RecConfig(n_layers=3, n_heads=4, inner_size=128, attn_dropout_prob=0.1, max_seq_length=200)
    assert config.num_hidden_layers == 3 and config.num_attention_heads == 4
    assert config.intermediate_size == 128 and config.attention_probs_dropout_prob == 0.1
    assert config.max_position_embeddings == 200
    assert Bert4RecConfig(num_hidden_layers=5).n_layers == 5


def test_round_trip(tmp_path):
    config = Bert4RecConfig(vocab_size=100, hidden_act="swish", loss_type="BPR", num_negatives=3)
    config.save_pretrained(tmp_path)
    loaded = Bert4RecConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=65), "hidden_size (65) must be divisible by n_heads"),
        (dict(mask_ratio=0.0), "mask_ratio must be in (0, 1)"),
        (dict(mask_ratio=1.2), "mask_ratio must be in (0, 1)"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob must be in [0, 1)"),
        (dict(attn_dropout_prob=-0.1), "attn_dropout_prob must be in [0, 1)"),
        (dict(hidden_act="softplus"), "hidden_act must be one of"),
        (dict(loss_type="ce"), "loss_type must be one of"),
        (dict(n_layers=0), "n_layers must be a positive integer"),
        (dict(n_heads=-2), "n_heads must be a positive integer"),
        (dict(hidden_size=0), "hidden_size must be a positive integer"),
        (dict(inner_size=2.5), "inner_size must be a positive integer"),
        (dict(max_seq_length=0), "max_seq_length must be a positive integer"),
        (dict(num_negatives=0), "num_negatives must be a positive integer"),
        (dict(vocab_size=1), "vocab_size must be an integer >= 2"),
        (dict(layer_norm_eps=0), "layer_norm_eps must be a positive number"),
        (dict(pad_token_id=5), "pad_token_id and mask_token_id must be 0 and 1"),
        (dict(loss_type="sampled"), "loss_type must be one of ('CE', 'BPR', 'SSM')"),
        (dict(item_chunk_size=-1), "item_chunk_size must be a non-negative integer"),
        (dict(item_chunk_size=1.5), "item_chunk_size must be a non-negative integer"),
        (dict(num_sampled_negatives=0), "num_sampled_negatives must be a positive integer"),
        (dict(sampling_distribution="zipf"), "sampling_distribution must be one of ('uniform', 'popularity')"),
    ],
)
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ValueError) as err:
        Bert4RecConfig(**overrides)
    assert message in str(err.value)


@pytest.mark.parametrize("activation", ["gelu", "relu", "swish", "tanh", "sigmoid"])
def test_every_activation_is_accepted(activation):
    assert Bert4RecConfig(hidden_act=activation).hidden_act == activation


def test_large_catalog_fields_default_off_and_round_trip(tmp_path):
    config = Bert4RecConfig(vocab_size=100)
    assert config.item_chunk_size == 0 and config.loss_type == "CE"
    assert config.num_sampled_negatives == 1024 and config.sampling_distribution == "uniform"
    config = Bert4RecConfig(
        vocab_size=100, loss_type="SSM", item_chunk_size=4096, num_sampled_negatives=64, sampling_distribution="popularity"
    )
    config.save_pretrained(tmp_path)
    loaded = Bert4RecConfig.from_pretrained(tmp_path)
    assert (loaded.loss_type, loaded.item_chunk_size, loaded.num_sampled_negatives) == ("SSM", 4096, 64)
    assert loaded.sampling_distribution == "popularity"


def test_mask_ratio_is_a_record_of_training_and_folders_that_carry_it_load(tmp_path):
    """mask_ratio stays a (validated) field, readable on the config, but it is no model
    setting of a run: the run's masking settings set the collator and record it here."""
    from transformers import AutoConfig

    from bert4rec_hf import Bert4RecForMaskedItemPrediction

    assert "mask_ratio" not in Bert4RecConfig.run_settings()
    assert Bert4RecConfig(mask_ratio=0.3).mask_ratio == 0.3
    small = dict(vocab_size=12, hidden_size=8, inner_size=16, n_layers=1, n_heads=2, max_seq_length=5)
    Bert4RecForMaskedItemPrediction(Bert4RecConfig(**small)).save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, "mask_ratio": 0.35}))
    assert Bert4RecForMaskedItemPrediction.from_pretrained(tmp_path).config.mask_ratio == 0.35
    assert AutoConfig.from_pretrained(tmp_path).mask_ratio == 0.35
    saved.pop("mask_ratio")
    config_file.write_text(json.dumps(saved))  # a folder without it reads the default
    assert Bert4RecConfig.from_pretrained(tmp_path).mask_ratio == 0.2
