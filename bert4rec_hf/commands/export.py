"""``bert4rec export DIR``: a serving graph of a saved model (histories in, top-k items out)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _export(args: argparse.Namespace) -> int:
    from ..export import export_model, random_histories, verify_onnx
    from ..model_folder import local_folder
    from ..modeling_bert4rec import Bert4RecForMaskedItemPrediction

    model_dir = local_folder(args.model_dir)
    output_dir = Path(args.output or Path(model_dir) / args.format)
    description = export_model(
        model_dir, output_dir, format=args.format, k=args.top_k, exclude_history=args.exclude_history,
        opset_version=args.opset,
    )  # fmt: skip
    print(f"Exported {model_dir} to {output_dir / description['file']} (top-{args.top_k} ids and scores)")
    if args.verify:
        model = Bert4RecForMaskedItemPrediction.from_pretrained(model_dir).eval()
        histories = random_histories(model.config.vocab_size, max(model.config.max_seq_length - 1, 1), rows=256)
        excluded = description["exclude_history"]
        check = verify_onnx(output_dir / description["file"], model, histories, exclude_history=excluded)
        print("onnxruntime vs PyTorch: " + json.dumps(check))
        if check["same_top_k_rows"] < 1.0:
            print("bert4rec export: error: the exported model's top-k differs from PyTorch's", file=sys.stderr)
            return 1
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="export a saved model for serving (ONNX: histories -> top-k items)")
    parser.add_argument("model_dir")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default: onnx)")
    parser.add_argument("--output", help="folder to write, MODEL_DIR itself included (default: MODEL_DIR/<format>)")
    parser.add_argument(
        "--top-k", type=int, default=10, metavar="K",
        help="items returned per history (default 10); a slot with no candidate left holds id -1, score -inf",
    )  # fmt: skip
    parser.add_argument(
        "--exclude-history", action=argparse.BooleanOptionalAction, default=None,
        help="never return items already in the history (default: the model's, as bert4rec recommend: on, "
        "off for a model trained on a log where people come back to items)",
    )  # fmt: skip
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the exported file with onnxruntime and compare its top-k with PyTorch",
    )
    parser.set_defaults(handler=_export)
