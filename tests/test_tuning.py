"""Hyper-parameter search: hyper.test parsing, and a tiny grid search on a slice of ml-100k."""

import contextlib
import csv
import importlib.util
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import yaml

from bert4rec_hf import read_interactions, run_bert4rec
from bert4rec_hf.cli import main
from bert4rec_hf.training import tuning
from bert4rec_hf.training.hyper_space import HyperSpaceError, parse_hyper_space, read_hyper_space
from bert4rec_hf.training.tuning import Bert4RecTuningTrainer

from .helpers import ML100K

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "epochs": 1, "hidden_size": 16, "inner_size": 32, "n_heads": 2, "n_layers": 1,
    "train_batch_size": 256, "eval_batch_size": 128, "max_seq_length": 20, "train_stride": 10,
}  # fmt: skip
GRID = """# a tiny grid: one training and one data parameter
learning_rate choice [0.01,0.001]

max_seq_length choice [10, 20]   # the data is prepared once per length
"""


# --- parsing ------------------------------------------------------------------------


def test_parses_every_type_comments_and_blank_lines():
    space = parse_hyper_space(
        "# comment line\n\n"
        "learning_rate loguniform -8,0      # e^-8 .. 1\n"
        "hidden_dropout_prob uniform 0.1,0.5\n"
        "n_layers quniform 1,4,1\n"
        "mask_ratio quniform 0.1,0.4,0.1\n"
        "hidden_act choice ['gelu','relu']\n"
        "n_heads choice [1, 2]\n"
        "fp16 choice [true, false]\n",
        source="space.test",
    )
    assert space.names == [
        "learning_rate", "hidden_dropout_prob", "n_layers", "mask_ratio", "hidden_act", "n_heads", "fp16",
    ]  # fmt: skip
    assert [p.line for p in space.parameters] == [3, 4, 5, 6, 7, 8, 9]
    by_name = {p.name: p for p in space.parameters}
    assert (by_name["learning_rate"].low, by_name["learning_rate"].high) == (-8, 0)
    assert by_name["hidden_act"].values == ("gelu", "relu") and by_name["fp16"].values == (True, False)
    assert not space.is_grid
    with pytest.raises(HyperSpaceError, match="choice parameters only"):
        space.grid()

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [space.suggest(study.ask()) for _ in range(200)]
    learning_rates = [d["learning_rate"] for d in draws]
    assert all(math.exp(-8) <= v <= 1.0 for v in learning_rates)
    assert min(learning_rates) < 1e-3 and max(learning_rates) > 1e-2  # log scale reaches both decades
    assert all(0.1 <= d["hidden_dropout_prob"] <= 0.5 for d in draws)
    assert {d["n_layers"] for d in draws} == {1, 2, 3, 4} and all(type(d["n_layers"]) is int for d in draws)
    assert {d["mask_ratio"] for d in draws} == {0.1, 0.2, 0.3, 0.4}
    assert {d["hidden_act"] for d in draws} == {"gelu", "relu"} and {d["fp16"] for d in draws} == {True, False}


def test_seed_space_is_a_grid():
    space = read_hyper_space(REPO / "configuration" / "hyper.test")
    assert space.names == ["learning_rate", "attn_dropout_prob", "hidden_dropout_prob", "n_heads", "n_layers"]
    assert space.is_grid and space.grid_size == 5 * 2 * 2 * 2 * 2
    assert space.grid()["learning_rate"] == [0.01, 0.005, 0.001, 0.0005, 0.0001]


def test_yaml_choice_syntax():
    space = parse_hyper_space("hidden_act choice [gelu, relu]\nlr_scheduler_type choice [linear, 'cosine']")
    assert [p.values for p in space.parameters] == [("gelu", "relu"), ("linear", "cosine")]


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("n_layers choise [1,2]", 1, "unknown type 'choise'"),
        ("\nn_layers choice [1,2", 2, "no closing ']'"),
        ("n_layers choice 1,2]", 1, "missing '['"),
        ("n_layers choice [[1,2]", 1, "cannot read the choice list"),
        ("n_layers choice []", 1, "choice list is empty"),
        ("n_layers choice [1,1]", 1, "repeats 1"),
        ("learning_rate uniform 0.1,0.01", 1, "lower bound 0.1 must be below the upper bound 0.01"),
        ("learning_rate loguniform 0,-8", 1, "lower bound 0 must be below"),
        ("learning_rate uniform [0,1]", 1, "without brackets"),
        ("learning_rate uniform 0.1", 1, "expects 'lo,hi'"),
        ("learning_rate uniform a,1", 1, "'a' is not a number"),
        ("n_layers quniform 1,4", 1, "expects 'lo,hi,q'"),
        ("n_layers quniform 1,4,0", 1, "step q must be positive"),
        (
            "# c\nlearning_rte choice [0.1]",
            2,
            "unknown configuration key 'learning_rte' (did you mean 'learning_rate'?)",
        ),
        ("n_layers choice [1,'a']", 1, "'n_layers' must be int, got 'a'"),
        ("hidden_act choice [gelu, 1]", 1, "'hidden_act' must be str, got 1"),
        ("eval_mode choice [full]", 1, "'eval_mode' cannot be tuned"),
        ("n_layers uniform 1,3", 1, "must be int, got 1.0 (this range draws floats"),
        ("n_layers choice [1]\n\nn_layers choice [2]", 3, "'n_layers' is already defined on line 1"),
        ("learning_rate", 1, "expected 'name type values'"),
        ("learning_rate loguniform 0,800", 1, "loguniform bounds are natural logarithms"),
        ("learning_rate loguniform -800,0", 1, "must lie in [-700, 700]"),
        ("mask_ratio choice [0.2,1.0]", 1, "'mask_ratio' must be a number in (0, 1), got 1.0"),
    ],
)
def test_errors_name_file_line_and_problem(text, line, problem):
    with pytest.raises(HyperSpaceError) as err:
        parse_hyper_space(text, source="my.test")
    assert str(err.value).startswith(f"my.test:{line}: ")
    assert problem in str(err.value)


def test_masking_candidates_are_checked_one_by_one_not_against_the_base_configuration():
    # 0.2 with the default mask_replace_prob (1.0) sums past 1; with 0.8 beside it, it is a valid trial
    space = parse_hyper_space("mask_replace_prob choice [0.8]\nrandom_replace_prob choice [0.1,0.2]", source="my.test")
    assert space.names == ["mask_replace_prob", "random_replace_prob"]


def test_comments_after_tabs_and_lists_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "hyper.test"
    path.write_bytes("\ufefflearning_rate choice [0.01,1e-3]\t# tab\nn_heads choice [1,2]# tight\n".encode())
    space = read_hyper_space(path)
    assert [(p.name, p.values) for p in space.parameters] == [("learning_rate", (0.01, 0.001)), ("n_heads", (1, 2))]
    latin = tmp_path / "latin.test"
    latin.write_bytes(b"n_heads choice [1,2]\nhidden_act choice ['g\xe9lu']\n")
    with pytest.raises(HyperSpaceError, match=r"latin.test: line 2: not UTF-8 text"):
        read_hyper_space(latin)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.test"
    empty.write_text("# nothing\n\n")
    with pytest.raises(HyperSpaceError, match="empty.test: no parameters"):
        read_hyper_space(empty)
    with pytest.raises(HyperSpaceError, match="not found"):
        read_hyper_space(tmp_path / "missing.test")


def test_tune_command_reports_a_bad_space(tmp_path, capsys):
    bad = tmp_path / "bad.test"
    bad.write_text("learning_rate choice [0.01,0.001]\nn_heads uniform 2,1\n")
    assert main(["tune", "--params-file", str(bad), "--output-dir", str(tmp_path / "out")]) == 1
    assert f"{bad}:2: 'n_heads': the lower bound 2 must be below the upper bound 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_tune_command_rejects_a_metric_the_evaluation_does_not_report(tmp_path, capsys):
    space = tmp_path / "h.test"
    space.write_text("n_layers choice [1,2]\n")
    argv = ["tune", "--params-file", str(space), "--metric", "hit@50", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 1
    assert "valid_metric 'hit@50' is not reported with topk=[5, 10, 20]" in capsys.readouterr().err


def load_run_hyper():
    spec = importlib.util.spec_from_file_location("run_hyper", REPO / "examples" / "run_hyper.py")
    run_hyper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_hyper)
    return run_hyper


def test_run_hyper_example_takes_recbole_flags():
    run_hyper = load_run_hyper()
    assert run_hyper.config_file_list("a.yaml b.yaml,c.yaml") == ["a.yaml", "b.yaml", "c.yaml"]
    args = run_hyper.parse_args(["--model=BERT4Rec", "--dataset=ml-1m", "--params_file=h.test", "--output_file=r.txt"])
    assert (args.dataset, args.params_file, args.output_file) == ("ml-1m", "h.test", "r.txt")
    with pytest.raises(SystemExit):
        run_hyper.parse_args(["--model=SASRec"])


def test_run_hyper_example_reports_bad_input_in_one_line(tmp_path, capsys):
    run_hyper = load_run_hyper()
    missing = tmp_path / "missing.test"
    report = tmp_path / "new" / "r.txt"
    argv = [f"--params_file={missing}", f"--output_file={report}", f"--output_dir={tmp_path / 'out'}"]
    assert run_hyper.main(argv) == 2  # was: a traceback
    assert capsys.readouterr().err == f"error: {missing}: search space file not found\n"
    assert report.parent.is_dir()  # the report's folder is made before the search
    bad = tmp_path / "bad.test"
    bad.write_text("n_heads uniform 2,1\n")
    assert run_hyper.main([f"--params_file={bad}", f"--output_dir={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}:1: 'n_heads'")
    (tmp_path / "file").write_text("")
    assert run_hyper.main([f"--params_file={bad}", f"--output_file={tmp_path / 'file' / 'r.txt'}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --output_file {tmp_path / 'file' / 'r.txt'}: cannot create")
    assert not (tmp_path / "out").exists()


# --- searching --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    table = read_interactions(ML100K)
    users = pc.unique(table["user_id"]).to_pylist()[:40]
    small = table.filter(pc.is_in(table["user_id"], value_set=pa.array(users)))
    path = tmp_path_factory.mktemp("log") / "slice.csv"
    pacsv.write_csv(small.select(["user_id", "item_id", "timestamp"]), path)
    return path


@pytest.fixture(scope="module")
def searched(small_log, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    (root / "hyper.test").write_text(GRID)
    output_dir = root / "search"
    overrides = [f"{key}={value}" for key, value in SMALL.items()] + [f"data_path={small_log}"]
    argv = ["tune", "--dataset", "slice", "--params-file", str(root / "hyper.test"), "--output-dir", str(output_dir)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*argv, "--set", *overrides]) == 0
    return output_dir, printed.getvalue()


def test_grid_search_runs_every_trial_and_keeps_the_best(searched):
    output_dir, printed = searched
    report = json.loads((output_dir / "trials.json").read_text())
    trials = report["trials"]
    assert report["metric"] == "valid_ndcg@10" and report["sampler"].startswith("grid (4")
    assert [t["state"] for t in trials] == ["complete"] * 4
    combos = {(t["params"]["learning_rate"], t["params"]["max_seq_length"]) for t in trials}
    assert combos == {(0.01, 10), (0.01, 20), (0.001, 10), (0.001, 20)}
    scores = [t["valid"]["valid_ndcg@10"] for t in trials]
    best = trials[scores.index(max(scores))]
    assert report["best_trial"] == best["number"] and report["best_params"] == best["params"]
    for trial in trials:
        assert trial["valid"]["valid_num_users"] == 40 and trial["test"]["test_num_users"] == 40
        assert trial["epochs"] == 1 and trial["seconds"] > 0

    with (output_dir / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "trial", "learning_rate", "max_seq_length", "valid_ndcg@10", "test_ndcg@10", "epochs", "seconds", "state", "error",
    ]  # fmt: skip
    assert [float(r["valid_ndcg@10"]) for r in rows] == scores
    assert max(float(r["valid_ndcg@10"]) for r in rows) == float(rows[report["best_trial"]]["valid_ndcg@10"])

    table_rows = [line for line in printed.splitlines() if line.startswith("| ") and "trial" not in line]
    assert len(table_rows) == 4 and table_rows[report["best_trial"]].startswith(f"| {report['best_trial']} *")
    assert f"Best trial {report['best_trial']} of 4" in printed
    assert not (output_dir / "checkpoints").exists()


def test_tune_command_keeps_an_earlier_search(searched, capsys):
    output_dir, _ = searched
    weights = (output_dir / "best" / "model.safetensors").read_bytes()
    space = output_dir.parent / "hyper.test"
    argv = ["tune", "--dataset", "slice", "--params-file", str(space), "--output-dir", str(output_dir)]
    assert main(argv) == 1  # was: the first trial deleted best/ of the earlier search
    error = capsys.readouterr().err
    assert f"{output_dir} already holds best, trials.csv, trials.json" in error and "--overwrite" in error
    assert (output_dir / "best" / "model.safetensors").read_bytes() == weights


def test_best_model_is_the_best_trial_saved_like_a_training_run(searched, small_log, tmp_path):
    output_dir, _ = searched
    report = json.loads((output_dir / "trials.json").read_text())
    best = report["trials"][report["best_trial"]]
    best_dir = output_dir / "best"
    expected = {"config.json", "model.safetensors", "item_vocab.json", "README.md", "metrics.json", "run_config.yaml"}
    assert expected <= {p.name for p in best_dir.iterdir()} and not (best_dir / "checkpoints").exists()
    run_config = yaml.safe_load((best_dir / "run_config.yaml").read_text())
    assert {key: run_config[key] for key in best["params"]} == best["params"]
    assert json.loads((best_dir / "config.json").read_text())["max_seq_length"] == best["params"]["max_seq_length"]
    metrics = json.loads((best_dir / "metrics.json").read_text())
    assert metrics["valid"]["valid_ndcg@10"] == best["valid"]["valid_ndcg@10"]
    assert metrics["test"]["test_ndcg@10"] == best["test"]["test_ndcg@10"]

    # a trial is a normal run: `bert4rec train` with the best values gives the same metrics
    plain = run_bert4rec(
        "slice", config_dict={**SMALL, "data_path": str(small_log), **best["params"]}, output_dir=tmp_path
    )
    for split in ("valid", "test"):
        assert plain[split][f"{split}_ndcg@10"] == best[split][f"{split}_ndcg@10"]
        assert plain[split][f"{split}_mrr"] == best[split][f"{split}_mrr"]


def test_a_failed_save_keeps_the_earlier_best(tmp_path, monkeypatch):
    def partial_save(trainer, config, data, results, output_dir, seconds):
        (output_dir / "config.json").write_text("new")
        if results["fail"]:
            raise OSError("disk full")

    monkeypatch.setattr(tuning, "save_run", partial_save)
    trainer = SimpleNamespace(is_world_process_zero=lambda: True)
    best = tmp_path / "best"
    best.mkdir()
    (best / "config.json").write_text("earlier")
    with pytest.raises(OSError, match="disk full"):
        tuning.save_best(trainer, {}, None, {"fail": True}, best, 1.0)
    assert (best / "config.json").read_text() == "earlier"  # was: best/ deleted before the save
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    tuning.save_best(trainer, {}, None, {"fail": False}, best, 1.0)
    assert (best / "config.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["best"]


def test_failed_trials_are_reported(small_log, tmp_path):
    space = parse_hyper_space("n_heads choice [3, 5]")  # hidden_size 16 is divisible by neither
    trainer = Bert4RecTuningTrainer(
        space, "slice", config_dict={**SMALL, "data_path": str(small_log)}, output_dir=tmp_path / "out"
    )
    assert trainer.choose_sampler("auto", None, None)[0].startswith("grid (2")
    assert trainer.choose_sampler("auto", 10, None)[2] == 2  # a grid is searched at most once
    with pytest.raises(ValueError, match="no trial completed") as err:
        trainer.search()
    assert "{'n_heads': 3}: " in str(err.value) and "{'n_heads': 5}: " in str(err.value)
    assert "hidden_size" in str(err.value)
    assert [t.state for t in trainer.trials] == ["failed", "failed"]
    assert not (tmp_path / "out" / "checkpoints").exists() and not (tmp_path / "out" / "trials.json").exists()

    ranges = parse_hyper_space("learning_rate loguniform -8,0\nn_layers choice [1,2]")
    trainer.space = ranges
    name, sampler, n_trials = trainer.choose_sampler("auto", None, None)
    assert name == "tpe" and isinstance(sampler, optuna.samplers.TPESampler) and n_trials == 20
    assert trainer.choose_sampler("random", 3, None)[2] == 3
    with pytest.raises(ValueError, match="sampler must be one of"):
        trainer.choose_sampler("anneal", None, None)


def test_trials_averaging_weights_over_other_shares_are_each_a_normal_run(small_log, tmp_path):
    """``average_weights_share`` searched: each trial averages over its own share (or not at
    all), never over the share of the trial before it, so each equals ``bert4rec train``."""
    settings = {**SMALL, "epochs": 1, "max_steps": 6, "train_batch_size": 16, "eval_steps": 3, "data_path": str(small_log)}
    space = parse_hyper_space("average_weights_share choice [0.0, 0.5, 1.0]\naverage_weights_every choice [1]")
    trainer = Bert4RecTuningTrainer(space, "slice", config_dict=settings, output_dir=tmp_path / "search")
    trainer.search()
    assert sorted(trial.params["average_weights_share"] for trial in trainer.trials) == [0.0, 0.5, 1.0]
    for trial in trainer.trials:
        run = run_bert4rec("slice", config_dict={**settings, **trial.params}, output_dir=tmp_path / f"run{trial.number}")
        assert run["valid"]["valid_ndcg@10"] == trial.valid["valid_ndcg@10"]
        assert run["test"]["test_mrr"] == trial.test["test_mrr"]
    shares = {trial.params["average_weights_share"]: trial.test["test_mrr"] for trial in trainer.trials}
    assert len(set(shares.values())) == 3  # the three shares give three models
