"""The ``bert4rec`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__


def _info(args: argparse.Namespace) -> int:
    from .configuration_bert4rec import Bert4RecConfig
    from .tokenization_bert4rec import ItemTokenizer

    config = Bert4RecConfig.from_pretrained(args.model_dir)
    tokenizer = ItemTokenizer.from_pretrained(args.model_dir)
    summary = {
        "model_dir": args.model_dir,
        "num_items": tokenizer.num_items,
        "item_type": tokenizer.item_type.__name__,
        "config": {k: v for k, v in config.to_diff_dict().items() if k not in ("auto_map", "architectures")},
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="a registered data set (ml-100k is bundled) or a name for --set data_path=...")
    parser.add_argument("--config-files", nargs="+", default=[], metavar="YAML", help="user config files, in order")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides", help="override config keys"
    )


def _train(args: argparse.Namespace) -> int:
    from .quick_start import run_bert4rec
    from .training.config import parse_overrides

    run_bert4rec(args.dataset, args.config_files, parse_overrides(args.overrides), output_dir=args.output_dir)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .quick_start import evaluate_saved_model
    from .training.config import parse_overrides

    overrides = parse_overrides(args.overrides)
    for key, value in (("eval_mode", args.mode), ("topk", args.topk), ("exclude_history", args.exclude_history)):
        if value is not None:
            overrides[key] = value
    results = evaluate_saved_model(args.model_dir, args.dataset, args.config_files, overrides)
    if args.output:
        from .training.reporting import write_json

        write_json(args.output, results)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert4rec", description="BERT4Rec sequential recommendation on Hugging Face.")
    parser.add_argument("--version", action="version", version=f"bert4rec-hf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="show the configuration and vocabulary size of a saved model folder")
    info.add_argument("model_dir")
    info.set_defaults(handler=_info)

    train = commands.add_parser("train", help="train and evaluate BERT4Rec (like RecBole's run_recbole)")
    _run_options(train)
    train.add_argument("--output-dir", help="model folder to write (default: outputs/<dataset>)")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="re-evaluate a saved model folder")
    evaluate.add_argument("model_dir")
    _run_options(evaluate)
    evaluate.add_argument("--mode", choices=["full", "uni100", "pop100"], help="ranking against all items or 100 negatives")
    evaluate.add_argument("--topk", type=int, nargs="+", metavar="K", help="cut-offs of the @K metrics")
    evaluate.add_argument(
        "--exclude-history", action=argparse.BooleanOptionalAction, default=None,
        help="remove items already in the history from the candidates",
    )  # fmt: skip
    evaluate.add_argument("--output", help="also write the metrics to this JSON file")
    evaluate.set_defaults(handler=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, KeyError, FileNotFoundError, OSError) as err:
        print(f"bert4rec {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
