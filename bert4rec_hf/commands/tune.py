"""``bert4rec tune``: RecBole's ``run_hyper`` from the shell."""

from __future__ import annotations

import argparse

from . import add_run_options, run_overrides


def _tune(args: argparse.Namespace) -> int:
    from ..training.tuning import tune_bert4rec

    overrides = run_overrides(args, args.overrides)
    if args.metric:
        overrides["valid_metric"] = args.metric
    tune_bert4rec(
        args.params_file,
        args.dataset,
        args.config_files,
        overrides,
        output_dir=args.output_dir,
        n_trials=args.trials,
        timeout=args.timeout,
        sampler=args.sampler,
        overwrite=args.overwrite,
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tune",
        help="search hyper-parameters from a hyper.test file (like RecBole's run_hyper)",
        description="Each trial is a normal training run (early stopping, best model restored); trials are compared "
        "by the validation metric (valid_metric, default ndcg@10). A space of only 'choice' parameters is searched "
        "exhaustively, other spaces with optuna's TPE sampler.",
    )
    add_run_options(parser, recipe=True)
    parser.add_argument(
        "--params-file", required=True, metavar="FILE", help="search space in RecBole's hyper.test syntax"
    )
    parser.add_argument("--trials", type=int, help="number of trials (default: the whole grid, or 20 for TPE)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting new trials after this time")
    parser.add_argument("--sampler", default="auto", choices=("auto", "grid", "tpe", "random"), help="default: auto")
    parser.add_argument("--metric", help="validation metric to maximise (default: the config's valid_metric)")
    parser.add_argument("--output-dir", help="folder for trials.csv/json and best/ (default: outputs/<dataset>-tuning)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier search in the output folder")
    parser.set_defaults(handler=_tune)
