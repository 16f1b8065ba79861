"""``bert4rec train [LOG]``: RecBole's ``run_recbole`` from the shell, or your own log as the argument."""

from __future__ import annotations

import argparse

from . import add_run_options, run_overrides


def _train(args: argparse.Namespace) -> int:
    from ..quick_start import run_bert4rec

    pairs = list(args.overrides)
    if args.log is None and pairs and "=" not in pairs[-1]:  # `--set k=v clicks.csv`: --set's list took the log
        args.log = pairs.pop()
    overrides = run_overrides(args, pairs)
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in the output folder and --overwrite starts it again: give one")
    run_bert4rec(
        args.dataset, args.config_files, overrides, output_dir=args.output_dir, overwrite=args.overwrite,
        resume=args.resume, data_path=args.log,
    )  # fmt: skip
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train and evaluate BERT4Rec (like RecBole's run_recbole)")
    parser.add_argument(
        "log", nargs="?", metavar="LOG",
        help="your interaction log (csv, tsv, parquet, .inter, u.data, 'user item' lines; gzip or not): "
        "format and columns are detected, --set sets the rest (default: the --dataset's registered log)",
    )  # fmt: skip
    add_run_options(parser, recipe=True)
    parser.add_argument("--output-dir", help="model folder to write (default: outputs/<dataset or log file name>)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the model files of an earlier run in the output folder"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in the output folder from its newest checkpoint (same settings)",
    )
    parser.set_defaults(handler=_train)
