"""``bert4rec train``: RecBole's ``run_recbole`` from the shell."""

from __future__ import annotations

import argparse

from . import add_run_options


def _train(args: argparse.Namespace) -> int:
    from ..quick_start import run_bert4rec
    from ..training.config import parse_overrides

    run_bert4rec(args.dataset, args.config_files, parse_overrides(args.overrides), output_dir=args.output_dir)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train and evaluate BERT4Rec (like RecBole's run_recbole)")
    add_run_options(parser)
    parser.add_argument("--output-dir", help="model folder to write (default: outputs/<dataset>)")
    parser.set_defaults(handler=_train)
