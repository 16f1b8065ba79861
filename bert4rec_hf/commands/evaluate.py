"""``bert4rec evaluate DIR``: re-evaluate a saved model with any mode and K list."""

from __future__ import annotations

import argparse

from . import add_run_options


def _evaluate(args: argparse.Namespace) -> int:
    from ..quick_start import evaluate_saved_model
    from ..training.config import parse_overrides
    from ..training.reporting import write_json

    overrides = parse_overrides(args.overrides)
    for key, value in (("eval_mode", args.mode), ("topk", args.topk), ("exclude_history", args.exclude_history)):
        if value is not None:
            overrides[key] = value
    results = evaluate_saved_model(args.model_dir, args.dataset, args.config_files, overrides)
    if args.output:
        write_json(args.output, results)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="re-evaluate a saved model folder")
    parser.add_argument("model_dir")
    add_run_options(parser)
    parser.add_argument("--mode", choices=["full", "uni100", "pop100"], help="rank against all items or 100 negatives")
    parser.add_argument("--topk", type=int, nargs="+", metavar="K", help="cut-offs of the @K metrics")
    parser.add_argument(
        "--exclude-history", action=argparse.BooleanOptionalAction, default=None,
        help="remove items already in the history from the candidates",
    )  # fmt: skip
    parser.add_argument("--output", help="also write the metrics to this JSON file")
    parser.set_defaults(handler=_evaluate)
