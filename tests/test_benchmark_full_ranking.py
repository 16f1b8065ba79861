"""The full-ranking ablations (benchmarks/full_ranking_ablations.py) are what a GPU call runs,
and a call is minutes of a scarce machine: every variant must be settings the package
accepts, and the device script's default variants must exist, so a typo fails here and not
after the machine has started."""

import re

import pytest

from bert4rec_hf.training.branches import check_branches
from bert4rec_hf.training.config import ConfigError, load_config, parse_overrides
from bert4rec_hf.training.pipeline import build_model, masking_arguments

from .helpers import BENCHMARKS, benchmark_script

DEVICE_CALL = BENCHMARKS / "full_ranking_device_call.sh"


@pytest.fixture(scope="module")
def ablations():
    return benchmark_script("full_ranking_ablations")  # it imports its sibling benchmarks by name


def variant_config(ablations, name: str) -> dict:
    # the script's own base: BASE and the --time-budget default before the variant
    return load_config("beauty", None, parse_overrides([*ablations.BASE, "time_budget=420", *ablations.VARIANTS[name]]))


def test_every_variant_is_a_configuration_the_package_builds(ablations):
    for name in ablations.VARIANTS:
        config = variant_config(ablations, name)
        masking_arguments(config)
        check_branches(config)
        model = build_model(config, vocab_size=12)
        assert model.config.hidden_size == config["hidden_size"], name


def test_variants_change_what_their_names_say(ablations):
    wide = variant_config(ablations, "drop0.2+temp0.2+h128+b1024+lr2e-3")
    assert (wide["hidden_size"], wide["inner_size"], wide["train_batch_size"]) == (128, 512, 1024)
    assert (wide["learning_rate"], wide["softmax_temperature"], wide["hidden_dropout_prob"]) == (0.002, 0.2, 0.2)
    assert variant_config(ablations, "drop0.2+temp0.2+last0.5")["last_item_mask_ratio"] == 0.5
    long = variant_config(ablations, "drop0.2+temp0.2+h128+const")
    assert (long["hidden_size"], long["lr_scheduler_type"]) == (128, "constant_with_warmup")
    contrast = variant_config(ablations, "drop0.2+temp0.2+const+views2+cl0.3")
    assert (contrast["num_views"], contrast["contrastive_weight"], contrast["contrastive_temperature"]) == (2, 0.3, 0.3)
    assert variant_config(ablations, "drop0.2+temp0.2+const+views2")["contrastive_weight"] == 0.0
    deep = variant_config(ablations, "drop0.1+temp0.2+stride1+last1+layers4")
    assert (deep["n_layers"], deep["last_item_mask_ratio"], deep["lr_scheduler_type"]) == (4, 1.0, "linear")
    deep_held_out = variant_config(ablations, "drop0.1+temp0.2+const+stride1+last1+grouped+layers6")
    assert (deep_held_out["n_layers"], deep_held_out["group_by_length"]) == (6, True)
    assert deep_held_out["lr_scheduler_type"] == "constant_with_warmup"
    held_out_deep = "drop0.1+temp0.2+const+stride1+last1+grouped+layers4"
    small = variant_config(ablations, held_out_deep + "+b128")
    assert (small["train_batch_size"], small["warmup_steps"], small["n_layers"]) == (128, 200, 4)
    assert (variant_config(ablations, held_out_deep + "+heads4")["n_heads"], deep_held_out["n_heads"]) == (4, 2)
    decays = [variant_config(ablations, held_out_deep + suffix)["weight_decay"] for suffix in ("", "+wd0.1", "+wd1")]
    assert decays == [0.01, 0.1, 1.0]
    undropped = variant_config(ablations, "drop0+temp0.2+const+stride1+last1+grouped+layers4")
    assert (undropped["hidden_dropout_prob"], undropped["attn_dropout_prob"], undropped["n_layers"]) == (0.0, 0.0, 4)
    base = variant_config(ablations, "base")
    assert (base["hidden_size"], base["learning_rate"], base["mask_ratio"]) == (64, 0.001, 0.6)  # recipe paper at lr 1e-3


def test_the_fullrank_factor_is_what_recipe_fullrank_changes(ablations):
    """``FULLRANK`` restates the recipe's model changes so variant names can say them: a
    recipe change that the benchmark does not follow fails here."""
    variant = variant_config(ablations, "drop0.2+temp0.2")
    recipe = load_config("beauty", config_dict={"recipe": "fullrank"})
    keys = [pair.split("=")[0] for pair in ablations.FULLRANK]
    assert {key: variant[key] for key in keys} == {key: recipe[key] for key in keys}
    assert variant["learning_rate"] == recipe["learning_rate"]  # BASE's lr is the recipe's


def test_next_item_rows_at_dropout_01_are_what_recipe_nextitem_changes(ablations):
    """The trained-through runs behind recipe nextitem's figures are this variant at max_steps 8,000."""
    variant = variant_config(ablations, "drop0.1+temp0.2+stride1+last1+grouped+layers4")
    recipe = load_config("beauty", config_dict={"recipe": "nextitem"})
    changes = [*ablations.FULLRANK, *ablations.DROPOUT_01, *ablations.NEXT_ITEM_ROWS, *ablations.GROUPED, "n_layers=4"]
    keys = [pair.split("=")[0] for pair in changes]
    assert {key: variant[key] for key in keys} == {key: recipe[key] for key in keys}
    assert (variant["lr_scheduler_type"], variant["learning_rate"]) == (recipe["lr_scheduler_type"], recipe["learning_rate"])


def test_the_cloze_first_variant_is_recipe_clozefirst(ablations):
    """The trained-through runs behind recipe clozefirst's figures are this variant at max_steps 8,000:
    the paper's Cloze windows (BASE's recipe paper), then nextitem's rows for the share of the steps."""
    variant = variant_config(ablations, "drop0.1+temp0.2+grouped+layers4+next0.75")
    recipe = load_config("beauty", config_dict={"recipe": "clozefirst"})
    keys = [
        "train_stride", "train_prefixes", "last_item_mask_ratio", "mask_ratio", "next_item_share", "n_layers",
        "hidden_dropout_prob", "attn_dropout_prob", "softmax_temperature", "group_by_length", "lr_scheduler_type",
        "learning_rate",
    ]  # fmt: skip
    assert {key: variant[key] for key in keys} == {key: recipe[key] for key in keys}
    assert (recipe["next_item_share"], recipe["max_steps"], recipe["train_stride"]) == (0.75, 8000, 5)


def test_set_overrides_win_over_the_variant(ablations, monkeypatch, tmp_path):
    """`run --variants V --set K=X` trains V with K at X, even where V sets K itself: a sweep of one
    setting around a variant is what --set is for."""
    commands = []

    def record_command(args, name, overrides, seed):  # train_once's arguments, no training
        commands.append([*args.set, *overrides])
        return {"variant": name, "seed": seed, "error": "not trained"}

    monkeypatch.setattr(ablations, "train_once", record_command)
    data = tmp_path / "beauty.txt"
    data.write_text("1 1 2 3\n")
    variant = "drop0.1+temp0.2+grouped+layers4+next0.75"
    argv = ["run", "--variants", variant, "--seeds", "1", "--data-path", str(data), "--output", str(tmp_path / "o.json")]
    assert ablations.main([*argv, "--set", "next_item_share=0.5", "max_steps=8000"]) == 1
    config = load_config("beauty", None, parse_overrides(commands[0]))
    assert (config["next_item_share"], config["max_steps"], config["n_layers"]) == (0.5, 8000, 4)


def test_a_misspelt_override_is_refused(ablations):
    with pytest.raises(ConfigError, match="unknown configuration key 'hiden_size'"):
        load_config("beauty", None, parse_overrides([*ablations.BASE, "hiden_size=128"]))


def test_the_device_calls_default_variants_exist(ablations):
    script = DEVICE_CALL.read_text()
    for group in ("VARS", "TRAINVAL"):
        names = re.search(rf"^{group}=\$\{{{group}:-([^}}]*)\}}", script, re.MULTILINE).group(1).split()
        assert names, group
        assert set(names) <= set(ablations.VARIANTS), (group, sorted(set(names) - set(ablations.VARIANTS)))
