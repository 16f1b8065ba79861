"""``bert4rec train``: RecBole's ``run_recbole`` from the shell."""

from __future__ import annotations

import argparse

from . import add_run_options


def _train(args: argparse.Namespace) -> int:
    from ..quick_start import run_bert4rec
    from ..training.config import parse_overrides

    overrides = parse_overrides(args.overrides)
    run_bert4rec(args.dataset, args.config_files, overrides, output_dir=args.output_dir, overwrite=args.overwrite)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train and evaluate BERT4Rec (like RecBole's run_recbole)")
    add_run_options(parser)
    parser.add_argument("--output-dir", help="model folder to write (default: outputs/<dataset>)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the model files of an earlier run in the output folder"
    )
    parser.set_defaults(handler=_train)
