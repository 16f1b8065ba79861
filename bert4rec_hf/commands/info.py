"""``bert4rec info DIR``: what a saved model folder holds."""

from __future__ import annotations

import argparse
import json


def _info(args: argparse.Namespace) -> int:
    from ..configuration_bert4rec import Bert4RecConfig
    from ..model_folder import local_folder
    from ..tokenization_bert4rec import ItemTokenizer

    model_dir = local_folder(args.model_dir)
    config = Bert4RecConfig.from_pretrained(model_dir)
    tokenizer = ItemTokenizer.from_pretrained(model_dir)
    summary = {
        "model_dir": args.model_dir,
        "num_items": tokenizer.num_items,
        "item_type": tokenizer.item_type.__name__,
        "config": {k: v for k, v in config.to_diff_dict().items() if k not in ("auto_map", "architectures")},
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("info", help="show the configuration and catalog size of a saved model folder")
    parser.add_argument("model_dir")
    parser.set_defaults(handler=_info)
