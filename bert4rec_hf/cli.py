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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert4rec", description="BERT4Rec sequential recommendation on Hugging Face.")
    parser.add_argument("--version", action="version", version=f"bert4rec-hf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="show the configuration and vocabulary size of a saved model folder")
    info.add_argument("model_dir")
    info.set_defaults(handler=_info)
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
